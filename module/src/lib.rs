//! redsink: a Redis module that keeps data in sync from inside the server.
//!
//! Device data streams (`DS.*`) are a native data type; sinks (`SINK.*`) write onto
//! Redis's own types. See `docs/commands.md`.

mod acl;
mod command;
mod config;
mod ds;
mod error;
mod keys;
mod maintenance;
mod sink;

use std::ffi::CStr;

use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

use command::{callback, Callback, Command};
use ds::DS_TYPE;
use sink::data_type::SINK_STATE_TYPE;

/// Every command of the module: its name, handler, flags, and the built-in command whose
/// ACL rules it follows (docs/commands.md gives the reasons for each).
pub const COMMANDS: [Command; 26] = [
    write(c"DS.CREATE", ds::commands::create, acl::HSET),
    write(c"DS.ALTER", ds::commands::alter, acl::HSET),
    write(c"DS.UPDATE", ds::commands::update, acl::HSET),
    write(c"DS.PUT", ds::commands::put, acl::REPLICATION),
    read(c"DS.GET", ds::commands::get, acl::HGET),
    read(c"DS.MGET", ds::commands::mget, acl::HMGET),
    light_write(c"DS.DEL", ds::commands::del, acl::HDEL),
    read(c"DS.DEVICES", ds::commands::devices, acl::HSCAN),
    read(c"DS.LEN", ds::commands::len, acl::HLEN),
    read(c"DS.RANGE", ds::commands::range, acl::HGETALL),
    read(c"DS.INFO", ds::commands::info, acl::HLEN),
    write(c"SINK.HASH", sink::commands::hash, acl::HSET),
    write(c"SINK.STRING", sink::commands::string, acl::SET),
    write(c"SINK.JSON", sink::commands::json_document, acl::JSON_SET),
    write(c"SINK.LIST", sink::commands::list, acl::RPUSH),
    write(c"SINK.SET", sink::commands::set, acl::SADD),
    write(c"SINK.ZSET", sink::commands::zset, acl::ZADD),
    write(c"SINK.STREAM", sink::commands::stream, acl::XADD),
    light_write(c"SINK.DEL", sink::commands::del, acl::DEL),
    read(c"SINK.VERSION", sink::commands::version, acl::EXISTS),
    light_write(
        c"SINK.SETVERSION",
        sink::commands::set_version,
        acl::REPLICATION,
    ),
    light_write(c"SINK.LATEID", sink::commands::late_id, acl::REPLICATION),
    write(c"SINK.DEFINE", sink::named::define, acl::FUNCTION_LOAD),
    write(c"SINK.WRITE", sink::named::write_rows, acl::ROWS),
    light_write(c"SINK.DROP", sink::named::drop, acl::FUNCTION_DELETE),
    read(c"SINK.INFO", sink::named::info, acl::FUNCTION_LIST),
];

/// What Redis calls for each command, by its place in `COMMANDS`.
const CALLBACKS: [Callback; COMMANDS.len()] = [
    callback::<0>,
    callback::<1>,
    callback::<2>,
    callback::<3>,
    callback::<4>,
    callback::<5>,
    callback::<6>,
    callback::<7>,
    callback::<8>,
    callback::<9>,
    callback::<10>,
    callback::<11>,
    callback::<12>,
    callback::<13>,
    callback::<14>,
    callback::<15>,
    callback::<16>,
    callback::<17>,
    callback::<18>,
    callback::<19>,
    callback::<20>,
    callback::<21>,
    callback::<22>,
    callback::<23>,
    callback::<24>,
    callback::<25>,
];

/// A write that may grow memory: refused under `maxmemory` like SET.
const fn write(name: &'static CStr, handler: command::Handler, access: acl::Access) -> Command {
    Command {
        name,
        handler,
        flags: c"write deny-oom",
        access,
    }
}

/// A write that frees memory or only sets metadata: allowed under `maxmemory`, like DEL.
const fn light_write(
    name: &'static CStr,
    handler: command::Handler,
    access: acl::Access,
) -> Command {
    Command {
        name,
        handler,
        flags: c"write",
        access,
    }
}

const fn read(name: &'static CStr, handler: command::Handler, access: acl::Access) -> Command {
    Command {
        name,
        handler,
        flags: c"readonly",
        access,
    }
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    if let Err(message) = config::register(ctx, args) {
        ctx.log_warning(&format!("redsink: {message}"));
        return Status::Err;
    }
    if let Err(message) = command::register(ctx, &CALLBACKS) {
        ctx.log_warning(&format!("redsink: {message}"));
        return Status::Err;
    }
    // Let rdb_load see short reads as errors instead of Redis exiting on them.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    maintenance::start(ctx);
    sink::migrate::register(ctx);
    sink::events::subscribe(ctx)
}

redis_module! {
    name: "redsink",
    version: 100,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [DS_TYPE, SINK_STATE_TYPE],
    init: init,
    event_handlers: [
        [@GENERIC @EXPIRED @EVICTED: sink::events::on_keyspace_event],
        [@STREAM: sink::events::on_stream_event],
    ],
}
