//! The module's background work, on one timer: reclaiming expired device records, sending
//! the tombstones of slots handed to other nodes (a thousand keys a run), and
//! forgetting expired tombstones (every 100 ms, a bounded slice at a time; every
//! millisecond while a backlog of expired tombstones lasts), and late stream ids (every
//! second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis_module::Context;
use redsink_core::time;

use crate::ds::reclaim::Reclaimer;
use crate::sink;

const INTERVAL: Duration = Duration::from_millis(100);
/// The next slice of a tombstone backlog comes this soon: about a quarter of the server's
/// time while the backlog lasts, as Redis's own expiry cycle takes, in slices of
/// [`PURGE_TIME`] so that no client waits for more than one.
const CATCH_UP: Duration = Duration::from_millis(1);
/// Keys' versions sent to the node a slot goes to, at the most, each run.
const HANDOVER_KEYS: usize = 1000;
/// Late stream ids are purged this often.
const LATE_IDS_EVERY: Duration = Duration::from_secs(1);
/// How long a run may spend forgetting expired tombstones (checked every
/// `TOMBSTONES_PER_CHECK`): the server stays responsive while a backlog drains (what is
/// not purged yet is expired all the same: it holds nothing back, it only takes memory).
const PURGE_TIME: Duration = Duration::from_micros(300);
const TOMBSTONES_PER_CHECK: usize = 16;

/// The most CPU time one slice spent forgetting tombstones since the server started, in
/// µs (for INFO: what a client may have waited for the purge). CPU time, not wall time:
/// a slice the system descheduled did not make clients wait for the module.
static SLOWEST_PURGE_US: AtomicU64 = AtomicU64::new(0);

pub fn slowest_purge_us() -> u64 {
    SLOWEST_PURGE_US.load(Ordering::Relaxed)
}

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
        // Slots handed to other nodes: the versions kept apart from their keys go a
        // bounded number at a time.
        let handing_over = sink::migrate::send_handovers(ctx, HANDOVER_KEYS);
        let mut state = sink::state();
        if started >= maintenance.next_late_ids {
            maintenance.next_late_ids = started + LATE_IDS_EVERY;
            state.late.purge(now);
            state.taken.purge(now);
        }
        let purging = Instant::now();
        let cpu_before = thread_cpu_us();
        let mut backlog = true;
        while backlog && purging.elapsed() < PURGE_TIME {
            backlog = state.versions.purge(now, TOMBSTONES_PER_CHECK) == TOMBSTONES_PER_CHECK;
        }
        SLOWEST_PURGE_US.fetch_max(
            thread_cpu_us().saturating_sub(cpu_before),
            Ordering::Relaxed,
        );
        backlog || handing_over
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

/// The CPU time this thread has used, in µs.
fn thread_cpu_us() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; this clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    let micros = i128::from(now.tv_sec) * 1_000_000 + i128::from(now.tv_nsec) / 1_000;
    u64::try_from(micros).unwrap_or(0)
}
