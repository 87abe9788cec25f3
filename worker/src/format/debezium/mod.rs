//! Debezium's change events as Debezium Server's Redis sink writes them, and written back
//! in that shape for a source that reads no stream (its dead letters).
//!
//! The sink writes an entry in one of two formats: `compact` (the default) — one field,
//! the record key's JSON (or `default`, its `redis.null.key`, for a table without a
//! primary key) → the value's JSON; `extended` — fields `key` and `value`, and one field
//! per record header, named in capitals. A value is a change event `{before, after,
//! source, op, ts_ms}`, with or without the `{schema, payload}` envelope; a tombstone
//! (null, empty or `default`, its `redis.null.value`), a heartbeat or a transaction's
//! BEGIN/END writes nothing. With the envelope each column is decoded by its logical
//! type ([`types`]); without it values pass as they came.

mod connectors;
mod schema;
mod types;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use schema::Schema;
pub use schema::Schemas;

use super::{json, ChangeEvent, Decoded, Op, Origin, Skip};
use crate::error::{Error, Result};

/// The change an entry in one of the sink's formats holds; `None` when the entry is in
/// neither (plain JSON, for instance).
pub fn entry(fields: &[(Vec<u8>, Vec<u8>)], schemas: &Schemas) -> Option<Result<Decoded>> {
    let (key, value) = match fields {
        [(key, value)] if is_key(key, value) => (key, value),
        _ => extended(fields)?,
    };
    Some(message(key, value, schemas))
}

/// `key`, `value` and header fields (named in capitals), the key a record key.
fn extended(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<(&Vec<u8>, &Vec<u8>)> {
    let (mut key, mut value) = (None, None);
    for (name, content) in fields {
        match name.as_slice() {
            b"key" if key.is_none() => key = Some(content),
            b"value" if value.is_none() => value = Some(content),
            header if !header.is_empty() && !header.iter().any(u8::is_ascii_lowercase) => {}
            _ => return None,
        }
    }
    let (key, value) = (key?, value?);
    is_key(key, value).then_some((key, value))
}

/// Whether a field name is a record key as the sink writes it: JSON (an object, or an
/// array), or `default` (no key) before an event.
fn is_key(name: &[u8], value: &[u8]) -> bool {
    match name.first() {
        Some(b'{' | b'[') => serde_json::from_slice::<serde::de::IgnoredAny>(name).is_ok(),
        _ => name == NULL && value.first() == Some(&b'{'),
    }
}

/// What the sink writes for a null key or value (`redis.null.key`, `redis.null.value`).
const NULL: &[u8] = b"default";

/// A value with the envelope, its schema left as text (to be looked up, not built).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enveloped<'a> {
    #[serde(borrow)]
    schema: &'a RawValue,
    payload: Map<String, Value>,
}

/// The message a record's value holds.
fn message(key: &[u8], value: &[u8], schemas: &Schemas) -> Result<Decoded> {
    if value.is_empty() || value == NULL {
        return Ok(Decoded::Skip(Skip::Tombstone));
    }
    if let Ok(enveloped) = serde_json::from_slice::<Enveloped>(value) {
        let schema = schemas.get(enveloped.schema.get());
        return read(enveloped.payload, Some(&schema), Some(key));
    }
    let object = match serde_json::from_slice::<Value>(value) {
        Ok(Value::Object(object)) => object,
        Ok(Value::Null) => return Ok(Decoded::Skip(Skip::Tombstone)),
        Ok(other) => {
            return Err(Error::Event(format!(
                "the value of key {} is {other}, not a change event",
                String::from_utf8_lossy(key)
            )))
        }
        Err(error) => {
            return Err(Error::Event(format!(
                "the change event of key {} is not valid JSON: {error}",
                String::from_utf8_lossy(key)
            )))
        }
    };
    // An envelope whose payload is not an object is no change event: read it bare.
    read(object, None, Some(key))
}

/// A JSON object in a plain field (`body`, say): Debezium's change event if it is one,
/// else a row to upsert.
pub fn object(object: Map<String, Value>) -> Result<Decoded> {
    let (schema, payload) = envelope(object);
    read(payload, schema.as_ref().map(Schema::of).as_ref(), None)
}

/// A payload with its schema, if it came with one, under its record key, if any: a
/// change event, a heartbeat or transaction marker (known bare, by its shape, only under
/// a record key), or else a row to upsert.
fn read(
    payload: Map<String, Value>,
    schema: Option<&Schema>,
    key: Option<&[u8]>,
) -> Result<Decoded> {
    if let Some(skip) = skipped(schema, &payload, key.is_some()) {
        return Ok(Decoded::Skip(skip));
    }
    // A TRUNCATE or a logical decoding message carries no row.
    let from_connector = payload.contains_key("source");
    match payload.get("op").and_then(Value::as_str) {
        Some("t") if from_connector => return Ok(Decoded::Skip(Skip::Truncate)),
        Some("m") if from_connector => return Ok(Decoded::Skip(Skip::Message)),
        _ => {}
    }
    match payload.get("op").and_then(Value::as_str).map(str::to_owned) {
        Some(code) if is_change_event(&payload) => change(payload, schema, &code, key),
        _ => Ok(Decoded::Change(json::upsert(payload))),
    }
}

/// `{schema, payload}` → (the schema, the payload); anything else is a bare payload.
fn envelope(mut object: Map<String, Value>) -> (Option<Value>, Map<String, Value>) {
    if object.len() == 2 && object.contains_key("schema") {
        if let Some(Value::Object(payload)) = object.remove("payload") {
            return (object.remove("schema"), payload);
        }
    }
    (None, object)
}

/// Heartbeats and transaction markers, by their schema's name or, bare and `keyed`,
/// their shape.
fn skipped(schema: Option<&Schema>, payload: &Map<String, Value>, keyed: bool) -> Option<Skip> {
    let name = schema.map_or("", |schema| schema.name.as_str());
    let bare = keyed && schema.is_none();
    if name == "io.debezium.connector.common.Heartbeat"
        || (bare && payload.len() == 1 && payload.contains_key("ts_ms"))
    {
        return Some(Skip::Heartbeat);
    }
    let marker = bare
        && payload
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|status| status == "BEGIN" || status == "END")
        && payload.contains_key("id")
        && !payload.contains_key("op");
    (name.ends_with("TransactionMetadataValue") || marker).then_some(Skip::Transaction)
}

/// A change event has a row (before or after) or, from MongoDB, what an update did.
fn is_change_event(event: &Map<String, Value>) -> bool {
    ["after", "before", "updateDescription", "patch"]
        .iter()
        .any(|side| event.contains_key(*side))
}

/// The change an event with op `code` makes, its columns decoded by `schema` (the
/// envelope's) when there is one.
fn change(
    mut event: Map<String, Value>,
    schema: Option<&Schema>,
    code: &str,
    key: Option<&[u8]>,
) -> Result<Decoded> {
    let op =
        Op::parse(code).ok_or_else(|| Error::Event(format!("unknown Debezium op '{code}'")))?;
    let order = connectors::order(event.get("source"));
    let side = if op == Op::Delete { "before" } else { "after" };
    let (row, partial) = match event.remove(side) {
        Some(Value::Object(row)) => (row, false),
        // MongoDB's connector writes the document as JSON text.
        Some(Value::String(text)) => (document(&text, code, side)?, false),
        _ if event.contains_key("updateDescription") => (updated_fields(&event, key)?, true),
        _ if event.contains_key("patch") => {
            return Err(Error::Event(format!(
                "a MongoDB '{code}' event in the connector's old format (patch/filter) is not read: capture with change streams"
            )))
        }
        // A delete without the old row (no replica identity logged it): the record key
        // still names the row.
        _ => match key_row(key).filter(|_| op == Op::Delete) {
            Some(row) => (row, false),
            None => {
                return Err(Error::Event(format!(
                    "a Debezium '{code}' event without '{side}' (for deletes, set REPLICA IDENTITY so that 'before' has the key)"
                )))
            }
        },
    };
    let mut change = ChangeEvent {
        order,
        partial,
        before: match event.get("before") {
            Some(Value::Object(before)) => Some(before.clone()),
            Some(Value::String(text)) => document(text, code, "before").ok(),
            _ => None,
        },
        key: key_row(key),
        origin: origin(event.get("source")),
        ..ChangeEvent::new(op, row)
    };
    let Some(schema) = schema else {
        change.partial |= types::take_unavailable(&mut change.row);
        return Ok(Decoded::Untyped(change));
    };
    // Columns Debezium did not read are left out: the stored values stay.
    let unavailable = types::decode_row(&mut change.row, schema.row(side)).map_err(Error::Event)?;
    change.partial |= !unavailable.is_empty();
    if let Some(before) = &mut change.before {
        types::decode_row(before, schema.row("before")).map_err(Error::Event)?;
    }
    Ok(Decoded::Change(change))
}

/// The database, schema and table a connector's `source` block names (MongoDB's
/// collection is its table).
fn origin(source: Option<&Value>) -> Origin {
    let text = |name: &str| {
        source
            .and_then(|source| source.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Origin {
        db: text("db"),
        schema: text("schema"),
        table: text("table").or_else(|| text("collection")),
    }
}

/// A MongoDB document written as JSON text.
fn document(text: &str, code: &str, side: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(row)) => Ok(row),
        _ => Err(Error::Event(format!(
            "a Debezium '{code}' event whose '{side}' is text but not a JSON object"
        ))),
    }
}

/// A MongoDB update without the whole document (`capture.mode` `change_streams`): the
/// document's `_id` (from the record key, whose `id` holds it as JSON text), the updated
/// fields, and the removed ones as null.
fn updated_fields(event: &Map<String, Value>, key: Option<&[u8]>) -> Result<Map<String, Value>> {
    let description = &event["updateDescription"];
    if description
        .get("truncatedArrays")
        .and_then(Value::as_array)
        .is_some_and(|arrays| !arrays.is_empty())
    {
        return Err(Error::Event(ARRAY_UPDATE.into()));
    }
    let mut row = Map::new();
    if let Some(id) = key_row(key).and_then(|mut key| key.remove("id")) {
        let id = match &id {
            Value::String(text) => serde_json::from_str(text).unwrap_or(id),
            _ => id,
        };
        row.insert("_id".into(), id);
    }
    let updated = match description.get("updatedFields") {
        Some(Value::String(text)) => document(text, "u", "updatedFields")?,
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
    for (path, value) in updated {
        set_path(&mut row, &path, value)?;
    }
    if let Some(Value::Array(removed)) = description.get("removedFields") {
        for path in removed.iter().filter_map(Value::as_str) {
            set_path(&mut row, path, Value::Null)?;
        }
    }
    Ok(row)
}

const ARRAY_UPDATE: &str = "a MongoDB update of array elements cannot be applied without the whole document: set the connector's capture.mode to change_streams_update_full";

/// Sets the member a MongoDB dotted path names (`address.city`), making the objects on
/// the way; a path into an array (`tags.1`) cannot be applied.
fn set_path(row: &mut Map<String, Value>, path: &str, value: Value) -> Result<()> {
    let mut parts = path.split('.').peekable();
    let mut at = row;
    while let Some(part) = parts.next() {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Event(ARRAY_UPDATE.into()));
        }
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        match next {
            Value::Object(inner) => at = inner,
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// The record key's columns (its payload, without the envelope).
fn key_row(key: Option<&[u8]>) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(key?).ok()? {
        Value::Object(object) => Some(envelope(object).1).filter(|row| !row.is_empty()),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Order;
    use serde_json::json;

    fn decode(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Decoded> {
        crate::format::decode(fields, &Schemas::default())
    }

    /// Debezium Server's stream entries (see tests/data/debezium/README.md).
    const EVENTS: &str = include_str!("../../../tests/data/debezium/events.json");

    /// What each entry holds: whether its values came with their schema, the op, the
    /// version, and columns of the row (decoded as the PostgreSQL source writes them).
    enum Expected {
        Change(bool, Op, Option<i64>, Value),
        Skip(Skip),
    }

    fn expected(id: &str) -> Expected {
        use Expected::{Change, Skip as Skipped};
        // The fixture's weight, as its JSON text has it.
        let scooter: Value = serde_json::from_str(
            r#"{"id": 101, "name": "scooter", "description": "Small 2-wheel scooter", "weight": 3.14}"#,
        )
        .unwrap();
        let film_actor = json!({"actor_id": 1, "film_id": 23});
        let emp = json!({"empno": 11, "hiredate": "2019-07-09T00:00:00Z", "sal": "200000.0000", "comm": "10.0000", "dept": 3});
        match id {
            "dbz-server-docs-extended-delete" | "dbz-server-docs-compact-delete" => {
                Change(true, Op::Delete, None, emp)
            }
            "flink-pg-schema-r-101" => Change(true, Op::Read, Some(34_078_720), scooter),
            "flink-pg-noschema-r-101" => Change(false, Op::Read, Some(34_078_720), scooter),
            "flink-pg-noschema-u-106" | "flink-pg-replica-default-u" => Change(
                false,
                Op::Update,
                Some(34_131_104),
                json!({"id": 106, "description": "18oz carpenter hammer"}),
            ),
            "flink-pg-noschema-c-110" => Change(
                false,
                Op::Create,
                Some(34_132_560),
                json!({"id": 110, "name": "jacket"}),
            ),
            "flink-pg-noschema-d-111" => Change(
                false,
                Op::Delete,
                Some(34_133_800),
                json!({"id": 111, "weight": 5.17}),
            ),
            // Neither before nor after: the row is named by the record key alone.
            "flink-pg-replica-default-d" => {
                Change(false, Op::Delete, Some(34_133_800), json!({"id": 111}))
            }
            "floodplain-pg-payment-decimal-r" => Change(
                true,
                Op::Read,
                Some(31_227_904),
                json!({"payment_id": 32098, "amount": "2.99", "payment_date": "2007-05-14T13:44:29.996577Z"}),
            ),
            "floodplain-pg-film-array-enum-decimal-r" => Change(
                true,
                Op::Read,
                Some(30_998_528),
                json!({"film_id": 778, "rental_rate": "4.99", "replacement_cost": "24.99", "rating": "G",
                       "last_update": "2013-05-26T14:50:58.951Z", "special_features": ["Trailers", "Commentaries"]}),
            ),
            "floodplain-pg-film_actor-delete" | "floodplain-pg-film_actor-delete-extended" => {
                Change(true, Op::Delete, Some(31_246_736), film_actor)
            }
            "flink-pg-noschema-tombstone-111"
            | "floodplain-pg-film_actor-tombstone"
            | "floodplain-pg-film_actor-tombstone-extended" => Skipped(Skip::Tombstone),
            "risingwave-pg-temporal-r" => Change(
                true,
                Op::Read,
                Some(25_503_568),
                json!({"id": 1, "ts": "2022-10-14T23:55:31.98936Z", "d": "2022-10-14",
                       "t": "23:55:31.98936", "tsz": "2022-10-15T03:55:31.98936Z"}),
            ),
            other => panic!("no expectation for {other}"),
        }
    }

    #[test]
    fn every_stream_entry_decodes_as_intended() {
        let items: Vec<Value> = serde_json::from_str(EVENTS).unwrap();
        let mut checked = 0;
        for item in items
            .iter()
            .filter(|item| item["kind"] == "redis_stream_entry")
        {
            let id = item["id"].as_str().unwrap();
            let fields: Vec<(Vec<u8>, Vec<u8>)> = item["fields"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_bytes().to_vec(),
                        value.as_str().unwrap().as_bytes().to_vec(),
                    )
                })
                .collect();
            let decoded = decode(&fields).unwrap_or_else(|e| panic!("{id}: {e}"));
            match (expected(id), decoded) {
                (Expected::Skip(kind), Decoded::Skip(skip)) => assert_eq!(kind, skip, "{id}"),
                (Expected::Change(typed, op, version, columns), decoded) => {
                    let (Decoded::Change(change) | Decoded::Untyped(change)) = &decoded else {
                        panic!("{id}: {decoded:?}");
                    };
                    assert_eq!(matches!(decoded, Decoded::Change(_)), typed, "{id}");
                    assert_eq!(change.op, op, "{id}");
                    assert_eq!(change.order.map(Order::version), version, "{id}");
                    for (column, value) in columns.as_object().unwrap() {
                        assert_eq!(change.row.get(column), Some(value), "{id}: {column}");
                    }
                }
                (_, decoded) => panic!("{id}: {decoded:?}"),
            }
            checked += 1;
        }
        assert_eq!(checked, 17);
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn heartbeats_and_transaction_markers_write_nothing() {
        let heartbeat = r#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat","version":1},"payload":{"ts_ms":1565787098802}}"#;
        let server = r#"{"serverName":"chinook"}"#;
        for (key, value, kind) in [
            (server, heartbeat, Skip::Heartbeat),
            (server, r#"{"ts_ms":1565787098802}"#, Skip::Heartbeat),
            (
                r#"{"id":"571:53195829"}"#,
                r#"{"status":"BEGIN","id":"571:53195829","ts_ms":1486500577125,"event_count":null,"data_collections":null}"#,
                Skip::Transaction,
            ),
            (
                r#"{"id":"571:53195829"}"#,
                r#"{"status":"END","id":"571:53195829","ts_ms":1486500577691,"event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1}]}"#,
                Skip::Transaction,
            ),
        ] {
            assert_eq!(
                decode(&fields(&[(key, value)])).unwrap(),
                Decoded::Skip(kind)
            );
            assert_eq!(
                decode(&fields(&[
                    ("key", key),
                    ("value", value),
                    ("HEADERKEY", "x")
                ]))
                .unwrap(),
                Decoded::Skip(kind)
            );
        }
        // Debezium's truncate (null key) and logical decoding messages carry no row.
        let truncate = r#"{"source":{"connector":"postgresql","table":"customers"},"op":"t","ts_ms":1559033904961}"#;
        assert_eq!(
            decode(&fields(&[("default", truncate)])).unwrap(),
            Decoded::Skip(Skip::Truncate)
        );
        let message = r#"{"op":"m","ts_ms":1559033904961,"source":{"connector":"postgresql"},"message":{"prefix":"foo","content":"Ymar"}}"#;
        assert_eq!(
            decode(&fields(&[(r#"{"prefix":"foo"}"#, message)])).unwrap(),
            Decoded::Skip(Skip::Message)
        );
        // Plain JSON of the same shapes under plain names is data.
        assert!(matches!(
            decode(&fields(&[("body", r#"{"ts_ms":1}"#)])).unwrap(),
            Decoded::Change(_)
        ));
    }

    #[test]
    fn extended_entries_keys_named_default_and_mongodb_documents() {
        let event = r#"{"before":null,"after":{"id":7,"n":"x"},"source":{"connector":"mysql","file":"mysql-bin.000003","pos":484,"row":0},"op":"c"}"#;
        let extended = fields(&[
            ("key", r#"{"id":7}"#),
            ("value", event),
            ("__DEBEZIUM.CONTEXT.CONNECTORNAME", "mysql"),
        ]);
        let Decoded::Untyped(change) = decode(&extended).unwrap() else {
            panic!("a change");
        };
        // MySQL's binlog positions are not versions (connectors.rs): the entry id orders.
        assert_eq!(change.order, None);
        // A table without a primary key: the sink's null key.
        assert!(matches!(
            decode(&fields(&[("default", event)])).unwrap(),
            Decoded::Untyped(ChangeEvent { op: Op::Create, .. })
        ));
        // Plain fields named key and value are plain data.
        assert_eq!(
            decode(&fields(&[("key", "user-1"), ("value", "42")])).unwrap(),
            Decoded::Change(json::upsert(
                json!({"key": "user-1", "value": "42"})
                    .as_object()
                    .unwrap()
                    .clone()
            ))
        );
        assert!(matches!(
            decode(&fields(&[("default", "hello")])).unwrap(),
            Decoded::Change(_)
        ));
        let mongo = r#"{"after":"{\"_id\": {\"$numberLong\": \"1004\"},\"first_name\": \"Anne Marie\"}","updateDescription":{"removedFields":null,"updatedFields":"{\"first_name\": \"Anne Marie\"}","truncatedArrays":null},"source":{"connector":"mongodb","ts_ms":1558965508000,"ord":1},"op":"u"}"#;
        let Decoded::Untyped(change) = decode(&fields(&[(r#"{"id":"1004"}"#, mongo)])).unwrap()
        else {
            panic!("a change");
        };
        assert_eq!(change.row["first_name"], "Anne Marie");
        assert_eq!(change.order, None);
        // Without the whole document: the key, what was set, what was removed.
        let partial = r#"{"after":null,"updateDescription":{"removedFields":["email"],"updatedFields":"{\"first_name\": \"Anne Marie\"}","truncatedArrays":null},"source":{"connector":"mongodb"},"op":"u"}"#;
        let Decoded::Untyped(change) = decode(&fields(&[(r#"{"id":"1004"}"#, partial)])).unwrap()
        else {
            panic!("a change");
        };
        assert!(change.partial);
        assert_eq!(
            Value::Object(change.row),
            json!({"_id": 1004, "first_name": "Anne Marie", "email": null})
        );
        // Dotted paths are nested members; array elements cannot be patched.
        let nested = r#"{"after":null,"updateDescription":{"removedFields":["address.zip"],"updatedFields":"{\"address.city\": \"Berlin\"}","truncatedArrays":[]},"source":{"connector":"mongodb"},"op":"u"}"#;
        let Decoded::Untyped(change) = decode(&fields(&[(r#"{"id":"7"}"#, nested)])).unwrap()
        else {
            panic!("a change");
        };
        assert_eq!(
            Value::Object(change.row),
            json!({"_id": 7, "address": {"city": "Berlin", "zip": null}})
        );
        for array in [
            r#"{"after":null,"updateDescription":{"removedFields":null,"updatedFields":"{\"tags.1\": \"x\"}","truncatedArrays":null},"source":{},"op":"u"}"#,
            r#"{"after":null,"updateDescription":{"removedFields":null,"updatedFields":"{}","truncatedArrays":[{"field":"tags","newSize":1}]},"source":{},"op":"u"}"#,
        ] {
            assert!(decode(&fields(&[(r#"{"id":"7"}"#, array)]))
                .unwrap_err()
                .to_string()
                .contains("array elements"));
        }
        let old = r#"{"patch":"{\"$set\":{\"a\":1}}","filter":"{}","source":{"connector":"mongodb"},"op":"u"}"#;
        assert!(decode(&fields(&[(r#"{"id":"1004"}"#, old)]))
            .unwrap_err()
            .to_string()
            .contains("old format"));
    }

    #[test]
    fn bad_values_name_their_column_and_write_nothing() {
        let schema = |field: Value| json!({"type": "struct", "fields": [{"type": "struct", "field": "after", "fields": [field]}]});
        let event = |schema: Value, after: Value| {
            json!({"schema": schema, "payload": {"before": null, "after": after, "op": "c", "source": {}}})
                .to_string()
        };
        let decimal = json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "field": "Total"});
        let decimal_scaled = json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}, "field": "Total"});
        for (value, reason) in [
            (
                event(schema(decimal), json!({"Total": "AYw="})),
                "column 'Total': a Decimal without its scale",
            ),
            (
                event(schema(decimal_scaled.clone()), json!({"Total": "%%%"})),
                "column 'Total': '%%%' is not base64",
            ),
            (
                event(schema(decimal_scaled), json!({"Total": 3.96})),
                "column 'Total': 3.96 where the schema says base64 bytes",
            ),
        ] {
            let error = decode(&fields(&[(r#"{"id":1}"#, &value)]))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(reason), "{error}");
        }
        // What Debezium did not read is left out: the stored value stays.
        for value in [
            event(
                schema(json!({"type": "string", "field": "Notes"})),
                json!({"Notes": types::UNAVAILABLE, "Other": null}),
            ),
            json!({"before": null, "after": {"Notes": types::UNAVAILABLE, "Other": null}, "op": "u", "source": {}})
                .to_string(),
        ] {
            let (Decoded::Change(change) | Decoded::Untyped(change)) =
                decode(&fields(&[(r#"{"id":1}"#, &value)])).unwrap()
            else {
                panic!("a change");
            };
            assert!(change.partial);
            assert_eq!(Value::Object(change.row), json!({"Other": null}));
        }
        // A logical type redsink does not know passes as it came.
        let unknown = json!({"type": "string", "name": "io.example.Colour", "field": "c"});
        let Decoded::Change(change) = decode(&fields(&[(
            r#"{"id":1}"#,
            &event(schema(unknown), json!({"c": "red"})),
        )]))
        .unwrap() else {
            panic!("a change");
        };
        assert_eq!(change.row["c"], "red");
    }
}
