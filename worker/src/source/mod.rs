//! Where change events come from.

pub mod entries;
pub mod postgres;
pub mod redis_stream;
