//! Device streams survive DEBUG RELOAD, restarts from the AOF, and reach replicas: every
//! stream, setting, record and history exactly (compared by DUMP of every key).

use redis::Connection;
use redsink_tests::{
    call, now_ms, replicated, snapshot, wait_for_aof_rewrite, wait_for_replicas, Options,
    RedisServer,
};

fn run(con: &mut Connection, args: &[&str]) {
    call::<redis::Value>(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Streams of every kind of setting, with clock-stamped and explicit times, merges,
/// deletes, histories that got records out of time order, odd device names and a
/// large record.
fn fill(con: &mut Connection, round: usize) {
    let k = |name: &str| format!("{name}:{round}");
    run(con, &["DS.CREATE", &k("plain")]);
    for i in 0..100 {
        run(
            con,
            &[
                "DS.UPDATE",
                &k("plain"),
                &format!("dev-{i}"),
                &format!(r#"{{"n":{i},"ok":true,"tags":["a","b"]}}"#),
            ],
        );
    }
    // A payload stored other than as given (spaces, a null, a stamp field left out) and
    // one stored as given: replicated from the body, and from the argument itself.
    for (device, payload) in [
        (
            "spaced",
            r#"{ "n": 1, "gone": null, "timestamp": 5, "deep": {"x": null, "y": [1, 2]} }"#,
        ),
        ("compact", r#"{"n":2,"deep":{"y":[1,2]}}"#),
    ] {
        run(con, &["DS.UPDATE", &k("plain"), device, payload]);
    }
    run(con, &["DS.DEL", &k("plain"), "dev-7"]);
    run(
        con,
        &[
            "DS.CREATE",
            &k("merge"),
            "ONUPDATE",
            "MERGE",
            "HISTORY",
            "4",
        ],
    );
    for i in 0..10usize {
        run(
            con,
            &[
                "DS.UPDATE",
                &k("merge"),
                "m",
                &format!(
                    r#"{{"i{i}":{i},"i{}":null,"nested":{{"v":{i}}}}}"#,
                    i.saturating_sub(2)
                ),
            ],
        );
    }
    run(
        con,
        &[
            "DS.CREATE",
            &k("epoch"),
            "DATEFORMAT",
            "EPOCH",
            "TIMESTAMP",
            "ts",
            "DEVICE",
            "id",
            "TTL",
            "3600",
        ],
    );
    for name in ["温度计-1", "with space", "quote\"d", "emoji-🚀"] {
        run(
            con,
            &[
                "DS.UPDATE",
                &k("epoch"),
                name,
                r#"{"text":"é\n\"\\","unicode":"\u00e9"}"#,
            ],
        );
    }
    run(con, &["DS.CREATE", &k("history"), "HISTORY", "3"]);
    for ts in [5000, 1000, 9000, 3000, 7000] {
        run(
            con,
            &[
                "DS.UPDATE",
                &k("history"),
                "h",
                &format!(r#"{{"at":{ts}}}"#),
                "TS",
                &ts.to_string(),
            ],
        );
    }
    run(con, &["DS.CREATE", &k("big")]);
    run(
        con,
        &[
            "DS.UPDATE",
            &k("big"),
            "b",
            &format!(r#"{{"blob":"{}"}}"#, "x".repeat(100_000)),
        ],
    );
    run(con, &["DS.CREATE", &k("altered")]);
    run(con, &["DS.UPDATE", &k("altered"), "a", "{}"]);
    run(
        con,
        &[
            "DS.ALTER",
            &k("altered"),
            "TIMESTAMP",
            "when",
            "HISTORY",
            "2",
        ],
    );
    run(con, &["DS.UPDATE", &k("altered"), "a", "{}"]);
    run(con, &["DS.PUT", &k("altered"), "p", "42", r#"{"put":1}"#]);
    run(con, &["DS.CREATE", &k("empty")]);
    // A TTL stream whose record expired before an update: the update starts afresh.
    run(
        con,
        &[
            "DS.CREATE",
            &k("expiring"),
            "TTL",
            "1",
            "ONUPDATE",
            "MERGE",
            "HISTORY",
            "2",
        ],
    );
    run(
        con,
        &[
            "DS.UPDATE",
            &k("expiring"),
            "e",
            r#"{"stale":1}"#,
            "TS",
            &(now_ms() - 60_000).to_string(),
        ],
    );
    run(
        con,
        &[
            "DS.UPDATE",
            &k("expiring"),
            "e",
            r#"{"fresh":1}"#,
            "TS",
            &(now_ms() + 3_600_000).to_string(),
        ],
    );
}

#[test]
fn debug_reload_keeps_everything() {
    let server = RedisServer::start();
    let mut con = server.connection();
    fill(&mut con, 0);
    let before = snapshot(&mut con);
    assert!(before.len() >= 8);
    run(&mut con, &["DEBUG", "RELOAD"]);
    assert_eq!(snapshot(&mut con), before);
    let record: String = call(&mut con, &["DS.GET", "epoch:0", "温度计-1"]).unwrap();
    assert!(record.contains(r#""text":"é\n\"\\""#), "{record}");
}

fn restart_from_aof(preamble: &str) {
    let options = Options::default()
        .config("appendonly", "yes")
        .config("appendfsync", "always")
        .config("aof-use-rdb-preamble", preamble);
    let mut server = RedisServer::with(options);
    let mut con = server.connection();
    fill(&mut con, 0);
    // The rewrite turns what is there into the AOF base (an RDB, or DS.CREATE/DS.PUT
    // commands without the preamble); what follows goes to the incremental file.
    run(&mut con, &["BGREWRITEAOF"]);
    wait_for_aof_rewrite(&server);
    let base = aof_base(&server);
    if preamble == "no" {
        assert!(
            base.starts_with(b"*") && contains(&base, b"DS.CREATE") && contains(&base, b"DS.PUT")
        );
    } else {
        assert!(base.starts_with(b"REDIS"));
    }
    fill(&mut con, 1);
    let before = snapshot(&mut con);
    server.kill();
    server.restart();
    let mut con = server.connection();
    assert_eq!(snapshot(&mut con), before);
    // And once more, from a base written by this very server.
    run(&mut con, &["BGREWRITEAOF"]);
    wait_for_aof_rewrite(&server);
    server.restart();
    assert_eq!(snapshot(&mut server.connection()), before);
}

/// The AOF's base file (written by the last rewrite).
fn aof_base(server: &RedisServer) -> Vec<u8> {
    let folder = server.dir().join("appendonlydir");
    let base = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().contains(".base."))
        .expect("an AOF base file");
    std::fs::read(base).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn restart_from_aof_with_rdb_preamble() {
    restart_from_aof("yes");
}

#[test]
fn restart_from_aof_rewritten_as_commands() {
    restart_from_aof("no");
}

#[test]
fn a_replica_ends_with_the_same_data() {
    // Round 0 reaches the replica by full sync, round 1 by the replication stream.
    let (primary, replica) = replicated(fill);
    let mut con = primary.connection();
    let mut replica_con = replica.connection();
    assert_eq!(snapshot(&mut replica_con), snapshot(&mut con));
    let on_primary: String = call(&mut con, &["DS.GET", "merge:1", "m"]).unwrap();
    let on_replica: String = call(&mut replica_con, &["DS.GET", "merge:1", "m"]).unwrap();
    assert_eq!(on_primary, on_replica);
    // Writes are refused on the replica like any write command.
    let refused = call::<()>(&mut replica_con, &["DS.UPDATE", "plain:0", "x", "{}"]).unwrap_err();
    assert_eq!(refused.code(), Some("READONLY"));
}

#[test]
fn a_replica_applies_what_its_primary_admitted_whatever_its_own_limits() {
    let primary = RedisServer::start();
    let replica = RedisServer::with(
        Options::default()
            .config("replicaof", &format!("127.0.0.1 {}", primary.port()))
            .config("redsink.max-payload-bytes", "100")
            .config("redsink.max-depth", "2"),
    );
    replica.wait_until("replica in sync", |con| {
        let info: String = call(con, &["INFO", "replication"])?;
        Ok(info.contains("master_link_status:up"))
    });
    let mut con = primary.connection();
    run(&mut con, &["DS.CREATE", "s", "ONUPDATE", "MERGE"]);
    let big = format!(r#"{{"deep":{{"deeper":{{"x":"{}"}}}}}}"#, "y".repeat(1000));
    run(&mut con, &["DS.UPDATE", "s", "d", &big]);
    run(&mut con, &["DS.UPDATE", "s", "d", r#"{"more":1}"#]);
    wait_for_replicas(&mut con, 1);
    let mut replica_con = replica.connection();
    assert_eq!(snapshot(&mut replica_con), snapshot(&mut con));
    let record: String = call(&mut replica_con, &["DS.GET", "s", "d"]).unwrap();
    assert!(record.len() > 1000 && record.contains(r#""more":1"#));
}
