//! Keys are binary: names with NUL and non-UTF-8 bytes work with every command, the
//! background reclaimer included.

use redis::Connection;
use redsink_tests::{call, now_ms, RedisServer};

fn hget(con: &mut Connection, key: &[u8], field: &str) -> Option<String> {
    call(con, &[&b"HGET"[..], key, field.as_bytes()]).unwrap()
}

#[test]
fn binary_key_names_work_everywhere() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let key: &[u8] = b"user:\x00\xff\x01";
    assert_eq!(
        call::<i64>(
            &mut con,
            &[&b"SINK.HASH"[..], key, br#"{"a":1}"#, b"VERSION", b"3"]
        )
        .unwrap(),
        1
    );
    assert_eq!(hget(&mut con, key, "a").as_deref(), Some("1"));
    assert_eq!(
        call::<i64>(&mut con, &[&b"SINK.VERSION"[..], key]).unwrap(),
        3
    );
    assert_eq!(
        call::<i64>(
            &mut con,
            &[&b"SINK.LIST"[..], b"l\x00", b"a", b"MAXLEN", b"1"]
        )
        .unwrap(),
        1
    );
    call::<()>(
        &mut con,
        &[
            &b"SINK.DEFINE"[..],
            b"bin",
            b"TYPE",
            b"hash",
            b"PREFIX",
            b"p\x00:",
            b"KEYFIELD",
            b"id",
        ],
    )
    .unwrap();
    call::<i64>(&mut con, &["SINK.WRITE", "bin", r#"{"id":"x","v":2}"#]).unwrap();
    assert_eq!(hget(&mut con, b"p\x00:x", "v").as_deref(), Some("2"));

    // A device stream under a binary name, its expired records reclaimed in the background.
    let stream: &[u8] = b"ds\x00\xfe";
    call::<()>(&mut con, &[&b"DS.CREATE"[..], stream, b"TTL", b"1"]).unwrap();
    let old = (now_ms() - 60_000).to_string();
    call::<i64>(
        &mut con,
        &[
            &b"DS.UPDATE"[..],
            stream,
            b"dev",
            b"{}",
            b"TS",
            old.as_bytes(),
        ],
    )
    .unwrap();
    server.wait_until("expired record reclaimed", |con| {
        let stored: Vec<redis::Value> = call(con, &[&b"DS.INFO"[..], stream])?;
        Ok(stored.chunks(2).any(|pair| {
            pair[0] == redis::Value::SimpleString("stored-devices".into())
                && pair[1] == redis::Value::Int(0)
        }))
    });
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
