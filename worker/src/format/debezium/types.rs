//! Debezium's logical types, read from the event's schema: each column becomes the JSON
//! the built-in PostgreSQL source writes for the same column ([`postgres`](super::super::postgres)),
//! so a table reaches Redis the same whichever way its changes came.
//!
//! | schema (`name`, else `type`) | as | JSON |
//! |---|---|---|
//! | `org.apache.kafka.connect.data.Decimal` | base64 two's complement, `parameters.scale` | exact decimal text: `"3.96"` |
//! | `io.debezium.data.VariableScaleDecimal` | `{scale, value}` | exact decimal text |
//! | `io.debezium.time.Date`, Kafka's `Date` | days since the epoch | `"2016-11-04"` |
//! | `io.debezium.time.Time`, `MicroTime`, `NanoTime`, Kafka's `Time` | ms, µs, ns since midnight | `"13:51:30.123"` |
//! | `io.debezium.time.Timestamp`, `MicroTimestamp`, `NanoTimestamp`, Kafka's `Timestamp` | ms, µs, ns since the epoch | `"2016-11-04T13:51:30.123456Z"` |
//! | `io.debezium.time.ZonedTimestamp` | ISO 8601 text | the same, in UTC, fraction's significant digits |
//! | `io.debezium.time.ZonedTime` | ISO 8601 text | `"11:51:30.123789Z"` |
//! | `io.debezium.time.MicroDuration` | µs (a month is 30.4375 days) | the number |
//! | `io.debezium.time.Interval` | `P1Y2M3DT4H5M6.78S` | µs, as MicroDuration |
//! | `io.debezium.data.Json` | JSON text | the JSON itself, nested |
//! | `io.debezium.data.Bits` | base64, bit 0 in the first byte's lowest bit, `parameters.length` | `"101"` |
//! | `bytes` | base64 | the base64 text |
//! | `array` | elements by `items` | an array of the elements' JSON |
//! | anything else (`Uuid`, `Enum`, `Xml`, strings, numbers, booleans, other names) | | as it came (`"NaN"`, `"Infinity"` for such floats) |
//!
//! Timestamps at PostgreSQL's `infinity` and `-infinity` (Debezium's sentinels) are those
//! words. A value the schema does not fit is an error naming the column.

use base64::Engine;
use num_bigint::BigInt;
use serde_json::{Map, Value};

use redsink_core::time::{format_clock, format_date, format_instant};

/// Debezium's stand-in for a column whose value it did not read (an unchanged TOASTed
/// column; `unavailable.value.placeholder`).
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The microseconds Debezium's PostgreSQL connector writes for `infinity` and `-infinity`
/// timestamps (its milliseconds are these over 1000, its nanoseconds `i64`'s bounds).
const MICROS_INFINITY: i64 = 9_223_372_036_825_200_000;
const MICROS_MINUS_INFINITY: i64 = -9_223_372_036_832_400_000;

/// Bit strings up to this length are written at their full length; beyond it (an
/// unlimited `BIT VARYING` says 2^31 - 1) from the highest bit set, so that a length
/// cannot make a short value long.
const MAX_PADDED_BITS: usize = 256;

const DAY_NANOS: i64 = 86_400_000_000_000;

/// Decodes each column of `row` by its schema in `fields` (the struct schema's `fields`);
/// columns the schema does not name stay as they are. Returns the columns whose value
/// Debezium did not have ([`UNAVAILABLE`]), which are taken out of the row.
pub fn decode_row(row: &mut Map<String, Value>, fields: &[Value]) -> Result<Vec<String>, String> {
    let mut unavailable = Vec::new();
    for schema in fields {
        let Some(column) = schema.get("field").and_then(Value::as_str) else {
            continue;
        };
        let Some(value) = row.get_mut(column) else {
            continue;
        };
        if is_unavailable(value) {
            row.shift_remove(column);
            unavailable.push(column.to_owned());
            continue;
        }
        let decoded = decode(schema, std::mem::take(value))
            .map_err(|reason| format!("column '{column}': {reason}"))?;
        *value = decoded;
    }
    Ok(unavailable)
}

/// Takes Debezium's placeholders out of a row whose schema is not known; whether there
/// were any.
pub fn take_unavailable(row: &mut Map<String, Value>) -> bool {
    let before = row.len();
    row.retain(|_, value| !is_unavailable(value));
    row.len() < before
}

/// Whether a value is Debezium's placeholder: as text, as base64 bytes, in a text array,
/// as the numbers of its bytes (an integer or date array), or as an hstore's key.
fn is_unavailable(value: &Value) -> bool {
    const UNAVAILABLE_BASE64: &str = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==";
    match value {
        Value::String(text) => text == UNAVAILABLE || text == UNAVAILABLE_BASE64,
        Value::Array(items) if items.len() == UNAVAILABLE.len() => items
            .iter()
            .zip(UNAVAILABLE.bytes())
            .all(|(item, byte)| item.as_u64() == Some(u64::from(byte))),
        Value::Array(items) => items.len() == 1 && is_unavailable(&items[0]),
        Value::Object(map) => map.contains_key(UNAVAILABLE),
        _ => false,
    }
}

/// One value by its field schema.
pub fn decode(schema: &Value, value: Value) -> Result<Value, String> {
    if value.is_null() {
        return Ok(value);
    }
    let name = schema.get("name").and_then(Value::as_str).unwrap_or("");
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(match name {
        "org.apache.kafka.connect.data.Decimal" => {
            let scale = scale(schema)?;
            Value::String(decimal(&bytes(&value)?, scale))
        }
        "io.debezium.data.VariableScaleDecimal" => {
            let scale = value
                .get("scale")
                .and_then(Value::as_i64)
                .ok_or("a VariableScaleDecimal without its scale")?;
            let digits = value
                .get("value")
                .ok_or("a VariableScaleDecimal without its value")?;
            Value::String(decimal(&bytes(digits)?, bounded_scale(scale)?))
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            // An int32 by its schema: days within ±5.8 million years.
            let days = integer(&value)?;
            if i32::try_from(days).is_err() {
                return Err(format!("{days} days is beyond a Date (an int32)"));
            }
            Value::String(format_date(days))
        }
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            clock(integer(&value)?, 1_000_000)?
        }
        "io.debezium.time.MicroTime" => clock(integer(&value)?, 1_000)?,
        "io.debezium.time.NanoTime" => clock(integer(&value)?, 1)?,
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            let ms = integer(&value)?;
            infinity(ms, MICROS_INFINITY / 1000, MICROS_MINUS_INFINITY / 1000)
                .unwrap_or_else(|| instant(ms, 1_000))
        }
        "io.debezium.time.MicroTimestamp" => {
            let micros = integer(&value)?;
            infinity(micros, MICROS_INFINITY, MICROS_MINUS_INFINITY)
                .unwrap_or_else(|| instant(micros, 1_000_000))
        }
        "io.debezium.time.NanoTimestamp" => {
            let nanos = integer(&value)?;
            infinity(nanos, i64::MAX, i64::MIN).unwrap_or_else(|| instant(nanos, 1_000_000_000))
        }
        "io.debezium.time.ZonedTimestamp" => {
            let text = value.as_str().ok_or("a ZonedTimestamp that is not text")?;
            match text {
                "infinity" | "-infinity" => value,
                _ => {
                    let at = redsink_core::time::parse_instant(text)
                        .ok_or_else(|| format!("'{text}' is not an ISO 8601 timestamp"))?;
                    Value::String(format_instant(at.days, at.nanos))
                }
            }
        }
        "io.debezium.time.ZonedTime" => {
            let text = value.as_str().ok_or("a ZonedTime that is not text")?;
            let nanos = redsink_core::time::parse_clock_with_offset(text)
                .ok_or_else(|| format!("'{text}' is not an ISO 8601 time"))?;
            Value::String(format!("{}Z", format_clock(nanos)))
        }
        "io.debezium.time.MicroDuration" => Value::from(integer(&value)?),
        "io.debezium.time.Interval" => {
            let text = value.as_str().ok_or("an Interval that is not text")?;
            Value::from(
                super::super::postgres::iso_interval_micros(text)
                    .ok_or_else(|| format!("'{text}' is not an ISO 8601 interval"))?,
            )
        }
        "io.debezium.data.Json" => {
            let text = value.as_str().ok_or("a Json value that is not text")?;
            serde_json::from_str(text).map_err(|e| format!("a Json value that is not JSON: {e}"))?
        }
        "io.debezium.data.Bits" => {
            let length = parameter(schema, "length")
                .ok_or("a Bits value without its length")?
                .parse::<usize>()
                .map_err(|_| "a Bits length that is not a number")?;
            Value::String(bits(&bytes(&value)?, length)?)
        }
        _ => match kind {
            "array" => {
                let Value::Array(items) = value else {
                    return Err("an array column whose value is not an array".into());
                };
                let element = schema.get("items").unwrap_or(&Value::Null);
                Value::Array(
                    items
                        .into_iter()
                        .map(|item| decode(element, item))
                        .collect::<Result<_, _>>()?,
                )
            }
            "bytes" => {
                bytes(&value)?;
                value
            }
            _ => value,
        },
    })
}

fn parameter<'a>(schema: &'a Value, name: &str) -> Option<&'a str> {
    schema.get("parameters")?.get(name)?.as_str()
}

/// A Decimal's scale (`parameters.scale`, written as text by Kafka's converter).
fn scale(schema: &Value) -> Result<i64, String> {
    let text = parameter(schema, "scale").ok_or("a Decimal without its scale")?;
    let scale = text
        .parse()
        .map_err(|_| format!("a Decimal scale '{text}' that is not a number"))?;
    bounded_scale(scale)
}

/// The largest scale written out (PostgreSQL's numeric scale is at most 16383; Oracle's
/// and SQL Server's far less), so that a scale cannot make text of any length.
const MAX_SCALE: i64 = 16383;

fn bounded_scale(scale: i64) -> Result<i64, String> {
    if (-MAX_SCALE..=MAX_SCALE).contains(&scale) {
        Ok(scale)
    } else {
        Err(format!("a decimal scale of {scale}, beyond ±{MAX_SCALE}"))
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("{value} where the schema says an integer"))
}

/// Base64 text as bytes.
fn bytes(value: &Value) -> Result<Vec<u8>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{value} where the schema says base64 bytes"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("'{text}' is not base64: {e}"))
}

/// A big-endian two's complement integer scaled by 10^-scale, as exact decimal text:
/// `[0x01, 0x8C]`, 2 → `3.96`; negative scales append zeros.
fn decimal(unscaled: &[u8], scale: i64) -> String {
    let number = BigInt::from_signed_bytes_be(unscaled);
    let (sign, digits) = match number.sign() {
        num_bigint::Sign::Minus => ("-", (-number).to_string()),
        _ => ("", number.to_string()),
    };
    if scale <= 0 {
        let zeros = if digits == "0" {
            0
        } else {
            scale.unsigned_abs() as usize
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let padded = if digits.len() > scale {
        digits
    } else {
        "0".repeat(scale + 1 - digits.len()) + &digits
    };
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// A time of day from `count` units of `unit_nanos`.
fn clock(count: i64, unit_nanos: i64) -> Result<Value, String> {
    count
        .checked_mul(unit_nanos)
        .filter(|nanos| (0..=DAY_NANOS).contains(nanos))
        .map(|nanos| Value::String(format_clock(nanos)))
        .ok_or_else(|| format!("{count} is not a time of day"))
}

/// An instant from `count` units, `per_second` of them a second.
fn instant(count: i64, per_second: i64) -> Value {
    let per_day = per_second * 86_400;
    let (days, rest) = (count.div_euclid(per_day), count.rem_euclid(per_day));
    Value::String(format_instant(days, rest * (1_000_000_000 / per_second)))
}

fn infinity(count: i64, positive: i64, negative: i64) -> Option<Value> {
    (count == positive)
        .then(|| Value::from("infinity"))
        .or_else(|| (count == negative).then(|| Value::from("-infinity")))
}

/// Debezium's Bits (`BitSet.toByteArray`: bit i in byte i/8, at i%8 from the lowest) as
/// PostgreSQL writes the bit string, bit 0 last, padded with zeros to `length`.
fn bits(bytes: &[u8], length: usize) -> Result<String, String> {
    // toByteArray leaves out high bytes of zeros, never adds any.
    if bytes.len() > length.div_ceil(8) {
        return Err(format!("{} bytes for {length} bits", bytes.len()));
    }
    let length = if length <= MAX_PADDED_BITS {
        length
    } else {
        let highest = bytes.iter().rposition(|byte| *byte != 0);
        highest.map_or(1, |at| at * 8 + 8 - bytes[at].leading_zeros() as usize)
    };
    Ok((0..length)
        .rev()
        .map(|i| {
            let set = bytes
                .get(i / 8)
                .is_some_and(|byte| byte >> (i % 8) & 1 == 1);
            if set {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Debezium's PostgreSQL type vectors (see tests/data/debezium/README.md).
    const VECTORS: &str = include_str!("../../../tests/data/debezium/pg_type_vectors.json");

    /// What each vector becomes: the JSON the built-in PostgreSQL source writes for the
    /// same column, by the vector's index.
    const EXPECTED: [&str; 91] = [
        r#""2016-11-04T13:51:30.123456Z""#,
        r#""1936-10-25T22:10:12.608Z""#,
        r#""2016-11-04T13:51:30.123Z""#,
        r#""2016-11-04T13:51:30.123456Z""#,
        r#""2016-11-04T11:51:30.123456Z""#,
        r#""2016-11-04""#,
        r#""13:51:30""#,
        r#""13:51:30.123""#,
        r#""24:00:00""#,
        r#""11:51:30.123789Z""#,
        r#""11:51:30.123Z""#,
        "37091106780000",
        r#""+21016-11-04T06:51:30.123456Z""#,
        r#""+21016-11-04T06:51:30Z""#,
        r#""+294247-01-01T23:59:59.999999Z""#,
        r#""+294247-01-01T23:59:59.999999Z""#,
        r#""-4713-12-31T23:59:59.999999Z""#,
        r#""-4712-12-31T23:59:59.999999Z""#,
        r#""infinity""#,
        r#""-infinity""#,
        r#""infinity""#,
        r#""-infinity""#,
        r#""1.10""#,
        r#""10""#,
        r#""3.30""#,
        r#""22.2200""#,
        r#""22""#,
        r#""1.00""#,
        r#""22.0000""#,
        r#""10.1111""#,
        r#""22.2222""#,
        r#""10""#,
        r#""22""#,
        r#""1234.11""#,
        r#""-1234.11""#,
        "1",
        "123456",
        "1234567890123",
        "3.3",
        "4.44",
        "true",
        "4000000000",
        "1",
        "123",
        r#""NaN""#,
        r#""NaN""#,
        r#""Infinity""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        r#""-Infinity""#,
        r#"{"bar": "baz"}"#,
        r#"{"bar": "baz"}"#,
        r#""<foo>bar</foo><foo>bar</foo>""#,
        r#""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#,
        "[1, 2, 3]",
        "[1550166368505037572]",
        r#"["one", "two", "three"]"#,
        r#"["cone      ", "ctwo      ", "cthree    "]"#,
        r#"["2016-11-04", "2016-11-05", "2016-11-06"]"#,
        r#"["1.20", "3.40", "5.60"]"#,
        r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "f0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#,
        r#"[{"bar": "baz"}, {"foo": "qux"}]"#,
        r#"[{"bar": "baz"}, {"foo": "qux"}]"#,
        "[3, 4000000000]",
        "null",
        r#""1.56""#,
        r#""1997-05-19""#,
        "null",
        r#""2.99""#,
        "false",
        "true",
        r#""ASNFZ4mrze8=""#,
        r#"{"k1": "v1", "k2": 11}"#,
        r#""<!--hahaha-->""#,
        r#""60f14fe2-f857-404a-b586-3b5375b3259f""#,
        r#"{"x": 1.0, "y": 2.0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": null}"#,
        r#""polar""#,
        r#""h""#,
        r#""ha""#,
        r#""h""#,
        r#""hahaha""#,
        r#""11:11:11""#,
        r#""11:11:11.00001""#,
        r#""11:11:11Z""#,
        r#""11:11:11.00001Z""#,
        r#""2011-11-11T11:11:11Z""#,
        r#""2011-11-11T11:11:11.123456Z""#,
        r#""2011-11-11T03:11:11Z""#,
        r#""2011-11-11T03:11:11.123456Z""#,
        "37091106780000",
        r#""1999-09-09""#,
    ];

    /// The schemas of the vectors captured from RisingWave's tests, which record only the
    /// column's SQL type (the connector settings there are RisingWave's).
    fn captured_schema(pg_type: &str) -> Value {
        let name = match pg_type {
            "bytea" => return json!({"type": "bytes"}),
            "jsonb" => "io.debezium.data.Json",
            "xml" => "io.debezium.data.Xml",
            "uuid" => "io.debezium.data.Uuid",
            "point" => "io.debezium.data.geometry.Point",
            "enum bear" => "io.debezium.data.Enum",
            "time(0)" | "time(6)" => "io.debezium.time.MicroTime",
            "time(0) with time zone" | "time(6) with time zone" => "io.debezium.time.ZonedTime",
            "timestamp(0)" => "io.debezium.time.Timestamp",
            "timestamp(6)" => "io.debezium.time.MicroTimestamp",
            "timestamp(0) with time zone" | "timestamp(6) with time zone" => {
                "io.debezium.time.ZonedTimestamp"
            }
            "interval" => "io.debezium.time.Interval",
            _ => return json!({"type": "string"}),
        };
        json!({"type": "string", "name": name})
    }

    /// A vector's `debezium_type` (an object, or text such as `int64
    /// io.debezium.time.MicroTimestamp (…)` or `array<int32 io.debezium.time.Date>`) as
    /// the field schema Kafka's JSON converter writes.
    fn schema_of(described: &Value, pg_type: &str) -> Value {
        let Some(text) = described.as_str() else {
            return if described.is_null() {
                captured_schema(pg_type)
            } else {
                described.clone()
            };
        };
        if let Some(items) = text
            .strip_prefix("array<")
            .and_then(|rest| rest.split_once('>'))
        {
            let items = match items.0 {
                "bytes Decimal scale 2 precision 10" => json!({
                    "type": "bytes",
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "parameters": {"scale": "2", "connect.decimal.precision": "10"}
                }),
                element => schema_of(&Value::from(element), pg_type),
            };
            return json!({"type": "array", "items": items});
        }
        let mut words = text.split_whitespace();
        let kind = words.next().unwrap_or("");
        match words.next().filter(|word| word.contains('.')) {
            Some(name) => json!({"type": kind, "name": name}),
            None => json!({"type": kind}),
        }
    }

    #[test]
    fn every_postgresql_vector_decodes_as_the_postgresql_source_writes_it() {
        let vectors: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
        assert_eq!(vectors.len(), EXPECTED.len());
        for (index, (vector, expected)) in vectors.iter().zip(EXPECTED).enumerate() {
            let pg_type = vector["pg_type"].as_str().unwrap_or("");
            let schema = schema_of(&vector["debezium_type"], pg_type);
            // JsonConverter writes non-finite floats as text (see the data's README).
            let payload = match (
                vector["json_payload"].as_str(),
                vector["sql_literal"].as_str(),
            ) {
                (None, Some(literal)) => Value::from(literal.trim_matches('\'')),
                (Some(text), _) => serde_json::from_str(text).unwrap(),
                (None, None) => Value::Null,
            };
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(
                decode(&schema, payload.clone()),
                Ok(expected),
                "vector {index}: {pg_type} {schema} {payload}"
            );
        }
    }

    #[test]
    fn decimals_of_any_size_and_sign() {
        let schema = |scale: &str| {
            json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                   "parameters": {"scale": scale}})
        };
        let base64 =
            |bytes: &[u8]| Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
        let cases: [(&[u8], &str, &str); 7] = [
            (&[0x01, 0x8C], "2", "3.96"),
            (&[0xFE, 0x74], "2", "-3.96"),
            (&[0x05], "3", "0.005"),
            (&[0xFB], "3", "-0.005"),
            (&[0x00], "2", "0.00"),
            (&[0x0C], "-2", "1200"),
            // 2^64 + 1: beyond any integer JSON would hold exactly.
            (
                &[0x01, 0, 0, 0, 0, 0, 0, 0, 0x01],
                "1",
                "1844674407370955161.7",
            ),
        ];
        for (bytes, scale, text) in cases {
            assert_eq!(decode(&schema(scale), base64(bytes)), Ok(Value::from(text)));
        }
        let no_scale = json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"});
        assert_eq!(
            decode(&no_scale, Value::from("AYw=")),
            Err("a Decimal without its scale".into())
        );
        assert!(decode(&schema("2"), Value::from("A*w="))
            .unwrap_err()
            .contains("'A*w=' is not base64"));
        assert!(decode(&schema("2"), Value::from(3.96))
            .unwrap_err()
            .contains("3.96 where the schema says base64 bytes"));
        assert!(decode(&schema("x"), Value::from("AYw=")).is_err());
        assert!(decode(&schema("100000"), Value::from("AYw="))
            .unwrap_err()
            .contains("beyond"));
        let variable = json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"});
        assert!(decode(
            &variable,
            json!({"scale": -4_000_000_000_000_000_000_i64, "value": "AQ=="})
        )
        .is_err());
        assert_eq!(
            decode(&variable, json!({"scale": 3, "value": "AQ=="})),
            Ok(json!("0.001"))
        );
        let date = json!({"type": "int32", "name": "io.debezium.time.Date"});
        assert!(decode(&date, Value::from(i64::MAX)).is_err());
    }

    #[test]
    fn bits_as_postgresql_writes_them() {
        let schema = |length: &str| json!({"type": "bytes", "name": "io.debezium.data.Bits", "parameters": {"length": length}});
        for (base64, length, bits) in [
            ("BQ==", "3", "101"),
            ("VQU=", "11", "10101010101"),
            ("AQID", "24", "000000110000001000000001"),
            ("", "2", "00"),
            ("BQ==", "2147483647", "101"),
            ("BA==", "3", "100"),
            ("AQ==", "3", "001"),
            ("", "300", "0"),
        ] {
            assert_eq!(
                decode(&schema(length), Value::from(base64)),
                Ok(Value::from(bits))
            );
        }
        assert!(decode(&schema("3"), Value::from("VQU=")).is_err());
        let no_length = json!({"type": "bytes", "name": "io.debezium.data.Bits"});
        assert!(decode(&no_length, Value::from("BQ==")).is_err());
    }

    #[test]
    fn rows_name_the_column_that_fails_and_set_aside_unavailable_ones() {
        let fields = vec![
            json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}, "field": "Total"}),
            json!({"type": "string", "field": "Notes"}),
            json!({"type": "array", "items": {"type": "int32"}, "field": "Codes"}),
            json!({"type": "bytes", "field": "Blob"}),
        ];
        let mut row = json!({"Total": "AYw=", "Notes": UNAVAILABLE, "Codes": UNAVAILABLE.bytes().collect::<Vec<u8>>(),
                             "Blob": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==", "Other": 1});
        let Value::Object(map) = &mut row else {
            unreachable!()
        };
        assert_eq!(
            decode_row(map, &fields),
            Ok(vec!["Notes".into(), "Codes".into(), "Blob".into()])
        );
        assert_eq!(row, json!({"Total": "3.96", "Other": 1}));
        let mut bad = json!({"Total": "not base64!"});
        let Value::Object(map) = &mut bad else {
            unreachable!()
        };
        assert!(decode_row(map, &fields)
            .unwrap_err()
            .starts_with("column 'Total': "));
    }

    #[test]
    fn times_and_timestamps_out_of_range_are_errors() {
        let micro_time = json!({"type": "int64", "name": "io.debezium.time.MicroTime"});
        assert!(decode(&micro_time, Value::from(86_400_000_001_i64)).is_err());
        assert!(decode(&micro_time, Value::from(-1)).is_err());
        assert!(decode(&micro_time, Value::from("13:00")).is_err());
        let nanos = json!({"type": "int64", "name": "io.debezium.time.NanoTimestamp"});
        assert_eq!(
            decode(&nanos, Value::from(i64::MAX)),
            Ok(Value::from("infinity"))
        );
        assert_eq!(
            decode(&nanos, Value::from(1_478_267_490_123_456_789_i64)),
            Ok(Value::from("2016-11-04T13:51:30.123456789Z"))
        );
        let zoned = json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"});
        assert!(decode(&zoned, Value::from("yesterday")).is_err());
        let json_text = json!({"type": "string", "name": "io.debezium.data.Json"});
        assert!(decode(&json_text, Value::from("{broken")).is_err());
    }
}
