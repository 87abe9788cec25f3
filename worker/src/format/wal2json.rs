//! PostgreSQL changes as wal2json (format version 2) writes them, turned into the same
//! change events Debezium would produce; column values as [`postgres`](super::postgres)
//! maps them.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::postgres::{record_key, value, Change};
use super::{ChangeEvent, Op, Order, Origin};
use crate::error::{Error, Result};

/// One wal2json format-2 message.
#[derive(Debug, Deserialize)]
struct Message<'a> {
    action: &'a str,
    /// On `B`: the transaction's commit LSN.
    lsn: Option<&'a str>,
    schema: Option<String>,
    table: Option<String>,
    #[serde(borrow, default)]
    columns: Vec<Column<'a>>,
    #[serde(borrow, default)]
    identity: Vec<Column<'a>>,
    /// The primary key's columns (`include-pk`).
    #[serde(default)]
    pk: Vec<KeyColumn>,
}

#[derive(Debug, Deserialize)]
struct KeyColumn {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Column<'a> {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    value: &'a RawValue,
}

/// Columns as a row, their values mapped by type.
fn columns_row(columns: &[Column]) -> Result<Map<String, Value>> {
    columns
        .iter()
        .map(|column| {
            Ok((
                column.name.clone(),
                value(&column.kind, column.value.get())?,
            ))
        })
        .collect()
}

/// Decodes a wal2json format-2 message at `at` (its LSN).
pub fn decode(data: &str, at: Order) -> Result<Change> {
    let message: Message =
        serde_json::from_str(data).map_err(|e| Error::Event(format!("wal2json message: {e}")))?;
    let table = || {
        format!(
            "{}.{}",
            message.schema.as_deref().unwrap_or("public"),
            message.table.as_deref().unwrap_or("")
        )
    };
    let op = match message.action {
        "I" => Op::Create,
        "U" => Op::Update,
        "D" => Op::Delete,
        "T" => return Ok(Change::Truncate { table: table() }),
        "B" => {
            let commit = message.lsn.and_then(Order::parse_lsn).ok_or_else(|| {
                Error::Event(format!("wal2json begin message without an LSN: {data}"))
            })?;
            return Ok(Change::Begin { commit });
        }
        "C" => return Ok(Change::Commit),
        _ => return Ok(Change::Other),
    };
    // A delete carries the old key as `identity` (all columns with REPLICA IDENTITY FULL),
    // an update its old row there with REPLICA IDENTITY FULL.
    let row = if op == Op::Delete {
        columns_row(&message.identity)?
    } else {
        columns_row(&message.columns)?
    };
    let before = if op == Op::Update && !message.identity.is_empty() {
        Some(columns_row(&message.identity)?)
    } else {
        None
    };
    Ok(Change::Row {
        table: table(),
        event: Box::new(ChangeEvent {
            key: record_key(&row, message.pk.iter().map(|column| column.name.as_str())),
            before,
            order: Some(at),
            origin: Origin {
                schema: message.schema.clone(),
                table: message.table.clone(),
                ..Origin::default()
            },
            ..ChangeEvent::new(op, row)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inserts_updates_deletes_and_truncates() {
        let insert = r#"{"action":"I","schema":"public","table":"invoice","pk":[{"name":"InvoiceId","type":"integer"}],"columns":[{"name":"InvoiceId","type":"integer","value":1},{"name":"Total","type":"numeric(10,2)","value":3.96},{"name":"BillingCountry","type":"character varying(40)","value":"Germany"}]}"#;
        let Change::Row { table, event } = decode(insert, Order::from_lsn(42)).unwrap() else {
            panic!("a row");
        };
        assert_eq!(table, "public.invoice");
        assert_eq!(event.op, Op::Create);
        assert_eq!(event.order, Some(Order::from_lsn(42)));
        assert_eq!(event.key, record_key(&event.row, ["InvoiceId"]));
        assert_eq!(
            Value::Object(event.key.clone().unwrap()),
            json!({"InvoiceId": 1})
        );
        assert_eq!(
            Value::Object(event.row),
            json!({"InvoiceId": 1, "Total": "3.96", "BillingCountry": "Germany"})
        );
        let delete = r#"{"action":"D","schema":"public","table":"invoice","identity":[{"name":"InvoiceId","type":"integer","value":1}]}"#;
        let Change::Row { event, .. } = decode(delete, Order::from_lsn(43)).unwrap() else {
            panic!("a row");
        };
        assert_eq!(
            (event.op, Value::Object(event.row)),
            (Op::Delete, json!({"InvoiceId": 1}))
        );
        assert_eq!(
            decode(
                r#"{"action":"T","schema":"public","table":"invoice"}"#,
                Order::from_lsn(44)
            )
            .unwrap(),
            Change::Truncate {
                table: "public.invoice".into()
            }
        );
        assert_eq!(
            decode(
                r#"{"action":"B","lsn":"0/152D250","nextlsn":"0/152D280"}"#,
                Order::from_lsn(45)
            )
            .unwrap(),
            Change::Begin {
                commit: Order::from_lsn(0x152_D250)
            }
        );
        assert_eq!(
            decode(r#"{"action":"C","lsn":"0/152D250"}"#, Order::from_lsn(45)).unwrap(),
            Change::Commit
        );
        assert_eq!(
            decode(r#"{"action":"M","content":"x"}"#, Order::from_lsn(45)).unwrap(),
            Change::Other
        );
        assert!(decode("{broken", Order::from_lsn(46)).is_err());
    }
}
