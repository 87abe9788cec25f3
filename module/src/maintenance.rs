//! The module's background work, on one timer: reclaiming expired device records and
//! forgetting expired tombstones (every 100 ms, a bounded slice at a time; every 10 ms
//! while a backlog of expired tombstones lasts), and late stream ids (every second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;
use redsink_core::time;

use crate::ds::reclaim::Reclaimer;
use crate::sink;

const INTERVAL: Duration = Duration::from_millis(100);
/// The next slice of a tombstone backlog comes this soon: 3 % of the server's time, in
/// slices of [`PURGE_TIME`].
const CATCH_UP: Duration = Duration::from_millis(10);
/// Late stream ids are purged this often.
const LATE_IDS_EVERY: Duration = Duration::from_secs(1);
/// How long a run may spend forgetting expired tombstones (checked every
/// `TOMBSTONES_PER_CHECK`): the server stays responsive while a backlog drains (what is
/// not purged yet is expired all the same: it holds nothing back, it only takes memory).
const PURGE_TIME: Duration = Duration::from_micros(300);
const TOMBSTONES_PER_CHECK: usize = 64;

struct Maintenance {
    reclaimer: Reclaimer,
    next_run: Instant,
    next_late_ids: Instant,
}

/// Starts the timer (at module load).
pub fn start(ctx: &Context) {
    let now = Instant::now();
    let maintenance = Maintenance {
        reclaimer: Reclaimer::default(),
        next_run: now,
        next_late_ids: now + LATE_IDS_EVERY,
    };
    ctx.create_timer(INTERVAL, run, maintenance);
}

fn run(ctx: &Context, mut maintenance: Maintenance) {
    // A bug here must not take the server down with it.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let started = Instant::now();
        let now = time::now_ms();
        if started >= maintenance.next_run {
            maintenance.next_run = started + INTERVAL;
            maintenance.reclaimer.run(ctx);
        }
        let mut state = sink::state();
        if started >= maintenance.next_late_ids {
            maintenance.next_late_ids = started + LATE_IDS_EVERY;
            state.late.purge(now);
            state.taken.purge(now);
        }
        let mut backlog = true;
        while backlog && started.elapsed() < PURGE_TIME {
            backlog = state.versions.purge(now, TOMBSTONES_PER_CHECK) == TOMBSTONES_PER_CHECK;
        }
        backlog
    }));
    let wait = match outcome {
        Ok(true) => CATCH_UP,
        Ok(false) => maintenance
            .next_run
            .saturating_duration_since(Instant::now()),
        Err(_) => {
            ctx.log_warning("redsink: background maintenance panicked; please report this bug");
            INTERVAL
        }
    };
    ctx.create_timer(wait, run, maintenance);
}
