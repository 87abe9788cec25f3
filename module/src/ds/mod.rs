//! Device data streams: the `DS.*` commands over a native data type.

pub mod commands;
pub mod data_type;
pub mod reclaim;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use redis_module::key::{RedisKey, RedisKeyWritable};
use redsink_core::ds::DeviceStream;

use crate::error::Error;

pub use data_type::DS_TYPE;

/// Streams alive in this server; while there are none, the reclaimer does not scan.
static LIVE_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// The value stored under a device-stream key: a [`DeviceStream`] that counts itself.
pub struct StreamValue(DeviceStream);

impl StreamValue {
    pub fn new(stream: DeviceStream) -> Self {
        LIVE_STREAMS.fetch_add(1, Ordering::Relaxed);
        StreamValue(stream)
    }

    pub fn any_alive() -> bool {
        LIVE_STREAMS.load(Ordering::Relaxed) > 0
    }
}

impl Drop for StreamValue {
    fn drop(&mut self) {
        LIVE_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Deref for StreamValue {
    type Target = DeviceStream;

    fn deref(&self) -> &DeviceStream {
        &self.0
    }
}

impl DerefMut for StreamValue {
    fn deref_mut(&mut self) -> &mut DeviceStream {
        &mut self.0
    }
}

/// The stream under `key`, if any. (redis-module's own check answers a key of another
/// type with a non-standard error; clients expect Redis's `WRONGTYPE`.)
pub fn read_stream(key: &RedisKey) -> Result<Option<&StreamValue>, Error> {
    key.get_value::<StreamValue>(&DS_TYPE)
        .map_err(|_| Error::WrongType)
}

/// The stream under `key` for writing, if any.
pub fn write_stream(key: &RedisKeyWritable) -> Result<Option<&mut StreamValue>, Error> {
    key.get_value::<StreamValue>(&DS_TYPE)
        .map_err(|_| Error::WrongType)
}
