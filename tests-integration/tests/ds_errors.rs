//! Bad input to DS.* commands: one clear error each, nothing written, server still up.

use redsink_tests::{call, refused, words, RedisServer};

#[test]
fn every_bad_argument_gets_one_clear_error() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "HISTORY", "2"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "s", "d", r#"{"a":1}"#]).unwrap();
    call::<()>(&mut con, &["SET", "str", "plain"]).unwrap();

    let cases: &[(&str, &str)] = &[
        (
            "DS.CREATE",
            "ERR wrong number of arguments for 'DS.CREATE' command",
        ),
        ("DS.CREATE n BOGUS", "ERR unknown option 'BOGUS'"),
        ("DS.CREATE n TTL", "ERR option 'TTL' needs a value"),
        (
            "DS.CREATE n TTL abc",
            "ERR TTL must be an integer from 0 to 3153600000, got 'abc'",
        ),
        ("DS.CREATE n TTL -1", "ERR TTL must be an integer"),
        (
            "DS.CREATE n HISTORY 10001",
            "ERR HISTORY must be an integer from 0 to 10000",
        ),
        (
            "DS.CREATE n DATEFORMAT RFC2822",
            "ERR DATEFORMAT must be EPOCH or ISO8601, got 'RFC2822'",
        ),
        (
            "DS.CREATE n ONUPDATE PATCH",
            "ERR ONUPDATE must be REPLACE or MERGE, got 'PATCH'",
        ),
        (
            "DS.CREATE n DEVICE timestamp",
            "ERR TIMESTAMP and DEVICE must name different fields",
        ),
        ("DS.CREATE s", "ERR key already exists"),
        ("DS.CREATE str", "ERR key already exists"),
        (
            "DS.ALTER s",
            "ERR wrong number of arguments for 'DS.ALTER' command",
        ),
        (
            "DS.ALTER nope TTL 5",
            "ERR no such device stream; create it first with DS.CREATE",
        ),
        ("DS.ALTER s TTL x", "ERR TTL must be an integer"),
        ("DS.ALTER str TTL 5", "WRONGTYPE"),
        (
            "DS.UPDATE s d",
            "ERR wrong number of arguments for 'DS.UPDATE' command",
        ),
        (
            "DS.UPDATE nope d {}",
            "ERR no such device stream; create it first with DS.CREATE",
        ),
        (
            "DS.UPDATE str d {}",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (
            "DS.UPDATE s d {\"a\":",
            "ERR invalid JSON: EOF while parsing a value at line 1 column 5",
        ),
        (
            "DS.UPDATE s d {\"a\":1}x",
            "ERR invalid JSON: trailing characters at line 1 column 8",
        ),
        (
            "DS.UPDATE s d [1]",
            "ERR the JSON value must be an object, got an array",
        ),
        (
            "DS.UPDATE s d \"text\"",
            "ERR the JSON value must be an object, got a string",
        ),
        (
            "DS.UPDATE s d null",
            "ERR the JSON value must be an object, got null",
        ),
        (
            "DS.UPDATE s d 42",
            "ERR the JSON value must be an object, got a number",
        ),
        (
            "DS.UPDATE s d {} TS abc",
            "ERR TS must be an integer from 0 to 253402300799999, got 'abc'",
        ),
        ("DS.UPDATE s d {} TS -5", "ERR TS must be an integer"),
        (
            "DS.UPDATE s d {} TS 253402300800000",
            "ERR TS must be an integer",
        ),
        ("DS.UPDATE s d {} TS", "ERR option 'TS' needs a value"),
        ("DS.UPDATE s d {} FOO 1", "ERR unknown option 'FOO'"),
        ("DS.PUT s d x {}", "ERR ms must be an integer"),
        (
            "DS.PUT s d 5 [1]",
            "ERR the JSON value must be an object, got an array",
        ),
        (
            "DS.PUT s d 5 {} extra",
            "ERR wrong number of arguments for 'DS.PUT' command",
        ),
        ("DS.PUT nope d 5 {}", "ERR no such device stream"),
        (
            "DS.GET s",
            "ERR wrong number of arguments for 'DS.GET' command",
        ),
        (
            "DS.GET s d extra",
            "ERR wrong number of arguments for 'DS.GET' command",
        ),
        ("DS.GET str d", "WRONGTYPE"),
        (
            "DS.MGET s",
            "ERR wrong number of arguments for 'DS.MGET' command",
        ),
        ("DS.MGET str d", "WRONGTYPE"),
        (
            "DS.DEL s",
            "ERR wrong number of arguments for 'DS.DEL' command",
        ),
        ("DS.DEL str d", "WRONGTYPE"),
        (
            "DS.LEN",
            "ERR wrong number of arguments for 'DS.LEN' command",
        ),
        (
            "DS.LEN s extra",
            "ERR wrong number of arguments for 'DS.LEN' command",
        ),
        ("DS.LEN str", "WRONGTYPE"),
        ("DS.DEVICES s CURSOR zz", "ERR invalid cursor"),
        ("DS.DEVICES s CURSOR 123", "ERR invalid cursor"),
        (
            "DS.DEVICES s COUNT 0",
            "ERR COUNT must be an integer from 1 to 1000000, got '0'",
        ),
        ("DS.DEVICES s MATCH", "ERR option 'MATCH' needs a value"),
        ("DS.DEVICES s SORT", "ERR unknown option 'SORT'"),
        ("DS.DEVICES str", "WRONGTYPE"),
        (
            "DS.RANGE s d",
            "ERR wrong number of arguments for 'DS.RANGE' command",
        ),
        ("DS.RANGE s d x +", "ERR from must be an integer"),
        ("DS.RANGE s d - y", "ERR to must be an integer"),
        ("DS.RANGE s d - + COUNT -1", "ERR COUNT must be an integer"),
        ("DS.RANGE str d - +", "WRONGTYPE"),
        (
            "DS.INFO",
            "ERR wrong number of arguments for 'DS.INFO' command",
        ),
        ("DS.INFO str", "WRONGTYPE"),
        // Plain commands on a device-stream key.
        ("GET s", "WRONGTYPE"),
        ("HGETALL s", "WRONGTYPE"),
        ("LPUSH s x", "WRONGTYPE"),
        ("XADD s * a b", "WRONGTYPE"),
    ];
    for (line, expected) in cases {
        refused(&mut server, &words(line), expected);
    }
    // Empty and non-UTF-8 device ids, binary garbage as JSON.
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"", b"{}"],
        "ERR device id must not be empty",
    );
    // Echoed input is printable ASCII, whatever bytes it was.
    refused(
        &mut server,
        &[b"DS.CREATE", b"n", "bogus-é\r\n".as_bytes()],
        "ERR unknown option 'BOGUS-\\xc3\\xa9\\x0d\\x0a'",
    );
    refused(
        &mut server,
        &[b"DS.CREATE", b"n", b"TTL", &[b'9'; 200]],
        &format!(
            "ERR TTL must be an integer from 0 to 3153600000, got '{}...'",
            "9".repeat(64)
        ),
    );
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"\xff\xfe", b"{}"],
        "ERR device id must be valid UTF-8 text",
    );
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", b"{\"a\":\"\xff\"}"],
        "ERR invalid JSON: invalid unicode code point",
    );
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", b"\x00\x01"],
        "ERR invalid JSON",
    );
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", b""],
        "ERR invalid JSON: EOF while parsing",
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "ONUPDATE", "MERGE"]).unwrap();

    let deep = "[".repeat(33) + &"]".repeat(33);
    let payload = format!(r#"{{"a":{deep}}}"#);
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", payload.as_bytes()],
        "ERR JSON is nested deeper than redsink.max-depth (32)",
    );
    let very_deep = "[".repeat(100_000);
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", very_deep.as_bytes()],
        "ERR JSON is nested deeper than redsink.max-depth (32)",
    );

    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", big.as_bytes()],
        "ERR payload is 2097163 bytes, over redsink.max-payload-bytes (1048576)",
    );

    let wide: String = format!(
        "{{{}}}",
        (0..5000)
            .map(|i| format!(r#""f{i}":{i}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    refused(
        &mut server,
        &[b"DS.UPDATE", b"s", b"d", wide.as_bytes()],
        "ERR JSON has 5000 fields, over redsink.max-fields (4096)",
    );

    // Limits are module configuration, changed at run time.
    call::<()>(&mut con, &["CONFIG", "SET", "redsink.max-fields", "3"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "s", "d", r#"{"a":1}"#]).unwrap();
    // A merge that would grow the record past the limit is refused as a whole (the stamp
    // fields, added when the record is read, do not count).
    refused(
        &mut server,
        &words(r#"DS.UPDATE s d {"b":1,"c":2,"e":3}"#),
        "ERR JSON has 4 fields, over redsink.max-fields (3)",
    );
    let mut con = server.connection();
    call::<()>(
        &mut con,
        &["CONFIG", "SET", "redsink.max-payload-bytes", "10"],
    )
    .unwrap();
    refused(
        &mut server,
        &words(r#"DS.UPDATE s d {"a":12345}"#),
        "ERR payload is 11 bytes, over redsink.max-payload-bytes (10)",
    );
}
