//! The seeds' worked examples through the SINK commands, exactly as the seeds show them
//! read back with plain Redis commands.

use redis::Connection;
use redsink_tests::{call, RedisServer};

fn run(con: &mut Connection, args: &[&str]) -> redis::Value {
    call(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn hgetall(con: &mut Connection, key: &str) -> Vec<String> {
    call(con, &["HGETALL", key]).unwrap()
}

/// Seed 002 (RudderStack): identify traits as a hash per user, nested traits flattened
/// with `.`, and a custom prefix.
#[test]
fn seed_002_user_traits_with_sink_hash_and_named_sinks() {
    let server = RedisServer::start();
    let mut con = server.connection();
    run(
        &mut con,
        &[
            "SINK.HASH",
            "user:user-1",
            r#"{"name": "John Doe", "title": "CEO"}"#,
        ],
    );
    assert_eq!(
        hgetall(&mut con, "user:user-1"),
        ["name", "John Doe", "title", "CEO"]
    );
    run(
        &mut con,
        &[
            "SINK.HASH",
            "user:user-2",
            r#"{"location": {"state": "Texas", "city": "Austin"}}"#,
        ],
    );
    assert_eq!(
        hgetall(&mut con, "user:user-2"),
        ["location.state", "Texas", "location.city", "Austin"]
    );

    // The same through named sinks: the key is the prefix plus the user id.
    run(&mut con, &["FLUSHALL"]);
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "identify",
            "TYPE",
            "hash",
            "PREFIX",
            "user:",
            "KEYFIELD",
            "userId",
        ],
    );
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "identify-prefixed",
            "TYPE",
            "hash",
            "PREFIX",
            "rudderstack:user:",
            "KEYFIELD",
            "userId",
        ],
    );
    let written: i64 = call(
        &mut con,
        &[
            "SINK.WRITE",
            "identify",
            r#"{"userId": "user-1", "name": "John Doe", "title": "CEO"}"#,
            r#"{"userId": "user-2", "location": {"state": "Texas", "city": "Austin"}}"#,
        ],
    )
    .unwrap();
    assert_eq!(written, 2);
    run(
        &mut con,
        &[
            "SINK.WRITE",
            "identify-prefixed",
            r#"{"userId": "user-3", "age": 23}"#,
        ],
    );
    assert_eq!(
        hgetall(&mut con, "user:user-1"),
        ["name", "John Doe", "title", "CEO"]
    );
    assert_eq!(
        hgetall(&mut con, "user:user-2"),
        ["location.state", "Texas", "location.city", "Austin"]
    );
    assert_eq!(hgetall(&mut con, "rudderstack:user:user-3"), ["age", "23"]);
}

/// Seed 003 (Laminar): string, list and hash tables, and the leaderboard done right.
#[test]
fn seed_003_tables_as_named_sinks() {
    let server = RedisServer::start();
    let mut con = server.connection();
    // String table: key prefix, key column, TTL.
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "sessions",
            "TYPE",
            "string",
            "PREFIX",
            "session:",
            "KEYFIELD",
            "session_id",
            "TTL",
            "1800",
        ],
    );
    run(
        &mut con,
        &[
            "SINK.WRITE",
            "sessions",
            r#"{"session_id":"s-1","user_id":"u-9","permissions":{"roles":["admin"]}}"#,
        ],
    );
    let session: String = call(&mut con, &["GET", "session:s-1"]).unwrap();
    assert_eq!(
        session,
        r#"{"session_id":"s-1","user_id":"u-9","permissions":{"roles":["admin"]}}"#
    );
    let ttl: i64 = call(&mut con, &["TTL", "session:s-1"]).unwrap();
    assert!((1790..=1800).contains(&ttl), "{ttl}");

    // List tables: Append and Prepend, trimmed to maxLength keeping the newest.
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "event_stream",
            "TYPE",
            "list",
            "PREFIX",
            "events:",
            "KEYFIELD",
            "event_type",
            "MAXLEN",
            "3",
        ],
    );
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "recent",
            "TYPE",
            "list",
            "PREFIX",
            "recent:",
            "KEYFIELD",
            "event_type",
            "MAXLEN",
            "3",
            "PREPEND",
        ],
    );
    for id in 1..=5 {
        let row = format!(r#"{{"event_id":{id},"event_type":"click"}}"#);
        run(&mut con, &["SINK.WRITE", "event_stream", &row]);
        run(&mut con, &["SINK.WRITE", "recent", &row]);
    }
    let ids = |con: &mut Connection, key: &str| -> Vec<i64> {
        let items: Vec<String> = call(con, &["LRANGE", key, "0", "-1"]).unwrap();
        items
            .iter()
            .map(|item| {
                serde_json::from_str::<serde_json::Value>(item).unwrap()["event_id"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        ids(&mut con, "events:click"),
        [3, 4, 5],
        "append keeps the newest at the tail"
    );
    assert_eq!(
        ids(&mut con, "recent:click"),
        [5, 4, 3],
        "prepend keeps the newest at the head"
    );

    // Hash table: key column and field column; the value is the row's JSON.
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "inventory_updates",
            "TYPE",
            "hash",
            "PREFIX",
            "stock:",
            "KEYFIELD",
            "warehouse",
            "FIELDFIELD",
            "sku",
        ],
    );
    run(
        &mut con,
        &[
            "SINK.WRITE",
            "inventory_updates",
            r#"{"sku":"A-1","warehouse":"north","quantity":5}"#,
            r#"{"sku":"B-2","warehouse":"north","quantity":0}"#,
            r#"{"sku":"A-1","warehouse":"south","quantity":7}"#,
        ],
    );
    assert_eq!(
        hgetall(&mut con, "stock:north"),
        [
            "A-1",
            r#"{"sku":"A-1","warehouse":"north","quantity":5}"#,
            "B-2",
            r#"{"sku":"B-2","warehouse":"north","quantity":0}"#
        ]
    );
    assert_eq!(hgetall(&mut con, "stock:south").len(), 2);

    // The leaderboard: the seed keeps "the top 100" in a list by arrival order, which
    // keeps the last 100 arrivals. A sorted set keeps the 100 highest scores, whatever
    // the order they arrive in.
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "leaderboard",
            "TYPE",
            "zset",
            "PREFIX",
            "leaderboard:",
            "KEYFIELD",
            "game_id",
            "MEMBERFIELD",
            "player_id",
            "SCOREFIELD",
            "score",
            "MAXLEN",
            "100",
        ],
    );
    let mut scores: Vec<i64> = (0..1000).map(|i| (i * 7919) % 100_003).collect();
    // A fixed shuffle: arrival order unrelated to score.
    scores.sort_by_key(|score| (score * 31) % 997);
    for chunk in scores.chunks(50) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|score| format!(r#"{{"game_id":"g1","player_id":"p{score}","score":{score}}}"#))
            .collect();
        let mut args = vec!["SINK.WRITE", "leaderboard"];
        args.extend(rows.iter().map(String::as_str));
        run(&mut con, &args);
    }
    let kept: Vec<(String, f64)> = call(
        &mut con,
        &["ZREVRANGE", "leaderboard:g1", "0", "-1", "WITHSCORES"],
    )
    .unwrap();
    let mut best = scores.clone();
    best.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(kept.len(), 100);
    assert_eq!(
        kept.iter()
            .map(|(_, score)| *score as i64)
            .collect::<Vec<_>>(),
        best[..100].to_vec()
    );
    // And with the explicit-key command.
    for score in &scores {
        run(
            &mut con,
            &[
                "SINK.ZSET",
                "top",
                &format!("p{score}"),
                &score.to_string(),
                "MAXLEN",
                "100",
            ],
        );
    }
    let top: Vec<(String, f64)> =
        call(&mut con, &["ZREVRANGE", "top", "0", "-1", "WITHSCORES"]).unwrap();
    assert_eq!(top, kept);
}

/// Seed 001 (RDI): the invoice stream message with mapping, aliases, op_code and a
/// 100-second expiry.
#[test]
fn seed_001_invoice_stream_message() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let invoice = r#"{"InvoiceId":98,"CustomerId":7,"InvoiceDate":"2021-01-01T00:00:00Z","BillingCountry":"Germany","Total":3.96}"#;
    let id: String = call(
        &mut con,
        &[
            "SINK.STREAM",
            "invoice:events",
            invoice,
            "MAP",
            "InvoiceId:message_id",
            "BillingCountry:country",
            "Total",
            "OPCODE",
            "c",
            "TTL",
            "100",
        ],
    )
    .unwrap();
    let entries: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);
    assert_eq!(
        entries[0].1,
        [
            "message_id",
            "98",
            "country",
            "Germany",
            "Total",
            "3.96",
            "op_code",
            "c"
        ]
    );
    let ttl: i64 = call(&mut con, &["TTL", "invoice:events"]).unwrap();
    assert!((95..=100).contains(&ttl), "{ttl}");

    // The same through a named stream sink, op_code from the row.
    run(
        &mut con,
        &[
            "SINK.DEFINE",
            "invoices",
            "TYPE",
            "stream",
            "PREFIX",
            "invoice:events2",
            "MAP",
            "InvoiceId:message_id",
            "BillingCountry:country",
            "Total",
            "OPCODE",
            "op",
            "TTL",
            "100",
        ],
    );
    let with_op = r#"{"InvoiceId":98,"BillingCountry":"Germany","Total":3.96,"op":"u"}"#;
    run(&mut con, &["SINK.WRITE", "invoices", with_op]);
    let entries: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events2", "-", "+"]).unwrap();
    assert_eq!(
        entries[0].1,
        [
            "message_id",
            "98",
            "country",
            "Germany",
            "Total",
            "3.96",
            "op_code",
            "u"
        ]
    );
}
