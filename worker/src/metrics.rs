//! Prometheus metrics at `/metrics` (when `metrics.address` is configured): what each
//! source stream has seen, and how far behind the group is.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::error::{Error, Result};

/// Serves `/metrics` on `address` (inside the tokio runtime).
pub fn serve(address: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .map_err(|e| Error::Invalid(format!("metrics on {address}: {e}")))?;
    tracing::info!(%address, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// What happened to a batch of one source's changes.
pub struct BatchReport<'a> {
    pub stream: &'a str,
    pub read: usize,
    pub written: usize,
    pub acked: usize,
    pub failed: usize,
    pub dead_lettered: usize,
    pub took: Duration,
}

pub fn record(batch: &BatchReport) {
    let stream = batch.stream.to_owned();
    counter!("redsink_events_read_total", "stream" => stream.clone()).increment(batch.read as u64);
    counter!("redsink_events_written_total", "stream" => stream.clone())
        .increment(batch.written as u64);
    counter!("redsink_events_acked_total", "stream" => stream.clone())
        .increment(batch.acked as u64);
    counter!("redsink_events_failed_total", "stream" => stream.clone())
        .increment(batch.failed as u64);
    counter!("redsink_events_dead_lettered_total", "stream" => stream.clone())
        .increment(batch.dead_lettered as u64);
    histogram!("redsink_batch_seconds", "stream" => stream).record(batch.took.as_secs_f64());
}

/// A batch of `stream` whose writes the replicas did not confirm in time, acknowledged
/// all the same (`on_wait_timeout: continue`).
pub fn wait_timeout(stream: &str) {
    counter!("redsink_wait_timeouts_total", "stream" => stream.to_owned()).increment(1);
}

/// An entry of `stream` that writes nothing, by kind (tombstone, heartbeat, transaction).
pub fn skipped(stream: &str, kind: &'static str) {
    counter!("redsink_events_skipped_total", "stream" => stream.to_owned(), "kind" => kind)
        .increment(1);
}

/// A source's attempt failed (and is retried).
pub fn source_error(source: &str) {
    counter!("redsink_source_errors_total", "source" => source.to_owned()).increment(1);
}

/// How many of a source's attempts in a row have failed (0: it works).
pub fn source_failing(source: &str, in_a_row: u64) {
    gauge!("redsink_source_failing", "source" => source.to_owned()).set(in_a_row as f64);
}

/// Entries of `stream` not yet delivered to the group (XINFO GROUPS `lag`).
pub fn lag(stream: &str, lag: i64) {
    gauge!("redsink_stream_lag", "stream" => stream.to_owned()).set(lag as f64);
}

/// Whether a source's writes are paused because Redis refuses them for its own state.
pub fn backpressure(source: &str, paused: bool) {
    gauge!("redsink_backpressure_paused", "source" => source.to_owned()).set(if paused {
        1.0
    } else {
        0.0
    });
}

/// How long one stage of a batch took: `read` (a read that found a batch waiting),
/// `plan`, `write` (until Redis answered), `ack` (XACK, or the slot advanced).
pub fn stage(stream: &str, stage: &'static str, took: Duration) {
    histogram!("redsink_stage_seconds", "stream" => stream.to_owned(), "stage" => stage)
        .record(took.as_secs_f64());
}

/// What a batch held: changes by operation (`c`, `u`, `d`, `r`), those no job wrote
/// anything for (`filtered`) and those that could not be planned (`rejected`).
pub fn changes(stream: &str, by_op: [(&'static str, u64); 4], filtered: u64, rejected: u64) {
    for (op, count) in by_op {
        if count > 0 {
            counter!("redsink_events_by_op_total", "stream" => stream.to_owned(), "op" => op)
                .increment(count);
        }
    }
    counter!("redsink_events_filtered_total", "stream" => stream.to_owned()).increment(filtered);
    counter!("redsink_events_rejected_total", "stream" => stream.to_owned()).increment(rejected);
}

/// How long ago the oldest entry of `stream` the group has not finished was added
/// (pending, or not yet delivered); 0 when there is none.
pub fn oldest_unprocessed(stream: &str, seconds: f64) {
    gauge!("redsink_stream_oldest_unprocessed_seconds", "stream" => stream.to_owned()).set(seconds);
}
