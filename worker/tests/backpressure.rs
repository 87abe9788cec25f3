//! Back-pressure: a Redis that refuses writes for its own state (here out of memory) is
//! waited for, not blamed on the events — they are never counted as failed deliveries or
//! dead-lettered, and once Redis takes writes again every event is written once.

use std::time::Duration;

use redsink_tests::{call, free_port, RedisServer};

mod common;
use common::{add_invoice_event, scrape_metrics, Worker, INVOICE_HASH_JOB};

const EVENTS: u32 = 50;

/// The value of `metric` with `label` in a scrape, if present.
fn metric(page: &str, metric: &str, label: &str) -> Option<f64> {
    page.lines()
        .find(|line| line.starts_with(metric) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[test]
fn out_of_memory_pauses_the_writes_and_counts_nothing_against_the_events() {
    // The streams on one server, the writes going to another that runs out of memory.
    let streams = RedisServer::start();
    let target = RedisServer::start();
    let mut target_con = target.connection();
    call::<String>(&mut target_con, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let port = free_port();
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         \x20 streams: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: streams, streams: \"data:*\"}}\n\
         processors: {{block_ms: 100, reclaim_idle_ms: 300, max_deliveries: 2}}\n\
         metrics: {{address: \"127.0.0.1:{port}\"}}\njobs: ./jobs\n",
        target.port(),
        streams.port()
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    worker.wait_until(&target, "the metrics", |_| {
        Ok(worker.log().contains("serving Prometheus metrics"))
    });
    let mut streams_con = streams.connection();
    for invoice in 1..=EVENTS {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"Total":"{invoice}.00"}},"op":"c","source":{{"lsn":{invoice}}}}}"#
        );
        add_invoice_event(&mut streams_con, invoice, &event);
    }
    let source = r#"source="data:chinook.public.invoice""#;
    worker.wait_until(&target, "the pause", |_| {
        Ok(metric(&scrape_metrics(port), "redsink_backpressure_paused", source) == Some(1.0))
    });
    // Paused for a while: each event delivered once, none failed, none dead-lettered.
    std::thread::sleep(Duration::from_millis(1500));
    let pending: Vec<(String, String, i64, i64)> = call(
        &mut streams_con,
        &[
            "XPENDING",
            "data:chinook.public.invoice",
            "redsink",
            "-",
            "+",
            "1000",
        ],
    )
    .unwrap();
    assert!(!pending.is_empty(), "{}", worker.log());
    assert!(
        pending.iter().all(|(_, _, _, delivered)| *delivered == 1),
        "delivered again while paused: {pending:?}\n{}",
        worker.log()
    );
    let page = scrape_metrics(port);
    assert_eq!(
        metric(&page, "redsink_events_failed_total", source).unwrap_or(0.0),
        0.0,
        "{page}"
    );
    assert!(
        worker.log().contains("Redis refuses writes"),
        "{}",
        worker.log()
    );
    // The entries waiting show as the age of the oldest not yet finished.
    worker.wait_until(&target, "the oldest entry's age", |_| {
        Ok(metric(
            &scrape_metrics(port),
            "redsink_stream_oldest_unprocessed_seconds",
            r#"stream="data:chinook.public.invoice""#,
        )
        .is_some_and(|age| age > 0.5))
    });

    call::<String>(&mut target_con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    worker.wait_until(&target, "every event written", |con| {
        Ok(
            call::<i64>(con, &["EXISTS", &format!("invoice:{EVENTS}")])? == 1
                && call::<i64>(con, &["DBSIZE"])? >= EVENTS as i64,
        )
    });
    for invoice in 1..=EVENTS {
        let total: String = call(
            &mut target_con,
            &["HGET", &format!("invoice:{invoice}"), "Total"],
        )
        .unwrap();
        assert_eq!(total, format!("{invoice}.00"));
    }
    assert_eq!(
        call::<i64>(
            &mut target_con,
            &["EXISTS", "dlq:data:chinook.public.invoice"]
        )
        .unwrap(),
        0
    );
    worker.wait_until(&streams, "all acknowledged", |con| {
        let summary: (i64, redis::Value, redis::Value, redis::Value) =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(summary.0 == 0)
    });
    assert_eq!(
        metric(&scrape_metrics(port), "redsink_backpressure_paused", source),
        Some(0.0)
    );
}

/// `max_memory_percent`: with the target over that share of its maxmemory, batches wait
/// (shown as paused) and write nothing; with room again, every event is written.
#[test]
fn writes_wait_for_headroom_under_max_memory_percent() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let info: String = call(&mut con, &["INFO", "memory"]).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Used is about half of maxmemory: over 40 %, well under 100 % (no OOM).
    call::<String>(
        &mut con,
        &["CONFIG", "SET", "maxmemory", &(used * 2).to_string()],
    )
    .unwrap();
    let port = free_port();
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\"}}\n\
         processors: {{block_ms: 100, max_memory_percent: 40}}\n\
         metrics: {{address: \"127.0.0.1:{port}\"}}\njobs: ./jobs\n",
        redis.port()
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    worker.wait_until(&redis, "the metrics", |_| {
        Ok(worker.log().contains("serving Prometheus metrics"))
    });
    let event =
        r#"{"before":null,"after":{"InvoiceId":1,"Total":"1.00"},"op":"c","source":{"lsn":1}}"#;
    add_invoice_event(&mut con, 1, event);
    let source = r#"source="data:chinook.public.invoice""#;
    worker.wait_until(&redis, "the pause", |_| {
        Ok(metric(&scrape_metrics(port), "redsink_backpressure_paused", source) == Some(1.0))
    });
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "invoice:1"]).unwrap(), 0);
    assert!(
        worker.log().contains("max_memory_percent"),
        "{}",
        worker.log()
    );
    call::<String>(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    worker.wait_until(&redis, "the event written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:1"])? == 1)
    });
}

/// A change whose lookup leaves it unplannable fails as it should even when Redis refused
/// an earlier change of its batch: the writes sent again must not count it as written.
#[test]
fn a_change_that_failed_its_lookup_is_not_acknowledged_by_a_resend() {
    let streams = RedisServer::start();
    let target = RedisServer::start();
    let mut target_con = target.connection();
    call::<String>(&mut target_con, &["SET", "owner:1", "ann"]).unwrap();
    call::<String>(&mut target_con, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         \x20 streams: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: streams, streams: \"data:*\"}}\n\
         processors: {{block_ms: 100, reclaim_idle_ms: 300, max_deliveries: 2}}\n\
         jobs: ./jobs\n",
        target.port(),
        streams.port()
    );
    // The key is the owner the lookup finds: invoice 2 has none, so no key.
    let job = r#"source: {server_name: chinook, schema: public, table: invoice}
transform:
  - uses: redis.lookup
    with:
      connection: target
      cmd: GET
      args: ["concat(['owner:', InvoiceId])"]
      language: jmespath
      field: owner
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['invoice:', owner])", language: jmespath}
"#;
    let mut streams_con = streams.connection();
    for invoice in 1..=2 {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice}}},"op":"c","source":{{"lsn":{invoice}}}}}"#
        );
        add_invoice_event(&mut streams_con, invoice, &event);
    }
    let worker = Worker::from_config(&config, &[job]);
    worker.wait_until(&target, "the pause", |_| {
        Ok(worker.log().contains("Redis refuses writes"))
    });
    call::<String>(&mut target_con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    worker.wait_until(&target, "invoice 1 written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:ann"])? == 1)
    });
    // Invoice 2 fails (twice: max_deliveries) and is dead-lettered, not acknowledged.
    worker.wait_until(&target, "invoice 2 dead-lettered", |con| {
        Ok(call::<i64>(con, &["XLEN", "dlq:data:chinook.public.invoice"])? == 1)
    });
}
