//! `INFO redsink`: what the sink state holds, so that operators see the versions' memory
//! and a tombstone backlog draining.

use redis_module::{InfoContext, RedisResult};
use redis_module_macros::info_command_handler;

use super::state;

#[info_command_handler]
fn sink_info(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    // A crash may have come while the state was held: report nothing rather than wait.
    if for_crash_report {
        return Ok(());
    }
    let state = state();
    let stats = state.versions.stats();
    let count = |n: usize| n as u64;
    ctx.builder()
        .add_section("state")
        .field(
            "versioned_keys",
            count(stats.compact_keys + stats.wide_keys),
        )?
        .field("compact_keys", count(stats.compact_keys))?
        .field("compact_bytes", count(stats.compact_bytes))?
        .field("wide_keys", count(stats.wide_keys))?
        .field("wide_bytes", count(stats.wide_bytes))?
        .field("tombstone_deadlines", count(stats.deadlines))?
        .field(
            "tombstone_purge_slowest_us",
            crate::maintenance::slowest_purge_us(),
        )?
        .field("lanes", count(stats.lanes))?
        .field("named_sinks", count(state.sinks.len()))?
        .build_section()?
        .build_info()?;
    Ok(())
}
