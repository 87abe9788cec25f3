//! Record TTL: a record past its TTL is invisible to every read at once, and the
//! reclaimer gives its memory back — on the primary, and through replication on replicas.

use redis::{Connection, Value};
use redsink_tests::{call, ds_info, now_ms, snapshot, wait_for_replicas, RedisServer};

/// A number from `DS.INFO key`.
fn info(con: &mut Connection, key: &str, name: &str) -> i64 {
    ds_info(con, key)[name].parse().expect("a number")
}

/// Writes `count` devices whose records are already `age_ms` old, in one transaction
/// (so the reclaimer cannot run in between), and returns the key's memory usage after.
fn write_aged(con: &mut Connection, key: &str, prefix: &str, count: usize, age_ms: i64) -> i64 {
    let ts = (now_ms() - age_ms).to_string();
    let payload = format!(r#"{{"reading":"{}"}}"#, "x".repeat(500));
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..count {
        pipe.cmd("DS.UPDATE")
            .arg(key)
            .arg(format!("{prefix}{i}"))
            .arg(&payload)
            .arg("TS")
            .arg(&ts)
            .ignore();
    }
    pipe.cmd("MEMORY").arg("USAGE").arg(key);
    let (memory,): (i64,) = pipe.query(con).unwrap();
    memory
}

#[test]
fn an_expired_record_is_invisible_to_every_read() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "TTL", "5", "HISTORY", "3"]).unwrap();
    write_aged(&mut con, "s", "old-", 1, 10_000);
    write_aged(&mut con, "s", "new-", 1, 0);
    assert_eq!(
        call::<Option<String>>(&mut con, &["DS.GET", "s", "old-0"]).unwrap(),
        None
    );
    assert!(call::<Option<String>>(&mut con, &["DS.GET", "s", "new-0"])
        .unwrap()
        .is_some());
    let both: Vec<Option<String>> = call(&mut con, &["DS.MGET", "s", "old-0", "new-0"]).unwrap();
    assert!(both[0].is_none() && both[1].is_some());
    let (_, devices): (String, Vec<String>) =
        call(&mut con, &["DS.DEVICES", "s", "COUNT", "100"]).unwrap();
    assert_eq!(devices, vec!["new-0"]);
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 1);
    assert_eq!(
        call::<Vec<Value>>(&mut con, &["DS.RANGE", "s", "old-0", "-", "+"]).unwrap(),
        vec![]
    );
    assert_eq!(info(&mut con, "s", "devices"), 1);
    // Deleting an expired record does not count it as removed.
    assert_eq!(call::<i64>(&mut con, &["DS.DEL", "s", "old-0"]).unwrap(), 0);
}

#[test]
fn a_record_expires_while_nobody_writes() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "TTL", "1"]).unwrap();
    call::<()>(&mut con, &["DS.UPDATE", "s", "d", "{}"]).unwrap();
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 1);
    server.wait_until("the record expired", |con| {
        Ok(call::<Option<String>>(con, &["DS.GET", "s", "d"])?.is_none())
    });
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 0);
}

#[test]
fn memory_of_expired_records_comes_back() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "s", "TTL", "3600"]).unwrap();
    let empty: i64 = call(&mut con, &["MEMORY", "USAGE", "s"]).unwrap();
    let with_live = write_aged(&mut con, "s", "live-", 10, 0);
    let full = write_aged(&mut con, "s", "old-", 3000, 7_200_000);
    assert!(full > with_live + 3000 * 500, "{full} {with_live}");
    server.wait_until("expired records reclaimed", |con| {
        Ok(info(con, "s", "stored-devices") == 10)
    });
    let after: i64 = call(&mut con, &["MEMORY", "USAGE", "s"]).unwrap();
    assert_eq!(after, with_live);
    assert!(after > empty);
    assert_eq!(call::<i64>(&mut con, &["DS.LEN", "s"]).unwrap(), 10);
}

#[test]
fn reclaim_reaches_every_database_and_the_replicas() {
    let primary = RedisServer::start();
    let replica = primary.replica();
    let mut con = primary.connection();
    call::<()>(&mut con, &["SELECT", "3"]).unwrap();
    call::<()>(&mut con, &["DS.CREATE", "s", "TTL", "60"]).unwrap();
    write_aged(&mut con, "s", "old-", 500, 120_000);
    write_aged(&mut con, "s", "live-", 5, 0);
    // Streams without TTL are left alone.
    call::<()>(&mut con, &["DS.CREATE", "forever"]).unwrap();
    write_aged(&mut con, "forever", "d", 5, 120_000);
    primary.wait_until("expired records reclaimed in db 3", |con| {
        call::<()>(con, &["SELECT", "3"])?;
        Ok(info(con, "s", "stored-devices") == 5)
    });
    assert_eq!(info(&mut con, "forever", "stored-devices"), 5);
    wait_for_replicas(&mut con, 1);
    let mut replica_con = replica.connection();
    call::<()>(&mut replica_con, &["SELECT", "3"]).unwrap();
    assert_eq!(info(&mut replica_con, "s", "stored-devices"), 5);
    assert_eq!(snapshot(&mut replica_con), snapshot(&mut con));
}

#[test]
fn an_update_after_expiry_starts_afresh_everywhere() {
    let primary = RedisServer::start();
    let replica = primary.replica();
    let mut con = primary.connection();
    call::<()>(
        &mut con,
        &[
            "DS.CREATE",
            "s",
            "TTL",
            "60",
            "ONUPDATE",
            "MERGE",
            "HISTORY",
            "5",
        ],
    )
    .unwrap();
    call::<()>(
        &mut con,
        &[
            "DS.UPDATE",
            "s",
            "d",
            r#"{"stale":1}"#,
            "TS",
            &(now_ms() - 120_000).to_string(),
        ],
    )
    .unwrap();
    let created: i64 = call(&mut con, &["DS.UPDATE", "s", "d", r#"{"fresh":1}"#]).unwrap();
    assert_eq!(created, 1);
    let record: String = call(&mut con, &["DS.GET", "s", "d"]).unwrap();
    assert!(!record.contains("stale"), "{record}");
    let kept: Vec<(i64, String)> = call(&mut con, &["DS.RANGE", "s", "d", "-", "+"]).unwrap();
    assert_eq!(kept.len(), 1);
    wait_for_replicas(&mut con, 1);
    assert_eq!(snapshot(&mut replica.connection()), snapshot(&mut con));
}
