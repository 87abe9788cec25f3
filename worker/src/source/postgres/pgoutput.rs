//! pgoutput over the streaming replication protocol: PostgreSQL pushes each transaction
//! as it commits (decoded once, no extension), and the worker confirms, in standby status
//! updates, only what Redis has acknowledged.
//!
//! A session: a replication connection ([`pgwire_replication`]), on which a missing slot
//! is created with an exported snapshot — the tables' rows are then read in that snapshot,
//! exactly the state the slot's first change follows — and START_REPLICATION from the
//! slot's confirmed position. Changes are written when the stream pauses between
//! transactions or `max_transaction_changes` are held (a transaction past that many in
//! parts); a keepalive with nothing held moves the slot to
//! the server's position, so that an idle slot keeps no WAL. A batch that cannot be
//! written ends the session: the next one reads the same changes again from the slot.

use std::time::Duration;

use futures_util::FutureExt;
use pg_walstream::{LogicalReplicationMessage, LogicalReplicationParser};
use pgwire_replication::{
    Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig,
};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::held::Held;
use super::{snapshot, table, PgSource, Written};
use crate::error::{Error, Result};
use crate::format::pgoutput::{self, Column, Relation, Relations};
use crate::format::postgres::Change;
use crate::format::Order;
use crate::pipeline::InFlight;
use crate::source::Failures;

/// How often what Redis has acknowledged is confirmed to PostgreSQL (when it moved).
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// How many sessions have tried the changes after the slot's confirmed position.
struct Attempts {
    attempt: u64,
    /// The furthest the slot was confirmed: a batch written again after a session ended
    /// (its confirmation not yet sent) does not count as progress.
    confirmed: Lsn,
}

/// A batch sent to Redis and not finished yet.
struct Sent {
    in_flight: InFlight,
    /// Where the slot may be confirmed once it is written: the end of its last
    /// transaction (none for a part of a transaction).
    confirms: Option<Lsn>,
}

/// How a session ended, when not by an error.
enum Ended {
    Shutdown,
    /// Changes could not be written: read again from the slot by the next session.
    NotWritten {
        failed: usize,
    },
}

impl PgSource {
    /// Creates the publication of the configured tables if the source names none and it
    /// is missing, and adds to it the tables it lacks; one the configuration names must
    /// exist and hold every configured table (a table it lacks would get its snapshot and
    /// none of its changes).
    pub(super) async fn ensure_publication(&self, client: &Client) -> Result<()> {
        let s = &self.settings;
        let name = s.publication_name();
        let exists = client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
            .await?
            .is_some();
        let published: Vec<String> = client
            .query(
                "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1",
                &[&name],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let missing: Vec<&String> = s
            .tables
            .iter()
            .filter(|table| !published.contains(table))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let list = missing
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match (exists, s.publication.is_some()) {
            (false, true) => {
                return Err(Error::Config(format!(
                    "postgres '{}': publication {name} does not exist in database {}; create it \
                     (CREATE PUBLICATION {name} FOR TABLE …), or leave `publication` out for \
                     redsink to create one of the configured tables",
                    s.server_name, s.database
                )))
            }
            (true, true) => {
                return Err(Error::Config(format!(
                    "postgres '{}': publication {name} does not publish {list}; add them \
                     (ALTER PUBLICATION {name} ADD TABLE …), or leave `publication` out for \
                     redsink to keep one of the configured tables",
                    s.server_name
                )))
            }
            _ => {}
        }
        let statement = if exists {
            "ALTER PUBLICATION {} ADD TABLE"
        } else {
            "CREATE PUBLICATION {} FOR TABLE"
        };
        let tables: Vec<String> = missing.iter().map(|t| table::sql_name(t)).collect();
        client
            .batch_execute(&format!(
                "{} {}",
                statement.replace("{}", &table::quoted(&name)),
                tables.join(", ")
            ))
            .await
            .map_err(|e| self.publication_not_made(&name, &e))?;
        tracing::info!(
            publication = name,
            tables = list,
            "{}",
            if exists {
                "tables added to the publication"
            } else {
                "publication created"
            }
        );
        Ok(())
    }

    /// Why the publication could not be created or completed, with what to do.
    fn publication_not_made(&self, name: &str, error: &tokio_postgres::Error) -> Error {
        Error::Config(format!(
            "postgres '{}': cannot create or complete publication {name}: {}; the user must own \
             the tables (or create the publication as one who does and name it in `publication`)",
            self.settings.server_name,
            crate::error::describe_postgres(error)
        ))
    }

    /// Sessions until `shutdown`: a batch that cannot be written is read again by a new
    /// session, after a pause that grows with the attempts.
    pub(super) async fn stream(
        &mut self,
        client: &Client,
        failures: &mut Failures,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let mut attempts = Attempts {
            attempt: 1,
            confirmed: Lsn::ZERO,
        };
        loop {
            let Some(mut session) = self.open_session(client, shutdown).await? else {
                return Ok(());
            };
            failures.succeeded();
            let ended = self
                .follow(&mut session, client, &mut attempts, shutdown)
                .await;
            if matches!(ended, Ok(Ended::Shutdown)) {
                // The last confirmation goes out with the next status update.
                tokio::time::sleep(STATUS_INTERVAL * 2).await;
            }
            session.stop();
            let ended = ended?;
            let Ended::NotWritten { failed } = ended else {
                return Ok(());
            };
            let pause = self.not_written(attempts.attempt, failed);
            attempts.attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    fn replication_config(&self) -> ReplicationConfig {
        let s = &self.settings;
        // pgwire-replication checks a certificate's name only against a DNS name: to an
        // IP address it checks the chain (the SQL connection checks both).
        let by_address = s.host.parse::<std::net::IpAddr>().is_ok();
        let tls = match (s.tls, s.skip_verify) {
            (false, _) => TlsConfig::disabled(),
            (true, true) => TlsConfig::require(),
            (true, false) if by_address => TlsConfig::verify_ca(s.ca_cert.clone()),
            (true, false) => TlsConfig::verify_full(s.ca_cert.clone()),
        };
        ReplicationConfig::new(
            s.host.clone(),
            s.user.clone(),
            s.password.clone().unwrap_or_default(),
            s.database.clone(),
            s.slot_name(),
            s.publication_name(),
        )
        .with_port(s.port)
        .with_tls(tls)
        .with_application_name("redsink-worker")
        // Values come as text in these styles (format::postgres), as on the SQL connection.
        .with_options("-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC -c lc_monetary=C")
        .with_status_interval(STATUS_INTERVAL)
    }

    /// A replication session started from the slot's confirmed position: the slot
    /// created first if missing, and the snapshot read if due. `None` if `shutdown` came
    /// during the snapshot.
    async fn open_session(
        &mut self,
        client: &Client,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<ReplicationClient>> {
        let mut session = ReplicationClient::connect_gated(self.replication_config()).await?;
        let exported = if self.existing_slot(client).await? {
            None
        } else {
            self.forget_snapshot().await?;
            Some(self.create_slot(&mut session).await?)
        };
        if let Some(mut progress) = self.snapshot_due(client).await? {
            // Read in the exported snapshot: the rows as the slot's first change finds them.
            self.snapshot(&mut progress, exported.as_deref(), shutdown)
                .await?;
            if *shutdown.borrow() {
                return Ok(None);
            }
        }
        session.start().await?;
        session
            .wait_started()
            .await
            .map_err(|e| self.replication_error(e))?;
        Ok(Some(session))
    }

    /// A replication connection's error; one of TLS or authentication says what to check
    /// (at start, the worker stops on it).
    fn replication_error(&self, error: PgWireError) -> Error {
        let s = &self.settings;
        match error {
            PgWireError::Tls(_) | PgWireError::Auth(_) => Error::Config(format!(
                "postgres '{}': cannot open a replication connection to {}:{} as {}: {error}; \
                 check tls, ca_cert and password, and that pg_hba.conf lets the user connect",
                s.server_name, s.host, s.port, s.user
            )),
            other => Error::Replication(other),
        }
    }

    /// Creates the slot on the replication connection; the name of the snapshot it
    /// exports, valid until the connection's next command.
    async fn create_slot(&self, session: &mut ReplicationClient) -> Result<String> {
        let slot = self.settings.slot_name();
        let rows = session
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT"
            ))
            .await
            .map_err(|e| match e {
                PgWireError::Server(reason) => self.slot_not_created(&reason),
                other => self.replication_error(other),
            })?;
        let column = |i: usize| -> Option<String> {
            let value = rows.first()?.get(i)?.as_ref()?;
            Some(String::from_utf8_lossy(value).into_owned())
        };
        let (Some(lsn), Some(snapshot)) = (column(1), column(2)) else {
            return Err(Error::Invalid(format!(
                "postgres '{}': CREATE_REPLICATION_SLOT answered without a snapshot",
                self.settings.server_name
            )));
        };
        if !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(Error::Invalid(format!(
                "postgres '{}': CREATE_REPLICATION_SLOT exported a snapshot named '{snapshot}'",
                self.settings.server_name
            )));
        }
        tracing::info!(slot, lsn, snapshot, "replication slot created");
        Ok(snapshot)
    }

    /// Reads the session's changes and writes them, until `shutdown` or a batch that
    /// cannot be written. `attempts` counts the sessions that have tried the changes after
    /// the slot's confirmed position; it is 1 again once the slot moves further than
    /// before. One batch is written while the next is read and planned.
    async fn follow(
        &mut self,
        session: &mut ReplicationClient,
        client: &Client,
        attempts: &mut Attempts,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended> {
        let mut parser = LogicalReplicationParser::with_protocol_version(1);
        let mut relations = Relations::default();
        let mut held = Held::new(self.settings.max_transaction_changes, self.name());
        // The end of the last transaction read: the slot is confirmed up to it once it
        // is written.
        let mut commit_end = None;
        let mut sent: Option<Sent> = None;
        let mut read_ahead = None;
        let mut written = Written::default();
        loop {
            let event = match read_ahead.take() {
                Some(event) => event,
                // A batch in Redis's hands is finished as soon as nothing else comes.
                None if sent.is_some() => tokio::select! {
                    event = session.recv() => event,
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {
                        if !self.confirm(sent.take(), session, attempts, &mut written).await? {
                            return Ok(Ended::NotWritten {
                                failed: written.failed,
                            });
                        }
                        continue;
                    }
                    _ = shutdown.changed() => {
                        self.confirm(sent.take(), session, attempts, &mut written).await?;
                        return Ok(Ended::Shutdown);
                    }
                },
                None => tokio::select! {
                    event = session.recv() => event,
                    _ = shutdown.changed() => return Ok(Ended::Shutdown),
                },
            };
            let Some(event) = event? else {
                return Err(Error::Invalid("the replication stream ended".into()));
            };
            match event {
                ReplicationEvent::Begin { final_lsn, .. } => {
                    let commit = Order::from_lsn(final_lsn.as_u64() as i64);
                    held.add(Ok(Change::Begin { commit }), commit, |_| None, Vec::new);
                }
                ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                    let at = Order::from_lsn(lsn.as_u64() as i64);
                    held.add(Ok(Change::Commit), at, |_| None, Vec::new);
                    commit_end = Some(end_lsn);
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let at = Order::from_lsn(wal_start.as_u64() as i64);
                    let message = parser
                        .parse_wal_message(&data)
                        .map(|parsed| parsed.message)
                        .map_err(|e| Error::Event(format!("pgoutput: {e}")));
                    if let Ok(LogicalReplicationMessage::Relation { .. }) = &message {
                        if let Ok(message) = message {
                            self.describe(client, &message, &mut relations).await?;
                        }
                        continue;
                    }
                    let decoded = message.and_then(|m| pgoutput::decode(&m, &relations, at));
                    let columns = &self.columns;
                    held.add(
                        decoded,
                        at,
                        |table| columns.get(table).map(Vec::as_slice),
                        || vec![(b"pgoutput".to_vec(), data.to_vec())],
                    );
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Everything before it was sent, and with nothing held, written.
                    if held.deliveries.is_empty() && held.between_transactions() && sent.is_none() {
                        session.update_applied_lsn(wal_end);
                    }
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
            let whole = held.between_transactions();
            if !held.part_due() && (!whole || held.deliveries.is_empty()) {
                continue;
            }
            // Between transactions: written now unless more is waiting and there is room.
            if whole && !held.full() {
                if let Some(next) = session.recv().now_or_never() {
                    read_ahead = Some(next);
                    continue;
                }
            }
            let planned = self.pipeline.plan(&self.name(), held.take().into_iter());
            if !self
                .confirm(sent.take(), session, attempts, &mut written)
                .await?
            {
                return Ok(Ended::NotWritten {
                    failed: written.failed,
                });
            }
            sent = Some(Sent {
                in_flight: self.pipeline.send(planned),
                confirms: if whole { commit_end } else { None },
            });
        }
    }

    /// Waits for a batch sent to Redis and confirms the slot up to its last transaction;
    /// whether all was written.
    async fn confirm(
        &mut self,
        sent: Option<Sent>,
        session: &ReplicationClient,
        attempts: &mut Attempts,
        written: &mut Written,
    ) -> Result<bool> {
        let Some(Sent {
            in_flight,
            confirms,
        }) = sent
        else {
            return Ok(true);
        };
        if !self
            .finish_changes(in_flight, attempts.attempt, written)
            .await?
        {
            return Ok(false);
        }
        if let Some(end) = confirms {
            session.update_applied_lsn(end);
            if end > attempts.confirmed {
                *attempts = Attempts {
                    attempt: 1,
                    confirmed: end,
                };
            }
        }
        Ok(true)
    }

    /// Adds a Relation message's table to `relations`, with its columns' types and its
    /// primary key from the catalog (as wal2json names them); its columns are then what
    /// an update lacking some is completed from.
    async fn describe(
        &mut self,
        client: &Client,
        message: &LogicalReplicationMessage,
        relations: &mut Relations,
    ) -> Result<()> {
        let LogicalReplicationMessage::Relation {
            relation_id,
            namespace,
            relation_name,
            columns,
            ..
        } = message
        else {
            return Ok(());
        };
        let types: Vec<u32> = columns.iter().map(|column| column.type_id).collect();
        let modifiers: Vec<i32> = columns.iter().map(|column| column.type_modifier).collect();
        let kinds: Vec<String> = client
            .query(
                "SELECT format_type(t, m) FROM unnest($1::oid[], $2::int4[]) \
                 WITH ORDINALITY AS c(t, m, n) ORDER BY n",
                &[&types, &modifiers],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let table = format!("{namespace}.{relation_name}");
        let relation = Relation {
            schema: namespace.to_string(),
            name: relation_name.to_string(),
            columns: columns
                .iter()
                .zip(kinds)
                .map(|(column, kind)| Column {
                    name: column.name.to_string(),
                    kind,
                    identity: column.is_key(),
                })
                .collect(),
            // By OID: the table may have been renamed or dropped since this change.
            primary_key: snapshot::primary_key(client, *relation_id)
                .await?
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        };
        self.columns.insert(table, relation.column_names());
        relations.insert(*relation_id, relation);
        Ok(())
    }
}
