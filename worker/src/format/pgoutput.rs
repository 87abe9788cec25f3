//! PostgreSQL changes as pgoutput (protocol version 1, text values) sends them, turned
//! into the same change events as wal2json's ([`wal2json`](super::wal2json)): the same
//! JSON for every column type ([`postgres`](super::postgres)), the same key, the same
//! old row.
//!
//! pgoutput names a table's columns once, in a Relation message, and refers to them by
//! position after; their type names and the primary key come from the catalog (the
//! source reads them when a Relation arrives), so that values map exactly as wal2json's,
//! which names types the same way.

use std::collections::HashMap;

use pg_walstream::{LogicalReplicationMessage as Message, TupleData};
use serde_json::{Map, Value};

use super::postgres::{record_key, text_value, Change};
use super::{ChangeEvent, Op, Order, Origin};
use crate::error::{Error, Result};

/// A table as its Relation message and the catalog describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// In the order of the tuples' values.
    pub columns: Vec<Column>,
    /// The primary key's columns, in key order (the record key).
    pub primary_key: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// The type's name as `format_type` writes it (`numeric(10,2)`).
    pub kind: String,
    /// Part of the replica identity: an old row sent as its key ('K') holds only these.
    pub identity: bool,
}

impl Relation {
    /// `schema.table`, as jobs and routes name it.
    pub fn table(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The columns' names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|column| column.name.clone())
            .collect()
    }
}

/// The relations a replication session has described, by OID. pgoutput sends a table's
/// Relation before its first change in a session and again when its columns change.
#[derive(Debug, Default)]
pub struct Relations(HashMap<u32, Relation>);

impl Relations {
    pub fn insert(&mut self, oid: u32, relation: Relation) {
        self.0.insert(oid, relation);
    }

    pub fn get(&self, oid: u32) -> Result<&Relation> {
        self.0.get(&oid).ok_or_else(|| {
            Error::Event(format!(
                "pgoutput: a change of relation {oid}, which no Relation message described"
            ))
        })
    }
}

/// Which of a tuple's columns a row takes.
#[derive(Clone, Copy, PartialEq)]
enum Columns {
    All,
    /// The replica identity's only: an old row sent as a key ('K') has NULL for the rest.
    Identity,
}

/// A tuple's values as a row; unchanged TOASTed values ('u') are left out.
fn tuple_row(relation: &Relation, tuple: &TupleData, which: Columns) -> Result<Map<String, Value>> {
    if tuple.columns.len() != relation.columns.len() {
        return Err(Error::Event(format!(
            "pgoutput: a tuple of {} values for {}, which has {} columns",
            tuple.columns.len(),
            relation.table(),
            relation.columns.len()
        )));
    }
    let mut row = Map::new();
    for (column, data) in relation.columns.iter().zip(tuple.columns.iter()) {
        if data.is_unchanged() || (which == Columns::Identity && !column.identity) {
            continue;
        }
        let value = if data.is_null() {
            Value::Null
        } else {
            let text = std::str::from_utf8(data.as_bytes()).map_err(|_| {
                Error::Event(format!(
                    "pgoutput: column {} of {} is not UTF-8 text",
                    column.name,
                    relation.table()
                ))
            })?;
            text_value(&column.kind, text)?
        };
        row.insert(column.name.clone(), value);
    }
    Ok(row)
}

/// An old row: its key columns ('K'), or all of them ('O', REPLICA IDENTITY FULL).
fn old_row(relation: &Relation, tuple: &TupleData, key_type: char) -> Result<Map<String, Value>> {
    let which = if key_type == 'K' {
        Columns::Identity
    } else {
        Columns::All
    };
    tuple_row(relation, tuple, which)
}

/// Decodes a pgoutput message at `at` (its LSN). A Relation message must have been
/// added to `relations` (with the catalog's types) before the changes it describes.
/// An update lacks its unchanged TOASTed columns, as wal2json's does.
pub fn decode(message: &Message, relations: &Relations, at: Order) -> Result<Change> {
    let (relation_id, op, row, before) = match message {
        Message::Insert { relation_id, tuple } => {
            let row = tuple_row(relations.get(*relation_id)?, tuple, Columns::All)?;
            (*relation_id, Op::Create, row, None)
        }
        Message::Update {
            relation_id,
            old_tuple,
            new_tuple,
            key_type,
        } => {
            let relation = relations.get(*relation_id)?;
            let before = match (old_tuple, key_type) {
                (Some(tuple), Some(key_type)) => Some(old_row(relation, tuple, *key_type)?),
                _ => None,
            };
            let row = tuple_row(relation, new_tuple, Columns::All)?;
            (*relation_id, Op::Update, row, before)
        }
        Message::Delete {
            relation_id,
            old_tuple,
            key_type,
        } => {
            let row = old_row(relations.get(*relation_id)?, old_tuple, *key_type)?;
            (*relation_id, Op::Delete, row, None)
        }
        Message::Truncate { relation_ids, .. } => {
            let tables: Vec<String> = relation_ids
                .iter()
                .map(|oid| relations.get(*oid).map(Relation::table))
                .collect::<Result<_>>()?;
            return Ok(Change::Truncate {
                table: tables.join(", "),
            });
        }
        Message::Begin { final_lsn, .. } => {
            return Ok(Change::Begin {
                commit: Order::from_lsn(*final_lsn as i64),
            })
        }
        Message::Commit { .. } => return Ok(Change::Commit),
        _ => return Ok(Change::Other),
    };
    let relation = relations.get(relation_id)?;
    Ok(Change::Row {
        table: relation.table(),
        event: Box::new(ChangeEvent {
            key: record_key(&row, relation.primary_key.iter().map(String::as_str)),
            before,
            order: Some(at),
            origin: Origin {
                schema: Some(relation.schema.clone()),
                table: Some(relation.name.clone()),
                ..Origin::default()
            },
            ..ChangeEvent::new(op, row)
        }),
    })
}

#[cfg(test)]
mod tests {
    use pg_walstream::ColumnData;
    use serde_json::json;

    use super::*;

    fn invoice() -> Relations {
        let column = |name: &str, kind: &str, identity: bool| Column {
            name: name.into(),
            kind: kind.into(),
            identity,
        };
        let mut relations = Relations::default();
        relations.insert(
            16384,
            Relation {
                schema: "public".into(),
                name: "invoice".into(),
                columns: vec![
                    column("InvoiceId", "integer", true),
                    column("Total", "numeric(10,2)", false),
                    column("Paid", "boolean", false),
                    column("Notes", "text", false),
                ],
                primary_key: vec!["InvoiceId".into()],
            },
        );
        relations
    }

    fn tuple(values: &[Option<&str>]) -> TupleData {
        TupleData::new(
            values
                .iter()
                .map(|value| match value {
                    Some("<unchanged>") => ColumnData::unchanged(),
                    Some(text) => ColumnData::text(text.as_bytes().to_vec()),
                    None => ColumnData::null(),
                })
                .collect(),
        )
    }

    fn row(change: Change) -> (String, ChangeEvent) {
        match change {
            Change::Row { table, event } => (table, *event),
            other => panic!("a row change, not {other:?}"),
        }
    }

    /// Values in PostgreSQL's text map as wal2json's JSON does; the key is the primary
    /// key; an old row sent as its key holds the key only; unchanged TOAST is left out.
    #[test]
    fn inserts_updates_and_deletes() {
        let relations = invoice();
        let insert = Message::Insert {
            relation_id: 16384,
            tuple: tuple(&[Some("1"), Some("3.90"), Some("t"), None]),
        };
        let (table, event) = row(decode(&insert, &relations, Order::from_lsn(42)).unwrap());
        assert_eq!(table, "public.invoice");
        assert_eq!(
            (event.op, event.order),
            (Op::Create, Some(Order::from_lsn(42)))
        );
        assert_eq!(
            Value::Object(event.row),
            json!({"InvoiceId": 1, "Total": "3.90", "Paid": true, "Notes": null})
        );
        assert_eq!(event.key.map(Value::Object), Some(json!({"InvoiceId": 1})));
        assert_eq!(event.origin.table.as_deref(), Some("invoice"));

        let update = Message::Update {
            relation_id: 16384,
            old_tuple: Some(tuple(&[Some("1"), None, None, None])),
            new_tuple: tuple(&[Some("2"), Some("4.00"), Some("f"), Some("<unchanged>")]),
            key_type: Some('K'),
        };
        let (_, event) = row(decode(&update, &relations, Order::from_lsn(43)).unwrap());
        assert_eq!(
            Value::Object(event.row),
            json!({"InvoiceId": 2, "Total": "4.00", "Paid": false})
        );
        assert_eq!(
            event.before.map(Value::Object),
            Some(json!({"InvoiceId": 1}))
        );

        let delete = Message::Delete {
            relation_id: 16384,
            old_tuple: tuple(&[Some("2"), Some("4.00"), Some("f"), Some("x")]),
            key_type: 'O',
        };
        let (_, event) = row(decode(&delete, &relations, Order::from_lsn(44)).unwrap());
        assert_eq!(event.op, Op::Delete);
        assert_eq!(
            Value::Object(event.row),
            json!({"InvoiceId": 2, "Total": "4.00", "Paid": false, "Notes": "x"})
        );
    }

    #[test]
    fn truncates_and_what_cannot_be_read() {
        let relations = invoice();
        let truncate = Message::Truncate {
            relation_ids: vec![16384],
            flags: 0,
        };
        assert_eq!(
            decode(&truncate, &relations, Order::from_lsn(1)).unwrap(),
            Change::Truncate {
                table: "public.invoice".into()
            }
        );
        let unknown = Message::Insert {
            relation_id: 7,
            tuple: tuple(&[Some("1")]),
        };
        assert!(decode(&unknown, &relations, Order::from_lsn(1))
            .unwrap_err()
            .to_string()
            .contains("relation 7"));
        let short = Message::Insert {
            relation_id: 16384,
            tuple: tuple(&[Some("1")]),
        };
        assert!(decode(&short, &relations, Order::from_lsn(1)).is_err());
        let not_text = Message::Insert {
            relation_id: 16384,
            tuple: TupleData::new(vec![
                ColumnData::text(vec![b'1']),
                ColumnData::null(),
                ColumnData::null(),
                ColumnData::text(vec![0xff, 0xfe]),
            ]),
        };
        assert!(decode(&not_text, &relations, Order::from_lsn(1))
            .unwrap_err()
            .to_string()
            .contains("Notes"));
    }

    /// An Insert message as pgoutput writes it: relation 16384, four text columns.
    fn insert_bytes() -> Vec<u8> {
        let mut bytes = vec![b'I'];
        bytes.extend(16384u32.to_be_bytes());
        bytes.push(b'N');
        bytes.extend(4u16.to_be_bytes());
        for value in ["1", "3.90", "t", "a note"] {
            bytes.push(b't');
            bytes.extend((value.len() as u32).to_be_bytes());
            bytes.extend(value.as_bytes());
        }
        bytes
    }

    /// Whatever bytes arrive — cut short, flipped, random — parsing and decoding give a
    /// change or an error, never a panic.
    #[test]
    fn any_bytes_decode_or_fail_cleanly() {
        use pg_walstream::LogicalReplicationParser;
        use rand::{Rng, SeedableRng};

        let relations = invoice();
        let mut parser = LogicalReplicationParser::with_protocol_version(1);
        let valid = insert_bytes();
        let message = parser.parse_wal_message(&valid).unwrap().message;
        let (_, event) = row(decode(&message, &relations, Order::from_lsn(1)).unwrap());
        assert_eq!(event.row["Notes"], "a note");

        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for round in 0..20_000 {
            let mut bytes = valid.clone();
            match round % 3 {
                0 => bytes.truncate(rng.random_range(0..valid.len())),
                1 => {
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..bytes.len());
                        bytes[at] = rng.random();
                    }
                }
                _ => {
                    bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
                    if let Some(first) = bytes.first_mut() {
                        *first = *b"IUDTRBCYOM".get(round % 10).unwrap_or(&b'I');
                    }
                }
            }
            let mut parser = LogicalReplicationParser::with_protocol_version(1);
            if let Ok(parsed) = parser.parse_wal_message(&bytes) {
                let _ = decode(&parsed.message, &relations, Order::from_lsn(1));
            }
        }
    }
}
