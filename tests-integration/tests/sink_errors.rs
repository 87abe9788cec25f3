//! Bad input to SINK commands: one clear error each, nothing written, server still up.

use redsink_tests::{call, refused, words, RedisServer};

#[test]
fn every_bad_argument_gets_one_clear_error() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["SET", "str", "plain"]).unwrap();
    call::<()>(&mut con, &["HSET", "hash", "f", "v"]).unwrap();
    call::<()>(&mut con, &["DS.CREATE", "ds"]).unwrap();
    call::<()>(
        &mut con,
        &[
            "SINK.DEFINE",
            "users",
            "TYPE",
            "hash",
            "PREFIX",
            "user:",
            "KEYFIELD",
            "id",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "SINK.DEFINE",
            "board",
            "TYPE",
            "zset",
            "PREFIX",
            "board",
            "MEMBERFIELD",
            "p",
            "SCOREFIELD",
            "s",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "SINK.DEFINE",
            "strings",
            "TYPE",
            "string",
            "PREFIX",
            "s:",
            "KEYFIELD",
            "id",
        ],
    )
    .unwrap();

    let cases: &[(&str, &str)] = &[
        (
            "SINK.HASH",
            "ERR wrong number of arguments for 'SINK.HASH' command",
        ),
        (
            "SINK.HASH h",
            "ERR wrong number of arguments for 'SINK.HASH' command",
        ),
        (
            "SINK.HASH str {\"a\":1}",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        ("SINK.HASH ds {\"a\":1}", "WRONGTYPE"),
        ("SINK.HASH h {\"a\":", "ERR invalid JSON: EOF while parsing"),
        (
            "SINK.HASH h [1,2]",
            "ERR the JSON value must be an object, got an array",
        ),
        (
            "SINK.HASH h {} TTL -1",
            "ERR TTL must be an integer from 1 to 3153600000, got '-1'",
        ),
        ("SINK.HASH h {} TTL 0", "ERR TTL must be an integer from 1"),
        (
            "SINK.HASH h {} REPLACE PATCH",
            "ERR REPLACE and PATCH cannot be given together",
        ),
        (
            "SINK.HASH h {} TTL 5 PXAT 1",
            "ERR TTL and PXAT cannot be given together",
        ),
        (
            "SINK.HASH h FIELDS 1 a 1 PXAT 0",
            "ERR PXAT must be an integer from 1 to 253402300799999",
        ),
        ("SINK.STRING s x PXAT 1", "ERR unknown option 'PXAT'"),
        ("SINK.STRING s {} PATCH", "ERR PATCH needs JSON"),
        (
            "SINK.STRING s [1] JSON PATCH",
            "ERR the JSON value must be an object, got an array",
        ),
        ("SINK.HASH h {} VERSION x", "ERR VERSION must be an integer"),
        (
            "SINK.HASH h {} FLATTEN",
            "ERR option 'FLATTEN' needs a value",
        ),
        ("SINK.HASH h {} PREPEND", "ERR unknown option 'PREPEND'"),
        ("SINK.HASH h FIELDS", "ERR option 'FIELDS' needs a value"),
        (
            "SINK.HASH h FIELDS two a 1 b 2",
            "ERR FIELDS must be an integer from 0",
        ),
        (
            "SINK.HASH h FIELDS 2 a 1 b",
            "ERR FIELDS 2 needs 2 field value pairs after it, got 3 arguments",
        ),
        (
            "SINK.HASH h FIELDS 99999 a 1",
            "ERR FIELDS 99999 is over redsink.max-fields (4096)",
        ),
        (
            "SINK.HASH h FIELDS 1 a 1 PATCH",
            "ERR PATCH takes the JSON form: FIELDS are flattened already",
        ),
        (
            "SINK.HASH h FIELDS 1 a 1 FLATTEN _",
            "ERR FLATTEN takes the JSON form: FIELDS are flattened already",
        ),
        (
            "SINK.HASH h FIELDS 1 a 1 TTL 0",
            "ERR TTL must be an integer from 1",
        ),
        ("SINK.HASH str FIELDS 1 a 1", "WRONGTYPE"),
        (
            "SINK.HASH h FIELDS 1 a 1 VERSION",
            "ERR option 'VERSION' needs a value",
        ),
        (
            "SINK.STRING",
            "ERR wrong number of arguments for 'SINK.STRING' command",
        ),
        ("SINK.STRING hash v", "WRONGTYPE"),
        (
            "SINK.STRING s {bad JSON",
            "ERR invalid JSON: key must be a string",
        ),
        ("SINK.STRING s v MAXLEN 3", "ERR unknown option 'MAXLEN'"),
        (
            "SINK.LIST",
            "ERR wrong number of arguments for 'SINK.LIST' command",
        ),
        (
            "SINK.LIST l",
            "ERR wrong number of arguments for 'SINK.LIST' command",
        ),
        ("SINK.LIST str a", "WRONGTYPE"),
        (
            "SINK.LIST l a MAXLEN 0",
            "ERR MAXLEN must be an integer from 1",
        ),
        ("SINK.SET str a", "WRONGTYPE"),
        ("SINK.SET z a TTL -5", "ERR TTL must be an integer from 1"),
        (
            "SINK.ZSET z p",
            "ERR wrong number of arguments for 'SINK.ZSET' command",
        ),
        (
            "SINK.ZSET z p high",
            "ERR score must be a finite number, got 'high'",
        ),
        (
            "SINK.ZSET z p inf",
            "ERR score must be a finite number, got 'inf'",
        ),
        ("SINK.ZSET z p nan", "ERR score must be a finite number"),
        (
            "SINK.ZSET z p 1 MAXLEN 0",
            "ERR MAXLEN must be an integer from 1",
        ),
        ("SINK.ZSET hash p 1", "WRONGTYPE"),
        (
            "SINK.STREAM x",
            "ERR wrong number of arguments for 'SINK.STREAM' command",
        ),
        (
            "SINK.STREAM x {\"a\":1} ID 0-0",
            "ERR ID must be <ms>-<seq> or <ms>, got '0-0'",
        ),
        ("SINK.STREAM x {\"a\":1} ID abc", "ERR ID must be"),
        (
            "SINK.STREAM x {\"a\":1} MAXLEN 0",
            "ERR MAXLEN must be an integer from 1",
        ),
        (
            "SINK.STREAM x {\"a\":1} MAP",
            "ERR option 'MAP' needs a value",
        ),
        (
            "SINK.STREAM x {\"a\":1} MAP b",
            "ERR nothing to add: no field of the JSON is mapped",
        ),
        ("SINK.STREAM x {}", "ERR nothing to add"),
        ("SINK.STREAM str {\"a\":1}", "WRONGTYPE"),
        (
            "SINK.DEL",
            "ERR wrong number of arguments for 'SINK.DEL' command",
        ),
        ("SINK.DEL k VERSION", "ERR option 'VERSION' needs a value"),
        ("SINK.DEL k TTL 5", "ERR unknown option 'TTL'"),
        (
            "SINK.VERSION",
            "ERR wrong number of arguments for 'SINK.VERSION' command",
        ),
        ("SINK.SETVERSION k x", "ERR version must be an integer"),
        (
            "SINK.DEFINE",
            "ERR wrong number of arguments for 'SINK.DEFINE' command",
        ),
        ("SINK.DEFINE n PREFIX p", "ERR a sink needs TYPE"),
        ("SINK.DEFINE n TYPE hash", "ERR a sink needs PREFIX"),
        (
            "SINK.DEFINE n TYPE graph PREFIX p",
            "ERR TYPE must be string, hash, list, set, zset or stream, got 'graph'",
        ),
        (
            "SINK.DEFINE n TYPE list PREFIX p MAXLEN 0",
            "ERR MAXLEN must be an integer from 1",
        ),
        (
            "SINK.DEFINE n TYPE string PREFIX p TTL -1",
            "ERR TTL must be an integer from 1",
        ),
        (
            "SINK.DEFINE n TYPE string PREFIX p PREPEND",
            "ERR PREPEND does not apply to a string sink",
        ),
        (
            "SINK.DEFINE n TYPE zset PREFIX p",
            "ERR a zset sink needs SCOREFIELD",
        ),
        (
            "SINK.WRITE",
            "ERR wrong number of arguments for 'SINK.WRITE' command",
        ),
        (
            "SINK.WRITE users",
            "ERR wrong number of arguments for 'SINK.WRITE' command",
        ),
        (
            "SINK.WRITE nobody {}",
            "ERR no sink named 'nobody'; define it with SINK.DEFINE",
        ),
        (
            "SINK.WRITE users {\"name\":\"x\"}",
            "ERR row 1: the row has no 'id' for the key",
        ),
        (
            "SINK.WRITE users {\"id\":1} {\"id\":",
            "ERR row 2: invalid JSON",
        ),
        (
            "SINK.WRITE users {\"id\":1} [1]",
            "ERR row 2: the JSON value must be an object",
        ),
        (
            "SINK.WRITE board {\"p\":\"a\",\"s\":\"high\"}",
            "ERR row 1: 's' must hold a finite number for the score",
        ),
        (
            "SINK.WRITE strings {\"id\":\"ok\"} {\"id\":\"tr\"}",
            "WRONGTYPE",
        ),
        (
            "SINK.DROP",
            "ERR wrong number of arguments for 'SINK.DROP' command",
        ),
        ("SINK.INFO nobody", "ERR no sink named 'nobody'"),
        (
            "SINK.INFO a b",
            "ERR wrong number of arguments for 'SINK.INFO' command",
        ),
    ];
    // "s:tr" is a hash, so the second row of that SINK.WRITE cannot be written: the
    // first must not be written either.
    call::<()>(&mut con, &["HSET", "s:tr", "f", "v"]).unwrap();
    for (line, expected) in cases {
        refused(&mut server, &words(line), expected);
    }
    // Over the limits.
    call::<()>(
        &mut con,
        &["CONFIG", "SET", "redsink.max-payload-bytes", "20"],
    )
    .unwrap();
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(30));
    refused(
        &mut server,
        &[b"SINK.HASH", b"h", big.as_bytes()],
        "ERR payload is 38 bytes, over redsink.max-payload-bytes (20)",
    );
    refused(
        &mut server,
        &[b"SINK.WRITE", b"users", br#"{"id":1}"#, big.as_bytes()],
        "ERR row 2: payload is 38 bytes",
    );
    refused(
        &mut server,
        &[b"SINK.STRING", b"s", big.as_bytes(), b"JSON"],
        "ERR payload is 38 bytes",
    );
    call::<()>(
        &mut con,
        &["CONFIG", "SET", "redsink.max-payload-bytes", "1048576"],
    )
    .unwrap();
    call::<()>(&mut con, &["CONFIG", "SET", "redsink.max-depth", "2"]).unwrap();
    refused(
        &mut server,
        &words(r#"SINK.HASH h {"a":{"b":{"c":1}}}"#),
        "ERR JSON is nested deeper than redsink.max-depth (2)",
    );

    // No id comes after the largest a stream can hold: XADD's own error.
    call::<String>(
        &mut con,
        &[
            "XADD",
            "full",
            "18446744073709551615-18446744073709551615",
            "f",
            "v",
        ],
    )
    .unwrap();
    refused(
        &mut server,
        &words(r#"SINK.STREAM full {"a":1} ID 5-0"#),
        "ERR The stream has exhausted the last possible ID",
    );
}

#[test]
fn sink_write_checks_acl_key_permissions_for_every_row_first() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(
        &mut con,
        &[
            "SINK.DEFINE",
            "open",
            "TYPE",
            "string",
            "PREFIX",
            "",
            "KEYFIELD",
            "key",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "writer",
            "on",
            "nopass",
            "~public:*",
            "+@all",
        ],
    )
    .unwrap();
    let mut writer = server.connection();
    call::<()>(&mut writer, &["AUTH", "writer", "any"]).unwrap();
    let written: i64 = call(
        &mut writer,
        &["SINK.WRITE", "open", r#"{"key":"public:1"}"#],
    )
    .unwrap();
    assert_eq!(written, 1);
    let before = redsink_tests::snapshot(&mut con);
    let error = call::<i64>(
        &mut writer,
        &[
            "SINK.WRITE",
            "open",
            r#"{"key":"public:2"}"#,
            r#"{"key":"secret:1"}"#,
        ],
    )
    .unwrap_err();
    assert_eq!(error.code(), Some("NOPERM"));
    assert!(error.to_string().contains("secret:1"), "{error}");
    assert_eq!(
        redsink_tests::snapshot(&mut con),
        before,
        "no row was written"
    );
    // Explicit-key commands are checked by Redis itself, from the key argument.
    let denied = call::<i64>(&mut writer, &["SINK.HASH", "secret:2", r#"{"a":1}"#]).unwrap_err();
    assert_eq!(denied.code(), Some("NOPERM"));
    assert!(server.is_alive());
}
