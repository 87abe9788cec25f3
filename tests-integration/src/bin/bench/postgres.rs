//! The PostgreSQL source: how soon a committed change is in Redis — idle, and while
//! other transactions commit 1,000 and 5,000 rows a second — and how many rows a second it
//! carries, with each plugin (pgoutput streamed, wal2json polled) and against staging the
//! changes in a Redis stream first and applying them from there (RDI's design), in one
//! run.
//!
//! Every pipeline is the release-built worker: staged, its postgres source writes each
//! change to `data:stage.public.bench` and its redis-stream source applies that stream.
//! The staged entries are plain field/value pairs, lighter than Debezium's JSON
//! envelopes, which flatters the staged pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Connection;
use redsink_tests::{call, pg_client, PostgresServer, RedisServer};

use crate::commands::server_cpu_us;
use crate::percentile;
use crate::process::{cpu_us_since, processes_cpu_us, WorkerProcess};

/// Single-row updates timed from commit to visible in Redis, one at a time.
const LATENCY_SAMPLES: usize = 200;
/// Rows a second other transactions commit while latency is sampled (0: idle), in
/// transactions of `LOAD_ROWS_PER_TRANSACTION` updates.
const LOADS: [u32; 3] = [0, 1_000, 5_000];
const LOAD_ROWS_PER_TRANSACTION: u32 = 10;
/// The rows the load updates: ids from `LOAD_FIRST_ID`.
const LOAD_ROWS: i32 = 10_000;
const LOAD_FIRST_ID: i32 = 1_000_000;
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

const DIRECT_JOB: &str = r#"source: {server_name: chinook, schema: public, table: bench}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['direct:', Id])", language: jmespath}
"#;

struct Pipeline {
    name: &'static str,
    /// The postgres source's settings beyond the connection (YAML flow mapping items).
    source: &'static str,
    /// Where the row with id `{id}` lands.
    key_prefix: &'static str,
    jobs: &'static [&'static str],
    /// The worker's sources after the postgres one (YAML list items).
    more_sources: &'static str,
    /// The slot: each pipeline starts from its own snapshot.
    slot: &'static str,
}

const PIPELINES: [Pipeline; 4] = [
    Pipeline {
        name: "pgoutput (default) → SINK.HASH",
        source: "plugin: pgoutput",
        key_prefix: "direct:",
        jobs: &[DIRECT_JOB],
        more_sources: "",
        slot: "pgoutput",
    },
    Pipeline {
        name: "wal2json, poll_ms 100 → SINK.HASH",
        source: "plugin: wal2json, poll_ms: 100",
        key_prefix: "direct:",
        jobs: &[DIRECT_JOB],
        more_sources: "",
        slot: "wal2json_100",
    },
    Pipeline {
        name: "wal2json, poll_ms 20 → SINK.HASH",
        source: "plugin: wal2json, poll_ms: 20",
        key_prefix: "direct:",
        jobs: &[DIRECT_JOB],
        more_sources: "",
        slot: "wal2json_20",
    },
    Pipeline {
        name: "staged: pgoutput → stream → SINK.HASH",
        source: "plugin: pgoutput",
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
        slot: "staged",
    },
];

/// Runs every pipeline and prints the Markdown section for BENCHMARKS.md.
pub fn run() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    client.batch_execute(TABLE).unwrap();
    let mut con = redis.connection();
    println!(
        "## PostgreSQL source: pgoutput vs wal2json, direct vs staged\n\n\
         Release-built worker (`read_batch_size: 2000`), a private PostgreSQL 15 \
         (`fsync=off`), redis-server with the module. Latency: {LATENCY_SAMPLES} single-row \
         updates, one at a time 20–60 ms apart, from the UPDATE's commit to the new value \
         readable in Redis (polled every 0.2 ms), while other transactions commit nothing, \
         1,000 or 5,000 rows a second (updates, {LOAD_ROWS_PER_TRANSACTION} a transaction). \
         Throughput: {THROUGHPUT_ROWS} rows inserted in transactions of \
         {ROWS_PER_TRANSACTION}, from the first commit to the last row readable, and the CPU \
         time each process spent meanwhile, per row (PostgreSQL: its inserting backend and \
         the WAL sender decoding for the slot). Catch-up: as many more rows committed while \
         the worker is stopped, from its start to the last readable.\n"
    );
    println!(
        "| pipeline | idle p50 / p99 ms | 1,000 rows/s p50 / p99 ms | 5,000 rows/s p50 / p99 ms | rows/s | rows/s vs pgoutput | CPU µs a row: worker / Redis / PostgreSQL | catch-up rows/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut first_rate = None;
    for pipeline in &PIPELINES {
        let result = measure(&redis, &postgres, &mut client, &mut con, pipeline);
        let first = *first_rate.get_or_insert(result.rows_per_sec);
        let latencies: Vec<String> = result
            .latencies
            .iter()
            .map(|sorted| {
                format!(
                    "{:.1} / {:.1}",
                    percentile(sorted, 0.5),
                    percentile(sorted, 0.99)
                )
            })
            .collect();
        let [worker, redis, postgres] = result.cpu_us_per_row;
        println!(
            "| {} | {} | {:.0} | {:.2} | {worker:.1} / {redis:.1} / {postgres:.1} | {:.0} |",
            pipeline.name,
            latencies.join(" | "),
            result.rows_per_sec,
            result.rows_per_sec / first,
            result.catch_up_rows_per_sec
        );
    }
    println!();
}

struct Measured {
    /// For each of `LOADS`: sorted, in milliseconds.
    latencies: Vec<Vec<f64>>,
    rows_per_sec: f64,
    /// The worker's, Redis's and PostgreSQL's, over the throughput run.
    cpu_us_per_row: [f64; 3],
    catch_up_rows_per_sec: f64,
}

/// One pipeline: a fresh table, a worker, latency under each load, then throughput.
fn measure(
    redis: &RedisServer,
    postgres: &PostgresServer,
    client: &mut pg_client::Client,
    con: &mut Connection,
    pipeline: &Pipeline,
) -> Measured {
    client.batch_execute("TRUNCATE bench").unwrap();
    client
        .execute(
            r#"INSERT INTO bench SELECT i, 1, '2021-01-01 10:00:00', 'Berlin', 'Germany', 0
               FROM generate_series($1::int, $2::int) i"#,
            &[&LOAD_FIRST_ID, &(LOAD_FIRST_ID + LOAD_ROWS - 1)],
        )
        .unwrap();
    client
        .batch_execute(
            r#"INSERT INTO bench VALUES (0, 1, '2021-01-01 10:00:00', 'Berlin', 'Germany', 0)"#,
        )
        .unwrap();
    let mut worker = start_worker(redis, postgres, pipeline);
    let key = format!("{}0", pipeline.key_prefix);
    wait(con, &key, "Total", "0.00", &worker);
    let latencies = LOADS
        .iter()
        .enumerate()
        .map(|(round, &rows_per_sec)| {
            let load = Load::start(postgres, rows_per_sec);
            let first = (round * LATENCY_SAMPLES) as u32 + 1;
            let mut sorted = latencies(client, con, &key, first, &worker);
            load.stop();
            sorted.sort_by(f64::total_cmp);
            sorted
        })
        .collect();
    let (rows_per_sec, cpu_us_per_row) = throughput(client, con, pipeline, &worker);
    let catch_up_rows_per_sec = catch_up(redis, postgres, client, con, pipeline, &mut worker);
    worker.stop();
    // The next run starts from a fresh slot and empty keys.
    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{}')",
            pipeline.slot
        ))
        .unwrap();
    call::<()>(con, &["FLUSHALL"]).unwrap();
    Measured {
        latencies,
        rows_per_sec,
        cpu_us_per_row,
        catch_up_rows_per_sec,
    }
}

/// Other transactions committing `rows_per_sec` rows a second on their own connection,
/// paced by the clock, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(postgres: &PostgresServer, rows_per_sec: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        if rows_per_sec == 0 {
            return Load { stop, thread: None };
        }
        let mut client = postgres.client().unwrap();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let every =
                Duration::from_secs_f64(LOAD_ROWS_PER_TRANSACTION as f64 / rows_per_sec as f64);
            let (mut next, mut first) = (Instant::now(), 0);
            while !stopped.load(Ordering::Relaxed) {
                let from = LOAD_FIRST_ID + first;
                let to = from + LOAD_ROWS_PER_TRANSACTION as i32 - 1;
                client
                    .execute(
                        r#"UPDATE bench SET "Total" = "Total" + 1 WHERE "Id" BETWEEN $1 AND $2"#,
                        &[&from, &to],
                    )
                    .unwrap();
                first = (first + LOAD_ROWS_PER_TRANSACTION as i32) % LOAD_ROWS;
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Milliseconds from each update's commit to its value readable in Redis; the updates
/// set Totals counting from `first`.
fn latencies(
    client: &mut pg_client::Client,
    con: &mut Connection,
    key: &str,
    first: u32,
    worker: &WorkerProcess,
) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for sample in first..first + LATENCY_SAMPLES as u32 {
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

/// Rows a second from the first insert's commit to the last row readable in Redis, and
/// the CPU time a row cost the worker, Redis and PostgreSQL meanwhile.
fn throughput(
    client: &mut pg_client::Client,
    con: &mut Connection,
    pipeline: &Pipeline,
    worker: &WorkerProcess,
) -> (f64, [f64; 3]) {
    let (worker_before, redis_before) = (worker.cpu_us(), server_cpu_us(con));
    let postgres_before = processes_cpu_us("postgres");
    let started = Instant::now();
    insert_rows(client, 1);
    wait_for_row(con, pipeline, THROUGHPUT_ROWS, worker);
    let rows_per_sec = THROUGHPUT_ROWS as f64 / started.elapsed().as_secs_f64();
    let used = [
        worker.cpu_us() - worker_before,
        server_cpu_us(con) - redis_before,
        cpu_us_since(&postgres_before, &processes_cpu_us("postgres")),
    ];
    (rows_per_sec, used.map(|us| us / THROUGHPUT_ROWS as f64))
}

/// Rows a second of a backlog: `THROUGHPUT_ROWS` more rows committed while the worker is
/// stopped, from its start to the last of them readable.
fn catch_up(
    redis: &RedisServer,
    postgres: &PostgresServer,
    client: &mut pg_client::Client,
    con: &mut Connection,
    pipeline: &Pipeline,
    worker: &mut WorkerProcess,
) -> f64 {
    worker.stop();
    insert_rows(client, THROUGHPUT_ROWS + 1);
    let started = Instant::now();
    *worker = start_worker(redis, postgres, pipeline);
    wait_for_row(con, pipeline, 2 * THROUGHPUT_ROWS, worker);
    THROUGHPUT_ROWS as f64 / started.elapsed().as_secs_f64()
}

/// Inserts `THROUGHPUT_ROWS` rows from id `first`, in transactions of
/// `ROWS_PER_TRANSACTION`.
fn insert_rows(client: &mut pg_client::Client, first: i32) {
    for from in (first..first + THROUGHPUT_ROWS).step_by(ROWS_PER_TRANSACTION as usize) {
        client
            .execute(
                r#"INSERT INTO bench SELECT i, i % 50, '2021-01-01 10:00:00', 'Berlin', 'Germany', i / 100.0
                   FROM generate_series($1::int, $2::int) i"#,
                &[&from, &(from + ROWS_PER_TRANSACTION - 1)],
            )
            .unwrap();
    }
}

/// Waits until the row with id `id` is readable in Redis.
fn wait_for_row(con: &mut Connection, pipeline: &Pipeline, id: i32, worker: &WorkerProcess) {
    let key = format!("{}{id}", pipeline.key_prefix);
    let total = format!("{:.2}", id as f64 / 100.0);
    wait(con, &key, "Total", &total, worker);
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
) -> WorkerProcess {
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: postgres, server_name: chinook, host: 127.0.0.1, port: {}, \
         database: postgres, user: postgres, tables: [public.bench], slot: {}, {}}}\n\
         {}processors: {{read_batch_size: 2000, block_ms: 1000}}\njobs: ./jobs\n",
        redis.port(),
        postgres.port(),
        pipeline.slot,
        pipeline.source,
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
