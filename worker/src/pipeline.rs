//! The delivery pipeline every source feeds. A source fetches a batch of changes, hands it
//! over as [`Delivery`]s, and confirms (acknowledges, moves its slot past) what the
//! pipeline reports done; fetching, ordering and confirming are the source's.
//!
//! The pipeline plans each change's writes under the jobs of its route, writes them,
//! dead-letters what failed `max_deliveries` times — one format for every source, so that
//! any dead letter is replayed the same way — answers on `responseTopic`, and records
//! the batch's metrics.
//!
//! A batch goes through three steps, so that a source may read and plan the next batch
//! while Redis writes this one: [`Pipeline::plan`], [`Pipeline::send`] (the writes go out,
//! nothing waits), [`Pipeline::finish`] (wait for them, then dead letters and replies).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::commands::{Failed, Server, Wait};
use crate::config::{OnWaitTimeout, Processors};
use crate::connect::Redis;
use crate::error::{Error, Result};
use crate::format::{ChangeEvent, Op};
use crate::job::Job;
use crate::plan::{plan_with, Lookups, Position, Write};
use crate::{commands, metrics};

/// Field/value pairs, in order, as a stream entry holds them.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One change as a source hands it over.
pub struct Delivery {
    /// Which jobs apply: the stream a redis-stream entry came from, `schema.table` for
    /// PostgreSQL. (Shared: the deliveries of a batch mostly have the same.)
    pub route: Arc<str>,
    /// Where the change sits in its source, as logs and its dead letter name it: an entry
    /// id, `lsn 22863416`, `snapshot row 12`.
    pub at: String,
    /// The change and its place in the source's order; `Ok(None)` for what writes nothing
    /// (a tombstone, a transaction's boundary); `Err` for what cannot be planned (not a
    /// change event, no position), which fails as a write would.
    pub change: std::result::Result<Option<(ChangeEvent, Position)>, String>,
    /// The stream to answer on (`responseTopic`, as a RuleGo endpoint answers).
    pub reply_to: Option<String>,
    /// The source transaction the change belongs to (a PostgreSQL commit's LSN): on one
    /// server, the writes of one transaction's changes in a batch reach Redis as one
    /// MULTI/EXEC.
    pub transaction: Option<i64>,
    /// The change as the source received it, where the source keeps it (a stream entry's
    /// fields): its dead letter. Without it, the source rebuilds the dead letter from the
    /// change ([`Feed::letter`]).
    pub raw: Fields,
}

/// What the pipeline keeps of a delivery once its writes are planned. (The change itself
/// is dropped as soon as it is planned, unless its dead letter is to be rebuilt from it:
/// a batch of decoded changes kept until Redis answers costs the worker a tenth of its
/// time in freeing them, and each byte kept here costs the drain.)
pub struct Delivered {
    pub route: Arc<str>,
    pub at: String,
    pub raw: Fields,
    /// The change, where `raw` is empty.
    pub change: Option<Box<ChangeEvent>>,
    /// Where to answer, and the stream id the answer gets.
    reply: Option<Box<(String, String)>>,
}

/// What the pipeline asks of a source about its deliveries.
pub trait Feed {
    /// How many times `delivered` has been attempted, this time included.
    fn deliveries(&mut self, delivered: &Delivered) -> impl Future<Output = Result<u64>> + Send;

    /// Whether a change that failed is delivered again (up to `max_deliveries`); a
    /// source that would only read the same change again dead-letters it at once.
    fn retries(&self) -> bool {
        true
    }

    /// The change as field/value pairs that replay it when added to a stream that a
    /// redis-stream source with the same jobs reads: its `raw` fields where there are any,
    /// else rebuilt from its `change`.
    fn letter(&self, delivered: &Delivered) -> Fields;
}

/// Which jobs a route's changes go to: the jobs that name it, or else the default jobs
/// (RDI's `table: "*"`) whose route pattern matches it. A job names its route in any case
/// unless it sets RDI's `case_insensitive: false`.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    named: BTreeMap<String, Vec<Arc<Job>>>,
    /// The case-insensitive jobs, by their route in small letters.
    folded: BTreeMap<String, Vec<Arc<Job>>>,
    /// (route pattern, job), `*` in the pattern standing for any table.
    defaults: Vec<(String, Arc<Job>)>,
}

impl Routes {
    /// Adds `job` on `route` (a pattern where it holds `*`).
    pub fn add(&mut self, route: String, job: &Arc<Job>) {
        let folds = job.source.case_insensitive;
        if route.contains('*') {
            let pattern = if folds { route.to_lowercase() } else { route };
            self.defaults.push((pattern, Arc::clone(job)));
        } else if folds {
            let jobs = self.folded.entry(route.to_lowercase()).or_default();
            jobs.push(Arc::clone(job));
        } else {
            self.named.entry(route).or_default().push(Arc::clone(job));
        }
    }

    /// The jobs of `route`.
    pub fn jobs(&self, route: &str) -> Vec<Arc<Job>> {
        let folded = route.to_lowercase();
        let named: Vec<Arc<Job>> = self
            .named
            .get(route)
            .into_iter()
            .chain(self.folded.get(&folded))
            .flatten()
            .cloned()
            .collect();
        if !named.is_empty() {
            return named;
        }
        self.defaults
            .iter()
            .filter(|(pattern, job)| {
                let route = if job.source.case_insensitive {
                    &folded
                } else {
                    route
                };
                redsink_core::glob::matches(pattern.as_bytes(), route.as_bytes())
            })
            .map(|(_, job)| Arc::clone(job))
            .collect()
    }
}

/// Plans, writes, dead-letters and answers for one source.
pub struct Pipeline {
    routes: Routes,
    writer: Redis,
    /// What the target can do (the redsink module, JSON).
    server: Server,
    max_deliveries: u64,
    /// The dead-letter stream's name, `{stream}` standing for the source's.
    dlq_stream: String,
    /// The replicas that must confirm a batch before it counts as done, if any.
    wait: Option<Wait>,
    on_wait_timeout: OnWaitTimeout,
    /// Set when the worker stops: writes Redis refuses for its own state are then no
    /// longer waited for.
    stopping: watch::Receiver<bool>,
    /// `max_memory_percent`: a batch waits while the target uses more of its maxmemory.
    headroom: Option<u8>,
}

/// A batch of one source's deliveries and what planning found for each.
struct Batch {
    /// The source's name for metrics and its dead-letter stream (`{stream}`).
    source: String,
    delivered: Vec<Delivered>,
    /// Why a delivery has no writes, where planning failed.
    errors: Vec<Option<String>>,
    started: Instant,
}

/// A batch planned, its writes not sent yet.
pub struct Planned {
    batch: Batch,
    writes: Vec<Vec<Write>>,
    /// Each change's source transaction.
    transactions: Vec<Option<i64>>,
    /// The changes whose jobs look things up: planned once the lookups are made, just
    /// before the batch is written (by delivery index).
    deferred: Vec<(usize, Deferred)>,
}

/// A change whose planning waits for its jobs' lookups.
struct Deferred {
    jobs: Vec<Arc<Job>>,
    event: ChangeEvent,
    position: Position,
}

/// Rounds of lookups a batch may need (one per lookup step that reads another's reply).
const MAX_LOOKUP_ROUNDS: usize = 16;

/// A batch whose writes were sent and are not confirmed yet.
pub struct InFlight {
    batch: Batch,
    applied: tokio::task::JoinHandle<
        std::result::Result<Vec<std::result::Result<(), Failed>>, redis::RedisError>,
    >,
}

/// What became of a batch.
pub struct Outcome {
    source: String,
    delivered: Vec<Delivered>,
    /// Per delivery: written (or nothing to write) or dead-lettered — the source confirms
    /// these — or failed, to be delivered again.
    done: Vec<bool>,
    failed: usize,
    dead_lettered: usize,
    started: Instant,
}

impl Pipeline {
    pub fn new(
        routes: Routes,
        writer: Redis,
        server: Server,
        processors: &Processors,
        stopping: watch::Receiver<bool>,
    ) -> Pipeline {
        Pipeline {
            routes,
            writer,
            server,
            max_deliveries: processors.max_deliveries,
            dlq_stream: processors.dlq_stream.clone(),
            wait: (processors.wait_replicas > 0).then_some(Wait {
                replicas: processors.wait_replicas,
                timeout_ms: processors.wait_timeout_ms,
            }),
            on_wait_timeout: processors.on_wait_timeout,
            stopping,
            headroom: processors.max_memory_percent,
        }
    }

    /// Whether some job reads `route`.
    pub fn routes_to(&self, route: &str) -> bool {
        !self.routes.jobs(route).is_empty()
    }

    /// Each delivery's writes under the jobs of its route. `deliveries` is best a lazy
    /// iterator (decoding as it goes): each change is then decoded, planned and dropped
    /// while its memory is still in the cache.
    pub fn plan(
        &self,
        source: &str,
        deliveries: impl ExactSizeIterator<Item = Delivery>,
    ) -> Planned {
        let started = Instant::now();
        let mut errors = Vec::with_capacity(deliveries.len());
        let mut writes = Vec::with_capacity(deliveries.len());
        let mut transactions = Vec::with_capacity(deliveries.len());
        let mut delivered = Vec::with_capacity(deliveries.len());
        let mut deferred = Vec::new();
        // The deliveries of a batch mostly share a route: its jobs are looked up once.
        let mut route_jobs: (Arc<str>, Vec<Arc<Job>>) = (Arc::from(""), Vec::new());
        let mut by_op = [("c", 0), ("u", 0), ("d", 0), ("r", 0)];
        let (mut filtered, mut rejected) = (0, 0);
        for Delivery {
            route,
            at,
            change,
            reply_to,
            transaction,
            raw,
        } in deliveries
        {
            transactions.push(transaction);
            if *route_jobs.0 != *route {
                route_jobs = (Arc::clone(&route), self.routes.jobs(&route));
            }
            if let Ok(Some((event, _))) = &change {
                let at = match event.op {
                    Op::Create => 0,
                    Op::Update => 1,
                    Op::Delete => 2,
                    Op::Read => 3,
                };
                by_op[at].1 += 1;
            }
            let has_change = matches!(&change, Ok(Some(_)));
            let deferring = has_change && route_jobs.1.iter().any(|job| job.looks_up());
            let (planned, change, reply) = match change {
                Ok(Some((event, position))) if deferring => {
                    let reply = reply_to.map(|topic| Box::new((topic, position.stream_id.clone())));
                    let kept = raw.is_empty().then(|| Box::new(event.clone()));
                    deferred.push((
                        delivered.len(),
                        Deferred {
                            jobs: route_jobs.1.clone(),
                            event,
                            position,
                        },
                    ));
                    (Ok(Vec::new()), kept, reply)
                }
                Ok(Some((event, position))) => {
                    let planned = plan_change(&route_jobs.1, &event, &position);
                    let reply = reply_to.map(|topic| Box::new((topic, position.stream_id)));
                    (planned, raw.is_empty().then(|| Box::new(event)), reply)
                }
                Ok(None) => (Ok(Vec::new()), None, None),
                Err(error) => (Err(error), None, None),
            };
            let (planned, error) = match planned {
                Ok(planned) => (planned, None),
                Err(error) => (Vec::new(), Some(error)),
            };
            if error.is_some() {
                rejected += 1;
            } else if planned.is_empty() && !deferring && has_change {
                filtered += 1;
            }
            writes.push(planned);
            errors.push(error);
            delivered.push(Delivered {
                route,
                at,
                raw,
                change,
                reply,
            });
        }
        metrics::changes(source, by_op, filtered, rejected);
        metrics::stage(source, "plan", started.elapsed());
        Planned {
            batch: Batch {
                source: source.to_owned(),
                delivered,
                errors,
                started,
            },
            writes,
            transactions,
            deferred,
        }
    }

    /// Sends a planned batch's writes without waiting for them. A source sends a batch only
    /// once the one before is finished, so that writes reach Redis in its order.
    pub fn send(&self, planned: Planned) -> InFlight {
        let Planned {
            batch,
            mut writes,
            transactions,
            deferred,
        } = planned;
        let mut writer = self.writer.clone();
        let server = self.server;
        let (source, mut stopping) = (batch.source.clone(), self.stopping.clone());
        let headroom = self.headroom.filter(|_| !writer.is_cluster());
        let applied = tokio::spawn(async move {
            let started = Instant::now();
            if let Some(percent) = headroom {
                wait_for_headroom(&mut writer, percent, &source, &mut stopping).await?;
            }
            let unplanned = plan_deferred(&mut writer, deferred, &mut writes).await?;
            let mut applied = commands::apply(&mut writer, &writes, &transactions, server).await?;
            write_again_while_refused(
                &mut writer,
                &writes,
                &transactions,
                server,
                &mut applied,
                &source,
                &mut stopping,
            )
            .await?;
            // After any resend: a change that could not be planned has no writes, which a
            // resend would count as written.
            for (index, error) in unplanned {
                applied[index] = Err(Failed::of_event(error));
            }
            metrics::stage(&source, "write", started.elapsed());
            Ok(applied)
        });
        InFlight { batch, applied }
    }

    /// Plans, sends and finishes a batch.
    pub async fn deliver(
        &mut self,
        source: &str,
        deliveries: impl ExactSizeIterator<Item = Delivery>,
        feed: &mut impl Feed,
    ) -> Result<Outcome> {
        let in_flight = self.send(self.plan(source, deliveries));
        self.finish(in_flight, feed).await
    }

    /// Waits for a batch's writes; then dead-letters what failed `max_deliveries` times and
    /// answers on `responseTopic`. An error (Redis gone) leaves the whole batch to be
    /// delivered again.
    pub async fn finish(&mut self, in_flight: InFlight, feed: &mut impl Feed) -> Result<Outcome> {
        let InFlight {
            batch:
                Batch {
                    source,
                    delivered,
                    errors,
                    started,
                },
            applied,
        } = in_flight;
        let applied = applied
            .await
            .map_err(|e| Error::Invalid(format!("writing a batch: {e}")))??;
        // Still refused by Redis for its own state (the worker is stopping): not the
        // changes' fault; the batch is left to be delivered again.
        if let Some(refused) = applied.iter().find_map(|outcome| match outcome {
            Err(failed) if failed.transient => Some(failed.reason.clone()),
            _ => None,
        }) {
            return Err(Error::Invalid(format!(
                "Redis refuses writes ({refused}); the batch is left to be delivered again"
            )));
        }
        let mut done = Vec::with_capacity(delivered.len());
        let mut replies = Vec::new();
        let (mut failed, mut dead_lettered) = (0, 0);
        for ((delivery, error), applied) in delivered.iter().zip(errors).zip(applied) {
            let applied = applied.map_err(|failed| failed.reason);
            let Err(error) = error.map_or(applied, Err) else {
                done.push(true);
                replies.extend(reply(delivery, &source, None));
                continue;
            };
            failed += 1;
            let deliveries = feed.deliveries(delivery).await?;
            if feed.retries() && deliveries < self.max_deliveries {
                tracing::warn!(
                    source,
                    at = delivery.at,
                    deliveries,
                    "change failed, will retry: {error}"
                );
                done.push(false);
                continue;
            }
            self.dead_letter(&source, delivery, &error, deliveries, feed.letter(delivery))
                .await?;
            dead_lettered += 1;
            done.push(true);
            replies.extend(reply(delivery, &source, Some(&error)));
        }
        if !replies.is_empty() {
            // Each answer on its own: one that cannot be written holds up no other.
            let replies: Vec<Vec<Write>> = replies.into_iter().map(|reply| vec![reply]).collect();
            for failed in commands::apply(&mut self.writer, &replies, &[], self.server)
                .await?
                .into_iter()
                .filter_map(|outcome| outcome.err())
            {
                tracing::warn!(source, "a reply could not be written: {}", failed.reason);
            }
        }
        self.wait_for_replicas(&source).await?;
        Ok(Outcome {
            source,
            delivered,
            done,
            failed,
            dead_lettered,
            started,
        })
    }

    /// With `wait_replicas`: before a batch counts as done, its writes (and dead letters
    /// and replies) confirmed by that many replicas, so that a failover right after the
    /// acknowledgement loses nothing. Not confirmed in time: an error (the batch is
    /// written again), or with `on_wait_timeout: continue` a warning and a count.
    async fn wait_for_replicas(&mut self, source: &str) -> Result<()> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        if commands::replicas_confirm(&mut self.writer, wait).await? {
            return Ok(());
        }
        let what = format!(
            "fewer than {} replicas confirmed the batch's writes within {} ms",
            wait.replicas, wait.timeout_ms
        );
        match self.on_wait_timeout {
            OnWaitTimeout::Retry => Err(Error::Invalid(format!(
                "{what}: it is not acknowledged, and will be written again"
            ))),
            OnWaitTimeout::Continue => {
                tracing::warn!(
                    source,
                    "{what}: acknowledged all the same (on_wait_timeout: continue)"
                );
                metrics::wait_timeout(source);
                Ok(())
            }
        }
    }

    /// Adds a change to the dead-letter stream: `source`, `at`, `error` and `deliveries`,
    /// then the change's own fields, which replay it as they are.
    async fn dead_letter(
        &mut self,
        source: &str,
        delivery: &Delivered,
        error: &str,
        deliveries: u64,
        letter: Fields,
    ) -> Result<()> {
        let dlq = self.dlq_stream.replace("{stream}", source);
        let mut add = redis::cmd("XADD");
        add.arg(&dlq)
            .arg("*")
            .arg("source")
            .arg(source)
            .arg("at")
            .arg(&delivery.at)
            .arg("error")
            .arg(error)
            .arg("deliveries")
            .arg(deliveries);
        for (field, value) in &letter {
            add.arg(field).arg(value);
        }
        self.writer.write::<String>(&add).await?;
        tracing::error!(
            source,
            at = delivery.at,
            deliveries,
            dlq,
            "change moved to the dead-letter stream: {error}"
        );
        Ok(())
    }
}

impl Outcome {
    /// The deliveries done: the source may confirm them.
    pub fn done(&self) -> impl Iterator<Item = &Delivered> {
        self.delivered
            .iter()
            .zip(&self.done)
            .filter_map(|(delivery, done)| done.then_some(delivery))
    }

    pub fn all_done(&self) -> bool {
        self.done.iter().all(|done| *done)
    }

    pub fn len(&self) -> usize {
        self.delivered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty()
    }

    /// The batch's metrics, once the source has confirmed `acked` of its deliveries.
    pub fn record(&self, acked: usize) {
        tracing::debug!(source = self.source, read = self.len(), acked, "batch done");
        metrics::record(&metrics::BatchReport {
            stream: &self.source,
            read: self.len(),
            written: self.len() - self.failed,
            acked,
            failed: self.failed,
            dead_lettered: self.dead_lettered,
            took: self.started.elapsed(),
        });
    }
}

/// The answer to a delivery that asked for one: `body` `ok`, or `error` with the error;
/// its id is the delivery's place in its source, so that a replayed answer adds nothing.
fn reply(delivery: &Delivered, source: &str, error: Option<&str>) -> Option<Write> {
    let (topic, stream_id) = delivery.reply.as_deref()?;
    let mut row = serde_json::Map::new();
    row.insert(
        "body".into(),
        (if error.is_some() { "error" } else { "ok" }).into(),
    );
    row.insert("source_stream".into(), source.into());
    row.insert("source_id".into(), delivery.at.clone().into());
    if let Some(error) = error {
        row.insert("error".into(), error.into());
    }
    Some(Write::Stream {
        key: topic.clone(),
        json: redsink_core::json::to_text(&serde_json::Value::Object(row)),
        op_code: None,
        id: stream_id.clone(),
        ttl: None,
    })
}

/// A change's writes under `jobs`, or why it has none.
fn plan_change(
    jobs: &[Arc<Job>],
    event: &ChangeEvent,
    position: &Position,
) -> std::result::Result<Vec<Write>, String> {
    plan_jobs(jobs, event, position, &mut Lookups::default())
        .map_err(|(job, e)| format!("job {job}: {e}"))
}

/// A change's writes under each of its jobs; the job that failed, and why.
fn plan_jobs(
    jobs: &[Arc<Job>],
    event: &ChangeEvent,
    position: &Position,
    lookups: &mut Lookups,
) -> std::result::Result<Vec<Write>, (String, Error)> {
    let mut writes = Vec::new();
    for job in jobs {
        writes.extend(plan_with(job, event, position, lookups).map_err(|e| (job.name.clone(), e))?);
    }
    Ok(writes)
}

/// Plans the deferred changes of a batch into `writes`, making their lookups in rounds —
/// one pipeline of every lookup the batch's changes wait for, then planning again — until
/// all are planned. Returns the changes that could not be (index, why).
async fn plan_deferred(
    writer: &mut Redis,
    mut deferred: Vec<(usize, Deferred)>,
    writes: &mut [Vec<Write>],
) -> std::result::Result<Vec<(usize, String)>, redis::RedisError> {
    let mut lookups = Lookups::default();
    let mut failed = Vec::new();
    for _ in 0..MAX_LOOKUP_ROUNDS {
        let mut waiting = Vec::new();
        for (index, change) in deferred {
            match plan_jobs(&change.jobs, &change.event, &change.position, &mut lookups) {
                Ok(planned) => writes[index] = planned,
                Err((_, Error::LookupsPending)) => waiting.push((index, change)),
                Err((job, error)) => failed.push((index, format!("job {job}: {error}"))),
            }
        }
        deferred = waiting;
        if deferred.is_empty() {
            return Ok(failed);
        }
        let wanted = std::mem::take(&mut lookups.wanted);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for command in &wanted {
            pipe.add_command(command.clone());
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = pipe.query_async(writer).await?;
        for (command, reply) in wanted.iter().zip(replies) {
            let reply = reply.unwrap_or_else(|error| {
                tracing::warn!("redis.lookup {}: {error}", commands::as_cli(command));
                redis::Value::Nil
            });
            lookups.answer(command, lookup_reply(command, reply));
        }
    }
    failed.extend(
        deferred
            .into_iter()
            .map(|(index, _)| (index, "redis.lookup: the lookups did not settle".to_owned())),
    );
    Ok(failed)
}

/// A lookup's reply as JSON, as RDI's Python client gives it: `HGETALL` an object, text as
/// strings, nil as null.
fn lookup_reply(command: &redis::Cmd, reply: redis::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    let hgetall = command.args_iter().next().is_some_and(
        |name| matches!(name, redis::Arg::Simple(name) if name.eq_ignore_ascii_case(b"HGETALL")),
    );
    fn json(reply: redis::Value) -> Json {
        match reply {
            redis::Value::Int(number) => Json::from(number),
            redis::Value::BulkString(bytes) => {
                Json::String(String::from_utf8_lossy(&bytes).into_owned())
            }
            redis::Value::SimpleString(text) => Json::String(text),
            redis::Value::Okay => Json::from("OK"),
            redis::Value::Double(number) => {
                serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number)
            }
            redis::Value::Boolean(flag) => Json::Bool(flag),
            redis::Value::Array(items) | redis::Value::Set(items) => {
                Json::Array(items.into_iter().map(json).collect())
            }
            redis::Value::Map(pairs) => Json::Object(
                pairs
                    .into_iter()
                    .map(|(name, value)| (text_of(json(name)), json(value)))
                    .collect(),
            ),
            redis::Value::VerbatimString { text, .. } => Json::String(text),
            _ => Json::Null,
        }
    }
    fn text_of(value: Json) -> String {
        match value {
            Json::String(text) => text,
            other => other.to_string(),
        }
    }
    match (hgetall, json(reply)) {
        (true, Json::Array(flat)) => Json::Object(
            flat.chunks(2)
                .filter_map(|pair| Some((text_of(pair.first()?.clone()), pair.get(1)?.clone())))
                .collect(),
        ),
        (_, value) => value,
    }
}

/// Headroom: waits while Redis uses more than `percent` of its `maxmemory` (when it has
/// one), pausing as for back-pressure, until it is under or the worker stops.
async fn wait_for_headroom(
    writer: &mut Redis,
    percent: u8,
    source: &str,
    stopping: &mut watch::Receiver<bool>,
) -> std::result::Result<(), redis::RedisError> {
    let mut pause = Duration::from_millis(50);
    let mut paused = false;
    loop {
        let info: String = redis::cmd("INFO").arg("memory").query_async(writer).await?;
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0)
        };
        let (used, max) = (field("used_memory"), field("maxmemory"));
        if max == 0 || used.saturating_mul(100) < max.saturating_mul(u64::from(percent)) {
            break;
        }
        if !paused {
            tracing::warn!(
                source,
                used,
                maxmemory = max,
                "Redis uses more than {percent} % of its maxmemory (max_memory_percent): writes wait"
            );
            metrics::backpressure(source, true);
            paused = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => break,
        }
        if *stopping.borrow() {
            break;
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    if paused {
        metrics::backpressure(source, false);
        tracing::info!(source, "Redis has room again: writing");
    }
    Ok(())
}

/// Back-pressure: writes Redis refused for its own state (out of memory, busy, loading, a
/// failover — [`Failed::transient`]) are written again (with every change after the first
/// refused one, in order), after a pause that grows to 2 s,
/// until Redis takes them or the worker stops; `redsink_backpressure_paused` shows the
/// pause. They never count as failed deliveries: the changes are not at fault.
async fn write_again_while_refused(
    writer: &mut Redis,
    writes: &[Vec<Write>],
    transactions: &[Option<i64>],
    server: Server,
    applied: &mut [std::result::Result<(), Failed>],
    source: &str,
    stopping: &mut watch::Receiver<bool>,
) -> std::result::Result<(), redis::RedisError> {
    // From the first refused change on, every change goes again, in order: one written
    // after it must not be overwritten by it (the writes are idempotent).
    let refused = |applied: &[std::result::Result<(), Failed>]| -> Vec<usize> {
        let first = applied
            .iter()
            .position(|outcome| matches!(outcome, Err(failed) if failed.transient));
        first.map_or_else(Vec::new, |first| (first..applied.len()).collect())
    };
    let mut again = refused(applied);
    if again.is_empty() {
        return Ok(());
    }
    let mut pause = Duration::from_millis(50);
    let started = Instant::now();
    metrics::backpressure(source, true);
    while !again.is_empty() && !*stopping.borrow() {
        if let Err(failed) = &applied[again[0]] {
            tracing::warn!(
                source,
                changes = again.len(),
                "Redis refuses writes, pausing {} ms: {}",
                pause.as_millis(),
                failed.reason
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => break,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
        let retry: Vec<Vec<Write>> = again.iter().map(|&i| writes[i].clone()).collect();
        let retry_transactions: Vec<Option<i64>> = again
            .iter()
            .map(|&i| transactions.get(i).copied().flatten())
            .collect();
        let outcomes = commands::apply(writer, &retry, &retry_transactions, server).await?;
        for (&i, outcome) in again.iter().zip(outcomes) {
            applied[i] = outcome;
        }
        again = refused(applied);
    }
    metrics::backpressure(source, false);
    if again.is_empty() {
        tracing::info!(
            source,
            paused_ms = started.elapsed().as_millis() as u64,
            "Redis takes writes again"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The names of the jobs each route goes to, with `jobs` (job files) routed.
    fn routed(jobs: &[&str]) -> impl Fn(&str) -> Vec<String> {
        let mut routes = Routes::default();
        for text in jobs {
            let job = Arc::new(Job::parse(text, Path::new("job.yaml")).unwrap());
            for stream in job.streams("data:") {
                routes.add(stream, &job);
            }
        }
        move |route| {
            routes
                .jobs(route)
                .iter()
                .map(|job| job.name.clone())
                .collect()
        }
    }

    #[test]
    fn named_jobs_first_then_default_jobs_by_pattern() {
        let names = routed(&[
            "name: invoices\nsource: {server_name: chinook, schema: public, table: invoice}\n",
            "name: default\nsource: {server_name: chinook, schema: public, table: \"*\"}\n",
        ]);
        assert_eq!(names("data:chinook.public.invoice"), ["invoices"]);
        assert_eq!(names("data:chinook.public.track"), ["default"]);
        assert!(names("data:other.public.track").is_empty());
    }

    /// RDI's `case_insensitive` (true by default): a job names its table, schema, database
    /// and server in any case; with `false`, exactly.
    #[test]
    fn routes_match_in_any_case_unless_told_not_to() {
        let names = routed(&[
            "name: any\nsource: {server_name: Chinook, schema: public, table: Invoice}\n",
            "name: exact\nsource: {server_name: chinook, schema: public, table: Track, case_insensitive: false}\n",
            "name: default\nsource: {server_name: CHINOOK, table: \"*\"}\n",
        ]);
        assert_eq!(names("data:chinook.public.invoice"), ["any"]);
        assert_eq!(names("data:CHINOOK.PUBLIC.INVOICE"), ["any"]);
        assert_eq!(names("data:chinook.public.Track"), ["exact"]);
        assert_eq!(names("data:chinook.public.track"), ["default"]);
        assert_eq!(names("data:Chinook.album"), ["default"]);
    }
}
