//! The one error type of the core crate. Each message is what a user reads after `ERR `,
//! so it says what was wrong and, where it can, what to do about it.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command got too few or too many arguments (Redis's own arity error).
    #[error("wrong number of arguments")]
    WrongArity,
    #[error("unknown option '{0}'")]
    UnknownOption(String),
    #[error("option '{0}' needs a value")]
    MissingValue(&'static str),
    #[error("{name} must be an integer from {min} to {max}, got '{got}'")]
    BadInteger {
        name: &'static str,
        min: i64,
        max: i64,
        got: String,
    },
    #[error("{name} must be {choices}, got '{got}'")]
    BadChoice {
        name: &'static str,
        choices: &'static str,
        got: String,
    },
    #[error("{0} must be valid UTF-8 text")]
    NotUtf8(&'static str),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is {size} bytes, over redsink.max-payload-bytes ({limit})")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("JSON is nested deeper than redsink.max-depth ({limit})")]
    TooDeep { limit: usize },
    #[error("JSON has {count} fields, over redsink.max-fields ({limit})")]
    TooManyFields { count: usize, limit: usize },
    #[error("the JSON value must be an object, got {0}")]
    NotAnObject(&'static str),
    #[error("invalid cursor")]
    BadCursor,
    #[error("stored record of device '{0}' is not valid JSON; delete the device with DS.DEL")]
    CorruptRecord(String),
}

pub type Result<T> = std::result::Result<T, Error>;
