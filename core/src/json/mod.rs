//! JSON input under limits, and RFC 7396 merge patches.
//!
//! Every byte of JSON reaching the module is untrusted, so parsing checks size before it
//! starts and nesting depth and field count after, and reports each with the limit's name.

pub mod scan;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// serde_json refuses nesting deeper than this on its own; our limit cannot exceed it.
pub const MAX_SUPPORTED_DEPTH: usize = 127;

/// Bounds on one JSON payload (module configuration `redsink.max-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_fields: usize,
}

impl Limits {
    /// For JSON that is ours already (serialized from a parsed value).
    pub const UNLIMITED: Limits = Limits {
        max_bytes: usize::MAX,
        max_depth: MAX_SUPPORTED_DEPTH,
        max_fields: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_fields: 4096,
        }
    }
}

/// Parses `bytes` as a JSON object within `limits`.
pub fn parse_object(bytes: &[u8], limits: &Limits) -> Result<Map<String, Value>> {
    match parse_value(bytes, limits)? {
        Value::Object(map) => Ok(map),
        other => Err(Error::NotAnObject(kind(&other))),
    }
}

/// Parses `bytes` as any JSON value within `limits`.
pub fn parse_value(bytes: &[u8], limits: &Limits) -> Result<Value> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::PayloadTooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            Error::TooDeep {
                limit: limits.max_depth,
            }
        } else {
            Error::InvalidJson(e.to_string())
        }
    })?;
    check_shape(&value, limits)?;
    Ok(value)
}

/// Checks nesting depth and field count (object members and array elements, at every level).
pub fn check_shape(value: &Value, limits: &Limits) -> Result<()> {
    let mut fields = 0;
    walk(value, 1, limits.max_depth, &mut fields)?;
    if fields > limits.max_fields {
        return Err(Error::TooManyFields {
            count: fields,
            limit: limits.max_fields,
        });
    }
    Ok(())
}

// Recursion is bounded: serde_json never builds a value deeper than MAX_SUPPORTED_DEPTH.
fn walk(value: &Value, depth: usize, max_depth: usize, fields: &mut usize) -> Result<()> {
    let mut visit = |child: &Value| {
        *fields += 1;
        walk(child, depth + 1, max_depth, fields)
    };
    match value {
        Value::Object(map) if depth <= max_depth => map.values().try_for_each(&mut visit),
        Value::Array(items) if depth <= max_depth => items.iter().try_for_each(&mut visit),
        Value::Object(_) | Value::Array(_) => Err(Error::TooDeep { limit: max_depth }),
        _ => Ok(()),
    }
}

/// Removes `null` members from `value` and the objects nested in it, as a merge patch
/// applied to nothing would (arrays are values: kept whole). Same result as
/// `merge_patch` into an empty object, without rebuilding anything.
pub fn strip_nulls(value: &mut Value) {
    if let Value::Object(members) = value {
        members.retain(|_, member| !member.is_null());
        members.values_mut().for_each(strip_nulls);
    }
}

/// The JSON object `text`, within `limits`, as compact text without null members (at
/// every level, as [`strip_nulls`]) and without the top-level members `drop` names; in one
/// pass, strings and numbers as written.
pub fn compact_object(text: &[u8], limits: &Limits, drop: &[&str]) -> Result<String> {
    let mut reader = scan::Reader::object(text, limits)?;
    let step = drops_members(&mut reader, drop);
    let mut out = Vec::with_capacity(text.len());
    if !step.map_err(|stop| reader.error(stop))? {
        // Nothing to leave out, the usual case: the text itself, spaces taken out.
        reader.finish()?;
        if text
            .iter()
            .fold(false, |space, &byte| space | (byte <= b' '))
        {
            scan::compact(text, &mut out);
        } else {
            out.extend_from_slice(text);
        }
    } else {
        let mut reader = scan::Reader::object(text, limits)?;
        let step = compact_members(&mut reader, &mut out, drop);
        step.map_err(|stop| reader.error(stop))?;
        reader.finish()?;
    }
    // Valid UTF-8 (the reader checked), cut only between tokens.
    String::from_utf8(out).map_err(|_| Error::InvalidJson("not UTF-8".into()))
}

/// Reads the open object to its end, validating it: whether a member is null (at any
/// level) or named in `drop` (at the top level). Stops at the first such member.
fn drops_members(reader: &mut scan::Reader, drop: &[&str]) -> scan::Step<bool> {
    while let Some(name) = reader.member()? {
        let item = reader.item()?;
        if item == scan::Item::Null || drop.iter().any(|dropped| name.is(dropped)) {
            return Ok(true);
        }
        if item == scan::Item::Object && drops_members(reader, &[])? {
            return Ok(true);
        }
    }
    Ok(false)
}

// Recursion is bounded by the reader's depth limit; nested objects drop nothing.
fn compact_members(reader: &mut scan::Reader, out: &mut Vec<u8>, drop: &[&str]) -> scan::Step<()> {
    out.push(b'{');
    let mut first = true;
    while let Some(name) = reader.member()? {
        let item = reader.item()?;
        if item == scan::Item::Null || drop.iter().any(|dropped| name.is(dropped)) {
            if item == scan::Item::Object {
                reader.skip_object()?;
            }
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.raw());
        out.extend_from_slice(b"\":");
        match item {
            scan::Item::Object => compact_members(reader, out, &[])?,
            scan::Item::String(text) => {
                out.push(b'"');
                out.extend_from_slice(text.raw());
                out.push(b'"');
            }
            other => other.write_text(out),
        }
    }
    out.push(b'}');
    Ok(())
}

/// Applies `patch` to `target` as an RFC 7396 JSON merge patch: objects merge member by
/// member, `null` removes a member, anything else replaces. Member order is kept.
pub fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(members) = target {
        for (name, value) in patch {
            if value.is_null() {
                members.shift_remove(&name);
            } else {
                merge_patch(members.entry(name).or_insert(Value::Null), value);
            }
        }
    }
}

/// `value` as compact JSON text. (`Value`'s `Display` goes through `fmt::Write` and
/// costs several times as much.)
pub fn to_text(value: &Value) -> String {
    // Serializing a `Value` cannot fail: its map keys are strings.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// The JSON kind of `value`, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        "[".repeat(depth) + &"]".repeat(depth)
    }

    #[test]
    fn objects_compact_without_nulls_and_dropped_members() {
        let limits = Limits::default();
        let text = br#" { "a" : 1.50 , "ts": {"x": 1}, "n": null, "b": {"c": null, "d": [1, null]},
            "s": "q\"\u00e9", "id": "x" } "#;
        assert_eq!(
            compact_object(text, &limits, &["ts", "id"]).unwrap(),
            r#"{"a":1.50,"b":{"d":[1,null]},"s":"q\"\u00e9"}"#
        );
        // Nothing left out: the text itself, spaces between tokens taken out, spaces in
        // strings kept; a name written with escapes is still the name it spells.
        assert_eq!(
            compact_object(br#" { "a b" : "c d" , "x":[1, 2] } "#, &limits, &["ts"]).unwrap(),
            r#"{"a b":"c d","x":[1,2]}"#
        );
        assert_eq!(
            compact_object(br#"{"t\u0073":1,"a":2}"#, &limits, &["ts"]).unwrap(),
            r#"{"a":2}"#
        );
        // Errors past the first member left out are found by the second pass.
        let limits_3 = Limits {
            max_fields: 3,
            ..limits
        };
        let err = compact_object(br#"{"a":null,"b":"#, &limits, &[]).unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON: EOF"), "{err}");
        assert_eq!(
            compact_object(br#"{"a":null,"b":1,"c":2,"d":3}"#, &limits_3, &[]),
            Err(Error::TooManyFields { count: 4, limit: 3 })
        );
        assert_eq!(compact_object(b"{}", &limits, &[]).unwrap(), "{}");
        assert_eq!(
            compact_object(b"[1]", &limits, &[]),
            Err(Error::NotAnObject("an array"))
        );
    }

    #[test]
    fn objects_parse_and_others_are_refused() {
        let limits = Limits::default();
        let map = parse_object(br#"{"a":1,"b":{"c":[1,2]}}"#, &limits).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(
            parse_object(b"[1]", &limits),
            Err(Error::NotAnObject("an array"))
        );
        assert_eq!(
            parse_object(b"\"x\"", &limits),
            Err(Error::NotAnObject("a string"))
        );
        let err = parse_object(b"{\"a\":", &limits).unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON: EOF"), "{err}");
        assert!(parse_object(b"{\"a\":1} x", &limits).is_err());
        assert!(parse_object(b"\xff", &limits).is_err());
    }

    #[test]
    fn size_depth_and_fields_are_limited() {
        let limits = Limits {
            max_bytes: 20,
            max_depth: 3,
            max_fields: 3,
        };
        assert_eq!(
            parse_value(&[b' '; 21], &limits),
            Err(Error::PayloadTooLarge {
                size: 21,
                limit: 20
            })
        );
        assert!(parse_value(nested(3).as_bytes(), &limits).is_ok());
        assert_eq!(
            parse_value(nested(4).as_bytes(), &limits),
            Err(Error::TooDeep { limit: 3 })
        );
        assert_eq!(
            parse_value(b"[1,2,3,4]", &limits),
            Err(Error::TooManyFields { count: 4, limit: 3 })
        );
        let wide = Limits {
            max_bytes: 1 << 20,
            max_depth: MAX_SUPPORTED_DEPTH,
            max_fields: 1 << 20,
        };
        assert!(parse_value(nested(MAX_SUPPORTED_DEPTH).as_bytes(), &wide).is_ok());
        assert_eq!(
            parse_value(nested(100_000).as_bytes(), &wide),
            Err(Error::TooDeep {
                limit: MAX_SUPPORTED_DEPTH
            })
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, patch);
            assert_eq!(target, expected);
        }
    }

    #[test]
    fn strip_nulls_is_a_merge_into_nothing() {
        let payload = json!({"a":null,"b":{"c":null,"d":[null,{"e":null}]},"f":1});
        let mut merged = json!({});
        merge_patch(&mut merged, payload.clone());
        let mut stripped = payload;
        strip_nulls(&mut stripped);
        assert_eq!(stripped, merged);
        assert_eq!(
            stripped.to_string(),
            r#"{"b":{"d":[null,{"e":null}]},"f":1}"#
        );
    }

    #[test]
    fn merge_patch_keeps_member_order() {
        let mut target = json!({"z":1,"a":2,"m":3});
        merge_patch(&mut target, json!({"z":null,"a":5,"b":6}));
        assert_eq!(target.to_string(), r#"{"a":5,"m":3,"b":6}"#);
    }
}
