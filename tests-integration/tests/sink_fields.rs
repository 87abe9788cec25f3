//! `SINK.HASH key FIELDS n field value …`: fields a client flattened already write the
//! same hash, with the same versions, expiry and replies, as the JSON they came from.

use redis::Connection;
use redsink_tests::{call, now_ms, snapshot, RedisServer};

/// (JSON, its fields flattened with `.`, nulls left out): as the worker flattens a row.
const ROWS: &[(&str, &[(&str, &str)])] = &[
    (
        r#"{"id":1,"name":"Ann","n":{"a":true,"b":null,"c":[1,"x"]}}"#,
        &[
            ("id", "1"),
            ("name", "Ann"),
            ("n.a", "true"),
            ("n.c", r#"[1,"x"]"#),
        ],
    ),
    (r#"{"id":1,"name":"Bo"}"#, &[("id", "1"), ("name", "Bo")]),
    (r#"{}"#, &[]),
];

fn fields_form<'a>(
    key: &'a str,
    pairs: &[(&'a str, &'a str)],
    options: &[&'a str],
) -> Vec<&'a str> {
    let count: &'static str = Box::leak(pairs.len().to_string().into_boxed_str());
    let mut args = vec!["SINK.HASH", key, "FIELDS", count];
    args.extend(pairs.iter().flat_map(|(name, value)| [*name, *value]));
    args.extend_from_slice(options);
    args
}

/// Writes each row to `json:<n>` in the JSON form and `fields:<n>` in the FIELDS form,
/// with `options`; returns both forms' replies.
fn write_both(
    con: &mut Connection,
    n: usize,
    options: &[&str],
) -> Vec<(redis::Value, redis::Value)> {
    let (json_key, fields_key) = (format!("json:{n}"), format!("fields:{n}"));
    ROWS.iter()
        .enumerate()
        .map(|(i, (json, pairs))| {
            let version = (i + 1).to_string();
            let mut options = options.to_vec();
            options.extend(["VERSION", &version]);
            let mut by_json = vec!["SINK.HASH", &json_key, json];
            by_json.extend_from_slice(&options);
            let by_json: redis::Value = call(con, &by_json).unwrap();
            let by_fields: redis::Value =
                call(con, &fields_form(&fields_key, pairs, &options)).unwrap();
            (by_json, by_fields)
        })
        .collect()
}

fn hash_and_version(con: &mut Connection, key: &str) -> (Vec<(String, String)>, Option<i64>, bool) {
    let mut fields: Vec<(String, String)> = call(con, &["HGETALL", key]).unwrap();
    fields.sort();
    let version: Option<i64> = call(con, &["SINK.VERSION", key]).unwrap();
    let ttl: i64 = call(con, &["TTL", key]).unwrap();
    (fields, version, ttl > 0)
}

#[test]
fn the_fields_form_writes_what_the_json_form_writes() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for (n, options) in [
        vec![],
        vec!["REPLACE"],
        vec!["REPLACE", "TTL", "60"],
        vec!["TTL", "60"],
    ]
    .iter()
    .enumerate()
    {
        for (by_json, by_fields) in write_both(&mut con, n, options) {
            assert_eq!(by_json, by_fields, "{options:?}");
        }
        assert_eq!(
            hash_and_version(&mut con, &format!("json:{n}")),
            hash_and_version(&mut con, &format!("fields:{n}")),
            "{options:?}"
        );
    }
    // REPLACE with the last row (no fields) removed the key and left a tombstone.
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "fields:1"]).unwrap(), 0);
    // Merged (no REPLACE): the first row's other fields stayed.
    let (merged, _, _) = hash_and_version(&mut con, "fields:0");
    assert_eq!(merged.len(), 4, "{merged:?}");
}

#[test]
fn an_older_version_writes_nothing_and_binary_pairs_are_kept_as_given() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let write = |con: &mut Connection, value: &[u8], version: &[u8]| {
        call::<Option<i64>>(
            con,
            &[
                &b"SINK.HASH"[..],
                b"h",
                b"FIELDS",
                b"2",
                b"f\x00\xff",
                value,
                b"dup",
                b"1",
                b"VERSION",
                version,
            ],
        )
        .unwrap()
    };
    assert_eq!(write(&mut con, b"v\x00\xfe", b"5"), Some(2));
    let before = snapshot(&mut con);
    assert_eq!(write(&mut con, b"older", b"4"), None);
    assert_eq!(write(&mut con, b"same", b"5"), None);
    assert_eq!(snapshot(&mut con), before);
    let value: Vec<u8> = call(&mut con, &[&b"HGET"[..], b"h", b"f\x00\xff"]).unwrap();
    assert_eq!(value, b"v\x00\xfe");
    // A name given twice: the last value, and REPLACE keeps it (counted once).
    let twice = fields_form(
        "h",
        &[("dup", "1"), ("dup", "2")],
        &["REPLACE", "VERSION", "6"],
    );
    call::<i64>(&mut con, &twice).unwrap();
    let all: Vec<(String, String)> = call(&mut con, &["HGETALL", "h"]).unwrap();
    assert_eq!(all, [("dup".to_owned(), "2".to_owned())]);
}

/// The commands the AOF holds after the server's start (appendfsync always).
fn aof_commands(server: &RedisServer) -> String {
    let dir = server.dir().join("appendonlydir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned())
        .collect()
}

#[test]
fn replicated_as_itself_only_where_the_clock_has_no_say() {
    let options = redsink_tests::Options::default()
        .config("appendonly", "yes")
        .config("appendfsync", "always")
        .module_args(&["tombstone-ttl", "1"]);
    let server = RedisServer::with(options);
    let mut con = server.connection();
    // Writes one field to `key` with `extra` options; asserts what the AOF got for it:
    // the command itself, or its effects (HSET …, never the command).
    let mut write = |key: &str, extra: &[&str], as_itself: bool| {
        let mark = aof_commands(&server).len();
        let mut args = vec!["SINK.HASH", key, "FIELDS", "1", "a", "1"];
        args.extend_from_slice(extra);
        assert_eq!(call::<Option<i64>>(&mut con, &args).unwrap(), Some(1));
        let written = aof_commands(&server)[mark..].to_owned();
        assert_eq!(
            (written.contains("SINK.HASH"), written.contains("HSET")),
            (as_itself, !as_itself),
            "{args:?}: {written}"
        );
        written
    };
    // No version kept yet (a tombstone a replica still holds may have been purged
    // here): its effects. Newer than the key's version: the command itself.
    write("verbatim", &["REPLACE", "VERSION", "3"], false);
    write("verbatim", &["REPLACE", "VERSION", "4"], true);
    // Without VERSION nothing depends on versions or the clock: the command itself.
    write("plain", &[], true);
    // A first write under VERSION: its effects, a TTL as PEXPIREAT.
    let written = write("ttl", &["TTL", "60", "VERSION", "3"], false);
    assert!(
        written.contains("PEXPIREAT") && written.contains("SINK.SETVERSION"),
        "{written}"
    );
    let mut other = server.connection();
    // Otherwise a TTL is counted from the primary's clock: the command itself, with the
    // time it gave (PXAT) in TTL's place — each TTL's, where repeated (the last counts;
    // PXAT with TTL would be refused) — but not where TTL is a field's name; and that
    // time is the key's.
    for (key, extra) in [
        ("ttl", vec!["TTL", "60", "VERSION", "4"]),
        ("ttl-named", vec!["TTL", "60"]),
        ("ttl-twice", vec!["ttl", "5", "TTL", "60"]),
    ] {
        let mut args = vec!["SINK.HASH", key, "FIELDS", "1", "TTL", "TTL"];
        args.extend(&extra);
        let mark = aof_commands(&server).len();
        assert_eq!(call::<Option<i64>>(&mut other, &args).unwrap(), Some(1));
        let written = aof_commands(&server)[mark..].to_owned();
        let at: i64 = call(&mut other, &["PEXPIRETIME", key]).unwrap();
        assert!((at - now_ms() - 60_000).abs() < 5_000, "{at}");
        // The options follow `SINK.HASH key FIELDS 1 TTL TTL`.
        let mut expected: Vec<String> = args[..6].iter().map(|arg| arg.to_string()).collect();
        let mut options = extra.iter();
        while let Some(option) = options.next() {
            if option.eq_ignore_ascii_case("TTL") {
                options.next();
                expected.extend(["PXAT".to_owned(), at.to_string()]);
            } else {
                expected.push(option.to_string());
            }
        }
        let as_resp: String = std::iter::once(format!("*{}\r\n", expected.len()))
            .chain(
                expected
                    .iter()
                    .map(|arg| format!("${}\r\n{arg}\r\n", arg.len())),
            )
            .collect();
        assert!(
            written.contains(&as_resp) && !written.contains("HSET"),
            "{written}"
        );
        // The AOF loads it back as it was.
        call::<()>(&mut other, &["DEBUG", "LOADAOF"]).unwrap();
        assert_eq!(call::<i64>(&mut other, &["PEXPIRETIME", key]).unwrap(), at);
        let field: String = call(&mut other, &["HGET", key, "TTL"]).unwrap();
        assert_eq!(field, "TTL");
    }
    let json_form = [
        "SINK.HASH",
        "ttl-json",
        r#"{"a":{"b":1}}"#,
        "FLATTEN",
        "TTL",
        "TTL",
        "60",
    ];
    let mark = aof_commands(&server).len();
    assert_eq!(
        call::<Option<i64>>(&mut other, &json_form).unwrap(),
        Some(1)
    );
    let written = aof_commands(&server)[mark..].to_owned();
    let at: i64 = call(&mut other, &["PEXPIRETIME", "ttl-json"]).unwrap();
    assert!(
        written.contains(&format!(
            "$7\r\nFLATTEN\r\n$3\r\nTTL\r\n$4\r\nPXAT\r\n$13\r\n{at}\r\n"
        )),
        "{written}"
    );
    // Past a tombstone's deadline (purged, or not yet), with a version not newer than
    // the tombstone's: a server whose clock were behind would refuse it, so its effects
    // go. Newer than a tombstone: the command itself again.
    let del = |version: &str| {
        call::<i64>(
            &mut server.connection(),
            &["SINK.DEL", "gone", "VERSION", version],
        )
        .unwrap()
    };
    del("9");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write("gone", &["VERSION", "5"], false);
    del("10");
    write("gone", &["VERSION", "11"], true);
}

#[test]
fn a_replica_with_smaller_limits_follows_what_its_primary_wrote() {
    let primary = RedisServer::start();
    let replica = primary.replica();
    let mut replica_con = replica.connection();
    call::<()>(
        &mut replica_con,
        &["CONFIG", "SET", "redsink.max-fields", "1"],
    )
    .unwrap();
    let mut con = primary.connection();
    for (version, value) in [("1", "a"), ("2", "b")] {
        // The second is newer than the version kept: replicated as itself.
        let pairs = [("x", value), ("y", value)];
        call::<i64>(&mut con, &fields_form("h", &pairs, &["VERSION", version])).unwrap();
        call::<i64>(
            &mut con,
            &[
                "SINK.HASH",
                "j",
                &format!(r#"{{"x":"{value}","y":"{value}"}}"#),
                "VERSION",
                version,
            ],
        )
        .unwrap();
    }
    // PXAT from a client: that time, on both.
    let pxat = fields_form("p", &[("x", "1")], &["PXAT", "9999999999999"]);
    call::<i64>(&mut con, &pxat).unwrap();
    // A TTL replicated as the time the primary gave it.
    let ttl = fields_form("t", &[("x", "1"), ("y", "1")], &["TTL", "60"]);
    call::<i64>(&mut con, &ttl).unwrap();
    redsink_tests::wait_for_replicas(&mut con, 1);
    let at: i64 = call(&mut con, &["PEXPIRETIME", "t"]).unwrap();
    assert!(at > 0);
    assert_eq!(
        call::<i64>(&mut replica_con, &["PEXPIRETIME", "t"]).unwrap(),
        at
    );
    for con in [&mut con, &mut replica_con] {
        assert_eq!(
            call::<i64>(con, &["PEXPIRETIME", "p"]).unwrap(),
            9_999_999_999_999
        );
    }
    for key in ["h", "j"] {
        let mut on_replica: Vec<(String, String)> =
            call(&mut replica_con, &["HGETALL", key]).unwrap();
        on_replica.sort();
        assert_eq!(
            on_replica,
            [
                ("x".to_owned(), "b".to_owned()),
                ("y".to_owned(), "b".to_owned())
            ],
            "{key}"
        );
        assert_eq!(
            call::<i64>(&mut replica_con, &["SINK.VERSION", key]).unwrap(),
            2
        );
    }
}
