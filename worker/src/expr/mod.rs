//! Expressions in job files, each in its own language (RDI's `language:`): compiled once
//! at start, evaluated on every row. [`Expr`] is what the rest of the worker holds; a
//! language is a variant of [`Language`] and of the compiled form ([`jmespath`],
//! [`sql`]), so another goes in beside them without touching the callers.

mod jmespath;
mod sql;

use std::cell::OnceCell;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The languages an expression can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    JmesPath,
    /// SQLite's SQL, run by SQLite.
    Sql,
}

impl Language {
    /// Every language by the name a job file gives it (matched without case).
    const NAMES: [(&'static str, Language); 2] =
        [("jmespath", Language::JmesPath), ("sql", Language::Sql)];

    pub fn from_name(name: &str) -> Result<Language> {
        Language::NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, language)| *language)
            .ok_or_else(|| {
                let known: Vec<&str> = Language::NAMES.iter().map(|(name, _)| *name).collect();
                Error::Invalid(format!(
                    "expression language '{name}' is not supported (use {})",
                    known.join(" or ")
                ))
            })
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::JmesPath => "JMESPath",
            Language::Sql => "SQL",
        })
    }
}

/// A compiled expression, with its text for messages.
pub struct Expr {
    text: String,
    compiled: Compiled,
}

enum Compiled {
    JmesPath(jmespath::Compiled),
    /// Boxed: a connection and its statements, much larger than the other forms.
    Sql(Box<sql::Compiled>),
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({} {:?})", self.language(), self.text)
    }
}

impl Expr {
    pub fn compile(text: &str, language: Language) -> Result<Expr> {
        let invalid = |reason: String| Error::Expression {
            language,
            expression: text.to_owned(),
            reason,
        };
        let compiled = match language {
            Language::JmesPath => Compiled::JmesPath(jmespath::compile(text).map_err(invalid)?),
            Language::Sql => Compiled::Sql(Box::new(sql::compile(text).map_err(invalid)?)),
        };
        Ok(Expr {
            text: text.to_owned(),
            compiled,
        })
    }

    /// A JMESPath expression (the language RDI reads where a job names none).
    pub fn jmespath(text: &str) -> Result<Expr> {
        Expr::compile(text, Language::JmesPath)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn language(&self) -> Language {
        match self.compiled {
            Compiled::JmesPath(_) => Language::JmesPath,
            Compiled::Sql(_) => Language::Sql,
        }
    }

    /// The expression's value on a row.
    pub fn eval(&self, input: &Input) -> Result<Value> {
        match &self.compiled {
            Compiled::JmesPath(compiled) => compiled.eval(input),
            Compiled::Sql(compiled) => compiled.eval(input),
        }
        .map_err(|reason| self.failed(reason))
    }

    /// Whether the expression holds on a row (by its language's idea of truth), for
    /// filters.
    pub fn matches(&self, input: &Input) -> Result<bool> {
        match &self.compiled {
            Compiled::JmesPath(compiled) => compiled.matches(input),
            Compiled::Sql(compiled) => compiled.matches(input),
        }
        .map_err(|reason| self.failed(reason))
    }

    fn failed(&self, reason: Failure) -> Error {
        match reason {
            Failure::Expression(reason) => Error::Expression {
                language: self.language(),
                expression: self.text.clone(),
                reason,
            },
            Failure::Row(reason) => Error::Event(reason),
        }
    }
}

/// Why an evaluation failed: the expression cannot be applied, or the row cannot be read.
#[derive(Debug)]
enum Failure {
    Expression(String),
    Row(String),
}

/// A row as expressions read it, with each language's own form of it made on first need
/// and shared by every expression of that language (most key expressions read the row
/// directly, and a conversion costs more than they do).
pub struct Input<'a> {
    row: &'a Map<String, Value>,
    jmespath: OnceCell<jmespath::Searchable>,
}

impl<'a> Input<'a> {
    pub fn new(row: &'a Map<String, Value>) -> Self {
        Input {
            row,
            jmespath: OnceCell::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn languages_by_name() {
        assert_eq!(Language::from_name("JMESPath").unwrap(), Language::JmesPath);
        assert_eq!(Language::from_name("SQL").unwrap(), Language::Sql);
        assert_eq!(
            Language::from_name("python").unwrap_err().to_string(),
            "expression language 'python' is not supported (use jmespath or sql)"
        );
    }

    #[test]
    fn errors_name_the_language_and_the_expression() {
        let error = Expr::jmespath("concat(['a', ").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid JMESPath expression 'concat(['a', '"),
            "{error}"
        );
        let json = json!({"a": {"b": 1}});
        let Value::Object(row) = &json else {
            unreachable!()
        };
        let failed = Expr::jmespath("concat([a])")
            .unwrap()
            .eval(&Input::new(row))
            .unwrap_err();
        assert!(
            failed
                .to_string()
                .starts_with("invalid JMESPath expression 'concat([a])': "),
            "{failed}"
        );
    }
}
