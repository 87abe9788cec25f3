//! The redis-stream source: one consumer group over stream keys or a pattern, delivering
//! each entry at least once and acknowledging it only after Redis confirmed its writes.
//!
//! Each cycle: take over entries idle longer than `reclaim_idle_ms` (a dead worker's, or
//! ours that failed) with XAUTOCLAIM (a few times per `reclaim_idle_ms`, not every
//! cycle: it walks the group's pending list), read new ones with XREADGROUP, hand them to
//! the [pipeline](crate::pipeline) as deliveries, and XACK what it reports done (written,
//! or dead-lettered after `max_deliveries` deliveries, which XPENDING counts).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::Value;
use tokio::sync::{watch, Notify};

use super::entries::{parse_autoclaim, parse_read, Entry};
use redsink_core::NEW_STREAMS_CHANNEL;

use crate::config::{Processors, RedisConnection, RedisStreamSource, Streams};
use crate::connect::{subscribe, Redis};
use crate::error::Result;
use crate::format::{decode, ChangeEvent, Decoded, Order, Schemas};
use crate::metrics;
use crate::pipeline::{Delivered, Delivery, Feed, Fields, InFlight, Pipeline, Planned};
use crate::plan::{Position, Version};
use crate::source::Failures;

/// How often a pattern is searched for new streams, and the group's lag sampled.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// What the source needs to run.
pub struct StreamSource {
    pub settings: RedisStreamSource,
    pub processors: Processors,
    /// Plans and writes what is read; its routes are stream keys.
    pub pipeline: Pipeline,
    /// For XREADGROUP only (no response timeout).
    pub reader: Redis,
    /// For the streams' other commands (the pipeline writes through its own connection).
    pub streams: Redis,
    pub consumer: String,
    pub decoding: Decoding,
    /// The module's announcements of new streams (a pattern on one server with the
    /// module): a new stream is read at once, not at the next scan.
    pub announcements: Option<Announcements>,
}

/// A subscription to the module's announcements of new streams, and how to subscribe
/// again when it drops.
pub struct Announcements {
    pub subscription: redis::aio::PubSub,
    pub connection: String,
    pub config: RedisConnection,
}

/// What decoding keeps across entries: the envelopes' schemas, read once each, and the
/// streams whose Debezium events came without one (said once each).
#[derive(Default)]
pub struct Decoding {
    schemas: Schemas,
    untyped: Mutex<BTreeSet<Arc<str>>>,
}

impl StreamSource {
    /// Runs until `shutdown` says stop; the batch in hand is finished and acknowledged.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut streams = BTreeSet::new();
        let mut discovered_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        let mut failures = Failures::new(self.settings.name(), Some(self.streams.clone()));
        // After a failure (Redis went away mid-batch), this consumer's own pending entries
        // come first, so that writes stay in stream order.
        let mut resume_pending = false;
        let mut in_flight = None;
        // An entry becomes idle enough to take over `reclaim_idle_ms` after its delivery at
        // the soonest, so looking four times in that period finds it within 1.25 × of it.
        let reclaim_every = Duration::from_millis(self.processors.reclaim_idle_ms / 4);
        let mut reclaimed_at: Option<Instant> = None;
        // The streams' lag and oldest unfinished entry, sampled on their own: also while a
        // batch waits (on Redis refusing writes, say).
        let sampled = Arc::new(Mutex::new(BTreeSet::new()));
        tokio::spawn(sample_streams(
            self.streams.clone(),
            self.settings.group.clone(),
            Arc::clone(&sampled),
            shutdown.clone(),
        ));
        let announced = Arc::new(Notify::new());
        let reader_id = Arc::new(AtomicI64::new(-1));
        if let (Some(announcements), Streams::Pattern(pattern)) =
            (self.announcements.take(), &self.settings.streams)
        {
            tokio::spawn(listen_for_new_streams(
                announcements,
                pattern.clone(),
                self.streams.clone(),
                Arc::clone(&announced),
                Arc::clone(&reader_id),
            ));
        }
        while !*shutdown.borrow() {
            if announced.notified().now_or_never().is_some() {
                discovered_at = None;
            }
            if discovered_at.is_none_or(|at| at.elapsed() >= DISCOVERY_INTERVAL) {
                // The reader's id, for a new stream's announcement to end its wait.
                if let Ok(id) = redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async::<i64>(&mut self.reader)
                    .await
                {
                    reader_id.store(id, Ordering::Relaxed);
                }
                match self.discover(&mut streams).await {
                    Ok(()) => discovered_at = Some(Instant::now()),
                    Err(error) => tracing::warn!("finding streams: {error}"),
                }
                if let Ok(mut sampled) = sampled.lock() {
                    sampled.clone_from(&streams);
                }
            }
            if streams.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
                    _ = announced.notified() => discovered_at = None,
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
                    failures.succeeded();
                }
                Err(error) => {
                    // A batch in flight stays pending: it is read again with the rest.
                    in_flight = None;
                    resume_pending = true;
                    failures.failed(&error, backoff);
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

    /// Finds the streams to read and makes sure the group exists on each.
    async fn discover(&mut self, streams: &mut BTreeSet<String>) -> Result<()> {
        let found = matching_streams(&mut self.streams, &self.settings.streams).await?;
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
                .query_async(&mut self.streams)
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
            if !self.pipeline.routes_to(&stream) {
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
                .query_async(&mut self.streams)
                .await?;
            let entries: Vec<Entry> = parse_read(reply)
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
        let read = |streams: &[&String], block: bool| {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(&self.settings.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.processors.read_batch_size);
            if block {
                read.arg("BLOCK").arg(self.processors.block_ms);
            }
            read.arg("STREAMS")
                .arg(streams)
                .arg(vec![">"; streams.len()]);
            read
        };
        let batches = if self.reader.is_cluster() {
            // A command's keys share a slot there, and a blocked read holds up its node's
            // connection: each stream read on its own, all at once, without blocking; a
            // cycle that finds nothing waits a little (at most block_ms) instead.
            let reads = streams.iter().map(|stream| {
                let mut reader = self.reader.clone();
                let read = read(&[stream], false);
                async move { read.query_async::<Value>(&mut reader).await }
            });
            let replies = futures_util::future::try_join_all(reads).await?;
            let batches: Vec<_> = replies.into_iter().flat_map(parse_read).collect();
            if batches.is_empty() && in_flight.is_none() {
                tokio::time::sleep(Duration::from_millis(self.processors.block_ms.min(100))).await;
            }
            batches
        } else {
            let streams: Vec<&String> = streams.iter().collect();
            let (blocking, started) = (in_flight.is_none(), Instant::now());
            let reply: Value = read(&streams, blocking)
                .query_async(&mut self.reader)
                .await?;
            let batches = parse_read(reply);
            // Timed where entries were waiting (a blocking read's time is mostly waiting).
            if let (false, Some((stream, _))) = (blocking, batches.first()) {
                metrics::stage(stream, "read", started.elapsed());
            }
            batches
        };
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
            *in_flight = Some(self.pipeline.send(planned));
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
            .query_async(&mut self.streams)
            .await?;
        Ok(parse_autoclaim(reply).1)
    }

    /// Plans, writes and acknowledges a batch of one stream's entries.
    async fn process(&mut self, stream: &str, entries: Vec<Entry>) -> Result<()> {
        let in_flight = self.pipeline.send(self.plan(stream, entries));
        self.finish(in_flight).await
    }

    /// A batch's deliveries with their writes planned. (Its writes are sent only once the
    /// batch before is finished, so that they reach Redis in stream order; the next batch
    /// is read and planned while Redis writes this one.)
    fn plan(&self, stream: &str, entries: Vec<Entry>) -> Planned {
        let route: Arc<str> = Arc::from(stream);
        let deliveries = entries
            .into_iter()
            .map(|entry| delivery(&route, entry, &self.decoding));
        self.pipeline.plan(stream, deliveries)
    }

    /// Waits for a batch's writes, then acknowledges what the pipeline reports done.
    async fn finish(&mut self, in_flight: InFlight) -> Result<()> {
        let mut pending = Pending {
            streams: self.streams.clone(),
            group: self.settings.group.clone(),
        };
        let outcome = self.pipeline.finish(in_flight, &mut pending).await?;
        let acked: Vec<&str> = outcome
            .done()
            .map(|delivery| delivery.at.as_str())
            .collect();
        if let Some(stream) = outcome.done().next().map(|delivery| &delivery.route) {
            let started = Instant::now();
            redis::cmd("XACK")
                .arg(&**stream)
                .arg(&self.settings.group)
                .arg(&acked)
                .query_async::<i64>(&mut self.streams)
                .await?;
            metrics::stage(stream, "ack", started.elapsed());
        }
        outcome.record(acked.len());
        Ok(())
    }
}

/// The pending entries of the group, which count each entry's deliveries.
struct Pending {
    streams: Redis,
    group: String,
}

impl Feed for Pending {
    async fn deliveries(&mut self, delivery: &Delivered) -> Result<u64> {
        let pending: Value = redis::cmd("XPENDING")
            .arg(&*delivery.route)
            .arg(&self.group)
            .arg(&delivery.at)
            .arg(&delivery.at)
            .arg(1)
            .query_async(&mut self.streams)
            .await?;
        Ok(delivery_count(&pending).unwrap_or(1))
    }

    /// The entry's own fields: added to a stream this source reads, they replay it.
    fn letter(&self, delivery: &Delivered) -> Fields {
        delivery.raw.clone()
    }
}

/// An entry of `stream` as a delivery: its change decoded (Debezium's format or plain
/// JSON), its place in the stream's order, and the stream to answer on. What writes
/// nothing is counted; Debezium events without their schema are said once a stream.
fn delivery(stream: &Arc<str>, entry: Entry, decoding: &Decoding) -> Delivery {
    let placed = |change: ChangeEvent| {
        let reply_to = change
            .row
            .get(REPLY_FIELD)
            .and_then(|topic| topic.as_str())
            .filter(|topic| !topic.is_empty())
            .map(str::to_owned);
        let order = change.order;
        (
            position(stream, &entry.id, order).map(|position| Some((change, position))),
            reply_to,
        )
    };
    let (change, reply_to) = match decode(&entry.fields, &decoding.schemas) {
        Ok(Decoded::Change(change)) => placed(change),
        Ok(Decoded::Untyped(change)) => {
            let first = decoding
                .untyped
                .lock()
                .map(|mut said| said.insert(Arc::clone(stream)))
                .unwrap_or(false);
            if first {
                tracing::warn!(
                    stream = &**stream,
                    "Debezium events without their schema: values are written as they came \
                     (decimals stay base64, times stay numbers); turn schemas on in Debezium \
                     Server (debezium.format.value.schemas.enable=true) so that redsink can \
                     decode them"
                );
            }
            placed(change)
        }
        Ok(Decoded::Skip(skip)) => {
            metrics::skipped(stream, skip.name());
            (Ok(None), None)
        }
        Err(error) => (Err(error.to_string()), None),
    };
    Delivery {
        route: Arc::clone(stream),
        at: entry.id,
        change,
        transaction: None,
        reply_to,
        raw: entry.fields,
    }
}

/// An entry's place in its stream's order: its version (the event's own order, else the
/// id's; in the stream's lane), its id, and its time (the id's milliseconds).
fn position(
    stream: &Arc<str>,
    id: &str,
    order: Option<Order>,
) -> std::result::Result<Position, String> {
    let not_an_id = || format!("entry id '{id}' is not a stream id");
    let time_ms = id
        .split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .ok_or_else(not_an_id)?;
    Ok(Position {
        version: Version {
            number: order
                .or_else(|| Order::from_stream_id(id))
                .ok_or_else(not_an_id)?
                .version(),
            lane: Arc::clone(stream),
        },
        stream_id: id.to_owned(),
        time_ms,
    })
}

/// The field naming the stream to reply on, as in RuleGo's stream endpoint.
const REPLY_FIELD: &str = "responseTopic";

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

/// The streams a source reads: its keys, or the streams whose names match its pattern
/// (on a cluster, each primary holds the streams of its slots).
pub async fn matching_streams(con: &mut Redis, streams: &Streams) -> Result<Vec<String>> {
    let pattern = match streams {
        Streams::Keys(keys) => return Ok(keys.clone()),
        Streams::Pattern(pattern) => pattern,
    };
    let mut found = Vec::new();
    for node in con.primaries().await? {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream");
            let (next, keys): (u64, Vec<String>) = con.query_at(node.as_ref(), &scan).await?;
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(found)
}

/// What XINFO GROUPS says of one consumer group of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// Entries not yet delivered to the group (Redis 7; `None` where the server cannot
    /// tell, after deletions).
    pub lag: Option<i64>,
    /// Entries delivered and not acknowledged.
    pub pending: i64,
    /// The id of the last entry delivered to the group.
    pub last_delivered: Option<String>,
}

/// The group `group` of `stream`, if the stream and the group exist.
pub async fn group_info(con: &mut Redis, stream: &str, group: &str) -> Result<Option<GroupInfo>> {
    let groups: Vec<Vec<Value>> = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(con)
        .await
    {
        Ok(groups) => groups,
        // A stream named in the configuration that nothing has written yet: no group.
        Err(error)
            if error
                .detail()
                .is_some_and(|detail| detail.contains("no such key")) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error.into()),
    };
    let field = |group: &[Value], name: &[u8]| {
        group.chunks(2).find_map(|pair| match pair {
            [Value::BulkString(key), value] if key == name => Some(value.clone()),
            _ => None,
        })
    };
    let ours = groups
        .iter()
        .find(|info| field(info, b"name") == Some(Value::BulkString(group.as_bytes().to_vec())));
    Ok(ours.map(|info| GroupInfo {
        lag: match field(info, b"lag") {
            Some(Value::Int(lag)) => Some(lag),
            _ => None,
        },
        pending: match field(info, b"pending") {
            Some(Value::Int(pending)) => pending,
            _ => 0,
        },
        last_delivered: match field(info, b"last-delivered-id") {
            Some(Value::BulkString(id)) => String::from_utf8(id).ok(),
            _ => None,
        },
    }))
}

/// When (ms since the epoch, from its id) the oldest pending entry of the group was
/// added, if any entry is pending.
pub async fn oldest_pending_ms(con: &mut Redis, stream: &str, group: &str) -> Result<Option<i64>> {
    // XPENDING's summary: [count, smallest id, greatest id, consumers].
    let (_, smallest, _, _): (i64, Option<String>, Option<String>, Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await?;
    Ok(smallest.as_deref().and_then(id_ms))
}

/// When the oldest entry the group has not finished was added: the oldest pending one,
/// else the first not yet delivered; `None` when there is none.
async fn oldest_unprocessed_ms(
    con: &mut Redis,
    stream: &str,
    group: &str,
    info: &GroupInfo,
) -> Result<Option<i64>> {
    if info.pending > 0 {
        return oldest_pending_ms(con, stream, group).await;
    }
    if info.lag == Some(0) {
        return Ok(None);
    }
    let after = format!("({}", info.last_delivered.as_deref().unwrap_or("0-0"));
    let first: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg(after)
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    Ok(first.first().and_then(|(id, _)| id_ms(id)))
}

/// The milliseconds part of a stream entry id.
fn id_ms(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

/// Listens to the module's announcements of new streams: one whose name matches
/// `pattern` ends the reader's wait (CLIENT UNBLOCK) and has the source look for streams
/// again at once. A subscription that drops is made again (with a scan meanwhile, for
/// what it may have missed).
async fn listen_for_new_streams(
    announcements: Announcements,
    pattern: String,
    mut con: Redis,
    announced: Arc<Notify>,
    reader_id: Arc<AtomicI64>,
) {
    let Announcements {
        subscription,
        connection,
        config,
    } = announcements;
    let mut subscription = Some(subscription);
    let mut pause = Duration::from_millis(100);
    loop {
        let current = match subscription.take() {
            Some(current) => current,
            None => match subscribe(&connection, &config, NEW_STREAMS_CHANNEL).await {
                Ok(current) => {
                    tracing::info!(connection, "listening for new streams again");
                    current
                }
                Err(error) => {
                    tracing::debug!(connection, "subscribing to new streams: {error}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut messages = current.into_on_message();
        while let Some(message) = messages.next().await {
            pause = Duration::from_millis(100);
            let Ok(stream) = message.get_payload::<String>() else {
                continue;
            };
            if !redsink_core::glob::matches(pattern.as_bytes(), stream.as_bytes()) {
                continue;
            }
            announced.notify_one();
            let id = reader_id.load(Ordering::Relaxed);
            if id >= 0 {
                let _ = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async::<i64>(&mut con)
                    .await;
            }
        }
        tracing::warn!(
            connection,
            "the subscription to new streams ended: subscribing again (new streams are found by scanning meanwhile)"
        );
        announced.notify_one();
        tokio::time::sleep(pause).await;
    }
}

/// Every `DISCOVERY_INTERVAL` until `shutdown`: each stream's lag (entries not yet
/// delivered to the group) and the age of its oldest unfinished entry, as metrics.
async fn sample_streams(
    mut con: Redis,
    group: String,
    streams: Arc<Mutex<BTreeSet<String>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let known: Vec<String> = streams
            .lock()
            .map(|streams| streams.iter().cloned().collect())
            .unwrap_or_default();
        for stream in known {
            let Ok(Some(info)) = group_info(&mut con, &stream, &group).await else {
                continue;
            };
            metrics::lag(&stream, info.lag.unwrap_or(0));
            if let Ok(added) = oldest_unprocessed_ms(&mut con, &stream, &group, &info).await {
                let age = added.map_or(0, |added| redsink_core::time::now_ms() - added);
                metrics::oldest_unprocessed(&stream, age.max(0) as f64 / 1e3);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
    }
}
