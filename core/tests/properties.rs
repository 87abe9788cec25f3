//! Property tests of the parsers every client byte goes through: on random and mutated
//! input they never panic and agree with a reference. Seeded, so a failure replays.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redsink_core::ds::{DeviceStream, Settings};
use redsink_core::glob;
use redsink_core::json::{self, Limits};
use redsink_core::sink::flatten_json;
use serde_json::{Map, Value};

/// The obvious exponential matcher, as a reference for `glob::matches`.
fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|skip| reference_glob(&pattern[1..], &text[skip..])),
        Some(b'?') => !text.is_empty() && reference_glob(&pattern[1..], &text[1..]),
        Some(b'\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && reference_glob(&pattern[2..], &text[1..])
        }
        Some(&c) => text.first() == Some(&c) && reference_glob(&pattern[1..], &text[1..]),
    }
}

#[test]
fn glob_agrees_with_the_reference_on_random_patterns() {
    let mut rng = StdRng::seed_from_u64(1);
    let alphabet = b"ab*?\\";
    for _ in 0..20_000 {
        let pattern: Vec<u8> = (0..rng.random_range(0..8))
            .map(|_| alphabet[rng.random_range(0..5)])
            .collect();
        let text: Vec<u8> = (0..rng.random_range(0..8))
            .map(|_| alphabet[rng.random_range(0..2)])
            .collect();
        assert_eq!(
            glob::matches(&pattern, &text),
            reference_glob(&pattern, &text),
            "{:?} ~ {:?}",
            String::from_utf8_lossy(&pattern),
            String::from_utf8_lossy(&text)
        );
    }
    // Classes and garbage never panic.
    for _ in 0..20_000 {
        let pattern: Vec<u8> = (0..rng.random_range(0..12))
            .map(|_| b"[]^-\\*?ab"[rng.random_range(0..9)])
            .collect();
        let text: Vec<u8> = (0..rng.random_range(0..12)).map(|_| rng.random()).collect();
        glob::matches(&pattern, &text);
    }
}

/// Makes `edits` random edits to `bytes`: a byte flipped, dropped, or one of `inserts`
/// inserted.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>, edits: usize, inserts: &[u8]) {
    for _ in 0..edits {
        if bytes.is_empty() {
            break;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..3) {
            0 => bytes[at] = rng.random(),
            1 => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, inserts[rng.random_range(0..inserts.len())]),
        }
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::from(rng.random::<bool>()),
        2 if rng.random::<bool>() => Value::from(rng.random::<i32>()),
        2 => Value::from((rng.random::<f64>() - 0.5) * 10f64.powi(rng.random_range(-9..12))),
        3 => Value::from("é\"\\\u{1F680}".repeat(rng.random_range(0..3))),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|i| (format!("k{i}"), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

#[test]
fn json_parsing_never_panics_and_accepts_exactly_what_serde_accepts() {
    let mut rng = StdRng::seed_from_u64(2);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: json::MAX_SUPPORTED_DEPTH,
        max_fields: 1 << 20,
    };
    for _ in 0..20_000 {
        let mut bytes = random_json(&mut rng, 4).to_string().into_bytes();
        let edits = rng.random_range(0..3);
        mutate(&mut rng, &mut bytes, edits, b"{}[]\",:\\0n");
        let ours = json::parse_value(&bytes, &limits);
        let serde = serde_json::from_slice::<Value>(&bytes);
        assert_eq!(
            ours.is_ok(),
            serde.is_ok(),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// Flattening as it was done on a parsed object, as a reference for the one-pass reader.
fn reference_flatten(object: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, String)>) {
    for (name, value) in object {
        let field = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Object(nested) => reference_flatten(nested, &field, out),
            Value::Null => {}
            Value::String(text) => out.push((field, text.clone())),
            other => out.push((field, other.to_string())),
        }
    }
}

#[test]
fn one_pass_flattening_agrees_with_the_parsed_reference() {
    let mut rng = StdRng::seed_from_u64(4);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: json::MAX_SUPPORTED_DEPTH,
        max_fields: 1 << 20,
    };
    for round in 0..20_000 {
        let value = random_json(&mut rng, 4);
        let text = if round % 2 == 0 {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        let ours = flatten_json(text.as_bytes(), b".", &limits);
        match &value {
            Value::Object(object) => {
                let mut expected = Vec::new();
                reference_flatten(object, "", &mut expected);
                assert_eq!(ours.unwrap().to_pairs(), expected, "{text}");
            }
            _ => assert!(ours.is_err(), "{text}"),
        }
        // Mutated, it accepts exactly the objects serde_json accepts.
        let mut bytes = text.into_bytes();
        let edits = rng.random_range(1..3);
        mutate(&mut rng, &mut bytes, edits, b"{}[]\",:\\0n-.e");
        let serde_object = matches!(
            serde_json::from_slice::<Value>(&bytes),
            Ok(Value::Object(_))
        );
        assert_eq!(
            flatten_json(&bytes, b".", &limits).is_ok(),
            serde_object,
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn device_streams_never_panic_and_keep_one_record_per_device() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut stream = DeviceStream::new(Settings {
        history: 3,
        ttl_secs: 5,
        ..Settings::default()
    });
    let limits = Limits::default();
    for step in 0..20_000i64 {
        let device = format!("d{}", rng.random_range(0..30));
        let now = 1_000_000 + step * 10;
        match rng.random_range(0..5) {
            0 | 1 => {
                let patch = random_json(&mut rng, 3);
                if patch.is_object() {
                    let ms = now - rng.random_range(0..10_000);
                    let payload = patch.to_string();
                    let (_, stored) = stream
                        .update(&device, payload.as_bytes(), ms, Some(now), &limits)
                        .unwrap();
                    let stored = stored.clone();
                    let record: Value =
                        serde_json::from_str(&stream.render(&device, &stored)).unwrap();
                    assert_eq!(record["deviceId"], Value::from(device.as_str()));
                }
            }
            2 => {
                stream.delete(&device, now);
            }
            3 => {
                stream.reclaim(now, rng.random_range(1..20));
            }
            _ => {
                let cursor: Vec<u8> = (0..rng.random_range(0..6))
                    .map(|_| b"0123456789abcdefz"[rng.random_range(0..17)])
                    .collect();
                let _ = stream.scan(&cursor, rng.random_range(1..10), Some(b"d1*"), now);
            }
        }
        assert!(stream.live_len(now) <= stream.stored_len());
        assert!(stream.stored_len() <= 30);
        for (_, device) in stream.devices() {
            assert!(device.history().count() <= 3);
            let times: Vec<i64> = device.history().map(|r| r.ms).collect();
            assert!(
                times.windows(2).all(|pair| pair[0] <= pair[1]),
                "history in time order"
            );
        }
    }
}

/// A JSON Merge Patch on parsed values, as a reference for the text merge.
#[test]
fn json_patches_agree_with_merge_patch_and_never_panic() {
    use redsink_core::sink::{flatten_patch, patch_json};
    let mut rng = StdRng::seed_from_u64(5);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: json::MAX_SUPPORTED_DEPTH,
        max_fields: 1 << 20,
    };
    for _ in 0..5_000 {
        let stored = Value::Object(match random_json(&mut rng, 3) {
            Value::Object(object) => object,
            _ => Map::new(),
        });
        let patch = Value::Object(match random_json(&mut rng, 3) {
            Value::Object(object) => object,
            _ => Map::new(),
        });
        let merged = patch_json(
            Some(stored.to_string().as_bytes()),
            patch.to_string().as_bytes(),
            &limits,
        )
        .unwrap();
        let mut reference = stored.clone();
        json::merge_patch(&mut reference, patch.clone());
        // Compared as serde_json reads both texts (its float parsing is not always the
        // nearest double; the merge keeps the digits as written).
        let read = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(
            read(&merged),
            read(&reference.to_string()),
            "{stored} + {patch}"
        );
        // Mutated stored text and patches: an answer or an error, never a panic.
        let (mut stored_bytes, mut patch_bytes) = (
            stored.to_string().into_bytes(),
            patch.to_string().into_bytes(),
        );
        mutate(&mut rng, &mut stored_bytes, 2, b"{}[]\",:\\0n");
        mutate(&mut rng, &mut patch_bytes, 2, b"{}[]\",:\\0n");
        let _ = patch_json(Some(&stored_bytes), &patch_bytes, &limits);
        let _ = flatten_patch(&patch_bytes, b".", &limits);
    }
}

/// The date and time parsers on random and mutated text: an answer or `None`, never a
/// panic, and what they read formats back to what a parser reads again.
#[test]
fn time_parsers_never_panic() {
    use redsink_core::time::{
        format_date, format_instant, parse_clock_with_offset, parse_date, parse_instant,
    };
    let mut rng = StdRng::seed_from_u64(6);
    let seeds = [
        "2016-11-04 13:51:30.123456+02",
        "+21016-11-04T06:51:30.000000Z",
        "4713-12-31 23:59:59.999999 BC",
        "13:51:30.123789+02:00",
        "2024-02-29",
        "24:00:00",
        "-0001-01-01T00:00:00Z",
    ];
    for _ in 0..50_000 {
        let mut bytes = seeds[rng.random_range(0..seeds.len())].as_bytes().to_vec();
        let edits = rng.random_range(0..4);
        mutate(&mut rng, &mut bytes, edits, b"0123456789-+:.TZ B\xc3\xa9");
        let text = String::from_utf8_lossy(&bytes);
        if let Some(at) = parse_instant(&text) {
            let again = parse_instant(&format_instant(at.days, at.nanos));
            assert_eq!(again, Some(at), "{text}");
        }
        if let Some(days) = parse_date(&text) {
            assert_eq!(parse_date(&format_date(days)), Some(days), "{text}");
        }
        let _ = parse_clock_with_offset(&text);
    }
}
