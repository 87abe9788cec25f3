//! redis-server killed and restarted (AOF on) while the worker is busy: the worker
//! reconnects by itself and finishes; nothing is lost or duplicated.

use std::time::{Duration, Instant};

use redsink_tests::{call, Options, RedisServer};

mod common;
use common::{Worker, SEQ_STREAM_JOB};

const EVENTS: usize = 10_000;

fn entries_read(con: &mut redis::Connection) -> i64 {
    let groups: Vec<Vec<redis::Value>> =
        call(con, &["XINFO", "GROUPS", "data:chinook.public.invoice"]).unwrap_or_default();
    groups
        .first()
        .and_then(|group| {
            group
                .chunks(2)
                .find(|pair| pair[0] == redis::Value::BulkString(b"entries-read".to_vec()))
                .and_then(|pair| match pair[1] {
                    redis::Value::Int(read) => Some(read),
                    _ => None,
                })
        })
        .unwrap_or(0)
}

#[test]
fn the_worker_reconnects_after_a_redis_restart_and_finishes() {
    let mut server = RedisServer::with(
        Options::default()
            .config("appendonly", "yes")
            .config("appendfsync", "always"),
    );
    let mut con = server.connection();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &seq in chunk {
            let event = format!(
                r#"{{"before":null,"after":{{"InvoiceId":{seq},"Seq":{seq}}},"source":{{}},"op":"c"}}"#
            );
            pipe.cmd("XADD")
                .arg("data:chinook.public.invoice")
                .arg("*")
                .arg(format!(r#"{{"InvoiceId":{seq}}}"#))
                .arg(event)
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    let worker = Worker::with_processors(
        &server,
        &[SEQ_STREAM_JOB],
        // One delivery before the dead-letter stream: an outage must not count against the
        // entries in flight.
        "{read_batch_size: 50, block_ms: 100, reclaim_idle_ms: 1000, max_deliveries: 1}",
    );
    // Kill Redis while the worker is part way through.
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries_read(&mut con) < 500 {
        assert!(
            Instant::now() < deadline,
            "the worker did not start\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let read_before = entries_read(&mut con);
    assert!(
        read_before < EVENTS as i64,
        "the restart must come mid-flow"
    );
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    server.restart();

    server.wait_until(&format!("every event processed\n{}", worker.log()), |con| {
        let pending: Vec<redis::Value> =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(pending.first() == Some(&redis::Value::Int(0)) && entries_read(con) == EVENTS as i64)
    });
    let mut con = server.connection();
    let messages: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let seqs: Vec<usize> = messages
        .iter()
        .map(|(_, fields)| fields[3].parse().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..EVENTS).collect::<Vec<_>>(),
        "every change once, in order"
    );
    assert!(
        worker.log().contains("retrying"),
        "the worker saw Redis go away\n{}",
        worker.log()
    );
    assert_eq!(
        call::<i64>(&mut con, &["EXISTS", "dlq:data:chinook.public.invoice"]).unwrap(),
        0
    );
}
