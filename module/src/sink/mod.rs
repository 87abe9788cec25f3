//! Sinks onto Redis's own types (`SINK.*`): one native command does what a client would
//! do in several round trips, and other applications keep reading the keys with plain
//! commands.
//!
//! Hashes, sorted sets, streams and expiries are written through the low-level key API
//! and replicated explicitly as the plain commands that have the same effect (`HSET`,
//! `ZADD`, `XADD <id>`, `PEXPIREAT`…; see `keys`); strings, lists and sets through
//! `RM_Call` with replication. Replicas and the AOF receive those commands, wrapped in
//! MULTI/EXEC: they never re-decide anything. Versions are module state, changed on
//! replicas only through the replicated `SINK.SETVERSION`.

pub mod commands;
pub mod data_type;
pub mod events;
mod info;
pub mod migrate;
pub mod named;
pub mod write;

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use redsink_core::late::LateIds;
use redsink_core::named::SinkDefinition;
use redsink_core::versions::Versions;

/// A named sink and what it has done since the server started.
#[derive(Debug, Clone)]
pub struct NamedSink {
    pub definition: SinkDefinition,
    pub rows_written: u64,
    pub calls: u64,
}

/// The module's sink state. Only the main thread touches it; the mutex is never contended.
/// It must not be held across `RM_Call`: keyspace events fire inside the call and take it.
#[derive(Debug, Default)]
pub struct SinkState {
    pub versions: Versions,
    pub sinks: BTreeMap<String, NamedSink>,
    /// Stream ids added late (see `SINK.STREAM … ID`) ...
    pub late: LateIds,
    /// ... and the ids those entries were given instead.
    pub taken: LateIds,
}

static STATE: LazyLock<Mutex<SinkState>> = LazyLock::new(Default::default);

pub fn state() -> MutexGuard<'static, SinkState> {
    // A panic while it was held (a bug, caught by the command adapter) leaves the state
    // as it was at that point; keep serving rather than fail every later command.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
