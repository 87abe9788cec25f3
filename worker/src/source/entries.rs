//! Stream entries as Redis returns them, parsed keeping field order and raw bytes (the
//! client's typed replies use a hash map of UTF-8 names).

use redis::Value;

/// One entry: its id and its field/value pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

// Replies are taken, not borrowed: their strings become the entries' without a copy.

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `[[id, [field, value, …]], …]`; entries deleted from the stream meanwhile come back as
/// `[id, nil]` and are left out.
pub fn parse_entries(value: Value) -> Vec<Entry> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let [id, Value::Array(flat)] = <[Value; 2]>::try_from(pair).ok()? else {
                return None;
            };
            let mut flat = flat.into_iter();
            let mut fields = Vec::with_capacity(flat.len() / 2);
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                if let (Some(name), Some(value)) = (bytes(name), bytes(value)) {
                    fields.push((name, value));
                }
            }
            Some(Entry {
                id: text(id)?,
                fields,
            })
        })
        .collect()
}

/// An XREADGROUP reply: `[[stream, entries], …]` (or a RESP3 map), nil when nothing came.
pub fn parse_read(value: Value) -> Vec<(String, Vec<Entry>)> {
    let stream = |name: Value, entries: Value| Some((text(name)?, parse_entries(entries)));
    match value {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|pair| match pair {
                Value::Array(pair) => {
                    let [name, entries] = <[Value; 2]>::try_from(pair).ok()?;
                    stream(name, entries)
                }
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams
            .into_iter()
            .filter_map(|(name, entries)| stream(name, entries))
            .collect(),
        _ => Vec::new(),
    }
}

/// An XAUTOCLAIM reply: `[next-cursor, entries, deleted-ids]`.
pub fn parse_autoclaim(value: Value) -> (String, Vec<Entry>) {
    let Value::Array(parts) = value else {
        return ("0-0".into(), Vec::new());
    };
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next()) {
        (Some(cursor), Some(entries)) => (
            text(cursor).unwrap_or_else(|| "0-0".into()),
            parse_entries(entries),
        ),
        _ => ("0-0".into(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn read_replies_keep_field_order() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("data:a"),
            Value::Array(vec![
                entry("1-0", &["z", "1", "a", "2"]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let streams = parse_read(reply);
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].0, "data:a");
        assert_eq!(
            streams[0].1,
            vec![Entry {
                id: "1-0".into(),
                fields: vec![
                    (b"z".to_vec(), b"1".to_vec()),
                    (b"a".to_vec(), b"2".to_vec())
                ]
            }]
        );
        assert!(parse_read(Value::Nil).is_empty());
    }

    #[test]
    fn autoclaim_replies() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![entry("3-0", &["f", "v"])]),
            Value::Array(vec![]),
        ]);
        let (next, entries) = parse_autoclaim(reply);
        assert_eq!(next, "5-0");
        assert_eq!(entries[0].id, "3-0");
        assert_eq!(parse_autoclaim(Value::Nil), ("0-0".to_owned(), Vec::new()));
    }
}
