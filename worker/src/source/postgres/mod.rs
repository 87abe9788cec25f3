//! The PostgreSQL source: logical decoding with wal2json, polled through SQL.
//!
//! A fresh slot is followed by a snapshot of the tables (see [`snapshot`]). Then, every
//! `poll_ms`, the changes after the slot's confirmed position are peeked and handed to
//! the [pipeline](crate::pipeline) (routed by table to the jobs whose `source` names this
//! server), and only once it reports them all done is the slot advanced past them: a
//! crash anywhere loses nothing, and what is written again changes nothing.
//!
//! Order: a change's VERSION is its own LSN (changes of one row are ordered by PostgreSQL's
//! row locks, so their LSNs rise in commit order); its stream id is `<commit LSN>-<n>`,
//! n counting the transaction's row changes, so that ids rise in the order transactions
//! commit even when their changes interleave in the WAL, and a replay gets the same ids.

mod snapshot;
mod table;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::watch;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use self::snapshot::{Progress, Rows};
use crate::config::{PostgresSource, Processors};
use crate::connect::Redis;
use crate::error::{describe_postgres, Error, Result};
use crate::format::wal2json::{self, Change};
use crate::format::{ChangeEvent, Op, Order};
use crate::pipeline::{Delivered, Delivery, Feed, Fields, Pipeline};
use crate::plan::{Position, Version};
use crate::source::Failures;

pub struct PgSource {
    pub settings: PostgresSource,
    pub processors: Processors,
    /// Plans and writes the changes; its routes are tables (`schema.table`).
    pub pipeline: Pipeline,
    pub writer: Redis,
    /// Each captured table's columns, read once: what an update that wal2json sends
    /// without some of them (unchanged TOASTed values) lacks.
    pub columns: BTreeMap<String, Vec<String>>,
}

/// After this many polls without changes, the slot is moved to the server's WAL position
/// (10 s at the default `poll_ms`).
const POLLS_BEFORE_IDLE_ADVANCE: u64 = 100;

/// What one poll of the slot found.
struct Polled {
    /// Messages peeked (row changes and transaction boundaries).
    messages: usize,
    /// Changes that could not be written; the slot was not advanced past them.
    failed: usize,
}

impl PgSource {
    fn name(&self) -> String {
        format!("postgres:{}", self.settings.server_name)
    }

    fn snapshot_marker(&self) -> String {
        format!(
            "redsink:snapshot:{}:{}",
            self.settings.server_name,
            self.settings.slot_name()
        )
    }

    /// Runs until `shutdown`: snapshot if due, then changes as they come. A bad
    /// configuration fails at once; a connection lost later is retried with backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut client = self.connect().await?;
        let created = self.ensure_slot(&client).await?;
        let mut snapshot = self.snapshot_due(&client, created).await?;
        tracing::info!(
            source = self.name(),
            slot = self.settings.slot_name(),
            tables = self.settings.tables.join(", "),
            snapshot = match &snapshot {
                Some(progress) => progress.due.join(", "),
                None => "done".into(),
            },
            "postgres source started"
        );
        let mut failures = Failures::new(self.name());
        loop {
            let outcome = self
                .follow(&client, &mut snapshot, &mut failures, &mut shutdown)
                .await;
            let Err(error) = outcome else { break };
            if *shutdown.borrow() {
                break;
            }
            let delay = Duration::from_millis(200 * (failures.in_a_row() + 1).min(25));
            failures.failed(&error, delay);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
            if client.is_closed() {
                match self.connect().await {
                    Ok(reconnected) => {
                        tracing::info!(source = self.name(), "reconnected to postgres");
                        client = reconnected;
                    }
                    Err(error) => tracing::warn!(source = self.name(), "{error}"),
                }
            }
        }
        tracing::info!(source = self.name(), "postgres source stopped");
        Ok(())
    }

    /// The snapshot if one is due, then the slot's changes until `shutdown`.
    async fn follow(
        &mut self,
        client: &Client,
        snapshot: &mut Option<Progress>,
        failures: &mut Failures,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        if let Some(progress) = snapshot {
            self.snapshot(client, progress, shutdown).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
            *snapshot = None;
        }
        let (mut attempts, mut moved_while_idle) = (0u64, Instant::now());
        while !*shutdown.borrow() {
            let move_if_idle = moved_while_idle.elapsed()
                >= Duration::from_millis(self.settings.poll_ms * POLLS_BEFORE_IDLE_ADVANCE);
            let polled = self.poll(client, attempts + 1, move_if_idle).await?;
            failures.succeeded();
            if move_if_idle || polled.messages > 0 {
                moved_while_idle = Instant::now();
            }
            let pause = if polled.failed > 0 {
                attempts += 1;
                tracing::warn!(
                    source = self.name(),
                    attempts,
                    failed = polled.failed,
                    "changes not written, retrying"
                );
                200 * attempts.min(25)
            } else {
                attempts = 0;
                if polled.messages > 0 {
                    continue;
                }
                self.settings.poll_ms
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Connects and checks what the source needs, with errors that say what to do.
    async fn connect(&self) -> Result<Client> {
        let s = &self.settings;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&s.host)
            .port(s.port)
            .dbname(&s.database)
            .user(&s.user)
            .application_name("redsink-worker")
            // Values are read as text in these styles (format::postgres), whatever the
            // server's defaults.
            .options("-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC -c lc_monetary=C")
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = &s.password {
            config.password(password);
        }
        let connected = if s.tls {
            config.ssl_mode(SslMode::Require);
            let connector = tls::connector(s.ca_cert.as_deref(), s.skip_verify)?;
            config.connect(connector).await.map(|(client, connection)| {
                tokio::spawn(watch_connection(connection));
                client
            })
        } else {
            config.connect(NoTls).await.map(|(client, connection)| {
                tokio::spawn(watch_connection(connection));
                client
            })
        };
        let client = connected.map_err(|e| {
            Error::Invalid(format!(
                "postgres '{}': cannot connect to {}:{} as {}: {}; check host, port, database, \
                 user and password (write `password: ${{PGPASSWORD}}` to take it from the environment)",
                s.server_name,
                s.host,
                s.port,
                s.user,
                describe_postgres(&e)
            ))        })?;
        let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
        if wal_level != "logical" {
            return Err(Error::Invalid(format!(
                "postgres '{}': wal_level is '{wal_level}'; set wal_level = logical in postgresql.conf and restart PostgreSQL",
                s.server_name
            )));
        }
        for table in &s.tables {
            let identity: Option<(String, bool)> = client
                .query_opt(
                    "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i \
                     WHERE i.indrelid = c.oid AND i.indisprimary) \
                     FROM pg_class c WHERE c.oid = to_regclass($1)",
                    &[&table::sql_name(table)],
                )
                .await?
                .map(|row| (row.get(0), row.get(1)));
            match identity {
                None => {
                    return Err(Error::Invalid(format!(
                        "postgres '{}': table {table} does not exist in database {} \
                         (tables are named schema.table as they are, e.g. public.invoice: \
                         case, spaces and quotes included)",
                        s.server_name, s.database
                    )))
                }
                Some((identity, has_key)) if identity == "n" || (identity == "d" && !has_key) => {
                    tracing::warn!(
                        table,
                        "no replica identity: updates and deletes of this table cannot be captured; \
                         add a primary key or ALTER TABLE {table} REPLICA IDENTITY FULL"
                    )
                }
                Some((identity, _)) if identity == "d" => tracing::info!(
                    table,
                    "deletes carry only the primary key (REPLICA IDENTITY DEFAULT); \
                     ALTER TABLE {table} REPLICA IDENTITY FULL gives them whole rows"
                ),
                Some(_) => {}
            }
        }
        Ok(client)
    }

    /// Creates the slot if it is missing; `true` if it had to be created now.
    async fn ensure_slot(&self, client: &Client) -> Result<bool> {
        let slot = self.settings.slot_name();
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        let row = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
                &[&slot],
            )
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) if db.message().contains("wal2json") => Error::Invalid(format!(
                    "postgres '{}': the wal2json output plugin is not installed on the server \
                     (Debian: apt-get install postgresql-15-wal2json, for your PostgreSQL version)",
                    self.settings.server_name
                )),
                Some(db) => Error::Invalid(format!(
                    "postgres '{}': cannot create replication slot {slot}: {}; the user needs the \
                     REPLICATION attribute (ALTER ROLE {} REPLICATION) and max_replication_slots a free slot",
                    self.settings.server_name,
                    db.message(),
                    self.settings.user
                )),
                None => Error::Postgres(e),
            })?;
        let lsn: String = row.get(0);
        tracing::info!(slot, lsn, "replication slot created");
        Ok(true)
    }

    /// What is left to snapshot: everything after a slot is created (a new slot has
    /// seen none of the rows), else the tables the marker does not list as read.
    async fn snapshot_due(&mut self, client: &Client, created: bool) -> Result<Option<Progress>> {
        let marker = self.snapshot_marker();
        if created {
            redis::cmd("DEL")
                .arg(&marker)
                .query_async::<()>(&mut self.writer)
                .await?;
        }
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&marker)
            .query_async(&mut self.writer)
            .await?;
        let restart_lsn: Option<String> = client
            .query_one(
                "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.settings.slot_name()],
            )
            .await?
            .get(0);
        let restart_lsn = restart_lsn
            .as_deref()
            .and_then(Order::parse_lsn)
            .map_or(0, Order::version);
        Ok(Progress::from_marker(
            &fields,
            &self.settings.tables,
            restart_lsn,
        ))
    }

    /// Writes a snapshot batch. Rows that fail go to the dead-letter stream at once:
    /// reading them again would give the same rows.
    async fn write_snapshot(&mut self, rows: Rows) -> Result<()> {
        let Rows {
            table,
            events,
            first_row,
        } = rows;
        let table: Arc<str> = Arc::from(table);
        let deliveries = events.into_iter().enumerate().map(|(i, event)| {
            let row = first_row + i as i64;
            let version = event.order.map_or(0, Order::version);
            let position = Position {
                version: Version {
                    number: version,
                    lane: Arc::clone(&table),
                },
                stream_id: format!("{version}-{row}"),
                time_ms: redsink_core::time::now_ms(),
            };
            Delivery {
                route: Arc::clone(&table),
                at: format!("snapshot row {row}"),
                change: Ok(Some((event, position))),
                reply_to: None,
                transaction: None,
                raw: Vec::new(),
            }
        });
        let source = self.name();
        let mut feed = Changes {
            attempt: 1,
            retries: false,
            settings: &self.settings,
        };
        let outcome = self
            .pipeline
            .deliver(&source, deliveries, &mut feed)
            .await?;
        outcome.record(outcome.len());
        Ok(())
    }

    /// One poll: peeks changes, writes them, advances the slot. `attempt` counts the
    /// polls that have tried these changes: at `max_deliveries`, changes that keep failing
    /// go to the dead-letter stream so that the slot moves on. With `move_if_idle`, a poll
    /// that finds nothing moves the slot to where the WAL was before it looked: WAL that
    /// other databases write is then not kept for the slot. The changes are read as they
    /// come, and written at the end, or in parts of `max_transaction_changes` where one
    /// transaction has more (the slot then moves only once all of it is written).
    async fn poll(&mut self, client: &Client, attempt: u64, move_if_idle: bool) -> Result<Polled> {
        let wal_before: Option<String> = if move_if_idle {
            Some(
                client
                    .query_one("SELECT pg_current_wal_lsn()::text", &[])
                    .await?
                    .get(0),
            )
        } else {
            None
        };
        for table in &self.settings.tables {
            if !self.columns.contains_key(table) {
                let columns = snapshot::column_types(client, table).await?;
                self.columns
                    .insert(table.clone(), columns.into_keys().collect());
            }
        }
        let tables: Vec<String> = self
            .settings
            .tables
            .iter()
            .map(|t| table::wal2json_name(t))
            .collect();
        let tables = tables.join(",");
        let limit = self.processors.read_batch_size as i32;
        let slot = self.settings.slot_name();
        let params: [&(dyn ToSql + Sync); 3] = [&slot, &limit, &tables];
        // Whole transactions come back, so the last message is a commit.
        let rows = client
            .query_raw(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, $2, \
                 'format-version', '2', 'include-lsn', 'true', 'include-pk', 'true', 'add-tables', $3)",
                params,
            )
            .await?;
        pin_mut!(rows);
        let part_size = self.settings.max_transaction_changes.max(1);
        let mut deliveries = Vec::new();
        let (mut commit, mut number) = (None, 0);
        // Within a transaction: between its begin and its commit; and the changes of it
        // already held or written when this part began.
        let (mut open, mut part_start) = (false, 0);
        let mut route: Arc<str> = Arc::from("");
        let mut last = None;
        let mut polled = Polled {
            messages: 0,
            failed: 0,
        };
        while let Some(row) = rows.try_next().await? {
            let (lsn_text, data): (String, String) = (row.get(0), row.get(1));
            let at = Order::parse_lsn(&lsn_text).unwrap_or(Order::from_lsn(0));
            last = Some(lsn_text);
            let decoded = wal2json::decode(&data, at);
            match &decoded {
                Ok(Change::Begin { commit: order }) => {
                    (commit, number, open, part_start) = (Some(*order), 0, true, 0);
                }
                Ok(Change::Commit) => open = false,
                Ok(Change::Row { .. }) | Err(_) => number += 1,
                Ok(Change::Truncate { table }) => tracing::warn!(
                    table,
                    "TRUNCATE is not applied to Redis: the keys it empties cannot be listed"
                ),
                Ok(Change::Other) => {}
            }
            let change = match decoded {
                Ok(Change::Row { table, mut event }) => {
                    if event.op == Op::Update {
                        complete_update(&mut event, self.columns.get(&table));
                    }
                    // A poll's changes mostly touch few tables: one shared name each.
                    if *route != *table {
                        route = Arc::from(table);
                    }
                    let position = Position {
                        version: Version {
                            number: at.version(),
                            lane: Arc::clone(&route),
                        },
                        stream_id: format!("{}-{number}", commit.unwrap_or(at).version()),
                        time_ms: redsink_core::time::now_ms(),
                    };
                    Ok(Some((*event, position)))
                }
                Ok(_) => Ok(None),
                Err(error) => Err(error.to_string()),
            };
            // A message that did not decode is its own dead letter; a change's is rebuilt
            // from it as Debezium's event.
            let raw = match change {
                Err(_) => vec![(b"wal2json".to_vec(), data.into_bytes())],
                Ok(_) => Vec::new(),
            };
            deliveries.push(Delivery {
                route: Arc::clone(&route),
                at: format!("lsn {}", at.version()),
                change,
                reply_to: None,
                transaction: commit.map(Order::version),
                raw,
            });
            // Cut between transactions once enough is held; within one only when it alone
            // has more than `part_size` changes since its last part: small transactions
            // are never split.
            let within = open && number - part_start >= part_size;
            if within || (!open && deliveries.len() >= part_size) {
                // Said once a transaction: when its first part is cut.
                if within && part_start == 0 {
                    tracing::warn!(
                        source = self.name(),
                        commit = commit.map(Order::version),
                        "a transaction of more than {part_size} changes (max_transaction_changes): \
                         written in parts, which readers may see one at a time"
                    );
                }
                part_start = number;
                let part = std::mem::take(&mut deliveries);
                if !self.write_changes(part, attempt, &mut polled).await? {
                    return Ok(polled);
                }
            }
        }
        let Some(last) = last else {
            // Nothing of ours committed before `wal_before`, or the peek would have had it.
            if let Some(wal_before) = wal_before {
                self.advance(client, &wal_before).await?;
            }
            return Ok(polled);
        };
        if self.write_changes(deliveries, attempt, &mut polled).await? {
            self.advance(client, &last).await?;
        }
        Ok(polled)
    }

    /// Writes a poll's changes (or a part of them); whether all were written (or
    /// dead-lettered), adding them to `polled`.
    async fn write_changes(
        &mut self,
        deliveries: Vec<Delivery>,
        attempt: u64,
        polled: &mut Polled,
    ) -> Result<bool> {
        let source = self.name();
        let mut feed = Changes {
            attempt,
            retries: true,
            settings: &self.settings,
        };
        let outcome = self
            .pipeline
            .deliver(&source, deliveries.into_iter(), &mut feed)
            .await?;
        polled.messages += outcome.len();
        if !outcome.all_done() {
            outcome.record(0);
            polled.failed += outcome.len() - outcome.done().count();
            return Ok(false);
        }
        outcome.record(outcome.len());
        Ok(true)
    }

    /// Confirms the slot up to `lsn`: PostgreSQL will not send what is before it again.
    async fn advance(&self, client: &Client, lsn: &str) -> Result<()> {
        client
            .query_one(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)::text",
                &[&self.settings.slot_name(), &lsn],
            )
            .await?;
        Ok(())
    }
}

/// wal2json leaves an update's unchanged TOASTed columns out (and sends the columns set
/// to NULL as null). Those the old row has (REPLICA IDENTITY FULL) are taken from it; if
/// any are still missing, the update is partial: written as a patch, what it lacks keeps
/// its stored value.
fn complete_update(event: &mut ChangeEvent, columns: Option<&Vec<String>>) {
    let Some(columns) = columns else {
        return;
    };
    for column in columns {
        if event.row.contains_key(column) {
            continue;
        }
        match event.before.as_ref().and_then(|before| before.get(column)) {
            Some(value) => {
                event.row.insert(column.clone(), value.clone());
            }
            None => event.partial = true,
        }
    }
}

/// One poll's (or snapshot batch's) changes, as the pipeline asks after them.
struct Changes<'a> {
    /// How many times these changes have been tried, this time included (all of a poll's
    /// changes are tried again together: the slot moves only past all of them).
    attempt: u64,
    /// Whether they are tried again: a poll's are (the slot holds them), a snapshot
    /// batch's are not (reading the table again would give the same rows).
    retries: bool,
    settings: &'a PostgresSource,
}

impl Feed for Changes<'_> {
    async fn deliveries(&mut self, _delivery: &Delivered) -> Result<u64> {
        Ok(self.attempt)
    }

    fn retries(&self) -> bool {
        self.retries
    }

    /// The change as Debezium's PostgreSQL connector gives it (`value`: `{before, after,
    /// source, op, ts_ms}`, with `source.lsn`), which a redis-stream source decodes; what
    /// did not decode, as wal2json wrote it.
    fn letter(&self, delivery: &Delivered) -> Fields {
        let Some(event) = &delivery.change else {
            return delivery.raw.clone();
        };
        let s = self.settings;
        let (schema, name) = delivery
            .route
            .split_once('.')
            .unwrap_or(("public", &delivery.route));
        let source = [
            ("connector", "postgresql"),
            ("name", &s.server_name),
            ("db", &s.database),
            ("schema", schema),
            ("table", name),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_owned(), serde_json::Value::from(value)))
        .chain(
            event
                .order
                .map(|order| ("lsn".to_owned(), order.version().into())),
        )
        .collect();
        vec![(
            b"value".to_vec(),
            event.to_debezium(source).to_string().into_bytes(),
        )]
    }
}

/// Drives a connection's I/O until it closes; the client notices (`is_closed`).
async fn watch_connection<F>(connection: F)
where
    F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>,
{
    if let Err(error) = connection.await {
        tracing::warn!("postgres connection: {}", describe_postgres(&error));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(row: serde_json::Value, before: Option<serde_json::Value>) -> ChangeEvent {
        let object = |value: serde_json::Value| value.as_object().cloned().unwrap();
        ChangeEvent {
            before: before.map(object),
            ..ChangeEvent::new(Op::Update, object(row))
        }
    }

    /// An update without some of the table's columns (unchanged TOAST) takes them from
    /// the old row where it has them, else is partial; a whole one is neither.
    #[test]
    fn updates_are_completed_or_partial() {
        let columns = vec!["id".to_owned(), "title".to_owned(), "body".to_owned()];
        let mut whole = update(json!({"id": 1, "title": "t", "body": null}), None);
        complete_update(&mut whole, Some(&columns));
        assert!(!whole.partial);
        let mut lacking = update(json!({"id": 1, "title": "t"}), Some(json!({"id": 1})));
        complete_update(&mut lacking, Some(&columns));
        assert!(lacking.partial, "the old row has only the key");
        let old = json!({"id": 1, "title": "s", "body": "long"});
        let mut full_identity = update(json!({"id": 1, "title": "t"}), Some(old));
        complete_update(&mut full_identity, Some(&columns));
        assert!(!full_identity.partial);
        assert_eq!(full_identity.row["body"], "long");
        assert_eq!(full_identity.row["title"], "t");
    }
}
