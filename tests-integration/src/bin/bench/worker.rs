//! The worker: how fast it drains a backlog of Debezium events into hashes, with the
//! module and without it (plain commands in MULTI/EXEC), and how long an event takes from
//! XADD to its hash being written at fixed rates.
//!
//! The release-built worker runs on its own with a hash job; the events are Debezium
//! Server's Redis format (key JSON → change event JSON) for 100,000 invoices.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use redis::Connection;
use redsink_tests::{call, Options, RedisCluster, RedisServer};

use crate::commands::server_cpu_us;
use crate::percentile;
use crate::process::WorkerProcess;

const BACKLOG: usize = 1_000_000;
/// Events with their schema envelope are six times larger: fewer of them.
const ENVELOPED_BACKLOG: usize = 250_000;
/// Drains of each kind, interleaved: one drain is a single run of ten seconds or so.
const DRAIN_ROUNDS: usize = 3;
const INVOICES: usize = 100_000;
const STREAM: &str = "data:chinook.public.invoice";
/// The lag runs' own stream and job: every event its own key.
const LAG_STREAM: &str = "data:chinook.public.lag";
const LAG_RATES: [u64; 2] = [5_000, 20_000];
const LAG_SECONDS: u64 = 5;

/// The same job with its key in SQL, run by SQLite (RDI's `language: sql`).
const SQL_HASH_JOB: &str = r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      key: {expression: "'invoice:' || InvoiceId", language: sql}
"#;

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

/// The schema Debezium Server's JSON converter writes before each invoice event
/// (`schemas.enable=true`, its default): the row twice (before, after), the PostgreSQL
/// connector's source block, op, ts_ms and the transaction block.
fn envelope_schema() -> String {
    let row = |side: &str| {
        format!(
            r#"{{"type":"struct","fields":[{{"type":"int32","optional":false,"field":"InvoiceId"}},{{"type":"int32","optional":false,"field":"CustomerId"}},{{"type":"int64","optional":false,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"InvoiceDate"}},{{"type":"string","optional":true,"field":"BillingAddress"}},{{"type":"string","optional":true,"field":"BillingCity"}},{{"type":"string","optional":true,"field":"BillingState"}},{{"type":"string","optional":true,"field":"BillingCountry"}},{{"type":"string","optional":true,"field":"BillingPostalCode"}},{{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"2","connect.decimal.precision":"10"}},"field":"Total"}},{{"type":"int32","optional":true,"field":"Seq"}}],"optional":true,"name":"chinook.public.invoice.Value","field":"{side}"}}"#
        )
    };
    let source = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,last,false,incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}"#;
    let transaction = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}"#;
    format!(
        r#"{{"type":"struct","fields":[{},{},{source},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}},{transaction}],"optional":false,"name":"chinook.public.invoice.Envelope","version":1}}"#,
        row("before"),
        row("after")
    )
}

/// The same event as [`event`] gives, as Debezium Server writes it by default: with the
/// schema envelope, the total a Decimal (base64), the date in microseconds.
fn enveloped_event(schema: &str, invoice: usize, sequence: usize) -> (String, String) {
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int32","optional":false,"field":"InvoiceId"}}],"optional":false,"name":"chinook.public.invoice.Key"}},"payload":{{"InvoiceId":{invoice}}}}}"#
    );
    let cents = (invoice % 25 * 100 + sequence % 100) as u16;
    // Kafka's Decimal: the unscaled number's big-endian two's complement, in base64.
    let total = base64::engine::general_purpose::STANDARD.encode(cents.to_be_bytes());
    let value = format!(
        r#"{{"schema":{schema},"payload":{{"before":null,"after":{{"InvoiceId":{invoice},"CustomerId":{},"InvoiceDate":1609495200000000,"BillingAddress":"Theodor-Heuss-Strasse 34","BillingCity":"Stuttgart","BillingState":null,"BillingCountry":"Germany","BillingPostalCode":"70174","Total":"{total}","Seq":{sequence}}},"source":{{"version":"2.7.0.Final","connector":"postgresql","name":"chinook","ts_ms":1700000000000,"snapshot":"false","db":"chinook","sequence":null,"schema":"public","table":"invoice","txId":{sequence},"lsn":{},"xmin":null}},"op":"u","ts_ms":1700000000000,"transaction":null}}}}"#,
        invoice % 59,
        sequence + 1
    );
    (key, value)
}

/// Runs the drain and the lag measurements; prints the Markdown section.
/// Every drain and the lag runs; or, with `only`, the drains whose label holds it (or
/// one of its `|`-separated parts), or `lag` or `new-streams` alone.
pub fn run(only: Option<&str>) {
    if only == Some("new-streams") {
        print_new_streams();
        return;
    }
    if only == Some("lag") {
        print_lags();
        return;
    }
    let (key, value) = enveloped_event(&envelope_schema(), 99_999, 999_999);
    let enveloped_bytes = key.len() + value.len();
    println!(
        "## Worker: draining a backlog, and lag at a fixed rate\n\n\
         The release-built worker with one hash job (`concat(['invoice:', InvoiceId])`) reads \
         Debezium events without their schema (about 330 bytes, 100,000 invoices) from one \
         stream with default settings (`read_batch_size: 2000`); in the third drain, the same \
         events as Debezium Server writes them by default, with the schema envelope \
         ({enveloped_bytes} bytes; the total a base64 Decimal, the date in microseconds, both \
         decoded); in the fourth, the bare events again with the job's key in SQL (run by \
         SQLite), to show what SQL costs; in the fifth, the bare events into a Redis Cluster \
         of three primaries on this same machine (their CPU summed with the stream's server), \
         the stream on its own server. Redis runs on CPU \
         {SERVER_CPU}, the worker on CPU {WORKER_CPU}. Drain: the events already in the stream, \
         from the worker's start to every event acknowledged, {DRAIN_ROUNDS} times each way, \
         interleaved. Lag: events XADDed at a fixed \
         rate for {LAG_SECONDS} s, each timed from its XADD to the keyspace notification of its \
         hash (every event has its own invoice); the measurement's own floor: the same client \
         writing each hash itself (`HSET`, no stream, no worker), timed the same way.\n"
    );
    println!(
        "| worker writes with | events | events/s (median of {DRAIN_ROUNDS}) | spread | \
         Redis CPU µs/event | worker CPU µs/event |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let kinds: Vec<DrainKind> = DRAINS
        .into_iter()
        .filter(|kind| {
            only.is_none_or(|only| only.split('|').any(|part| kind.label.contains(part)))
        })
        .collect();
    let mut drains: Vec<Vec<Drain>> = kinds.iter().map(|_| Vec::new()).collect();
    for _ in 0..DRAIN_ROUNDS {
        for (kind, drains) in kinds.iter().zip(drains.iter_mut()) {
            drains.push(drain(*kind));
        }
    }
    for (kind, drains) in kinds.iter().zip(drains) {
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
            "| {} | {} | {rate:.0} | {slowest:.0}–{fastest:.0} | {:.2} | {:.2} |",
            kind.label,
            kind.backlog,
            spread(|drain| drain.server_us_per_event).1,
            spread(|drain| drain.worker_us_per_event).1,
        );
    }
    if only.is_some() {
        println!();
        return;
    }
    print_lags();
    print_new_streams();
}

/// The lag runs' table of the section.
fn print_lags() {
    println!(
        "\n| events/s offered | written by | events | lag p50 ms | p99 ms | max ms |\n\
         |---:|---|---:|---:|---:|---:|"
    );
    for rate in LAG_RATES {
        for (through_worker, by) in [(true, "the worker"), (false, "the client (floor)")] {
            let mut lags = lag(rate, through_worker);
            lags.sort_by(f64::total_cmp);
            let at = |p: f64| percentile(&lags, p);
            println!(
                "| {rate} | {by} | {} | {:.2} | {:.2} | {:.2} |",
                lags.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            );
        }
    }
}

/// The new-stream run's line of the section.
fn print_new_streams() {
    let mut first_events = new_streams();
    first_events.sort_by(f64::total_cmp);
    let at = |p: f64| percentile(&first_events, p);
    println!(
        "\nNew streams: {NEW_STREAMS} streams created one after another (XADD of a first event, \
         0.2–0.5 s apart, a pattern source already reading the ones before), each timed to its \
         hash readable: p50 {:.2} ms, max {:.2} ms.\n",
        at(0.5),
        at(1.0)
    );
}

/// New streams the `new_streams` run creates.
const NEW_STREAMS: usize = 20;

/// Milliseconds from each new stream's first XADD to its event's hash readable, with a
/// pattern source (`data:*`) running.
fn new_streams() -> Vec<f64> {
    let redis = server(true, false);
    let jobs: Vec<(String, String)> = (0..NEW_STREAMS)
        .map(|i| {
            (
                format!("job{i}.yaml"),
                format!(
                    "source: {{server_name: chinook, schema: public, table: t{i}}}\noutput:\n  \
                     - uses: redis.write\n    with:\n      key: {{expression: \"concat(['t{i}:', InvoiceId])\"}}\n"
                ),
            )
        })
        .collect();
    let jobs: Vec<(&str, &str)> = jobs.iter().map(|(n, j)| (n.as_str(), j.as_str())).collect();
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\"}}\n\
         jobs: ./jobs\n",
        redis.port()
    );
    let worker = WorkerProcess::start(&config, &jobs, Some(WORKER_CPU));
    std::thread::sleep(Duration::from_millis(500));
    let mut con = redis.connection();
    (0..NEW_STREAMS)
        .map(|i| {
            let (key, value) = event(1, i);
            let started = Instant::now();
            call::<String>(
                &mut con,
                &[
                    "XADD",
                    &format!("data:chinook.public.t{i}"),
                    "*",
                    &key,
                    &value,
                ],
            )
            .unwrap();
            let deadline = started + Duration::from_secs(10);
            while call::<i64>(&mut con, &["EXISTS", &format!("t{i}:1")]).unwrap() == 0 {
                assert!(
                    Instant::now() < deadline,
                    "t{i}:1 never written:\n{}",
                    worker.log()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let took = started.elapsed().as_secs_f64() * 1e3;
            std::thread::sleep(Duration::from_millis(200 + (i as u64 * 7919) % 300));
            took
        })
        .collect()
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

/// A kind of drain: the module or plain commands, events with or without the schema
/// envelope.
#[derive(Clone, Copy)]
struct DrainKind {
    module: bool,
    /// Into a Redis Cluster of three primaries (the module on each), the stream on a
    /// server of its own.
    cluster: bool,
    enveloped: bool,
    backlog: usize,
    job: &'static str,
    label: &'static str,
}

const DRAINS: [DrainKind; 5] = [
    DrainKind {
        module: true,
        cluster: false,
        enveloped: false,
        backlog: BACKLOG,
        job: HASH_JOB,
        label: "the module (SINK.HASH … VERSION)",
    },
    DrainKind {
        module: false,
        cluster: false,
        enveloped: false,
        backlog: BACKLOG,
        job: HASH_JOB,
        label: "plain commands (MULTI DEL HSET EXEC an event, pipelined)",
    },
    DrainKind {
        module: true,
        cluster: false,
        enveloped: true,
        backlog: ENVELOPED_BACKLOG,
        job: HASH_JOB,
        label: "the module, events with their schema envelope (Debezium Server's default)",
    },
    DrainKind {
        module: true,
        cluster: false,
        enveloped: false,
        backlog: BACKLOG,
        job: SQL_HASH_JOB,
        label: "the module, the key in SQL (run by SQLite)",
    },
    DrainKind {
        module: true,
        cluster: true,
        enveloped: false,
        backlog: BACKLOG,
        job: HASH_JOB,
        label: "the module, into a 3-primary cluster (the stream on its own server)",
    },
];

/// One drain of a backlog of events.
struct Drain {
    events_per_sec: f64,
    server_us_per_event: f64,
    worker_us_per_event: f64,
}

fn drain(kind: DrainKind) -> Drain {
    let redis = server(kind.module && !kind.cluster, false);
    let cluster = kind.cluster.then(|| RedisCluster::start(3));
    let mut con = redis.connection();
    let schema = envelope_schema();
    for chunk in (0..kind.backlog).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for &sequence in chunk {
            let (key, value) = if kind.enveloped {
                enveloped_event(&schema, sequence % INVOICES, sequence)
            } else {
                event(sequence % INVOICES, sequence)
            };
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg(key)
                .arg(value)
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    // Every server's CPU: the stream's, and the cluster's nodes.
    let servers_cpu_us = |con: &mut Connection| {
        let nodes = cluster.iter().flat_map(|cluster| &cluster.nodes);
        server_cpu_us(con)
            + nodes
                .map(|node| server_cpu_us(&mut node.connection()))
                .sum::<f64>()
    };
    let server_cpu_before = servers_cpu_us(&mut con);
    let started = Instant::now();
    let worker = match &cluster {
        Some(cluster) => start_worker_into(&redis, cluster, kind.job),
        None => start_worker(&redis, STREAM, kind.job),
    };
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
    let server_cpu_us = servers_cpu_us(&mut con) - server_cpu_before;
    let worker_cpu_us = worker.cpu_us();
    let mut target = match &cluster {
        Some(cluster) => cluster.node_for("invoice:99999").connection(),
        None => redis.connection(),
    };
    let written: Vec<String> = call(
        &mut target,
        &["HMGET", "invoice:99999", "Total", "InvoiceDate"],
    )
    .unwrap();
    assert_eq!(
        written,
        ["24.99", "2021-01-01T10:00:00Z"],
        "the last invoice was written, its total and date decoded"
    );
    let events = kind.backlog as f64;
    Drain {
        events_per_sec: events / seconds,
        server_us_per_event: server_cpu_us / events,
        worker_us_per_event: worker_cpu_us / events,
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
fn lag(rate: u64, through_worker: bool) -> Vec<f64> {
    let redis = server(true, true);
    let lag_job = HASH_JOB
        .replace("table: invoice", "table: lag")
        .replace("'invoice:'", "'lag:'");
    let mut con = redis.connection();
    let worker = through_worker.then(|| {
        let worker = start_worker(&redis, LAG_STREAM, &lag_job);
        // The worker creates the group when it starts reading.
        let deadline = Instant::now() + Duration::from_secs(30);
        while group_state(&mut con, LAG_STREAM).is_none() {
            assert!(Instant::now() < deadline, "{}", worker.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        worker
    });
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
            if through_worker {
                let (key, value) = event(n, n);
                pipe.cmd("XADD")
                    .arg(LAG_STREAM)
                    .arg("*")
                    .arg(key)
                    .arg(value)
                    .ignore();
            } else {
                pipe.cmd("HSET")
                    .arg(format!("lag:{n}"))
                    .arg("n")
                    .arg(n)
                    .ignore();
            }
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

/// The worker on `job` over the streams of `redis`, writing into `cluster`.
fn start_worker_into(redis: &RedisServer, cluster: &RedisCluster, job: &str) -> WorkerProcess {
    let config = cluster.worker_config(redis, "{}");
    WorkerProcess::start(&config, &[("job.yaml", job)], Some(WORKER_CPU))
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
