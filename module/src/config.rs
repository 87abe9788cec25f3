//! Module configuration: `redsink.*` limits, settable on `loadmodule`/`MODULE LOAD` as
//! `name value` pairs, as `redsink.name value` lines in redis.conf, and with `CONFIG SET`.

use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::configuration::{register_i64_configuration, ConfigurationFlags};
use redis_module::{raw, Context, RedisString};
use redsink_core::args::Args;
use redsink_core::json::{Limits, MAX_SUPPORTED_DEPTH};

pub static MAX_PAYLOAD_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_PAYLOAD_BYTES);
pub static MAX_DEPTH: AtomicI64 = AtomicI64::new(DEFAULT_MAX_DEPTH);
pub static MAX_FIELDS: AtomicI64 = AtomicI64::new(DEFAULT_MAX_FIELDS);
pub static TOMBSTONE_TTL: AtomicI64 = AtomicI64::new(DEFAULT_TOMBSTONE_TTL);

pub const DEFAULT_MAX_PAYLOAD_BYTES: i64 = 1024 * 1024;
pub const DEFAULT_MAX_DEPTH: i64 = 32;
pub const DEFAULT_MAX_FIELDS: i64 = 4096;
/// How long a delete made with VERSION keeps older writes out: a day.
pub const DEFAULT_TOMBSTONE_TTL: i64 = 86_400;

/// The limits every JSON payload from a client is held to.
pub fn limits() -> Limits {
    let read = |value: &AtomicI64| usize::try_from(value.load(Ordering::Relaxed)).unwrap_or(0);
    Limits {
        max_bytes: read(&MAX_PAYLOAD_BYTES),
        max_depth: read(&MAX_DEPTH),
        max_fields: read(&MAX_FIELDS),
    }
}

/// How long a versioned delete's tombstone lasts, in milliseconds.
pub fn tombstone_ttl_ms() -> i64 {
    TOMBSTONE_TTL.load(Ordering::Relaxed).saturating_mul(1000)
}

/// No limits: for commands replayed from the primary or the AOF, which the primary
/// already admitted. A replica with smaller limits must not diverge from its primary.
pub fn replay_limits() -> Limits {
    Limits::UNLIMITED
}

/// Every setting: name (without the `redsink.` prefix), value, range.
const SETTINGS: [(&str, &AtomicI64, i64, i64); 4] = [
    (
        "max-payload-bytes",
        &MAX_PAYLOAD_BYTES,
        2,
        512 * 1024 * 1024,
    ),
    ("max-depth", &MAX_DEPTH, 1, MAX_SUPPORTED_DEPTH as i64),
    ("max-fields", &MAX_FIELDS, 1, 1_000_000),
    (
        "tombstone-ttl",
        &TOMBSTONE_TTL,
        1,
        redsink_core::ds::MAX_TTL_SECS,
    ),
];

/// Applies `name value` pairs given after the module's path on `loadmodule`/`MODULE LOAD`.
/// (`redsink.name value` lines in redis.conf and `MODULE LOADEX … CONFIG` are applied by
/// Redis itself.)
fn apply_module_args(args: &[RedisString]) -> Result<(), String> {
    let args: Vec<&[u8]> = args.iter().map(RedisString::as_slice).collect();
    let mut parsed = Args::new(&args);
    while let Some(name) = parsed.next_keyword() {
        let name = name.to_ascii_lowercase();
        let name = name.strip_prefix("redsink.").unwrap_or(&name);
        let Some(&(name, value, min, max)) = SETTINGS.iter().find(|s| s.0 == name) else {
            return Err(format!(
                "unknown module argument '{name}'; known: max-payload-bytes, max-depth, max-fields, tombstone-ttl"
            ));
        };
        let parsed_value = parsed
            .int_value(name, min, max)
            .map_err(|e| e.to_string())?;
        value.store(parsed_value, Ordering::Relaxed);
    }
    Ok(())
}

/// Registers the settings with Redis (so `CONFIG GET/SET redsink.*` work), taking the
/// module arguments as defaults, then lets Redis apply redis.conf's `redsink.*` lines.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    apply_module_args(args)?;
    for (name, value, min, max) in SETTINGS {
        let default = value.load(Ordering::Relaxed);
        register_i64_configuration(
            ctx,
            name,
            value,
            default,
            min,
            max,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    // SAFETY: called from the module's load, with its context.
    match unsafe { raw::RedisModule_LoadConfigs } {
        Some(load_configs) if unsafe { load_configs(ctx.ctx) } == raw::REDISMODULE_OK as i32 => {
            Ok(())
        }
        _ => Err("redsink.* settings in the configuration are invalid".to_owned()),
    }
}
