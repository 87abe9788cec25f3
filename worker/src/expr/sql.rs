//! SQL expressions as RDI job files write them (`language: sql`): SQLite's dialect, run
//! by SQLite itself. The row's columns are the expression's identifiers.
//!
//! An expression is compiled by asking SQLite to prepare it: each column it names that
//! SQLite does not know yet ("no such column: x") becomes a parameter of the statement,
//! until the statement prepares — so the columns an expression reads are found by SQLite's
//! own parser, a syntax error or an unknown function is an error at start, and each event
//! binds only those columns. Values bind as SQLite types them (text, integer, real,
//! null; arrays and objects as JSON text), and results come back as SQLite typed them.

use std::sync::Mutex;

use base64::Engine;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::{Failure, Input};

/// A compiled SQL expression.
pub struct Compiled {
    /// The statement: `SELECT (expression) FROM (SELECT ?1 AS "a", ?2 AS "b", …)`.
    statement: String,
    /// The columns it reads, in parameter order.
    columns: Vec<String>,
    /// SQLite's connections are not shared between threads; the statement is kept
    /// prepared in its cache.
    connection: Mutex<Connection>,
}

/// Columns an expression may name (a bound on the compile loop).
const MAX_COLUMNS: usize = 1000;

pub fn compile(text: &str) -> Result<Compiled, String> {
    let connection = Connection::open_in_memory().map_err(|e| e.to_string())?;
    let mut columns: Vec<String> = Vec::new();
    loop {
        let statement = statement(text, &columns);
        let error = match connection.prepare(&statement).map(drop) {
            Ok(()) => {
                return Ok(Compiled {
                    statement,
                    columns,
                    connection: Mutex::new(connection),
                })
            }
            Err(error) => error,
        };
        match unknown_column(&error) {
            Some(column) if columns.len() < MAX_COLUMNS && !columns.iter().any(|c| c == column) => {
                columns.push(column.to_owned())
            }
            _ => return Err(message(&error)),
        }
    }
}

/// SQLite's own message for an error, without the statement it was in (which is ours),
/// with where in the expression it was.
fn message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            let at = usize::try_from(*offset)
                .unwrap_or(0)
                .saturating_sub(PREFIX.len());
            format!("{msg} (at character {at})")
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

/// The column an error says SQLite does not know.
fn unknown_column(error: &rusqlite::Error) -> Option<&str> {
    match error {
        rusqlite::Error::SqlInputError { msg, .. }
        | rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.strip_prefix("no such column: "),
        _ => None,
    }
}

/// What the statement puts before the expression.
const PREFIX: &str = "SELECT (";

/// The statement that evaluates `expression` over `columns` bound as parameters.
fn statement(expression: &str, columns: &[String]) -> String {
    let mut statement = format!("{PREFIX}{expression})");
    if !columns.is_empty() {
        let bound: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| format!("?{} AS \"{}\"", i + 1, column.replace('"', "\"\"")))
            .collect();
        statement.push_str(&format!(" FROM (SELECT {})", bound.join(", ")));
    }
    statement
}

impl Compiled {
    /// The value on a row.
    pub fn eval(&self, input: &Input) -> Result<Value, Failure> {
        self.run(input.row, |value| Ok(json_of(value)))
    }

    /// Whether the value on a row is true as SQL's WHERE takes it (non-zero; NULL is not).
    pub fn matches(&self, input: &Input) -> Result<bool, Failure> {
        self.run(input.row, |value| {
            Ok(match value {
                ValueRef::Integer(number) => number != 0,
                ValueRef::Real(number) => number != 0.0,
                ValueRef::Text(text) => String::from_utf8_lossy(text)
                    .trim()
                    .parse::<f64>()
                    .is_ok_and(|number| number != 0.0),
                ValueRef::Null | ValueRef::Blob(_) => false,
            })
        })
    }

    fn run<T>(
        &self,
        row: &Map<String, Value>,
        read: impl FnOnce(ValueRef) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut statement = connection
            .prepare_cached(&self.statement)
            .map_err(|e| Failure::Expression(message(&e)))?;
        let parameters: Vec<SqlValue> = self
            .columns
            .iter()
            .map(|column| sql_of(row.get(column).unwrap_or(&Value::Null)))
            .collect();
        let mut rows = statement
            .query(rusqlite::params_from_iter(parameters))
            .map_err(|e| Failure::Expression(message(&e)))?;
        let found = rows
            .next()
            .map_err(|e| Failure::Expression(message(&e)))?
            .ok_or_else(|| Failure::Expression("no value".into()))?;
        let value = found
            .get_ref(0)
            .map_err(|e| Failure::Expression(message(&e)))?;
        read(value)
    }
}

/// A JSON value as SQLite takes it.
fn sql_of(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(flag) => SqlValue::Integer(i64::from(*flag)),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => SqlValue::Integer(integer),
            None => SqlValue::Real(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => SqlValue::Text(text.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// A value SQLite gives as JSON: integers and reals as numbers, text as a string, a blob
/// as base64, NULL as null.
fn json_of(value: ValueRef) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(number) => Value::from(number),
        ValueRef::Real(number) => {
            serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
        }
        ValueRef::Text(text) => Value::String(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}
