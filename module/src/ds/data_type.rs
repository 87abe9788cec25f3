//! The device stream as a Redis data type: RDB save/load, AOF rewrite, copy, memory.
//!
//! None of these callbacks may panic: they run inside Redis with no way to report an
//! error but a null value (a failed load).

use std::ffi::c_void;
use std::os::raw::{c_char, c_int, c_longlong};
use std::ptr::null_mut;

use redis_module::native_types::RedisType;
use redis_module::raw::{self, RedisModuleIO, RedisModuleString};
use redsink_core::ds::{DateFormat, DeviceStream, OnUpdate, Record, Settings};
use redsink_core::json::Limits;

use super::StreamValue;

/// The type's name as `TYPE key` shows it (Redis wants exactly nine characters).
pub const TYPE_NAME: &str = "redsinkDS";
/// Bumped whenever the RDB layout changes; `rdb_load` refuses versions it does not know.
/// 1: records are stored without their stamp fields (version 0 stored them stamped).
const ENCODING_VERSION: i32 = 1;

pub static DS_TYPE: RedisType = RedisType::new(
    TYPE_NAME,
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: None,
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: Some(free_effort),
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

/// # Safety
/// `value` is a `StreamValue` that Redis got from this module.
unsafe fn stream<'a>(value: *const c_void) -> &'a StreamValue {
    unsafe { &*value.cast::<StreamValue>() }
}

unsafe extern "C" fn free(value: *mut c_void) {
    drop(unsafe { Box::from_raw(value.cast::<StreamValue>()) });
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    unsafe { stream(value) }.memory()
}

/// Allocations to free: Redis frees a value with many of them in a background thread.
unsafe extern "C" fn free_effort(_key: *mut RedisModuleString, value: *const c_void) -> usize {
    unsafe { stream(value) }.stored_len() + 1
}

unsafe extern "C" fn copy(
    _from: *mut RedisModuleString,
    _to: *mut RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    let copied = StreamValue::new(unsafe { stream(value) }.0.clone());
    Box::into_raw(Box::new(copied)).cast()
}

unsafe extern "C" fn rdb_save(rdb: *mut RedisModuleIO, value: *mut c_void) {
    let stream = unsafe { stream(value) };
    let settings = stream.settings();
    raw::save_string(rdb, &settings.timestamp_field);
    raw::save_string(rdb, &settings.device_field);
    raw::save_unsigned(rdb, settings.date_format as u64);
    raw::save_signed(rdb, settings.ttl_secs);
    raw::save_signed(rdb, settings.history);
    raw::save_unsigned(rdb, settings.on_update as u64);
    raw::save_unsigned(rdb, stream.stored_len() as u64);
    for (name, device) in stream.devices() {
        raw::save_string(rdb, name);
        save_record(rdb, device.current());
        raw::save_unsigned(rdb, device.history().count() as u64);
        for record in device.history() {
            save_record(rdb, record);
        }
    }
}

fn save_record(rdb: *mut RedisModuleIO, record: &Record) {
    raw::save_signed(rdb, record.ms);
    raw::save_string(rdb, &record.json);
}

unsafe extern "C" fn rdb_load(rdb: *mut RedisModuleIO, encver: c_int) -> *mut c_void {
    if !(0..=ENCODING_VERSION).contains(&encver) {
        return null_mut();
    }
    match load_stream(rdb, encver) {
        Some(stream) => Box::into_raw(Box::new(StreamValue::new(stream))).cast(),
        None => null_mut(),
    }
}

/// Reads what `rdb_save` wrote; `None` on a short read or a value out of range.
/// Records of encoding 0 lose their stored stamp fields.
fn load_stream(rdb: *mut RedisModuleIO, encver: c_int) -> Option<DeviceStream> {
    let settings = Settings {
        timestamp_field: load_text(rdb)?,
        device_field: load_text(rdb)?,
        date_format: DateFormat::from_index(load_index(rdb)?)?,
        ttl_secs: raw::load_signed(rdb).ok()?,
        history: raw::load_signed(rdb).ok()?,
        on_update: OnUpdate::from_index(load_index(rdb)?)?,
    };
    let mut stream = DeviceStream::new(settings);
    let load = |rdb| {
        let record = load_record(rdb)?;
        if encver > 0 {
            return Some(record);
        }
        let json = stream
            .body(record.json.as_bytes(), &Limits::UNLIMITED)
            .ok()?;
        Some(Record { json, ..record })
    };
    let mut devices = Vec::new();
    for _ in 0..raw::load_unsigned(rdb).ok()? {
        let name = load_text(rdb)?.into_boxed_str();
        let current = load(rdb)?;
        let history = (0..raw::load_unsigned(rdb).ok()?)
            .map(|_| load(rdb))
            .collect::<Option<Vec<Record>>>()?;
        devices.push((name, current, history));
    }
    for (name, current, history) in devices {
        stream.insert_loaded(name, current, history);
    }
    Some(stream)
}

fn load_index(rdb: *mut RedisModuleIO) -> Option<usize> {
    usize::try_from(raw::load_unsigned(rdb).ok()?).ok()
}

fn load_text(rdb: *mut RedisModuleIO) -> Option<String> {
    raw::load_string_buffer(rdb).ok()?.to_string().ok()
}

fn load_record(rdb: *mut RedisModuleIO) -> Option<Record> {
    Some(Record {
        ms: raw::load_signed(rdb).ok()?,
        json: load_text(rdb)?.into_boxed_str(),
    })
}

/// Rewrites the stream as `DS.CREATE` plus one `DS.PUT` a record: history first, the
/// current record last, so that loading the AOF rebuilds it exactly.
unsafe extern "C" fn aof_rewrite(
    aof: *mut RedisModuleIO,
    key: *mut RedisModuleString,
    value: *mut c_void,
) {
    let stream = unsafe { stream(value) };
    let Some(emit) = (unsafe { raw::RedisModule_EmitAOF }) else {
        return;
    };
    let settings = stream.settings();
    let date_format = settings.date_format.name();
    let on_update = settings.on_update.name();
    unsafe {
        emit(
            aof,
            c"DS.CREATE".as_ptr(),
            c"scbcbcbclclcb".as_ptr(),
            key,
            c"TIMESTAMP".as_ptr(),
            settings.timestamp_field.as_ptr().cast::<c_char>(),
            settings.timestamp_field.len(),
            c"DEVICE".as_ptr(),
            settings.device_field.as_ptr().cast::<c_char>(),
            settings.device_field.len(),
            c"DATEFORMAT".as_ptr(),
            date_format.as_ptr().cast::<c_char>(),
            date_format.len(),
            c"TTL".as_ptr(),
            settings.ttl_secs as c_longlong,
            c"HISTORY".as_ptr(),
            settings.history as c_longlong,
            c"ONUPDATE".as_ptr(),
            on_update.as_ptr().cast::<c_char>(),
            on_update.len(),
        );
    }
    for (name, device) in stream.devices() {
        let current = device.current();
        let mut skipped_current = false;
        let older = device.history().filter(|record| {
            let is_current = !skipped_current && *record == current;
            skipped_current |= is_current;
            !is_current
        });
        for record in older.chain(std::iter::once(current)) {
            unsafe {
                emit(
                    aof,
                    c"DS.PUT".as_ptr(),
                    c"sblb".as_ptr(),
                    key,
                    name.as_ptr().cast::<c_char>(),
                    name.len(),
                    record.ms as c_longlong,
                    record.json.as_ptr().cast::<c_char>(),
                    record.json.len(),
                );
            }
        }
    }
}
