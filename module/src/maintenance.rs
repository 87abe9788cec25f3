//! The module's background work, on one timer: reclaiming expired device records (every
//! 100 ms, a slice at a time) and forgetting expired tombstones and late stream ids
//! (every second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use redis_module::Context;
use redsink_core::time;

use crate::ds::reclaim::Reclaimer;
use crate::sink;

const INTERVAL: Duration = Duration::from_millis(100);
/// Tombstones are purged every this many runs.
const PURGE_EVERY: u32 = 10;

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
        if maintenance.runs.is_multiple_of(PURGE_EVERY) {
            let now = time::now_ms();
            let mut state = sink::state();
            state.versions.purge(now);
            state.late.purge(now);
            state.taken.purge(now);
        }
    }));
    if outcome.is_err() {
        ctx.log_warning("redsink: background maintenance panicked; please report this bug");
    }
    ctx.create_timer(INTERVAL, run, maintenance);
}
