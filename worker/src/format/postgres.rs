//! PostgreSQL's column values as JSON, by type (wal2json's messages and the snapshot's
//! rows alike):
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | smallint, integer, bigint, real, double precision | number |
//! | numeric, decimal, money | string with the exact digits (`"3.96"`): no float rounding |
//! | boolean | `true` / `false` |
//! | text, varchar, char, uuid, other types | string |
//! | timestamp with time zone | ISO 8601 in UTC: `"2021-01-01T09:30:00Z"` (fraction kept) |
//! | timestamp without time zone | ISO 8601, taken as UTC: `"2021-01-01T09:30:00Z"` |
//! | date | `"2021-01-01"` |
//! | json, jsonb | the JSON itself, nested |
//! | arrays (one dimension) | JSON arrays of the element type's values |
//! | NULL | null |

use serde_json::Value;

use crate::error::{Error, Result};

/// A column value (`raw`: its JSON text from wal2json) as JSON, by its type name.
pub fn value(kind: &str, raw: &str) -> Result<Value> {
    if raw == "null" {
        return Ok(Value::Null);
    }
    let parsed = || {
        serde_json::from_str::<Value>(raw).map_err(|e| Error::Event(format!("a {kind} value: {e}")))
    };
    let kind = kind.trim_start_matches('"');
    if let Some(element) = kind.strip_suffix("[]") {
        return match parsed()? {
            // row_to_json (the snapshot) writes arrays as JSON already.
            Value::Array(items) => Ok(Value::Array(items)),
            text => array(element, text.as_str().unwrap_or(raw)),
        };
    }
    let base = kind.split('(').next().unwrap_or(kind).trim();
    Ok(match base {
        "numeric" | "decimal" | "money" => Value::String(raw.trim_matches('"').to_owned()),
        "json" | "jsonb" => match parsed()? {
            Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| Error::Event(format!("a {kind} value: {e}")))?,
            other => other,
        },
        "timestamp with time zone"
        | "timestamptz"
        | "timestamp without time zone"
        | "timestamp" => Value::String(iso_timestamp(parsed()?.as_str().unwrap_or(raw))),
        _ => parsed()?,
    })
}

/// `2021-01-01 09:30:00.5+02` → `2021-01-01T07:30:00.5Z`; without an offset, as UTC.
pub fn iso_timestamp(text: &str) -> String {
    let text = text.trim();
    let Some((date, time)) = text.split_once([' ', 'T']) else {
        return text.to_owned();
    };
    // The offset: the last '+' or '-' in the time part.
    let (clock, offset) = match time.rfind(['+', '-']) {
        Some(at) => (&time[..at], &time[at..]),
        None => (time.trim_end_matches('Z'), ""),
    };
    let offset_minutes = parse_offset(offset);
    if offset_minutes == 0 {
        return format!("{date}T{clock}Z");
    }
    // Shift to UTC through seconds since the epoch.
    match (parse_date(date), parse_clock(clock)) {
        (Some(days), Some((seconds, fraction))) => {
            let total = days * 86_400 + seconds - offset_minutes * 60;
            let (days, seconds) = (total.div_euclid(86_400), total.rem_euclid(86_400));
            let utc_date = redsink_core::time::format_iso8601(days * 86_400_000);
            format!(
                "{}T{:02}:{:02}:{:02}{fraction}Z",
                &utc_date[..10],
                seconds / 3600,
                seconds / 60 % 60,
                seconds % 60
            )
        }
        _ => text.to_owned(),
    }
}

fn parse_offset(offset: &str) -> i64 {
    let Some(sign) = offset.chars().next() else {
        return 0;
    };
    let digits: Vec<i64> = offset[1..]
        .split(':')
        .filter_map(|part| part.parse().ok())
        .collect();
    let minutes = match digits.as_slice() {
        [hours] => hours * 60,
        [hours, minutes, ..] => hours * 60 + minutes,
        _ => 0,
    };
    if sign == '-' {
        -minutes
    } else {
        minutes
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(date: &str) -> Option<i64> {
    let mut parts = date.split('-').map(|part| part.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    Some(redsink_core::time::days_from_civil(y, m, d))
}

/// Seconds into the day of `HH:MM:SS[.fraction]`, and the fraction as written.
fn parse_clock(clock: &str) -> Option<(i64, String)> {
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, format!(".{fraction}")),
        None => (clock, String::new()),
    };
    let mut parts = whole.split(':').map(|part| part.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some((h * 3600 + m * 60 + s, fraction))
}

/// A one-dimensional PostgreSQL array literal (`{1,2,"a b",NULL}`) as a JSON array.
fn array(element: &str, literal: &str) -> Result<Value> {
    let inner = literal
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| Error::Event(format!("an array value '{literal}'")))?;
    if inner.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut was_quoted, mut escaped) = (false, false, false);
    let mut push = |text: &mut String, was_quoted: bool| -> Result<()> {
        let item = if !was_quoted && text == "NULL" {
            Value::Null
        } else if was_quoted || matches!(element, "text" | "character varying" | "varchar" | "uuid")
        {
            // Quoted elements and text types are strings; others go through the mapping.
            let as_json = Value::String(std::mem::take(text)).to_string();
            value(element, &as_json)?
        } else {
            value(element, text)?
        };
        text.clear();
        items.push(item);
        Ok(())
    };
    for c in inner.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                push(&mut current, was_quoted)?;
                was_quoted = false;
            }
            _ => current.push(c),
        }
    }
    push(&mut current, was_quoted)?;
    Ok(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_by_type() {
        assert_eq!(
            value("numeric", "12345678901234567890.12").unwrap(),
            json!("12345678901234567890.12")
        );
        assert_eq!(
            value("bigint", "9007199254740993").unwrap(),
            json!(9007199254740993u64)
        );
        assert_eq!(value("boolean", "true").unwrap(), json!(true));
        assert_eq!(value("text", "\"a \\\"b\\\"\"").unwrap(), json!("a \"b\""));
        assert_eq!(
            value("uuid", "\"4b5c2f9e-0000-4000-8000-000000000001\"").unwrap(),
            json!("4b5c2f9e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            value("date", "\"2021-01-01\"").unwrap(),
            json!("2021-01-01")
        );
        assert_eq!(
            value("jsonb", "\"{\\\"a\\\": [1, 2]}\"").unwrap(),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            value("integer[]", "\"{1,2,NULL}\"").unwrap(),
            json!([1, 2, null])
        );
        assert_eq!(
            value("text[]", "\"{a,\\\"b c\\\",\\\"d,e\\\"}\"").unwrap(),
            json!(["a", "b c", "d,e"])
        );
        assert_eq!(value("text[]", "\"{}\"").unwrap(), json!([]));
        assert_eq!(value("integer", "null").unwrap(), json!(null));
    }

    #[test]
    fn timestamps_become_utc_iso_8601() {
        assert_eq!(iso_timestamp("2021-01-01 09:30:00"), "2021-01-01T09:30:00Z");
        assert_eq!(
            iso_timestamp("2021-01-01 09:30:00.25+00"),
            "2021-01-01T09:30:00.25Z"
        );
        assert_eq!(
            iso_timestamp("2021-01-01 01:30:00+02"),
            "2020-12-31T23:30:00Z"
        );
        assert_eq!(
            iso_timestamp("2021-12-31 23:00:00-05:30"),
            "2022-01-01T04:30:00Z"
        );
        assert_eq!(
            value("timestamp with time zone", "\"2021-06-01 12:00:00+02\"").unwrap(),
            json!("2021-06-01T10:00:00Z")
        );
    }
}
