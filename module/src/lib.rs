//! redsink: a Redis module that keeps data in sync from inside the server.
//!
//! Device data streams (`DS.*`) are a native data type; see `docs/commands.md`.

mod command;
mod config;
mod ds;
mod error;

use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

use command::handler;
use ds::DS_TYPE;

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    if let Err(message) = config::register(ctx, args) {
        ctx.log_warning(&format!("redsink: {message}"));
        return Status::Err;
    }
    // Let rdb_load see short reads as errors instead of Redis exiting on them.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    ds::reclaim::start(ctx);
    Status::Ok
}

redis_module! {
    name: "redsink",
    version: 100,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [DS_TYPE],
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
    ],
}
