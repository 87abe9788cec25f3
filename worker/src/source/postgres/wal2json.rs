//! wal2json: the slot polled through SQL every `poll_ms`. The changes after the slot's
//! confirmed position are peeked (`pg_logical_slot_peek_changes`, format 2, whole
//! transactions), written, and only then is the slot advanced past them.

use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::held::Held;
use super::{snapshot, table, PgSource, Written};
use crate::error::{Error, Result};
use crate::format::wal2json;
use crate::format::Order;
use crate::source::Failures;

/// After this many polls without changes, the slot is moved to the server's WAL position
/// (10 s at the default `poll_ms`).
const POLLS_BEFORE_IDLE_ADVANCE: u64 = 100;

impl PgSource {
    /// Creates the slot if missing, snapshots what is due, then polls the slot's changes
    /// until `shutdown`.
    pub(super) async fn poll(
        &mut self,
        client: &Client,
        failures: &mut Failures,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        self.ensure_slot(client).await?;
        if let Some(mut progress) = self.snapshot_due(client).await? {
            self.snapshot(&mut progress, None, shutdown).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
        }
        let (mut attempts, mut moved_while_idle) = (0u64, Instant::now());
        while !*shutdown.borrow() {
            let move_if_idle = moved_while_idle.elapsed()
                >= Duration::from_millis(self.settings.poll_ms * POLLS_BEFORE_IDLE_ADVANCE);
            let polled = self.poll_once(client, attempts + 1, move_if_idle).await?;
            failures.succeeded();
            if move_if_idle || polled.messages > 0 {
                moved_while_idle = Instant::now();
            }
            let pause = if polled.failed > 0 {
                attempts += 1;
                self.not_written(attempts, polled.failed)
            } else {
                attempts = 0;
                if polled.messages > 0 {
                    continue;
                }
                Duration::from_millis(self.settings.poll_ms)
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Creates the slot if it is missing.
    async fn ensure_slot(&mut self, client: &Client) -> Result<()> {
        if self.existing_slot(client).await? {
            return Ok(());
        }
        self.forget_snapshot().await?;
        let slot = self.settings.slot_name();
        let row = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
                &[&slot],
            )
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => self.slot_not_created(db.message()),
                None => Error::Postgres(e),
            })?;
        let lsn: String = row.get(0);
        tracing::info!(slot, lsn, "replication slot created");
        Ok(())
    }

    /// One poll: peeks changes, writes them, advances the slot. `attempt` counts the
    /// polls that have tried these changes: at `max_deliveries`, changes that keep failing
    /// go to the dead-letter stream so that the slot moves on. With `move_if_idle`, a poll
    /// that finds nothing moves the slot to where the WAL was before it looked: WAL that
    /// other databases write is then not kept for the slot. The changes are read as they
    /// come, and written at the end, or in parts of `max_transaction_changes` where one
    /// transaction has more (the slot then moves only once all of it is written).
    async fn poll_once(
        &mut self,
        client: &Client,
        attempt: u64,
        move_if_idle: bool,
    ) -> Result<Written> {
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
        let mut held = Held::new(self.settings.max_transaction_changes, self.name());
        let mut last = None;
        let mut written = Written::default();
        while let Some(row) = rows.try_next().await? {
            let (lsn_text, data): (String, String) = (row.get(0), row.get(1));
            let at = Order::parse_lsn(&lsn_text).unwrap_or(Order::from_lsn(0));
            last = Some(lsn_text);
            let columns = &self.columns;
            held.add(
                wal2json::decode(&data, at),
                at,
                |table| columns.get(table).map(Vec::as_slice),
                || vec![(b"wal2json".to_vec(), data.clone().into_bytes())],
            );
            // Between transactions once enough is held; within one only past the limit.
            if held.part_due() || (held.between_transactions() && held.full()) {
                let part = held.take();
                if !self.write_changes(part, attempt, &mut written).await? {
                    return Ok(written);
                }
            }
        }
        let Some(last) = last else {
            // Nothing of ours committed before `wal_before`, or the peek would have had it.
            if let Some(wal_before) = wal_before {
                self.advance(client, &wal_before).await?;
            }
            return Ok(written);
        };
        if self
            .write_changes(held.take(), attempt, &mut written)
            .await?
        {
            self.advance(client, &last).await?;
        }
        Ok(written)
    }

    /// Confirms the slot up to `lsn`: PostgreSQL will not send what is before it again.
    async fn advance(&self, client: &Client, lsn: &str) -> Result<()> {
        let started = std::time::Instant::now();
        client
            .query_one(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)::text",
                &[&self.settings.slot_name(), &lsn],
            )
            .await?;
        crate::metrics::stage(&self.name(), "ack", started.elapsed());
        Ok(())
    }
}
