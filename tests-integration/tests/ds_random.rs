//! Two thousand random-but-valid (DS) and two thousand random-garbage (DS and SINK) argument lists against
//! one server (seeded, so a failure replays): valid ones succeed, garbage gets errors,
//! and the server stays up throughout.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redsink_tests::{call, snapshot, Options, RedisServer};

const COMMANDS: [&str; 25] = [
    "DS.CREATE",
    "DS.ALTER",
    "DS.UPDATE",
    "DS.PUT",
    "DS.GET",
    "DS.MGET",
    "DS.DEL",
    "DS.DEVICES",
    "DS.LEN",
    "DS.RANGE",
    "DS.INFO",
    "SINK.HASH",
    "SINK.STRING",
    "SINK.JSON",
    "SINK.LIST",
    "SINK.SET",
    "SINK.ZSET",
    "SINK.STREAM",
    "SINK.DEL",
    "SINK.VERSION",
    "SINK.SETVERSION",
    "SINK.DEFINE",
    "SINK.WRITE",
    "SINK.DROP",
    "SINK.INFO",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A random JSON value up to `depth` levels deep.
fn json(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::Value;
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::from(rng.random::<bool>()),
        2 => Value::from(rng.random_range(-1e9..1e9)),
        3 => Value::from(format!("s{}\u{e9}\"\\", rng.random::<u16>())),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(object(rng, depth - 1)),
    }
}

fn object(rng: &mut StdRng, depth: u32) -> serde_json::Map<String, serde_json::Value> {
    (0..rng.random_range(0..6))
        .map(|i| (format!("f{i}"), json(rng, depth)))
        .collect()
}

/// A command that must succeed on keys `k0`..`k3`, all device streams.
fn valid(rng: &mut StdRng) -> Vec<String> {
    let key = format!("k{}", rng.random_range(0..4));
    let device = format!("dev-{}", rng.random_range(0..20));
    let ms = rng.random_range(0..4_000_000_000_000i64).to_string();
    let payload = serde_json::Value::Object(object(rng, 4)).to_string();
    let words: Vec<String> = match rng.random_range(0..10) {
        0 => {
            let option = pick(rng, &["TTL", "HISTORY", "ONUPDATE", "DATEFORMAT"]);
            let value = match option {
                "TTL" => rng.random_range(0..100_000).to_string(),
                "HISTORY" => rng.random_range(0..10).to_string(),
                "ONUPDATE" => pick(rng, &["REPLACE", "MERGE", "merge"]).to_owned(),
                _ => pick(rng, &["EPOCH", "ISO8601", "iso8601"]).to_owned(),
            };
            vec!["DS.ALTER".into(), key, option.into(), value]
        }
        1 | 2 => {
            let mut words = vec!["DS.UPDATE".into(), key, device, payload];
            if rng.random() {
                words.extend(["TS".into(), ms]);
            }
            words
        }
        3 => vec!["DS.PUT".into(), key, device, ms, payload],
        4 => vec!["DS.GET".into(), key, device],
        5 => vec![
            "DS.MGET".into(),
            key,
            device,
            "dev-1".into(),
            "nobody".into(),
        ],
        6 => vec!["DS.DEL".into(), key, device],
        7 => vec![
            "DS.DEVICES".into(),
            key,
            "COUNT".into(),
            rng.random_range(1..50).to_string(),
            "MATCH".into(),
            "dev-1*".into(),
        ],
        8 => vec![
            "DS.RANGE".into(),
            key,
            device,
            "-".into(),
            pick(rng, &["+", "9999999999999"]).into(),
        ],
        _ => vec![pick(rng, &["DS.LEN", "DS.INFO"]).into(), key],
    };
    words
}

/// Random words, random bytes and random numbers behind a random DS command.
fn garbage(rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut words = vec![pick(rng, &COMMANDS).as_bytes().to_vec()];
    for _ in 0..rng.random_range(0..7) {
        let word = match rng.random_range(0..8) {
            0 => (0..rng.random_range(0..40))
                .map(|_| rng.random::<u8>())
                .collect(),
            1 => pick(
                rng,
                &[
                    "TTL",
                    "HISTORY",
                    "TS",
                    "COUNT",
                    "CURSOR",
                    "MATCH",
                    "DEVICE",
                    "ONUPDATE",
                    "-",
                    "+",
                    "VERSION",
                    "MAXLEN",
                    "PREPEND",
                    "REPLACE",
                    "FLATTEN",
                    "MAP",
                    "OPCODE",
                    "ID",
                    "JSON",
                    "TYPE",
                    "PREFIX",
                    "KEYFIELD",
                    "FIELDFIELD",
                    "MEMBERFIELD",
                    "SCOREFIELD",
                    "hash",
                    "zset",
                    "stream",
                    "list",
                    "TOMBSTONE",
                    "s0",
                ],
            )
            .into(),
            2 => rng.random::<i64>().to_string().into_bytes(),
            3 => pick(
                rng,
                &[
                    "{",
                    "}",
                    "[",
                    "{\"a\":",
                    "null",
                    "1e999",
                    "\"\\ud800\"",
                    "{\"a\":1}",
                    "[[[[[[[[",
                ],
            )
            .into(),
            4 => format!("k{}", rng.random_range(0..6)).into_bytes(),
            5 => "[".repeat(rng.random_range(0..300)).into_bytes(),
            6 => Vec::new(),
            _ => pick(
                rng,
                &["0", "-1", "18446744073709551616", "3.5", "*", "[a-", "\\"],
            )
            .into(),
        };
        words.push(word);
    }
    words
}

#[test]
fn random_valid_and_garbage_commands_leave_the_server_running() {
    let mut server = RedisServer::with(Options::default().with_json());
    let mut con = server.connection();
    for i in 0..4 {
        call::<()>(
            &mut con,
            &[
                "DS.CREATE",
                &format!("k{i}"),
                "HISTORY",
                "3",
                "TTL",
                "1000000",
            ],
        )
        .unwrap();
    }
    call::<()>(&mut con, &["SET", "k4", "a plain string"]).unwrap();
    let mut rng = StdRng::seed_from_u64(0x0072_6564_7369_6e6b);
    for i in 0..2000 {
        let words = valid(&mut rng);
        if let Err(error) = call::<redis::Value>(&mut con, &words) {
            panic!("valid command #{i} {words:?} failed: {error}");
        }
    }
    for i in 0..2000 {
        let words = garbage(&mut rng);
        match call::<redis::Value>(&mut con, &words) {
            Err(error) if error.to_string().contains("internal error") => {
                panic!("command #{i} {words:?} hit a bug: {error}")
            }
            Err(error) if error.is_io_error() => {
                panic!("command #{i} {words:?} broke the server: {error}")
            }
            other => {
                let pong: redis::RedisResult<String> = call(&mut con, &["PING"]);
                assert_eq!(
                    pong.as_deref().ok(),
                    Some("PONG"),
                    "after #{i} {words:?} -> {other:?}"
                );
            }
        }
    }
    assert!(server.is_alive(), "{}", server.log());
    assert!(!server.log().contains("panicked"), "{}", server.log());
    // The data is still whole: it survives a reload.
    // Without TTLs the reclaimer has nothing to do between the two snapshots.
    let (_, streams): (String, Vec<Vec<u8>>) = call(
        &mut con,
        &["SCAN", "0", "COUNT", "1000", "TYPE", "redsinkDS"],
    )
    .unwrap();
    assert!(streams.len() >= 4, "SCAN TYPE finds the streams");
    for key in &streams {
        call::<()>(&mut con, &[&b"DS.ALTER"[..], key, b"TTL", b"0"]).unwrap();
    }
    let before = snapshot(&mut con);
    call::<()>(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    assert_eq!(snapshot(&mut con), before);
}
