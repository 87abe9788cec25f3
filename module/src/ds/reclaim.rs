//! Background reclaim of expired device records.
//!
//! Expired records are already invisible to every read; this frees their memory. On the
//! primary only, a timer walks the keyspace a slice at a time, and for each device stream
//! with a TTL frees a bounded number of expired records, replicating the removal as
//! `DS.DEL` so that replicas and the AOF free the same records. Replicas never decide
//! expiry themselves: a record they hold may still be live on a primary that lags.

use std::cell::RefCell;
use std::os::raw::c_int;

use redis_module::{raw, Context, ContextFlags, KeysCursor};
use redsink_core::time;

use super::{StreamValue, DS_TYPE};
use crate::command::redis_string;

/// Keys looked at per run (the keyspace walk's slice).
const KEYS_PER_RUN: usize = 1000;
/// Records looked at per stream per run.
const RECORDS_PER_STREAM: usize = 10_000;

/// Where the keyspace walk stands.
pub struct Reclaimer {
    db: c_int,
    cursor: KeysCursor,
}

impl Default for Reclaimer {
    fn default() -> Self {
        Reclaimer {
            db: 0,
            cursor: KeysCursor::new(),
        }
    }
}

impl Reclaimer {
    /// One slice of the walk, on a primary with device streams (the maintenance timer
    /// calls it every 100 ms).
    pub fn run(&mut self, ctx: &Context) {
        let flags = ctx.get_flags();
        let primary =
            flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING);
        if primary && StreamValue::any_alive() {
            self.step(ctx);
        }
    }
    fn step(&mut self, ctx: &Context) {
        if !select_db(ctx, self.db) {
            self.db = 0;
            self.cursor.restart();
            if !select_db(ctx, 0) {
                return;
            }
        }
        let found = RefCell::new(Vec::new());
        let visited = RefCell::new(0usize);
        let mut more = true;
        while more && *visited.borrow() < KEYS_PER_RUN {
            more = self.cursor.scan(ctx, &|_ctx, name, key| {
                *visited.borrow_mut() += 1;
                let stream =
                    key.and_then(|key| key.get_value::<StreamValue>(&DS_TYPE).ok().flatten());
                if stream.is_some_and(|stream| stream.settings().ttl_secs > 0) {
                    found.borrow_mut().push(name.as_slice().to_vec());
                }
            });
        }
        if !more {
            self.cursor.restart();
            self.db += 1;
        }
        let now = time::now_ms();
        for name in found.into_inner() {
            reclaim_stream(ctx, &name, now);
        }
    }
}

fn reclaim_stream(ctx: &Context, name: &[u8], now: i64) {
    let key_name = redis_string(ctx, name);
    let key = ctx.open_key_writable(&key_name);
    let Ok(Some(stream)) = key.get_value::<StreamValue>(&DS_TYPE) else {
        return;
    };
    let removed = stream.reclaim(now, RECORDS_PER_STREAM);
    if !removed.is_empty() {
        let mut args: Vec<&[u8]> = vec![name];
        args.extend(removed.iter().map(|device| device.as_bytes()));
        ctx.replicate("DS.DEL", args.as_slice());
    }
}

fn select_db(ctx: &Context, db: c_int) -> bool {
    // SAFETY: called from a timer callback with the context Redis gave it.
    unsafe {
        raw::RedisModule_SelectDb
            .is_some_and(|select| select(ctx.ctx, db) == raw::REDISMODULE_OK as c_int)
    }
}
