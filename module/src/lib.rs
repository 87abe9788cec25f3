//! redsink: a Redis module that keeps data in sync from inside the server.
//!
//! Device data streams (`DS.*`) are a native data type; see `docs/commands.md`.

mod command;
mod config;
mod ds;
mod error;
mod keys;
mod maintenance;
mod sink;

use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

use command::handler;
use ds::DS_TYPE;
use sink::data_type::SINK_STATE_TYPE;

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    if let Err(message) = config::register(ctx, args) {
        ctx.log_warning(&format!("redsink: {message}"));
        return Status::Err;
    }
    // Let rdb_load see short reads as errors instead of Redis exiting on them.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    maintenance::start(ctx);
    sink::events::subscribe(ctx)
}

redis_module! {
    name: "redsink",
    version: 100,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [DS_TYPE, SINK_STATE_TYPE],
    init: init,
    commands: [
        ["DS.CREATE", handler(ds::commands::create), "write deny-oom", 1, 1, 1, ""],
        ["DS.ALTER", handler(ds::commands::alter), "write deny-oom", 1, 1, 1, ""],
        ["DS.UPDATE", handler(ds::commands::update), "write deny-oom", 1, 1, 1, ""],
        ["DS.PUT", handler(ds::commands::put), "write deny-oom", 1, 1, 1, ""],
        ["DS.GET", handler(ds::commands::get), "readonly", 1, 1, 1, ""],
        ["DS.MGET", handler(ds::commands::mget), "readonly", 1, 1, 1, ""],
        ["DS.DEL", handler(ds::commands::del), "write", 1, 1, 1, ""],
        ["DS.DEVICES", handler(ds::commands::devices), "readonly", 1, 1, 1, ""],
        ["DS.LEN", handler(ds::commands::len), "readonly", 1, 1, 1, ""],
        ["DS.RANGE", handler(ds::commands::range), "readonly", 1, 1, 1, ""],
        ["DS.INFO", handler(ds::commands::info), "readonly", 1, 1, 1, ""],
        ["SINK.HASH", handler(sink::commands::hash), "write deny-oom", 1, 1, 1, ""],
        ["SINK.STRING", handler(sink::commands::string), "write deny-oom", 1, 1, 1, ""],
        ["SINK.LIST", handler(sink::commands::list), "write deny-oom", 1, 1, 1, ""],
        ["SINK.SET", handler(sink::commands::set), "write deny-oom", 1, 1, 1, ""],
        ["SINK.ZSET", handler(sink::commands::zset), "write deny-oom", 1, 1, 1, ""],
        ["SINK.STREAM", handler(sink::commands::stream), "write deny-oom", 1, 1, 1, ""],
        ["SINK.DEL", handler(sink::commands::del), "write", 1, 1, 1, ""],
        ["SINK.VERSION", handler(sink::commands::version), "readonly", 1, 1, 1, ""],
                ["SINK.SETVERSION", handler(sink::commands::set_version), "write", 1, 1, 1, ""],
        ["SINK.LATEID", handler(sink::commands::late_id), "write", 1, 1, 1, ""],
        ["SINK.DEFINE", handler(sink::named::define), "write deny-oom", 0, 0, 0, ""],
        ["SINK.WRITE", handler(sink::named::write_rows), "write deny-oom", 0, 0, 0, ""],
        ["SINK.DROP", handler(sink::named::drop), "write", 0, 0, 0, ""],
        ["SINK.INFO", handler(sink::named::info), "readonly", 0, 0, 0, ""],
    ],
    event_handlers: [
        [@GENERIC @EXPIRED @EVICTED: sink::events::on_keyspace_event],
    ],
}
