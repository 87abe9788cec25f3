//! Two workers share one consumer group while events flow; one is killed for good. The
//! other takes over its pending entries, and every change arrives exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use redsink_tests::{call, RedisServer};

mod common;
use common::{Worker, INVOICE_HASH_JOB, SEQ_STREAM_JOB};

const EVENTS: usize = 6_000;

#[test]
fn the_survivor_takes_over_and_everything_arrives_once() {
    let server = RedisServer::start();
    // The stream and group exist before the workers start, and the feeder waits until both
    // read it: a worker that found no stream would look again only 2 s later, by when the
    // other could have drained everything and A would never hold pending entries.
    let mut con = server.connection();
    let _: () = call(
        &mut con,
        &[
            "XGROUP",
            "CREATE",
            "data:chinook.public.invoice",
            "redsink",
            "0",
            "MKSTREAM",
        ],
    )
    .unwrap();
    let processors = "{read_batch_size: 100, block_ms: 50, reclaim_idle_ms: 500}";
    let mut doomed = Worker::named(
        &server,
        &[SEQ_STREAM_JOB, INVOICE_HASH_JOB],
        processors,
        "worker-a",
    );
    let survivor = Worker::named(
        &server,
        &[SEQ_STREAM_JOB, INVOICE_HASH_JOB],
        processors,
        "worker-b",
    );
    server.wait_until("both workers reading", |con| {
        let consumers: Vec<redis::Value> = call(
            con,
            &[
                "XINFO",
                "CONSUMERS",
                "data:chinook.public.invoice",
                "redsink",
            ],
        )?;
        Ok(consumers.len() == 2)
    });
    let url = server.url();
    let feeder = std::thread::spawn(move || {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(200) {
            let mut pipe = redis::pipe();
            for &seq in chunk {
                let invoice = seq % 500;
                let event = format!(
                    r#"{{"before":null,"after":{{"InvoiceId":{invoice},"Seq":{seq}}},"source":{{}},"op":"u"}}"#
                );
                pipe.cmd("XADD")
                    .arg("data:chinook.public.invoice")
                    .arg("*")
                    .arg(format!(r#"{{"InvoiceId":{invoice}}}"#))
                    .arg(event)
                    .ignore();
            }
            pipe.query::<()>(&mut con).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Kill worker A while it holds entries it read and has not acknowledged: freeze it
    // when it has some, check that it still does, then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "worker A never held pending entries\n{}",
            doomed.log()
        );
        if holds_pending(&mut con, "worker-a") {
            doomed.signal("STOP");
            if holds_pending(&mut con, "worker-a") {
                break;
            }
            doomed.signal("CONT");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    doomed.kill();
    feeder.join().unwrap();
    server.wait_until(&format!("every event written\n{}", survivor.log()), |con| {
        let pending: Vec<redis::Value> =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(pending.first() == Some(&redis::Value::Int(0))
            && call::<i64>(con, &["XLEN", "invoice:events"])? >= EVENTS as i64)
    });
    // Both consumers did work, and the kill left entries for the survivor to take over.
    let consumers: Vec<Vec<redis::Value>> = call(
        &mut con,
        &[
            "XINFO",
            "CONSUMERS",
            "data:chinook.public.invoice",
            "redsink",
        ],
    )
    .unwrap();
    assert_eq!(consumers.len(), 2);
    assert!(
        survivor.log().contains("took over idle entries"),
        "{}",
        survivor.log()
    );

    let messages: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let seqs: Vec<usize> = messages
        .iter()
        .map(|(_, fields)| fields[3].parse().unwrap())
        .collect();
    let unique: BTreeSet<usize> = seqs.iter().copied().collect();
    assert_eq!(seqs.len(), EVENTS, "no duplicate");
    assert_eq!(unique, (0..EVENTS).collect(), "nothing lost");
    // Each invoice holds its last change, whatever order the workers wrote in.
    for invoice in [0, 1, 250, 499] {
        let last = (0..EVENTS).rev().find(|seq| seq % 500 == invoice).unwrap();
        let seq: String = call(&mut con, &["HGET", &format!("invoice:{invoice}"), "Seq"]).unwrap();
        assert_eq!(seq, last.to_string(), "invoice {invoice}");
    }
}

/// Whether `consumer` has entries it read and has not acknowledged.
fn holds_pending(con: &mut redis::Connection, consumer: &str) -> bool {
    let pending: Vec<redis::Value> = call(
        con,
        &[
            "XPENDING",
            "data:chinook.public.invoice",
            "redsink",
            "-",
            "+",
            "1",
            consumer,
        ],
    )
    .unwrap_or_default();
    !pending.is_empty()
}
