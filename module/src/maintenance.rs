//! The module's background work, on one timer: reclaiming expired device records and
//! forgetting expired tombstones (every 100 ms, a bounded slice at a time), and late
//! stream ids (every second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;
use redsink_core::time;

use crate::ds::reclaim::Reclaimer;
use crate::sink;

const INTERVAL: Duration = Duration::from_millis(100);
/// Late stream ids are purged every this many runs.
const PURGE_EVERY: u32 = 10;
/// How long a run may spend forgetting expired tombstones (checked every
/// `TOMBSTONES_PER_CHECK`): the server stays responsive while a backlog drains (what is
/// not purged yet is expired all the same: it holds nothing back, it only takes memory).
const PURGE_TIME: Duration = Duration::from_micros(300);
const TOMBSTONES_PER_CHECK: usize = 64;

#[derive(Default)]
struct Maintenance {
    reclaimer: Reclaimer,
    runs: u32,
}

/// Starts the timer (at module load).
pub fn start(ctx: &Context) {
    ctx.create_timer(INTERVAL, run, Maintenance::default());
}

fn run(ctx: &Context, mut maintenance: Maintenance) {
    // A bug here must not take the server down with it.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        maintenance.reclaimer.run(ctx);
        maintenance.runs = maintenance.runs.wrapping_add(1);
        let now = time::now_ms();
        let mut state = sink::state();
        let started = Instant::now();
        while state.versions.purge(now, TOMBSTONES_PER_CHECK) == TOMBSTONES_PER_CHECK
            && started.elapsed() < PURGE_TIME
        {}
        if maintenance.runs.is_multiple_of(PURGE_EVERY) {
            state.late.purge(now);
            state.taken.purge(now);
        }
    }));
    if outcome.is_err() {
        ctx.log_warning("redsink: background maintenance panicked; please report this bug");
    }
    ctx.create_timer(INTERVAL, run, maintenance);
}
