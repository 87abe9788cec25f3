//! Resharding: a key that `MIGRATE` moves to another node takes its versions along, and
//! a slot given to another node takes the tombstones of its deleted keys.
//!
//! A command filter notes what a `MIGRATE` is about to move, and where. `MIGRATE` deletes
//! each key here once the destination has restored it: on that `del` keyspace event the
//! key's versions (every lane, tombstones too) go to the destination node as a cluster
//! message. A deleted key has no value to migrate: when the filter sees `CLUSTER SETSLOT
//! <slot> MIGRATING <another node>` (what `redis-cli --cluster reshard` starts each slot
//! with: from then on, writes to keys not here go there) and again at `… NODE <another
//! node>` (how it ends it), the versions kept apart from keys in that slot (tombstones,
//! keys in several lanes) go to that node the same way — from the background
//! maintenance, a bounded number at a time, so that a slot holding many never holds the
//! server up. The destination keeps each lane's newer version,
//! replicated as `SINK.SETVERSION` so that its replicas and AOF get it as any version.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Mutex;

use redis_module::{raw, Context, ContextFlags};
use redsink_core::cluster::{migrated_keys, slot_given};
use redsink_core::time;
use redsink_core::versions::{decode_transfer, encode_transfer, Entry, KeyId};

use super::{state, write};

/// The module's cluster message type for a key's versions.
const VERSIONS_MESSAGE: u8 = b'v';

/// The keys the `MIGRATE` being run moves, and the destination.
struct Migration {
    host: String,
    port: u16,
    keys: Vec<Vec<u8>>,
}

static MIGRATING: Mutex<Option<Migration>> = Mutex::new(None);

/// A slot's versions kept apart from keys, on their way to the node it goes to (its id,
/// NUL-terminated), from fingerprint `from` on.
struct Handover {
    slot: u16,
    node: Vec<c_char>,
    from: KeyId,
}

static HANDOVERS: Mutex<VecDeque<Handover>> = Mutex::new(VecDeque::new());

/// At load, in cluster mode: the filter on `MIGRATE` and the receiver of versions.
pub fn register(ctx: &Context) {
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return;
    }
    // SAFETY: OnLoad's context; the callbacks are `extern "C"` functions of this module.
    unsafe {
        if let Some(register_filter) = raw::RedisModule_RegisterCommandFilter {
            register_filter(
                ctx.ctx,
                Some(on_command),
                raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
            );
        }
        if let Some(register_receiver) = raw::RedisModule_RegisterClusterMessageReceiver {
            register_receiver(ctx.ctx, VERSIONS_MESSAGE, Some(on_versions));
        }
    }
}

/// Every command, before it runs: notes what a `MIGRATE` moves; sends a slot's versions
/// kept apart from keys to the node a `CLUSTER SETSLOT … NODE` gives it to.
unsafe extern "C" fn on_command(filter: *mut raw::RedisModuleCommandFilterCtx) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the filter context Redis passes, read within this call.
        let args: Vec<&[u8]> = unsafe {
            let (Some(count), Some(get), Some(bytes)) = (
                raw::RedisModule_CommandFilterArgsCount,
                raw::RedisModule_CommandFilterArgGet,
                raw::RedisModule_StringPtrLen,
            ) else {
                return;
            };
            let first = get(filter, 0);
            if first.is_null() {
                return;
            }
            let mut len = 0;
            let name = std::slice::from_raw_parts(bytes(first, &mut len).cast::<u8>(), len);
            if !name.eq_ignore_ascii_case(b"MIGRATE") && !name.eq_ignore_ascii_case(b"CLUSTER") {
                return;
            }
            (0..count(filter))
                .map(|at| {
                    let arg = get(filter, at);
                    let mut len = 0;
                    let ptr = bytes(arg, &mut len);
                    std::slice::from_raw_parts(ptr.cast::<u8>(), len)
                })
                .collect()
        };
        if let Some((slot, node)) = slot_given(&args) {
            send_slot(slot, node);
            return;
        }
        if !args[0].eq_ignore_ascii_case(b"MIGRATE") {
            return;
        }
        let migration = migrated_keys(&args).map(|(host, port, keys)| Migration {
            host,
            port,
            keys: keys.into_iter().map(<[u8]>::to_vec).collect(),
        });
        *MIGRATING.lock().unwrap_or_else(|e| e.into_inner()) = migration;
    }));
}

/// On a key's `del` (before its versions are forgotten here): if the `MIGRATE` being run
/// moved it, its versions go to the destination.
pub fn on_deleted(ctx: &Context, db: i32, key: &[u8]) {
    let destination = {
        let mut migrating = MIGRATING.lock().unwrap_or_else(|e| e.into_inner());
        let Some(migration) = migrating.as_mut() else {
            return;
        };
        let Some(at) = migration.keys.iter().position(|moved| moved == key) else {
            return;
        };
        migration.keys.swap_remove(at);
        (migration.host.clone(), migration.port)
    };
    let lanes = state().versions.lanes_of(db, key);
    if lanes.is_empty() {
        return;
    }
    let Some(node) = node_id(ctx, &destination.0, destination.1) else {
        ctx.log_warning(&format!(
            "redsink: no cluster node at {}:{} to send a migrated key's versions to",
            destination.0, destination.1
        ));
        return;
    };
    send_versions(ctx.ctx, &node, key, &lanes);
}

/// Queues the versions kept apart from keys in `slot` for `node` (its id), unless that is
/// this node.
fn send_slot(slot: u16, node: &[u8]) {
    const ID_LEN: usize = raw::REDISMODULE_NODE_ID_LEN as usize;
    // SAFETY: RM_GetMyClusterID gives this node's id (ID_LEN bytes, not NUL-terminated)
    // or null.
    let me = unsafe { raw::RedisModule_GetMyClusterID.map(|my_id| my_id()) };
    let myself = me
        .filter(|id| !id.is_null())
        // SAFETY: ID_LEN bytes of id, read now.
        .is_some_and(|id| unsafe { std::slice::from_raw_parts(id.cast::<u8>(), ID_LEN) } == node);
    if myself {
        return;
    }
    // Some servers read the id up to a NUL (Valkey).
    let node: Vec<c_char> = node.iter().map(|&b| b as c_char).chain([0]).collect();
    HANDOVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(Handover {
            slot,
            node,
            from: 0,
        });
}

/// Sends up to `budget` keys' versions of the slots handed over; whether more are left.
/// (For the background maintenance, with the sink state not held.)
pub fn send_handovers(ctx: &Context, budget: usize) -> bool {
    let mut handovers = HANDOVERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut sent = 0;
    while sent < budget {
        let Some(handover) = handovers.front_mut() else {
            break;
        };
        let (keys, next) =
            state()
                .versions
                .keys_in_slot(0, handover.slot, handover.from, budget - sent);
        for (key, lanes) in &keys {
            send_versions(ctx.ctx, &handover.node, key, lanes);
        }
        sent += keys.len().max(1);
        match next {
            Some(next) => handover.from = next,
            None => {
                handovers.pop_front();
            }
        }
    }
    !handovers.is_empty()
}

/// Sends a key's versions to a node (its id, NUL-terminated).
fn send_versions(
    ctx: *mut raw::RedisModuleCtx,
    node: &[c_char],
    key: &[u8],
    lanes: &[(Vec<u8>, Entry)],
) {
    let message = encode_transfer(key, lanes);
    let Ok(len) = u32::try_from(message.len()) else {
        return;
    };
    // SAFETY: a context of this module's, a NUL-terminated node id, and a message buffer
    // that lives through the call (Redis copies it).
    unsafe {
        if let Some(send) = raw::RedisModule_SendClusterMessage {
            send(
                ctx,
                node.as_ptr(),
                VERSIONS_MESSAGE,
                message.as_ptr().cast::<c_char>(),
                len,
            );
        }
    }
}

/// The id (NUL-terminated) of the cluster node at `host`:`port`.
fn node_id(ctx: &Context, host: &str, port: u16) -> Option<Vec<c_char>> {
    const ID_LEN: usize = raw::REDISMODULE_NODE_ID_LEN as usize;
    // SAFETY: the list Redis returns holds `count` ids of ID_LEN bytes each and is freed
    // below; the info call writes at most 46 bytes of address (NET_IP_STR_LEN) into a
    // 64-byte buffer, and nothing where it is given null.
    unsafe {
        let (list, info, free) = (
            raw::RedisModule_GetClusterNodesList?,
            raw::RedisModule_GetClusterNodeInfo?,
            raw::RedisModule_FreeClusterNodesList?,
        );
        let mut count = 0usize;
        let ids = list(ctx.ctx, &mut count);
        if ids.is_null() {
            return None;
        }
        let mut found = None;
        for at in 0..count {
            // Some servers read the id up to a NUL (Valkey): each one NUL-terminated.
            let mut id: Vec<c_char> = std::slice::from_raw_parts(*ids.add(at), ID_LEN).to_vec();
            id.push(0);
            let mut ip = [0 as c_char; 64];
            let mut node_port: c_int = 0;
            let ok = info(
                ctx.ctx,
                id.as_ptr(),
                ip.as_mut_ptr(),
                ptr::null_mut(),
                &mut node_port,
                ptr::null_mut(),
            );
            if ok != raw::REDISMODULE_OK as c_int {
                continue;
            }
            let ip = CStr::from_ptr(ip.as_ptr()).to_string_lossy();
            if ip == host && node_port == c_int::from(port) {
                found = Some(id);
                break;
            }
        }
        free(ids);
        found
    }
}

/// A key's versions from the node that moved it here: each lane's, where newer than this
/// node's, kept and replicated.
unsafe extern "C" fn on_versions(
    ctx: *mut raw::RedisModuleCtx,
    _sender: *const c_char,
    _type: u8,
    payload: *const u8,
    len: u32,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if payload.is_null() {
            return;
        }
        // SAFETY: Redis passes the message's bytes and their length.
        let message = unsafe { std::slice::from_raw_parts(payload, len as usize) };
        let Some((key, lanes)) = decode_transfer(message) else {
            return;
        };
        let ctx = Context::new(ctx);
        let now = time::now_ms();
        for (lane, entry) in lanes {
            let newer = state()
                .versions
                .get(0, &key, &lane, now)
                .is_none_or(|here| entry.version > here.version);
            if newer {
                set_version(&ctx, &key, &lane, entry);
            }
        }
    }));
}

fn set_version(ctx: &Context, key: &[u8], lane: &[u8], entry: Entry) {
    // A cluster has one database.
    if state().versions.set(0, key, lane, entry) {
        write::replicate_version(ctx, key, lane, entry);
    }
}
