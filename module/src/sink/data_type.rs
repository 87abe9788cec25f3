//! Persists the sink state (versions, named sink definitions, late stream ids) as RDB aux
//! data, after
//! the keyspace. No key ever holds this type: it exists for its aux callbacks.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr::null_mut;

use redis_module::native_types::RedisType;
use redis_module::raw::{self, RedisModuleIO, RedisModuleString};
use redsink_core::late::LateIds;
use redsink_core::named::SinkDefinition;
use redsink_core::sink::StreamId;
use redsink_core::versions::{Entry, Versions};

use super::{state, NamedSink};

/// 2: versions by their key's fingerprint (with the key's name where kept: tombstones,
/// several lanes), after the fingerprints' secret; 1 (by key name, with lanes) and 0 (by
/// key name, every version in the unnamed lane) are still read.
const ENCODING_VERSION: i32 = 2;

pub static SINK_STATE_TYPE: RedisType = RedisType::new(
    "redsinkSK",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(no_value_load),
        rdb_save: Some(no_value_save),
        aof_rewrite: Some(no_value_rewrite),
        mem_usage: None,
        digest: None,
        free: Some(no_value_free),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_AFTER_RDB as c_int,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

unsafe extern "C" fn no_value_load(_rdb: *mut RedisModuleIO, _encver: c_int) -> *mut c_void {
    null_mut()
}
unsafe extern "C" fn no_value_save(_rdb: *mut RedisModuleIO, _value: *mut c_void) {}
unsafe extern "C" fn no_value_rewrite(
    _aof: *mut RedisModuleIO,
    _key: *mut RedisModuleString,
    _value: *mut c_void,
) {
}
unsafe extern "C" fn no_value_free(_value: *mut c_void) {}

unsafe extern "C" fn aux_save(rdb: *mut RedisModuleIO, when: c_int) {
    if when != raw::REDISMODULE_AUX_AFTER_RDB as c_int {
        return;
    }
    let state = state();
    let (k0, k1) = state.versions.secret();
    raw::save_unsigned(rdb, k0);
    raw::save_unsigned(rdb, k1);
    raw::save_unsigned(rdb, state.versions.len() as u64);
    for (db, id, name, lane, entry) in state.versions.iter() {
        raw::save_signed(rdb, i64::from(db));
        raw::save_unsigned(rdb, id);
        raw::save_unsigned(rdb, u64::from(name.is_some()));
        raw::save_slice(rdb, name.unwrap_or_default());
        raw::save_slice(rdb, lane);
        raw::save_signed(rdb, entry.version);
        raw::save_unsigned(rdb, u64::from(entry.tombstone_until.is_some()));
        raw::save_signed(rdb, entry.tombstone_until.unwrap_or(0));
    }
    raw::save_unsigned(rdb, state.sinks.len() as u64);
    for (name, sink) in &state.sinks {
        raw::save_string(rdb, name);
        raw::save_unsigned(rdb, sink.definition.options.len() as u64);
        for option in &sink.definition.options {
            raw::save_slice(rdb, option);
        }
    }
    for ids in [&state.late, &state.taken] {
        raw::save_unsigned(rdb, ids.len() as u64);
        for (db, key, id, until) in ids.iter() {
            raw::save_signed(rdb, i64::from(db));
            raw::save_slice(rdb, key);
            raw::save_unsigned(rdb, id.ms);
            raw::save_unsigned(rdb, id.seq);
            raw::save_signed(rdb, until);
        }
    }
}

unsafe extern "C" fn aux_load(rdb: *mut RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    if !(0..=ENCODING_VERSION).contains(&encver) || when != raw::REDISMODULE_AUX_AFTER_RDB as c_int
    {
        return raw::REDISMODULE_ERR as c_int;
    }
    match load(rdb, encver) {
        Some(loaded) => {
            let mut state = state();
            state.versions = loaded.versions;
            state.sinks = loaded.sinks;
            state.late = loaded.late;
            state.taken = loaded.taken;
            raw::REDISMODULE_OK as c_int
        }
        None => raw::REDISMODULE_ERR as c_int,
    }
}

/// The sink state as read back.
struct Loaded {
    versions: Versions,
    sinks: BTreeMap<String, NamedSink>,
    late: LateIds,
    taken: LateIds,
}

fn load(rdb: *mut RedisModuleIO, encver: c_int) -> Option<Loaded> {
    let mut versions = if encver >= 2 {
        Versions::with_secret((raw::load_unsigned(rdb).ok()?, raw::load_unsigned(rdb).ok()?))
    } else {
        Versions::default()
    };
    for _ in 0..raw::load_unsigned(rdb).ok()? {
        let db = i32::try_from(raw::load_signed(rdb).ok()?).ok()?;
        let (id, name) = if encver >= 2 {
            let id = raw::load_unsigned(rdb).ok()?;
            let named = raw::load_unsigned(rdb).ok()? != 0;
            let name = bytes(rdb)?;
            (id, named.then_some(name))
        } else {
            let name = bytes(rdb)?;
            (versions.key_id(&name), Some(name))
        };
        let lane = if encver >= 1 { bytes(rdb)? } else { Vec::new() };
        let version = raw::load_signed(rdb).ok()?;
        let is_tombstone = raw::load_unsigned(rdb).ok()? != 0;
        let until = raw::load_signed(rdb).ok()?;
        let entry = Entry {
            version,
            tombstone_until: is_tombstone.then_some(until),
        };
        if !versions.set_id(db, id, name.as_deref(), &lane, entry) {
            return None;
        }
    }
    let mut sinks = BTreeMap::new();
    for _ in 0..raw::load_unsigned(rdb).ok()? {
        let name = String::from_utf8(bytes(rdb)?).ok()?;
        let options = (0..raw::load_unsigned(rdb).ok()?)
            .map(|_| bytes(rdb))
            .collect::<Option<Vec<Vec<u8>>>>()?;
        let slices: Vec<&[u8]> = options.iter().map(Vec::as_slice).collect();
        let definition = SinkDefinition::parse(&slices).ok()?;
        sinks.insert(
            name,
            NamedSink {
                definition,
                rows_written: 0,
                calls: 0,
            },
        );
    }
    Some(Loaded {
        versions,
        sinks,
        late: load_ids(rdb)?,
        taken: load_ids(rdb)?,
    })
}

fn load_ids(rdb: *mut RedisModuleIO) -> Option<LateIds> {
    let mut ids = LateIds::default();
    for _ in 0..raw::load_unsigned(rdb).ok()? {
        let db = i32::try_from(raw::load_signed(rdb).ok()?).ok()?;
        let key = bytes(rdb)?;
        let id = StreamId {
            ms: raw::load_unsigned(rdb).ok()?,
            seq: raw::load_unsigned(rdb).ok()?,
        };
        ids.insert(db, &key, id, raw::load_signed(rdb).ok()?);
    }
    Some(ids)
}

fn bytes(rdb: *mut RedisModuleIO) -> Option<Vec<u8>> {
    Some(raw::load_string_buffer(rdb).ok()?.as_ref().to_vec())
}
