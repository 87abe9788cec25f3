//! The initial snapshot: every row of the captured tables as `r` events, resumable;
//! `snapshot_readers` tables read at once, each on its own connection, written in order.
//!
//! A table with a primary key is read in key order, and where the snapshot stands (table,
//! last key, rows written) is kept in Redis after each batch: a restarted worker resumes
//! after the last key, and a batch written again (a crash between the batch and its
//! progress) gets the same stream ids and VERSION, so it changes nothing. A table without
//! a primary key is read in one pass and, if interrupted, read again from its start.
//!
//! Snapshot writes carry VERSION = the slot's restart LSN when the snapshot began. Every
//! change the slot delivers afterwards has a higher LSN, so it wins over the snapshot row
//! whenever it is applied — even a change committed before the row was read, which makes
//! the key show an older state only until the slot's later changes catch up.

use std::collections::{BTreeMap, VecDeque};

use indexmap::IndexMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use tracing::{Instrument, Span};
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::style::ProgressStyle;

use super::{table, PgSource};
use crate::error::{Error, Result};
use crate::format::postgres::{self, record_key};
use crate::format::{ChangeEvent, Op, Order};

/// Where a snapshot stands, as kept in the source's marker hash in Redis: `version`,
/// `rows`, `table` and `after` while a snapshot runs, `done:<table>` per table read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// VERSION of the snapshot's writes and the first part of their stream ids.
    pub version: i64,
    /// Rows written so far over all tables: the second part of the next stream id.
    pub rows: i64,
    /// The table in hand and the primary key (as text) of its last row written.
    pub resume: Option<(String, Vec<String>)>,
    /// Tables still to read, in order.
    pub due: Vec<String>,
}

impl Progress {
    /// What is left of the snapshot of `tables`, from the marker's fields; `None` when
    /// every table has been read. A snapshot that starts now is versioned `restart_lsn`.
    pub fn from_marker(
        fields: &BTreeMap<String, String>,
        tables: &[String],
        restart_lsn: i64,
    ) -> Option<Progress> {
        let due: Vec<String> = tables
            .iter()
            .filter(|table| !fields.contains_key(&format!("done:{table}")))
            .cloned()
            .collect();
        if due.is_empty() {
            return None;
        }
        let number = |name: &str| fields.get(name).and_then(|text| text.parse::<i64>().ok());
        let Some(version) = number("version") else {
            return Some(Progress {
                version: restart_lsn,
                rows: 0,
                resume: None,
                due,
            });
        };
        let resume = match (fields.get("table"), fields.get("after")) {
            (Some(table), Some(after)) if due.contains(table) => serde_json::from_str(after)
                .ok()
                .map(|after| (table.clone(), after)),
            _ => None,
        };
        Some(Progress {
            version,
            rows: number("rows").unwrap_or(0),
            resume,
            due,
        })
    }
}

/// A batch of snapshot rows: `events[i]` gets stream id `<version>-<first_row + i>`.
pub struct Rows {
    pub table: String,
    pub events: Vec<ChangeEvent>,
    pub first_row: i64,
}

/// What a table's reader hands over: its row count, its rows in batches, and that it
/// read them all.
enum Read {
    Total(i64),
    /// The next rows, with the primary key (as text) of the last if the table has one.
    Rows {
        events: Vec<ChangeEvent>,
        last_key: Option<Vec<String>>,
    },
    End,
}

/// Batches a reader may hold ready before the writer takes them.
const BATCHES_AHEAD: usize = 2;

/// A table being read on its own connection.
struct Reader {
    table: String,
    batches: mpsc::Receiver<Result<Read>>,
}

impl PgSource {
    /// Reads every due table, writing each batch before recording how far it got.
    /// `snapshot_readers` tables are read at once, each on its own connection (in the
    /// slot's `exported` snapshot when there is one), while the writes go in table order:
    /// stream ids and the progress kept are those of one table after another. Returns
    /// early, with the progress kept, when `shutdown` is set.
    pub(super) async fn snapshot(
        &mut self,
        progress: &mut Progress,
        exported: Option<&str>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let marker = self.snapshot_marker();
        redis::cmd("HSET")
            .arg(&marker)
            .arg("version")
            .arg(progress.version)
            .query_async::<()>(&mut self.writer)
            .await?;
        let mut to_read: VecDeque<String> = progress.due.iter().cloned().collect();
        let mut readers = VecDeque::new();
        while let Some(table) = progress.due.first().cloned() {
            // This table's reader, and the next tables' up to `snapshot_readers`.
            while readers.len() < self.settings.snapshot_readers.max(1) {
                let Some(next) = to_read.pop_front() else {
                    break;
                };
                let after = match &progress.resume {
                    Some((resumed, after)) if *resumed == next => Some(after.clone()),
                    _ => None,
                };
                readers.push_back(
                    self.start_reader(next, after, progress.version, exported)
                        .await?,
                );
            }
            let Some(reader) = readers.pop_front() else {
                break;
            };
            let span = tracing::info_span!("snapshot", table, indicatif.pb_show = true);
            let finished = self
                .write_table(reader, progress, shutdown)
                .instrument(span)
                .await?;
            if !finished {
                return Ok(());
            }
            redis::pipe()
                .atomic()
                .hset(&marker, format!("done:{table}"), 1)
                .hset(&marker, "rows", progress.rows)
                .hdel(&marker, &["table", "after"])
                .query_async::<()>(&mut self.writer)
                .await?;
            progress.due.remove(0);
            progress.resume = None;
        }
        redis::cmd("HDEL")
            .arg(&marker)
            .arg(&["version", "rows"])
            .query_async::<()>(&mut self.writer)
            .await?;
        Ok(())
    }

    /// Starts reading `table` (after the key `after`) on a connection of its own, in one
    /// transaction: the `exported` snapshot, or its own.
    async fn start_reader(
        &self,
        table: String,
        after: Option<Vec<String>>,
        version: i64,
        exported: Option<&str>,
    ) -> Result<Reader> {
        let client = super::open(&self.settings).await?;
        let mut begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_owned();
        if let Some(name) = exported {
            begin += &format!("; SET TRANSACTION SNAPSHOT '{name}'");
        }
        client.batch_execute(&begin).await?;
        let (sender, batches) = mpsc::channel(BATCHES_AHEAD);
        let batch_size = self.processors.read_batch_size.max(1);
        tokio::spawn(read_table(
            client,
            table.clone(),
            after,
            version,
            batch_size,
            sender,
        ));
        Ok(Reader { table, batches })
    }

    /// Writes what `reader` reads. `false` if `shutdown` cut it short.
    async fn write_table(
        &mut self,
        reader: Reader,
        progress: &mut Progress,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool> {
        let Reader { table, mut batches } = reader;
        let mut report = None;
        let mut next_row = progress.rows + 1;
        loop {
            let Some(read) = batches.recv().await else {
                return Err(Error::Invalid(format!(
                    "the snapshot of {table} stopped before its end"
                )));
            };
            match read? {
                Read::Total(total) => report = Some(Report::new(&table, total)),
                Read::Rows { events, last_key } => {
                    let written = events.len() as i64;
                    self.write_snapshot(Rows {
                        table: table.clone(),
                        events,
                        first_row: next_row,
                    })
                    .await?;
                    next_row += written;
                    if let Some(report) = &mut report {
                        report.advance(written as u64);
                    }
                    // Rows of a table without a key count only once the whole table is
                    // written.
                    if let Some(last_key) = last_key {
                        progress.rows = next_row - 1;
                        self.save_progress(&table, progress.rows, &last_key).await?;
                        progress.resume = Some((table.clone(), last_key));
                    }
                    if *shutdown.borrow() {
                        return Ok(false);
                    }
                }
                Read::End => break,
            }
        }
        progress.rows = next_row - 1;
        if let Some(report) = report {
            report.finish();
        }
        Ok(true)
    }

    /// Records that the snapshot has written `rows` rows, up to `last_key` of `table`.
    async fn save_progress(&mut self, table: &str, rows: i64, last_key: &[String]) -> Result<()> {
        let after = serde_json::to_string(last_key).map_err(|e| Error::Event(e.to_string()))?;
        let marker = self.snapshot_marker();
        redis::pipe()
            .atomic()
            .hset(&marker, "rows", rows)
            .hset(&marker, "table", table)
            .hset(&marker, "after", after)
            .query_async::<()>(&mut self.writer)
            .await?;
        Ok(())
    }
}

/// Reads `table` in primary-key order (after `after`), batches of `batch_size` rows as
/// `r` events versioned `version`, into `batches`; stops when the writer is gone.
async fn read_table(
    client: Client,
    table: String,
    after: Option<Vec<String>>,
    version: i64,
    batch_size: usize,
    batches: mpsc::Sender<Result<Read>>,
) {
    let read = async {
        let key = primary_key(&client, table_oid(&client, &table).await?).await?;
        let types = column_types(&client, &table).await?;
        if key.is_empty() {
            tracing::warn!(
                table,
                "no primary key: this table is read in one pass, again from its start if interrupted"
            );
        }
        let query = TableQuery::new(&table, &key, after.is_some());
        let params = after.unwrap_or_default();
        let param_refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let total: i64 = client.query_one(&query.count(), &param_refs).await?.get(0);
        if batches.send(Ok(Read::Total(total))).await.is_err() {
            return Ok(());
        }
        let rows = client.query_raw(&query.rows(), &params).await?;
        pin_mut!(rows);
        loop {
            let (mut events, mut last_key) = (Vec::with_capacity(batch_size), None);
            while events.len() < batch_size {
                let Some(row) = rows.try_next().await? else {
                    break;
                };
                let mut event = snapshot_event(row.get(0), &types, Order::from_lsn(version))?;
                event.key = record_key(&event.row, key.iter().map(|(name, _)| name.as_str()));
                events.push(event);
                if !key.is_empty() {
                    last_key = Some(row.get::<_, Vec<String>>(1));
                }
            }
            let last = events.len() < batch_size;
            if !events.is_empty()
                && batches
                    .send(Ok(Read::Rows { events, last_key }))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if last {
                break;
            }
        }
        let _ = batches.send(Ok(Read::End)).await;
        Ok(())
    };
    if let Err(error) = read.await {
        let _ = batches.send(Err(error)).await;
    }
}

/// The SQL that reads one table, in primary-key order from after a key if it has one.
struct TableQuery {
    from: String,
    key_text: String,
}

impl TableQuery {
    /// `key`: the primary key's columns and types; `resuming`: rows after `$1..$n` only.
    fn new(table: &str, key: &[(String, String)], resuming: bool) -> TableQuery {
        let columns: Vec<String> = key.iter().map(|(name, _)| table::quoted(name)).collect();
        let mut from = format!("FROM {} t", table::sql_name(table));
        if resuming {
            let params: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| format!("${}::text::{kind}", i + 1))
                .collect();
            from += &format!(" WHERE ({}) > ({})", prefixed(&columns), params.join(", "));
        }
        let key_text = if columns.is_empty() {
            String::new()
        } else {
            let texts: Vec<String> = columns.iter().map(|c| format!("t.{c}::text")).collect();
            format!(", ARRAY[{}]", texts.join(", "))
        };
        if !columns.is_empty() {
            from += &format!(" ORDER BY {}", prefixed(&columns));
        }
        TableQuery { from, key_text }
    }

    fn count(&self) -> String {
        let from = self.from.split(" ORDER BY ").next().unwrap_or(&self.from);
        format!("SELECT count(*) {from}")
    }

    fn rows(&self) -> String {
        // `t.*`: the row, even where the table has a column named `t`.
        format!(
            "SELECT row_to_json(t.*)::text{} {}",
            self.key_text, self.from
        )
    }
}

fn prefixed(columns: &[String]) -> String {
    let prefixed: Vec<String> = columns.iter().map(|c| format!("t.{c}")).collect();
    prefixed.join(", ")
}

/// The primary key columns of the table with OID `relation`, in key order, with their
/// types; none for a table that is gone.
pub(super) async fn primary_key(client: &Client, relation: u32) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&relation],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The OID of `table`.
async fn table_oid(client: &Client, table: &str) -> Result<u32> {
    let row = client
        .query_one("SELECT $1::text::regclass::oid", &[&table::sql_name(table)])
        .await?;
    Ok(row.get(0))
}

/// The table's column types, by column name (`format_type`, as wal2json names them).
pub(super) async fn column_types(client: &Client, table: &str) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&table::sql_name(table)],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// A snapshot row (row_to_json text) as an `r` event, values mapped like wal2json's.
fn snapshot_event(
    text: &str,
    types: &BTreeMap<String, String>,
    order: Order,
) -> Result<ChangeEvent> {
    // In the table's column order, as wal2json gives a change's columns.
    let raw: IndexMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| Error::Event(format!("snapshot row: {e}")))?;
    let mut row = Map::new();
    for (name, value) in raw {
        let kind = types.get(&name).map_or("text", String::as_str);
        let mapped: Value = postgres::value(kind, value.get())?;
        row.insert(name, mapped);
    }
    Ok(ChangeEvent {
        order: Some(order),
        ..ChangeEvent::new(Op::Read, row)
    })
}

/// Snapshot progress: a bar on a terminal, a log line a second otherwise.
struct Report {
    table: String,
    total: i64,
    done: i64,
    terminal: bool,
    logged: Instant,
}

impl Report {
    fn new(table: &str, total: i64) -> Report {
        let terminal = std::io::stderr().is_terminal();
        if terminal {
            let span = Span::current();
            if let Ok(style) = ProgressStyle::with_template(
                                "snapshot {span_fields} {wide_bar} {human_pos}/{human_len} rows, {elapsed} gone, {eta} left",
            ) {
                span.pb_set_style(&style);
            }
            span.pb_set_length(total.max(0) as u64);
        }
        tracing::info!(table, rows = total, "snapshot of the table started");
        Report {
            table: table.to_owned(),
            total,
            done: 0,
            terminal,
            logged: Instant::now(),
        }
    }

    fn advance(&mut self, rows: u64) {
        self.done += rows as i64;
        if self.terminal {
            Span::current().pb_inc(rows);
        } else if self.logged.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                table = self.table,
                done = self.done,
                total = self.total,
                "snapshot progress"
            );
            self.logged = Instant::now();
        }
    }

    fn finish(&self) {
        tracing::info!(
            table = self.table,
            rows = self.done,
            "snapshot of the table done"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn progress_starts_resumes_and_ends() {
        let tables = vec!["public.a".to_owned(), "public.b".to_owned()];
        assert_eq!(
            Progress::from_marker(&fields(&[]), &tables, 77),
            Some(Progress {
                version: 77,
                rows: 0,
                resume: None,
                due: tables.clone()
            })
        );
        let running = fields(&[
            ("version", "50"),
            ("rows", "1200"),
            ("done:public.a", "1"),
            ("table", "public.b"),
            ("after", r#"["17"]"#),
        ]);
        assert_eq!(
            Progress::from_marker(&running, &tables, 77),
            Some(Progress {
                version: 50,
                rows: 1200,
                resume: Some(("public.b".into(), vec!["17".into()])),
                due: vec!["public.b".into()]
            })
        );
        let finished = fields(&[("done:public.a", "1"), ("done:public.b", "1")]);
        assert_eq!(Progress::from_marker(&finished, &tables, 77), None);
        // A table added to the configuration later gets a snapshot of its own.
        let more = [tables.clone(), vec!["public.c".to_owned()]].concat();
        assert_eq!(
            Progress::from_marker(&finished, &more, 90).map(|p| (p.version, p.due)),
            Some((90, vec!["public.c".to_owned()]))
        );
    }

    #[test]
    fn table_queries_page_by_primary_key() {
        let key = vec![
            ("Id".to_owned(), "integer".to_owned()),
            ("Region".to_owned(), "text".to_owned()),
        ];
        let fresh = TableQuery::new("public.t", &key, false);
        assert_eq!(
            fresh.rows(),
            r#"SELECT row_to_json(t.*)::text, ARRAY[t."Id"::text, t."Region"::text] FROM "public"."t" t ORDER BY t."Id", t."Region""#
        );
        assert_eq!(fresh.count(), r#"SELECT count(*) FROM "public"."t" t"#);
        let resumed = TableQuery::new("public.t", &key, true);
        assert_eq!(
            resumed.count(),
            r#"SELECT count(*) FROM "public"."t" t WHERE (t."Id", t."Region") > ($1::text::integer, $2::text::text)"#
        );
        assert_eq!(
            TableQuery::new("public.log", &[], false).rows(),
            r#"SELECT row_to_json(t.*)::text FROM "public"."log" t"#
        );
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
            Order::from_lsn(7),
        )
        .unwrap();
        assert_eq!(
            Value::Object(event.row),
            serde_json::json!({"InvoiceId":1,"Total":"3.90","InvoiceDate":"2021-01-01T00:00:00Z","Tags":["a","b"]})
        );
        assert_eq!(
            (event.op, event.order),
            (Op::Read, Some(Order::from_lsn(7)))
        );
    }
}
