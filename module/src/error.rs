//! The module's one error type. Every failure of a command ends here and becomes exactly
//! one Redis error reply.

use redis_module::RedisError;
use redsink_core::args::printable;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] redsink_core::Error),
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("key already exists")]
    KeyExists,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such device stream; create it first with DS.CREATE")]
    NoStream,
    /// ACL refused the command: the message after `NOPERM`.
    #[error("NOPERM {0}")]
    NoPermission(String),
    /// An error already in Redis's form (WRONGTYPE and the like).
    #[error("{0}")]
    Redis(RedisError),
}

impl From<RedisError> for Error {
    fn from(error: RedisError) -> Self {
        Error::Redis(error)
    }
}

impl Error {
    /// The reply for this error. (Not a `From` impl: redis-module already converts every
    /// `std::error::Error` to `ERR <message>`, which would lose Redis's own arity and
    /// WRONGTYPE replies.)
    pub fn into_redis(self) -> RedisError {
        match self {
            Error::Core(redsink_core::Error::WrongArity) => RedisError::WrongArity,
            Error::WrongType => RedisError::WrongType,
            Error::Redis(error) => error,
            Error::NoPermission(_) => RedisError::String(printable(self.to_string())),
            other => RedisError::String(printable(format!("ERR {other}"))),
        }
    }
}
