//! `wait_replicas`: a batch counts as done (is acknowledged) only once that many replicas
//! confirmed its writes, so that a failover right after the acknowledgement loses nothing;
//! when they do not confirm in time, `on_wait_timeout` says what happens.

use redis::{Connection, Value};
use redsink_tests::{call, snapshot, RedisServer};

mod common;
use common::{acknowledged, add_invoice_event, Worker, INVOICE_HASH_JOB};

const STREAM: &str = "data:chinook.public.invoice";

fn add_invoices(con: &mut Connection, invoices: std::ops::RangeInclusive<u32>) {
    for invoice in invoices {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"Total":{invoice}.5}},"source":{{"table":"invoice"}},"op":"c"}}"#
        );
        add_invoice_event(con, invoice, &event);
    }
}

/// Entries read by the group and not acknowledged, and entries read at all.
fn pending_and_read(con: &mut Connection) -> redis::RedisResult<(i64, i64)> {
    let pending: Vec<Value> = call(con, &["XPENDING", STREAM, "redsink"])?;
    let pending = match pending.first() {
        Some(Value::Int(count)) => *count,
        _ => 0,
    };
    Ok((pending, acknowledged(con, STREAM)? + pending))
}

#[test]
fn nothing_is_acknowledged_before_the_replica_has_it() {
    let primary = RedisServer::start();
    let replica = primary.replica();
    let mut con = primary.connection();
    add_invoices(&mut con, 1..=200);
    let worker = Worker::with_processors(
        &primary,
        &[INVOICE_HASH_JOB],
        "{block_ms: 100, read_batch_size: 20, wait_replicas: 1, wait_timeout_ms: 5000}",
    );
    worker.wait_until(&primary, "every batch acknowledged", |con| {
        Ok(pending_and_read(con)? == (0, 200))
    });
    // Acknowledged: so the replica has it, without waiting for it any longer.
    let written = |server: &RedisServer| -> Vec<_> {
        snapshot(&mut server.connection())
            .into_iter()
            .filter(|(key, _)| key.starts_with(b"invoice:"))
            .collect()
    };
    assert_eq!(written(&replica).len(), 200);
    assert_eq!(written(&replica), written(&primary));
}

#[test]
fn unconfirmed_batches_are_retried_or_counted_as_configured() {
    let primary = RedisServer::start();
    let _replica = primary.replica();
    let mut con = primary.connection();
    add_invoices(&mut con, 1..=10);
    // Two replicas wanted, one there: never confirmed in time.
    let retrying = Worker::with_processors(
        &primary,
        &[INVOICE_HASH_JOB],
        "{block_ms: 100, wait_replicas: 2, wait_timeout_ms: 200}",
    );
    retrying.wait_until(&primary, "the batch written, not acknowledged", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:10"])? == 1
            && retrying.log().contains("fewer than 2 replicas confirmed the batch's writes within 200 ms: it is not acknowledged, and will be written again"))
    });
    assert_eq!(pending_and_read(&mut con).unwrap(), (10, 10));
    drop(retrying);

    let going_on = Worker::with_processors(
        &primary,
        &[INVOICE_HASH_JOB],
        "{block_ms: 100, reclaim_idle_ms: 300, wait_replicas: 2, wait_timeout_ms: 200, on_wait_timeout: continue}",
    );
    going_on.wait_until(&primary, "acknowledged all the same", |con| {
        Ok(pending_and_read(con)? == (0, 10))
    });
    assert!(
        going_on
            .log()
            .contains("acknowledged all the same (on_wait_timeout: continue)"),
        "{}",
        going_on.log()
    );
}
