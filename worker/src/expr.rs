//! JMESPath expressions as RDI job files use them: compiled once at start, with RDI's
//! extra functions (`concat`, `lower`, `upper`, `replace`, `split`, `json_parse`).
//!
//! An event is converted to a JMESPath variable once ([`input`]) and every expression of
//! every job searches that same variable.

use std::sync::{Arc, LazyLock};

use jmespath::{Context, ErrorReason, JmespathError, Rcvar, Runtime, RuntimeError, Variable};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    runtime.register_function("concat", Box::new(concat));
    runtime.register_function(
        "lower",
        Box::new(|args: &[Rcvar], ctx: &mut Context<'_>| map_text(args, ctx, str::to_lowercase)),
    );
    runtime.register_function(
        "upper",
        Box::new(|args: &[Rcvar], ctx: &mut Context<'_>| map_text(args, ctx, str::to_uppercase)),
    );
    runtime.register_function("replace", Box::new(replace));
    runtime.register_function("split", Box::new(split));
    runtime.register_function("json_parse", Box::new(json_parse));
    runtime
});

/// A compiled expression, with its text for messages.
pub struct Expr {
    text: String,
    compiled: jmespath::Expression<'static>,
    /// The same, when it is one of the shapes key expressions nearly always take.
    direct: Option<Direct>,
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
            Ast::Literal { value, .. } => text_of(value).map(Part::Text),
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

/// A row and, made on first need, its JMESPath form: most key expressions read the row
/// directly ([`Direct`]), and the conversion costs more than they do.
pub struct Input<'a> {
    row: &'a Map<String, Value>,
    searchable: std::cell::OnceCell<Rcvar>,
}

impl<'a> Input<'a> {
    pub fn new(row: &'a Map<String, Value>) -> Self {
        Input {
            row,
            searchable: std::cell::OnceCell::new(),
        }
    }

    fn searchable(&self) -> Result<&Rcvar> {
        if let Some(searchable) = self.searchable.get() {
            return Ok(searchable);
        }
        let made = input_of_map(self.row)?;
        Ok(self.searchable.get_or_init(|| made))
    }
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.text)
    }
}

impl Expr {
    pub fn compile(text: &str) -> Result<Expr> {
        let compiled =
            RUNTIME
                .compile(&quote_bare_literals(text))
                .map_err(|e| Error::Expression {
                    expression: text.to_owned(),
                    reason: e.to_string(),
                })?;
        let direct = Direct::of(compiled.as_ast());
        Ok(Expr {
            text: text.to_owned(),
            compiled,
            direct,
        })
    }

    /// The expression's value on a row: directly where the expression allows, else
    /// through JMESPath.
    pub fn eval(&self, input: &Input) -> Result<Value> {
        if let Some(value) = self
            .direct
            .as_ref()
            .and_then(|direct| direct.eval(input.row))
        {
            return Ok(value);
        }
        self.search(input.searchable()?)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The expression's value on `input` (made by [`input`]).
    pub fn search(&self, input: &Rcvar) -> Result<Value> {
        let found = self.compiled.search(input).map_err(|e| Error::Expression {
            expression: self.text.clone(),
            reason: e.to_string(),
        })?;
        serde_json::to_value(&*found).map_err(|e| Error::Event(e.to_string()))
    }

    /// Whether the expression's value is truthy (JMESPath's rules), for filters.
    pub fn matches(&self, input: &Rcvar) -> Result<bool> {
        let found = self.compiled.search(input).map_err(|e| Error::Expression {
            expression: self.text.clone(),
            reason: e.to_string(),
        })?;
        Ok(found.is_truthy())
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

/// A row as JMESPath input.
fn input_of_map(row: &Map<String, Value>) -> Result<Rcvar> {
    let variable = Variable::Object(
        row.iter()
            .map(|(name, value)| {
                let value: Variable = value.try_into().map_err(|e: JmespathError| {
                    Error::Event(format!("cannot search this event: {e}"))
                })?;
                Ok((name.clone(), Arc::new(value)))
            })
            .collect::<Result<_>>()?,
    );
    Ok(Arc::new(variable))
}

/// `value` as JMESPath input.
pub fn input(value: &Value) -> Result<Rcvar> {
    let variable: Variable = value
        .try_into()
        .map_err(|e: JmespathError| Error::Event(format!("cannot search this event: {e}")))?;
    Ok(Arc::new(variable))
}

fn invalid(ctx: &Context<'_>, message: &str) -> JmespathError {
    JmespathError::from_ctx(
        ctx,
        ErrorReason::Runtime(RuntimeError::InvalidType {
            expected: message.to_owned(),
            actual: "something else".to_owned(),
            position: 0,
        }),
    )
}

/// The text of a scalar: strings as they are, numbers and booleans as JSON, null empty.
fn text_of(value: &Variable) -> Option<String> {
    match value {
        Variable::String(text) => Some(text.clone()),
        Variable::Number(number) => Some(number.to_string()),
        Variable::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `concat([a, b, …])` or `concat(a, b, …)`: the texts of scalars joined; null if any is
/// null, so that `concat(['invoice:', InvoiceId])` on a row without `InvoiceId` is a
/// missing key (an error for that row), not the key `invoice:` shared by all such rows.
fn concat(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let items: Vec<Rcvar> = match args {
        [single] if single.is_array() => single.as_array().cloned().unwrap_or_default(),
        _ => args.to_vec(),
    };
    if items.iter().any(|item| item.is_null()) {
        return Ok(Arc::new(Variable::Null));
    }
    let mut joined = String::new();
    for item in &items {
        joined.push_str(
            &text_of(item)
                .ok_or_else(|| invalid(ctx, "concat takes strings, numbers, booleans or null"))?,
        );
    }
    Ok(Arc::new(Variable::String(joined)))
}

fn map_text(
    args: &[Rcvar],
    ctx: &mut Context<'_>,
    f: fn(&str) -> String,
) -> jmespath::SearchResult {
    match args {
        [value] => match value.as_string() {
            Some(text) => Ok(Arc::new(Variable::String(f(text)))),
            None => Ok(value.clone()),
        },
        _ => Err(invalid(ctx, "one argument")),
    }
}

fn replace(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    match args {
        [text, from, to] => match (text.as_string(), from.as_string(), to.as_string()) {
            (Some(text), Some(from), Some(to)) => {
                Ok(Arc::new(Variable::String(text.replace(from.as_str(), to))))
            }
            _ => Err(invalid(ctx, "replace(string, string, string)")),
        },
        _ => Err(invalid(ctx, "replace(string, string, string)")),
    }
}

fn split(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    match args {
        [text, separator] => match (text.as_string(), separator.as_string()) {
            (Some(text), Some(separator)) if !separator.is_empty() => {
                Ok(Arc::new(Variable::Array(
                    text.split(separator.as_str())
                        .map(|part| Arc::new(Variable::String(part.to_owned())))
                        .collect(),
                )))
            }
            _ => Err(invalid(ctx, "split(string, non-empty string)")),
        },
        _ => Err(invalid(ctx, "split(string, non-empty string)")),
    }
}

fn json_parse(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    match args {
        [text] => match text
            .as_string()
            .map(|text| serde_json::from_str::<Value>(text))
        {
            Some(Ok(value)) => input(&value).map_err(|_| invalid(ctx, "json_parse(JSON text)")),
            _ => Err(invalid(ctx, "json_parse(JSON text)")),
        },
        _ => Err(invalid(ctx, "json_parse(JSON text)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expression: &str, data: Value) -> Value {
        Expr::compile(expression)
            .unwrap()
            .search(&input(&data).unwrap())
            .unwrap()
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
            let expr = Expr::compile(text).unwrap();
            assert!(expr.direct.is_some(), "{text} is evaluated directly");
            for row in &rows {
                let Value::Object(map) = row else {
                    unreachable!()
                };
                let direct = expr.eval(&Input::new(map));
                let searched = expr.search(&input(row).unwrap());
                assert_eq!(direct.ok(), searched.ok(), "{text} on {row}");
            }
        }
        assert!(Expr::compile("a.b").unwrap().direct.is_none());
        assert!(Expr::compile("lower(a)").unwrap().direct.is_none());
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
    fn bad_expressions_and_arguments() {
        let error = Expr::compile("concat(['a', ").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid JMESPath expression 'concat(['a', '"),
            "{error}"
        );
        let nested = Expr::compile("concat([a])")
            .unwrap()
            .search(&input(&json!({"a": {"b": 1}})).unwrap());
        assert!(nested.is_err());
    }

    #[test]
    fn filters_use_truthiness() {
        let filter = Expr::compile("Total > `5`").unwrap();
        assert!(filter
            .matches(&input(&json!({"Total": 6})).unwrap())
            .unwrap());
        assert!(!filter
            .matches(&input(&json!({"Total": 4})).unwrap())
            .unwrap());
    }
}
