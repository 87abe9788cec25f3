//! SINK.JSON: JSON documents of the server's JSON (RedisJSON here), set or merged, each
//! write versioned as hashes are; bad input writes nothing; replicas and the AOF end with
//! the same documents and versions.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use redis::{Connection, Value};
use redsink_tests::{call, refused, snapshot, wait_for_replicas, words, Options, RedisServer};
use serde_json::{json, Value as Json};

fn with_json() -> RedisServer {
    RedisServer::with(Options::default().with_json())
}

fn run(con: &mut Connection, args: &[&str]) -> Value {
    call(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn document(con: &mut Connection, key: &str) -> Json {
    let text: String = call(con, &["JSON.GET", key]).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn documents_are_set_whole_or_merged_into() {
    let server = with_json();
    let mut con = server.connection();
    let set = run(
        &mut con,
        &["SINK.JSON", "doc", r#"{"a":1,"b":{"c":2,"d":3},"n":1.10}"#],
    );
    assert_eq!(set, Value::Okay);
    assert_eq!(
        call::<String>(&mut con, &["TYPE", "doc"]).unwrap(),
        "ReJSON-RL"
    );
    // PATCH: JSON Merge Patch (RFC 7396): members set, null members removed.
    run(
        &mut con,
        &[
            "SINK.JSON",
            "doc",
            r#"{"b":{"c":null,"e":[1]},"f":"x"}"#,
            "PATCH",
        ],
    );
    assert_eq!(
        document(&mut con, "doc"),
        json!({"a": 1, "b": {"d": 3, "e": [1]}, "n": 1.10, "f": "x"})
    );
    // Without PATCH the document is replaced.
    run(&mut con, &["SINK.JSON", "doc", r#"{"only":true}"#]);
    assert_eq!(document(&mut con, "doc"), json!({"only": true}));
    // A merge into no document makes one; TTL applies to both forms.
    run(
        &mut con,
        &["SINK.JSON", "new", r#"{"x":1}"#, "PATCH", "TTL", "100"],
    );
    assert_eq!(document(&mut con, "new"), json!({"x": 1}));
    let ttl: i64 = call(&mut con, &["TTL", "new"]).unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");
    // KEEP: a replace that keeps the stored members it names (a nested map).
    run(
        &mut con,
        &[
            "SINK.JSON",
            "inv",
            r#"{"Total":1.10,"Lines":{"1":{"Qty":2}},"Old":1}"#,
        ],
    );
    run(
        &mut con,
        &[
            "SINK.JSON",
            "inv",
            r#"{"Total":2.50}"#,
            "KEEP",
            "Lines",
            "KEEP",
            "Nowhere",
        ],
    );
    assert_eq!(
        document(&mut con, "inv"),
        json!({"Total": 2.50, "Lines": {"1": {"Qty": 2}}})
    );
    run(
        &mut con,
        &["SINK.JSON", "fresh", r#"{"a":1}"#, "KEEP", "Lines"],
    );
    assert_eq!(document(&mut con, "fresh"), json!({"a": 1}));
    // A patch into no document: the patch without its nulls, as RFC 7396 merges into {}.
    run(
        &mut con,
        &[
            "SINK.JSON",
            "patched",
            r#"{"a":{"b":null,"c":1},"d":null}"#,
            "PATCH",
        ],
    );
    assert_eq!(document(&mut con, "patched"), json!({"a": {"c": 1}}));
    // Any JSON value is a document.
    run(&mut con, &["SINK.JSON", "scalar", "[1,\"two\",null]"]);
    assert_eq!(document(&mut con, "scalar"), json!([1, "two", null]));
}

#[test]
fn replaying_versions_in_random_order_leaves_the_newest() {
    let server = with_json();
    let mut con = server.connection();
    let mut rng = StdRng::seed_from_u64(11);
    const N: i64 = 100;
    let mut deliveries: Vec<i64> = (1..=N).chain(1..=N).collect();
    deliveries.shuffle(&mut rng);
    let mut applied = 0;
    for version in &deliveries {
        let v = version.to_string();
        let payload = format!(r#"{{"version":{version},"only_in_{version}":true}}"#);
        let set = run(&mut con, &["SINK.JSON", "set", &payload, "VERSION", &v]);
        let merged = run(
            &mut con,
            &["SINK.JSON", "merged", &payload, "PATCH", "VERSION", &v],
        );
        assert_eq!(set == Value::Nil, merged == Value::Nil);
        if set != Value::Nil {
            applied += 1;
        }
    }
    assert_eq!(
        document(&mut con, "set"),
        json!({"version": N, format!("only_in_{N}"): true})
    );
    // Merged: only the versions applied in order are in, the newest last.
    let merged = document(&mut con, "merged");
    assert_eq!(merged["version"], json!(N));
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "set"]).unwrap(), N);
    assert!(applied < deliveries.len(), "stale deliveries were skipped");
    // A versioned delete keeps an older document out.
    assert_eq!(
        run(
            &mut con,
            &["SINK.DEL", "set", "VERSION", &(N + 1).to_string()]
        ),
        Value::Int(1)
    );
    assert_eq!(
        run(
            &mut con,
            &["SINK.JSON", "set", "{}", "VERSION", &N.to_string()]
        ),
        Value::Nil
    );
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "set"]).unwrap(), 0);
}

#[test]
fn bad_input_gets_one_clear_error_and_writes_nothing() {
    let mut server = with_json();
    let mut con = server.connection();
    run(&mut con, &["SET", "str", "plain"]);
    run(&mut con, &["HSET", "hash", "f", "v"]);
    run(&mut con, &["DS.CREATE", "ds"]);
    run(
        &mut con,
        &["SINK.JSON", "doc", r#"{"a":1}"#, "VERSION", "5"],
    );
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"SINK.JSON"],
            "ERR wrong number of arguments for 'SINK.JSON' command",
        ),
        (
            &[b"SINK.JSON", b"doc"],
            "ERR wrong number of arguments for 'SINK.JSON' command",
        ),
        (&words("SINK.JSON str {}"), "WRONGTYPE"),
        (&words("SINK.JSON hash {}"), "WRONGTYPE"),
        (&words("SINK.JSON ds {}"), "WRONGTYPE"),
        (
            &words("SINK.JSON doc {bad"),
            "ERR invalid JSON: key must be a string",
        ),
        (&[b"SINK.JSON", b"doc", b"\xff"], "ERR invalid JSON"),
        (&[b"SINK.JSON", b"doc", deep.as_bytes()], "ERR"),
        (
            &words("SINK.JSON doc [1] PATCH"),
            "ERR the JSON value must be an object, got an array",
        ),
        (
            &words("SINK.JSON doc {} TTL 0"),
            "ERR TTL must be an integer",
        ),
        (
            &words("SINK.JSON doc {} VERSION x"),
            "ERR VERSION must be an integer",
        ),
        (&words("SINK.JSON doc {} JSON"), "ERR unknown option 'JSON'"),
        (&words("SINK.JSON doc {} REPLACE"), "ERR unknown option"),
        (
            &words("SINK.JSON doc {} KEEP a PATCH"),
            "ERR KEEP and PATCH cannot be given together",
        ),
        (
            &words("SINK.JSON doc [1] KEEP a"),
            "ERR the JSON value must be an object, got an array",
        ),
        (
            &words("SINK.JSON doc {} KEEP"),
            "ERR option 'KEEP' needs a value",
        ),
    ];
    for (args, expected) in cases {
        refused(&mut server, args, expected);
    }
    assert_eq!(document(&mut con, "doc"), json!({"a": 1}));
    assert_eq!(call::<i64>(&mut con, &["SINK.VERSION", "doc"]).unwrap(), 5);
}

#[test]
fn a_server_without_json_says_so() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    let before = snapshot(&mut con);
    let error = redsink_tests::call_err(&mut con, &["SINK.JSON", "doc", "{}", "VERSION", "1"]);
    // On 7.0 the command checks ACL as JSON.SET first, which is not there; elsewhere it
    // runs and finds no JSON.SET.
    assert!(
        error.contains("SINK.JSON needs JSON on the server (the RedisJSON module, or Redis 8)")
            || error.contains("as 'json.set', which is not a command of this server (renamed, or its module not loaded)"),
        "{error}"
    );
    assert_eq!(snapshot(&mut con), before);
    assert_eq!(
        call::<Value>(&mut con, &["SINK.VERSION", "doc"]).unwrap(),
        Value::Nil
    );
    assert!(server.is_alive());
}

fn fill(con: &mut Connection, round: usize) {
    for i in 0..20 {
        let key = format!("doc:{round}:{i}");
        let version = (i + 1).to_string();
        run(
            con,
            &[
                "SINK.JSON",
                &key,
                &format!(r#"{{"i":{i},"round":{round}}}"#),
                "VERSION",
                &version,
            ],
        );
        if i % 2 == 0 {
            run(
                con,
                &[
                    "SINK.JSON",
                    &key,
                    r#"{"round":null,"even":true}"#,
                    "PATCH",
                    "TTL",
                    "1000",
                    "VERSION",
                    &(i + 2).to_string(),
                ],
            );
        }
    }
    run(
        con,
        &["SINK.DEL", &format!("doc:{round}:3"), "VERSION", "9"],
    );
}

fn versions(con: &mut Connection) -> Vec<Value> {
    (0..2)
        .flat_map(|round| (0..20).map(move |i| format!("doc:{round}:{i}")))
        .map(|key| call(con, &["SINK.VERSION", &key]).unwrap())
        .collect()
}

#[test]
fn a_replica_and_the_aof_end_with_the_same_documents_and_versions() {
    // Every write fsynced before its reply: the restart is a SIGKILL.
    let options = Options::default()
        .with_json()
        .config("appendonly", "yes")
        .config("appendfsync", "always");
    let mut primary = RedisServer::with(options);
    let mut con = primary.connection();
    fill(&mut con, 0);
    let replica = primary.replica();
    fill(&mut con, 1);
    wait_for_replicas(&mut con, 1);
    let mut replica_con = replica.connection();
    let expected = (snapshot(&mut con), versions(&mut con));
    assert_eq!(
        expected.0.len(),
        38,
        "two rounds of 20 documents, one deleted each"
    );
    assert_eq!(
        (snapshot(&mut replica_con), versions(&mut replica_con)),
        expected
    );
    primary.restart();
    let mut con = primary.connection();
    assert_eq!((snapshot(&mut con), versions(&mut con)), expected);
    assert_eq!(document(&mut con, "doc:1:4"), json!({"i": 4, "even": true}));
}
