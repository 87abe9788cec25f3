//! `SINK.*` commands with an explicit key: parse → validate (types, versions) → write
//! (replicated as plain commands) → remember the version → reply.
//!
//! A write whose VERSION is not newer than the key's replies nil and writes nothing.

use redis_module::{raw, Context, RedisString, RedisValue};
use redsink_core::args::{parse_int, Args};
use redsink_core::sink::{
    self, values_then_options, Accepts, HashUpdate, StreamId, WriteOption::*, WriteOptions,
};
use redsink_core::versions::{Admission, Entry, KeyId, MAX_LANES};
use redsink_core::{json, time, Error as CoreError};

use super::write::{Added, NewId};
use super::{state, write};
use crate::acl;
use crate::command::{self, key_and_args, redis_string};
use crate::config;
use crate::error::Error;
use crate::keys::{expiry_ms, Pairs, WriteKey};

type Reply = Result<RedisValue, Error>;

/// `SINK.HASH key json [FLATTEN sep] [REPLACE | PATCH] [TTL s | PXAT ms]
/// [VERSION v [LANE l]]`, or `SINK.HASH key FIELDS n field value … [REPLACE]
/// [TTL s | PXAT ms] [VERSION v [LANE l]]` for fields the client flattened: those are
/// written and replicated as the arguments they came in, with no JSON to read.
pub fn hash(ctx: &Context, args: &[RedisString]) -> Reply {
    let (_, raw) = key_and_args(args)?;
    // Replicated verbatim at times: a replica or an AOF load must not refuse what the
    // primary wrote.
    let limits = command::limits(ctx);
    if let Some(sink::GivenFields { count, options }) = sink::given_fields(&raw, &limits)? {
        // The pairs follow the command, its key, FIELDS and n.
        let pairs = Pairs::given(&args[4..4 + 2 * count]);
        let accepts = Accepts(&[Replace, Ttl, PxAt, Version, Lane]);
        let mut options =
            WriteOptions::parse(&mut Args::new(options), accepts).map_err(|error| match error {
                CoreError::UnknownOption(option)
                    if ["PATCH", "FLATTEN"].contains(&option.to_ascii_uppercase().as_str()) =>
                {
                    CoreError::Invalid(format!(
                        "{option} takes the JSON form: FIELDS are flattened already"
                    ))
                }
                error => error,
            })?;
        options
            .ttl_positions
            .iter_mut()
            .for_each(|at| *at += 4 + 2 * count);
        return write_hash(ctx, args, &pairs, &options, &[]);
    }
    let mut parsed = Args::new(&raw);
    let payload = parsed.next_arg()?;
    let accepts = Accepts(&[Flatten, Replace, Patch, Ttl, PxAt, Version, Lane]);
    let mut options = WriteOptions::parse(&mut parsed, accepts)?;
    // The arguments parsed follow the command and its key.
    options.ttl_positions.iter_mut().for_each(|at| *at += 2);
    let separator = options.separator().as_bytes();
    let (fields, removed) = if options.hash_update() == HashUpdate::Patch {
        sink::flatten_patch(payload, separator, &limits)?
    } else {
        let fields = sink::flatten_json(payload, separator, &limits)?;
        (fields, Vec::new())
    };
    write_hash(ctx, args, &Pairs::made(ctx, &fields), &options, &removed)
}

/// SINK.HASH's write, once its pairs are known: checks the type and the version, writes,
/// remembers the version; replies how many pairs were set (nil for an older version).
/// `args` are the command's own (`SINK.HASH key …`).
fn write_hash(
    ctx: &Context,
    args: &[RedisString],
    pairs: &Pairs,
    options: &WriteOptions,
    removed: &[Vec<u8>],
) -> Reply {
    let key = &args[1];
    let mut target = WriteKey::open(ctx, key);
    target.check_type(raw::KeyType::Hash)?;
    let Some(admitted) = admit(ctx, key.as_slice(), options)? else {
        return Ok(RedisValue::Null);
    };
    // Where neither the clock nor a purge can change what the command does (a version
    // newer than the one kept, the key left in place), a replica or the AOF runs the
    // command itself and does the same: replicated as given (a TTL as the time it gave),
    // at a fraction of the cost of replicating each effect (BENCHMARKS.md, issue 17).
    let verbatim = admitted.clock_free && !pairs.is_empty();
    if verbatim {
        target.replicated_by_caller();
    }
    let expire_at = options.expire_at_ms.or(options.ttl_secs.map(expiry_ms));
    let separator = options.separator().as_bytes();
    write::hash(
        &target,
        pairs,
        options.hash_update(),
        (removed, separator),
        expire_at,
    );
    let exists = target.exists();
    drop(target);
    remember(ctx, key.as_slice(), options, admitted, exists, !verbatim);
    if verbatim {
        replicate_as_given(ctx, args, &options.ttl_positions, expire_at);
    }
    Ok(RedisValue::Integer(pairs.len() as i64))
}

/// Replicates the command as given; a `TTL` (each, where repeated: `ttl_positions`, its
/// keyword's places) as `PXAT expire_at` in its place, so that replicas and the AOF
/// expire the key when the primary does.
fn replicate_as_given(
    ctx: &Context,
    args: &[RedisString],
    ttl_positions: &[usize],
    expire_at: Option<i64>,
) {
    let Some(expire_at) = expire_at.filter(|_| !ttl_positions.is_empty()) else {
        ctx.replicate_verbatim();
        return;
    };
    let (keyword, time) = (
        redis_string(ctx, b"PXAT"),
        redis_string(ctx, expire_at.to_string().as_bytes()),
    );
    let rest: Vec<*mut raw::RedisModuleString> = (2..args.len())
        .map(|i| {
            if ttl_positions.contains(&i) {
                keyword.inner
            } else if ttl_positions.contains(&(i - 1)) {
                time.inner
            } else {
                args[i].inner
            }
        })
        .collect();
    // SAFETY: C strings for the command and the format ("sv": the key, then a vector);
    // the strings are alive for this call, which retains what it keeps.
    unsafe {
        if let Some(replicate) = raw::RedisModule_Replicate {
            replicate(
                ctx.ctx,
                c"SINK.HASH".as_ptr(),
                c"sv".as_ptr(),
                args[1].inner,
                rest.as_ptr(),
                rest.len(),
            );
        }
    }
}

/// `SINK.STRING key value [JSON] [TTL s] [VERSION v]`
pub fn string(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let value = parsed.next_arg()?;
    let accepts = Accepts(&[Json, Patch, Ttl, Version, Lane]);
    let options = WriteOptions::parse(&mut parsed, accepts)?;
    if options.patch && !options.json {
        return Err(Error::Core(CoreError::Invalid(
            "PATCH needs JSON: a patch is a JSON object merged into the stored JSON".into(),
        )));
    }
    if options.json {
        json::parse_value(value, &config::limits())?;
    }
    let key = key.as_slice();
    write::check_type(ctx, key, &raw::KeyType::String)?;
    let Some(admitted) = admit(ctx, key, &options)? else {
        return Ok(RedisValue::Null);
    };
    let patched;
    let value = if options.patch {
        let stored = write::string_value(ctx, key);
        patched = sink::patch_json(stored.as_deref(), value, &config::limits())?;
        patched.as_bytes()
    } else {
        value
    };
    write::string(ctx, key, value, options.ttl_secs)?;
    remember(ctx, key, &options, admitted, true, true);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `SINK.JSON key json [PATCH | KEEP name …] [TTL s] [VERSION v]`: a JSON document of the
/// server's JSON (RedisJSON, or Redis 8's own), set whole (keeping the stored members KEEP
/// names), or merged into with PATCH (JSON.MERGE).
pub fn json_document(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let value = parsed.next_arg()?;
    let accepts = Accepts(&[Patch, Keep, Ttl, Version, Lane]);
    let options = WriteOptions::parse(&mut parsed, accepts)?;
    if options.patch {
        // A patch runs JSON.MERGE: held to its rules too (on 7.0, where the command checks).
        acl::authorize(ctx, c"SINK.JSON", &acl::JSON_MERGE, args)?;
    }
    let limits = config::limits();
    let parsed = json::parse_value(value, &limits)?;
    if (options.patch || !options.keep.is_empty()) && !parsed.is_object() {
        return Err(Error::Core(CoreError::NotAnObject(json::kind(&parsed))));
    }
    let key = key.as_slice();
    let missing = write::json_key_missing(ctx, key)?;
    let Some(admitted) = admit(ctx, key, &options)? else {
        return Ok(RedisValue::Null);
    };
    let written;
    let (value, merge) = match (missing, options.patch, options.keep.is_empty()) {
        // A patch into nothing is the patch without its nulls (RFC 7396), set.
        (true, true, _) => {
            written = sink::patch_json(None, value, &limits)?;
            (written.as_bytes(), false)
        }
        (false, false, false) => {
            let stored = write::json_document(ctx, key);
            written = sink::keep_members(stored.as_deref(), value, &options.keep, &limits)?;
            (written.as_bytes(), false)
        }
        (_, merge, _) => (value, merge),
    };
    write::document(ctx, key, value, merge, options.ttl_secs)?;
    remember(ctx, key, &options, admitted, true, true);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `SINK.LIST key value [value …] [PREPEND] [MAXLEN n] [TTL s]`
pub fn list(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let accepts = Accepts(&[Prepend, MaxLen, Ttl]);
    let (values, options) = values_then_options(&raw, accepts)?;
    let key = key.as_slice();
    write::check_type(ctx, key, &raw::KeyType::List)?;
    let length = write::list(
        ctx,
        key,
        values,
        options.prepend,
        options.max_len,
        options.ttl_secs,
    )?;
    Ok(RedisValue::Integer(length))
}

/// `SINK.SET key member [member …] [TTL s]`
pub fn set(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let accepts = Accepts(&[Ttl]);
    let (members, options) = values_then_options(&raw, accepts)?;
    let key = key.as_slice();
    write::check_type(ctx, key, &raw::KeyType::Set)?;
    let added = write::set(ctx, key, members, options.ttl_secs)?;
    Ok(RedisValue::Integer(added))
}

/// `SINK.ZSET key member score [MAXLEN n] [TTL s]`
pub fn zset(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let member = parsed.next_arg()?;
    let score = parsed.next_arg()?;
    let score = std::str::from_utf8(score)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|score| score.is_finite())
        .ok_or_else(|| {
            CoreError::Invalid(format!(
                "score must be a finite number, got '{}'",
                redsink_core::args::quote(score)
            ))
        })?;
    let accepts = Accepts(&[MaxLen, Ttl]);
    let options = WriteOptions::parse(&mut parsed, accepts)?;
    let target = WriteKey::open(ctx, key);
    target.check_type(raw::KeyType::ZSet)?;
    let added = write::zset(&target, member, score, options.max_len, options.ttl_secs);
    Ok(RedisValue::Integer(added))
}

/// `SINK.STREAM key json [MAP field[:alias] …] [OPCODE op] [MAXLEN n] [TTL s] [ID id]`
pub fn stream(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let payload = parsed.next_arg()?;
    let accepts = Accepts(&[Map, OpCode, Id, MaxLen, Ttl]);
    let options = WriteOptions::parse(&mut parsed, accepts)?;
    let fields = sink::stream_fields(
        payload,
        &options.mappings,
        ".",
        options.op_code.as_deref(),
        &config::limits(),
    )?;
    if fields.is_empty() {
        return Err(
            CoreError::Invalid("nothing to add: no field of the JSON is mapped".into()).into(),
        );
    }
    let target = WriteKey::open(ctx, key);
    target.check_type(raw::KeyType::Stream)?;
    let key = key.as_slice();
    let (max_len, ttl) = (options.max_len, options.ttl_secs);
    let Some(id) = options.id else {
        let Added::As(id) = write::stream(&target, &fields, NewId::Auto, max_len, ttl)? else {
            return Err(CoreError::Invalid("the stream refused a new id".into()).into());
        };
        return Ok(RedisValue::BulkString(id));
    };
    if let Added::As(added) = write::stream(&target, &fields, NewId::Exactly(id), max_len, ttl)? {
        return Ok(RedisValue::BulkString(added));
    }
    // Not above the stream's last id: a replay, or a late delivery (another writer got
    // ahead), which goes right after the last entry and is remembered.
    let bounds = write::stream_bounds(ctx, key);
    if !is_late(ctx, key, id, &bounds) {
        return Ok(RedisValue::Null);
    }
    let last = bounds.last.unwrap_or(StreamId { ms: 0, seq: 0 });
    let Added::As(added) = write::stream(&target, &fields, NewId::After(last), max_len, ttl)?
    else {
        return Err(CoreError::Invalid("the stream refused a new id".into()).into());
    };
    let given = StreamId::parse(added.as_bytes())?;
    remember_late(ctx, key, id, given);
    Ok(RedisValue::BulkString(added))
}

/// Whether `id`, not above the stream's last, is a message never added:
/// - not added late before (then it is a replay);
/// - no entry has it, unless that entry is a late one given this id (a collision, not a
///   replay);
/// - not in what XDEL or trimming removed (that counts as added).
fn is_late(ctx: &Context, key: &[u8], id: StreamId, bounds: &write::StreamBounds) -> bool {
    let db = write::current_db(ctx);
    let now = time::now_ms();
    if state().late.contains(db, key, id, now) {
        return false;
    }
    let text = id.to_string();
    if !write::stream_ids(ctx, key, &text, &text, 1).is_empty() {
        return state().taken.contains(db, key, id, now);
    }
    let deleted = bounds.max_deleted.is_some_and(|deleted| id <= deleted);
    let trimmed = bounds.removed_any && bounds.first.is_none_or(|first| id < first);
    !deleted && !trimmed
}

/// Remembers a late id and the id its entry got, for `redsink.tombstone-ttl`,
/// replicated as SINK.LATEID.
fn remember_late(ctx: &Context, key: &[u8], id: StreamId, given: StreamId) {
    let until = time::now_ms() + config::tombstone_ttl_ms();
    let db = write::current_db(ctx);
    let mut state = state();
    state.late.insert(db, key, id, until);
    state.taken.insert(db, key, given, until);
    drop(state);
    let (id, given, until) = (id.to_string(), given.to_string(), until.to_string());
    ctx.replicate(
        "SINK.LATEID",
        &[key, id.as_bytes(), given.as_bytes(), until.as_bytes()],
    );
}

/// `SINK.LATEID key id given-id until-ms`: how late stream ids reach replicas and the AOF.
pub fn late_id(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let id = StreamId::parse(parsed.next_arg()?)?;
    let given = StreamId::parse(parsed.next_arg()?)?;
    let until = parse_int(parsed.next_arg()?, "until", 0, i64::MAX)?;
    parsed.finish()?;
    let db = write::current_db(ctx);
    let mut state = state();
    state.late.insert(db, key.as_slice(), id, until);
    state.taken.insert(db, key.as_slice(), given, until);
    drop(state);
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `SINK.DEL key [VERSION v [LANE l]]`: with VERSION, leaves a tombstone so that older
/// writes arriving later do not bring the key back.
pub fn del(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let options = WriteOptions::parse(&mut Args::new(&raw), Accepts(&[Version, Lane]))?;
    let key = key.as_slice();
    let Some(admitted) = admit(ctx, key, &options)? else {
        return Ok(RedisValue::Null);
    };
    let deleted = write::delete(ctx, key)?;
    remember(ctx, key, &options, admitted, false, true);
    Ok(RedisValue::Integer(i64::from(deleted)))
}

/// `SINK.VERSION key [LANE l]`: the version last applied to the key (in that lane), or nil.
pub fn version(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let mut lane: &[u8] = b"";
    while let Some(option) = parsed.next_keyword() {
        match option.as_ref() {
            "LANE" => lane = parsed.value("LANE")?,
            _ => return Err(CoreError::UnknownOption(option.into_owned()).into()),
        }
    }
    let db = write::current_db(ctx);
    let entry = state()
        .versions
        .get(db, key.as_slice(), lane, time::now_ms());
    Ok(entry.map_or(RedisValue::Null, |entry| RedisValue::Integer(entry.version)))
}

/// `SINK.SETVERSION key version [TOMBSTONE until-ms] [LANE l]`: how versions reach
/// replicas and the AOF.
pub fn set_version(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let version = parse_int(parsed.next_arg()?, "version", i64::MIN, i64::MAX)?;
    let (mut tombstone_until, mut lane) = (None, &b""[..]);
    while let Some(option) = parsed.next_keyword() {
        match option.as_ref() {
            "TOMBSTONE" => tombstone_until = Some(parsed.int_value("TOMBSTONE", 0, i64::MAX)?),
            "LANE" => lane = parsed.value("LANE")?,
            _ => return Err(CoreError::UnknownOption(option.into_owned()).into()),
        }
    }
    let db = write::current_db(ctx);
    let entry = Entry {
        version,
        tombstone_until,
    };
    if !state().versions.set(db, key.as_slice(), lane, entry) {
        return Err(too_many_lanes());
    }
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// A write allowed to go ahead, with (under VERSION) its key's fingerprint for
/// [`remember`] (the key is fingerprinted once a write), and whether the clock had no say
/// in admitting it.
struct Admitted {
    id: Option<KeyId>,
    clock_free: bool,
}

/// Whether a write with the options' VERSION may go ahead (always, without one): newer
/// than the key's in its lane. An error if its lane is one too many to keep.
fn admit(ctx: &Context, key: &[u8], options: &WriteOptions) -> Result<Option<Admitted>, Error> {
    let Some(version) = options.version else {
        return Ok(Some(Admitted {
            id: None,
            clock_free: true,
        }));
    };
    let versions = &state().versions;
    if !versions.has_room_for(options.lane()) {
        return Err(too_many_lanes());
    }
    let db = write::current_db(ctx);
    let id = versions.key_id(key);
    let clock_free = match versions.admission(db, id, options.lane(), version, time::now_ms()) {
        Admission::NewerThanKept => true,
        Admission::NothingKept => false,
        Admission::NotNewer => return Ok(None),
    };
    Ok(Some(Admitted {
        id: Some(id),
        clock_free,
    }))
}

fn too_many_lanes() -> Error {
    Error::Core(CoreError::Invalid(format!(
        "this server keeps versions in {MAX_LANES} lanes at the most: LANE names a source \
         whose versions compare (a stream), not a key"
    )))
}

/// After a write with the options' VERSION: the key's version in its lane, or a tombstone
/// if the key is gone; replicated as SINK.SETVERSION unless the command is replicated
/// verbatim (`replicate`: false).
fn remember(
    ctx: &Context,
    key: &[u8],
    options: &WriteOptions,
    admitted: Admitted,
    exists: bool,
    replicate: bool,
) {
    let (Some(version), Some(id)) = (options.version, admitted.id) else {
        return;
    };
    let tombstone_until = (!exists).then(|| time::now_ms() + config::tombstone_ttl_ms());
    let db = write::current_db(ctx);
    let entry = Entry {
        version,
        tombstone_until,
    };
    // Admitted: its lane has room.
    state()
        .versions
        .set_id(db, id, Some(key), options.lane(), entry);
    if replicate {
        write::replicate_version(ctx, key, options.lane(), entry);
    }
}
