//! SQL expressions as RDI job files write them (`language: sql`): SQLite's dialect, run
//! by SQLite itself. The row's columns are the expression's identifiers.
//!
//! An expression is compiled by asking SQLite to prepare it: each column it names that
//! SQLite does not know yet ("no such column: x") becomes a parameter of the statement,
//! until the statement prepares — so the columns an expression reads are found by SQLite's
//! own parser, a syntax error or an unknown function is an error at start, and each event
//! binds only those columns. Values bind as SQLite types them (text, integer, real,
//! null; arrays and objects as JSON text; integers beyond 64 bits as their digits), and
//! results come back as SQLite typed them.
//!
//! Rows are not trusted: a value can make an expression build long text or loop, so each
//! connection limits a value's length and each evaluation's steps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::{Failure, Input};

/// A compiled SQL expression.
pub struct Compiled {
    /// `SELECT (expression) FROM (SELECT ?1 AS "a", ?2 AS "b", …)`.
    value: String,
    /// The same as a condition: 1 where `WHERE` would keep the row, else 0.
    condition: String,
    /// The columns it reads, in parameter order.
    columns: Vec<String>,
    /// SQLite's connections are not shared between threads; the statements are kept
    /// prepared in its cache.
    connection: Mutex<Connection>,
    /// Progress calls left to the evaluation in hand (see [`MAX_PROGRESS_CALLS`]).
    budget: Arc<AtomicU32>,
}

/// Columns an expression may name (a bound on the compile loop).
const MAX_COLUMNS: usize = 1000;
/// The longest text or blob an expression may make.
const MAX_VALUE_BYTES: i32 = 16 << 20;
/// SQLite's virtual machine steps between progress calls, and the calls an evaluation may
/// take: ten million steps, far beyond any expression over one row.
const STEPS_PER_PROGRESS_CALL: i32 = 10_000;
const MAX_PROGRESS_CALLS: u32 = 1_000;

pub fn compile(text: &str) -> Result<Compiled, String> {
    let connection = connection().map_err(|e| message(&e))?;
    let mut columns: Vec<String> = Vec::new();
    loop {
        let value = statement(&format!("({text}\n)"), &columns);
        let error = match connection.prepare(&value).map(drop) {
            Ok(()) => {
                let condition = statement(
                    &format!("(CASE WHEN ({text}\n) THEN 1 ELSE 0 END)"),
                    &columns,
                );
                connection.prepare(&condition).map_err(|e| message(&e))?;
                let budget = Arc::new(AtomicU32::new(MAX_PROGRESS_CALLS));
                let left = Arc::clone(&budget);
                connection.progress_handler(
                    STEPS_PER_PROGRESS_CALL,
                    Some(move || {
                        // Interrupts the evaluation once its calls are spent.
                        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            n.checked_sub(1)
                        })
                        .is_err()
                    }),
                );
                return Ok(Compiled {
                    value,
                    condition,
                    columns,
                    connection: Mutex::new(connection),
                    budget,
                });
            }
            Err(error) => error,
        };
        match unknown_column(&error) {
            Some(column) if columns.len() < MAX_COLUMNS && !columns.contains(&column) => {
                columns.push(column)
            }
            _ => return Err(message(&error)),
        }
    }
}

/// An in-memory connection for expressions: double-quoted names are names (never text,
/// as SQLite's old leniency would read an unknown one), and values are held to
/// [`MAX_VALUE_BYTES`].
fn connection() -> rusqlite::Result<Connection> {
    let connection = Connection::open_in_memory()?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)?;
    Ok(connection)
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

/// The column an error says SQLite does not know: `no such column: x`, or for a quoted
/// name `no such column: "x" - should this be a string literal in single-quotes?`.
fn unknown_column(error: &rusqlite::Error) -> Option<String> {
    let (rusqlite::Error::SqlInputError { msg, .. } | rusqlite::Error::SqliteFailure(_, Some(msg))) =
        error
    else {
        return None;
    };
    let name = msg.strip_prefix("no such column: ")?;
    let Some(quoted) = name.strip_prefix('"') else {
        return Some(name.to_owned());
    };
    // Up to the closing quote; a doubled quote is one quote of the name.
    let mut unquoted = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                unquoted.push('"');
            }
            '"' => return Some(unquoted),
            _ => unquoted.push(c),
        }
    }
    None
}

/// What the statement puts before the expression.
const PREFIX: &str = "SELECT (";

/// The statement that selects `expression` (in parentheses, its last line ended, so that
/// a trailing `--` comment stays a comment) over `columns` bound as parameters.
fn statement(expression: &str, columns: &[String]) -> String {
    let mut statement = format!("SELECT {expression}");
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
        self.run(&self.value, input.row, json_of)
    }

    /// Whether `WHERE` would keep the row (SQLite decides what is true).
    pub fn matches(&self, input: &Input) -> Result<bool, Failure> {
        self.run(&self.condition, input.row, |value| {
            matches!(value, ValueRef::Integer(1))
        })
    }

    fn run<T>(
        &self,
        statement: &str,
        row: &Map<String, Value>,
        read: impl FnOnce(ValueRef) -> T,
    ) -> Result<T, Failure> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.budget.store(MAX_PROGRESS_CALLS, Ordering::Relaxed);
        let mut statement = connection
            .prepare_cached(statement)
            .map_err(|e| Failure::Expression(message(&e)))?;
        let parameters: Vec<SqlValue> = self
            .columns
            .iter()
            .map(|column| sql_of(column_value(row, column)))
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
        Ok(read(value))
    }
}

/// A column of the row as SQL names it: the column of that name, else of that name in
/// another case (SQLite's names ignore case; a row's keys do not).
fn column_value<'a>(row: &'a Map<String, Value>, column: &str) -> &'a Value {
    row.get(column)
        .or_else(|| {
            row.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(column))
                .map(|(_, value)| value)
        })
        .unwrap_or(&Value::Null)
}

/// A JSON value as SQLite takes it.
fn sql_of(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(flag) => SqlValue::Integer(i64::from(*flag)),
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(integer), _) => SqlValue::Integer(integer),
            // Beyond SQLite's integers: its exact digits, as text.
            (None, Some(_)) => SqlValue::Text(number.to_string()),
            _ => SqlValue::Real(number.as_f64().unwrap_or(f64::NAN)),
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
