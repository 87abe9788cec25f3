//! At least once, nothing duplicated: 20,000 change events while the worker is killed
//! with SIGKILL at random moments; after it finishes, every hash equals its row's last
//! state and the stream output holds exactly one message per change, in order.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redsink_tests::{call, RedisServer};

mod common;
use common::{Worker, INVOICE_HASH_JOB, SEQ_STREAM_JOB};

const EVENTS: usize = 20_000;
const INVOICES: u32 = 2_000;

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let mut rng = StdRng::seed_from_u64(20_000);
    // (op, invoice, seq): creates, then updates, then some deletes.
    let mut events: Vec<(&str, u32)> = (1..=INVOICES).map(|invoice| ("c", invoice)).collect();
    let deletes: Vec<u32> = (1..=INVOICES).filter(|invoice| invoice % 10 == 0).collect();
    while events.len() < EVENTS - deletes.len() {
        events.push(("u", rng.random_range(1..=INVOICES)));
    }
    events.extend(deletes.iter().map(|&invoice| ("d", invoice)));
    let mut expected: BTreeMap<u32, Option<usize>> = BTreeMap::new();
    for (seq, &(op, invoice)) in events.iter().enumerate() {
        expected.insert(invoice, (op != "d").then_some(seq));
    }

    let mut worker = Worker::with_processors(
        &server,
        &[SEQ_STREAM_JOB, INVOICE_HASH_JOB],
        "{read_batch_size: 200, block_ms: 100, reclaim_idle_ms: 1000}",
    );
    // The events flow in while the worker is killed and restarted.
    let url = server.url();
    let feeder = std::thread::spawn(move || {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        for chunk in events.iter().enumerate().collect::<Vec<_>>().chunks(250) {
            let mut pipe = redis::pipe();
            for &(seq, &(op, invoice)) in chunk {
                let row = format!(
                    r#"{{"InvoiceId":{invoice},"Seq":{seq},"Total":{}.5}}"#,
                    seq % 97
                );
                let (before, after) = if op == "d" {
                    (row.as_str(), "null")
                } else {
                    ("null", row.as_str())
                };
                let event =
                    format!(r#"{{"before":{before},"after":{after},"source":{{}},"op":"{op}"}}"#);
                pipe.cmd("XADD")
                    .arg("data:chinook.public.invoice")
                    .arg("*")
                    .arg(format!(r#"{{"InvoiceId":{invoice}}}"#))
                    .arg(event)
                    .ignore();
            }
            pipe.query::<()>(&mut con).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    });
    let mut interrupted = 0;
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(50..300)));
        worker.kill();
        let read = entries_read(&mut con);
        if read > 0 && read < EVENTS as i64 {
            interrupted += 1;
        }
        worker.spawn();
    }
    feeder.join().unwrap();
    assert!(
        interrupted >= 3,
        "only {interrupted} kills landed while events were flowing"
    );
    server.wait_until(&format!("every event processed\n{}", worker.log()), |con| {
        let pending: Vec<redis::Value> =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(pending.first() == Some(&redis::Value::Int(0)) && entries_read(con) == EVENTS as i64)
    });

    // The stream: exactly one message per change, in the order of the changes.
    let messages: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let seqs: Vec<usize> = messages
        .iter()
        .map(|(_, fields)| fields[3].parse().unwrap())
        .collect();
    assert_eq!(seqs.len(), EVENTS, "no message lost or duplicated");
    assert!(
        seqs.iter().enumerate().all(|(i, &seq)| i == seq),
        "in order"
    );

    // The hashes: each invoice's last state; deleted ones gone.
    for (invoice, last) in &expected {
        let fields: Vec<String> =
            call(&mut con, &["HGETALL", &format!("invoice:{invoice}")]).unwrap();
        match last {
            Some(seq) => assert_eq!(
                fields,
                [
                    "InvoiceId".to_owned(),
                    invoice.to_string(),
                    "Seq".to_owned(),
                    seq.to_string(),
                    "Total".to_owned(),
                    format!("{}.5", seq % 97)
                ],
                "invoice {invoice}"
            ),
            None => assert!(fields.is_empty(), "invoice {invoice} was deleted"),
        }
    }
}

/// How many entries the group has read from the source stream (XINFO GROUPS `entries-read`).
fn entries_read(con: &mut redis::Connection) -> i64 {
    let groups: Vec<Vec<redis::Value>> =
        call(con, &["XINFO", "GROUPS", "data:chinook.public.invoice"]).unwrap_or_default();
    groups
        .first()
        .and_then(|group| {
            group
                .chunks(2)
                .find(|pair| pair[0] == redis::Value::BulkString(b"entries-read".to_vec()))
                .map(|pair| pair[1].clone())
        })
        .and_then(|value| match value {
            redis::Value::Int(read) => Some(read),
            _ => None,
        })
        .unwrap_or(0)
}
