//! The worker's configuration file (`config.yaml`): connections, sources, processor
//! settings and the jobs folder.
//!
//! `${NAME}` in any string value is replaced by the environment variable `NAME` (or by
//! `default` in `${NAME:-default}` when it is not set), after the YAML is parsed, so that
//! a password full of YAML syntax stays a password. Numeric settings accept such text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named connections; RDI job files refer to them (`connection: target`).
    pub connections: BTreeMap<String, Connection>,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub processors: Processors,
    /// The folder of RDI job files, relative to the configuration file.
    pub jobs: Option<PathBuf>,
    /// Prometheus metrics at `http://<address>/metrics`; off without it.
    pub metrics: Option<Metrics>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Where to listen, e.g. `127.0.0.1:9121`.
    pub address: std::net::SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Connection {
    Redis(RedisConnection),
}

/// Where a Redis is: `host`/`port`, a `url` (`redis://` or `rediss://`), or `urls` for
/// the nodes of a cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConnection {
    pub host: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    pub port: Option<u16>,
    pub url: Option<String>,
    /// A Redis Cluster's nodes (some of them: the rest are found).
    pub urls: Option<Vec<String>>,
    /// `url` (or host/port) is a node of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    pub db: Option<i64>,
    /// Connect with TLS (implied by `rediss://`).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only: open to man-in-the-middle attacks).
    #[serde(default)]
    pub skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    RedisStream(RedisStreamSource),
    Postgres(PostgresSource),
}

/// Stream keys read through one consumer group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSource {
    /// The connection the streams are on.
    pub connection: String,
    /// A glob pattern (`data:*`: new matching streams are picked up while running) or a
    /// list of keys.
    pub streams: Streams,
    /// The consumer group (created if missing).
    #[serde(default = "default_group")]
    pub group: String,
    /// This worker's consumer name in the group (default: the host name). It must stay the
    /// same across restarts and differ between workers sharing the group.
    pub consumer: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Streams {
    Pattern(String),
    Keys(Vec<String>),
}

/// A PostgreSQL table set captured by logical decoding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// What job files' `source.server_name` matches.
    pub server_name: String,
    pub host: String,
    #[serde(default = "default_postgres_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// Connect with TLS (required: no fallback to plain text).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the server's certificate (default: the system's).
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only: open to man-in-the-middle attacks).
    #[serde(default)]
    pub skip_verify: bool,
    /// Tables to capture, as `schema.table`.
    pub tables: Vec<String>,
    /// The logical replication slot (default `redsink_<server_name>`), created if missing.
    pub slot: Option<String>,
    /// How changes are decoded and fetched: `pgoutput` (the default, built into
    /// PostgreSQL, streamed) or `wal2json` (the extension, polled).
    #[serde(default)]
    pub plugin: Plugin,
    /// The publication pgoutput sends the changes of (default `redsink_<server_name>`,
    /// created for `tables` if missing); one named here must exist.
    pub publication: Option<String>,
    /// How often the slot is polled for changes with wal2json, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// The most changes of one transaction held in memory at once: a transaction with
    /// more is written in parts of this many (each part one MULTI/EXEC), so it may be seen
    /// partly applied.
    #[serde(default = "default_max_transaction_changes")]
    pub max_transaction_changes: usize,
    /// Tables the snapshot reads at once, each on its own connection (written to Redis
    /// one table after another all the same).
    #[serde(default = "default_snapshot_readers")]
    pub snapshot_readers: usize,
    /// The connection the changes are written to (default `target`).
    #[serde(default = "default_target")]
    pub connection: String,
}

/// The logical decoding output plugin a source's slot uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plugin {
    /// Built into PostgreSQL 10 and later; changes pushed over the streaming replication
    /// protocol.
    #[default]
    Pgoutput,
    /// The wal2json extension; the slot polled through SQL every `poll_ms`.
    Wal2json,
}

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Pgoutput => "pgoutput",
            Plugin::Wal2json => "wal2json",
        }
    }
}

/// A part of 10,000 changes is one MULTI/EXEC that Redis runs in one go: about 50 ms
/// with the module's commands, during which other clients wait.
fn default_max_transaction_changes() -> usize {
    10_000
}

fn default_snapshot_readers() -> usize {
    2
}

fn default_poll_ms() -> u64 {
    100
}

fn default_target() -> String {
    "target".into()
}

impl RedisStreamSource {
    /// The source's name in logs, metrics, its status hash and the status command.
    pub fn name(&self) -> String {
        format!("redis-stream:{}", self.group)
    }
}

impl PostgresSource {
    /// The source's name in logs, metrics, its status hash and the status command; its
    /// dead-letter stream is named after it.
    pub fn name(&self) -> String {
        format!("postgres:{}", self.server_name)
    }

    /// The replication slot's name: lower-case letters, digits and underscores.
    pub fn slot_name(&self) -> String {
        self.slot.clone().unwrap_or_else(|| self.default_name())
    }

    /// The publication's name (pgoutput).
    pub fn publication_name(&self) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| self.default_name())
    }

    /// `redsink_<server_name>`, in the letters a slot's name may have.
    fn default_name(&self) -> String {
        let name: String = self
            .server_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("redsink_{name}")
    }
}

/// How events are processed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processors {
    /// Entries read per batch.
    pub read_batch_size: usize,
    /// How long a read waits for new entries, in milliseconds.
    pub block_ms: u64,
    /// Deliveries of an entry before it goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// The dead-letter stream; `{stream}` is replaced by the source stream's name.
    pub dlq_stream: String,
    /// Pending entries idle longer than this (ms) are taken over from their consumer.
    pub reclaim_idle_ms: u64,
    /// Prefix of the streams RDI jobs read: `<prefix><server>.<schema>.<table>`.
    pub stream_prefix: String,
    /// Replicas (of every primary written) that must confirm a batch's writes before it
    /// counts as done (WAIT); 0: none.
    pub wait_replicas: u64,
    /// How long to wait for them, in milliseconds.
    pub wait_timeout_ms: u64,
    /// When they do not confirm in time: `retry` the batch (the default: nothing is
    /// acknowledged that a failover could lose), or `continue` (acknowledged, counted in
    /// `redsink_wait_timeouts_total`, and said in the log).
    pub on_wait_timeout: OnWaitTimeout,
    /// Headroom: a batch waits while the target uses more than this percent of its
    /// `maxmemory` (INFO memory; one server, with a maxmemory set); none by default.
    pub max_memory_percent: Option<u8>,
}

/// What a batch whose writes the replicas did not confirm in time becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnWaitTimeout {
    #[default]
    Retry,
    Continue,
}

impl Default for Processors {
    fn default() -> Self {
        Processors {
            read_batch_size: 2000,
            block_ms: 1000,
            max_deliveries: 5,
            dlq_stream: "dlq:{stream}".into(),
            reclaim_idle_ms: 30_000,
            stream_prefix: "data:".into(),
            wait_replicas: 0,
            wait_timeout_ms: 1000,
            on_wait_timeout: OnWaitTimeout::Retry,
            max_memory_percent: None,
        }
    }
}

/// A number written as a number or as text (what `${PORT}` becomes).
fn number_or_text<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + TryFrom<u64>,
{
    use serde::de::Error as _;
    match Value::deserialize(deserializer)? {
        Value::Number(number) => number
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{number:?} is out of range"))),
        Value::String(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("'{text}' is not a number"))),
        Value::Null => Ok(None),
        _ => Err(D::Error::custom("expected a number")),
    }
}

fn default_group() -> String {
    "redsink".into()
}

fn default_postgres_port() -> u16 {
    5432
}

impl Config {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_owned(), e))?;
        let mut config =
            Config::parse(&text, &|name| std::env::var(name).ok()).map_err(|e| e.in_file(path))?;
        if let Some(jobs) = &config.jobs {
            let base = path.parent().unwrap_or(Path::new("."));
            config.jobs = Some(base.join(jobs));
        }
        Ok(config)
    }

    /// Parses configuration text, taking `${NAME}` values from `env`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut tree: Value =
            serde_norway::from_str(text).map_err(|e| Error::Yaml(e.to_string()))?;
        expand(&mut tree, env)?;
        let config: Config =
            serde_norway::from_value(tree).map_err(|e| Error::Yaml(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        for (name, Connection::Redis(redis)) in &self.connections {
            let ways = [
                redis.url.is_some(),
                redis.urls.is_some(),
                redis.host.is_some(),
            ];
            if ways.iter().filter(|&&given| given).count() != 1 {
                return Err(Error::Invalid(format!(
                    "connection '{name}' needs exactly one of host (with port), url or urls"
                )));
            }
        }
        for source in &self.sources {
            if let Source::RedisStream(streams) = source {
                if !self.connections.contains_key(&streams.connection) {
                    return Err(Error::Invalid(format!(
                        "a redis-stream source uses connection '{}', which is not defined under connections",
                        streams.connection
                    )));
                }
            }
        }
        let processors = &self.processors;
        if processors.read_batch_size == 0 || processors.max_deliveries == 0 {
            return Err(Error::Invalid(
                "processors.read_batch_size and processors.max_deliveries must be at least 1"
                    .into(),
            ));
        }
        if let Some(percent) = processors
            .max_memory_percent
            .filter(|p| !(1..=100).contains(p))
        {
            return Err(Error::Invalid(format!(
                "processors.max_memory_percent must be from 1 to 100 (a share of the target's maxmemory), got {percent}"
            )));
        }
        Ok(())
    }
}

/// Replaces `${NAME}` in every string of `tree`.
fn expand(tree: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    match tree {
        Value::String(text) => *text = expand_text(text, env)?,
        Value::Sequence(items) => items.iter_mut().try_for_each(|item| expand(item, env))?,
        Value::Mapping(map) => map
            .iter_mut()
            .try_for_each(|(_, value)| expand(value, env))?,
        Value::Tagged(tagged) => expand(&mut tagged.value, env)?,
        _ => {}
    }
    Ok(())
}

fn expand_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Invalid(format!("unclosed ${{ in '{text}'")))?;
        let reference = &after[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        let value = env(name)
            .or_else(|| default.map(str::to_owned))
            .ok_or_else(|| Error::MissingEnv(name.to_owned()))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r#"
connections:
  target:                      # the name RDI jobs refer to with `connection: target`
    type: redis
    host: 127.0.0.1            # or url: redis://… / rediss://…, or urls: [...] for a cluster
    port: 6379
    password: ${REDIS_PASSWORD}
sources:
  - type: redis-stream
    connection: target
    streams: "data:*"          # a pattern or a list of keys
    group: redsink
  - type: postgres
    server_name: chinook       # what job files' source.server_name matches
    host: 127.0.0.1
    port: 5432
    database: chinook
    user: postgres
    password: ${PGPASSWORD}
    tables: [public.invoice]
processors:
  read_batch_size: 2000
  max_deliveries: 5
  dlq_stream: "dlq:{stream}"
jobs: ./jobs                   # a folder of RDI job files
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "REDIS_PASSWORD" => Some("s3cret: #not a comment".into()),
            "PGPASSWORD" => Some("pg".into()),
            _ => None,
        }
    }

    #[test]
    fn the_design_example_parses() {
        let config = Config::parse(DESIGN_EXAMPLE, &env).unwrap();
        let Connection::Redis(target) = &config.connections["target"];
        assert_eq!(target.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(target.password.as_deref(), Some("s3cret: #not a comment"));
        assert_eq!(config.sources.len(), 2);
        let Source::RedisStream(streams) = &config.sources[0] else {
            panic!("first source is the redis stream");
        };
        assert!(matches!(&streams.streams, Streams::Pattern(p) if p == "data:*"));
        assert_eq!(streams.group, "redsink");
        assert_eq!(config.processors.max_deliveries, 5);
        assert_eq!(
            config.processors.block_ms, 1000,
            "defaults fill what is not given"
        );
        assert_eq!(config.jobs.as_deref(), Some(Path::new("./jobs")));
    }

    #[test]
    fn clear_errors() {
        let missing = Config::parse(DESIGN_EXAMPLE, &|_| None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable REDIS_PASSWORD is not set"
        );
        let typo = Config::parse("connections: {}\nprocesors: {}\n", &env).unwrap_err();
        assert!(
            typo.to_string().contains("unknown field `procesors`"),
            "{typo}"
        );
        let both = Config::parse(
            "connections:\n  t:\n    type: redis\n    host: h\n    url: redis://h\n",
            &env,
        )
        .unwrap_err();
        assert!(both.to_string().contains("exactly one of host"), "{both}");
        let dangling = Config::parse(
            "connections: {}\nsources:\n  - type: redis-stream\n    connection: nope\n    streams: [a]\n",
            &env,
        )
        .unwrap_err();
        assert!(
            dangling.to_string().contains("connection 'nope'"),
            "{dangling}"
        );
        let unclosed = Config::parse(
            "connections:\n  t:\n    type: redis\n    url: ${OOPS\n",
            &env,
        )
        .unwrap_err();
        assert!(unclosed.to_string().contains("unclosed"), "{unclosed}");
    }

    #[test]
    fn max_memory_percent_is_a_share_of_maxmemory() {
        let with = |percent: &str| {
            Config::parse(
                &format!(
                    "connections:\n  target: {{type: redis, host: h}}\n\
                     processors: {{max_memory_percent: {percent}}}\n"
                ),
                &env,
            )
        };
        assert_eq!(with("90").unwrap().processors.max_memory_percent, Some(90));
        for bad in ["0", "101"] {
            let refused = with(bad).unwrap_err().to_string();
            assert!(
                refused.contains(&format!(
                    "max_memory_percent must be from 1 to 100 (a share of the target's \
                     maxmemory), got {bad}"
                )),
                "{refused}"
            );
        }
    }

    #[test]
    fn defaults_and_numbers_from_the_environment() {
        let defaulted = Config::parse(
            "connections:\n  t: {type: redis, host: h, port: \"${NOPE:-7000}\", db: \"${DB}\"}\n",
            &|name| (name == "DB").then(|| "3".to_owned()),
        )
        .unwrap();
        let Connection::Redis(t) = &defaulted.connections["t"];
        assert_eq!((t.port, t.db), (Some(7000), Some(3)));
        let bad_port = Config::parse(
            "connections:\n  t: {type: redis, host: h, port: \"${NOPE:-lots}\"}\n",
            &env,
        )
        .unwrap_err();
        assert!(
            bad_port.to_string().contains("'lots' is not a number"),
            "{bad_port}"
        );
    }
}
