//! JMESPath as RDI job files use it, with RDI's own functions ([`functions`]) and bare
//! backtick literals read as strings.
//!
//! A row is converted to a JMESPath variable once, on first need, and every JMESPath
//! expression of every job searches that same variable; the shapes key expressions
//! nearly always take skip the conversion ([`Direct`]).

use std::sync::{Arc, LazyLock};

use jmespath::{JmespathError, Rcvar, Runtime, Variable};
use serde_json::{Map, Value};

use super::{Failure, Input};

mod functions;
mod xml;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    functions::register(&mut runtime);
    runtime
});

/// A compiled JMESPath expression.
pub struct Compiled {
    compiled: jmespath::Expression<'static>,
    /// The same, when it is one of the shapes key expressions nearly always take.
    direct: Option<Direct>,
}

/// A row as JMESPath input.
pub type Searchable = Rcvar;

pub fn compile(text: &str) -> std::result::Result<Compiled, String> {
    let compiled = RUNTIME
        .compile(&quote_bare_literals(text))
        .map_err(|e| e.to_string())?;
    let direct = Direct::of(compiled.as_ast());
    Ok(Compiled { compiled, direct })
}

impl Compiled {
    /// The value on a row: directly where the expression allows, else through JMESPath.
    pub fn eval(&self, input: &Input) -> std::result::Result<Value, Failure> {
        if let Some(value) = self
            .direct
            .as_ref()
            .and_then(|direct| direct.eval(input.row))
        {
            return Ok(value);
        }
        let found = self.search(input)?;
        serde_json::to_value(&*found).map_err(|e| Failure::Row(e.to_string()))
    }

    /// Whether the value on a row is truthy (JMESPath's rules).
    pub fn matches(&self, input: &Input) -> std::result::Result<bool, Failure> {
        Ok(self.search(input)?.is_truthy())
    }

    fn search(&self, input: &Input) -> std::result::Result<Rcvar, Failure> {
        let searchable = match input.jmespath.get() {
            Some(searchable) => searchable,
            None => {
                let made = searchable(input.row).map_err(Failure::Row)?;
                input.jmespath.get_or_init(|| made)
            }
        };
        self.compiled
            .search(searchable)
            .map_err(|e| Failure::Expression(e.to_string()))
    }
}

/// Expressions evaluated on the row itself, without converting it for JMESPath: a field,
/// a literal, or `concat` of literals and fields. They give what JMESPath gives.
#[derive(Debug)]
enum Direct {
    Field(String),
    Literal(Value),
    Concat(Vec<Part>),
}

#[derive(Debug)]
enum Part {
    Text(String),
    Field(String),
}

impl Direct {
    fn of(ast: &jmespath::ast::Ast) -> Option<Direct> {
        use jmespath::ast::Ast;
        let part = |ast: &Ast| match ast {
            Ast::Field { name, .. } => Some(Part::Field(name.clone())),
            Ast::Literal { value, .. } => functions::text_of(value).map(Part::Text),
            _ => None,
        };
        match ast {
            Ast::Field { name, .. } => Some(Direct::Field(name.clone())),
            Ast::Literal { value, .. } => serde_json::to_value(&**value).ok().map(Direct::Literal),
            Ast::Function { name, args, .. } if name == "concat" => {
                let items = match args.as_slice() {
                    [Ast::MultiList { elements, .. }] => elements.as_slice(),
                    [Ast::Field { .. } | Ast::Literal { .. }, ..] => args.as_slice(),
                    _ => return None,
                };
                items
                    .iter()
                    .map(part)
                    .collect::<Option<Vec<_>>>()
                    .map(Direct::Concat)
            }
            _ => None,
        }
    }

    /// The value on `row`, or `None` where JMESPath must decide (a field holding an
    /// array or object).
    fn eval(&self, row: &Map<String, Value>) -> Option<Value> {
        match self {
            Direct::Field(name) => Some(row.get(name).cloned().unwrap_or(Value::Null)),
            Direct::Literal(value) => Some(value.clone()),
            Direct::Concat(parts) => {
                let mut joined = String::new();
                for part in parts {
                    match part {
                        Part::Text(text) => joined.push_str(text),
                        Part::Field(name) => match row.get(name) {
                            None | Some(Value::Null) => return Some(Value::Null),
                            Some(Value::String(text)) => joined.push_str(text),
                            Some(value @ (Value::Number(_) | Value::Bool(_))) => {
                                joined.push_str(&value.to_string())
                            }
                            Some(_) => return None,
                        },
                    }
                }
                Some(Value::String(joined))
            }
        }
    }
}

/// Rewrites `` `invoice:events` `` as `` `"invoice:events"` ``: a backtick literal that is
/// not JSON is a string, as jmespath.py (and so RDI, whose examples rely on it) reads it.
/// The jmespath crate follows the stricter current spec and would refuse it.
fn quote_bare_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        out.push_str(&rest[..open]);
        let body_start = &rest[open + 1..];
        // The literal runs to the next backtick not escaped with a backslash.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in body_start.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '`' if !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            // Unclosed: leave it to the parser to report.
            out.push_str(&rest[open..]);
            return out;
        };
        let body = body_start[..close].replace("\\`", "`");
        out.push('`');
        if serde_json::from_str::<Value>(&body).is_ok() {
            out.push_str(&body_start[..close]);
        } else {
            let quoted = Value::String(body.trim().to_owned()).to_string();
            out.push_str(&quoted.replace('`', "\\`"));
        }
        out.push('`');
        rest = &body_start[close + 1..];
    }
    out.push_str(rest);
    out
}

fn searchable(row: &Map<String, Value>) -> std::result::Result<Rcvar, String> {
    let variable = Variable::Object(
        row.iter()
            .map(|(name, value)| Ok((name.clone(), Arc::new(variable_of(value)?))))
            .collect::<std::result::Result<_, String>>()?,
    );
    Ok(Arc::new(variable))
}

fn variable_of(value: &Value) -> std::result::Result<Variable, String> {
    value
        .try_into()
        .map_err(|e: JmespathError| format!("cannot search this event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(row) => row,
            _ => unreachable!("rows are objects"),
        }
    }

    /// The value through JMESPath itself, never directly.
    fn searched(compiled: &Compiled, row: &Map<String, Value>) -> Option<Value> {
        let found = compiled.search(&Input::new(row)).ok()?;
        serde_json::to_value(&*found).ok()
    }

    fn eval(expression: &str, data: Value) -> Value {
        searched(&compile(expression).unwrap(), &row(data)).unwrap()
    }

    #[test]
    fn direct_evaluation_gives_what_jmespath_gives() {
        let rows = [
            json!({"InvoiceId": 98, "Name": "x", "Flag": true, "Total": 3.5}),
            json!({"InvoiceId": "A-1", "Name": null}),
            json!({"InvoiceId": [1, 2], "Name": {"a": 1}}),
            json!({}),
        ];
        for text in [
            "InvoiceId",
            "Name",
            "`invoice:events`",
            "'raw'",
            "concat(['invoice:', InvoiceId])",
            "concat(['a', Name, ':', Flag, Total])",
            "concat('x', InvoiceId)",
        ] {
            let compiled = compile(text).unwrap();
            assert!(compiled.direct.is_some(), "{text} is evaluated directly");
            for data in &rows {
                let row = row(data.clone());
                let direct = compiled.eval(&Input::new(&row)).ok();
                assert_eq!(direct, searched(&compiled, &row), "{text} on {data}");
            }
        }
        assert!(compile("a.b").unwrap().direct.is_none());
        assert!(compile("lower(a)").unwrap().direct.is_none());
    }

    #[test]
    fn rdi_key_expressions() {
        assert_eq!(eval("`invoice:events`", json!({})), json!("invoice:events"));
        assert_eq!(
            eval("concat(['invoice:', InvoiceId])", json!({"InvoiceId": 98})),
            json!("invoice:98")
        );
        assert_eq!(
            eval("concat(['a', b, c])", json!({"b": "x", "c": true})),
            json!("axtrue")
        );
        assert_eq!(
            eval("concat(['invoice:', InvoiceId])", json!({"Other": 1})),
            json!(null)
        );
        assert_eq!(eval("concat('a', 'b')", json!({})), json!("ab"));
        assert_eq!(eval("upper(name)", json!({"name": "ann"})), json!("ANN"));
        assert_eq!(eval("lower(name)", json!({"name": "ANN"})), json!("ann"));
        assert_eq!(
            eval("replace(s, '-', '_')", json!({"s": "a-b"})),
            json!("a_b")
        );
        assert_eq!(
            eval("split(s, ',')", json!({"s": "a,b"})),
            json!(["a", "b"])
        );
        assert_eq!(
            eval("json_parse(s).x", json!({"s": "{\"x\": 1}"})),
            json!(1)
        );
        assert_eq!(eval("missing", json!({})), json!(null));
    }

    #[test]
    fn bare_literals_are_strings_as_in_rdi() {
        assert_eq!(
            quote_bare_literals("`invoice:events`"),
            "`\"invoice:events\"`"
        );
        assert_eq!(quote_bare_literals("`5`"), "`5`");
        assert_eq!(quote_bare_literals("`\"a\"`"), "`\"a\"`");
        assert_eq!(
            quote_bare_literals("concat([`a`, b])"),
            "concat([`\"a\"`, b])"
        );
        assert_eq!(quote_bare_literals("`{\"x\": 1}`"), "`{\"x\": 1}`");
        assert_eq!(eval("`a\\`b`", json!({})), json!("a`b"));
        assert_eq!(quote_bare_literals("`unclosed"), "`unclosed");
    }

    #[test]
    fn bad_arguments() {
        let nested = row(json!({"a": {"b": 1}}));
        assert!(compile("concat([a])")
            .unwrap()
            .eval(&Input::new(&nested))
            .is_err());
        assert!(compile("split(a, '')")
            .is_ok_and(|split| split.eval(&Input::new(&row(json!({"a": "x"})))).is_err()));
    }

    #[test]
    fn filters_use_truthiness() {
        let filter = compile("Total > `5`").unwrap();
        let matches = |data| filter.matches(&Input::new(&row(data))).ok();
        assert_eq!(matches(json!({"Total": 6})), Some(true));
        assert_eq!(matches(json!({"Total": 4})), Some(false));
        assert_eq!(matches(json!({})), Some(false));
    }
}
