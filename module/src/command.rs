//! What every command shares: its entry in the module's command table, registration,
//! the adapter from Redis's calling convention (ACL check, panic guard, reply), and
//! arguments as byte slices for the core crate's parsers.

use std::ffi::{c_int, CStr};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use crate::acl::{self, Access};
use crate::error::Error;
use crate::COMMANDS;

pub type Handler = fn(&Context, &[RedisString]) -> Result<RedisValue, Error>;

/// One command of the module.
pub struct Command {
    pub name: &'static CStr,
    pub handler: Handler,
    /// Redis's command flags (`write deny-oom`, `readonly`).
    pub flags: &'static CStr,
    /// The ACL rules it is held to: its built-in equivalent's. A command with a key takes
    /// it as its first argument, so that cluster clients route it.
    pub access: Access,
}

/// What Redis calls for `COMMANDS[INDEX]`. (Redis passes a command nothing but its
/// arguments, so each command needs a function of its own; this makes one per index.)
pub type Callback = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

pub unsafe extern "C" fn callback<const INDEX: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let args = borrowed_args(ctx, argv, argc);
    // SAFETY: ManuallyDrop<RedisString> is repr(transparent) over RedisString.
    let args = unsafe {
        &*(args.as_slice() as *const [ManuallyDrop<RedisString>] as *const [RedisString])
    };
    let reply = run(&COMMANDS[INDEX], &context, args);
    context.reply(reply) as c_int
}

/// The command's arguments, borrowed for the call: Redis holds them until the command
/// returns, so they are neither retained nor freed here (redis-module's `decode_args`
/// does both for every argument, a tenth of a short command's time).
fn borrowed_args(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> Vec<ManuallyDrop<RedisString>> {
    if argv.is_null() {
        return Vec::new();
    }
    // SAFETY: Redis passes `argc` strings at `argv`, alive until the command returns.
    let argv = unsafe { std::slice::from_raw_parts(argv, usize::try_from(argc).unwrap_or(0)) };
    argv.iter()
        .map(|&arg| ManuallyDrop::new(RedisString::from_redis_module_string(ctx, arg)))
        .collect()
}

/// Checks ACL, then runs the handler. A panic is a bug in redsink; unwinding into Redis
/// would abort the server and lose the user's data, so it becomes an error reply and a
/// warning in the log instead.
fn run(command: &Command, ctx: &Context, args: &[RedisString]) -> RedisResult {
    let result = catch_unwind(AssertUnwindSafe(|| {
        acl::authorize(ctx, command.name, &command.access, args)?;
        (command.handler)(ctx, args)
    }));
    match result {
        Ok(result) => result.map_err(Error::into_redis),
        Err(_) => {
            ctx.log_warning("redsink: a command panicked; please report this bug");
            Err(RedisError::Str(
                "ERR internal error in redsink (a bug: please report it)",
            ))
        }
    }
}

/// At load: creates every command, with its key spec and, where the server allows, its
/// ACL categories; says in the log how ACL applies to them.
pub fn register(ctx: &Context, callbacks: &[Callback; COMMANDS.len()]) -> Result<(), String> {
    let (Some(create), Some(get)) = (unsafe { raw::RedisModule_CreateCommand }, unsafe {
        raw::RedisModule_GetCommand
    }) else {
        return Err("this server lacks the module API to create commands".into());
    };
    let own_category = acl::add_own_category(ctx);
    for (command, &callback) in COMMANDS.iter().zip(callbacks) {
        let key = i32::from(command.access.key.is_some());
        // SAFETY: OnLoad's context, C strings, and a callback for this command.
        let created = unsafe {
            create(
                ctx.ctx,
                command.name.as_ptr(),
                Some(callback),
                command.flags.as_ptr(),
                key,
                key,
                key,
            )
        };
        let name = command.name.to_string_lossy();
        // SAFETY: the same context and name; the command exists if it was created.
        let handle = unsafe { get(ctx.ctx, command.name.as_ptr()) };
        if created != raw::REDISMODULE_OK as c_int || handle.is_null() {
            return Err(format!("could not create the command {name}"));
        }
        acl::declare(handle, &command.access, own_category)
            .map_err(|error| format!("{name}: {error}"))?;
    }
    ctx.log_notice(match (acl::declared(), own_category) {
        (true, true) => "redsink: commands declared in their built-in equivalents' ACL categories and @redsink",
        (true, false) => "redsink: commands declared in their built-in equivalents' ACL categories (this server cannot add @redsink)",
        _ => "redsink: this server cannot put module commands in ACL categories: each command checks that the caller may run its built-in equivalent (docs/commands.md, ACL)",
    });
    Ok(())
}

/// The key (the first argument, so that cluster clients route by it) and the
/// arguments after it as byte slices, for the core crate's parsers.
pub fn key_and_args(args: &[RedisString]) -> Result<(&RedisString, Vec<&[u8]>), Error> {
    let key = args
        .get(1)
        .ok_or(Error::Core(redsink_core::Error::WrongArity))?;
    let rest = args.iter().skip(2).map(RedisString::as_slice).collect();
    Ok((key, rest))
}

/// Commands from the primary or the AOF replay what the primary decided: they neither
/// consult the clock for expiry nor apply the limits again.
pub fn is_replaying(ctx: &Context) -> bool {
    ctx.get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}

/// The limits a command holds its input to: none when it is replayed (see
/// [`is_replaying`]), so that a replica or an AOF load with smaller limits never refuses
/// what the primary wrote.
pub fn limits(ctx: &Context) -> redsink_core::json::Limits {
    if is_replaying(ctx) {
        crate::config::replay_limits()
    } else {
        crate::config::limits()
    }
}

/// Announces `event` on `key` to keyspace-event subscribers. (redis-module's
/// `notify_keyspace_event` copies the event's name into a new C string on every call.)
pub fn notify(ctx: &Context, kind: raw::NotifyEvent, event: &CStr, key: &RedisString) {
    // SAFETY: the context of a running command; both strings live through the call.
    unsafe {
        if let Some(notify) = raw::RedisModule_NotifyKeyspaceEvent {
            notify(ctx.ctx, kind.bits(), event.as_ptr(), key.inner);
        }
    }
}

/// The errno a module API call set (what it says went wrong, where its result says only
/// that something did).
pub fn errno() -> Option<i32> {
    std::io::Error::last_os_error().raw_os_error()
}

/// `bytes` as a Redis string. (redis-module's `Context::create_string` goes through a C
/// string and panics on a NUL byte; keys and values are binary.)
pub fn redis_string(ctx: &Context, bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes)
}
