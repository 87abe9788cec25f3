//! What every command handler shares: the adapter from Redis's calling convention, and
//! arguments as byte slices for the core crate's parsers.

use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::error::Error;

pub type Handler = fn(&Context, &[RedisString]) -> Result<RedisValue, Error>;

/// Adapts `handler` to the `redis_module!` command table. A panic is a bug in redsink;
/// unwinding into Redis would abort the server and lose the user's data, so it becomes
/// an error reply and a warning in the log instead.
pub fn handler(handler: Handler) -> impl Fn(&Context, Vec<RedisString>) -> RedisResult {
    move |ctx, args| match catch_unwind(AssertUnwindSafe(|| handler(ctx, &args))) {
        Ok(result) => result.map_err(Error::into_redis),
        Err(_) => {
            ctx.log_warning("redsink: a command panicked; please report this bug");
            Err(RedisError::Str(
                "ERR internal error in redsink (a bug: please report it)",
            ))
        }
    }
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

/// `bytes` as a Redis string. (redis-module's `Context::create_string` goes through a C
/// string and panics on a NUL byte; keys and values are binary.)
pub fn redis_string(ctx: &Context, bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes)
}
