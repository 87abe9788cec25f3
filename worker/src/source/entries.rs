//! Stream entries as Redis returns them, parsed keeping field order and raw bytes (the
//! client's typed replies use a hash map of UTF-8 names).

use redis::Value;

/// One entry: its id and its field/value pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `[[id, [field, value, …]], …]`; entries deleted from the stream meanwhile come back as
/// `[id, nil]` and are left out.
pub fn parse_entries(value: &Value) -> Vec<Entry> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Array(pair) if pair.len() == 2 => {
                let id = text(&pair[0])?;
                let Value::Array(flat) = &pair[1] else {
                    return None;
                };
                let fields = flat
                    .chunks(2)
                    .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?)?)))
                    .collect();
                Some(Entry { id, fields })
            }
            _ => None,
        })
        .collect()
}

/// An XREADGROUP reply: `[[stream, entries], …]` (or a RESP3 map), nil when nothing came.
pub fn parse_read(value: &Value) -> Vec<(String, Vec<Entry>)> {
    match value {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => {
                    Some((text(&pair[0])?, parse_entries(&pair[1])))
                }
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams
            .iter()
            .filter_map(|(name, entries)| Some((text(name)?, parse_entries(entries))))
            .collect(),
        _ => Vec::new(),
    }
}

/// An XAUTOCLAIM reply: `[next-cursor, entries, deleted-ids]`.
pub fn parse_autoclaim(value: &Value) -> (String, Vec<Entry>) {
    match value {
        Value::Array(parts) if parts.len() >= 2 => (
            text(&parts[0]).unwrap_or_else(|| "0-0".into()),
            parse_entries(&parts[1]),
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
        let streams = parse_read(&reply);
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
        assert!(parse_read(&Value::Nil).is_empty());
    }

    #[test]
    fn autoclaim_replies() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![entry("3-0", &["f", "v"])]),
            Value::Array(vec![]),
        ]);
        let (next, entries) = parse_autoclaim(&reply);
        assert_eq!(next, "5-0");
        assert_eq!(entries[0].id, "3-0");
        assert_eq!(parse_autoclaim(&Value::Nil), ("0-0".to_owned(), Vec::new()));
    }
}
