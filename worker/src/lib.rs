//! redsink-worker: reads change events and writes them into Redis through the redsink
//! module's commands (or plain commands where the module is not loaded).

pub mod commands;
pub mod config;
pub mod connect;
pub mod dlq;
pub mod dry_run;
pub mod error;
pub mod expr;
pub mod format;
pub mod job;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod run;
pub mod source;
pub mod status;

pub use error::{Error, Result};
