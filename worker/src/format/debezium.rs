//! Debezium's change events: `{before, after, source, op, ts_ms}`, with or without the
//! `{schema, payload}` wrapper, as Debezium Server's Redis sink writes them (keyed by the
//! record's key as JSON), and written back in that shape for a source that reads no
//! stream (its dead letters).

use serde_json::{Map, Value};

use super::{ChangeEvent, Decoded, Op, Order};
use crate::error::{Error, Result};

/// Whether a field name is a record key, as Debezium Server names an entry's field.
pub fn is_key(name: &[u8]) -> bool {
    name.first().is_some_and(|b| matches!(b, b'{' | b'['))
        && serde_json::from_slice::<Value>(name).is_ok()
}

/// Whether a value is what Debezium Server writes for a tombstone besides JSON null: an
/// empty value, or its default `redis.null.value`.
pub fn is_null_value(value: &[u8]) -> bool {
    value.is_empty() || value == b"default"
}

/// `{schema, payload}` → `payload`.
pub fn unwrap_payload(mut object: Map<String, Value>) -> Map<String, Value> {
    if object.len() == 2 && object.contains_key("schema") {
        if let Some(Value::Object(payload)) = object.remove("payload") {
            return payload;
        }
    }
    object
}

pub fn is_change_event(event: &Map<String, Value>) -> bool {
    event.contains_key("after") || event.contains_key("before")
}

/// The change an event with op `code` makes.
pub fn change(mut event: Map<String, Value>, code: &str) -> Result<Decoded> {
    let op =
        Op::parse(code).ok_or_else(|| Error::Event(format!("unknown Debezium op '{code}'")))?;
    let order = event
        .get("source")
        .and_then(|source| source.get("lsn"))
        .and_then(Value::as_i64)
        .map(Order::from_lsn);
    let side = if op == Op::Delete { "before" } else { "after" };
    let row = match event.remove(side) {
        Some(Value::Object(row)) => row,
        _ => {
            return Err(Error::Event(format!(
                "a Debezium '{code}' event without '{side}' (for deletes, set REPLICA IDENTITY so that 'before' has the key)"
            )))
        }
    };
    Ok(Decoded::Change(ChangeEvent { op, row, order }))
}

impl ChangeEvent {
    /// This change as Debezium Server writes it, `{before, after, source, op, ts_ms}`,
    /// with `source` as the connector gives it: how a source that reads no stream hands a
    /// change on (its dead letters), ready to be added to a `data:` stream as is.
    pub fn to_debezium(&self, source: Map<String, Value>) -> Value {
        let row = Value::Object(self.row.clone());
        let (before, after) = if self.op == Op::Delete {
            (row, Value::Null)
        } else {
            (Value::Null, row)
        };
        serde_json::json!({
            "before": before,
            "after": after,
            "source": source,
            "op": self.op.code(),
            "ts_ms": redsink_core::time::now_ms(),
        })
    }
}
