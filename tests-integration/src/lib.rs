//! The harness for redsink's end-to-end tests: real `redis-server` processes with the
//! freshly built module, each on a free port in its own temporary folder, killed when
//! dropped. No mock of Redis anywhere.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub mod pg_server;
pub mod tls;

pub use pg_server::PostgresServer;
/// The PostgreSQL client the tests use, for crates that depend on this one.
pub use postgres as pg_client;
pub use redis;
use redis::{Connection, FromRedisValue, RedisResult, ToRedisArgs};
use tempfile::TempDir;
pub use tls::TestCertificates;

/// The workspace's root folder.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests-integration lives in the workspace")
        .to_path_buf()
}

/// `libredsink.so`: `$REDSINK_MODULE` if set, else built now (once per test binary)
/// with the same cargo that runs the tests, so a plain `cargo test` tests fresh code.
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("REDSINK_MODULE") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "redsink"])
            .current_dir(workspace_dir())
            .status()
            .expect("run cargo build for the module");
        assert!(status.success(), "building the module failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_dir().join("target"));
        target.join("debug").join("libredsink.so")
    })
}

/// RedisJSON's module (`rejson.so`): `$REJSON` if set, else what `cargo make setup` put in
/// `.servers/`.
pub fn rejson_path() -> PathBuf {
    let path = std::env::var_os("REJSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".servers/rejson-2.8.3/rejson.so"));
    assert!(
        path.exists(),
        "RedisJSON is not at {} (cargo make setup fetches it; REJSON=/path/to/rejson.so)",
        path.display()
    );
    path
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind a free port")
}

/// Keeps the calling thread (or, before exec, the process) on `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity(0, …)
    // act on this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Makes the process `command` starts run on `cpu` only.
pub fn start_on_cpu(command: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec, and only makes one system call
    // (async-signal-safe).
    unsafe {
        command.pre_exec(move || {
            pin_to_cpu(cpu);
            Ok(())
        });
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Load the module (a plain Redis otherwise).
    pub module: bool,
    /// Arguments after the module's path on `--loadmodule`.
    pub module_args: Vec<String>,
    /// Further `redis-server` options as `name value` (e.g. `("appendonly", "yes")`).
    pub config: Vec<(String, String)>,
    /// Run the server on this CPU only (benchmarks keep it apart from the load).
    pub cpu: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            module: true,
            module_args: Vec::new(),
            config: Vec::new(),
            cpu: None,
        }
    }
}

impl Options {
    pub fn config(mut self, name: &str, value: &str) -> Self {
        self.config.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn module_args(mut self, args: &[&str]) -> Self {
        self.module_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    pub fn on_cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// With RedisJSON loaded as well (see [`rejson_path`]).
    pub fn with_json(self) -> Self {
        let rejson = rejson_path();
        self.config("loadmodule", &rejson.to_string_lossy())
    }

    pub fn without_module(mut self) -> Self {
        self.module = false;
        self
    }
}

/// A running `redis-server`, killed on drop (its folder is removed with it).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: Options,
    dir: TempDir,
}

impl RedisServer {
    /// A server with the module and the harness defaults.
    pub fn start() -> Self {
        Self::with(Options::default())
    }

    pub fn with(options: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redsink-test-")
            .tempdir()
            .expect("create a temporary folder");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            options,
            dir,
        };
        server.launch();
        server
    }

    /// A replica of this server, returned once its initial sync is done.
    pub fn replica(&self) -> RedisServer {
        let options = self
            .options
            .clone()
            .config("replicaof", &format!("127.0.0.1 {}", self.port));
        let replica = RedisServer::with(options);
        replica.wait_until("replica in sync", |con| {
            let info: String = redis::cmd("INFO").arg("replication").query(con)?;
            Ok(info.contains("master_link_status:up"))
        });
        replica
    }

    /// Starts the server again on the same port and folder (after a crash or shutdown),
    /// so it loads whatever it persisted.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// SIGKILL: no chance to save anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process still runs and answers PING.
    pub fn is_alive(&mut self) -> bool {
        let running = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
        running
            && self
                .try_connection()
                .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con))
                .is_ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A connection; a connect a signal interrupted (EINTR: the test's child processes
    /// ending) is tried again.
    pub fn connection(&self) -> Connection {
        let mut result = self.try_connection();
        for _ in 0..3 {
            match &result {
                Err(e)
                    if e.kind() == redis::ErrorKind::Io
                        && e.to_string().contains("Interrupted system call") =>
                {
                    result = self.try_connection();
                }
                _ => break,
            }
        }
        result.unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.url(), self.log()))
    }

    pub fn try_connection(&self) -> RedisResult<Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// Polls `check` until it says true (10 s at most, then panics with `what`).
    pub fn wait_until(
        &self,
        what: &str,
        mut check: impl FnMut(&mut Connection) -> RedisResult<bool>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut con) = self.try_connection() {
                if let Ok(true) = check(&mut con) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20));
        }
    }

    fn launch(&mut self) {
        let mut command =
            Command::new(std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into()));
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log", "--save", "", "--appendonly", "no"])
            .args([
                "--enable-debug-command",
                "yes",
                "--enable-module-command",
                "yes",
            ]);
        if self.options.module {
            command
                .arg("--loadmodule")
                .arg(module_path())
                .args(&self.options.module_args);
        }
        for (name, value) in &self.options.config {
            command.arg(format!("--{name}")).args(value.split(' '));
        }
        if let Some(cpu) = self.options.cpu {
            start_on_cpu(&mut command, cpu);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? run `cargo make setup`)");
        self.child = Some(child);
        // Loading done: INFO says so, and a keyspace command is served (a multi-part AOF
        // loads file after file, and INFO can say loading:0 in between).
        self.wait_until("redis-server has loaded its data", |con| {
            let loading: String = redis::cmd("INFO").arg("persistence").query(con)?;
            let served = redis::cmd("DBSIZE").query::<i64>(con).is_ok();
            Ok(loading.contains("loading:0") && served)
        });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command given as a list of arguments.
pub fn call<T: FromRedisValue>(con: &mut Connection, args: &[impl ToRedisArgs]) -> RedisResult<T> {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(arg);
    }
    command.query(con)
}

/// Runs a command that must fail and returns its error as the client saw it
/// (`ERR …`, `WRONGTYPE …`).
pub fn call_err(con: &mut Connection, args: &[impl ToRedisArgs]) -> String {
    match call::<redis::Value>(con, args) {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            (Some(code), None) => code.to_owned(),
            _ => error.to_string(),
        },
    }
}

/// Every key and its value, sorted: equal snapshots mean equal data, types included.
/// Values are `DUMP`s, except for sets and hashes, whose `DUMP` order depends on the hash
/// table and may differ for equal data: those are their sorted members or fields.
pub fn snapshot(con: &mut Connection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let keys: Vec<Vec<u8>> = call(con, &["KEYS", "*"]).expect("KEYS");
    let mut dump: Vec<(Vec<u8>, Vec<u8>)> = keys
        .into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(con).expect("TYPE");
            let canonical = |command: &str, con: &mut Connection| {
                let mut items: Vec<Vec<u8>> =
                    redis::cmd(command).arg(&key).query(con).expect(command);
                if command == "HGETALL" {
                    let mut pairs: Vec<Vec<u8>> =
                        items.chunks(2).map(|pair| pair.join(&0u8)).collect();
                    pairs.sort();
                    items = pairs;
                } else {
                    items.sort();
                }
                [kind.as_bytes().to_vec(), items.join(&b'\n')].concat()
            };
            let value = match kind.as_str() {
                "set" => canonical("SMEMBERS", con),
                "hash" => canonical("HGETALL", con),
                _ => redis::cmd("DUMP").arg(&key).query(con).expect("DUMP"),
            };
            (key, value)
        })
        .collect();
    dump.sort();
    dump
}

/// Blocks until every replica of the server behind `con` has acknowledged all writes.
pub fn wait_for_replicas(con: &mut Connection, replicas: i64) {
    let acked: i64 = call(con, &["WAIT", &replicas.to_string(), "10000"]).expect("WAIT");
    assert_eq!(acked, replicas, "replicas did not acknowledge in time");
}

/// Waits for a background AOF rewrite to finish.
pub fn wait_for_aof_rewrite(server: &RedisServer) {
    server.wait_until("AOF rewrite done", |con| {
        let info: String = call(con, &["INFO", "persistence"])?;
        Ok(info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0"))
    });
}

/// Milliseconds since the Unix epoch by this machine's clock (the server's too).
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}

/// `DS.INFO key` as a map of names to values (numbers as their decimal text).
pub fn ds_info(con: &mut Connection, key: &str) -> HashMap<String, String> {
    let fields: Vec<redis::Value> = call(con, &["DS.INFO", key]).expect("DS.INFO");
    let text = |value: &redis::Value| match value {
        redis::Value::SimpleString(text) => text.clone(),
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::Int(n) => n.to_string(),
        other => panic!("unexpected DS.INFO value {other:?}"),
    };
    fields
        .chunks(2)
        .map(|pair| (text(&pair[0]), text(&pair[1])))
        .collect()
}

/// Runs `args`, expects an error starting with `expected`, and checks that the data did
/// not change and the server still answers.
pub fn refused(server: &mut RedisServer, args: &[&[u8]], expected: &str) {
    let mut con = server.connection();
    let before = snapshot(&mut con);
    let error = call_err(&mut con, args);
    assert!(
        error.starts_with(expected),
        "{:?}\n  gave:     {error}\n  expected: {expected}",
        args.iter()
            .map(|a| String::from_utf8_lossy(a))
            .collect::<Vec<_>>()
    );
    assert_eq!(snapshot(&mut con), before, "an error wrote something");
    assert!(server.is_alive());
}

/// A command line split at spaces, as arguments.
pub fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

/// A Redis Cluster of `primaries` nodes with the module, slots spread evenly, returned
/// once every node reports `cluster_state:ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `primaries` nodes, no replicas.
    pub fn start(primaries: usize) -> Self {
        Self::with_replicas(primaries, 0)
    }

    /// `primaries` nodes and `replicas` replicas of each (a failover takes a couple of
    /// seconds: `cluster-node-timeout` is 1 s).
    pub fn with_replicas(primaries: usize, replicas: usize) -> Self {
        let options = Options::default()
            .config("cluster-enabled", "yes")
            .config("cluster-config-file", "nodes.conf")
            .config(
                "cluster-node-timeout",
                if replicas > 0 { "1000" } else { "5000" },
            );
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::with(options.clone()))
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Every live node says `cluster_state:ok` (and, with replicas, each is linked).
    pub fn wait_until_ok(&self) {
        for node in &self.nodes {
            let mut node_con = match node.try_connection() {
                Ok(con) => con,
                Err(_) => continue,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let info: String = call(&mut node_con, &["CLUSTER", "INFO"]).unwrap_or_default();
                let replication: String =
                    call(&mut node_con, &["INFO", "replication"]).unwrap_or_default();
                let linked = !replication.contains("role:slave")
                    || replication.contains("master_link_status:up");
                if info.contains("cluster_state:ok") && linked {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "cluster not ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// redis-rs's cluster client for the nodes that are up.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        let live = self
            .nodes
            .iter()
            .filter(|node| node.try_connection().is_ok())
            .map(RedisServer::url);
        redis::cluster::ClusterClient::new(live.collect::<Vec<_>>()).expect("a cluster client")
    }

    /// A worker's configuration writing into this cluster (`target`, by `urls`), reading
    /// `data:*` from `streams` (`source`), with `processors` (YAML flow mapping).
    pub fn worker_config(&self, streams: &RedisServer, processors: &str) -> String {
        let urls: Vec<String> = self.urls().iter().map(|url| format!("\"{url}\"")).collect();
        format!(
            "connections:\n  source: {{type: redis, host: 127.0.0.1, port: {}}}\n  target: {{type: redis, urls: [{}]}}\n\
             sources:\n  - {{type: redis-stream, connection: source, streams: \"data:*\"}}\n\
             processors: {processors}\n\
             jobs: ./jobs\n",
            streams.port(),
            urls.join(", ")
        )
    }

    /// The nodes that are primaries now.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|node| {
                node.try_connection().is_ok_and(|mut con| {
                    call::<String>(&mut con, &["INFO", "replication"])
                        .is_ok_and(|info| info.contains("role:master"))
                })
            })
            .collect()
    }

    /// The node serving `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        &self.nodes[self.index_for(key)]
    }

    /// The place in `nodes` of the live node serving `key`'s slot.
    pub fn index_for(&self, key: &str) -> usize {
        let live = || {
            self.nodes
                .iter()
                .filter_map(|node| node.try_connection().ok())
        };
        let mut con = live().next().expect("a live node");
        let slot: i64 = call(&mut con, &["CLUSTER", "KEYSLOT", key]).expect("CLUSTER KEYSLOT");
        self.nodes
            .iter()
            .position(|node| {
                let Ok(mut con) = node.try_connection() else {
                    return false;
                };
                let nodes: String = call(&mut con, &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
                let mine = nodes
                    .lines()
                    .find(|line| line.contains("myself"))
                    .unwrap_or_default();
                mine.split(' ').skip(8).any(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    match (first.parse::<i64>(), last.parse::<i64>()) {
                        (Ok(first), Ok(last)) => (first..=last).contains(&slot),
                        _ => false,
                    }
                })
            })
            .expect("some node serves every slot")
    }
}

/// A primary and its replica, after `fill(con, 0)` on the primary, a full sync, then
/// `fill(con, 1)` through the replication stream, acknowledged by the replica.
pub fn replicated(fill: impl Fn(&mut Connection, usize)) -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let mut con = primary.connection();
    fill(&mut con, 0);
    let replica = primary.replica();
    fill(&mut con, 1);
    wait_for_replicas(&mut con, 1);
    (primary, replica)
}
