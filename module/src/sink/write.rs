//! Writes onto Redis's types: hashes, sorted sets and streams through the low-level key
//! API (see `keys`), strings, lists and sets through `RM_Call` with replication. Each function checks nothing and does one
//! target's work; callers check key types first, so that a command either writes
//! everything or nothing.

use std::ffi::{c_char, c_longlong};

use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, RedisError,
};
use redsink_core::sink::{Fields, HashUpdate, StreamId};
use redsink_core::versions::Entry;

use crate::command::redis_string;
use crate::error::Error;
use crate::keys::{expect_type, Pairs, WriteKey, STREAM_EXHAUSTED};

/// The options of every call: replicate what it did, return errors as replies.
fn options() -> CallOptions {
    CallOptionsBuilder::new()
        .replicate()
        .errors_as_replies()
        .build()
}

/// Runs one command, replicated; an error reply becomes our error.
fn run(ctx: &Context, command: &str, args: &[&[u8]]) -> Result<CallReply<'static>, Error> {
    let result: CallResult<'static> = ctx.call_ext(command, &options(), args);
    result.map_err(|error| {
        Error::Redis(RedisError::String(
            error
                .to_utf8_string()
                .unwrap_or_else(|| format!("ERR {command} failed")),
        ))
    })
}

fn integer(reply: &CallReply) -> i64 {
    match reply {
        CallReply::I64(value) => value.to_i64(),
        _ => 0,
    }
}

/// The database the command runs in.
pub fn current_db(ctx: &Context) -> i32 {
    // SAFETY: a context Redis handed to a command or callback.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |selected| selected(ctx.ctx)) }
}

/// Replicates `SINK.SETVERSION key version [TOMBSTONE until] [LANE l]`. Numbers go as
/// numbers (RM_Replicate's `l`), the key and lane as bytes: no strings made for a call on
/// every write.
pub fn replicate_version(ctx: &Context, key: &[u8], lane: &[u8], entry: Entry) {
    let Some(replicate) = (unsafe { raw::RedisModule_Replicate }) else {
        return;
    };
    let (key_ptr, key_len) = (key.as_ptr().cast::<c_char>(), key.len());
    let (lane_ptr, lane_len) = (lane.as_ptr().cast::<c_char>(), lane.len());
    let (command, version) = (c"SINK.SETVERSION".as_ptr(), entry.version as c_longlong);
    // SAFETY: the command and formats are C strings, and each argument has the type its
    // format letter says (`b`: pointer and length, `l`: long long, `c`: C string).
    unsafe {
        match (entry.tombstone_until, lane.is_empty()) {
            (Some(until), true) => replicate(
                ctx.ctx,
                command,
                c"blcl".as_ptr(),
                key_ptr,
                key_len,
                version,
                c"TOMBSTONE".as_ptr(),
                until as c_longlong,
            ),
            (Some(until), false) => replicate(
                ctx.ctx,
                command,
                c"blclcb".as_ptr(),
                key_ptr,
                key_len,
                version,
                c"TOMBSTONE".as_ptr(),
                until as c_longlong,
                c"LANE".as_ptr(),
                lane_ptr,
                lane_len,
            ),
            (None, true) => replicate(ctx.ctx, command, c"bl".as_ptr(), key_ptr, key_len, version),
            (None, false) => replicate(
                ctx.ctx,
                command,
                c"blcb".as_ptr(),
                key_ptr,
                key_len,
                version,
                c"LANE".as_ptr(),
                lane_ptr,
                lane_len,
            ),
        };
    }
}

/// Fails with WRONGTYPE unless `key` is missing or holds `expected`.
pub fn check_type(ctx: &Context, key: &[u8], expected: &raw::KeyType) -> Result<(), Error> {
    expect_type(ctx.open_key(&redis_string(ctx, key)).key_type(), expected)
}

fn expire(ctx: &Context, key: &[u8], ttl_secs: Option<i64>) -> Result<(), Error> {
    if let Some(ttl) = ttl_secs {
        run(ctx, "EXPIRE", &[key, ttl.to_string().as_bytes()])?;
    }
    Ok(())
}

/// The value of a string key (nothing for a missing key or another type).
pub fn string_value(ctx: &Context, key: &[u8]) -> Option<Vec<u8>> {
    read_reply(ctx, "GET", key)
}

/// A JSON document's text (`JSON.GET key`; nothing for a missing key).
pub fn json_document(ctx: &Context, key: &[u8]) -> Option<Vec<u8>> {
    read_reply(ctx, "JSON.GET", key)
}

/// The text (bulk or status) reply of a read command on `key`, not replicated; nothing for
/// nil or an error.
fn read_reply(ctx: &Context, command: &str, key: &[u8]) -> Option<Vec<u8>> {
    let reply: CallResult<'static> = ctx.call_ext(
        command,
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &[key],
    );
    match reply {
        Ok(CallReply::String(value)) => Some(value.as_bytes().to_vec()),
        _ => None,
    }
}

/// SET, with the TTL in the same command.
pub fn string(ctx: &Context, key: &[u8], value: &[u8], ttl_secs: Option<i64>) -> Result<(), Error> {
    match ttl_secs {
        Some(ttl) => run(ctx, "SET", &[key, value, b"EX", ttl.to_string().as_bytes()])?,
        None => run(ctx, "SET", &[key, value])?,
    };
    Ok(())
}

/// Whether `key` is missing; WRONGTYPE unless it holds a JSON document (RedisJSON's type,
/// as Redis 8's, is `ReJSON-RL`).
pub fn json_key_missing(ctx: &Context, key: &[u8]) -> Result<bool, Error> {
    match ctx.open_key(&redis_string(ctx, key)).key_type() {
        raw::KeyType::Empty => Ok(true),
        raw::KeyType::Module => match read_reply(ctx, "TYPE", key) {
            Some(name) if name == b"ReJSON-RL" => Ok(false),
            _ => Err(Error::WrongType),
        },
        _ => Err(Error::WrongType),
    }
}

/// JSON.SET `key $ json` (JSON.MERGE with `merge`), then the TTL. A server without JSON
/// gets an error that says so.
pub fn document(
    ctx: &Context,
    key: &[u8],
    json: &[u8],
    merge: bool,
    ttl_secs: Option<i64>,
) -> Result<(), Error> {
    let command = if merge { "JSON.MERGE" } else { "JSON.SET" };
    if let Err(error) = run(ctx, command, &[key, b"$", json]) {
        let listed: CallResult<'static> = ctx.call_ext(
            "COMMAND",
            &CallOptionsBuilder::new().errors_as_replies().build(),
            &[b"INFO".as_slice(), command.as_bytes()],
        );
        let known = matches!(&listed, Ok(CallReply::Array(commands))
            if commands.iter().any(|command| matches!(command, Ok(CallReply::Array(_)))));
        return Err(if known {
            error
        } else {
            Error::Core(redsink_core::Error::Invalid(format!(
                "SINK.JSON needs JSON on the server (the RedisJSON module, or Redis 8): \
                 {command} is not a command here"
            )))
        });
    }
    expire(ctx, key, ttl_secs)
}

/// HSET of `pairs`, then the other fields as `update` says (for a patch, `removed` are
/// the object's null members, whose fields go with those flattened under them after
/// `separator`), then the expiry (a Unix time in ms).
pub fn hash(
    key: &WriteKey,
    pairs: &Pairs,
    update: HashUpdate,
    (removed, separator): (&[Vec<u8>], &[u8]),
    expire_at_ms: Option<i64>,
) {
    key.hash_set(pairs);
    match update {
        HashUpdate::Merge => {}
        HashUpdate::Replace => key.hash_keep_only(pairs),
        HashUpdate::Patch => key.hash_remove(removed, separator, pairs),
    }
    if let Some(at) = expire_at_ms {
        key.expire_at(at);
    }
}

/// RPUSH (or LPUSH), then keeps the newest `max_len`; returns the list's length.
pub fn list(
    ctx: &Context,
    key: &[u8],
    values: &[&[u8]],
    prepend: bool,
    max_len: Option<i64>,
    ttl_secs: Option<i64>,
) -> Result<i64, Error> {
    let mut args: Vec<&[u8]> = vec![key];
    args.extend_from_slice(values);
    let mut length = integer(&run(ctx, if prepend { "LPUSH" } else { "RPUSH" }, &args)?);
    if let Some(max_len) = max_len.filter(|&max_len| length > max_len) {
        // The newest are at the head after LPUSH, at the tail after RPUSH.
        let (start, stop) = if prepend {
            ("0".to_owned(), (max_len - 1).to_string())
        } else {
            ((-max_len).to_string(), "-1".to_owned())
        };
        run(ctx, "LTRIM", &[key, start.as_bytes(), stop.as_bytes()])?;
        length = max_len;
    }
    expire(ctx, key, ttl_secs)?;
    Ok(length)
}

/// SADD; returns how many members were new.
pub fn set(
    ctx: &Context,
    key: &[u8],
    members: &[&[u8]],
    ttl_secs: Option<i64>,
) -> Result<i64, Error> {
    let mut args: Vec<&[u8]> = vec![key];
    args.extend_from_slice(members);
    let added = integer(&run(ctx, "SADD", &args)?);
    expire(ctx, key, ttl_secs)?;
    Ok(added)
}

/// ZADD, then keeps the `max_len` highest scores, then the TTL; returns 1 if the member
/// was new.
pub fn zset(
    key: &WriteKey,
    member: &[u8],
    score: f64,
    max_len: Option<i64>,
    ttl_secs: Option<i64>,
) -> i64 {
    let added = key.zset_add(member, score);
    if let Some(max_len) = max_len {
        key.zset_keep_highest(usize::try_from(max_len).unwrap_or(usize::MAX));
    }
    if let Some(ttl) = ttl_secs {
        key.expire_in(ttl);
    }
    i64::from(added)
}

/// The id an XADD asks for.
#[derive(Debug, Clone, Copy)]
pub enum NewId {
    /// `*`: the server's clock.
    Auto,
    /// This id; refused if not above the stream's last.
    Exactly(StreamId),
    /// The id right after this one (the stream's last): a late entry goes there.
    After(StreamId),
}

/// What an XADD with an explicit id did.
pub enum Added {
    /// Added, with this id.
    As(String),
    /// The id is not above the stream's last: nothing added.
    NotAbove,
}

/// XADD of `fields` (an entry needs at least one) with `id`, then the trimming and the
/// TTL.
pub fn stream(
    key: &WriteKey,
    fields: &Fields,
    id: NewId,
    max_len: Option<i64>,
    ttl_secs: Option<i64>,
) -> Result<Added, Error> {
    let id = match id {
        NewId::Auto => None,
        NewId::Exactly(id) => Some(id),
        NewId::After(last) => Some(
            last.next()
                .ok_or(Error::Redis(RedisError::Str(STREAM_EXHAUSTED)))?,
        ),
    };
    let Some(added) = key.stream_add(fields, id)? else {
        return Ok(Added::NotAbove);
    };
    if let Some(max_len) = max_len {
        key.stream_trim(max_len);
    }
    if let Some(ttl) = ttl_secs {
        key.expire_in(ttl);
    }
    Ok(Added::As(added.to_string()))
}

/// The ids of the stream's entries from `start` to `end` (`-`, `+` for the ends), at
/// most `count`.
pub fn stream_ids(ctx: &Context, key: &[u8], start: &str, end: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let reply: CallResult<'static> = ctx.call_ext(
        "XRANGE",
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &[
            key,
            start.as_bytes(),
            end.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ],
    );
    let Ok(CallReply::Array(entries)) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Ok(CallReply::Array(pair)) => match pair.get(0) {
                Some(Ok(CallReply::String(id))) => {
                    Some(String::from_utf8_lossy(id.as_bytes()).into_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// What XINFO STREAM says of the ids a stream has seen.
#[derive(Debug, Default)]
pub struct StreamBounds {
    pub last: Option<StreamId>,
    pub first: Option<StreamId>,
    /// The highest id XDEL removed (`max-deleted-entry-id`; trimming does not set it).
    pub max_deleted: Option<StreamId>,
    /// Whether entries were ever removed (`entries-added` > `length`).
    pub removed_any: bool,
}

pub fn stream_bounds(ctx: &Context, key: &[u8]) -> StreamBounds {
    let reply: CallResult<'static> = ctx.call_ext(
        "XINFO",
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &[&b"STREAM"[..], key],
    );
    let Ok(CallReply::Array(fields)) = reply else {
        return StreamBounds::default();
    };
    let fields: Vec<CallReply> = fields.iter().filter_map(Result::ok).collect();
    let value = |wanted: &[u8]| {
        fields.chunks(2).find_map(|pair| match pair {
            [CallReply::String(name), value] if name.as_bytes() == wanted => Some(value),
            _ => None,
        })
    };
    let id = |wanted: &[u8]| match value(wanted) {
        Some(CallReply::String(id)) => StreamId::parse(id.as_bytes()).ok(),
        _ => None,
    };
    let number = |wanted: &[u8]| match value(wanted) {
        Some(CallReply::I64(number)) => number.to_i64(),
        _ => 0,
    };
    StreamBounds {
        last: id(b"last-generated-id"),
        first: id(b"recorded-first-entry-id"),
        max_deleted: id(b"max-deleted-entry-id"),
        removed_any: number(b"entries-added") > number(b"length"),
    }
}

/// DEL; true if the key existed.
pub fn delete(ctx: &Context, key: &[u8]) -> Result<bool, Error> {
    Ok(integer(&run(ctx, "DEL", &[key])?) > 0)
}
