//! The PostgreSQL source: how soon a committed change is in Redis, and how many rows a
//! second it carries, applying changes directly (redsink's design) against staging them
//! in a Redis stream first and applying them from there (RDI's design), in one run.
//!
//! Both pipelines are the release-built worker: staged, its postgres source writes each
//! change to `data:stage.public.bench` and its redis-stream source applies that stream.
//! The staged entries are plain field/value pairs, lighter than Debezium's JSON
//! envelopes, which flatters the staged pipeline.

use std::time::{Duration, Instant};

use redis::Connection;
use redsink_tests::{call, pg_client, PostgresServer, RedisServer};

use crate::process::WorkerProcess;

/// Single-row updates timed from commit to visible in Redis, one at a time.
const LATENCY_SAMPLES: usize = 200;
/// Rows inserted for the throughput run, in transactions of `ROWS_PER_TRANSACTION`.
const THROUGHPUT_ROWS: i32 = 100_000;
const ROWS_PER_TRANSACTION: i32 = 1_000;

const TABLE: &str = r#"CREATE TABLE bench (
    "Id" integer PRIMARY KEY,
    "CustomerId" integer NOT NULL,
    "InvoiceDate" timestamp NOT NULL,
    "BillingCity" varchar(40),
    "BillingCountry" varchar(40),
    "Total" numeric(10,2) NOT NULL
)"#;

struct Pipeline {
    name: &'static str,
    /// Where the row with id `{id}` lands.
    key_prefix: &'static str,
    jobs: &'static [&'static str],
    /// The worker's sources after the postgres one (YAML list items).
    more_sources: &'static str,
}

const PIPELINES: [Pipeline; 2] = [
    Pipeline {
        name: "direct: postgres → SINK.HASH",
        key_prefix: "direct:",
        jobs: &[
            r#"source: {server_name: chinook, schema: public, table: bench}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['direct:', Id])", language: jmespath}
"#,
        ],
        more_sources: "",
    },
    Pipeline {
        name: "staged: postgres → stream → SINK.HASH",
        key_prefix: "staged:",
        jobs: &[
            r#"source: {server_name: chinook, schema: public, table: bench}
output:
  - uses: redis.write
    with:
      data_type: stream
      key: {expression: "`data:stage.public.bench`", language: jmespath}
"#,
            r#"source: {server_name: stage, schema: public, table: bench}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['staged:', Id])", language: jmespath}
"#,
        ],
        more_sources:
            "  - {type: redis-stream, connection: target, streams: [data:stage.public.bench]}\n",
    },
];

/// The worker's settings a run uses: `poll_ms` and `read_batch_size`.
const SETTINGS: [(u64, usize); 2] = [(100, 2_000), (20, 10_000)];

/// Runs both pipelines with each of `SETTINGS` and prints the Markdown section for
/// BENCHMARKS.md.
pub fn run() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    client.batch_execute(TABLE).unwrap();
    let mut con = redis.connection();
    println!(
        "## PostgreSQL source: direct vs staged\n\n\
         Release-built worker (defaults: `poll_ms: 100`, `read_batch_size: 2000`), a private \
         PostgreSQL 15 (wal2json, `fsync=off`), redis-server with the module. Latency: \
         {LATENCY_SAMPLES} single-row updates, one at a time 20–60 ms apart, from the \
         UPDATE's commit to the new value readable in Redis (polled every 0.2 ms). \
         Throughput: {THROUGHPUT_ROWS} rows inserted in transactions of \
         {ROWS_PER_TRANSACTION}, from the first commit to the last row readable.\n"
    );
    println!(
        "| pipeline | poll_ms | read_batch_size | latency p50 ms | p90 ms | p99 ms | max ms | rows/s | rows/s vs direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (poll_ms, batch) in SETTINGS {
        let mut direct_rate = None;
        for pipeline in &PIPELINES {
            let result = measure(
                &redis,
                &postgres,
                &mut client,
                &mut con,
                pipeline,
                poll_ms,
                batch,
            );
            let direct = *direct_rate.get_or_insert(result.rows_per_sec);
            println!(
                "| {} | {poll_ms} | {batch} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} |",
                pipeline.name,
                result.percentile(0.5),
                result.percentile(0.9),
                result.percentile(0.99),
                result.percentile(1.0),
                result.rows_per_sec,
                result.rows_per_sec / direct
            );
        }
    }
    println!();
}

struct Measured {
    /// Sorted, in milliseconds.
    latencies: Vec<f64>,
    rows_per_sec: f64,
}

impl Measured {
    fn percentile(&self, p: f64) -> f64 {
        self.latencies[((self.latencies.len() - 1) as f64 * p) as usize]
    }
}

/// One pipeline with one setting: a fresh table, a worker, latency, then throughput.
fn measure(
    redis: &RedisServer,
    postgres: &PostgresServer,
    client: &mut pg_client::Client,
    con: &mut Connection,
    pipeline: &Pipeline,
    poll_ms: u64,
    batch: usize,
) -> Measured {
    client.batch_execute("TRUNCATE bench").unwrap();
    client
        .batch_execute(
            r#"INSERT INTO bench VALUES (0, 1, '2021-01-01 10:00:00', 'Berlin', 'Germany', 0)"#,
        )
        .unwrap();
    let mut worker = start_worker(redis, postgres, pipeline, poll_ms, batch);
    let key = format!("{}0", pipeline.key_prefix);
    wait(con, &key, "Total", "0.00", &worker);
    let mut latencies = latencies(client, con, &key, &worker);
    latencies.sort_by(f64::total_cmp);
    let rows_per_sec = throughput(client, con, pipeline, &worker);
    worker.stop();
    // The next run starts from a fresh slot and empty keys.
    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{}')",
            pipeline.slot()
        ))
        .unwrap();
    call::<()>(con, &["FLUSHALL"]).unwrap();
    Measured {
        latencies,
        rows_per_sec,
    }
}

impl Pipeline {
    /// A slot per pipeline: each starts from its own snapshot.
    fn slot(&self) -> &str {
        self.key_prefix.trim_end_matches(':')
    }
}

/// Milliseconds from each update's commit to its value readable in Redis.
fn latencies(
    client: &mut pg_client::Client,
    con: &mut Connection,
    key: &str,
    worker: &WorkerProcess,
) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for sample in 1..=LATENCY_SAMPLES {
        let total = format!("{sample}.00");
        client
            .execute(
                r#"UPDATE bench SET "Total" = $1::text::numeric WHERE "Id" = 0"#,
                &[&total],
            )
            .unwrap();
        let committed = Instant::now();
        wait(con, key, "Total", &total, worker);
        latencies.push(committed.elapsed().as_secs_f64() * 1e3);
        // Apart by an amount that does not follow the worker's poll period.
        std::thread::sleep(Duration::from_millis(20 + (sample as u64 * 7919) % 40));
    }
    latencies
}

/// Rows a second from the first insert's commit to the last row readable in Redis.
fn throughput(
    client: &mut pg_client::Client,
    con: &mut Connection,
    pipeline: &Pipeline,
    worker: &WorkerProcess,
) -> f64 {
    let started = Instant::now();
    for first in (1..=THROUGHPUT_ROWS).step_by(ROWS_PER_TRANSACTION as usize) {
        client
            .execute(
                r#"INSERT INTO bench SELECT i, i % 50, '2021-01-01 10:00:00', 'Berlin', 'Germany', i / 100.0
                   FROM generate_series($1::int, $2::int) i"#,
                &[&first, &(first + ROWS_PER_TRANSACTION - 1)],
            )
            .unwrap();
    }
    let last = format!("{}{THROUGHPUT_ROWS}", pipeline.key_prefix);
    let total = format!("{:.2}", THROUGHPUT_ROWS as f64 / 100.0);
    wait(con, &last, "Total", &total, worker);
    THROUGHPUT_ROWS as f64 / started.elapsed().as_secs_f64()
}

/// Polls until `key`'s `field` is `value` (60 s at most).
fn wait(con: &mut Connection, key: &str, field: &str, value: &str, worker: &WorkerProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while call::<Option<String>>(con, &["HGET", key, field])
        .unwrap()
        .as_deref()
        != Some(value)
    {
        assert!(
            Instant::now() < deadline,
            "{key} {field} never became {value}:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The worker on one pipeline's configuration.
fn start_worker(
    redis: &RedisServer,
    postgres: &PostgresServer,
    pipeline: &Pipeline,
    poll_ms: u64,
    batch: usize,
) -> WorkerProcess {
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: postgres, server_name: chinook, host: 127.0.0.1, port: {}, \
         database: postgres, user: postgres, tables: [public.bench], slot: {}, poll_ms: {poll_ms}}}\n\
         {}processors: {{read_batch_size: {batch}, block_ms: 1000}}\njobs: ./jobs\n",
        redis.port(),
        postgres.port(),
        pipeline.slot(),
        pipeline.more_sources
    );
    let jobs: Vec<(String, &str)> = pipeline
        .jobs
        .iter()
        .enumerate()
        .map(|(i, job)| (format!("job{i}.yaml"), *job))
        .collect();
    let jobs: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(name, job)| (name.as_str(), *job))
        .collect();
    WorkerProcess::start(&config, &jobs, None)
}
