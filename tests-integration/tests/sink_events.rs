//! The SINK commands write through the module's low-level key API; applications that
//! listen to keyspace events must still hear what the plain commands would have told them.

use redis::Connection;
use redsink_tests::{call, RedisServer};
use std::time::Duration;

/// A SINK command, and the plain commands that leave the same data and replicate the same
/// way (`-` stands for the key); `setup` runs on both keys first.
struct Case {
    setup: &'static [&'static str],
    sink: &'static [&'static str],
    plain: &'static [&'static [&'static str]],
}

const CASES: &[Case] = &[
    Case {
        setup: &[],
        sink: &["SINK.HASH", "-", r#"{"a":1,"b":{"c":2}}"#, "TTL", "60"],
        plain: &[&["HSET", "-", "a", "1", "b.c", "2"], &["EXPIRE", "-", "60"]],
    },
    Case {
        setup: &["HSET", "-", "a", "1", "b.c", "2"],
        sink: &["SINK.HASH", "-", r#"{"a":3}"#, "REPLACE"],
        plain: &[&["HSET", "-", "a", "3"], &["HDEL", "-", "b.c"]],
    },
    // The same fields again: nothing to remove.
    Case {
        setup: &["HSET", "-", "a", "1", "b.c", "2"],
        sink: &["SINK.HASH", "-", r#"{"b":{"c":3},"a":4}"#, "REPLACE"],
        plain: &[&["HSET", "-", "b.c", "3", "a", "4"]],
    },
    // As many fields as the hash held, but one of them twice: the other one still goes.
    Case {
        setup: &["HSET", "-", "a", "1", "z", "2"],
        sink: &["SINK.HASH", "-", r#"{"a":5,"a":6}"#, "REPLACE"],
        plain: &[&["HSET", "-", "a", "5", "a", "6"], &["HDEL", "-", "z"]],
    },
    // A patch: null members go, with the fields flattened under them (not `bc`).
    Case {
        setup: &[
            "HSET", "-", "a", "1", "b.c", "2", "b.d", "3", "bc", "4", "x", "5",
        ],
        sink: &[
            "SINK.HASH",
            "-",
            r#"{"a":3,"b":null,"gone":null,"n":{"m":1}}"#,
            "PATCH",
        ],
        plain: &[
            &["HSET", "-", "a", "3", "n.m", "1"],
            &["HDEL", "-", "b.c", "b.d"],
        ],
    },
    // A patch that empties the hash: the key goes, as with HDEL.
    Case {
        setup: &["HSET", "-", "a", "1", "b", "2"],
        sink: &["SINK.HASH", "-", r#"{"a":null,"b":null}"#, "PATCH"],
        plain: &[&["HDEL", "-", "a", "b"]],
    },
    // A field set by the patch stays, though a removed name covers it.
    Case {
        setup: &["HSET", "-", "a", "1", "a.c", "2"],
        sink: &["SINK.HASH", "-", r#"{"a":null,"a.b":1}"#, "PATCH"],
        plain: &[&["HSET", "-", "a.b", "1"], &["HDEL", "-", "a", "a.c"]],
    },
    Case {
        setup: &["SET", "-", r#"{"a":1,"b":{"c":2,"d":3}}"#],
        sink: &[
            "SINK.STRING",
            "-",
            r#"{"b":{"c":null},"e":4}"#,
            "JSON",
            "PATCH",
        ],
        plain: &[&["SET", "-", r#"{"a":1,"b":{"d":3},"e":4}"#]],
    },
    Case {
        setup: &["ZADD", "-", "9", "high", "1", "low"],
        sink: &["SINK.ZSET", "-", "mid", "5", "MAXLEN", "2"],
        plain: &[&["ZADD", "-", "5", "mid"], &["ZREM", "-", "low"]],
    },
    Case {
        setup: &["XADD", "-", "1-1", "a", "0"],
        sink: &["SINK.STREAM", "-", r#"{"a":1}"#, "MAXLEN", "1", "TTL", "60"],
        plain: &[
            &["XADD", "-", "MAXLEN", "1", "*", "a", "1"],
            &["EXPIRE", "-", "60"],
        ],
    },
    Case {
        setup: &["RPUSH", "-", "x", "y"],
        sink: &["SINK.LIST", "-", "z", "MAXLEN", "2"],
        plain: &[&["RPUSH", "-", "z"], &["LTRIM", "-", "-2", "-1"]],
    },
];

#[test]
fn sink_commands_emit_the_keyspace_events_of_the_plain_commands() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["CONFIG", "SET", "notify-keyspace-events", "KA"]).unwrap();
    let mut listener = server.connection();
    let mut pubsub = listener.as_pubsub();
    pubsub.psubscribe("__keyspace@0__:*").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for (case, Case { setup, sink, plain }) in CASES.iter().enumerate() {
        let keys = (format!("sink:{case}"), format!("plain:{case}"));
        let with_key = |args: &[&str], key: &str| -> Vec<String> {
            args.iter()
                .map(|arg| if *arg == "-" { key } else { arg }.to_owned())
                .collect()
        };
        for key in [&keys.0, &keys.1] {
            if !setup.is_empty() {
                call::<()>(&mut con, &with_key(setup, key)).unwrap();
            }
        }
        call::<redis::Value>(&mut con, &with_key(sink, &keys.0)).unwrap();
        for command in *plain {
            call::<redis::Value>(&mut con, &with_key(command, &keys.1)).unwrap();
        }
        let done = format!("done:{case}");
        call::<()>(&mut con, &["SET", &done, "1"]).unwrap();

        let (mut heard_sink, mut heard_plain) = (Vec::new(), Vec::new());
        loop {
            let message = pubsub.get_message().unwrap();
            let channel = message.get_channel_name().to_owned();
            let event: String = message.get_payload().unwrap();
            let key = channel.trim_start_matches("__keyspace@0__:");
            if key == done {
                break;
            } else if key == keys.0 {
                heard_sink.push(event);
            } else if key == keys.1 {
                heard_plain.push(event);
            }
        }
        // The setup's events come first, the same for both keys.
        assert!(!heard_sink.is_empty(), "{sink:?} emitted nothing");
        assert_eq!(heard_sink, heard_plain, "{sink:?} against {plain:?}");
        assert_same_data(&mut con, &keys.0, &keys.1);
    }
}

/// The two keys hold the same data (stream ids aside) and both expire or neither does.
fn assert_same_data(con: &mut Connection, sink: &str, plain: &str) {
    let dump = |con: &mut Connection, key: &str| -> (String, Vec<String>, bool) {
        let kind: String = call(con, &["TYPE", key]).unwrap();
        let data: Vec<String> = match kind.as_str() {
            "hash" => call(con, &["HGETALL", key]).unwrap(),
            "string" => vec![call(con, &["GET", key]).unwrap()],
            "none" => Vec::new(),
            "zset" => call(con, &["ZRANGE", key, "0", "-1"]).unwrap(),
            "list" => call(con, &["LRANGE", key, "0", "-1"]).unwrap(),
            "stream" => {
                let entries: Vec<(String, Vec<String>)> =
                    call(con, &["XRANGE", key, "-", "+"]).unwrap();
                entries.into_iter().flat_map(|(_, fields)| fields).collect()
            }
            other => panic!("{key}: unexpected type {other}"),
        };
        let expires = call::<i64>(con, &["TTL", key]).unwrap() > 0;
        (kind, data, expires)
    };
    let mut sorted = |key: &str| {
        let (kind, mut data, expires) = dump(con, key);
        if kind == "hash" {
            let mut pairs: Vec<Vec<String>> = data.chunks(2).map(<[String]>::to_vec).collect();
            pairs.sort();
            data = pairs.concat();
        }
        (kind, data, expires)
    };
    assert_eq!(sorted(sink), sorted(plain), "{sink} against {plain}");
}

/// A subscription to the module's announcements of new streams, read with a short wait.
fn listen(con: &mut Connection) -> redis::PubSub<'_> {
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe("redsink:new-streams").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    pubsub
}

/// The module announces each new stream on `redsink:new-streams` — an XADD (a client's or
/// SINK.STREAM's) that leaves its stream one entry long — once per stream; a replica
/// applying the primary's XADDs announces nothing.
#[test]
fn new_streams_are_announced_once_by_the_primary() {
    let primary = RedisServer::start();
    let replica = primary.replica();
    let (mut primary_listener, mut replica_listener) = (primary.connection(), replica.connection());
    let mut on_primary = listen(&mut primary_listener);
    let mut on_replica = listen(&mut replica_listener);
    let mut con = primary.connection();
    call::<String>(&mut con, &["XADD", "s1", "*", "a", "1"]).unwrap();
    call::<String>(&mut con, &["XADD", "s1", "*", "a", "2"]).unwrap();
    call::<redis::Value>(&mut con, &["SINK.STREAM", "s2", r#"{"a":1}"#]).unwrap();
    call::<i64>(&mut con, &["HSET", "h", "a", "1"]).unwrap();
    let mut heard = Vec::new();
    while let Ok(message) = on_primary.get_message() {
        heard.push(message.get_payload::<String>().unwrap());
    }
    assert_eq!(heard, ["s1", "s2"]);
    redsink_tests::wait_for_replicas(&mut con, 1);
    assert!(
        on_replica.get_message().is_err(),
        "a replica announces nothing"
    );
}
