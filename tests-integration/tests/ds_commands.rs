//! DS.* commands against a real redis-server: the success path of each, and seed 000's
//! rule that a device stream keeps zero or one record per device.

use redis::Value;
use redsink_tests::{call, call_err, ds_info, now_ms, RedisServer};
use serde_json::{json, Value as Json};

fn record(con: &mut redis::Connection, key: &str, device: &str) -> Option<Json> {
    let text: Option<String> = call(con, &["DS.GET", key, device]).unwrap();
    text.map(|text| serde_json::from_str(&text).expect("records are JSON"))
}

#[test]
fn seed_000_zero_or_one_record_per_device() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(
        call::<String>(&mut con, &["DS.CREATE", "telemetry"]).unwrap(),
        "OK"
    );
    // GetItems: zero records for a device without data...
    assert_eq!(record(&mut con, "telemetry", "dev001"), None);
    // updateDataStream(key, {json}, {deviceId}) ...
    let created: i64 = call(
        &mut con,
        &[
            "DS.UPDATE",
            "telemetry",
            "dev001",
            r#"{"temperature": 21.5, "humidity": 40}"#,
        ],
    )
    .unwrap();
    assert_eq!(created, 1);
    let updated: i64 = call(
        &mut con,
        &[
            "DS.UPDATE",
            "telemetry",
            "dev001",
            r#"{"temperature": 22.0}"#,
        ],
    )
    .unwrap();
    assert_eq!(updated, 0);
    // ... and exactly one record once it has data: the latest.
    let latest = record(&mut con, "telemetry", "dev001").unwrap();
    assert_eq!(latest["temperature"], json!(22.0));
    assert_eq!(latest.get("humidity"), None);
    assert_eq!(latest["deviceId"], json!("dev001"));
    let stamp = latest["timestamp"].as_str().unwrap();
    assert_eq!(stamp.len(), "2026-11-21T19:47:48.019Z".len());
    assert!(stamp.ends_with('Z'));
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "telemetry"]).unwrap(), 1);
}

#[test]
fn timestamps_in_both_formats_and_custom_field_names() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "iso"]).unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.CREATE",
            "epoch",
            "DATEFORMAT",
            "EPOCH",
            "TIMESTAMP",
            "ts",
            "DEVICE",
            "device",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &["DS.UPDATE", "iso", "a", "{}", "TS", "1795290468019"],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.UPDATE",
            "epoch",
            "a",
            r#"{"device":"spoofed"}"#,
            "TS",
            "1795290468019",
        ],
    )
    .unwrap();
    assert_eq!(
        call::<String>(&mut con, &["DS.GET", "iso", "a"]).unwrap(),
        r#"{"timestamp":"2026-11-21T19:47:48.019Z","deviceId":"a"}"#
    );
    // EPOCH: whole seconds since 1970-01-01 UTC; the device field is the device's id.
    assert_eq!(
        call::<String>(&mut con, &["DS.GET", "epoch", "a"]).unwrap(),
        r#"{"ts":1795290468,"device":"a"}"#
    );
    // Without TS the server clock stamps the record.
    let before = now_ms() / 1000;
    call::<()>(&mut con, &["DS.UPDATE", "epoch", "b", "{}"]).unwrap();
    let stamped = record(&mut con, "epoch", "b").unwrap()["ts"]
        .as_i64()
        .unwrap();
    assert!(
        (before..=before + 2).contains(&stamped),
        "{stamped} vs {before}"
    );
}

#[test]
fn merge_patches_and_replace_omits_nulls() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "m", "ONUPDATE", "MERGE"]).unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.UPDATE",
            "m",
            "d",
            r#"{"a":1,"nested":{"x":1,"y":2},"gone":true}"#,
            "TS",
            "1000",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.UPDATE",
            "m",
            "d",
            r#"{"nested":{"y":3},"gone":null,"b":"two"}"#,
            "TS",
            "2000",
        ],
    )
    .unwrap();
    assert_eq!(
        record(&mut con, "m", "d").unwrap(),
        json!({"a":1,"nested":{"x":1,"y":3},"timestamp":"1970-01-01T00:00:02.000Z","deviceId":"d","b":"two"})
    );
    call::<()>(&mut con, &["DS.CREATE", "r"]).unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.UPDATE",
            "r",
            "d",
            r#"{"a":null,"b":[null,1]}"#,
            "TS",
            "0",
        ],
    )
    .unwrap();
    assert_eq!(
        call::<String>(&mut con, &["DS.GET", "r", "d"]).unwrap(),
        r#"{"b":[null,1],"timestamp":"1970-01-01T00:00:00.000Z","deviceId":"d"}"#
    );
}

#[test]
fn history_and_range() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "h", "HISTORY", "3"]).unwrap();
    for (i, ts) in [1000, 2000, 3000, 4000, 5000].iter().enumerate() {
        call::<()>(
            &mut con,
            &[
                "DS.UPDATE",
                "h",
                "d",
                &format!(r#"{{"i":{i}}}"#),
                "TS",
                &ts.to_string(),
            ],
        )
        .unwrap();
    }
    let all: Vec<(i64, String)> = call(&mut con, &["DS.RANGE", "h", "d", "-", "+"]).unwrap();
    let times: Vec<i64> = all.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(times, vec![3000, 4000, 5000]);
    assert!(all[0].1.starts_with(r#"{"i":2,"#));
    let window: Vec<(i64, String)> = call(
        &mut con,
        &["DS.RANGE", "h", "d", "3500", "5000", "COUNT", "1"],
    )
    .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].0, 4000);
    let none: Vec<(i64, String)> = call(&mut con, &["DS.RANGE", "h", "unknown", "-", "+"]).unwrap();
    assert!(none.is_empty());
    // Without HISTORY the current record is the only one kept.
    call::<()>(&mut con, &["DS.CREATE", "plain"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "plain", "d", "{}", "TS", "1000"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "plain", "d", "{}", "TS", "2000"]).unwrap();
    let current: Vec<(i64, String)> =
        call(&mut con, &["DS.RANGE", "plain", "d", "-", "+"]).unwrap();
    assert_eq!(
        current.iter().map(|(ms, _)| *ms).collect::<Vec<_>>(),
        vec![2000]
    );
}

#[test]
fn mget_del_len_and_devices() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s"]).unwrap();
    for i in 0..250 {
        call::<()>(
            &mut con,
            &[
                "DS.UPDATE",
                "s",
                &format!("sensor-{i:03}"),
                &format!(r#"{{"n":{i}}}"#),
            ],
        )
        .unwrap();
    }
    let records: Vec<Option<String>> = call(
        &mut con,
        &["DS.MGET", "s", "sensor-001", "missing", "sensor-249"],
    )
    .unwrap();
    assert!(records[0].as_ref().unwrap().starts_with(r#"{"n":1,"#));
    assert_eq!(records[1], None);
    assert!(records[2].as_ref().unwrap().starts_with(r#"{"n":249,"#));
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 250);

    // A cursor walk returns every device once.
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    loop {
        let (next, devices): (String, Vec<String>) = call(
            &mut con,
            &["DS.DEVICES", "s", "CURSOR", &cursor, "COUNT", "33"],
        )
        .unwrap();
        assert!(devices.len() <= 33);
        seen.extend(devices);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 250);
    let (next, matched): (String, Vec<String>) = call(
        &mut con,
        &["DS.DEVICES", "s", "MATCH", "sensor-1?0", "COUNT", "1000"],
    )
    .unwrap();
    assert_eq!(next, "0");
    assert_eq!(matched.len(), 10);
    // The default COUNT is 10.
    let (_, first): (String, Vec<String>) = call(&mut con, &["DS.DEVICES", "s"]).unwrap();
    assert_eq!(first.len(), 10);

    assert_eq!(
        call::<i64>(
            &mut con,
            &["DS.DEL", "s", "sensor-000", "sensor-001", "missing"]
        )
        .unwrap(),
        2
    );
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 248);
    assert_eq!(record(&mut con, "s", "sensor-000"), None);
}

#[test]
fn reads_of_a_missing_key() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(
        call::<Option<String>>(&mut con, &["DS.GET", "nope", "d"]).unwrap(),
        None
    );
    assert_eq!(
        call::<Vec<Option<String>>>(&mut con, &["DS.MGET", "nope", "a", "b"]).unwrap(),
        vec![None, None]
    );
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "nope"]).unwrap(), 0);
    assert_eq!(call::<i64>(&mut con, &["DS.DEL", "nope", "d"]).unwrap(), 0);
    let (cursor, devices): (String, Vec<String>) = call(&mut con, &["DS.DEVICES", "nope"]).unwrap();
    assert_eq!((cursor.as_str(), devices.len()), ("0", 0));
    assert_eq!(
        call::<Vec<Value>>(&mut con, &["DS.RANGE", "nope", "d", "-", "+"]).unwrap(),
        vec![]
    );
    assert_eq!(call_err(&mut con, &["DS.INFO", "nope"]), "ERR no such key");
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "nope"]).unwrap(), 0);
}

#[test]
fn info_and_alter() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "TTL", "60", "HISTORY", "5"]).unwrap();
    for ts in [1000, 2000, 3000] {
        call::<()>(
            &mut con,
            &[
                "DS.UPDATE",
                "s",
                "d",
                "{}",
                "TS",
                &(now_ms() - 10_000 + ts).to_string(),
            ],
        )
        .unwrap();
    }
    let info = ds_info(&mut con, "s");
    assert_eq!(info["timestamp-field"], "timestamp");
    assert_eq!(info["device-field"], "deviceId");
    assert_eq!(info["date-format"], "ISO8601");
    assert_eq!(info["ttl"], "60");
    assert_eq!(info["history"], "5");
    assert_eq!(info["on-update"], "REPLACE");
    assert_eq!(info["devices"], "1");
    assert!(info["memory"].parse::<i64>().unwrap() > 100);

    call::<()>(
        &mut con,
        &[
            "DS.ALTER",
            "s",
            "HISTORY",
            "2",
            "ONUPDATE",
            "MERGE",
            "DATEFORMAT",
            "EPOCH",
            "TTL",
            "0",
        ],
    )
    .unwrap();
    let info = ds_info(&mut con, "s");
    assert_eq!(
        (
            info["history"].as_str(),
            info["on-update"].as_str(),
            info["ttl"].as_str()
        ),
        ("2", "MERGE", "0")
    );
    let kept: Vec<(i64, String)> = call(&mut con, &["DS.RANGE", "s", "d", "-", "+"]).unwrap();
    assert_eq!(kept.len(), 2);
    call::<()>(
        &mut con,
        &["DS.UPDATE", "s", "d", r#"{"x":1}"#, "TS", "5000"],
    )
    .unwrap();
    assert_eq!(record(&mut con, "s", "d").unwrap()["timestamp"], json!(5));
}

#[test]
fn type_copy_rename_and_memory_usage() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "HISTORY", "2"]).unwrap();
    let empty: i64 = call(&mut con, &["MEMORY", "USAGE", "s"]).unwrap();
    let payload = json!({"blob": "x".repeat(2000)}).to_string();
    for i in 0..50 {
        call::<()>(&mut con, &["DS.UPDATE", "s", &format!("d{i}"), &payload]).unwrap();
    }
    let full: i64 = call(&mut con, &["MEMORY", "USAGE", "s"]).unwrap();
    assert!(full > empty + 50 * 2000, "{full} vs {empty}");
    assert_eq!(
        call::<String>(&mut con, &["TYPE", "s"]).unwrap(),
        "redsinkDS"
    );

    assert_eq!(call::<i64>(&mut con, &["COPY", "s", "copy"]).unwrap(), 1);
    call::<()>(&mut con, &["DS.DEL", "copy", "d0"]).unwrap();
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 50);
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "copy"]).unwrap(), 49);

    call::<()>(&mut con, &["RENAME", "s", "renamed"]).unwrap();
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "renamed"]).unwrap(), 50);
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "s"]).unwrap(), 0);
    let dump: Vec<u8> = call(&mut con, &["DUMP", "renamed"]).unwrap();
    call::<()>(&mut con, &[&b"RESTORE"[..], b"restored", b"0", &dump]).unwrap();
    let original: String = call(&mut con, &["DS.GET", "renamed", "d7"]).unwrap();
    assert_eq!(
        call::<String>(&mut con, &["DS.GET", "restored", "d7"]).unwrap(),
        original
    );
    assert_eq!(
        call::<i64>(&mut con, &["MOVE", "restored", "1"]).unwrap(),
        1
    );
    call::<()>(&mut con, &["SELECT", "1"]).unwrap();
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "restored"]).unwrap(), 50);
    call::<()>(&mut con, &["SELECT", "0"]).unwrap();
    assert_eq!(
        call::<i64>(&mut con, &["UNLINK", "renamed", "copy"]).unwrap(),
        2
    );
    assert_eq!(call::<i64>(&mut con, &["DBSIZE"]).unwrap(), 0);
}

#[test]
fn updates_emit_keyspace_events() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["CONFIG", "SET", "notify-keyspace-events", "Kd"]).unwrap();
    let mut listener = server.connection();
    let mut pubsub = listener.as_pubsub();
    pubsub.subscribe("__keyspace@0__:telemetry").unwrap();
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    call::<()>(&mut con, &["DS.CREATE", "telemetry"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "telemetry", "d", "{}"]).unwrap();
    let events: Vec<String> = (0..2)
        .map(|_| {
            pubsub
                .get_message()
                .unwrap()
                .get_payload::<String>()
                .unwrap()
        })
        .collect();
    assert_eq!(events, vec!["ds.create", "ds.update"]);
}

#[test]
fn put_stores_a_record_stamped_when_read() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s"]).unwrap();
    assert_eq!(
        call::<i64>(
            &mut con,
            &["DS.PUT", "s", "d", "1234", r#"{ "any" : "object" }"#]
        )
        .unwrap(),
        1
    );
    // Stamps come from the record's time and device when it is read.
    assert_eq!(
        call::<String>(&mut con, &["DS.GET", "s", "d"]).unwrap(),
        r#"{"any":"object","timestamp":"1970-01-01T00:00:01.234Z","deviceId":"d"}"#
    );
    let kept: Vec<(i64, String)> = call(&mut con, &["DS.RANGE", "s", "d", "-", "+"]).unwrap();
    assert_eq!(kept[0].0, 1234);
}
