//! The envelope's schema, read once per distinct schema: Debezium's JSON converter writes
//! the same schema (a few kilobytes: the row twice, the source block) before every event
//! of a table, and building it as a tree for each event costs several times the event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// What redsink reads of an envelope's schema: its name (which tells heartbeats and
/// transaction markers) and the field schemas of the row's two sides.
#[derive(Debug, Default)]
pub struct Schema {
    pub name: String,
    before: Vec<Value>,
    after: Vec<Value>,
}

impl Schema {
    pub fn of(schema: &Value) -> Schema {
        let side = |name: &str| -> Vec<Value> {
            schema
                .get("fields")
                .and_then(Value::as_array)
                .and_then(|fields| {
                    fields
                        .iter()
                        .find(|field| field.get("field").and_then(Value::as_str) == Some(name))
                })
                .and_then(|side| side.get("fields"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Schema {
            name: schema
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            before: side("before"),
            after: side("after"),
        }
    }

    /// The field schemas of the `before` or `after` struct.
    pub fn row(&self, side: &str) -> &[Value] {
        if side == "before" {
            &self.before
        } else {
            &self.after
        }
    }
}

/// The schemas seen.
#[derive(Debug, Default)]
pub struct Schemas {
    seen: Mutex<Seen>,
}

/// Schemas by their text, and the bytes of those texts.
#[derive(Debug, Default)]
struct Seen {
    by_text: HashMap<Box<str>, Arc<Schema>>,
    bytes: usize,
}

/// Distinct schemas kept (a table's schema changes with its columns; a worker reads a
/// few hundred tables at most), and their bytes. Past either, the cache starts again.
const MAX_SCHEMAS: usize = 1024;
const MAX_SCHEMA_BYTES: usize = 64 << 20;

impl Schemas {
    /// The schema whose JSON text is `text`, read on its first sight.
    pub fn get(&self, text: &str) -> Arc<Schema> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(schema) = seen.by_text.get(text) {
            return Arc::clone(schema);
        }
        let schema = Arc::new(
            serde_json::from_str::<Value>(text)
                .map(|schema| Schema::of(&schema))
                .unwrap_or_default(),
        );
        if seen.by_text.len() >= MAX_SCHEMAS || seen.bytes + text.len() > MAX_SCHEMA_BYTES {
            *seen = Seen::default();
        }
        seen.bytes += text.len();
        seen.by_text.insert(text.into(), Arc::clone(&schema));
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_is_read_once_and_its_sides_found() {
        let text = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","field":"id"}],"field":"before"},{"type":"struct","fields":[{"type":"int32","field":"id"},{"type":"string","field":"n"}],"field":"after"}],"name":"db.public.t.Envelope"}"#;
        let schemas = Schemas::default();
        let first = schemas.get(text);
        assert!(Arc::ptr_eq(&first, &schemas.get(text)));
        assert_eq!(first.name, "db.public.t.Envelope");
        assert_eq!(
            (first.row("before").len(), first.row("after").len()),
            (1, 2)
        );
        let broken = schemas.get("{not json");
        assert_eq!((broken.name.as_str(), broken.row("after").len()), ("", 0));
    }
}
