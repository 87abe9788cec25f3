//! The worker's one error type: each message says what is wrong and where.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
    /// What the configuration, or the setup of a server it names, gets wrong: retrying
    /// cannot mend it (a PostgreSQL source stops on it until it has worked once).
    #[error("{0}")]
    Config(String),
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("{file}: {error}")]
    InFile { file: PathBuf, error: Box<Error> },
    #[error("invalid {language} expression '{expression}': {reason}")]
    Expression {
        language: crate::expr::Language,
        expression: String,
        reason: String,
    },
    #[error("{0}")]
    Event(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Planning needs lookups not made yet (the pipeline makes them and plans again).
    #[error("lookups not made yet")]
    LookupsPending,
    #[error("postgres: {}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres replication: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
}

impl Error {
    /// This error, said to be about `file`.
    pub fn in_file(self, file: &std::path::Path) -> Error {
        Error::InFile {
            file: file.to_owned(),
            error: Box::new(self),
        }
    }
}

/// A PostgreSQL error with the server's own message (tokio-postgres's `Display` says
/// only "db error") or the cause of a connection failure.
pub fn describe_postgres(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(hint) = db.hint() {
            text += &format!(" (hint: {hint})");
        }
        return text;
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;
