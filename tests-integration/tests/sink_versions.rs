//! VERSION: replays and out-of-order deliveries never move a key backwards; a versioned
//! delete keeps older writes out; a version lives and dies with its key.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use redis::{Connection, Value};
use redsink_tests::{call, RedisServer};

fn run(con: &mut Connection, args: &[&str]) -> Value {
    call(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn replaying_versions_in_random_order_leaves_the_newest() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut rng = StdRng::seed_from_u64(7);
    const N: i64 = 200;
    // Every version delivered twice (a replay), all in random order.
    let mut deliveries: Vec<i64> = (1..=N).chain(1..=N).collect();
    deliveries.shuffle(&mut rng);
    let mut applied = 0;
    for version in &deliveries {
        let v = version.to_string();
        let payload = format!(r#"{{"version":{version},"only_in_{version}":true}}"#);
        let hash: Value = run(
            &mut con,
            &["SINK.HASH", "h", &payload, "REPLACE", "VERSION", &v],
        );
        let string: Value = run(
            &mut con,
            &["SINK.STRING", "s", &payload, "JSON", "VERSION", &v],
        );
        assert_eq!(hash == Value::Nil, string == Value::Nil);
        if hash != Value::Nil {
            applied += 1;
        }
    }
    let fields: Vec<String> = call(&mut con, &["HGETALL", "h"]).unwrap();
    assert_eq!(
        fields,
        ["version", &N.to_string(), &format!("only_in_{N}"), "true"]
    );
    let string: String = call(&mut con, &["GET", "s"]).unwrap();
    assert_eq!(string, format!(r#"{{"version":{N},"only_in_{N}":true}}"#));
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "h"]).unwrap(), N);
    assert!(applied < deliveries.len(), "stale deliveries were skipped");
}

#[test]
fn a_versioned_delete_keeps_older_writes_out() {
    let server = RedisServer::start();
    let mut con = server.connection();
    run(&mut con, &["SINK.HASH", "k", r#"{"a":1}"#, "VERSION", "10"]);
    assert_eq!(
        run(&mut con, &["SINK.DEL", "k", "VERSION", "9"]),
        Value::Nil,
        "older delete skipped"
    );
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "k"]).unwrap(), 1);
    assert_eq!(
        call::<i64>(&mut con, &["SINK.DEL", "k", "VERSION", "11"]).unwrap(),
        1
    );
    // A late write from before the delete does not bring the key back...
    assert_eq!(
        run(&mut con, &["SINK.HASH", "k", r#"{"a":2}"#, "VERSION", "10"]),
        Value::Nil
    );
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "k"]).unwrap(), 0);
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "k"]).unwrap(), 11);
    // ... a newer one does.
    assert_eq!(
        call::<i64>(&mut con, &["SINK.HASH", "k", r#"{"a":3}"#, "VERSION", "12"]).unwrap(),
        1
    );
    assert_eq!(call::<String>(&mut con, &["HGET", "k", "a"]).unwrap(), "3");
    // Deleting a missing key with a version leaves a tombstone too.
    assert_eq!(
        call::<i64>(&mut con, &["SINK.DEL", "never", "VERSION", "5"]).unwrap(),
        0
    );
    assert_eq!(
        run(&mut con, &["SINK.STRING", "never", "x", "VERSION", "4"]),
        Value::Nil
    );
    // REPLACE with an object of no fields removes the hash, and keeps its version as a
    // tombstone.
    assert_eq!(
        call::<i64>(
            &mut con,
            &["SINK.HASH", "k", "{}", "REPLACE", "VERSION", "13"]
        )
        .unwrap(),
        0
    );
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "k"]).unwrap(), 0);
    assert_eq!(
        run(&mut con, &["SINK.HASH", "k", r#"{"a":4}"#, "VERSION", "13"]),
        Value::Nil
    );
}

#[test]
fn tombstones_expire_after_the_configured_time() {
    let server = RedisServer::start();
    let mut con = server.connection();
    run(&mut con, &["CONFIG", "SET", "redsink.tombstone-ttl", "1"]);
    run(&mut con, &["SINK.DEL", "k", "VERSION", "5"]);
    assert_eq!(
        run(&mut con, &["SINK.STRING", "k", "old", "VERSION", "3"]),
        Value::Nil
    );
    server.wait_until("the tombstone expired", |con| {
        Ok(call::<Option<i64>>(con, &["SINK.VERSION", "k"])?.is_none())
    });
    run(&mut con, &["SINK.STRING", "k", "old", "VERSION", "3"]);
    assert_eq!(call::<String>(&mut con, &["GET", "k"]).unwrap(), "old");
}

/// `INFO redsink` as the state grows and drains: 50,000 versioned keys sit in the
/// fingerprint table at under 24 bytes each; deleted with versions they become
/// tombstones, which the background purge forgets (in slices, with a backlog) once they
/// expire, leaving nothing.
#[test]
fn info_follows_versions_and_a_tombstone_backlog_drains() {
    const KEYS: usize = 50_000;
    let server = RedisServer::start();
    let mut con = server.connection();
    let info = |con: &mut Connection, field: &str| -> usize {
        let info: String = call(con, &["INFO", "redsink"]).unwrap();
        let prefix = format!("redsink_{field}:");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {info}"))
    };
    let each_key = |con: &mut Connection, args: &[&str]| {
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd(args[0])
                    .arg(format!("key:{i}"))
                    .arg(&args[1..])
                    .ignore();
            }
            pipe.query::<()>(con).unwrap();
        }
    };
    each_key(&mut con, &["SINK.STRING", "x", "VERSION", "1"]);
    assert_eq!(info(&mut con, "versioned_keys"), KEYS);
    assert_eq!(info(&mut con, "compact_keys"), KEYS);
    let bytes = info(&mut con, "compact_bytes");
    assert!(bytes < KEYS * 24, "{bytes} bytes for {KEYS} keys");
    run(&mut con, &["CONFIG", "SET", "redsink.tombstone-ttl", "3"]);
    each_key(&mut con, &["SINK.DEL", "VERSION", "2"]);
    assert_eq!(info(&mut con, "wide_keys"), KEYS, "every key a tombstone");
    assert_eq!(info(&mut con, "tombstone_deadlines"), KEYS);
    assert_eq!(
        run(&mut con, &["SINK.STRING", "key:7", "old", "VERSION", "2"]),
        Value::Nil
    );
    server.wait_until("the tombstones are forgotten", |con| {
        Ok(info(con, "tombstone_deadlines") == 0)
    });
    assert_eq!(info(&mut con, "versioned_keys"), 0);
    assert_eq!(info(&mut con, "compact_bytes"), 0);
    run(&mut con, &["SINK.STRING", "key:7", "old", "VERSION", "2"]);
    assert_eq!(call::<String>(&mut con, &["GET", "key:7"]).unwrap(), "old");
}

#[test]
fn a_version_lives_and_dies_with_its_key() {
    let server = RedisServer::start();
    let mut con = server.connection();
    // Deleted by another application: the version goes with the key.
    run(&mut con, &["SINK.STRING", "a", "v5", "VERSION", "5"]);
    run(&mut con, &["DEL", "a"]);
    assert_eq!(
        call::<Option<i64>>(&mut con, &["SINK.VERSION", "a"]).unwrap(),
        None
    );
    run(&mut con, &["SINK.STRING", "a", "v1", "VERSION", "1"]);
    assert_eq!(call::<String>(&mut con, &["GET", "a"]).unwrap(), "v1");
    // Expired: likewise.
    run(
        &mut con,
        &["SINK.STRING", "e", "x", "TTL", "1", "VERSION", "5"],
    );
    server.wait_until("the key expired", |con| {
        Ok(call::<i64>(con, &["EXISTS", "e"])? == 0)
    });
    server.wait_until("its version is gone", |con| {
        Ok(call::<Option<i64>>(con, &["SINK.VERSION", "e"])?.is_none())
    });
    // Renamed and moved: the version follows.
    run(&mut con, &["SINK.HASH", "r", r#"{"x":1}"#, "VERSION", "7"]);
    run(&mut con, &["RENAME", "r", "r2"]);
    assert_eq!(
        call::<Option<i64>>(&mut con, &["SINK.VERSION", "r"]).unwrap(),
        None
    );
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "r2"]).unwrap(), 7);
    assert_eq!(
        run(&mut con, &["SINK.HASH", "r2", r#"{"x":0}"#, "VERSION", "6"]),
        Value::Nil
    );
    run(&mut con, &["MOVE", "r2", "1"]);
    run(&mut con, &["SELECT", "1"]);
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "r2"]).unwrap(), 7);
    // FLUSHDB clears the versions of that database only.
    run(&mut con, &["SELECT", "0"]);
    run(&mut con, &["SINK.STRING", "z", "x", "VERSION", "1"]);
    run(&mut con, &["FLUSHDB"]);
    assert_eq!(
        call::<Option<i64>>(&mut con, &["SINK.VERSION", "z"]).unwrap(),
        None
    );
    run(&mut con, &["SELECT", "1"]);
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "r2"]).unwrap(), 7);
    // SWAPDB swaps them.
    run(&mut con, &["SWAPDB", "0", "1"]);
    assert_eq!(
        call::<Option<i64>>(&mut con, &["SINK.VERSION", "r2"]).unwrap(),
        None
    );
    run(&mut con, &["SELECT", "0"]);
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "r2"]).unwrap(), 7);
}

#[test]
fn stream_ids_make_adds_idempotent_and_late_ones_are_kept() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut add = |id: &str| -> Option<String> {
        call(
            &mut con,
            &[
                "SINK.STREAM",
                "events",
                &format!(r#"{{"id":"{id}"}}"#),
                "ID",
                id,
            ],
        )
        .unwrap()
    };
    assert_eq!(add("5-1").as_deref(), Some("5-1"));
    assert_eq!(add("5-1"), None, "a replay adds nothing");
    // Below the last id and never added (nothing was ever removed): late, kept right
    // after the last entry.
    assert_eq!(add("4").as_deref(), Some("5-2"));
    assert_eq!(
        add("6").as_deref(),
        Some("6-0"),
        "in-order ids are not disturbed"
    );
    assert_eq!(add("5-9").as_deref(), Some("6-1"));
    // Late ids are remembered, so that their replays add nothing.
    assert_eq!(add("5-9"), None);
    assert_eq!(add("4"), None);
    assert_eq!(add("6"), None);
    let mut con = server.connection();
    assert_eq!(call::<i64>(&mut con, &["XLEN", "events"]).unwrap(), 4);
    // Remembered across a reload.
    call::<()>(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    let again: Option<String> = call(
        &mut con,
        &["SINK.STREAM", "events", r#"{"id":"5-9"}"#, "ID", "5-9"],
    )
    .unwrap();
    assert_eq!(again, None);
    // Ids up to the last one trimmed away count as added.
    call::<i64>(&mut con, &["XTRIM", "events", "MAXLEN", "1"]).unwrap();
    let trimmed: Option<String> = call(
        &mut con,
        &["SINK.STREAM", "events", r#"{"id":"5-5"}"#, "ID", "5-5"],
    )
    .unwrap();
    assert_eq!(trimmed, None);
}

#[test]
fn late_stream_ids_reach_replicas() {
    let (primary, replica) = redsink_tests::replicated(|con, round| {
        let key = format!("events:{round}");
        for id in ["10", "20", "15"] {
            call::<Option<String>>(con, &["SINK.STREAM", &key, r#"{"a":1}"#, "ID", id]).unwrap();
        }
    });
    let mut replica_con = replica.connection();
    assert_eq!(
        redsink_tests::snapshot(&mut replica_con),
        redsink_tests::snapshot(&mut primary.connection())
    );
    // Promote the replica: it knows 15 was added late, so a replay adds nothing.
    call::<()>(&mut replica_con, &["REPLICAOF", "NO", "ONE"]).unwrap();
    for round in ["events:0", "events:1"] {
        let replay: Option<String> = call(
            &mut replica_con,
            &["SINK.STREAM", round, r#"{"a":1}"#, "ID", "15"],
        )
        .unwrap();
        assert_eq!(replay, None, "{round}");
        assert_eq!(call::<i64>(&mut replica_con, &["XLEN", round]).unwrap(), 3);
    }
}

/// LANE: writers whose versions do not compare (two source streams writing parts of one
/// key) keep them apart; each lane holds its own writes back, and only its own.
#[test]
fn lanes_keep_writers_apart() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let hash = |con: &mut Connection, json: &str, version: &str, lane: &str| {
        run(
            con,
            &["SINK.HASH", "k", json, "VERSION", version, "LANE", lane],
        )
    };
    assert_eq!(
        hash(&mut con, r#"{"a":1}"#, "10", "customers"),
        Value::Int(1)
    );
    assert_eq!(
        hash(&mut con, r#"{"b":2}"#, "5", "addresses"),
        Value::Int(1)
    );
    assert_eq!(hash(&mut con, r#"{"a":0}"#, "9", "customers"), Value::Nil);
    assert_eq!(hash(&mut con, r#"{"b":0}"#, "5", "addresses"), Value::Nil);
    let fields: Vec<String> = call(&mut con, &["HGETALL", "k"]).unwrap();
    assert_eq!(fields, ["a", "1", "b", "2"]);
    let version = |con: &mut Connection, lane: &[&str]| -> Value {
        let mut args = vec!["SINK.VERSION", "k"];
        args.extend_from_slice(lane);
        run(con, &args)
    };
    assert_eq!(version(&mut con, &["LANE", "customers"]), Value::Int(10));
    assert_eq!(version(&mut con, &["LANE", "addresses"]), Value::Int(5));
    assert_eq!(
        version(&mut con, &[]),
        Value::Nil,
        "the unnamed lane is a lane"
    );
    // A delete's tombstone holds its own lane back.
    run(
        &mut con,
        &["SINK.DEL", "k", "VERSION", "11", "LANE", "customers"],
    );
    assert_eq!(hash(&mut con, r#"{"a":1}"#, "10", "customers"), Value::Nil);
    assert_eq!(
        hash(&mut con, r#"{"b":3}"#, "6", "addresses"),
        Value::Int(1)
    );
    let error = call::<Value>(&mut con, &["SINK.HASH", "k", "{}", "LANE", "x"]).unwrap_err();
    assert!(error.to_string().contains("LANE needs VERSION"), "{error}");
}
