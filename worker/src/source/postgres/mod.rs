//! The PostgreSQL source: logical decoding of the captured tables' changes, with pgoutput
//! over the streaming replication protocol ([`pgoutput`], the default) or with wal2json,
//! the slot polled through SQL ([`wal2json`]).
//!
//! A fresh slot is followed by a snapshot of the tables (see [`snapshot`]). Then the
//! changes after the slot's confirmed position are handed to the
//! [pipeline](crate::pipeline) (routed by table to the jobs whose `source` names this
//! server), and only once it reports them done is the slot confirmed past them: a crash
//! anywhere loses nothing, and what is written again changes nothing. Both plugins hand
//! over the same deliveries ([`held`]), so a table reaches Redis the same either way.
//!
//! Order: a change's VERSION is its own LSN (changes of one row are ordered by PostgreSQL's
//! row locks, so their LSNs rise in commit order); its stream id is `<commit LSN>-<n>`,
//! n counting the transaction's row changes, so that ids rise in the order transactions
//! commit even when their changes interleave in the WAL, and a replay gets the same ids.

mod held;
mod pgoutput;
mod snapshot;
mod table;
mod tls;
mod wal2json;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use self::snapshot::{Progress, Rows};
use crate::config::{Plugin, PostgresSource, Processors};
use crate::connect::Redis;
use crate::error::{describe_postgres, Error, Result};
use crate::format::Order;
use crate::pipeline::{Delivered, Delivery, Feed, Fields, InFlight, Pipeline};
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

/// What writing a batch of changes came to.
#[derive(Default)]
struct Written {
    /// Messages handed over (row changes and transaction boundaries).
    messages: usize,
    /// Changes that could not be written; the slot was not confirmed past them.
    failed: usize,
}

/// How long to wait before trying again after `attempt` failed ones: 200 ms more each
/// time, up to 5 s.
fn retry_pause(attempt: u64) -> Duration {
    Duration::from_millis(200 * attempt.min(25))
}

impl PgSource {
    fn name(&self) -> String {
        self.settings.name()
    }

    /// After the `attempt`th time changes could not be written: says so, and how long to
    /// wait before they are read again.
    fn not_written(&self, attempt: u64, failed: usize) -> Duration {
        tracing::warn!(
            source = self.name(),
            attempts = attempt,
            failed,
            "changes not written, retrying"
        );
        retry_pause(attempt)
    }

    fn snapshot_marker(&self) -> String {
        snapshot_marker(&self.settings)
    }

    /// Runs until `shutdown`: snapshot if due, then changes as they come. A bad
    /// configuration fails at once; a connection lost later is retried with backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut client = self.connect().await?;
        if self.settings.plugin == Plugin::Pgoutput {
            self.ensure_publication(&client).await?;
        }
        tracing::info!(
            source = self.name(),
            plugin = self.settings.plugin.name(),
            slot = self.settings.slot_name(),
            tables = self.settings.tables.join(", "),
            "postgres source started"
        );
        let mut failures = Failures::new(self.name(), Some(self.writer.clone()));
        loop {
            let outcome = match self.settings.plugin {
                Plugin::Pgoutput => self.stream(&client, &mut failures, &mut shutdown).await,
                Plugin::Wal2json => self.poll(&client, &mut failures, &mut shutdown).await,
            };
            let Err(error) = outcome else { break };
            if *shutdown.borrow() {
                break;
            }
            // What the configuration gets wrong (a slot that cannot be made) is said once;
            // anything else (a connection lost, Redis refusing writes during the first
            // snapshot) is retried.
            if matches!(error, Error::Config(_)) && !failures.worked() {
                return Err(error);
            }
            let delay = retry_pause(failures.in_a_row() + 1);
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

    /// Connects and checks what the source needs, with errors that say what to do.
    async fn connect(&self) -> Result<Client> {
        let s = &self.settings;
        for (what, name) in [
            ("slot", s.slot_name()),
            ("publication", s.publication_name()),
        ] {
            if name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(Error::Config(format!(
                    "postgres '{}': {what} name '{name}': use 1 to 63 lower-case letters, digits \
                     and underscores",
                    s.server_name
                )));
            }
        }
        let client = open(s).await.map_err(|e| match e {
            Error::Postgres(e) => Error::Config(format!(
                "postgres '{}': cannot connect to {}:{} as {}: {}; check host, port, database, \
                 user and password (write `password: ${{PGPASSWORD}}` to take it from the environment)",
                s.server_name,
                s.host,
                s.port,
                s.user,
                describe_postgres(&e)
            )),
            other => other,
        })?;
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .await?
            .get(0);
        if s.plugin == Plugin::Pgoutput && version.parse::<u32>().is_ok_and(|v| v < 140_000) {
            return Err(Error::Config(format!(
                "postgres '{}': pgoutput needs PostgreSQL 14 or later (this server is {version}); \
                 use `plugin: wal2json`",
                s.server_name
            )));
        }
        let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
        if wal_level != "logical" {
            return Err(Error::Config(format!(
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
                    return Err(Error::Config(format!(
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

    /// Forgets what an earlier slot of the same name had snapshotted: done before a slot
    /// is created, so that a crash right after cannot leave a new slot with an old
    /// marker.
    async fn forget_snapshot(&mut self) -> Result<()> {
        redis::cmd("DEL")
            .arg(self.snapshot_marker())
            .query_async::<()>(&mut self.writer)
            .await?;
        Ok(())
    }

    /// What is left to snapshot: the tables the marker does not list as read (all of
    /// them after a slot is created: a new slot has seen none of the rows).
    async fn snapshot_due(&mut self, client: &Client) -> Result<Option<Progress>> {
        let marker = self.snapshot_marker();
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
        let due = Progress::from_marker(&fields, &self.settings.tables, restart_lsn);
        if let Some(progress) = &due {
            tracing::info!(
                source = self.name(),
                tables = progress.due.join(", "),
                "snapshot due"
            );
        }
        Ok(due)
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

    /// Writes changes read from the slot; whether all were written (or dead-lettered),
    /// adding them to `written`.
    async fn write_changes(
        &mut self,
        deliveries: Vec<Delivery>,
        attempt: u64,
        written: &mut Written,
    ) -> Result<bool> {
        let planned = self.pipeline.plan(&self.name(), deliveries.into_iter());
        let in_flight = self.pipeline.send(planned);
        self.finish_changes(in_flight, attempt, written).await
    }

    /// Waits for changes sent to Redis; whether all were written (or dead-lettered),
    /// adding them to `written`.
    async fn finish_changes(
        &mut self,
        in_flight: InFlight,
        attempt: u64,
        written: &mut Written,
    ) -> Result<bool> {
        let mut feed = Changes {
            attempt,
            retries: true,
            settings: &self.settings,
        };
        let outcome = self.pipeline.finish(in_flight, &mut feed).await?;
        written.messages += outcome.len();
        if !outcome.all_done() {
            outcome.record(0);
            written.failed += outcome.len() - outcome.done().count();
            return Ok(false);
        }
        outcome.record(outcome.len());
        Ok(true)
    }

    /// Whether the slot exists; one made for the other plugin is refused
    /// (its changes would not decode), with what to do.
    async fn existing_slot(&self, client: &Client) -> Result<bool> {
        let slot = self.settings.slot_name();
        let plugin: Option<String> = client
            .query_opt(
                "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .map(|row| row.get(0));
        let wanted = self.settings.plugin.name();
        match plugin {
            None => Ok(false),
            Some(plugin) if plugin == wanted => Ok(true),
            Some(plugin) => Err(Error::Config(format!(
                "postgres '{}': replication slot {slot} decodes with {plugin}, and this source \
                 with {wanted}; set `plugin: {plugin}`, or name another `slot` (the snapshot is \
                 then read again), or drop it: SELECT pg_drop_replication_slot('{slot}')",
                self.settings.server_name
            ))),
        }
    }

    /// Why a slot could not be created, with what to do.
    fn slot_not_created(&self, reason: &str) -> Error {
        let s = &self.settings;
        if reason.contains("wal2json") {
            return Error::Config(format!(
                "postgres '{}': the wal2json output plugin is not installed on the server \
                 (Debian: apt-get install postgresql-15-wal2json, for your PostgreSQL version; \
                 or use `plugin: pgoutput`, built into PostgreSQL)",
                s.server_name
            ));
        }
        Error::Config(format!(
            "postgres '{}': cannot create replication slot {}: {reason}; the user needs the \
             REPLICATION attribute (ALTER ROLE {} REPLICATION) and max_replication_slots a free slot",
            s.server_name,
            s.slot_name(),
            s.user
        ))
    }
}

/// The hash in Redis where a source's snapshot progress is kept.
pub fn snapshot_marker(settings: &PostgresSource) -> String {
    format!(
        "redsink:snapshot:{}:{}",
        settings.server_name,
        settings.slot_name()
    )
}

/// A connection to the server, its session set as the values are read. A failure is
/// retried (a reader's connection during a snapshot); `connect` says it at start.
pub async fn open(s: &PostgresSource) -> Result<Client> {
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
    Ok(connected?)
}

/// Changes read from the slot (or a snapshot batch), as the pipeline asks after them.
struct Changes<'a> {
    /// How many times these changes have been tried, this time included (all the changes
    /// after the slot's confirmed position are tried again together).
    attempt: u64,
    /// Whether they are tried again: the slot's are (it holds them), a snapshot batch's
    /// are not (reading the table again would give the same rows).
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
    /// did not decode, as the plugin wrote it.
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
