//! Named sinks: `SINK.DEFINE`, `SINK.WRITE` (all rows or none), `SINK.DROP`, `SINK.INFO`.
//! Definitions are module state, persisted as RDB aux data and replicated verbatim.

use redis_module::{
    raw, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, RedisString, RedisValue,
};
use redsink_core::args::{quote, Args};
use redsink_core::cluster;
use redsink_core::named::{RowWrite, SinkDefinition, SinkType};
use redsink_core::sink::HashUpdate;
use redsink_core::{json, Error as CoreError};

use super::{state, write, NamedSink};
use crate::acl::{self, Access, Caller};
use crate::command::redis_string;
use crate::config;
use crate::error::Error;
use crate::keys::{expiry_ms, Pairs, WriteKey};

type Reply = Result<RedisValue, Error>;

/// The sink name and the arguments after it.
fn name_and_args(args: &[RedisString]) -> Result<(String, Vec<&[u8]>), Error> {
    let name = args.get(1).ok_or(CoreError::WrongArity)?;
    let name = redsink_core::args::to_str(name.as_slice(), "sink name")?.to_owned();
    if name.is_empty() {
        return Err(CoreError::Empty("sink name").into());
    }
    Ok((
        name,
        args.iter().skip(2).map(RedisString::as_slice).collect(),
    ))
}

/// `SINK.DEFINE name TYPE t PREFIX p [options]`: creates or replaces a definition.
pub fn define(ctx: &Context, args: &[RedisString]) -> Reply {
    let (name, raw) = name_and_args(args)?;
    let definition = SinkDefinition::parse(&raw)?;
    state().sinks.insert(
        name,
        NamedSink {
            definition,
            rows_written: 0,
            calls: 0,
        },
    );
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `SINK.DROP name`
pub fn drop(ctx: &Context, args: &[RedisString]) -> Reply {
    let (name, raw) = name_and_args(args)?;
    Args::new(&raw).finish()?;
    let removed = state().sinks.remove(&name).is_some();
    if removed {
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::Integer(i64::from(removed)))
}

/// `SINK.WRITE name json [json …]`: every row is parsed, keyed, type- and ACL-checked
/// before the first is written, so that either all rows are written or none. Each row's
/// write is held to the ACL rules of its type's command (`HSET` for a hash sink) on its
/// key, on every server.
pub fn write_rows(ctx: &Context, args: &[RedisString]) -> Reply {
    let (name, rows) = name_and_args(args)?;
    if rows.is_empty() {
        return Err(CoreError::WrongArity.into());
    }
    let definition = state()
        .sinks
        .get(&name)
        .map(|sink| sink.definition.clone())
        .ok_or_else(|| {
            CoreError::Invalid(format!(
                "no sink named '{}'; define it with SINK.DEFINE",
                quote(name.as_bytes())
            ))
        })?;
    let limits = config::limits();
    let (expected, access) = target(definition.kind);
    let caller = Caller::of(ctx);
    let served = served_slots(ctx);
    let mut planned = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let row_error =
            |error: CoreError| CoreError::Invalid(format!("row {}: {error}", index + 1));
        let object = json::parse_object(row, &limits).map_err(row_error)?;
        let (key, write) = definition.plan(&object).map_err(row_error)?;
        if matches!(&write, RowWrite::Stream(fields) if fields.is_empty()) {
            return Err(
                row_error(CoreError::Invalid("no field of the row is mapped".into())).into(),
            );
        }
        if let Some(served) = &served {
            let slot = cluster::key_slot(&key);
            if !cluster::serves(served, slot) {
                return Err(row_error(CoreError::Invalid(format!(
                    "the key '{}' is in slot {slot}, which this node does not serve; \
                     write it with the explicit-key SINK commands, which cluster clients route",
                    quote(&key)
                )))
                .into());
            }
        }
        caller.check_row(ctx, access, &key, index + 1)?;
        write::check_type(ctx, &key, &expected)?;
        planned.push((key, write));
    }
    for (key, write) in &planned {
        apply(ctx, &definition, key, write)?;
    }
    if let Some(sink) = state().sinks.get_mut(&name) {
        sink.rows_written += planned.len() as u64;
        sink.calls += 1;
    }
    Ok(RedisValue::Integer(planned.len() as i64))
}

/// In Redis Cluster, the slots this node serves (row keys are not command keys, so Redis
/// cannot redirect them); `None` outside a cluster.
fn served_slots(ctx: &Context) -> Option<Vec<(u16, u16)>> {
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return None;
    }
    let nodes: CallResult<'static> = ctx.call_ext(
        "CLUSTER",
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &["NODES"],
    );
    let text = match nodes {
        Ok(CallReply::String(text)) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        Ok(CallReply::VerbatimString(text)) => text.to_string(),
        _ => String::new(),
    };
    Some(cluster::my_slots(&text))
}

/// The type a sink's rows write, and the built-in command whose ACL rules each row's
/// write follows (row keys are not command arguments: Redis cannot check them).
fn target(kind: SinkType) -> (raw::KeyType, &'static Access) {
    match kind {
        SinkType::String => (raw::KeyType::String, &acl::SET),
        SinkType::Hash => (raw::KeyType::Hash, &acl::HSET),
        SinkType::List => (raw::KeyType::List, &acl::RPUSH),
        SinkType::Set => (raw::KeyType::Set, &acl::SADD),
        SinkType::Zset => (raw::KeyType::ZSet, &acl::ZADD),
        SinkType::Stream => (raw::KeyType::Stream, &acl::XADD),
    }
}

fn apply(
    ctx: &Context,
    definition: &SinkDefinition,
    key: &[u8],
    planned: &RowWrite,
) -> Result<(), Error> {
    let ttl = definition.ttl_secs;
    match planned {
        RowWrite::String(value) => write::string(ctx, key, value.as_bytes(), ttl)?,
        RowWrite::Hash(fields) => {
            let name = redis_string(ctx, key);
            write::hash(
                &WriteKey::open(ctx, &name),
                &Pairs::made(ctx, fields),
                HashUpdate::Merge,
                (&[], b""),
                ttl.map(expiry_ms),
            );
        }
        RowWrite::List(value) => {
            write::list(
                ctx,
                key,
                &[value.as_bytes()],
                definition.prepend,
                definition.max_len,
                ttl,
            )?;
        }
        RowWrite::Set(member) => {
            write::set(ctx, key, &[member.as_bytes()], ttl)?;
        }
        RowWrite::Zset { member, score } => {
            let name = redis_string(ctx, key);
            let target = WriteKey::open(ctx, &name);
            write::zset(&target, member.as_bytes(), *score, definition.max_len, ttl);
        }
        RowWrite::Stream(fields) => {
            let name = redis_string(ctx, key);
            let target = WriteKey::open(ctx, &name);
            write::stream(&target, fields, write::NewId::Auto, definition.max_len, ttl)?;
        }
    }
    Ok(())
}

/// `SINK.INFO [name]`: one sink's definition and counters, or every sink's.
pub fn info(_ctx: &Context, args: &[RedisString]) -> Reply {
    let state = state();
    let describe = |name: &str, sink: &NamedSink| {
        let options = sink
            .definition
            .options
            .iter()
            .map(|option| String::from_utf8_lossy(option).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        RedisValue::Array(vec![
            RedisValue::SimpleStringStatic("name"),
            RedisValue::BulkString(name.to_owned()),
            RedisValue::SimpleStringStatic("type"),
            RedisValue::BulkString(sink.definition.kind.name().to_owned()),
            RedisValue::SimpleStringStatic("prefix"),
            RedisValue::StringBuffer(sink.definition.prefix.clone()),
            RedisValue::SimpleStringStatic("definition"),
            RedisValue::BulkString(options),
            RedisValue::SimpleStringStatic("rows-written"),
            RedisValue::Integer(sink.rows_written as i64),
            RedisValue::SimpleStringStatic("writes"),
            RedisValue::Integer(sink.calls as i64),
        ])
    };
    match args.len() {
        1 => Ok(RedisValue::Array(
            state
                .sinks
                .iter()
                .map(|(name, sink)| describe(name, sink))
                .collect(),
        )),
        2 => {
            let (name, _) = name_and_args(args)?;
            let sink = state.sinks.get(&name).ok_or_else(|| {
                CoreError::Invalid(format!("no sink named '{}'", quote(name.as_bytes())))
            })?;
            Ok(describe(&name, sink))
        }
        _ => Err(CoreError::WrongArity.into()),
    }
}
