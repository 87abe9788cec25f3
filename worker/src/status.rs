//! `redsink-worker status`: what each source has left to do, read from Redis (and from
//! PostgreSQL for slots) only — so it works while the worker runs elsewhere, or not at
//! all.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use std::sync::Arc;

use crate::config::{Config, PostgresSource, Source};
use crate::connect::Redis;
use crate::dlq::{dead_letter_streams, open_connections};
use crate::error::Result;
use crate::job::Job;
use crate::source::redis_stream::{group_info, matching_streams, oldest_pending_ms};
use crate::source::{postgres, status_key};

#[derive(Debug, Serialize)]
pub struct Status {
    /// The redsink module on each connection: its version, or `None` if not loaded.
    pub modules: BTreeMap<String, Option<String>>,
    pub streams: Vec<StreamStatus>,
    pub postgres: Vec<PostgresStatus>,
    /// What each source's worker last said of its failures, by source
    /// (`redis-stream:<group>`, `postgres:<server_name>`), where it has failed.
    pub failures: BTreeMap<String, SourceFailure>,
}

/// A source's last error, as its worker kept it.
#[derive(Debug, Serialize)]
pub struct SourceFailure {
    pub error: String,
    /// When, in ms since the epoch.
    pub at_ms: Option<i64>,
    /// Failures in a row now: 0 once the source works again.
    pub failing: u64,
}

/// One stream a redis-stream source reads.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub connection: String,
    pub stream: String,
    pub group: String,
    /// Entries in the stream.
    pub length: i64,
    /// Whether the consumer group exists (the worker creates it when it finds the stream).
    pub group_exists: bool,
    /// Entries not yet delivered to the group (`None`: the server cannot tell).
    pub lag: Option<i64>,
    /// Entries delivered and not acknowledged.
    pub pending: i64,
    /// How long ago the oldest pending entry was added, in milliseconds.
    pub oldest_pending_ms: Option<i64>,
    /// Entries in its dead-letter stream.
    pub dead_letters: i64,
}

/// One postgres source.
#[derive(Debug, Serialize)]
pub struct PostgresStatus {
    pub server_name: String,
    pub slot: String,
    /// The slot as PostgreSQL has it; `None` if it does not exist (yet).
    pub slot_state: Option<SlotState>,
    /// Tables whose snapshot is done, and those still due.
    pub snapshot_done: Vec<String>,
    pub snapshot_due: Vec<String>,
    pub dead_letters: i64,
    /// Why PostgreSQL could not be asked, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SlotState {
    pub plugin: String,
    /// Whether a worker is streaming from it now.
    pub active: bool,
    pub confirmed_lsn: Option<String>,
    /// WAL written since the confirmed position, in bytes: what the slot keeps.
    pub behind_bytes: Option<i64>,
}

/// Reads the status of every source of `config` (whose `jobs` say where each writes).
pub async fn status(config: &Config, jobs: &[Arc<Job>]) -> Result<Status> {
    let mut cons = open_connections(config).await?;
    let mut modules = BTreeMap::new();
    for (name, con) in cons.iter_mut() {
        modules.insert(name.clone(), module_version(con).await?);
    }
    // Each source's dead letters, on the connection it writes to.
    let mut dead_letters = BTreeMap::new();
    for letters in dead_letter_streams(config, jobs, &mut cons, None).await? {
        if let Some(con) = cons.get_mut(&letters.connection) {
            let length: i64 = redis::cmd("XLEN")
                .arg(&letters.dlq)
                .query_async(con)
                .await?;
            dead_letters.insert(letters.source, length);
        }
    }
    let dead_letters = |source: &str| dead_letters.get(source).copied().unwrap_or(0);
    let (mut streams, mut postgres) = (Vec::new(), Vec::new());
    let mut failures = BTreeMap::new();
    for source in &config.sources {
        match source {
            Source::RedisStream(settings) => {
                let Some(con) = cons.get_mut(&settings.connection) else {
                    continue;
                };
                let source = settings.name();
                if let Some(failure) = last_failure(con, &source).await? {
                    failures.insert(source, failure);
                }
                for stream in matching_streams(con, &settings.streams).await? {
                    let mut shown =
                        stream_status(con, &settings.connection, &stream, &settings.group).await?;
                    shown.dead_letters = dead_letters(&stream);
                    streams.push(shown);
                }
            }
            Source::Postgres(settings) => {
                let Some(con) = cons.get_mut(&settings.connection) else {
                    continue;
                };
                let source = settings.name();
                let mut shown = postgres_status(con, settings).await?;
                shown.dead_letters = dead_letters(&source);
                if let Some(failure) = last_failure(con, &source).await? {
                    failures.insert(source, failure);
                }
                postgres.push(shown);
            }
        }
    }
    Ok(Status {
        modules,
        streams,
        postgres,
        failures,
    })
}

/// The last error `source`'s worker kept, if it ever failed.
async fn last_failure(con: &mut Redis, source: &str) -> Result<Option<SourceFailure>> {
    let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(status_key(source))
        .query_async(con)
        .await?;
    Ok(fields.get("error").map(|error| SourceFailure {
        error: error.clone(),
        at_ms: fields.get("at").and_then(|at| at.parse().ok()),
        failing: fields
            .get("failing")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }))
}

/// The redsink module's version on `con` (MODULE LIST), if it is loaded.
async fn module_version(con: &mut Redis) -> Result<Option<String>> {
    let modules: Vec<BTreeMap<String, redis::Value>> =
        redis::cmd("MODULE").arg("LIST").query_async(con).await?;
    Ok(modules
        .iter()
        .find(|module| module.get("name") == Some(&redis::Value::BulkString(b"redsink".to_vec())))
        .and_then(|module| match module.get("ver") {
            Some(redis::Value::Int(version)) => Some(version_text(*version)),
            _ => None,
        }))
}

/// A module version as Redis keeps it (`major * 10000 + minor * 100 + patch`), as text.
fn version_text(version: i64) -> String {
    format!(
        "{}.{}.{}",
        version / 10_000,
        version / 100 % 100,
        version % 100
    )
}

/// A stream's group (its dead letters are counted by the caller).
async fn stream_status(
    con: &mut Redis,
    connection: &str,
    stream: &str,
    group: &str,
) -> Result<StreamStatus> {
    let length: i64 = redis::cmd("XLEN").arg(stream).query_async(con).await?;
    let info = group_info(con, stream, group).await?;
    let oldest_pending_ms = match &info {
        Some(info) if info.pending > 0 => oldest_pending_ms(con, stream, group)
            .await?
            .map(|added| redsink_core::time::now_ms() - added),
        _ => None,
    };
    Ok(StreamStatus {
        connection: connection.to_owned(),
        stream: stream.to_owned(),
        group: group.to_owned(),
        length,
        group_exists: info.is_some(),
        lag: info.as_ref().and_then(|info| info.lag),
        pending: info.as_ref().map_or(0, |info| info.pending),
        oldest_pending_ms,
        dead_letters: 0,
    })
}

/// A postgres source's slot and snapshot (its dead letters are counted by the caller).
async fn postgres_status(con: &mut Redis, settings: &PostgresSource) -> Result<PostgresStatus> {
    let marker: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(postgres::snapshot_marker(settings))
        .query_async(con)
        .await?;
    let (snapshot_done, snapshot_due) = settings
        .tables
        .iter()
        .cloned()
        .partition(|table| marker.contains_key(&format!("done:{table}")));
    let (slot_state, error) = match slot_state(settings).await {
        Ok(state) => (state, None),
        Err(error) => (None, Some(error.to_string())),
    };
    Ok(PostgresStatus {
        server_name: settings.server_name.clone(),
        slot: settings.slot_name(),
        slot_state,
        snapshot_done,
        snapshot_due,
        dead_letters: 0,
        error,
    })
}

async fn slot_state(settings: &PostgresSource) -> Result<Option<SlotState>> {
    let client = postgres::open(settings).await?;
    let row = client
        .query_opt(
            "SELECT plugin::text, active, confirmed_flush_lsn::text, \
             pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&settings.slot_name()],
        )
        .await?;
    Ok(row.map(|row| SlotState {
        plugin: row.get(0),
        active: row.get(1),
        confirmed_lsn: row.get(2),
        behind_bytes: row.get(3),
    }))
}

impl Status {
    /// The status as tables, for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (connection, version) in &self.modules {
            let _ = writeln!(
                out,
                "connection {connection}: {}",
                match version {
                    Some(version) => format!("redsink module {version}"),
                    None => "no redsink module (plain commands)".into(),
                }
            );
        }
        if !self.streams.is_empty() {
            let rows: Vec<Vec<String>> = self
                .streams
                .iter()
                .map(|s| {
                    vec![
                        s.stream.clone(),
                        if s.group_exists {
                            s.group.clone()
                        } else {
                            format!("{} (not created)", s.group)
                        },
                        s.length.to_string(),
                        s.lag.map_or("?".into(), |lag| lag.to_string()),
                        s.pending.to_string(),
                        s.oldest_pending_ms
                            .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1e3)),
                        s.dead_letters.to_string(),
                    ]
                })
                .collect();
            out += "\n";
            out += &columns(
                &[
                    "STREAM",
                    "GROUP",
                    "LENGTH",
                    "LAG",
                    "PENDING",
                    "OLDEST PENDING",
                    "DEAD LETTERS",
                ],
                &rows,
            );
        }
        if !self.postgres.is_empty() {
            let rows: Vec<Vec<String>> = self
                .postgres
                .iter()
                .map(|p| {
                    let (plugin, active, behind) = match &p.slot_state {
                        Some(slot) => (
                            slot.plugin.clone(),
                            if slot.active { "yes" } else { "no" }.to_owned(),
                            slot.behind_bytes.map_or("?".into(), |b| format!("{b} B")),
                        ),
                        None if p.error.is_some() => ("?".into(), "?".into(), "?".into()),
                        None => ("(no slot)".into(), "-".into(), "-".into()),
                    };
                    let snapshot = if p.snapshot_due.is_empty() {
                        "done".to_owned()
                    } else {
                        format!("due: {}", p.snapshot_due.join(", "))
                    };
                    vec![
                        p.server_name.clone(),
                        p.slot.clone(),
                        plugin,
                        active,
                        behind,
                        snapshot,
                        p.dead_letters.to_string(),
                    ]
                })
                .collect();
            out += "\n";
            out += &columns(
                &[
                    "POSTGRES",
                    "SLOT",
                    "PLUGIN",
                    "ACTIVE",
                    "BEHIND",
                    "SNAPSHOT",
                    "DEAD LETTERS",
                ],
                &rows,
            );
            for p in &self.postgres {
                if let Some(error) = &p.error {
                    let _ = writeln!(out, "postgres '{}': {error}", p.server_name);
                }
            }
        }
        if !self.failures.is_empty() {
            out += "\n";
        }
        for (source, failure) in &self.failures {
            let ago = failure.at_ms.map_or(String::new(), |at| {
                format!(
                    " {:.0} s ago",
                    (redsink_core::time::now_ms() - at).max(0) as f64 / 1e3
                )
            });
            let now = match failure.failing {
                0 => "works again".to_owned(),
                n => format!("failing ({n} in a row)"),
            };
            let _ = writeln!(out, "{source}: {now}; last error{ago}: {}", failure.error);
        }
        out
    }
}

/// Rows under a header, each column as wide as its widest cell.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_columns_read_as_written() {
        assert_eq!(version_text(10203), "1.2.3");
        assert_eq!(version_text(1), "0.0.1");
        assert_eq!(
            columns(&["A", "LONG"], &[vec!["wide cell".into(), "x".into()]]),
            "A          LONG\nwide cell  x\n"
        );
    }
}
