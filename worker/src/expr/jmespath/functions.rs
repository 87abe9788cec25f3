//! RDI's JMESPath functions, as its documentation lists them.

use std::sync::Arc;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use base64::Engine;
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, Runtime, RuntimeError, Variable};
use serde_json::Value;

use super::{variable_of, RUNTIME};

/// Adds RDI's functions to `runtime`.
pub fn register(runtime: &mut Runtime) {
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
    runtime.register_function("base64_decode", Box::new(base64_decode));
    runtime.register_function("capitalize", Box::new(capitalize));
    runtime.register_function("filter_entries", Box::new(filter_entries));
    runtime.register_function("from_entries", Box::new(from_entries));
    runtime.register_function("to_entries", Box::new(to_entries));
    runtime.register_function("hash", Box::new(hash));
    runtime.register_function("in", Box::new(is_in));
    runtime.register_function("left", Box::new(left));
    runtime.register_function("right", Box::new(right));
    runtime.register_function("mid", Box::new(mid));
    runtime.register_function("regex_replace", Box::new(regex_replace));
    runtime.register_function(
        "time_delta_days",
        Box::new(|args: &[Rcvar], ctx: &mut Context<'_>| time_delta(args, ctx, 86_400)),
    );
    runtime.register_function(
        "time_delta_seconds",
        Box::new(|args: &[Rcvar], ctx: &mut Context<'_>| time_delta(args, ctx, 1)),
    );
    runtime.register_function("uuid", Box::new(uuid));
    runtime.register_function("xml_to_dict", Box::new(xml_to_dict));
}

fn text(value: String) -> jmespath::SearchResult {
    Ok(Arc::new(Variable::String(value)))
}

/// `base64_decode(text)`: the text base64 (RFC 4648) encodes.
fn base64_decode(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "base64_decode(base64 text of UTF-8 text)";
    let [encoded] = args else {
        return Err(invalid(ctx, usage));
    };
    let decoded = encoded
        .as_string()
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid(ctx, usage))?;
    text(decoded)
}

/// `capitalize(text)`: each word with its first letter in capitals, the rest in small
/// letters (Python's `string.capwords`).
fn capitalize(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let [value] = args else {
        return Err(invalid(ctx, "capitalize(text)"));
    };
    let Some(value) = value.as_string() else {
        return Ok(value.clone());
    };
    let words: Vec<String> = value
        .split_whitespace()
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect()
            })
        })
        .collect();
    text(words.join(" "))
}

/// The longest expression or pattern a function takes as an argument, its deepest
/// nesting, and how many compiled ones are kept.
const MAX_ARGUMENT_EXPRESSION: usize = 1024;
const MAX_NESTING: usize = 32;
const MAX_CACHED: usize = 256;

/// How deep brackets nest in `text`.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in text.bytes() {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Expressions given as text to `filter_entries`, compiled once each.
static PREDICATES: LazyLock<Mutex<HashMap<String, Arc<jmespath::Expression<'static>>>>> =
    LazyLock::new(Default::default);

/// `filter_entries(object, 'predicate')`: the members for which the predicate, a JMESPath
/// expression over `{key, value}`, is truthy.
fn filter_entries(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "filter_entries(object, `JMESPath predicate over key and value`)";
    let [object, predicate] = args else {
        return Err(invalid(ctx, usage));
    };
    let (Some(members), Some(text)) = (object.as_object(), predicate.as_string()) else {
        return Err(invalid(ctx, usage));
    };
    // A predicate can come from a row: it is held to what a job would write (a short
    // expression, shallowly nested), as the parser recurses with the nesting.
    if text.len() > MAX_ARGUMENT_EXPRESSION || nesting(text) > MAX_NESTING {
        return Err(invalid(ctx, usage));
    }
    let predicate = {
        let mut compiled = PREDICATES.lock().unwrap_or_else(PoisonError::into_inner);
        match compiled.get(text) {
            Some(predicate) => Arc::clone(predicate),
            None => {
                let predicate = Arc::new(
                    RUNTIME
                        .compile(&super::quote_bare_literals(text))
                        .map_err(|_| invalid(ctx, usage))?,
                );
                if compiled.len() >= MAX_CACHED {
                    compiled.clear();
                }
                compiled.insert(text.clone(), Arc::clone(&predicate));
                predicate
            }
        }
    };
    let mut kept = std::collections::BTreeMap::new();
    for (key, value) in members {
        if predicate.search(entry(key, value))?.is_truthy() {
            kept.insert(key.clone(), Arc::clone(value));
        }
    }
    Ok(Arc::new(Variable::Object(kept)))
}

/// A member as `{key, value}`, as `to_entries` and `filter_entries` give it.
fn entry(key: &str, value: &Rcvar) -> Rcvar {
    Arc::new(Variable::Object(
        [
            ("key".to_owned(), Arc::new(Variable::String(key.to_owned()))),
            ("value".to_owned(), Arc::clone(value)),
        ]
        .into_iter()
        .collect(),
    ))
}

/// `from_entries([{key, value}, …])`: an object of those members.
fn from_entries(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "from_entries(array of {key, value})";
    let [entries] = args else {
        return Err(invalid(ctx, usage));
    };
    let entries = entries.as_array().ok_or_else(|| invalid(ctx, usage))?;
    let mut object = std::collections::BTreeMap::new();
    for entry in entries {
        let key = entry
            .get_field("key")
            .as_string()
            .cloned()
            .ok_or_else(|| invalid(ctx, usage))?;
        object.insert(key, entry.get_field("value"));
    }
    Ok(Arc::new(Variable::Object(object)))
}

/// `to_entries(object)`: its members as `[{key, value}, …]`.
fn to_entries(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "to_entries(object)";
    let [object] = args else {
        return Err(invalid(ctx, usage));
    };
    let members = object.as_object().ok_or_else(|| invalid(ctx, usage))?;
    Ok(Arc::new(Variable::Array(
        members
            .iter()
            .map(|(key, value)| entry(key, value))
            .collect(),
    )))
}

/// `hash(text, 'algorithm')`: the text's digest in hex; `sha256` when no algorithm is
/// named, else `sha1`, `sha224`, `sha256`, `sha384`, `sha512` or `md5` (Python's hashlib
/// names).
fn hash(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    use sha2::Digest;
    let usage = "hash(text, `sha1` | `sha224` | `sha256` | `sha384` | `sha512` | `md5`)";
    let (value, algorithm) = match args {
        [value] => (value, "sha256".to_owned()),
        [value, algorithm] => (
            value,
            algorithm
                .as_string()
                .cloned()
                .ok_or_else(|| invalid(ctx, usage))?,
        ),
        _ => return Err(invalid(ctx, usage)),
    };
    let bytes = text_of(value)
        .ok_or_else(|| invalid(ctx, usage))?
        .into_bytes();
    let digest: Vec<u8> = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => sha1::Sha1::digest(&bytes).to_vec(),
        "sha224" => sha2::Sha224::digest(&bytes).to_vec(),
        "sha256" => sha2::Sha256::digest(&bytes).to_vec(),
        "sha384" => sha2::Sha384::digest(&bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(&bytes).to_vec(),
        "md5" => md5::Md5::digest(&bytes).to_vec(),
        _ => return Err(invalid(ctx, usage)),
    };
    text(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// `in(value, array)`: whether the array holds the value.
fn is_in(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "in(value, array)";
    let [value, array] = args else {
        return Err(invalid(ctx, usage));
    };
    let array = array.as_array().ok_or_else(|| invalid(ctx, usage))?;
    Ok(Arc::new(Variable::Bool(
        array.iter().any(|item| item == value),
    )))
}

/// A text's characters or an array's items from `start`, at most `count` of them (counts
/// beyond the end stop there).
fn slice(value: &Rcvar, start: usize, count: usize) -> Option<Variable> {
    match &**value {
        Variable::String(text) => Some(Variable::String(
            text.chars().skip(start).take(count).collect(),
        )),
        Variable::Array(items) => Some(Variable::Array(
            items.iter().skip(start).take(count).cloned().collect(),
        )),
        _ => None,
    }
}

fn length_of(value: &Rcvar) -> usize {
    match &**value {
        Variable::String(text) => text.chars().count(),
        Variable::Array(items) => items.len(),
        _ => 0,
    }
}

/// A non-negative whole number argument.
fn count_of(value: &Rcvar) -> Option<usize> {
    value
        .as_number()
        .filter(|n| *n >= 0.0 && n.fract() == 0.0)
        .map(|n| n as usize)
}

/// `left(text, n)`: the first n characters (or items).
fn left(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "left(text or array, non-negative count)";
    match args {
        [value, count] => count_of(count)
            .and_then(|count| slice(value, 0, count))
            .map(Arc::new)
            .ok_or_else(|| invalid(ctx, usage)),
        _ => Err(invalid(ctx, usage)),
    }
}

/// `right(text, n)`: the last n characters (or items).
fn right(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "right(text or array, non-negative count)";
    match args {
        [value, count] => count_of(count)
            .and_then(|count| slice(value, length_of(value).saturating_sub(count), count))
            .map(Arc::new)
            .ok_or_else(|| invalid(ctx, usage)),
        _ => Err(invalid(ctx, usage)),
    }
}

/// `mid(text, start, n)`: n characters (or items) from the 0-based `start`.
fn mid(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "mid(text or array, non-negative start, non-negative count)";
    match args {
        [value, start, count] => count_of(start)
            .zip(count_of(count))
            .and_then(|(start, count)| slice(value, start, count))
            .map(Arc::new)
            .ok_or_else(|| invalid(ctx, usage)),
        _ => Err(invalid(ctx, usage)),
    }
}

/// Patterns of `regex_replace`, compiled once each.
static PATTERNS: LazyLock<Mutex<HashMap<String, regex::Regex>>> = LazyLock::new(Default::default);

/// `regex_replace(text, pattern, replacement)`: every match replaced, as Python's `re.sub`
/// does (`\1` in the replacement is the first group).
fn regex_replace(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "regex_replace(text, regular expression, replacement)";
    let [value, pattern, replacement] = args else {
        return Err(invalid(ctx, usage));
    };
    let (Some(value), Some(pattern), Some(replacement)) = (
        value.as_string(),
        pattern.as_string(),
        replacement.as_string(),
    ) else {
        return Err(invalid(ctx, usage));
    };
    if pattern.len() > MAX_ARGUMENT_EXPRESSION {
        return Err(invalid(ctx, usage));
    }
    // Cloned out of the cache (a cheap handle), so that no lock is held while it runs.
    let compiled = {
        let mut patterns = PATTERNS.lock().unwrap_or_else(PoisonError::into_inner);
        match patterns.get(pattern) {
            Some(compiled) => compiled.clone(),
            None => {
                // A pattern can come from a row: its compiled size is held small.
                let compiled = regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20)
                    .build()
                    .map_err(|_| invalid(ctx, usage))?;
                if patterns.len() >= MAX_CACHED {
                    patterns.clear();
                }
                patterns.insert(pattern.clone(), compiled.clone());
                compiled
            }
        }
    };
    text(
        compiled
            .replace_all(value, python_replacement(replacement).as_str())
            .into_owned(),
    )
}

/// Python's replacement syntax (`\1`, `\g<name>`) in the regex crate's (`${1}`,
/// `${name}`); a `$` stays a `$`.
fn python_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(digit) if digit.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(digit) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(digit);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    chars.next();
                    let name: String = chars.by_ref().skip(1).take_while(|c| *c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                _ => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

/// `time_delta_days(timestamp)`, `time_delta_seconds(timestamp)`: whole days or seconds
/// from an ISO 8601 timestamp to now (negative for one to come), as Python's timedelta
/// counts them (days rounded down, seconds toward zero).
fn time_delta(args: &[Rcvar], ctx: &mut Context<'_>, unit_seconds: i64) -> jmespath::SearchResult {
    let usage = "time_delta_days(ISO 8601 timestamp) / time_delta_seconds(…)";
    let [value] = args else {
        return Err(invalid(ctx, usage));
    };
    let at = value
        .as_string()
        .and_then(|text| redsink_core::time::parse_instant(text))
        .ok_or_else(|| invalid(ctx, usage))?;
    let then_ms = (i128::from(at.days) * 86_400_000) + i128::from(at.nanos / 1_000_000);
    let elapsed_ms = i128::from(redsink_core::time::now_ms()) - then_ms;
    let whole = if unit_seconds == 1 {
        elapsed_ms / 1000
    } else {
        elapsed_ms.div_euclid(i128::from(unit_seconds) * 1000)
    };
    Ok(Arc::new(Variable::Number(serde_json::Number::from(
        i64::try_from(whole).unwrap_or(i64::MAX),
    ))))
}

/// `uuid()`: a random (version 4) UUID.
fn uuid(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    if !args.is_empty() {
        return Err(invalid(ctx, "uuid()"));
    }
    text(uuid::Uuid::new_v4().to_string())
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
pub(super) fn text_of(value: &Variable) -> Option<String> {
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

/// `split(text)`, `split(text, separator)`: the parts between separators (`,` when none
/// is given).
fn split(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "split(string[, non-empty separator])";
    let (text, separator) = match args {
        [text] => (text.as_string(), Some(",")),
        [text, separator] => (text.as_string(), separator.as_string().map(String::as_str)),
        _ => return Err(invalid(ctx, usage)),
    };
    match (text, separator) {
        (Some(text), Some(separator)) if !separator.is_empty() => Ok(Arc::new(Variable::Array(
            text.split(separator)
                .map(|part| Arc::new(Variable::String(part.to_owned())))
                .collect(),
        ))),
        _ => Err(invalid(ctx, usage)),
    }
}

fn json_parse(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    match args {
        [text] => match text
            .as_string()
            .map(|text| serde_json::from_str::<Value>(text))
        {
            Some(Ok(value)) => variable_of(&value)
                .map(Arc::new)
                .map_err(|_| invalid(ctx, "json_parse(JSON text)")),
            _ => Err(invalid(ctx, "json_parse(JSON text)")),
        },
        _ => Err(invalid(ctx, "json_parse(JSON text)")),
    }
}

/// `xml_to_dict(text)`: the XML document as Python's xmltodict reads it (see `xml`);
/// null for null, and an empty text for an empty text, as RDI's.
fn xml_to_dict(args: &[Rcvar], ctx: &mut Context<'_>) -> jmespath::SearchResult {
    let usage = "xml_to_dict(XML text)";
    let [value] = args else {
        return Err(invalid(ctx, usage));
    };
    match &**value {
        Variable::Null => Ok(value.clone()),
        Variable::String(text) if text.is_empty() => Ok(value.clone()),
        Variable::String(text) => super::xml::to_value(text)
            .map_err(|reason| invalid(ctx, &format!("{usage}; this is not: {reason}")))
            .and_then(|document| {
                variable_of(&document)
                    .map(Arc::new)
                    .map_err(|_| invalid(ctx, usage))
            }),
        _ => Err(invalid(ctx, usage)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use crate::expr::{Expr, Input};

    /// RDI's documentation examples (see tests/data/rdi/README.md).
    const EXAMPLES: &str = include_str!("../../../tests/data/rdi/examples.json");

    fn eval(expression: &str, input: &Value) -> Value {
        let expr = Expr::jmespath(expression).unwrap();
        match input {
            Value::Object(row) => expr.eval(&Input::new(row)),
            // A whole input that is not an object: searched as `@` of a row holding it.
            other => {
                let row: Map<String, Value> =
                    [("input".to_owned(), other.clone())].into_iter().collect();
                Expr::jmespath(&expression.replace('@', "input"))
                    .unwrap()
                    .eval(&Input::new(&row))
            }
        }
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// A documented input as JSON: JSON, except for values the documentation quotes as
    /// Python does (`'…'`); `None` is no input.
    fn python_input(text: &str) -> Value {
        if let Ok(input) = serde_json::from_str(text) {
            return input;
        }
        match (text.find(": '"), text.rfind('\'')) {
            (Some(open), Some(close)) if close > open + 3 => {
                let quoted = Value::from(&text[open + 3..close]).to_string();
                serde_json::from_str(&format!(
                    "{}: {quoted}{}",
                    &text[..open],
                    &text[close + 1..]
                ))
                .unwrap()
            }
            _ => json!({}),
        }
    }

    /// A documented output as JSON: Python's reprs (`True`, `['a', 'b']`) read as JSON.
    fn documented(output: &str) -> Value {
        match output {
            "True" => json!(true),
            "False" => json!(false),
            _ => serde_json::from_str(output)
                .or_else(|_| serde_json::from_str(&output.replace('\'', "\"")))
                .unwrap_or_else(|_| json!(output)),
        }
    }

    #[test]
    fn every_documented_function_gives_the_documented_output() {
        let examples: Vec<Value> = serde_json::from_str(EXAMPLES).unwrap();
        let mut checked = 0;
        for example in examples
            .iter()
            .filter(|item| item["kind"] == "jmespath_function")
        {
            let name = example["name"].as_str().unwrap();
            let clean = &example["clean"];
            let expression = clean["expression"].as_str().unwrap();
            let input = python_input(clean["input"].as_str().unwrap());

            let output = clean["output"].as_str().unwrap();
            let got = match name {
                // Truncated in the documentation: its first digits.
                "hash" => {
                    let digest = eval(expression, &input);
                    assert!(
                        digest
                            .as_str()
                            .unwrap()
                            .starts_with(output.trim_end_matches('.')),
                        "{digest}"
                    );
                    assert_eq!(digest.as_str().unwrap().len(), 40, "sha1 is 40 hex digits");
                    checked += 1;
                    continue;
                }
                // Random: the shape of a version 4 UUID.
                "uuid" => {
                    let id = eval(expression, &input);
                    let id = id.as_str().unwrap();
                    assert_eq!((id.len(), &id[14..15]), (36, "4"), "{id}");
                    assert_ne!(eval(expression, &input), json!(id));
                    checked += 1;
                    continue;
                }
                // Relative to now: against the days and seconds since the date.
                "time_delta_days" | "time_delta_seconds" => {
                    let since = redsink_core::time::now_ms() / 1000 - 1_633_546_576;
                    for (function, unit) in [("time_delta_days", 86_400), ("time_delta_seconds", 1)]
                    {
                        let got = eval(&format!("{function}(dt)"), &input).as_i64().unwrap();
                        assert!((got - since / unit).abs() <= 1, "{function}: {got}");
                    }
                    checked += 1;
                    continue;
                }
                // The documentation shows one replacement; Python's re.sub (which RDI
                // runs) replaces every match, as here.
                "regex_replace" => {
                    assert_eq!(eval(expression, &input), json!("Apple Apple Apple Apple"));
                    checked += 1;
                    continue;
                }
                // JMESPath objects keep no member order here: the entries come in key
                // order (docs/worker.md).
                "to_entries" => {
                    let by_key = |entries: Value| {
                        let mut entries = entries.as_array().cloned().unwrap_or_default();
                        entries.sort_by_key(|entry| entry["key"].to_string());
                        Value::Array(entries)
                    };
                    assert_eq!(by_key(eval(expression, &input)), by_key(documented(output)));
                    checked += 1;
                    continue;
                }
                _ => eval(expression, &input),
            };
            assert_eq!(got, documented(output), "{name}: {expression}");
            checked += 1;
        }
        assert_eq!(checked, 21);
    }

    #[test]
    fn functions_refuse_what_they_cannot_take() {
        for expression in [
            "base64_decode(`\"%%%\"`)",
            "hash(a, `\"sha3\"`)",
            "left(a, `-1`)",
            "mid(a, `1`)",
            "regex_replace(a, `\"(\"`, `\"x\"`)",
            "filter_entries(@, `\"key ==\"`)",
            "from_entries(`[1]`)",
            "time_delta_days(`\"yesterday\"`)",
            "uuid(a)",
            "xml_to_dict(`\"<a>\"`)",
            "xml_to_dict(`1`)",
        ] {
            let row: Map<String, Value> = [("a".to_owned(), json!("text"))].into_iter().collect();
            assert!(
                Expr::jmespath(expression)
                    .unwrap()
                    .eval(&Input::new(&row))
                    .is_err(),
                "{expression}"
            );
        }
        assert_eq!(
            super::python_replacement(r"\1-\g<name>-$-\\"),
            "${1}-${name}-$$-\\"
        );
        assert_eq!(super::python_replacement(r"a\nb\tc"), "a\nb\tc");
        // Predicates and patterns from rows are held small.
        let deep = format!("{}1{}", "(".repeat(2000), ")".repeat(2000));
        let row: Map<String, Value> = [
            ("p".to_owned(), json!(deep)),
            ("o".to_owned(), json!({"a": 1})),
        ]
        .into_iter()
        .collect();
        assert!(Expr::jmespath("filter_entries(o, p)")
            .unwrap()
            .eval(&Input::new(&row))
            .is_err());
        assert!(Expr::jmespath("regex_replace(`\"a\"`, p, `\"b\"`)")
            .unwrap()
            .eval(&Input::new(&row))
            .is_err());
        assert_eq!(
            eval("capitalize(`\"mIxed  case\"`)", &json!({})),
            json!("Mixed Case")
        );
        assert_eq!(eval("right(`[1, 2, 3]`, `2`)", &json!({})), json!([2, 3]));
        assert_eq!(
            eval("hash(`\"some_value\"`)", &json!({})),
            json!("bf8260204a85f123e8c486c01057463ae681906de652202e82c7aa25d9e06bfe")
        );
    }
}
