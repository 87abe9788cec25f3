//! The worker: how fast it drains a backlog of Debezium events into hashes, with the
//! module and without it (plain commands in MULTI/EXEC), and how long an event takes from
//! XADD to its hash being written at fixed rates.
//!
//! The release-built worker runs on its own with a hash job; the events are Debezium
//! Server's Redis format (key JSON → change event JSON) for 100,000 invoices.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::Connection;
use redsink_tests::{call, Options, RedisServer};

use crate::commands::server_cpu_us;
use crate::process::WorkerProcess;

const BACKLOG: usize = 1_000_000;
/// Drains of each kind, interleaved: one drain is a single run of ten seconds or so.
const DRAIN_ROUNDS: usize = 3;
const INVOICES: usize = 100_000;
const STREAM: &str = "data:chinook.public.invoice";
/// The lag runs' own stream and job: every event its own key.
const LAG_STREAM: &str = "data:chinook.public.lag";
const LAG_RATES: [u64; 2] = [5_000, 20_000];
const LAG_SECONDS: u64 = 5;

const HASH_JOB: &str = r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['invoice:', InvoiceId])", language: jmespath}
"#;

/// A Debezium change event of invoice `invoice`, as the Redis sink writes it.
fn event(invoice: usize, sequence: usize) -> (String, String) {
    let key = format!(r#"{{"InvoiceId":{invoice}}}"#);
    let value = format!(
        r#"{{"before":null,"after":{{"InvoiceId":{invoice},"CustomerId":{},"InvoiceDate":"2021-01-01T10:00:00Z","BillingAddress":"Theodor-Heuss-Strasse 34","BillingCity":"Stuttgart","BillingState":null,"BillingCountry":"Germany","BillingPostalCode":"70174","Total":"{}.{:02}","Seq":{sequence}}},"source":{{"lsn":{}}},"op":"u","ts_ms":1700000000000}}"#,
        invoice % 59,
        invoice % 25,
        sequence % 100,
        sequence + 1
    );
    (key, value)
}

/// Runs the drain and the lag measurements; prints the Markdown section.
pub fn run() {
    println!(
        "## Worker: draining a backlog, and lag at a fixed rate\n\n\
         The release-built worker with one hash job (`concat(['invoice:', InvoiceId])`) reads \
         Debezium events (about 330 bytes, 100,000 invoices) from one stream with default \
         settings (`read_batch_size: 2000`); Redis runs on CPU {SERVER_CPU}, the worker on CPU \
         {WORKER_CPU}. Drain: {BACKLOG} events already in the stream, \
         from the worker's start to every event acknowledged, {DRAIN_ROUNDS} times each way, \
         interleaved. Lag: events XADDed at a fixed \
         rate for {LAG_SECONDS} s, each timed from its XADD to the keyspace notification of its \
         hash (every event has its own invoice).\n"
    );
    println!(
        "| worker writes with | events | events/s (median of {DRAIN_ROUNDS}) | spread | \
         Redis CPU µs/event | worker CPU µs/event |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let mut drains = [Vec::new(), Vec::new()];
    for _ in 0..DRAIN_ROUNDS {
        for (module, drains) in [true, false].into_iter().zip(drains.iter_mut()) {
            drains.push(drain(module));
        }
    }
    for (module, drains) in [true, false].into_iter().zip(drains) {
        // Lowest, median and highest over the drains.
        let spread = |value: fn(&Drain) -> f64| {
            let mut values: Vec<f64> = drains.iter().map(value).collect();
            values.sort_by(f64::total_cmp);
            (
                values[0],
                values[values.len() / 2],
                values[values.len() - 1],
            )
        };
        let (slowest, rate, fastest) = spread(|drain| drain.events_per_sec);
        println!(
            "| {} | {BACKLOG} | {rate:.0} | {slowest:.0}–{fastest:.0} | {:.2} | {:.2} |",
            if module {
                "the module (SINK.HASH … VERSION)"
            } else {
                "plain commands (MULTI DEL HSET EXEC an event, pipelined)"
            },
            spread(|drain| drain.server_us_per_event).1,
            spread(|drain| drain.worker_us_per_event).1,
        );
    }
    println!("\n| events/s offered | events | lag p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|");
    for rate in LAG_RATES {
        let mut lags = lag(rate);
        lags.sort_by(f64::total_cmp);
        let at = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
        println!(
            "| {rate} | {} | {:.2} | {:.2} | {:.2} |",
            lags.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    println!();
}

/// The CPUs of Redis and of the worker (on a one-CPU machine the second pinning fails
/// and the worker runs unpinned).
const SERVER_CPU: usize = 0;
const WORKER_CPU: usize = 1;

/// A server on its own CPU: with the module or without it; hash keyspace events on for the
/// lag runs, which time events by them (off, as Redis's default, for the drains).
fn server(module: bool, keyspace_events: bool) -> RedisServer {
    let mut options = Options::default()
        .config("save", "")
        .config("appendonly", "no")
        .on_cpu(SERVER_CPU);
    if keyspace_events {
        options = options.config("notify-keyspace-events", "Kh");
    }
    RedisServer::with(if module {
        options
    } else {
        options.without_module()
    })
}

/// One drain of `BACKLOG` events.
struct Drain {
    events_per_sec: f64,
    server_us_per_event: f64,
    worker_us_per_event: f64,
}

fn drain(module: bool) -> Drain {
    let redis = server(module, false);
    let mut con = redis.connection();
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for &sequence in chunk {
            let (key, value) = event(sequence % INVOICES, sequence);
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg(key)
                .arg(value)
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    let server_cpu_before = server_cpu_us(&mut con);
    let started = Instant::now();
    let worker = start_worker(&redis, STREAM, HASH_JOB);
    let deadline = started + Duration::from_secs(600);
    loop {
        if let Some((lag, pending)) = group_state(&mut con, STREAM) {
            if lag == 0 && pending == 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "drain timed out:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu_us = server_cpu_us(&mut con) - server_cpu_before;
    let worker_cpu_us = worker.cpu_us();
    let written: i64 = call(&mut con, &["EXISTS", "invoice:99999"]).unwrap();
    assert_eq!(written, 1, "the last invoice was written");
    Drain {
        events_per_sec: BACKLOG as f64 / seconds,
        server_us_per_event: server_cpu_us / BACKLOG as f64,
        worker_us_per_event: worker_cpu_us / BACKLOG as f64,
    }
}

/// The group's lag and pending count (XINFO GROUPS), once it exists.
fn group_state(con: &mut Connection, stream: &str) -> Option<(i64, i64)> {
    let groups: Vec<HashMap<String, redis::Value>> =
        call(con, &["XINFO", "GROUPS", stream]).ok()?;
    let group = groups.first()?;
    let number = |name: &str| match group.get(name) {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    Some((number("lag")?, number("pending")?))
}

/// Milliseconds from XADD to the hash's keyspace notification, per event.
fn lag(rate: u64) -> Vec<f64> {
    let redis = server(true, true);
    let lag_job = HASH_JOB
        .replace("table: invoice", "table: lag")
        .replace("'invoice:'", "'lag:'");
    let worker = start_worker(&redis, LAG_STREAM, &lag_job);
    let mut con = redis.connection();
    // The worker creates the group when it starts reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    while group_state(&mut con, LAG_STREAM).is_none() {
        assert!(Instant::now() < deadline, "{}", worker.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = (rate * LAG_SECONDS) as usize;
    let listener = {
        let url = redis.url();
        std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut con = client.get_connection().unwrap();
            let mut pubsub = con.as_pubsub();
            pubsub.psubscribe("__keyspace@0__:lag:*").unwrap();
            pubsub
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut seen = HashMap::with_capacity(total);
            while seen.len() < total {
                let Ok(message) = pubsub.get_message() else {
                    break;
                };
                let channel = message.get_channel_name().to_owned();
                if let Some(number) = channel
                    .rsplit(':')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    seen.entry(number).or_insert_with(Instant::now);
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut sent = Vec::with_capacity(total);
    let started = Instant::now();
    let per_tick = (rate / 1000).max(1) as usize;
    let mut next = 0;
    while next < total {
        let due = started + Duration::from_micros((next as u64 * 1_000_000) / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut pipe = redis::pipe();
        let batch = per_tick.min(total - next);
        for n in next..next + batch {
            let (key, value) = event(n, n);
            pipe.cmd("XADD")
                .arg(LAG_STREAM)
                .arg("*")
                .arg(key)
                .arg(value)
                .ignore();
        }
        let at = Instant::now();
        pipe.query::<()>(&mut con).unwrap();
        sent.extend(std::iter::repeat_n(at, batch));
        next += batch;
    }
    let seen = listener.join().unwrap();
    drop(worker);
    assert!(
        seen.len() * 100 >= total * 99,
        "only {} of {total} events were seen written",
        seen.len()
    );
    seen.iter()
        .filter_map(|(&n, at)| Some(at.checked_duration_since(*sent.get(n)?)?.as_secs_f64() * 1e3))
        .collect()
}

/// The worker on `job` over `stream` of `redis`, with default settings.
fn start_worker(redis: &RedisServer, stream: &str, job: &str) -> WorkerProcess {
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: [\"{stream}\"]}}\n\
         jobs: ./jobs\n",
        redis.port()
    );
    WorkerProcess::start(&config, &[("job.yaml", job)], Some(WORKER_CPU))
}
