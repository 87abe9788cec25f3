//! `DS.*` command handlers: parse → validate → apply → replicate → reply.
//!
//! Updates replicate their effect (`DS.PUT` of the record stored, with its time), never
//! their arguments: the stamp depends on the clock, and whether an old record had expired
//! depends on it too.

use std::os::raw::{c_char, c_longlong};

use redis_module::{raw, Context, NotifyEvent, RedisString, RedisValue};
use redsink_core::args::{parse_int, Args};
use redsink_core::ds::{DeviceStream, Record, Settings, SettingsChange, Updated};
use redsink_core::{time, Error as CoreError};

use super::{read_stream, write_stream, StreamValue, DS_TYPE};
use crate::command::{self, key_and_args};
use crate::error::Error;

type Reply = Result<RedisValue, Error>;

/// `DS.CREATE key [TIMESTAMP f] [DEVICE f] [DATEFORMAT EPOCH|ISO8601] [TTL s] [HISTORY n]
/// [ONUPDATE REPLACE|MERGE]`
pub fn create(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let change = SettingsChange::parse(&mut Args::new(&raw))?;
    let settings = change.applied_to(&Settings::default())?;
    let key = ctx.open_key_writable(key_name);
    if !key.is_empty() {
        return Err(Error::KeyExists);
    }
    key.set_value(
        &DS_TYPE,
        StreamValue::new(redsink_core::ds::DeviceStream::new(settings)),
    )?;
    ctx.replicate_verbatim();
    command::notify(ctx, NotifyEvent::MODULE, c"ds.create", key_name);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `DS.ALTER key option [option …]`
pub fn alter(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    if raw.is_empty() {
        return Err(CoreError::WrongArity.into());
    }
    let change = SettingsChange::parse(&mut Args::new(&raw))?;
    let key = ctx.open_key_writable(key_name);
    let stream = write_stream(&key)?.ok_or(Error::NoStream)?;
    let settings = change.applied_to(stream.settings())?;
    stream.alter(settings);
    ctx.replicate_verbatim();
    command::notify(ctx, NotifyEvent::MODULE, c"ds.alter", key_name);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `DS.UPDATE key device json [TS ms]`
pub fn update(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let device = device_arg(&mut parsed)?;
    let payload = parsed.next_arg()?;
    let mut ts = None;
    while let Some(option) = parsed.next_keyword() {
        match option.as_ref() {
            "TS" => ts = Some(parsed.int_value("TS", 0, time::MAX_MS)?),
            _ => return Err(CoreError::UnknownOption(option.into_owned()).into()),
        }
    }
    let replaying = command::is_replaying(ctx);
    let limits = command::limits(ctx);
    let key = ctx.open_key_writable(key_name);
    let stream = write_stream(&key)?.ok_or(Error::NoStream)?;
    let now = time::now_ms();
    let expire_now = (!replaying).then_some(now);
    let (outcome, record) =
        stream.update(device, payload, ts.unwrap_or(now), expire_now, &limits)?;
    // DS.UPDATE key device json …
    replicate_put(ctx, key_name, &args[2], outcome, record, &args[3]);
    command::notify(ctx, NotifyEvent::MODULE, c"ds.update", key_name);
    Ok(RedisValue::Integer(i64::from(outcome.created)))
}

/// `DS.PUT key device ms json`: stores a record as given, its stamp fields left out
/// (they come from `ms` and `device` when it is read). Replication and AOF rewrites use
/// it; from a client, the JSON must be an object within the limits.
pub fn put(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let device = device_arg(&mut parsed)?;
    let ms = parse_int(parsed.next_arg()?, "ms", 0, time::MAX_MS)?;
    let payload = parsed.next_arg()?;
    parsed.finish()?;
    let replaying = command::is_replaying(ctx);
    let limits = command::limits(ctx);
    let key = ctx.open_key_writable(key_name);
    let stream = write_stream(&key)?.ok_or(Error::NoStream)?;
    let json = stream.body(payload, &limits)?;
    let expire_now = (!replaying).then(time::now_ms);
    let (outcome, record) = stream.put(device, Record { ms, json }, expire_now);
    // DS.PUT key device ms json
    replicate_put(ctx, key_name, &args[2], outcome, record, &args[4]);
    command::notify(ctx, NotifyEvent::MODULE, c"ds.update", key_name);
    Ok(RedisValue::Integer(i64::from(outcome.created)))
}

/// Replicates a stored record as `DS.PUT key device ms json`. `given_json` is the
/// command's JSON argument: when the body stored is that text itself (the usual case: it
/// was compact, without nulls or stamp fields), it is passed on without a copy.
fn replicate_put(
    ctx: &Context,
    key: &RedisString,
    device: &RedisString,
    outcome: Updated,
    record: &Record,
    given_json: &RedisString,
) {
    if outcome.dropped_expired {
        ctx.replicate("DS.DEL", &[key.as_slice(), device.as_slice()]);
    }
    let ms = record.ms as c_longlong;
    // SAFETY: C strings for the command and the formats ("s": a string, "l": a long long,
    // "b": a buffer and its length); strings and buffer are alive for this call, which
    // copies or retains what it keeps.
    unsafe {
        if let Some(replicate) = raw::RedisModule_Replicate {
            let (command, key, device) = (c"DS.PUT".as_ptr(), key.inner, device.inner);
            if given_json.as_slice() == record.json.as_bytes() {
                replicate(
                    ctx.ctx,
                    command,
                    c"ssls".as_ptr(),
                    key,
                    device,
                    ms,
                    given_json.inner,
                );
            } else {
                let json = record.json.as_ptr().cast::<c_char>();
                let len = record.json.len();
                replicate(
                    ctx.ctx,
                    command,
                    c"sslb".as_ptr(),
                    key,
                    device,
                    ms,
                    json,
                    len,
                );
            }
        }
    }
}

/// `DS.GET key device`
pub fn get(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let device = device_arg(&mut parsed)?;
    parsed.finish()?;
    let key = ctx.open_key(key_name);
    let Some(stream) = read_stream(&key)? else {
        return Ok(RedisValue::Null);
    };
    Ok(record_reply(stream, device, time::now_ms()))
}

/// `DS.MGET key device [device …]`
pub fn mget(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let devices = device_list(&raw)?;
    let key = ctx.open_key(key_name);
    let stream = read_stream(&key)?;
    let now = time::now_ms();
    let records = devices
        .iter()
        .map(|device| match stream {
            Some(stream) => record_reply(stream, device, now),
            None => RedisValue::Null,
        })
        .collect();
    Ok(RedisValue::Array(records))
}

/// `DS.DEL key device [device …]`
pub fn del(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let devices = device_list(&raw)?;
    let key = ctx.open_key_writable(key_name);
    let Some(stream) = write_stream(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    let now = time::now_ms();
    let stored_before = stream.stored_len();
    let removed = devices
        .iter()
        .filter(|device| stream.delete(device, now))
        .count();
    if stream.stored_len() != stored_before {
        ctx.replicate_verbatim();
        command::notify(ctx, NotifyEvent::MODULE, c"ds.del", key_name);
    }
    Ok(RedisValue::Integer(removed as i64))
}

/// `DS.DEVICES key [CURSOR c] [COUNT n] [MATCH glob]`
pub fn devices(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let (mut cursor, mut count, mut pattern): (&[u8], i64, Option<&[u8]>) = (b"0", 10, None);
    while let Some(option) = parsed.next_keyword() {
        match option.as_ref() {
            "CURSOR" => cursor = parsed.value("CURSOR")?,
            "COUNT" => count = parsed.int_value("COUNT", 1, 1_000_000)?,
            "MATCH" => pattern = Some(parsed.value("MATCH")?),
            _ => return Err(CoreError::UnknownOption(option.into_owned()).into()),
        }
    }
    let key = ctx.open_key(key_name);
    let (next, found) = match read_stream(&key)? {
        Some(stream) => {
            let (next, found) = stream.scan(cursor, count as usize, pattern, time::now_ms())?;
            (next, found.into_iter().map(bulk).collect())
        }
        None => ("0".to_owned(), Vec::new()),
    };
    Ok(RedisValue::Array(vec![
        RedisValue::BulkString(next),
        RedisValue::Array(found),
    ]))
}

/// `DS.LEN key`
pub fn len(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    Args::new(&raw).finish()?;
    let key = ctx.open_key(key_name);
    let live = read_stream(&key)?.map_or(0, |stream| stream.live_len(time::now_ms()));
    Ok(RedisValue::Integer(live as i64))
}

/// `DS.RANGE key device from to [COUNT n]`
pub fn range(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    let mut parsed = Args::new(&raw);
    let device = device_arg(&mut parsed)?;
    let from = time_bound(parsed.next_arg()?, "from")?;
    let to = time_bound(parsed.next_arg()?, "to")?;
    let mut count = i64::MAX;
    while let Some(option) = parsed.next_keyword() {
        match option.as_ref() {
            "COUNT" => count = parsed.int_value("COUNT", 0, i64::MAX)?,
            _ => return Err(CoreError::UnknownOption(option.into_owned()).into()),
        }
    }
    let key = ctx.open_key(key_name);
    let Some(stream) = read_stream(&key)? else {
        return Ok(RedisValue::Array(Vec::new()));
    };
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let records = stream
        .range(device, from, to, count, time::now_ms())
        .into_iter()
        .map(|record| {
            RedisValue::Array(vec![
                RedisValue::Integer(record.ms),
                RedisValue::BulkString(stream.render(device, record)),
            ])
        })
        .collect();
    Ok(RedisValue::Array(records))
}

/// `DS.INFO key`: settings and sizes as a flat list of names and values.
pub fn info(ctx: &Context, args: &[RedisString]) -> Reply {
    let (key_name, raw) = key_and_args(args)?;
    Args::new(&raw).finish()?;
    let key = ctx.open_key(key_name);
    let stream = read_stream(&key)?.ok_or(Error::NoSuchKey)?;
    let settings = stream.settings();
    let fields = [
        ("timestamp-field", bulk(&settings.timestamp_field)),
        ("device-field", bulk(&settings.device_field)),
        ("date-format", bulk(settings.date_format.name())),
        ("ttl", RedisValue::Integer(settings.ttl_secs)),
        ("history", RedisValue::Integer(settings.history)),
        ("on-update", bulk(settings.on_update.name())),
        (
            "devices",
            RedisValue::Integer(stream.live_len(time::now_ms()) as i64),
        ),
        (
            "stored-devices",
            RedisValue::Integer(stream.stored_len() as i64),
        ),
        ("memory", RedisValue::Integer(stream.memory() as i64)),
    ];
    Ok(RedisValue::Array(
        fields
            .into_iter()
            .flat_map(|(name, value)| [RedisValue::SimpleStringStatic(name), value])
            .collect(),
    ))
}

/// A device id: non-empty UTF-8 (it becomes a JSON string in the record).
fn device_arg<'a>(args: &mut Args<'_, 'a>) -> Result<&'a str, Error> {
    let device = args.next_str("device id")?;
    if device.is_empty() {
        return Err(CoreError::Empty("device id").into());
    }
    Ok(device)
}

/// Device ids: at least one.
fn device_list<'a>(raw: &[&'a [u8]]) -> Result<Vec<&'a str>, Error> {
    let mut parsed = Args::new(raw);
    let mut devices = vec![device_arg(&mut parsed)?];
    while !parsed.is_empty() {
        devices.push(device_arg(&mut parsed)?);
    }
    Ok(devices)
}

/// `-`, `+` or milliseconds since the epoch.
fn time_bound(value: &[u8], name: &'static str) -> Result<i64, Error> {
    Ok(match value {
        b"-" => i64::MIN,
        b"+" => i64::MAX,
        _ => parse_int(value, name, i64::MIN, i64::MAX)?,
    })
}

/// The device's live record as read, or nil.
fn record_reply(stream: &DeviceStream, device: &str, now: i64) -> RedisValue {
    stream.get(device, now).map_or(RedisValue::Null, |record| {
        RedisValue::BulkString(stream.render(device, record))
    })
}

fn bulk(text: &str) -> RedisValue {
    RedisValue::BulkString(text.to_owned())
}
