//! PostgreSQL's logical decoding messages ([`Change`]) and column values as JSON, by type
//! (wal2json's messages, pgoutput's and the snapshot's rows alike). Debezium's events
//! decode to the same JSON ([`debezium`](super::debezium)), so a table reaches Redis the
//! same whichever way its changes came:
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | smallint, integer, bigint, oid, real, double precision | number (`"NaN"`, `"Infinity"`, `"-Infinity"` as text) |
//! | numeric, decimal | text with the exact digits (`"3.96"`): no float rounding |
//! | money | its amount as exact text: `$1,234.11` → `"1234.11"`, negative `"-1234.11"` |
//! | boolean, bit(1) | `true` / `false` |
//! | bit(n), bit varying | the bits as text: `"101"` |
//! | timestamp, timestamp with time zone | ISO 8601 in UTC, the fraction's significant digits: `"2021-01-01T09:30:00.5Z"` (without a zone, taken as UTC); years before 1 or after 9999 signed (`"-4712-12-31T…"`, `"+21016-11-04T…"`); `"infinity"`, `"-infinity"` |
//! | date | `"2021-01-01"` (years as for timestamps) |
//! | time | `"13:51:30.123"` |
//! | time with time zone | in UTC: `"11:51:30.123Z"` |
//! | interval | microseconds, a month counted as 30.4375 days (as Debezium's `MicroDuration`) |
//! | bytea | base64 |
//! | json, jsonb | the JSON itself, nested |
//! | text, varchar, char, uuid, xml, enums, other types | text |
//! | arrays (one dimension) | JSON arrays of the element type's values |
//! | NULL | null |

use base64::Engine;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use redsink_core::time;

use super::{ChangeEvent, Order};
use crate::error::{Error, Result};

/// What one logical decoding message (wal2json's or pgoutput's) is.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// A row change of `schema.table`.
    Row {
        table: String,
        event: Box<ChangeEvent>,
    },
    /// TRUNCATE of `schema.table`.
    Truncate { table: String },
    /// The start of a transaction that commits at `commit`.
    Begin { commit: Order },
    /// The end of a transaction.
    Commit,
    /// Messages that change no row.
    Other,
}

/// The record key: the primary key's columns of `row`, in key order (none without a
/// primary key, or where the row lacks one of them).
pub fn record_key<'a>(
    row: &Map<String, Value>,
    columns: impl IntoIterator<Item = &'a str>,
) -> Option<Map<String, Value>> {
    let key = columns
        .into_iter()
        .map(|column| Some((column.to_owned(), row.get(column)?.clone())))
        .collect::<Option<Map<String, Value>>>()?;
    (!key.is_empty()).then_some(key)
}

/// A column value (`raw`: its JSON text from wal2json or row_to_json) as JSON, by its type
/// name (`format_type`'s, as wal2json gives it: `numeric(10,2)`, `time(3) with time zone`).
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
            // row_to_json (the snapshot) writes arrays as JSON already; each element is
            // read from its own text, so numbers keep their digits.
            Value::Array(_) => serde_json::from_str::<Vec<&RawValue>>(raw)
                .map_err(|e| Error::Event(format!("a {kind} value: {e}")))?
                .into_iter()
                .map(|item| value(element, item.get()))
                .collect::<Result<_>>()
                .map(Value::Array),
            text => array(element, text.as_str().unwrap_or(raw)),
        };
    }
    let (base, modifier) = base_type(kind);
    let text = || -> Result<String> {
        match parsed()? {
            Value::String(text) => Ok(text),
            other => Ok(other.to_string()),
        }
    };
    let unreadable = |text: &str| {
        let shown: String = text.chars().take(64).collect();
        let more = if shown.len() < text.len() { "…" } else { "" };
        Error::Event(format!(
            "a {kind} value '{shown}{more}' redsink cannot read"
        ))
    };
    Ok(match base.as_str() {
        "numeric" | "decimal" => Value::String(raw.trim_matches('"').to_owned()),
        "money" => {
            let text = text()?;
            Value::String(money(&text).ok_or_else(|| unreadable(&text))?)
        }
        "json" | "jsonb" => match parsed()? {
            Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| Error::Event(format!("a {kind} value: {e}")))?,
            other => other,
        },
        "timestamp with time zone"
        | "timestamp without time zone"
        | "timestamp"
        | "timestamptz" => {
            let text = text()?;
            match text.as_str() {
                "infinity" | "-infinity" => Value::String(text),
                _ => {
                    let at = time::parse_instant(&text).ok_or_else(|| unreadable(&text))?;
                    Value::String(time::format_instant(at.days, at.nanos))
                }
            }
        }
        "date" => {
            let text = text()?;
            match text.as_str() {
                "infinity" | "-infinity" => Value::String(text),
                _ => Value::String(time::format_date(
                    time::parse_date(&text).ok_or_else(|| unreadable(&text))?,
                )),
            }
        }
        "time without time zone" | "time" => {
            let text = text()?;
            Value::String(time::format_clock(
                time::parse_clock(&text).ok_or_else(|| unreadable(&text))?,
            ))
        }
        "time with time zone" | "timetz" => {
            let text = text()?;
            let nanos = time::parse_clock_with_offset(&text).ok_or_else(|| unreadable(&text))?;
            Value::String(format!("{}Z", time::format_clock(nanos)))
        }
        "interval" => {
            let text = text()?;
            Value::from(interval_micros(&text).ok_or_else(|| unreadable(&text))?)
        }
        "bytea" => {
            let text = text()?;
            // Hex, after `\x` from row_to_json, bare from wal2json.
            let digits = text.strip_prefix("\\x").unwrap_or(&text);
            let bytes = hex(digits).ok_or_else(|| unreadable(&text))?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        "bit" if modifier.as_deref().unwrap_or("1") == "1" => match text()?.as_str() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            other => return Err(unreadable(other)),
        },
        _ => parsed()?,
    })
}

/// A type name without its modifier, and the modifier: `time(3) with time zone` →
/// (`time with time zone`, `3`); `numeric(10,2)` → (`numeric`, `10,2`).
fn base_type(kind: &str) -> (String, Option<String>) {
    match (kind.find('('), kind.find(')')) {
        (Some(open), Some(close)) if open < close => (
            format!("{}{}", &kind[..open], &kind[close + 1..])
                .trim()
                .to_owned(),
            Some(kind[open + 1..close].to_owned()),
        ),
        _ => (kind.trim().to_owned(), None),
    }
}

/// `$1,234.11`, `-$1,234.11`, `($1,234.11)` → `1234.11`, `-1234.11`: the amount without
/// currency symbol or grouping.
fn money(text: &str) -> Option<String> {
    let negative = text.contains('-') || text.starts_with('(');
    let amount: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if amount.is_empty() || amount.matches('.').count() > 1 {
        return None;
    }
    Some(if negative {
        format!("-{amount}")
    } else {
        amount
    })
}

/// Hex digits as bytes.
fn hex(digits: &str) -> Option<Vec<u8>> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(digits.get(at..at + 2)?, 16).ok())
        .collect()
}

/// An interval as PostgreSQL writes it (`IntervalStyle` postgres: `1 year 2 mons 3 days
/// 04:05:06.78`, `-1 days +02:00:00`) in microseconds, computed as Debezium's
/// `MicroDuration` does (a month is 365.25 / 12 days; the same floating-point steps, so
/// the same number).
pub fn interval_micros(text: &str) -> Option<i64> {
    let (mut years, mut months, mut days) = (0.0, 0.0, 0.0);
    let (mut hours, mut minutes, mut seconds) = (0.0, 0.0, 0.0);
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word.contains(':') {
            let (sign, clock) = match word.as_bytes().first()? {
                b'-' => (-1.0, &word[1..]),
                b'+' => (1.0, &word[1..]),
                _ => (1.0, word),
            };
            let mut parts = clock.splitn(3, ':');
            hours = sign * parts.next()?.parse::<f64>().ok()?;
            minutes = sign * parts.next()?.parse::<f64>().ok()?;
            seconds = sign * parts.next().unwrap_or("0").parse::<f64>().ok()?;
            continue;
        }
        let count: f64 = word.parse().ok()?;
        match words.next()?.trim_end_matches('s') {
            "year" => years = count,
            "mon" => months = count,
            "day" => days = count,
            _ => return None,
        }
    }
    Some(micro_duration([
        years, months, days, hours, minutes, seconds,
    ]))
}

/// An interval as Debezium's `interval.handling.mode=string` writes it,
/// `P1Y2M3DT4H5M6.78S` (each part present, each with its own sign), in microseconds as
/// [`interval_micros`] counts them.
pub fn iso_interval_micros(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut parts = [0.0; 6];
    for (text, units, first) in [(date, ['Y', 'M', 'D'], 0), (time, ['H', 'M', 'S'], 3)] {
        let mut rest = text;
        for (i, unit) in units.iter().enumerate() {
            if let Some((number, after)) = rest.split_once(*unit) {
                parts[first + i] = number.parse::<f64>().ok().filter(|n| n.is_finite())?;
                rest = after;
            }
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(micro_duration(parts))
}

/// Debezium's `MicroDuration` of years, months, days, hours, minutes and seconds: a month
/// is 365.25 / 12 days, in the same floating-point steps, so the same number.
fn micro_duration([years, months, days, hours, minutes, seconds]: [f64; 6]) -> i64 {
    let days_in_total = (years * 12.0 + months) * (365.25 / 12.0) + days;
    let seconds_in_total = ((days_in_total * 24.0 + hours) * 60.0 + minutes) * 60.0 + seconds;
    (seconds_in_total * 1e6) as i64
}

/// A column value as PostgreSQL writes it in text (pgoutput's tuples) as JSON, by its
/// type name: the same JSON as its wal2json message or snapshot row gives.
pub fn text_value(kind: &str, text: &str) -> Result<Value> {
    // The commonest types directly, the same values as through JSON text.
    match kind {
        "smallint" | "integer" | "bigint" => {
            if let Ok(number) = text.parse::<i64>() {
                return Ok(Value::from(number));
            }
        }
        "text" | "uuid" | "name" => return Ok(Value::String(text.to_owned())),
        _ if (kind.starts_with("character") || kind.starts_with("numeric"))
            && !kind.ends_with("[]") =>
        {
            return Ok(Value::String(text.to_owned()))
        }
        _ => {}
    }
    value(kind, &text_json(kind, text.to_owned(), false))
}

/// A value's text (an array element, a pgoutput column) as the JSON wal2json would give
/// the same value alone: numbers bare, `t`/`f` as booleans, everything else (and anything
/// quoted) a string.
fn text_json(kind: &str, text: String, was_quoted: bool) -> String {
    let (base, _) = base_type(kind);
    match base.as_str() {
        "smallint" | "integer" | "bigint" | "oid" | "real" | "double precision" | "numeric"
        | "decimal"
            if !was_quoted && text.parse::<f64>().is_ok_and(f64::is_finite) =>
        {
            text
        }
        "boolean" if text == "t" => "true".into(),
        "boolean" if text == "f" => "false".into(),
        _ => Value::String(text).to_string(),
    }
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
        } else {
            value(
                element,
                &text_json(element, std::mem::take(text), was_quoted),
            )?
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

    /// pgoutput's text reads as wal2json's JSON does, on the shortcut for common types too.
    #[test]
    fn text_values_map_like_json_values() {
        for (kind, text) in [
            ("integer", "42"),
            ("bigint", "-9223372036854775808"),
            ("smallint", "7"),
            ("text", "a \"quoted\" text"),
            ("character varying(40)", "Berlin"),
            ("character(3)", "ab "),
            ("character varying(10)[]", "{a,\"b c\"}"),
            ("numeric(10,2)", "3.90"),
            ("numeric", "NaN"),
            ("numeric[]", "{1.10,2}"),
            ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ("boolean", "t"),
            ("double precision", "Infinity"),
            ("timestamp without time zone", "2021-01-01 10:00:00"),
        ] {
            assert_eq!(
                text_value(kind, text).unwrap(),
                value(kind, &text_json(kind, text.to_owned(), false)).unwrap(),
                "{kind} {text}"
            );
        }
        assert_eq!(text_value("numeric", "NaN").unwrap(), Value::from("NaN"));
        assert_eq!(text_value("boolean", "f").unwrap(), Value::Bool(false));
    }
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
    fn dates_and_times_as_the_debezium_types_decode() {
        let cases = [
            (
                "timestamp without time zone",
                "2016-11-04 13:51:30.123456",
                "2016-11-04T13:51:30.123456Z",
            ),
            (
                "timestamp(3) without time zone",
                "2016-11-04 13:51:30.123",
                "2016-11-04T13:51:30.123Z",
            ),
            (
                "timestamp with time zone",
                "2021-06-01 12:00:00+02",
                "2021-06-01T10:00:00Z",
            ),
            (
                "timestamp with time zone",
                "2021-12-31 23:00:00-05:30",
                "2022-01-01T04:30:00Z",
            ),
            (
                "timestamp with time zone",
                "21016-11-04 06:51:30+00",
                "+21016-11-04T06:51:30Z",
            ),
            (
                "timestamp without time zone",
                "4713-12-31 23:59:59.999999 BC",
                "-4712-12-31T23:59:59.999999Z",
            ),
            ("timestamp without time zone", "infinity", "infinity"),
            ("timestamp with time zone", "-infinity", "-infinity"),
            ("date", "2016-11-04", "2016-11-04"),
            ("date", "4714-11-24 BC", "-4713-11-24"),
            ("time without time zone", "13:51:30", "13:51:30"),
            ("time(3) without time zone", "13:51:30.123", "13:51:30.123"),
            ("time without time zone", "24:00:00", "24:00:00"),
            (
                "time with time zone",
                "13:51:30.123789+02",
                "11:51:30.123789Z",
            ),
            ("time(3) with time zone", "13:51:30.123+02", "11:51:30.123Z"),
        ];
        for (kind, text, expected) in cases {
            let raw = Value::from(text).to_string();
            assert_eq!(value(kind, &raw).unwrap(), json!(expected), "{kind} {text}");
        }
        assert!(value("date", "\"someday\"").is_err());
        assert!(value("time without time zone", "\"25:00:00\"").is_err());
    }

    #[test]
    fn money_bytes_bits_and_intervals() {
        let text = |kind: &str, text: &str| value(kind, &Value::from(text).to_string()).unwrap();
        assert_eq!(text("money", "$1,234.11"), json!("1234.11"));
        assert_eq!(text("money", "-$1,234.11"), json!("-1234.11"));
        assert_eq!(text("bytea", "\\x0123456789abcdef"), json!("ASNFZ4mrze8="));
        assert_eq!(text("bytea", "\\x"), json!(""));
        assert_eq!(text("bytea", "0123456789abcdef"), json!("ASNFZ4mrze8="));
        assert!(value("bytea", "\"\\\\x0\"").is_err());
        assert_eq!(text("bit(1)", "1"), json!(true));
        assert_eq!(text("bit", "0"), json!(false));
        assert_eq!(text("bit(3)", "101"), json!("101"));
        assert_eq!(text("bit varying(5)", "0101"), json!("0101"));
        // Debezium's own vector: P1Y2M3DT4H5M6.78S is 37091106780000 µs.
        assert_eq!(
            text("interval", "1 year 2 mons 3 days 04:05:06.78"),
            json!(37_091_106_780_000_i64)
        );
        assert_eq!(text("interval", "1 mon"), json!(2_629_800_000_000_i64));
        assert_eq!(
            text("interval", "-1 days -02:00:00"),
            json!(-93_600_000_000_i64)
        );
        assert_eq!(text("interval", "00:00:00"), json!(0));
        assert!(value("interval", "\"1 fortnight\"").is_err());
        assert_eq!(
            iso_interval_micros("P1Y2M3DT4H5M6.78S"),
            Some(37_091_106_780_000)
        );
        assert_eq!(
            iso_interval_micros("P0Y0M-1DT-2H0M0S"),
            Some(-93_600_000_000)
        );
        assert_eq!(iso_interval_micros("P0Y0M0DT0H0M0S"), Some(0));
        assert_eq!(iso_interval_micros("P1W"), None);
        assert_eq!(iso_interval_micros("1 day"), None);
        assert_eq!(value("real", "\"NaN\"").unwrap(), json!("NaN"));
        assert_eq!(
            value("numeric(10,2)[]", "[1.20,3.40]").unwrap(),
            json!(["1.20", "3.40"])
        );
        assert_eq!(
            value("boolean[]", "\"{t,f,NULL}\"").unwrap(),
            json!([true, false, null])
        );
        assert_eq!(
            value("character(4)[]", "\"{ab,\\\"c d\\\"}\"").unwrap(),
            json!(["ab", "c d"])
        );
        assert_eq!(
            value("date[]", "\"{2016-11-04,2016-11-05}\"").unwrap(),
            json!(["2016-11-04", "2016-11-05"])
        );
    }
}
