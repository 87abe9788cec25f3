//! Keeps versions with their keys: keyspace events (delete, expiry, eviction, rename,
//! move, restore, copy) and server events (FLUSHDB/FLUSHALL, SWAPDB).

use std::ffi::c_void;
use std::os::raw::c_int;

use redis_module::{raw, Context, NotifyEvent, RedisString, Status};

use redsink_core::NEW_STREAMS_CHANNEL;

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

/// Subscribed for stream events: an XADD that leaves its stream one entry long made it (or
/// refilled an emptied one), and its name is published on [`NEW_STREAMS_CHANNEL`].
pub fn on_stream_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    if event != "xadd" {
        return;
    }
    // Announced by the primary only, once it serves: not by a replica applying the
    // primary's XADD, nor while data loads.
    // SAFETY: the callback's own context.
    let flags = unsafe { raw::RedisModule_GetContextFlags.map_or(0, |flags| flags(ctx.ctx)) };
    let mask = raw::REDISMODULE_CTX_FLAGS_SLAVE | raw::REDISMODULE_CTX_FLAGS_LOADING;
    if flags as u32 & mask != 0 {
        return;
    }
    let name = RedisString::create_from_slice(ctx.ctx, key);
    let mode = raw::KeyMode::READ.bits() | raw::REDISMODULE_OPEN_KEY_NOTOUCH as i32;
    // SAFETY: the key opened read-only (without touching its LRU/LFU time) in this
    // context, and closed right after; a missing key opens as NULL, which both take.
    let length = unsafe {
        let Some(open) = raw::RedisModule_OpenKey else {
            return;
        };
        let key = open(ctx.ctx, name.inner, mode).cast::<raw::RedisModuleKey>();
        let length = raw::RedisModule_ValueLength.map_or(0, |len| len(key));
        if let Some(close) = raw::RedisModule_CloseKey {
            close(key);
        }
        length
    };
    if length != 1 {
        return;
    }
    let channel = RedisString::create_from_slice(ctx.ctx, NEW_STREAMS_CHANNEL.as_bytes());
    // SAFETY: both strings live until the call returns.
    unsafe {
        if let Some(publish) = raw::RedisModule_PublishMessage {
            publish(ctx.ctx, channel.inner, name.inner);
        }
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
