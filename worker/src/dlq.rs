//! Dead letters: listed, and put back where they came from once their cause is fixed
//! (`redsink-worker dlq list | replay`). A dead letter holds `source`, `at`, `error` and
//! `deliveries`, then the change's own fields, which replay it as they are: onto the
//! stream it came from, or — for a PostgreSQL source — onto the stream a `redis-stream`
//! source with the same jobs reads (`<stream_prefix><server_name>.<schema>.<table>`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, Connection, Source, Streams};
use crate::connect::{connect, Redis};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pipeline::Fields;
use crate::run::target_connection;
use crate::source::redis_stream::matching_streams;

/// A source's dead-letter stream, and where its letters go back.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    /// The dead-letter stream, and the connection it is on (where the source writes).
    pub dlq: String,
    pub connection: String,
    /// The source's name as the letters give it: a stream, or `postgres:<server_name>`.
    pub source: String,
    /// The stream a letter goes back to, and its connection; `None` for a PostgreSQL
    /// source (each letter names its own table's stream).
    pub origin: Option<(String, String)>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub id: String,
    pub source: String,
    pub at: String,
    pub error: String,
    pub deliveries: String,
    /// The change's own fields.
    #[serde(skip)]
    pub fields: Fields,
}

/// The dead-letter streams of `config`'s sources (those a `name` — a dead-letter stream,
/// a source stream or `postgres:<server_name>` — names, if given).
pub async fn dead_letter_streams(
    config: &Config,
    jobs: &[Arc<Job>],
    cons: &mut BTreeMap<String, Redis>,
    name: Option<&str>,
) -> Result<Vec<DeadLetters>> {
    let dlq = |source: &str| config.processors.dlq_stream.replace("{stream}", source);
    let mut found = Vec::new();
    for source in &config.sources {
        match source {
            Source::RedisStream(settings) => {
                let target = target_connection(config, jobs, &settings.connection)?;
                let con = connection(cons, &settings.connection)?;
                for stream in matching_streams(con, &settings.streams).await? {
                    found.push(DeadLetters {
                        dlq: dlq(&stream),
                        connection: target.clone(),
                        source: stream.clone(),
                        origin: Some((stream, settings.connection.clone())),
                    });
                }
            }
            Source::Postgres(settings) => {
                let source = settings.name();
                found.push(DeadLetters {
                    dlq: dlq(&source),
                    connection: settings.connection.clone(),
                    source,
                    origin: None,
                });
            }
        }
    }
    found.retain(|letters| name.is_none_or(|name| name == letters.dlq || name == letters.source));
    Ok(found)
}

/// Every connection of the configuration, opened once each, by name.
pub async fn open_connections(config: &Config) -> Result<BTreeMap<String, Redis>> {
    let mut cons = BTreeMap::new();
    for (name, Connection::Redis(settings)) in &config.connections {
        cons.insert(name.clone(), connect(name, settings, false).await?);
    }
    Ok(cons)
}

fn connection<'a>(cons: &'a mut BTreeMap<String, Redis>, name: &str) -> Result<&'a mut Redis> {
    cons.get_mut(name).ok_or_else(|| {
        Error::Invalid(format!(
            "connection '{name}' is not defined under connections"
        ))
    })
}

/// The letters of a dead-letter stream, oldest first.
pub async fn letters(con: &mut Redis, dlq: &str) -> Result<Vec<Letter>> {
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(dlq)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await?;
    Ok(entries
        .into_iter()
        .map(|(id, fields)| letter(id, fields))
        .collect())
}

/// A dead-letter entry: its four header fields, then the change's own.
fn letter(id: String, mut fields: Fields) -> Letter {
    let header = |fields: &Fields, name: &str| -> String {
        fields
            .iter()
            .take(4)
            .find(|(field, _)| field == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default()
    };
    let (source, at, error, deliveries) = (
        header(&fields, "source"),
        header(&fields, "at"),
        header(&fields, "error"),
        header(&fields, "deliveries"),
    );
    let own = fields.split_off(4.min(fields.len()));
    Letter {
        id,
        source,
        at,
        error,
        deliveries,
        fields: own,
    }
}

/// The stream `letter` goes back to: its source's, or for a PostgreSQL source its table's
/// (from the Debezium event it holds as `value`).
pub fn replay_stream(
    letters: &DeadLetters,
    letter: &Letter,
    stream_prefix: &str,
) -> Result<String> {
    if let Some((stream, _)) = &letters.origin {
        return Ok(stream.clone());
    }
    let server = letters.source.trim_start_matches("postgres:");
    let value = letter
        .fields
        .iter()
        .find(|(field, _)| field == b"value")
        .and_then(|(_, value)| serde_json::from_slice::<serde_json::Value>(value).ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "dead letter {} holds no change event (a message that did not decode): it cannot be replayed",
                letter.id
            ))
        })?;
    let part = |name: &str| value["source"][name].as_str().map(str::to_owned);
    match (part("schema"), part("table")) {
        (Some(schema), Some(table)) => Ok(format!("{stream_prefix}{server}.{schema}.{table}")),
        _ => Err(Error::Invalid(format!(
            "dead letter {}: its event names no schema and table",
            letter.id
        ))),
    }
}

/// Whether a `redis-stream` source of `config` reads `stream` on `connection` (a
/// replayed PostgreSQL change is applied only if one does).
pub fn is_read(config: &Config, stream: &str, connection: &str) -> bool {
    config.sources.iter().any(|source| match source {
        Source::RedisStream(settings) if settings.connection == connection => {
            match &settings.streams {
                Streams::Keys(keys) => keys.iter().any(|key| key == stream),
                Streams::Pattern(pattern) => {
                    redsink_core::glob::matches(pattern.as_bytes(), stream.as_bytes())
                }
            }
        }
        _ => false,
    })
}

/// Removes the letter (KEYS[1], ARGV[1]) and, only if it was there, adds its fields
/// (ARGV[2..]) to the stream (KEYS[2]): the new entry's id, or nil.
const REPLAY_SCRIPT: &str = "if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then \
     return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2)) end return false";

/// Puts `letter` back on `stream` and removes it from `dlq`. On one server (not a
/// cluster, where the two keys are in different slots) both happen at once in a script
/// that adds only what it removed: replays run twice, or at the same time, re-queue
/// nothing twice. Returns the new entry's id; `None` if another replay took the letter.
pub async fn replay(
    dlq_con: &mut Redis,
    stream_con: Option<&mut Redis>,
    dlq: &str,
    letter: &Letter,
    stream: &str,
) -> Result<Option<String>> {
    if stream_con.is_none() && !dlq_con.is_cluster() {
        let mut script = redis::cmd("EVAL");
        script
            .arg(REPLAY_SCRIPT)
            .arg(2)
            .arg(dlq)
            .arg(stream)
            .arg(&letter.id);
        for (field, value) in &letter.fields {
            script.arg(field).arg(value);
        }
        return Ok(script.query_async(dlq_con).await?);
    }
    let mut add = redis::cmd("XADD");
    add.arg(stream).arg("*");
    for (field, value) in &letter.fields {
        add.arg(field).arg(value);
    }
    let mut remove = redis::cmd("XDEL");
    remove.arg(dlq).arg(&letter.id);
    // Two servers, or a cluster: added first, then removed (a crash between, or another
    // replay at the same time, can re-queue it once more; nothing is lost).
    let id: String = add.query_async(stream_con.unwrap_or(dlq_con)).await?;
    remove.query_async::<i64>(dlq_con).await?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn letters_split_into_header_and_change() {
        let entry = fields(&[
            ("source", "postgres:chinook"),
            ("at", "lsn 42"),
            ("error", "no key"),
            ("deliveries", "5"),
            (
                "value",
                r#"{"op":"c","source":{"schema":"public","table":"invoice"}}"#,
            ),
        ]);
        let letter = letter("1-0".into(), entry);
        assert_eq!(
            (letter.source.as_str(), letter.deliveries.as_str()),
            ("postgres:chinook", "5")
        );
        assert_eq!(letter.fields.len(), 1);
        let postgres = DeadLetters {
            dlq: "dlq:postgres:chinook".into(),
            connection: "target".into(),
            source: "postgres:chinook".into(),
            origin: None,
        };
        assert_eq!(
            replay_stream(&postgres, &letter, "data:").unwrap(),
            "data:chinook.public.invoice"
        );
        let undecoded = super::letter(
            "2-0".into(),
            fields(&[
                ("source", "s"),
                ("at", "a"),
                ("error", "e"),
                ("deliveries", "1"),
                ("pgoutput", "x"),
            ]),
        );
        assert!(replay_stream(&postgres, &undecoded, "data:").is_err());
    }
}
