//! Where change events come from.

pub mod entries;
pub mod postgres;
pub mod redis_stream;

use std::fmt::Display;
use std::time::Duration;

use crate::connect::Redis;
use crate::metrics;

/// Failures in a row after which a source's retries are logged as errors: an error that
/// keeps coming back must show, not loop as one more warning.
const FAILURES_BEFORE_ERROR: u64 = 5;

/// A source's failures in a row (each retried): counted in `redsink_source_errors_total`,
/// shown by `redsink_source_failing` until it works again, logged as warnings and, once
/// they keep coming, as errors.
pub struct Failures {
    source: String,
    /// Where the last error is kept for `redsink-worker status` (the hash
    /// [`status_key`]), if anywhere.
    record: Option<Redis>,
    in_a_row: u64,
    /// Whether the source has ever worked: until it has, a configuration error is fatal.
    worked: bool,
}

impl Failures {
    pub fn new(source: String, record: Option<Redis>) -> Failures {
        metrics::source_failing(&source, 0);
        Failures {
            source,
            record,
            in_a_row: 0,
            worked: false,
        }
    }

    /// Whether the source has worked once.
    pub fn worked(&self) -> bool {
        self.worked
    }

    /// How many in a row so far.
    pub fn in_a_row(&self) -> u64 {
        self.in_a_row
    }

    /// One more; it is retried after `retry_in`.
    pub fn failed(&mut self, error: &dyn Display, retry_in: Duration) {
        self.in_a_row += 1;
        metrics::source_error(&self.source);
        metrics::source_failing(&self.source, self.in_a_row);
        let (source, failures) = (self.source.as_str(), self.in_a_row);
        let retry_ms = retry_in.as_millis();
        self.keep(vec![
            ("error", error.to_string()),
            ("at", redsink_core::time::now_ms().to_string()),
            ("failing", failures.to_string()),
        ]);
        if failures >= FAILURES_BEFORE_ERROR {
            tracing::error!(
                source,
                failures,
                "still failing after {failures} attempts: {error}; retrying in {retry_ms} ms"
            );
        } else {
            tracing::warn!(source, failures, "{error}; retrying in {retry_ms} ms");
        }
    }

    /// The source works (again).
    pub fn succeeded(&mut self) {
        let failing = self.in_a_row > 0;
        if failing {
            tracing::info!(
                source = self.source,
                failures = self.in_a_row,
                "working again"
            );
            metrics::source_failing(&self.source, 0);
            self.in_a_row = 0;
        }
        // The first success also clears a count an earlier run of the worker left.
        if failing || !self.worked {
            self.keep(vec![("failing", "0".to_owned())]);
        }
        self.worked = true;
    }
}

impl Failures {
    /// Keeps `fields` in the source's status hash, without waiting (Redis may be what
    /// fails: then they are lost, and the log still says it).
    fn keep(&self, fields: Vec<(&'static str, String)>) {
        let Some(mut con) = self.record.clone() else {
            return;
        };
        let key = status_key(&self.source);
        tokio::spawn(async move {
            let _ = redis::cmd("HSET")
                .arg(key)
                .arg(fields)
                .query_async::<i64>(&mut con)
                .await;
        });
    }
}

/// The hash where a source keeps its last error (`error`, `at` in ms since the epoch) and
/// its failures in a row now (`failing`), for `redsink-worker status`.
pub fn status_key(source: &str) -> String {
    format!("redsink:status:{source}")
}
