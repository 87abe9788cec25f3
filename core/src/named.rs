//! Named sinks (`SINK.DEFINE`): a target type, a key prefix and which row fields form the
//! key, hash field, member or score — Laminar's string/list/hash tables and RudderStack's
//! prefix — so that `SINK.WRITE name row…` needs nothing but the rows.

use serde_json::{Map, Value};

use crate::args::{parse_choice, Args, Options};
use crate::error::{Error, Result};
use crate::sink::{flatten, stream_fields, value_text, Fields, Mapping, MAX_LENGTH, MAX_TTL_SECS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkType {
    String,
    Hash,
    List,
    Set,
    Zset,
    Stream,
}

impl SinkType {
    const NAMES: [&'static str; 6] = ["string", "hash", "list", "set", "zset", "stream"];
    const ALL: [SinkType; 6] = [
        SinkType::String,
        SinkType::Hash,
        SinkType::List,
        SinkType::Set,
        SinkType::Zset,
        SinkType::Stream,
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A stored sink definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkDefinition {
    pub kind: SinkType,
    pub prefix: Vec<u8>,
    pub key_field: Option<String>,
    pub field_field: Option<String>,
    pub member_field: Option<String>,
    pub score_field: Option<String>,
    pub ttl_secs: Option<i64>,
    pub max_len: Option<i64>,
    pub prepend: bool,
    pub flatten: Option<String>,
    pub mappings: Vec<Mapping>,
    /// For streams: the row field whose value becomes the entry's `op_code`.
    pub op_code_field: Option<String>,
    /// The options as given, to persist and show.
    pub options: Vec<Vec<u8>>,
}

/// What one row becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite {
    String(String),
    Hash(Fields),
    List(String),
    Set(String),
    Zset { member: String, score: f64 },
    Stream(Fields),
}

impl SinkDefinition {
    /// Parses `TYPE t PREFIX p [KEYFIELD f] [FIELDFIELD f] [MEMBERFIELD f] [SCOREFIELD f]
    /// [TTL s] [MAXLEN n] [PREPEND] [FLATTEN sep] [MAP f[:alias] …] [OPCODE f]`.
    pub fn parse(options: &[&[u8]]) -> Result<Self> {
        let mut args = Args::new(options);
        let mut kind = None;
        let mut prefix = None;
        let mut definition = SinkDefinition {
            kind: SinkType::String,
            prefix: Vec::new(),
            key_field: None,
            field_field: None,
            member_field: None,
            score_field: None,
            ttl_secs: None,
            max_len: None,
            prepend: false,
            flatten: None,
            mappings: Vec::new(),
            op_code_field: None,
            options: options.iter().map(|option| option.to_vec()).collect(),
        };
        while let Some(keyword) = args.next_keyword() {
            let Some((name, option)) = DEFINE_OPTIONS.named(keyword.as_bytes()) else {
                return Err(Error::UnknownOption(keyword.into_owned()));
            };
            let field = |args: &mut Args| args.text_value(name).map(str::to_owned);
            match option {
                DefineOption::Type => {
                    let index = parse_choice(
                        args.value(name)?,
                        name,
                        &SinkType::NAMES,
                        "string, hash, list, set, zset or stream",
                    )?;
                    kind = SinkType::ALL.get(index).copied();
                }
                DefineOption::Prefix => prefix = Some(args.value(name)?.to_vec()),
                DefineOption::KeyField => definition.key_field = Some(field(&mut args)?),
                DefineOption::FieldField => definition.field_field = Some(field(&mut args)?),
                DefineOption::MemberField => definition.member_field = Some(field(&mut args)?),
                DefineOption::ScoreField => definition.score_field = Some(field(&mut args)?),
                DefineOption::Ttl => {
                    definition.ttl_secs = Some(args.int_value(name, 1, MAX_TTL_SECS)?)
                }
                DefineOption::MaxLen => {
                    definition.max_len = Some(args.int_value(name, 1, MAX_LENGTH)?)
                }
                DefineOption::Prepend => definition.prepend = true,
                DefineOption::Flatten => definition.flatten = Some(field(&mut args)?),
                DefineOption::Map => {
                    // MAP takes every following argument up to the next option.
                    definition.mappings.push(Mapping::parse(args.value(name)?)?);
                    while let Some(next) = args
                        .peek()
                        .filter(|next| DEFINE_OPTIONS.named(next).is_none())
                    {
                        definition.mappings.push(Mapping::parse(next)?);
                        args.next_arg()?;
                    }
                }
                DefineOption::OpCode => definition.op_code_field = Some(field(&mut args)?),
            }
        }
        definition.kind = kind.ok_or_else(|| Error::Invalid("a sink needs TYPE".into()))?;
        definition.prefix = prefix.ok_or_else(|| Error::Invalid("a sink needs PREFIX".into()))?;
        definition.check_options()?;
        Ok(definition)
    }

    /// Refuses options the sink's type has no use for.
    fn check_options(&self) -> Result<()> {
        use DefineOption::*;
        use SinkType::{Hash, List, Set, Stream, Zset};
        let kind = self.kind;
        let misplaced = [
            (FieldField, self.field_field.is_some(), kind == Hash),
            (
                MemberField,
                self.member_field.is_some(),
                matches!(kind, Set | Zset),
            ),
            (ScoreField, self.score_field.is_some(), kind == Zset),
            (
                MaxLen,
                self.max_len.is_some(),
                matches!(kind, List | Zset | Stream),
            ),
            (Prepend, self.prepend, kind == List),
            (
                Flatten,
                self.flatten.is_some(),
                matches!(kind, Hash | Stream),
            ),
            (Map, !self.mappings.is_empty(), kind == Stream),
            (OpCode, self.op_code_field.is_some(), kind == Stream),
        ];
        if let Some((option, _, _)) = misplaced.iter().find(|(_, given, fits)| *given && !fits) {
            return Err(Error::Invalid(format!(
                "{} does not apply to a {} sink",
                DEFINE_OPTIONS.name(*option),
                kind.name()
            )));
        }
        if kind == Zset && self.score_field.is_none() {
            return Err(Error::Invalid("a zset sink needs SCOREFIELD".into()));
        }
        if kind == Hash && self.field_field.is_some() && self.flatten.is_some() {
            return Err(Error::Invalid(
                "a hash sink takes FIELDFIELD (one field per row) or FLATTEN, not both".into(),
            ));
        }
        Ok(())
    }

    /// The key a row goes to, and what is written there.
    pub fn plan(&self, row: &Map<String, Value>) -> Result<(Vec<u8>, RowWrite)> {
        let mut key = self.prefix.clone();
        if let Some(field) = &self.key_field {
            key.extend_from_slice(required(row, field, "the key")?.as_bytes());
        }
        let row_json = || crate::json::to_text(&Value::Object(row.clone()));
        let separator = self.flatten.as_deref().unwrap_or(".");
        let write = match self.kind {
            SinkType::String => RowWrite::String(row_json()),
            SinkType::Hash => match &self.field_field {
                Some(field) => RowWrite::Hash(
                    [(required(row, field, "the hash field")?, row_json())]
                        .into_iter()
                        .collect(),
                ),
                // The key field is in the key already (seed 002: `HGETALL
                // rudderstack:user:user-3` holds the traits only).
                None => RowWrite::Hash(
                    flatten(row, separator)
                        .into_iter()
                        .filter(|(field, _)| Some(field) != self.key_field.as_ref())
                        .collect(),
                ),
            },
            SinkType::List => RowWrite::List(row_json()),
            SinkType::Set => RowWrite::Set(match &self.member_field {
                Some(field) => required(row, field, "the member")?,
                None => row_json(),
            }),
            SinkType::Zset => {
                let member = match &self.member_field {
                    Some(field) => required(row, field, "the member")?,
                    None => row_json(),
                };
                let field = self.score_field.as_deref().unwrap_or_default();
                RowWrite::Zset {
                    member,
                    score: score(row.get(field), field)?,
                }
            }
            SinkType::Stream => {
                let op_code = match &self.op_code_field {
                    Some(field) => Some(required(row, field, "op_code")?),
                    None => None,
                };
                let fields = stream_fields(
                    row_json().as_bytes(),
                    &self.mappings,
                    separator,
                    op_code.as_deref(),
                    &crate::json::Limits::UNLIMITED,
                )?;
                RowWrite::Stream(fields)
            }
        };
        Ok((key, write))
    }
}

/// An option of `SINK.DEFINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefineOption {
    Type,
    Prefix,
    KeyField,
    FieldField,
    MemberField,
    ScoreField,
    Ttl,
    MaxLen,
    Prepend,
    Flatten,
    Map,
    OpCode,
}

/// `SINK.DEFINE`'s options by name.
const DEFINE_OPTIONS: Options<DefineOption> = Options(&[
    ("TYPE", DefineOption::Type),
    ("PREFIX", DefineOption::Prefix),
    ("KEYFIELD", DefineOption::KeyField),
    ("FIELDFIELD", DefineOption::FieldField),
    ("MEMBERFIELD", DefineOption::MemberField),
    ("SCOREFIELD", DefineOption::ScoreField),
    ("TTL", DefineOption::Ttl),
    ("MAXLEN", DefineOption::MaxLen),
    ("PREPEND", DefineOption::Prepend),
    ("FLATTEN", DefineOption::Flatten),
    ("MAP", DefineOption::Map),
    ("OPCODE", DefineOption::OpCode),
]);

/// The text of `row[field]`, which must be there and not null.
fn required(row: &Map<String, Value>, field: &str, role: &str) -> Result<String> {
    row.get(field)
        .and_then(value_text)
        .ok_or_else(|| Error::Invalid(format!("the row has no '{field}' for {role}")))
}

/// A score: a JSON number, or a string holding one; finite.
pub fn score(value: Option<&Value>, field: &str) -> Result<f64> {
    let number = match value {
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    number
        .filter(|score| score.is_finite())
        .ok_or_else(|| Error::Invalid(format!("'{field}' must hold a finite number for the score")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn define(words: &[&str]) -> Result<SinkDefinition> {
        let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        SinkDefinition::parse(&raw)
    }

    fn row(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test rows are objects"),
        }
    }

    #[test]
    fn seed_003_tables() {
        let sessions = define(&[
            "TYPE",
            "string",
            "PREFIX",
            "session:",
            "KEYFIELD",
            "session_id",
            "TTL",
            "1800",
        ])
        .unwrap();
        let (key, write) = sessions
            .plan(&row(json!({"session_id": "s1", "user_id": "u1"})))
            .unwrap();
        assert_eq!(key, b"session:s1");
        assert_eq!(
            write,
            RowWrite::String(r#"{"session_id":"s1","user_id":"u1"}"#.into())
        );

        let inventory = define(&[
            "TYPE",
            "hash",
            "PREFIX",
            "stock:",
            "KEYFIELD",
            "warehouse",
            "FIELDFIELD",
            "sku",
        ])
        .unwrap();
        let (key, write) = inventory
            .plan(&row(
                json!({"sku": "A-1", "warehouse": "north", "quantity": 5}),
            ))
            .unwrap();
        assert_eq!(key, b"stock:north");
        assert_eq!(
            write,
            RowWrite::Hash(Fields::from_iter([(
                "A-1",
                r#"{"sku":"A-1","warehouse":"north","quantity":5}"#
            )]))
        );

        let events = define(&[
            "TYPE",
            "list",
            "PREFIX",
            "events:",
            "KEYFIELD",
            "event_type",
            "MAXLEN",
            "10000",
        ])
        .unwrap();
        let (key, _) = events
            .plan(&row(json!({"event_type": "click", "event_id": 9})))
            .unwrap();
        assert_eq!(key, b"events:click");

        let board = define(&[
            "TYPE",
            "zset",
            "PREFIX",
            "leaderboard:",
            "KEYFIELD",
            "game_id",
            "MEMBERFIELD",
            "player_id",
            "SCOREFIELD",
            "score",
            "MAXLEN",
            "100",
        ])
        .unwrap();
        let (key, write) = board
            .plan(&row(
                json!({"game_id": 7, "player_id": "p1", "score": 1500}),
            ))
            .unwrap();
        assert_eq!(key, b"leaderboard:7");
        assert_eq!(
            write,
            RowWrite::Zset {
                member: "p1".into(),
                score: 1500.0
            }
        );
    }

    #[test]
    fn seed_002_prefix_and_flattening() {
        let users = define(&[
            "TYPE",
            "hash",
            "PREFIX",
            "rudderstack:user:",
            "KEYFIELD",
            "userId",
        ])
        .unwrap();
        let (key, write) = users
            .plan(&row(json!({"userId": "user-3", "age": 23})))
            .unwrap();
        assert_eq!(key, b"rudderstack:user:user-3");
        assert_eq!(write, RowWrite::Hash(Fields::from_iter([("age", "23")])));
    }

    #[test]
    fn streams_map_and_take_op_codes_from_rows() {
        let invoices = define(&[
            "TYPE",
            "stream",
            "PREFIX",
            "invoice:events",
            "MAP",
            "InvoiceId:message_id",
            "Total",
            "OPCODE",
            "op",
        ])
        .unwrap();
        let (key, write) = invoices
            .plan(&row(json!({"InvoiceId": 1, "Total": 2.5, "op": "u"})))
            .unwrap();
        assert_eq!(key, b"invoice:events");
        assert_eq!(
            write,
            RowWrite::Stream(Fields::from_iter([
                ("message_id", "1"),
                ("Total", "2.5"),
                ("op_code", "u")
            ]))
        );
    }

    #[test]
    fn bad_definitions_and_rows() {
        assert!(define(&["PREFIX", "p"])
            .unwrap_err()
            .to_string()
            .contains("needs TYPE"));
        assert!(define(&["TYPE", "hash"])
            .unwrap_err()
            .to_string()
            .contains("needs PREFIX"));
        assert!(define(&["TYPE", "graph", "PREFIX", "p"]).is_err());
        assert_eq!(
            define(&["TYPE", "string", "PREFIX", "p", "PREPEND"])
                .unwrap_err()
                .to_string(),
            "PREPEND does not apply to a string sink"
        );
        assert!(define(&["TYPE", "zset", "PREFIX", "p"]).is_err());
        assert!(define(&[
            "TYPE",
            "hash",
            "PREFIX",
            "p",
            "FIELDFIELD",
            "f",
            "FLATTEN",
            "_"
        ])
        .is_err());
        assert!(define(&["TYPE", "list", "PREFIX", "p", "MAXLEN", "0"]).is_err());
        assert!(define(&["TYPE", "list", "PREFIX", "p", "BOGUS"]).is_err());

        let keyed = define(&["TYPE", "string", "PREFIX", "p:", "KEYFIELD", "id"]).unwrap();
        assert_eq!(
            keyed
                .plan(&row(json!({"other": 1})))
                .unwrap_err()
                .to_string(),
            "the row has no 'id' for the key"
        );
        assert!(keyed.plan(&row(json!({"id": null}))).is_err());
        let board = define(&["TYPE", "zset", "PREFIX", "b", "SCOREFIELD", "s"]).unwrap();
        for bad in [
            json!({"s": "high"}),
            json!({"s": null}),
            json!({}),
            json!({"s": [1]}),
        ] {
            assert!(board.plan(&row(bad)).is_err());
        }
        assert!(board.plan(&row(json!({"s": "12.5"}))).is_ok());
    }
}
