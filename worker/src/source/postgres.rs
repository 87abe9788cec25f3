//! The PostgreSQL source: logical decoding with wal2json, polled through SQL.
//!
//! A fresh slot is followed by a snapshot of the tables (op `r`, version = the slot's
//! LSN, so that a change made meanwhile, which the slot delivers with a higher LSN, wins).
//! Then, every `poll_ms`, the changes after the slot's confirmed position are peeked,
//! planned with the jobs whose `source` names this server and the table, written, and
//! only then is the slot advanced past them: a crash anywhere loses nothing, and what is
//! written again carries the same VERSION (the change's LSN) and changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use redis::aio::ConnectionManager;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

use super::wal2json::{self, Change};
use crate::config::{PostgresSource, Processors};
use crate::error::{Error, Result};
use crate::event::{ChangeEvent, Op};
use crate::job::Job;
use crate::plan::{plan, Position, Write};
use crate::{metrics, sink};

pub struct PgSource {
    pub settings: PostgresSource,
    pub processors: Processors,
    /// Jobs by table (`schema.table`).
    pub routes: BTreeMap<String, Vec<Arc<Job>>>,
    pub writer: ConnectionManager,
    pub module: bool,
}

/// `X/Y` (PostgreSQL's LSN text) as a number.
pub fn parse_lsn(text: &str) -> Option<i64> {
    let (high, low) = text.split_once('/')?;
    let (high, low) = (
        i64::from_str_radix(high, 16).ok()?,
        i64::from_str_radix(low, 16).ok()?,
    );
    Some((high << 32) | low)
}

impl PgSource {
    fn name(&self) -> String {
        format!("postgres:{}", self.settings.server_name)
    }

    /// Connects and checks what the source needs, with errors that say what to do.
    async fn connect(&self) -> Result<Client> {
        let s = &self.settings;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&s.host)
            .port(s.port)
            .dbname(&s.database)
            .user(&s.user);
        if let Some(password) = &s.password {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            Error::Invalid(format!(
                "postgres '{}': cannot connect to {}:{} as {}: {e}",
                s.server_name, s.host, s.port, s.user
            ))
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!("postgres connection: {error}");
            }
        });
        let wal_level: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(pg)?
            .get(0);
        if wal_level != "logical" {
            return Err(Error::Invalid(format!(
                "postgres '{}': wal_level is '{wal_level}'; set wal_level = logical in postgresql.conf and restart PostgreSQL",
                s.server_name
            )));
        }
        for table in &s.tables {
            let found: Option<String> = client
                .query_one("SELECT to_regclass($1)::text", &[table])
                .await
                .map_err(pg)?
                .get(0);
            if found.is_none() {
                return Err(Error::Invalid(format!(
                    "postgres '{}': table {table} does not exist in database {}",
                    s.server_name, s.database
                )));
            }
        }
        Ok(client)
    }

    /// The slot's start LSN if it had to be created now (a snapshot is due), else `None`.
    async fn ensure_slot(&self, client: &Client) -> Result<Option<i64>> {
        let slot = self.settings.slot_name();
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(pg)?
            .is_some();
        if exists {
            return Ok(None);
        }
        let row = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
                &[&slot],
            )
            .await
            .map_err(|e| {
                if e.to_string().contains("wal2json") {
                    Error::Invalid(format!(
                        "postgres '{}': the wal2json output plugin is not installed on the server \
                         (Debian: apt-get install postgresql-15-wal2json)",
                        self.settings.server_name
                    ))
                } else {
                    pg(e)
                }
            })?;
        let lsn: String = row.get(0);
        tracing::info!(slot, lsn, "replication slot created");
        Ok(parse_lsn(&lsn))
    }

    /// Runs until `shutdown`: snapshot if due, then changes as they come.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let client = self.connect().await?;
        let created = self.ensure_slot(&client).await?;
        let marker = format!(
            "redsink:snapshot:{}:{}",
            self.settings.server_name,
            self.settings.slot_name()
        );
        let done: Option<String> = redis::cmd("GET")
            .arg(&marker)
            .query_async(&mut self.writer)
            .await?;
        if let Some(slot_lsn) = created.or(match done {
            Some(_) => None,
            // The slot exists but its snapshot never finished: take it again.
            None => self.confirmed_lsn(&client).await?,
        }) {
            self.snapshot(&client, slot_lsn, &mut shutdown).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
            redis::cmd("SET")
                .arg(&marker)
                .arg(slot_lsn)
                .query_async::<()>(&mut self.writer)
                .await?;
        }
        let mut attempts = 0u64;
        while !*shutdown.borrow() {
            match self
                .poll(&client, attempts + 1 >= self.processors.max_deliveries)
                .await
            {
                Ok(0) => {
                    attempts = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(self.settings.poll_ms)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => attempts = 0,
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(
                        source = self.name(),
                        attempts,
                        "changes not written, retrying: {error}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200 * attempts.min(25))) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        tracing::info!(source = self.name(), "postgres source stopped");
        Ok(())
    }

    async fn confirmed_lsn(&self, client: &Client) -> Result<Option<i64>> {
        let row = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.settings.slot_name()],
            )
            .await
            .map_err(pg)?;
        Ok(row
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(parse_lsn))
    }

    /// Every row of every table, as `r` events at the slot's LSN.
    async fn snapshot(
        &mut self,
        client: &Client,
        slot_lsn: i64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        for table in self.settings.tables.clone() {
            let total: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map_err(pg)?
                .get(0);
            let types = column_types(client, &table).await?;
            tracing::info!(table, rows = total, "snapshot started");
            let rows = client
                .query_raw(
                    &format!("SELECT row_to_json(t)::text FROM {table} t"),
                    std::iter::empty::<i32>(),
                )
                .await
                .map_err(pg)?;
            pin_mut!(rows);
            let (mut batch, mut done, mut reported) = (Vec::new(), 0i64, Instant::now());
            while let Some(row) = rows.try_next().await.map_err(pg)? {
                let text: String = row.get(0);
                batch.push(snapshot_event(&text, &types, slot_lsn)?);
                if batch.len() >= self.processors.read_batch_size {
                    done += batch.len() as i64;
                    self.write(&table, std::mem::take(&mut batch), slot_lsn, done)
                        .await?;
                    if reported.elapsed() >= Duration::from_secs(1) {
                        tracing::info!(table, done, total, "snapshot progress");
                        reported = Instant::now();
                    }
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                }
            }
            done += batch.len() as i64;
            self.write(&table, batch, slot_lsn, done).await?;
            tracing::info!(table, rows = done, "snapshot done");
        }
        Ok(())
    }

    /// Writes a snapshot batch; stream outputs get ids `<slot lsn>-<row number>`.
    async fn write(
        &mut self,
        table: &str,
        events: Vec<ChangeEvent>,
        slot_lsn: i64,
        done: i64,
    ) -> Result<()> {
        let first = done - events.len() as i64;
        let jobs = self.routes.get(table).cloned().unwrap_or_default();
        let writes = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let position = Position {
                    version: slot_lsn,
                    stream_id: format!("{slot_lsn}-{}", first + i as i64 + 1),
                    time_ms: redsink_core::time::now_ms(),
                };
                plan_all(&jobs, event, &position)
            })
            .collect::<Result<Vec<_>>>()?;
        for outcome in sink::apply(&mut self.writer, &writes, self.module).await? {
            outcome.map_err(Error::Event)?;
        }
        Ok(())
    }

    /// One poll: peeks changes, writes them, advances the slot. Returns how many changes
    /// there were. With `last_attempt`, changes that keep failing go to the dead-letter
    /// stream so that the slot can move on.
    async fn poll(&mut self, client: &Client, last_attempt: bool) -> Result<usize> {
        let started = Instant::now();
        let tables = self.settings.tables.join(",");
        let batch = self.processors.read_batch_size as i32;
        let rows = client
            .query(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, $2, \
                 'format-version', '2', 'include-lsn', 'true', 'include-types', 'true', 'add-tables', $3)",
                &[&self.settings.slot_name(), &batch, &tables],
            )
            .await
            .map_err(pg)?;
        let Some(last) = rows.last().map(|row| row.get::<_, String>(0)) else {
            return Ok(0);
        };
        let mut changes = Vec::new();
        for row in &rows {
            let (lsn_text, data): (String, String) = (row.get(0), row.get(1));
            let lsn = parse_lsn(&lsn_text).unwrap_or(0);
            let decoded = wal2json::decode(&data, lsn);
            if let Ok(Change::Truncate { table }) = &decoded {
                tracing::warn!(
                    table,
                    "TRUNCATE is not applied to Redis: the keys it empties cannot be listed"
                );
            }
            changes.push((lsn, data, decoded));
        }
        let mut planned = Vec::with_capacity(changes.len());
        let mut errors = Vec::with_capacity(changes.len());
        for (lsn, _, decoded) in &changes {
            let writes = match decoded {
                Ok(Change::Row { table, event }) => {
                    let position = Position {
                        version: *lsn,
                        stream_id: format!("{lsn}-0"),
                        time_ms: redsink_core::time::now_ms(),
                    };
                    plan_all(
                        &self.routes.get(table).cloned().unwrap_or_default(),
                        event,
                        &position,
                    )
                }
                Ok(_) => Ok(Vec::new()),
                Err(error) => Err(Error::Event(error.to_string())),
            };
            match writes {
                Ok(writes) => {
                    planned.push(writes);
                    errors.push(None);
                }
                Err(error) => {
                    planned.push(Vec::new());
                    errors.push(Some(error.to_string()));
                }
            }
        }
        let applied = sink::apply(&mut self.writer, &planned, self.module).await?;
        let failures: Vec<(usize, String)> = errors
            .into_iter()
            .zip(applied)
            .enumerate()
            .filter_map(|(i, (plan_error, applied))| {
                plan_error.map_or(applied, Err).err().map(|e| (i, e))
            })
            .collect();
        if !failures.is_empty() {
            if !last_attempt {
                return Err(Error::Event(format!(
                    "{} change(s) failed, first: {}",
                    failures.len(),
                    failures[0].1
                )));
            }
            for (i, error) in &failures {
                let (lsn, data, _) = &changes[*i];
                let dlq = self.processors.dlq_stream.replace("{stream}", &self.name());
                redis::cmd("XADD")
                    .arg(&dlq)
                    .arg("*")
                    .arg("source")
                    .arg(self.name())
                    .arg("lsn")
                    .arg(lsn)
                    .arg("error")
                    .arg(error)
                    .arg("change")
                    .arg(data)
                    .query_async::<String>(&mut self.writer)
                    .await?;
                tracing::error!(
                    source = self.name(),
                    lsn,
                    dlq,
                    "change moved to the dead-letter stream: {error}"
                );
            }
        }
        client
            .query_one(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)::text",
                &[&self.settings.slot_name(), &last],
            )
            .await
            .map_err(pg)?;
        metrics::record(&metrics::Batch {
            stream: &self.name(),
            read: changes.len(),
            written: changes.len() - failures.len(),
            acked: changes.len(),
            failed: failures.len(),
            dead_lettered: failures.len(),
            took: started.elapsed(),
        });
        Ok(changes.len())
    }
}

fn plan_all(jobs: &[Arc<Job>], event: &ChangeEvent, position: &Position) -> Result<Vec<Write>> {
    let mut writes = Vec::new();
    for job in jobs {
        writes.extend(
            plan(job, event, position)
                .map_err(|e| Error::Event(format!("job {}: {e}", job.name)))?,
        );
    }
    Ok(writes)
}

/// The table's column types, by column name (`format_type`, as wal2json names them).
async fn column_types(client: &Client, table: &str) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// A snapshot row (row_to_json text) as an `r` event, values mapped like wal2json's.
fn snapshot_event(text: &str, types: &BTreeMap<String, String>, lsn: i64) -> Result<ChangeEvent> {
    let raw: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| Error::Event(format!("snapshot row: {e}")))?;
    let mut row = Map::new();
    for (name, value) in raw {
        let kind = types.get(&name).map_or("text", String::as_str);
        let mapped: Value = wal2json::value(kind, value.get())?;
        row.insert(name, mapped);
    }
    Ok(ChangeEvent {
        op: Op::Read,
        row,
        lsn: Some(lsn),
    })
}

fn pg(error: tokio_postgres::Error) -> Error {
    Error::Invalid(format!("postgres: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_as_numbers() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn snapshot_rows_map_like_changes() {
        let types: BTreeMap<String, String> = [
            ("InvoiceId", "integer"),
            ("Total", "numeric(10,2)"),
            ("InvoiceDate", "timestamp without time zone"),
            ("Tags", "text[]"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect();
        let event = snapshot_event(
            r#"{"InvoiceId":1,"Total":3.90,"InvoiceDate":"2021-01-01T00:00:00","Tags":["a","b"]}"#,
            &types,
            7,
        )
        .unwrap();
        assert_eq!(
            Value::Object(event.row),
            serde_json::json!({"InvoiceId":1,"Total":"3.90","InvoiceDate":"2021-01-01T00:00:00Z","Tags":["a","b"]})
        );
        assert_eq!((event.op, event.lsn), (Op::Read, Some(7)));
    }
}
