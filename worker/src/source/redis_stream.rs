//! The redis-stream source: one consumer group over stream keys or a pattern, delivering
//! each entry at least once and acknowledging it only after Redis confirmed its writes.
//!
//! Each cycle: take over entries idle longer than `reclaim_idle_ms` (a dead worker's, or
//! ours that failed) with XAUTOCLAIM (a few times per `reclaim_idle_ms`, not every
//! cycle: it walks the group's pending list), read new ones with XREADGROUP, plan and apply their
//! writes, XACK what was written, and move an entry that failed `max_deliveries` times to
//! the dead-letter stream with its error (then XACK it), so that it holds nothing up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::watch;

use super::entries::{parse_autoclaim, parse_read, Entry};
use crate::config::{Processors, RedisStreamSource, Streams};
use crate::error::Result;
use crate::event::{decode, entry_version, Decoded};
use crate::job::Job;
use crate::plan::{plan, Position, Write};
use crate::{metrics, sink};

/// How often a pattern is searched for new streams, and the group's lag sampled.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// What the source needs to run.
pub struct StreamSource {
    pub settings: RedisStreamSource,
    pub processors: Processors,
    /// Jobs by the stream they read.
    pub routes: BTreeMap<String, Vec<Arc<Job>>>,
    /// For XREADGROUP only (no response timeout).
    pub reader: ConnectionManager,
    /// For everything else, writes included.
    pub writer: ConnectionManager,
    /// Whether the target has the redsink module.
    pub module: bool,
    pub consumer: String,
}

impl StreamSource {
    /// Runs until `shutdown` says stop; the batch in hand is finished and acknowledged.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut streams = BTreeSet::new();
        let mut discovered_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        // After a failure (Redis went away mid-batch), this consumer's own pending entries
        // come first, so that writes stay in stream order.
        let mut resume_pending = false;
        let mut in_flight = None;
        // An entry becomes idle enough to take over `reclaim_idle_ms` after its delivery at
        // the soonest, so looking four times in that period finds it within 1.25 × of it.
        let reclaim_every = Duration::from_millis(self.processors.reclaim_idle_ms / 4);
        let mut reclaimed_at: Option<Instant> = None;
        while !*shutdown.borrow() {
            if discovered_at.is_none_or(|at| at.elapsed() >= DISCOVERY_INTERVAL) {
                match self.discover(&mut streams).await {
                    Ok(()) => discovered_at = Some(Instant::now()),
                    Err(error) => tracing::warn!("finding streams: {error}"),
                }
                for stream in &streams {
                    if let Ok(lag) = self.lag(stream).await {
                        metrics::lag(stream, lag);
                    }
                }
            }
            if streams.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let reclaim = reclaimed_at.is_none_or(|at| at.elapsed() >= reclaim_every);
            let cycle = async {
                if resume_pending {
                    for stream in &streams {
                        self.own_pending(stream).await?;
                    }
                }
                self.cycle(&streams, reclaim, &mut in_flight).await
            };
            match cycle.await {
                Ok(took_over) => {
                    // After a take-over, look again at once: there may be more.
                    if reclaim && !took_over {
                        reclaimed_at = Some(Instant::now());
                    }
                    backoff = Duration::from_millis(100);
                    resume_pending = false;
                }
                Err(error) => {
                    // A batch in flight stays pending: it is read again with the rest.
                    in_flight = None;
                    resume_pending = true;
                    tracing::warn!("redis-stream source: {error}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(last) = in_flight.take() {
            self.finish(last).await?;
        }
        tracing::info!("redis-stream source stopped");
        Ok(())
    }

    /// Entries of `stream` not yet delivered to the group (XINFO GROUPS `lag`, Redis 7).
    async fn lag(&mut self, stream: &str) -> Result<i64> {
        let groups: Vec<Vec<Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut self.writer)
            .await?;
        let field = |group: &[Value], name: &[u8]| {
            group.chunks(2).find_map(|pair| match pair {
                [Value::BulkString(key), value] if key == name => Some(value.clone()),
                _ => None,
            })
        };
        let ours = groups.iter().find(|group| {
            field(group, b"name")
                == Some(Value::BulkString(self.settings.group.clone().into_bytes()))
        });
        Ok(match ours.and_then(|group| field(group, b"lag")) {
            Some(Value::Int(lag)) => lag,
            _ => 0,
        })
    }

    /// Finds the streams to read and makes sure the group exists on each.
    async fn discover(&mut self, streams: &mut BTreeSet<String>) -> Result<()> {
        let found: Vec<String> = match &self.settings.streams {
            Streams::Keys(keys) => keys.clone(),
            Streams::Pattern(pattern) => {
                let mut found = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .arg("TYPE")
                        .arg("stream")
                        .query_async(&mut self.writer)
                        .await?;
                    found.extend(keys);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                found
            }
        };
        for stream in found {
            if streams.contains(&stream) {
                continue;
            }
            // From the start: a new group processes what the stream already holds.
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(&self.settings.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.writer)
                .await;
            match created {
                Ok(()) => tracing::info!(
                    stream,
                    group = self.settings.group,
                    "consumer group created"
                ),
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                Err(error) => return Err(error.into()),
            }
            if !self.routes.contains_key(&stream) {
                tracing::warn!(
                    stream,
                    "no job reads this stream; its entries will be acknowledged unwritten"
                );
            }
            self.own_pending(&stream).await?;
            tracing::info!(stream, "reading");
            streams.insert(stream);
        }
        Ok(())
    }

    /// Processes what this consumer read before a crash or restart and never
    /// acknowledged, before anything new: writes then stay in stream order.
    async fn own_pending(&mut self, stream: &str) -> Result<()> {
        // Pending entries after `after`, a batch at a time; failures stay pending for the
        // reclaim pass, and the walk moves on.
        let mut after = "0".to_owned();
        loop {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.settings.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.processors.read_batch_size)
                .arg("STREAMS")
                .arg(stream)
                .arg(&after)
                .query_async(&mut self.writer)
                .await?;
            let entries: Vec<Entry> = parse_read(&reply)
                .into_iter()
                .flat_map(|(_, entries)| entries)
                .collect();
            let Some(last) = entries.last().map(|entry| entry.id.clone()) else {
                return Ok(());
            };
            tracing::info!(
                stream,
                count = entries.len(),
                "resuming entries read before a restart"
            );
            self.process(stream, entries).await?;
            after = last;
        }
    }

    /// One cycle: reclaim idle entries (when `reclaim` says it is time), read new ones,
    /// process both; whether idle entries were taken over. A batch read is planned while
    /// the one before is still being written (`in_flight`); a read waits for new entries
    /// only when nothing is in flight.
    async fn cycle(
        &mut self,
        streams: &BTreeSet<String>,
        reclaim: bool,
        in_flight: &mut Option<InFlight>,
    ) -> Result<bool> {
        let took_over = reclaim && self.take_over_idle(streams, in_flight).await?;
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.processors.read_batch_size);
        if in_flight.is_none() {
            read.arg("BLOCK").arg(self.processors.block_ms);
        }
        read.arg("STREAMS");
        read.arg(streams.iter().collect::<Vec<_>>());
        read.arg(vec![">"; streams.len()]);
        let reply: Value = read.query_async(&mut self.reader).await?;
        let batches = parse_read(&reply);
        if batches.is_empty() {
            if let Some(previous) = in_flight.take() {
                self.finish(previous).await?;
            }
        }
        for (stream, entries) in batches {
            let planned = self.plan(&stream, entries);
            if let Some(previous) = in_flight.take() {
                self.finish(previous).await?;
            }
            *in_flight = Some(self.send(planned));
        }
        Ok(took_over)
    }

    /// Takes over and processes entries idle longer than `reclaim_idle_ms`; whether there
    /// were any.
    async fn take_over_idle(
        &mut self,
        streams: &BTreeSet<String>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<bool> {
        let mut took_over = false;
        for stream in streams {
            let reclaimed = self.reclaim(stream).await?;
            if !reclaimed.is_empty() {
                took_over = true;
                tracing::info!(stream, count = reclaimed.len(), "took over idle entries");
                if let Some(previous) = in_flight.take() {
                    self.finish(previous).await?;
                }
                self.process(stream, reclaimed).await?;
            }
        }
        Ok(took_over)
    }

    async fn reclaim(&mut self, stream: &str) -> Result<Vec<Entry>> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(&self.settings.group)
            .arg(&self.consumer)
            .arg(self.processors.reclaim_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.processors.read_batch_size)
            .query_async(&mut self.writer)
            .await?;
        Ok(parse_autoclaim(&reply).1)
    }

    /// Plans, writes and acknowledges a batch of one stream's entries.
    async fn process(&mut self, stream: &str, entries: Vec<Entry>) -> Result<()> {
        let batch = self.send(self.plan(stream, entries));
        self.finish(batch).await
    }

    /// Plans a batch: its writes, and what to do with each entry after them.
    fn plan(&self, stream: &str, entries: Vec<Entry>) -> PlannedBatch {
        let started = Instant::now();
        let jobs = self.routes.get(stream).cloned().unwrap_or_default();
        let mut plan_errors = Vec::with_capacity(entries.len());
        let mut reply_topics = Vec::with_capacity(entries.len());
        let writes: Vec<Vec<Write>> = entries
            .iter()
            .map(|entry| {
                let planned = plan_entry(&jobs, entry);
                reply_topics.push(planned.reply_to);
                match planned.writes {
                    Ok(writes) => {
                        plan_errors.push(None);
                        writes
                    }
                    Err(error) => {
                        plan_errors.push(Some(error));
                        Vec::new()
                    }
                }
            })
            .collect();
        PlannedBatch {
            batch: Batch {
                stream: stream.to_owned(),
                entries,
                plan_errors,
                reply_topics,
                started,
            },
            writes,
        }
    }

    /// Sends a planned batch's writes without waiting for them, so that the next batch is
    /// read and planned while Redis writes this one. Called only once the batch before is
    /// finished, so that writes reach Redis in stream order.
    fn send(&self, planned: PlannedBatch) -> InFlight {
        let PlannedBatch { batch, writes } = planned;
        let mut writer = self.writer.clone();
        let module = self.module;
        let applied = tokio::spawn(async move { sink::apply(&mut writer, &writes, module).await });
        InFlight { batch, applied }
    }

    /// Waits for a batch's writes, then acknowledges what was written, dead-letters what
    /// failed too often, and sends the replies.
    async fn finish(&mut self, in_flight: InFlight) -> Result<()> {
        let InFlight {
            batch:
                Batch {
                    stream,
                    entries,
                    plan_errors,
                    reply_topics,
                    started,
                },
            applied,
        } = in_flight;
        let stream = stream.as_str();
        let applied = applied
            .await
            .map_err(|e| crate::error::Error::Invalid(format!("writing a batch: {e}")))??;
        let mut acked = Vec::new();
        let mut replies = Vec::new();
        let (mut failed, mut dead_lettered) = (0, 0);
        for (((entry, plan_error), applied), topic) in entries
            .iter()
            .zip(plan_errors)
            .zip(applied)
            .zip(reply_topics)
        {
            match plan_error.map_or(applied, Err) {
                Ok(()) => {
                    acked.push(entry.id.clone());
                    replies.extend(topic.map(|topic| vec![reply(&topic, stream, entry, None)]));
                }
                Err(error) => {
                    failed += 1;
                    if self.dead_letter_if_exhausted(stream, entry, &error).await? {
                        dead_lettered += 1;
                        acked.push(entry.id.clone());
                        replies.extend(
                            topic.map(|topic| vec![reply(&topic, stream, entry, Some(&error))]),
                        );
                    }
                }
            }
        }
        if !replies.is_empty() {
            for failed in sink::apply(&mut self.writer, &replies, self.module)
                .await?
                .into_iter()
                .filter_map(|outcome| outcome.err())
            {
                tracing::warn!(stream, "a reply could not be written: {failed}");
            }
        }
        if !acked.is_empty() {
            redis::cmd("XACK")
                .arg(stream)
                .arg(&self.settings.group)
                .arg(&acked)
                .query_async::<i64>(&mut self.writer)
                .await?;
        }
        tracing::debug!(
            stream,
            read = entries.len(),
            acked = acked.len(),
            "batch done"
        );
        metrics::record(&metrics::Batch {
            stream,
            read: entries.len(),
            written: entries.len() - failed,
            acked: acked.len(),
            failed,
            dead_lettered,
            took: started.elapsed(),
        });
        Ok(())
    }

    /// After `max_deliveries` failed deliveries, the entry goes to the dead-letter stream
    /// with its error; returns whether it did (and so may be acknowledged).
    async fn dead_letter_if_exhausted(
        &mut self,
        stream: &str,
        entry: &Entry,
        error: &str,
    ) -> Result<bool> {
        let pending: Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&self.settings.group)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1)
            .query_async(&mut self.writer)
            .await?;
        let deliveries = delivery_count(&pending).unwrap_or(1);
        if deliveries < self.processors.max_deliveries {
            tracing::warn!(
                stream,
                id = entry.id,
                deliveries,
                "entry failed, will retry: {error}"
            );
            return Ok(false);
        }
        let dlq = self.processors.dlq_stream.replace("{stream}", stream);
        let mut add = redis::cmd("XADD");
        add.arg(&dlq)
            .arg("*")
            .arg("source_stream")
            .arg(stream)
            .arg("source_id")
            .arg(&entry.id)
            .arg("error")
            .arg(error)
            .arg("deliveries")
            .arg(deliveries);
        for (field, value) in &entry.fields {
            add.arg(field).arg(value);
        }
        add.query_async::<String>(&mut self.writer).await?;
        tracing::error!(
            stream,
            id = entry.id,
            deliveries,
            dlq,
            "entry moved to the dead-letter stream: {error}"
        );
        Ok(true)
    }
}

/// A batch of one stream's entries, and what planning found for each.
struct Batch {
    stream: String,
    entries: Vec<Entry>,
    plan_errors: Vec<Option<String>>,
    reply_topics: Vec<Option<String>>,
    started: Instant,
}

/// A batch planned, its writes not sent yet.
struct PlannedBatch {
    batch: Batch,
    writes: Vec<Vec<Write>>,
}

/// A batch whose writes were sent and are not yet confirmed.
struct InFlight {
    batch: Batch,
    applied: tokio::task::JoinHandle<
        std::result::Result<Vec<std::result::Result<(), String>>, redis::RedisError>,
    >,
}

/// What one entry asks for: its writes under the jobs of its stream (or why there are
/// none), and the stream to reply on (`responseTopic`, as a RuleGo endpoint answers),
/// known once the entry decodes, whether or not its jobs succeed.
struct Planned {
    writes: std::result::Result<Vec<Write>, String>,
    reply_to: Option<String>,
}

fn plan_entry(jobs: &[Arc<Job>], entry: &Entry) -> Planned {
    let change = match decode(&entry.fields) {
        Ok(Decoded::Change(change)) => change,
        Ok(Decoded::Tombstone) => {
            return Planned {
                writes: Ok(Vec::new()),
                reply_to: None,
            }
        }
        Err(error) => {
            return Planned {
                writes: Err(error.to_string()),
                reply_to: None,
            }
        }
    };
    let reply_to = change
        .row
        .get(REPLY_FIELD)
        .and_then(|topic| topic.as_str())
        .filter(|topic| !topic.is_empty())
        .map(str::to_owned);
    let writes = (|| {
        let not_an_id = || format!("entry id '{}' is not a stream id", entry.id);
        let time_ms = entry
            .id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .ok_or_else(not_an_id)?;
        let position = Position {
            version: change
                .lsn
                .or_else(|| entry_version(&entry.id))
                .ok_or_else(not_an_id)?,
            stream_id: entry.id.clone(),
            time_ms,
        };
        let mut writes = Vec::new();
        for job in jobs {
            writes.extend(
                plan(job, &change, &position).map_err(|e| format!("job {}: {e}", job.name))?,
            );
        }
        Ok(writes)
    })();
    Planned { writes, reply_to }
}

/// The field naming the stream to reply on, as in RuleGo's stream endpoint.
const REPLY_FIELD: &str = "responseTopic";

/// The reply to an entry: `body` `ok`, or `error` with the error; its id is the entry's,
/// so that a replayed reply adds nothing.
fn reply(topic: &str, stream: &str, entry: &Entry, error: Option<&str>) -> Write {
    let mut row = serde_json::Map::new();
    row.insert(
        "body".into(),
        (if error.is_some() { "error" } else { "ok" }).into(),
    );
    row.insert("source_stream".into(), stream.into());
    row.insert("source_id".into(), entry.id.clone().into());
    if let Some(error) = error {
        row.insert("error".into(), error.into());
    }
    Write::Stream {
        key: topic.to_owned(),
        json: redsink_core::json::to_text(&serde_json::Value::Object(row)),
        op_code: None,
        id: entry.id.clone(),
        ttl: None,
    }
}

/// The delivery count in an XPENDING extended reply `[[id, consumer, idle, count]]`.
fn delivery_count(reply: &Value) -> Option<u64> {
    let Value::Array(rows) = reply else {
        return None;
    };
    let Some(Value::Array(row)) = rows.first() else {
        return None;
    };
    match row.get(3)? {
        Value::Int(count) => u64::try_from(*count).ok(),
        _ => None,
    }
}
