//! Keeps versions with their keys: keyspace events (delete, expiry, eviction, rename,
//! move, restore, copy) and server events (FLUSHDB/FLUSHALL, SWAPDB).

use std::ffi::c_void;
use std::os::raw::c_int;

use redis_module::{raw, Context, NotifyEvent, Status};

use super::{state, write};

/// Subscribed for generic, expired and evicted events (see lib.rs).
pub fn on_keyspace_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    if state().versions.is_empty() {
        return;
    }
    let db = write::current_db(ctx);
    if event == "del" {
        // A key MIGRATE moved: its versions go along.
        super::migrate::on_deleted(ctx, db, key);
    }
    let mut state = state();
    match event {
        "del" | "expired" | "evicted" | "restore" | "copy_to" => state.versions.forget(db, key),
        "rename_from" | "move_from" => state.versions.move_from(db, key),
        "rename_to" | "move_to" => state.versions.move_to(db, key),
        _ => {}
    }
}

/// `RedisModuleFlushInfo` (version 1).
#[repr(C)]
struct FlushInfo {
    version: u64,
    sync: i32,
    dbnum: i32,
}

/// `RedisModuleSwapDbInfo` (version 1).
#[repr(C)]
struct SwapDbInfo {
    version: u64,
    dbnum_first: i32,
    dbnum_second: i32,
}

unsafe extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_FLUSHDB_START || data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleFlushInfo with this event.
    let info = unsafe { &*data.cast::<FlushInfo>() };
    let db = (info.dbnum >= 0).then_some(info.dbnum);
    let mut state = state();
    state.versions.flush(db);
    state.late.flush(db);
    state.taken.flush(db);
}

unsafe extern "C" fn on_swap(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleSwapDbInfo with this event.
    let info = unsafe { &*data.cast::<SwapDbInfo>() };
    let mut state = state();
    state.versions.swap(info.dbnum_first, info.dbnum_second);
    state.late.swap(info.dbnum_first, info.dbnum_second);
    state.taken.swap(info.dbnum_first, info.dbnum_second);
}

/// Subscribes to the server events (at module load).
pub fn subscribe(ctx: &Context) -> Status {
    let events: [(u64, raw::RedisModuleEventCallback); 2] = [
        (raw::REDISMODULE_EVENT_FLUSHDB, Some(on_flush)),
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swap)),
    ];
    for (id, callback) in events {
        // SAFETY: called from the module's load with its context.
        let subscribed = unsafe {
            raw::RedisModule_SubscribeToServerEvent.map(|subscribe| {
                subscribe(ctx.ctx, raw::RedisModuleEvent { id, dataver: 1 }, callback)
            })
        };
        if subscribed != Some(raw::REDISMODULE_OK as c_int) {
            ctx.log_warning("redsink: could not subscribe to flush/swapdb events");
            return Status::Err;
        }
    }
    Status::Ok
}
