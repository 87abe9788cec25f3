//! Writes through Redis's low-level key API: the key opened once, values set in place,
//! each effect replicated explicitly as the plain command that has it (`HSET`, `HDEL`,
//! `PEXPIREAT`) and announced as Redis's own commands announce it. `RM_Call` does the
//! same work at several times the cost: a client, a command lookup, an argument vector
//! and a reply per call.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use redis_module::{raw, Context, RedisString};
use redsink_core::sink::Fields;

use crate::error::Error;

/// `RedisModuleString *` that tells RM_HashSet to delete the field.
const HASH_DELETE: *mut raw::RedisModuleString = ptr::without_provenance_mut(1);

/// A key opened for reading and writing, closed when dropped.
pub struct WriteKey<'a> {
    ctx: &'a Context,
    name: &'a RedisString,
    key: *mut raw::RedisModuleKey,
}

impl<'a> WriteKey<'a> {
    pub fn open(ctx: &'a Context, name: &'a RedisString) -> WriteKey<'a> {
        let mode = raw::KeyMode::READ | raw::KeyMode::WRITE;
        let key = raw::open_key(ctx.ctx, name.inner, mode);
        WriteKey { ctx, name, key }
    }

    pub fn key_type(&self) -> raw::KeyType {
        // SAFETY: a key this context opened, not yet closed.
        unsafe { raw::RedisModule_KeyType.map_or(raw::KeyType::Empty, |f| f(self.key).into()) }
    }

    /// Fails with WRONGTYPE unless the key is missing or holds `expected`.
    pub fn check_type(&self, expected: raw::KeyType) -> Result<(), Error> {
        match self.key_type() {
            raw::KeyType::Empty => Ok(()),
            found if found == expected => Ok(()),
            _ => Err(Error::WrongType),
        }
    }

    pub fn exists(&self) -> bool {
        self.key_type() != raw::KeyType::Empty
    }

    /// HSET of every field; replicated as one `HSET`.
    pub fn hash_set(&self, fields: &Fields) {
        if fields.is_empty() {
            return;
        }
        let strings: Vec<RedisString> = fields
            .iter()
            .flat_map(|(name, text)| [name, text])
            .map(|bytes| RedisString::create_from_slice(self.ctx.ctx, bytes))
            .collect();
        for pair in strings.chunks(2) {
            // SAFETY: an open key, two strings alive until the end of this function, and
            // the NULL that ends RM_HashSet's field/value list.
            unsafe {
                if let Some(hash_set) = raw::RedisModule_HashSet {
                    hash_set(
                        self.key,
                        raw::REDISMODULE_HASH_NONE as c_int,
                        pair[0].inner,
                        pair[1].inner,
                        ptr::null_mut::<raw::RedisModuleString>(),
                    );
                }
            }
        }
        self.replicate(c"HSET", &strings);
        self.notify(raw::NotifyEvent::HASH, "hset");
    }

    /// Removes the hash's fields that are not among `keep`; replicated as one `HDEL`.
    pub fn hash_keep_only(&self, keep: &Fields) {
        if self.key_type() != raw::KeyType::Hash {
            return;
        }
        let wanted: std::collections::HashSet<&[u8]> = keep.iter().map(|(name, _)| name).collect();
        let stale: Vec<RedisString> = self
            .hash_field_names()
            .into_iter()
            .filter(|name| !wanted.contains(name.as_slice()))
            .map(|name| RedisString::create_from_slice(self.ctx.ctx, &name))
            .collect();
        if stale.is_empty() {
            return;
        }
        for field in &stale {
            // SAFETY: as in `hash_set`; HASH_DELETE is Redis's marker for deletion.
            unsafe {
                if let Some(hash_set) = raw::RedisModule_HashSet {
                    hash_set(
                        self.key,
                        raw::REDISMODULE_HASH_NONE as c_int,
                        field.inner,
                        HASH_DELETE,
                        ptr::null_mut::<raw::RedisModuleString>(),
                    );
                }
            }
        }
        self.replicate(c"HDEL", &stale);
        self.notify(raw::NotifyEvent::HASH, "hdel");
    }

    /// The hash's field names, read with RM_ScanKey.
    fn hash_field_names(&self) -> Vec<Vec<u8>> {
        unsafe extern "C" fn collect(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            _value: *mut raw::RedisModuleString,
            names: *mut c_void,
        ) {
            // SAFETY: `names` is the Vec passed below; `field` a string Redis lends us.
            let names = unsafe { &mut *names.cast::<Vec<Vec<u8>>>() };
            names.push(RedisString::string_as_slice(field).to_vec());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        // SAFETY: a cursor created and destroyed here; the callback only appends to
        // `names`, which outlives the scan.
        unsafe {
            let (Some(create), Some(scan), Some(destroy)) = (
                raw::RedisModule_ScanCursorCreate,
                raw::RedisModule_ScanKey,
                raw::RedisModule_ScanCursorDestroy,
            ) else {
                return names;
            };
            let cursor = create();
            let names_ptr = (&mut names as *mut Vec<Vec<u8>>).cast::<c_void>();
            while scan(self.key, cursor, Some(collect), names_ptr) != 0 {}
            destroy(cursor);
        }
        names
    }

    /// Expires the key `secs` seconds from now; replicated as `PEXPIREAT`. A missing key
    /// is left alone, as EXPIRE does.
    pub fn expire_in(&self, secs: i64) {
        if !self.exists() {
            return;
        }
        let at = redsink_core::time::now_ms().saturating_add(secs.saturating_mul(1000));
        // SAFETY: an open key that exists.
        let set = unsafe {
            raw::RedisModule_SetAbsExpire.map_or(raw::REDISMODULE_ERR as c_int, |f| f(self.key, at))
        };
        if set == raw::REDISMODULE_OK as c_int {
            let at = RedisString::create_from_slice(self.ctx.ctx, at.to_string().as_bytes());
            self.replicate(c"PEXPIREAT", std::slice::from_ref(&at));
            self.notify(raw::NotifyEvent::GENERIC, "expire");
        }
    }

    /// Replicates `command key args…` (RM_Replicate's "sv": the key, then a vector).
    fn replicate(&self, command: &CStr, args: &[RedisString]) {
        let mut argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|arg| arg.inner).collect();
        // SAFETY: the command and format are C strings; argv points at `args.len()`
        // strings that live until the end of this call, which copies what it keeps.
        unsafe {
            if let Some(replicate) = raw::RedisModule_Replicate {
                replicate(
                    self.ctx.ctx,
                    command.as_ptr(),
                    c"sv".as_ptr(),
                    self.name.inner,
                    argv.as_mut_ptr(),
                    argv.len(),
                );
            }
        }
    }

    fn notify(&self, event: raw::NotifyEvent, name: &str) {
        self.ctx.notify_keyspace_event(event, name, self.name);
    }
}

impl Drop for WriteKey<'_> {
    fn drop(&mut self) {
        raw::close_key(self.key);
    }
}
