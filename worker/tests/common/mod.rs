//! What the worker's process tests share: a worker process with its own folder.

// Compiled into each test binary, each of which uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use redsink_tests::RedisServer;

/// Runs the worker binary with `args` to its end: whether it succeeded, its stdout and
/// its stderr.
pub fn run_worker<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_redsink-worker"))
        .args(args)
        .output()
        .expect("run redsink-worker");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Seed 001's job, verbatim (the example the README runs).
pub const SEED_001: &str = include_str!("../../../examples/jobs/invoice-events.yaml");

/// Each invoice as the hash `invoice:<InvoiceId>`.
pub const INVOICE_HASH_JOB: &str = r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['invoice:', InvoiceId])", language: jmespath}
"#;

/// Each change as a message of `invoice:events` with the event's `Seq`, to check order.
pub const SEQ_STREAM_JOB: &str = r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      data_type: stream
      key: {expression: "`invoice:events`", language: jmespath}
      mapping: [{InvoiceId: message_id}, Seq]
"#;

const DEFAULT_PROCESSORS: &str = "{block_ms: 100, reclaim_idle_ms: 300, max_deliveries: 3}";

/// Adds `event` (a change event's JSON) for invoice `invoice` to Debezium Server's stream
/// of the `invoice` table, under its record key.
pub fn add_invoice_event(con: &mut redsink_tests::redis::Connection, invoice: u32, event: &str) {
    let key = format!(r#"{{"InvoiceId":{invoice}}}"#);
    redsink_tests::call::<String>(
        con,
        &["XADD", "data:chinook.public.invoice", "*", &key, event],
    )
    .unwrap();
}

/// Entries of `stream` the group `redsink` acknowledged: read, less those pending.
pub fn acknowledged(
    con: &mut redsink_tests::redis::Connection,
    stream: &str,
) -> redsink_tests::redis::RedisResult<i64> {
    let groups: Vec<std::collections::HashMap<String, redsink_tests::redis::Value>> =
        redsink_tests::call(con, &["XINFO", "GROUPS", stream])?;
    let number = |name: &str| match groups.first().and_then(|group| group.get(name)) {
        Some(redsink_tests::redis::Value::Int(n)) => *n,
        _ => 0,
    };
    Ok(number("entries-read") - number("pending"))
}

/// A worker process with its own folder, config and jobs; killed on drop.
pub struct Worker {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Worker {
    pub fn start(server: &RedisServer, jobs: &[&str]) -> Worker {
        Worker::with_processors(server, jobs, DEFAULT_PROCESSORS)
    }

    /// With `processors` as given (YAML flow mapping).
    pub fn with_processors(server: &RedisServer, jobs: &[&str], processors: &str) -> Worker {
        Worker::named(server, jobs, processors, "test-worker")
    }

    /// Reading `streams` (YAML: a pattern or a list) with the default processors.
    pub fn reading(server: &RedisServer, jobs: &[&str], streams: &str) -> Worker {
        Worker::configured(server, jobs, DEFAULT_PROCESSORS, "test-worker", streams, "")
    }

    /// With `processors` as given and this consumer name in the group.
    pub fn named(server: &RedisServer, jobs: &[&str], processors: &str, consumer: &str) -> Worker {
        Worker::configured(server, jobs, processors, consumer, "\"data:*\"", "")
    }

    /// With this whole configuration (`jobs: ./jobs` is where `jobs` go).
    pub fn from_config(config: &str, jobs: &[&str]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        for (i, job) in jobs.iter().enumerate() {
            std::fs::write(dir.path().join(format!("jobs/job{i}.yaml")), job).unwrap();
        }
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let mut worker = Worker { child: None, dir };
        worker.spawn();
        worker
    }

    /// Serving Prometheus metrics on `port`.
    pub fn with_metrics(server: &RedisServer, jobs: &[&str], port: u16) -> Worker {
        let extra = format!("metrics: {{address: \"127.0.0.1:{port}\"}}\n");
        Worker::configured(
            server,
            jobs,
            DEFAULT_PROCESSORS,
            "test-worker",
            "\"data:*\"",
            &extra,
        )
    }

    fn configured(
        server: &RedisServer,
        jobs: &[&str],
        processors: &str,
        consumer: &str,
        streams: &str,
        extra: &str,
    ) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        for (i, job) in jobs.iter().enumerate() {
            std::fs::write(dir.path().join(format!("jobs/job{i}.yaml")), job).unwrap();
        }
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
                 sources:\n  - {{type: redis-stream, connection: target, streams: {streams}, consumer: {consumer}}}\n\
                 processors: {processors}\n\
                 jobs: ./jobs\n{extra}",
                server.port()
            ),
        )
        .unwrap();
        let mut worker = Worker { child: None, dir };
        worker.spawn();
        worker
    }

    /// Starts the process (again, after a kill).
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_redsink-worker"))
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start redsink-worker");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// Its configuration file, for the command line's other commands.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls `check` on `redis` until it says true (10 s at most), then panics with
    /// `what` and this worker's log as it is then.
    pub fn wait_until(
        &self,
        redis: &RedisServer,
        what: &str,
        mut check: impl FnMut(
            &mut redsink_tests::redis::Connection,
        ) -> redsink_tests::redis::RedisResult<bool>,
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut con = redis.connection();
        while !check(&mut con).unwrap_or(false) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for: {what}\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .unwrap();
        }
    }

    /// SIGKILL: no chance to finish or acknowledge anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// Waits (up to 30 s) for the process to end by itself; its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        child.wait().unwrap().code()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The page the worker's Prometheus endpoint on `port` serves.
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    socket.read_to_string(&mut page).unwrap();
    page
}
