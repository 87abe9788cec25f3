//! The logic behind redsink's commands, with no Redis in it.
//!
//! The module crate is a thin layer over this one: it turns Redis arguments into byte
//! slices, calls these functions and turns their results into replies. Everything here is
//! plain Rust, unit-tested without a server, and never panics on user input.

pub mod args;
pub mod cluster;
pub mod ds;
pub mod error;
pub mod glob;
pub mod json;
pub mod late;
pub mod named;
pub mod per_db;
pub mod sink;
pub mod time;
pub mod versions;

pub use error::Error;

/// Where the module announces each new stream (its name): a worker reading streams by a
/// pattern subscribes, and reads a new stream at once rather than at its next scan.
pub const NEW_STREAMS_CHANNEL: &str = "redsink:new-streams";
