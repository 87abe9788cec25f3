//! Sink writes, versions and named sink definitions survive DEBUG RELOAD and restarts
//! from the AOF, and a replica ends with exactly the same keys, expiries, versions and
//! definitions (it receives plain commands, MULTI/EXEC-wrapped, and SINK.SETVERSION).

use redis::{Connection, Value};
use redsink_tests::{call, replicated, snapshot, wait_for_aof_rewrite, Options, RedisServer};

fn run(con: &mut Connection, args: &[&str]) -> Value {
    call(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Every SINK command with every option, explicit keys and named sinks.
fn fill(con: &mut Connection, round: usize) {
    let k = |name: &str| format!("{name}:{round}");
    run(
        con,
        &[
            "SINK.HASH",
            &k("hash"),
            r#"{"a":1,"n":{"b":"x","c":[1,2]}}"#,
            "FLATTEN",
            "_",
            "TTL",
            "600",
            "VERSION",
            "3",
        ],
    );
    run(
        con,
        &[
            "SINK.HASH",
            &k("hash"),
            r#"{"a":2}"#,
            "REPLACE",
            "VERSION",
            "4",
        ],
    );
    run(
        con,
        &["SINK.HASH", &k("hash"), r#"{"a":0}"#, "VERSION", "2"],
    );
    run(
        con,
        &[
            "SINK.HASH",
            &k("fields"),
            "FIELDS",
            "3",
            "a",
            "1",
            "n.b",
            "x",
            "c",
            "",
            "TTL",
            "700",
            "VERSION",
            "5",
            "LANE",
            "s1",
        ],
    );
    run(
        con,
        &[
            "SINK.HASH",
            &k("fields"),
            "FIELDS",
            "1",
            "a",
            "2",
            "REPLACE",
            "VERSION",
            "6",
            "LANE",
            "s1",
        ],
    );
    run(
        con,
        &[
            "SINK.STRING",
            &k("string"),
            r#"{"json":true}"#,
            "JSON",
            "TTL",
            "900",
            "VERSION",
            "8",
        ],
    );
    run(
        con,
        &[
            "SINK.LIST",
            &k("list"),
            "a",
            "b",
            "c",
            "d",
            "MAXLEN",
            "3",
            "TTL",
            "600",
        ],
    );
    run(
        con,
        &["SINK.LIST", &k("list"), "z", "PREPEND", "MAXLEN", "3"],
    );
    run(con, &["SINK.SET", &k("set"), "m1", "m2", "TTL", "700"]);
    for (member, score) in [("p1", "10"), ("p2", "30"), ("p3", "20"), ("p4", "5")] {
        run(
            con,
            &["SINK.ZSET", &k("zset"), member, score, "MAXLEN", "2"],
        );
    }
    run(
        con,
        &[
            "SINK.STREAM",
            &k("stream"),
            r#"{"a":1,"b":2}"#,
            "MAP",
            "a:alpha",
            "OPCODE",
            "c",
            "MAXLEN",
            "10",
            "TTL",
            "800",
        ],
    );
    run(
        con,
        &[
            "SINK.STREAM",
            &k("stream"),
            r#"{"a":3}"#,
            "ID",
            "99999999999999-1",
        ],
    );
    run(con, &["SINK.STRING", &k("gone"), "x", "VERSION", "1"]);
    run(con, &["SINK.DEL", &k("gone"), "VERSION", "2"]);
    // Versions in lanes: two streams writing parts of one key, one of them deleting.
    run(
        con,
        &[
            "SINK.HASH",
            &k("laned"),
            r#"{"a":1}"#,
            "VERSION",
            "50",
            "LANE",
            "data:a",
        ],
    );
    run(
        con,
        &[
            "SINK.HASH",
            &k("laned"),
            r#"{"b":2}"#,
            "VERSION",
            "7",
            "LANE",
            "data:b",
        ],
    );
    run(
        con,
        &["SINK.DEL", &k("lanegone"), "VERSION", "9", "LANE", "data:b"],
    );
    run(
        con,
        &[
            "SINK.DEFINE",
            &k("users"),
            "TYPE",
            "hash",
            "PREFIX",
            &k("user:"),
            "KEYFIELD",
            "id",
            "TTL",
            "1000",
        ],
    );
    run(
        con,
        &[
            "SINK.DEFINE",
            &k("events"),
            "TYPE",
            "stream",
            "PREFIX",
            &k("events"),
            "MAP",
            "id:event_id",
            "kind",
            "OPCODE",
            "op",
            "MAXLEN",
            "100",
        ],
    );
    run(
        con,
        &[
            "SINK.DEFINE",
            &k("board"),
            "TYPE",
            "zset",
            "PREFIX",
            &k("board:"),
            "KEYFIELD",
            "game",
            "MEMBERFIELD",
            "player",
            "SCOREFIELD",
            "score",
            "MAXLEN",
            "3",
        ],
    );
    run(
        con,
        &[
            "SINK.WRITE",
            &k("users"),
            r#"{"id":"u1","name":"Ann"}"#,
            r#"{"id":"u2","name":"Bo","tags":{"x":1}}"#,
        ],
    );
    run(
        con,
        &[
            "SINK.WRITE",
            &k("events"),
            r#"{"id":1,"kind":"click","op":"c"}"#,
            r#"{"id":2,"kind":"view","op":"u"}"#,
        ],
    );
    run(
        con,
        &[
            "SINK.WRITE",
            &k("board"),
            r#"{"game":"g","player":"a","score":1}"#,
            r#"{"game":"g","player":"b","score":7}"#,
        ],
    );
}

#[derive(Debug, PartialEq)]
struct Persisted {
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    expiries: Vec<(String, i64)>,
    versions: Vec<Option<i64>>,
    definitions: Vec<String>,
}

/// What must survive: every key's value and absolute expiry, the versions of the keys
/// written with one, and the sink definitions (counters aside).
fn state(con: &mut Connection) -> Persisted {
    let keys = snapshot(con);
    let expiries = keys
        .iter()
        .map(|(key, _)| {
            let key = String::from_utf8_lossy(key).into_owned();
            let at: i64 = call(con, &["PEXPIRETIME", &key]).unwrap();
            (key, at)
        })
        .collect();
    let mut versions: Vec<Option<i64>> = [
        "hash:0", "string:0", "gone:0", "hash:1", "string:1", "gone:1",
    ]
    .iter()
    .map(|key| call(con, &["SINK.VERSION", key]).unwrap())
    .collect();
    for key in ["laned:0", "lanegone:0", "laned:1", "lanegone:1"] {
        for lane in ["data:a", "data:b"] {
            versions.push(call(con, &["SINK.VERSION", key, "LANE", lane]).unwrap());
        }
    }
    let sinks: Vec<Vec<Value>> = call(con, &["SINK.INFO"]).unwrap();
    let definitions = sinks
        .iter()
        .map(|fields| {
            fields[..8]
                .iter()
                .map(|value| match value {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    Value::SimpleString(text) => text.clone(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Persisted {
        keys,
        expiries,
        versions,
        definitions,
    }
}

#[test]
fn debug_reload_keeps_keys_versions_and_definitions() {
    let server = RedisServer::start();
    let mut con = server.connection();
    fill(&mut con, 0);
    let before = state(&mut con);
    // Round 0's keys, then the lanes of round 0's and round 1's keys (data:a, data:b).
    let versions: Vec<Option<i64>> = vec![Some(4), Some(8), Some(2), None, None, None];
    let lanes = [Some(50), Some(7), None, Some(9), None, None, None, None];
    assert_eq!(before.versions, [versions, lanes.to_vec()].concat());
    assert_eq!(before.definitions.len(), 3);
    run(&mut con, &["DEBUG", "RELOAD"]);
    assert_eq!(state(&mut con), before);
    // The reloaded versions still gate writes.
    assert_eq!(
        run(
            &mut con,
            &["SINK.HASH", "hash:0", r#"{"a":9}"#, "VERSION", "4"]
        ),
        Value::Nil
    );
    assert_eq!(
        run(&mut con, &["SINK.STRING", "gone:0", "back", "VERSION", "1"]),
        Value::Nil
    );
}

#[test]
fn restart_from_the_aof_keeps_everything() {
    let options = Options::default()
        .config("appendonly", "yes")
        .config("appendfsync", "always");
    let mut server = RedisServer::with(options);
    let mut con = server.connection();
    fill(&mut con, 0);
    // Round 0 goes into the AOF's RDB base (with the aux data), round 1 stays commands.
    run(&mut con, &["BGREWRITEAOF"]);
    wait_for_aof_rewrite(&server);
    fill(&mut con, 1);
    let before = state(&mut con);
    server.restart();
    let mut con = server.connection();
    assert_eq!(state(&mut con), before);
}

#[test]
fn a_replica_ends_with_the_same_keys_versions_and_definitions() {
    let (primary, replica) = replicated(fill);
    let mut con = primary.connection();
    let mut replica_con = replica.connection();
    assert_eq!(state(&mut replica_con), state(&mut con));
    let refused = call::<()>(&mut replica_con, &["SINK.HASH", "x", "{}"]).unwrap_err();
    assert_eq!(refused.code(), Some("READONLY"));
}

/// A server started from an RDB file in tests/data.
fn from_fixture(name: &str) -> RedisServer {
    let mut server = RedisServer::start();
    server.kill();
    let fixture = redsink_tests::workspace_dir()
        .join("tests-integration/tests/data")
        .join(name);
    std::fs::copy(fixture, server.dir().join("dump.rdb")).unwrap();
    server.restart();
    server
}

/// An RDB saved by the module before versions had lanes (its aux data in encoding 0,
/// made with commit d61bf7a on redis-server 7.0.15) still loads: the versions in the
/// unnamed lane, the definitions as they were.
#[test]
fn an_rdb_from_before_lanes_loads() {
    let server = from_fixture("sink-state-encoding-0.rdb");
    let mut con = server.connection();
    assert_eq!(
        run(&mut con, &["SINK.VERSION", "invoice:1"]),
        Value::Int(1021)
    );
    assert_eq!(run(&mut con, &["SINK.VERSION", "session:1"]), Value::Int(7));
    assert_eq!(
        run(&mut con, &["SINK.VERSION", "invoice:1", "LANE", "data:x"]),
        Value::Nil
    );
    assert_eq!(
        run(
            &mut con,
            &["SINK.HASH", "invoice:1", "{}", "VERSION", "1020"]
        ),
        Value::Nil,
        "the loaded version holds older writes back"
    );
    let fields: Vec<String> = call(&mut con, &["HGETALL", "invoice:1"]).unwrap();
    assert_eq!(fields, ["Total", "3.96"]);
    let sinks: Vec<Vec<Value>> = call(&mut con, &["SINK.INFO"]).unwrap();
    assert_eq!(sinks.len(), 1);
}

/// An RDB saved by the module when versions were kept by key name (aux encoding 1, made
/// with commit 27e8858 on redis-server 7.0.15, tombstone-ttl 10 years) loads into the
/// fingerprinted versions: every lane of a key, the default lane, and a tombstone.
#[test]
fn an_rdb_from_before_fingerprints_loads() {
    let mut server = from_fixture("sink-state-encoding-1.rdb");
    let mut con = server.connection();
    let version = |con: &mut redis::Connection, args: &[&str]| {
        let mut command = vec!["SINK.VERSION"];
        command.extend_from_slice(args);
        run(con, &command)
    };
    assert_eq!(
        version(&mut con, &["invoice:1", "LANE", "data:invoice"]),
        Value::Int(1021)
    );
    assert_eq!(
        version(&mut con, &["invoice:1", "LANE", "data:notes"]),
        Value::Int(7)
    );
    assert_eq!(version(&mut con, &["invoice:1"]), Value::Nil);
    assert_eq!(version(&mut con, &["session:1"]), Value::Int(7));
    assert_eq!(
        run(&mut con, &["SINK.STRING", "gone:1", "back", "VERSION", "8"]),
        Value::Nil,
        "the tombstone holds older writes back"
    );
    assert_eq!(
        run(
            &mut con,
            &[
                "SINK.HASH",
                "invoice:1",
                "{}",
                "VERSION",
                "1020",
                "LANE",
                "data:invoice"
            ]
        ),
        Value::Nil
    );
    let info: String = call(&mut con, &["INFO", "redsink"]).unwrap();
    for line in [
        "redsink_versioned_keys:3",
        "redsink_compact_keys:1",
        "redsink_wide_keys:2",
        "redsink_tombstone_deadlines:1",
    ] {
        assert!(info.contains(line), "{line} in {info}");
    }
    // Saved again, it loads in the new encoding with the same versions.
    run(&mut con, &["SAVE"]);
    server.restart();
    let mut con = server.connection();
    assert_eq!(
        version(&mut con, &["invoice:1", "LANE", "data:notes"]),
        Value::Int(7)
    );
    assert_eq!(
        run(&mut con, &["SINK.STRING", "gone:1", "back", "VERSION", "8"]),
        Value::Nil
    );
}
