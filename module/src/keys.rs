//! Writes through Redis's low-level key API: the key opened once, values set in place,
//! each effect replicated explicitly as the plain command that has it (`HSET`, `HDEL`,
//! `PEXPIREAT`) and announced as Redis's own commands announce it. `RM_Call` does the
//! same work at several times the cost: a client, a command lookup, an argument vector
//! and a reply per call.

use std::ffi::{c_int, c_longlong, c_void, CStr};
use std::ptr;

use redis_module::{raw, Context, RedisString};
use redsink_core::sink::{distinct_count, Fields, StreamId};

use crate::command::{self, errno};
use crate::error::Error;

/// What XADD answers a stream that holds the largest id there is.
pub const STREAM_EXHAUSTED: &str =
    "ERR The stream has exhausted the last possible ID, unable to add more items";

/// `RedisModuleString *` that tells RM_HashSet to delete the field.
const HASH_DELETE: *mut raw::RedisModuleString = ptr::without_provenance_mut(1);

/// A key opened for reading and writing, closed when dropped.
pub struct WriteKey<'a> {
    ctx: &'a Context,
    name: &'a RedisString,
    key: *mut raw::RedisModuleKey,
    /// Whether each effect is replicated (not when the command replicates itself).
    replicate_effects: bool,
}

impl<'a> WriteKey<'a> {
    pub fn open(ctx: &'a Context, name: &'a RedisString) -> WriteKey<'a> {
        let mode = raw::KeyMode::READ | raw::KeyMode::WRITE;
        let key = raw::open_key(ctx.ctx, name.inner, mode);
        WriteKey {
            ctx,
            name,
            key,
            replicate_effects: true,
        }
    }

    /// Leaves replication to the caller, which replicates its command verbatim: its
    /// effects are not replicated one by one.
    pub fn replicated_by_caller(&mut self) {
        self.replicate_effects = false;
    }

    pub fn key_type(&self) -> raw::KeyType {
        // SAFETY: a key this context opened, not yet closed.
        unsafe { raw::RedisModule_KeyType.map_or(raw::KeyType::Empty, |f| f(self.key).into()) }
    }

    /// Fails with WRONGTYPE unless the key is missing or holds `expected`.
    pub fn check_type(&self, expected: raw::KeyType) -> Result<(), Error> {
        expect_type(self.key_type(), &expected)
    }

    pub fn exists(&self) -> bool {
        self.key_type() != raw::KeyType::Empty
    }

    /// Fields of a hash, members of a sorted set, entries of a stream; 0 if missing.
    fn value_length(&self) -> usize {
        // SAFETY: a key this context opened, not yet closed.
        unsafe { raw::RedisModule_ValueLength.map_or(0, |len| len(self.key)) }
    }

    /// HSET of every pair; replicated as one `HSET`.
    pub fn hash_set(&self, pairs: &Pairs) {
        if pairs.is_empty() {
            return;
        }
        self.hash_set_pointers(pairs.pointers());
        self.replicate(c"HSET", pairs.pointers());
        self.notify(raw::NotifyEvent::HASH, c"hset");
    }

    /// After the HSET of `keep`: removes the hash's other fields; replicated as one `HDEL`.
    /// The hash's length tells whether there are any, so the usual update of a row with
    /// the same columns reads no field names.
    pub fn hash_keep_only(&self, keep: &Pairs) {
        if self.key_type() != raw::KeyType::Hash {
            return;
        }
        let names: Vec<&[u8]> = keep.names().collect();
        if self.value_length() == distinct_count(&names) {
            return;
        }
        let wanted: std::collections::HashSet<&[u8]> = names.into_iter().collect();
        self.hash_delete_where(|name| !wanted.contains(name));
    }

    /// Removes the fields `removed` names and those flattened under them (`name` then
    /// `separator`), but none of those `set` has just set; replicated as one `HDEL`.
    pub fn hash_remove(&self, removed: &[Vec<u8>], separator: &[u8], set: &Pairs) {
        if removed.is_empty() || self.key_type() != raw::KeyType::Hash {
            return;
        }
        let set: std::collections::HashSet<&[u8]> = set.names().collect();
        self.hash_delete_where(|field| {
            !set.contains(field)
                && removed.iter().any(|name| {
                    field == name.as_slice()
                        || field
                            .strip_prefix(name.as_slice())
                            .is_some_and(|rest| rest.starts_with(separator))
                })
        });
    }

    /// Deletes the fields `picked` says; replicated as one `HDEL`, notified as `hdel`.
    fn hash_delete_where(&self, picked: impl Fn(&[u8]) -> bool) {
        let names = self.hash_field_names();
        let stale: Vec<&[u8]> = names
            .iter()
            .map(Vec::as_slice)
            .filter(|name| picked(name))
            .collect();
        if stale.is_empty() {
            return;
        }
        let stale = Strings::new(self.ctx, stale.iter().copied(), stale.len());
        let pairs: Vec<*mut raw::RedisModuleString> = stale
            .0
            .iter()
            .flat_map(|&field| [field, HASH_DELETE])
            .collect();
        self.hash_set_pointers(&pairs);
        self.replicate(c"HDEL", &stale.0);
        self.notify(raw::NotifyEvent::HASH, c"hdel");
        // As HDEL tells when it empties the hash (Redis removes the key).
        if self.key_type() == raw::KeyType::Empty {
            self.notify(raw::NotifyEvent::GENERIC, c"del");
        }
    }

    /// RM_HashSet of field/value pointers (HASH_DELETE as a value deletes), eight pairs a
    /// call: its list is C varargs, so each call has a fixed shape, ended by NULL.
    fn hash_set_pointers(&self, pairs: &[*mut raw::RedisModuleString]) {
        const PAIRS: usize = 8;
        let Some(hash_set) = (unsafe { raw::RedisModule_HashSet }) else {
            return;
        };
        for chunk in pairs.chunks(2 * PAIRS) {
            let mut slots = [ptr::null_mut::<raw::RedisModuleString>(); 2 * PAIRS + 1];
            slots[..chunk.len()].copy_from_slice(chunk);
            let s = &slots;
            // SAFETY: an open key; field/value pointers alive for this call; the first
            // NULL ends the list, and RM_HashSet reads no further.
            unsafe {
                hash_set(
                    self.key,
                    raw::REDISMODULE_HASH_NONE as c_int,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    s[5],
                    s[6],
                    s[7],
                    s[8],
                    s[9],
                    s[10],
                    s[11],
                    s[12],
                    s[13],
                    s[14],
                    s[15],
                    s[16],
                );
            }
        }
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

    /// ZADD of one member; replicated as `ZADD key score member`. Whether it was new.
    pub fn zset_add(&self, member: &[u8], score: f64) -> bool {
        let strings = Strings::new(
            self.ctx,
            [score.to_string().as_bytes(), member].into_iter(),
            2,
        );
        let mut flags: c_int = 0;
        // SAFETY: an open key, a string alive for this call, a flags slot for the outcome.
        let added = unsafe {
            match raw::RedisModule_ZsetAdd {
                Some(add) => {
                    add(self.key, score, strings.0[1], &mut flags);
                    flags & raw::REDISMODULE_ZADD_ADDED as c_int != 0
                }
                None => false,
            }
        };
        self.replicate(c"ZADD", &strings.0);
        self.notify(raw::NotifyEvent::ZSET, c"zadd");
        added
    }

    /// Removes the lowest members (by score, then name, as ranks go) beyond the `keep`
    /// highest; replicated as one `ZREM`.
    pub fn zset_keep_highest(&self, keep: usize) {
        let length = self.value_length();
        if length <= keep {
            return;
        }
        let lowest = self.zset_lowest(length - keep);
        let pointers: Vec<*mut raw::RedisModuleString> = lowest.iter().map(|m| m.inner).collect();
        for &member in &pointers {
            // SAFETY: an open key and a member string alive for this call.
            unsafe {
                if let Some(remove) = raw::RedisModule_ZsetRem {
                    remove(self.key, member, ptr::null_mut());
                }
            }
        }
        self.replicate(c"ZREM", &pointers);
        self.notify(raw::NotifyEvent::ZSET, c"zrem");
    }

    /// The `count` lowest members, lowest first.
    fn zset_lowest(&self, count: usize) -> Vec<RedisString> {
        let mut members = Vec::with_capacity(count);
        // SAFETY: a range opened on an open key, walked, then stopped; each element is a
        // new string we own (freed by RedisString's drop).
        unsafe {
            let (Some(first), Some(current), Some(next), Some(stop)) = (
                raw::RedisModule_ZsetFirstInScoreRange,
                raw::RedisModule_ZsetRangeCurrentElement,
                raw::RedisModule_ZsetRangeNext,
                raw::RedisModule_ZsetRangeStop,
            ) else {
                return members;
            };
            if first(
                self.key,
                raw::REDISMODULE_NEGATIVE_INFINITE,
                raw::REDISMODULE_POSITIVE_INFINITE,
                0,
                0,
            ) == raw::REDISMODULE_OK as c_int
            {
                while members.len() < count {
                    let element = current(self.key, ptr::null_mut());
                    if element.is_null() {
                        break;
                    }
                    members.push(RedisString::from_redis_module_string(self.ctx.ctx, element));
                    if next(self.key) == 0 {
                        break;
                    }
                }
            }
            stop(self.key);
        }
        members
    }

    /// XADD of `fields` with `id` (`None`: the next id by the clock); replicated as XADD
    /// with the id given. `Ok(None)` when `id` is not above the stream's last.
    pub fn stream_add(
        &self,
        fields: &Fields,
        id: Option<StreamId>,
    ) -> Result<Option<StreamId>, Error> {
        let strings = Strings::new(
            self.ctx,
            fields.iter().flat_map(|(name, text)| [name, text]),
            2 * fields.len(),
        );
        let mut given = raw::RedisModuleStreamID {
            ms: id.map_or(0, |id| id.ms),
            seq: id.map_or(0, |id| id.seq),
        };
        let flags = if id.is_none() {
            raw::REDISMODULE_STREAM_ADD_AUTOID as c_int
        } else {
            0
        };
        // SAFETY: an open key; `strings` holds field/value pairs alive for this call, and
        // `given` is read (explicit id) or written (AUTOID).
        let added = unsafe {
            raw::RedisModule_StreamAdd.map_or(raw::REDISMODULE_ERR as c_int, |add| {
                add(
                    self.key,
                    flags,
                    &mut given,
                    strings.0.as_ptr().cast_mut(),
                    fields.len() as i64,
                )
            })
        };
        if added != raw::REDISMODULE_OK as c_int {
            // RM_StreamAdd's contract: EDOM, the id is not above the stream's last;
            // EFBIG, the stream's last id is the largest there is.
            return match errno() {
                Some(libc::EDOM) if id.is_some() => Ok(None),
                Some(libc::EFBIG) => Err(Error::Redis(redis_module::RedisError::Str(
                    STREAM_EXHAUSTED,
                ))),
                _ => Err(Error::Redis(redis_module::RedisError::Str(
                    "ERR the stream refused the entry",
                ))),
            };
        }
        let added = StreamId {
            ms: given.ms,
            seq: given.seq,
        };
        let id_text = Strings::new(self.ctx, [added.to_string().as_bytes()].into_iter(), 1);
        let argv: Vec<*mut raw::RedisModuleString> =
            id_text.0.iter().chain(&strings.0).copied().collect();
        self.replicate(c"XADD", &argv);
        self.notify(raw::NotifyEvent::STREAM, c"xadd");
        Ok(Some(added))
    }

    /// Trims the stream to its newest `max_len` entries, exactly; replicated as XTRIM.
    pub fn stream_trim(&self, max_len: i64) {
        // SAFETY: an open key holding a stream; 0 asks for exact trimming.
        let trimmed = unsafe {
            raw::RedisModule_StreamTrimByLength.map_or(0, |trim| trim(self.key, 0, max_len))
        };
        if trimmed > 0 {
            // SAFETY: C strings for the command and format ("scl": a string, a C string,
            // a long long).
            unsafe {
                if let Some(replicate) =
                    raw::RedisModule_Replicate.filter(|_| self.replicate_effects)
                {
                    replicate(
                        self.ctx.ctx,
                        c"XTRIM".as_ptr(),
                        c"scl".as_ptr(),
                        self.name.inner,
                        c"MAXLEN".as_ptr(),
                        max_len as c_longlong,
                    );
                }
            }
            self.notify(raw::NotifyEvent::STREAM, c"xtrim");
        }
    }

    /// Expires the key `secs` seconds from now; replicated as `PEXPIREAT`. A missing key
    /// is left alone, as EXPIRE does.
    pub fn expire_in(&self, secs: i64) {
        self.expire_at(expiry_ms(secs));
    }

    /// Expires the key at Unix time `at` (ms); replicated as `PEXPIREAT`. A missing key is
    /// left alone, as PEXPIREAT does.
    pub fn expire_at(&self, at: i64) {
        if !self.exists() {
            return;
        }
        // SAFETY: an open key that exists; RM_Replicate's "sl" is a string and a long long.
        unsafe {
            let set = raw::RedisModule_SetAbsExpire
                .map_or(raw::REDISMODULE_ERR as c_int, |f| f(self.key, at));
            if set != raw::REDISMODULE_OK as c_int {
                return;
            }
            if let Some(replicate) = raw::RedisModule_Replicate.filter(|_| self.replicate_effects) {
                replicate(
                    self.ctx.ctx,
                    c"PEXPIREAT".as_ptr(),
                    c"sl".as_ptr(),
                    self.name.inner,
                    at,
                );
            }
        }
        self.notify(raw::NotifyEvent::GENERIC, c"expire");
    }

    /// Replicates `command key args…` (RM_Replicate's "sv": the key, then a vector).
    fn replicate(&self, command: &CStr, args: &[*mut raw::RedisModuleString]) {
        if !self.replicate_effects {
            return;
        }
        // SAFETY: the command and format are C strings; `args` are strings alive for this
        // call, which takes its own references to what it keeps (it does not write to the
        // vector, whatever the pointer's mutability says).
        unsafe {
            if let Some(replicate) = raw::RedisModule_Replicate {
                replicate(
                    self.ctx.ctx,
                    command.as_ptr(),
                    c"sv".as_ptr(),
                    self.name.inner,
                    args.as_ptr(),
                    args.len(),
                );
            }
        }
    }

    fn notify(&self, kind: raw::NotifyEvent, event: &CStr) {
        command::notify(self.ctx, kind, event, self.name);
    }
}

/// The Unix time (ms) `secs` seconds from now.
pub fn expiry_ms(secs: i64) -> i64 {
    redsink_core::time::now_ms().saturating_add(secs.saturating_mul(1000))
}

/// WRONGTYPE unless `found` is no key (`Empty`) or `expected`.
pub fn expect_type(found: raw::KeyType, expected: &raw::KeyType) -> Result<(), Error> {
    match found {
        raw::KeyType::Empty => Ok(()),
        found if &found == expected => Ok(()),
        _ => Err(Error::WrongType),
    }
}

/// A hash's field/value pairs as Redis strings (field, value, field, value…): made from
/// flattened fields, or the command's own arguments, which are written and replicated as
/// they are, not copied.
pub enum Pairs<'a> {
    Made(Strings<'a>),
    Given(Vec<*mut raw::RedisModuleString>),
}

impl<'a> Pairs<'a> {
    pub fn made(ctx: &'a Context, fields: &Fields) -> Pairs<'a> {
        let texts = fields.iter().flat_map(|(name, text)| [name, text]);
        Pairs::Made(Strings::new(ctx, texts, 2 * fields.len()))
    }

    /// `args`: field, value, field, value…
    pub fn given(args: &[RedisString]) -> Pairs<'a> {
        Pairs::Given(args.iter().map(|arg| arg.inner).collect())
    }

    fn pointers(&self) -> &[*mut raw::RedisModuleString] {
        match self {
            Pairs::Made(strings) => &strings.0,
            Pairs::Given(pointers) => pointers,
        }
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.pointers().len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.pointers().is_empty()
    }

    fn names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pointers()
            .iter()
            .step_by(2)
            .map(|&name| RedisString::string_as_slice(name))
    }
}

/// Redis strings made from bytes, freed when dropped.
pub struct Strings<'a>(Vec<*mut raw::RedisModuleString>, &'a Context);

impl<'a> Strings<'a> {
    fn new<'b>(ctx: &'a Context, bytes: impl Iterator<Item = &'b [u8]>, count: usize) -> Self {
        let mut strings = Strings(Vec::with_capacity(count), ctx);
        for bytes in bytes {
            // SAFETY: a context Redis handed us and a valid byte slice; RM_CreateString
            // copies it.
            let string = unsafe {
                raw::RedisModule_CreateString.map_or(ptr::null_mut(), |create| {
                    create(ctx.ctx, bytes.as_ptr().cast(), bytes.len())
                })
            };
            strings.0.push(string);
        }
        strings
    }
}

impl Drop for Strings<'_> {
    fn drop(&mut self) {
        for &string in &self.0 {
            // SAFETY: strings created above with this context, freed once.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeString {
                    free(self.1.ctx, string);
                }
            }
        }
    }
}

impl Drop for WriteKey<'_> {
    fn drop(&mut self) {
        raw::close_key(self.key);
    }
}
