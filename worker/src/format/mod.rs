//! What the bytes of a change mean, apart from where they come from: the change event
//! every source hands on ([`ChangeEvent`]), and the formats it is read from —
//! Debezium's ([`debezium`]), plain JSON ([`json`]), PostgreSQL's pgoutput and wal2json
//! messages ([`pgoutput`], [`wal2json`]) and column values ([`postgres`]). A source (a transport) picks the
//! format; a new format goes here, beside these.
//!
//! A stream entry's fields are read as Debezium Server's Redis sink writes them — one
//! field: the record's key (JSON) → the change event (JSON `{before, after, source, op,
//! ts_ms}`, with or without the `{schema, payload}` wrapper); a tombstone after a delete
//! carries no event — or else as plain JSON: one field holding a JSON object, or
//! field/value pairs — an upsert.

pub mod debezium;
pub mod json;
pub mod pgoutput;
pub mod postgres;
pub mod wal2json;

use serde_json::{Map, Value};

pub use debezium::Schemas;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `c`: a row inserted.
    Create,
    /// `u`: a row updated.
    Update,
    /// `d`: a row deleted.
    Delete,
    /// `r`: a row read by a snapshot.
    Read,
}

impl Op {
    /// The code written as `op_code` on stream outputs.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }

    pub fn parse(code: &str) -> Option<Op> {
        match code {
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "r" => Some(Op::Read),
            _ => None,
        }
    }
}

/// One change to one row.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    /// The row as it is now (for a delete: as it was).
    pub row: Map<String, Value>,
    /// Where the change sits in its database's order, when the event says.
    pub order: Option<Order>,
    /// The row holds only part of the columns (the source did not capture the others):
    /// those it lacks keep their stored values, and its nulls remove theirs.
    pub partial: bool,
    /// The row before the change, where the source gives it (Debezium's `before`).
    pub before: Option<Map<String, Value>>,
    /// The record's key columns (the primary key), where the source gives them.
    pub key: Option<Map<String, Value>>,
    /// Where the row lives, as far as the source says.
    pub origin: Origin,
}

/// A row's database, schema and table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    pub db: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
}

impl ChangeEvent {
    /// A change of `row` and nothing more known about it.
    pub fn new(op: Op, row: Map<String, Value>) -> ChangeEvent {
        ChangeEvent {
            op,
            row,
            order: None,
            partial: false,
            before: None,
            key: None,
            origin: Origin::default(),
        }
    }
}

/// A change's place in its source's order of changes, as one number that grows with it:
/// the version stored with each key, so that a replay or a late older change writes
/// nothing. A connector's own ordering maps onto it by a constructor here — PostgreSQL's
/// LSN, a stream entry's id — where it never goes back (format/debezium/connectors.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order(i64);

impl Order {
    /// A PostgreSQL LSN as a number (Debezium's `source.lsn`).
    pub fn from_lsn(lsn: i64) -> Order {
        Order(lsn)
    }

    /// A PostgreSQL LSN as PostgreSQL writes it, `X/Y` in hex.
    pub fn parse_lsn(text: &str) -> Option<Order> {
        let (high, low) = text.split_once('/')?;
        let (high, low) = (
            i64::from_str_radix(high, 16).ok()?,
            i64::from_str_radix(low, 16).ok()?,
        );
        Some(Order((high << 32) | low))
    }

    /// A stream entry id `ms-seq`, as `ms * 10^6 + seq`: the order of one stream's entries,
    /// for changes that carry no order of their own.
    pub fn from_stream_id(id: &str) -> Option<Order> {
        let (ms, seq) = id.split_once('-')?;
        let (ms, seq): (i64, i64) = (ms.parse().ok()?, seq.parse().ok()?);
        // A sequence past a million (in one millisecond) would tie with the next ms's.
        if seq > 999_999 {
            return None;
        }
        ms.checked_mul(1_000_000)?.checked_add(seq).map(Order)
    }

    /// The number written as a key's version.
    pub fn version(self) -> i64 {
        self.0
    }
}

/// What an entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Change(ChangeEvent),
    /// A Debezium change without the `{schema, payload}` envelope: its values as they
    /// came, since nothing says what they are (a decimal stays base64).
    Untyped(ChangeEvent),
    /// Acknowledged, never written.
    Skip(Skip),
}

/// Entries that change no row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A Debezium tombstone: the delete before it did the work.
    Tombstone,
    /// A Debezium heartbeat.
    Heartbeat,
    /// A transaction's BEGIN or END (Debezium's transaction metadata).
    Transaction,
    /// A Debezium TRUNCATE (`op: t`): the keys it empties cannot be listed.
    Truncate,
    /// A PostgreSQL logical decoding message Debezium passes on (`op: m`).
    Message,
}

impl Skip {
    /// The name metrics and logs give it.
    pub fn name(self) -> &'static str {
        match self {
            Skip::Tombstone => "tombstone",
            Skip::Heartbeat => "heartbeat",
            Skip::Transaction => "transaction",
            Skip::Truncate => "truncate",
            Skip::Message => "message",
        }
    }
}

/// Decodes a stream entry's field/value pairs: Debezium's (its envelopes' schemas read
/// once each, into `schemas`), else plain JSON.
pub fn decode(fields: &[(Vec<u8>, Vec<u8>)], schemas: &Schemas) -> Result<Decoded> {
    if let Some(decoded) = debezium::entry(fields, schemas) {
        return decoded;
    }
    match fields {
        [] => Err(Error::Event("the entry has no fields".into())),
        [(name, value)] => match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(object)) => debezium::object(object),
            _ => Ok(Decoded::Change(json::upsert(json::row_from_pairs(&[(
                name.clone(),
                value.clone(),
            )])?))),
        },
        pairs => Ok(Decoded::Change(json::upsert(json::row_from_pairs(pairs)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Decoded> {
        super::decode(fields, &Schemas::default())
    }

    fn entry(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn row(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("rows are objects"),
        }
    }

    #[test]
    fn debezium_events_with_and_without_the_schema_wrapper() {
        let event = r#"{"before":null,"after":{"InvoiceId":1,"Total":"3.96"},"source":{"lsn":24023128,"table":"invoice"},"op":"c","ts_ms":1}"#;
        let expected = ChangeEvent {
            order: Some(Order::from_lsn(24_023_128)),
            key: Some(row(json!({"InvoiceId": 1}))),
            origin: Origin {
                table: Some("invoice".into()),
                ..Origin::default()
            },
            ..ChangeEvent::new(Op::Create, row(json!({"InvoiceId":1,"Total":"3.96"})))
        };
        assert_eq!(
            decode(&entry(&[(r#"{"InvoiceId":1}"#, event)])).unwrap(),
            Decoded::Untyped(expected.clone())
        );
        let wrapped = format!(r#"{{"schema":{{"type":"struct"}},"payload":{event}}}"#);
        let key = r#"{"schema":{},"payload":{"InvoiceId":1}}"#;
        assert_eq!(
            decode(&entry(&[(key, &wrapped)])).unwrap(),
            Decoded::Change(expected)
        );
    }

    #[test]
    fn changes_written_as_debezium_events_read_back_the_same() {
        for op in [Op::Create, Op::Update, Op::Delete, Op::Read] {
            let change = ChangeEvent {
                order: Some(Order::from_lsn(42)),
                key: Some(row(json!({"InvoiceId": 1}))),
                origin: Origin {
                    table: Some("invoice".into()),
                    ..Origin::default()
                },
                ..ChangeEvent::new(op, row(json!({"InvoiceId": 1, "Total": "3.96"})))
            };
            let source = row(json!({"connector": "postgresql", "table": "invoice", "lsn": 42}));
            let event = change.to_debezium(source).to_string();
            assert_eq!(
                decode(&entry(&[(r#"{"InvoiceId":1}"#, &event)])).unwrap(),
                Decoded::Untyped(change)
            );
        }
    }

    #[test]
    fn deletes_use_before_and_tombstones_are_skipped() {
        let delete = r#"{"before":{"InvoiceId":1},"after":null,"source":{},"op":"d"}"#;
        let Decoded::Untyped(change) = decode(&entry(&[(r#"{"InvoiceId":1}"#, delete)])).unwrap()
        else {
            panic!("a delete is a change");
        };
        assert_eq!(
            (change.op, change.row),
            (Op::Delete, row(json!({"InvoiceId":1})))
        );
        for tombstone in ["", "default", "null"] {
            assert_eq!(
                decode(&entry(&[(r#"{"InvoiceId":1}"#, tombstone)])).unwrap(),
                Decoded::Skip(Skip::Tombstone)
            );
        }
        let no_before = r#"{"before":null,"after":null,"op":"d"}"#;
        assert!(decode(&entry(&[("{}", no_before)]))
            .unwrap_err()
            .to_string()
            .contains("REPLICA IDENTITY"));
        assert!(decode(&entry(&[("{}", r#"{"after":{},"op":"x"}"#)])).is_err());
        let broken = decode(&entry(&[(r#"{"InvoiceId":2}"#, "{not json")])).unwrap_err();
        assert!(
            broken
                .to_string()
                .starts_with(r#"the change event of key {"InvoiceId":2} is not valid JSON"#),
            "{broken}"
        );
    }

    #[test]
    fn plain_json_in_one_field_or_as_pairs() {
        let body = decode(&entry(&[("body", r#"{"deviceId":"d1","temp":21.5}"#)])).unwrap();
        assert_eq!(
            body,
            Decoded::Change(ChangeEvent::new(
                Op::Create,
                row(json!({"deviceId":"d1","temp":21.5}))
            ))
        );
        let pairs = decode(&entry(&[("deviceId", "d1"), ("temp", "21.5")])).unwrap();
        assert_eq!(
            pairs,
            Decoded::Change(ChangeEvent::new(
                Op::Create,
                row(json!({"deviceId":"d1","temp":"21.5"}))
            ))
        );
        let single_text = decode(&entry(&[("name", "plain text")])).unwrap();
        assert!(
            matches!(single_text, Decoded::Change(ChangeEvent { ref row, .. }) if row["name"] == "plain text")
        );
        assert!(decode(&[]).is_err());
        assert!(decode(&[(b"a".to_vec(), vec![0xff]), (b"b".to_vec(), b"x".to_vec())]).is_err());
    }

    #[test]
    fn orders_of_each_kind() {
        let lsn = |text| Order::parse_lsn(text).map(Order::version);
        assert_eq!(lsn("0/16B3748"), Some(0x16B_3748));
        assert_eq!(lsn("1/0"), Some(1 << 32));
        assert!(Order::parse_lsn("1/0") > Order::parse_lsn("0/FFFFFFFF"));
        assert_eq!(lsn("nonsense"), None);
        let id = |text| Order::from_stream_id(text).map(Order::version);
        assert_eq!(id("1795290468019-0"), Some(1_795_290_468_019_000_000));
        assert!(id("5-1") > id("5-0"));
        assert!(id("6-0") > id("5-999"));
        assert_eq!(id("x"), None);
        assert_eq!(id("99999999999999999-0"), None);
        assert_eq!(id("5-1000000"), None);
    }
}
