//! Every SQL expression of RDI's job examples (worker/tests/data/rdi/examples.json) gives
//! what the `sqlite3` shell gives for the same row. The docs give no rows for them; each
//! has one here, in the shape redsink writes that kind of column.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Map, Value};

use redsink_tests::{call, RedisServer};
use redsink_worker::expr::{Expr, Input, Language};

mod common;
use common::Worker;

const EXAMPLES: &str = include_str!("data/rdi/examples.json");

/// The SQL expressions of the examples' job files (`language: sql`, at any depth).
fn sql_expressions() -> Vec<String> {
    fn walk(node: &serde_norway::Value, found: &mut Vec<String>) {
        match node {
            serde_norway::Value::Mapping(mapping) => {
                let text = |key: &str| mapping.get(key).and_then(serde_norway::Value::as_str);
                if let (Some(expression), Some(language)) = (text("expression"), text("language")) {
                    if language.eq_ignore_ascii_case("sql") {
                        found.push(expression.to_owned());
                    }
                }
                mapping.values().for_each(|value| walk(value, found));
            }
            serde_norway::Value::Sequence(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let examples: Vec<Value> = serde_json::from_str(EXAMPLES).unwrap();
    let mut found = Vec::new();
    for job in examples
        .iter()
        .filter_map(|example| example["job_yaml"].as_str())
    {
        if let Ok(document) = serde_norway::from_str::<serde_norway::Value>(job) {
            walk(&document, &mut found);
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A row for each expression.
fn row_for(expression: &str) -> Value {
    let now = redsink_core::time::now_ms();
    let rows = [
        (
            "BillingCountry = 'USA' AND",
            json!({"BillingCountry": "USA", "Total": "13.86"}),
        ),
        ("'North America'", json!({"BillingCountry": "UK"})),
        ("event_date * 86400", json!({"event_date": 19358})),
        (
            "EXPIRES_TIMESTAMP",
            json!({"EXPIRES_TIMESTAMP": now + 3_600_000}),
        ),
        (
            "event_time_with_time_zone",
            json!({"event_time_with_time_zone": "11:51:30.123Z"}),
        ),
        ("DATE / 1000", json!({"DATE": 1_696_012_345_000_i64})),
        (
            "TIMESTAMP_FIELD",
            json!({"TIMESTAMP_FIELD": "2023-10-01T12:30:45.123Z"}),
        ),
        (
            "event_datetime / 1000",
            json!({"event_datetime": 1_696_163_445_000_i64}),
        ),
        (
            "event_datetimeoffset",
            json!({"event_datetimeoffset": "2023-10-01T12:30:45+02:00"}),
        ),
        (
            "event_timestamp / 1000000",
            json!({"event_timestamp": 1_696_163_445_123_456_i64}),
        ),
        (
            "event_timestamp_with_time_zone",
            json!({"event_timestamp_with_time_zone": "2023-10-01T10:30:45.123456Z"}),
        ),
        (
            "EXPIRATION_TS",
            json!({"EXPIRATION_TS": "2030-01-01T00:00:00Z"}),
        ),
        (
            "event_time / 1000000",
            json!({"event_time": 49_890_123_456_i64}),
        ),
        ("TIME(event_time,", json!({"event_time": 49_890})),
        ("age>20", json!({"age": 30})),
        ("'track:'", json!({"id": 7})),
        (
            "firstname",
            json!({"firstname": "Ada", "lastname": "Lovelace"}),
        ),
        (
            "country_code",
            json!({"country_code": "US", "country_name": "United States"}),
        ),
        ("milliseconds", json!({"milliseconds": 343_719})),
    ];
    rows.iter()
        .find(|(marker, _)| expression.contains(marker))
        .map(|(_, row)| row.clone())
        .unwrap_or_else(|| panic!("no row for {expression:?}: add one"))
}

/// A JSON value as an SQL literal for the shell.
fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(flag) => i64::from(*flag).to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("'{}'", text.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// What the `sqlite3` shell gives for `expression` over `row` (its JSON output mode), or
/// its error.
fn shell(expression: &str, row: &Map<String, Value>) -> Result<Value, String> {
    let columns: Vec<String> = row
        .iter()
        .map(|(name, value)| format!("{} AS \"{name}\"", literal(value)))
        .collect();
    let sql = format!(
        "SELECT ({expression}) AS v FROM (SELECT {});",
        columns.join(", ")
    );
    let output = Command::new("sqlite3")
        .args(["-json", ":memory:", &sql])
        .output()
        .expect("the sqlite3 shell (cargo make setup installs it)");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let rows: Vec<BTreeMap<String, Value>> =
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok(rows[0]["v"].clone())
}

#[test]
fn every_sql_expression_of_the_examples_gives_what_sqlite3_gives() {
    let expressions = sql_expressions();
    assert_eq!(expressions.len(), 21, "{expressions:#?}");
    for expression in &expressions {
        let Value::Object(row) = row_for(expression) else {
            unreachable!()
        };
        let ours = Expr::compile(expression, Language::Sql)
            .unwrap_or_else(|e| panic!("{e}"))
            .eval(&Input::new(&row))
            .unwrap_or_else(|e| panic!("{e}"));
        match shell(expression, &row) {
            // Relative to now: the two runs may fall in different seconds.
            Ok(theirs) if expression.contains("'now'") => {
                let (ours, theirs) = (ours.as_i64().unwrap(), theirs.as_i64().unwrap());
                assert!(
                    (ours - theirs).abs() <= 1,
                    "{expression}: {ours} against {theirs}"
                );
            }
            Ok(theirs) => assert_eq!(ours, theirs, "{expression} over {row:?}"),
            // SQLite 3.44 added concat(); Debian's shell (3.40) does not have it.
            Err(error) if error.contains("no such function: concat") => {
                let expected = if expression.contains("track:") {
                    "track:7"
                } else {
                    "Ada Lovelace"
                };
                assert_eq!(ours, json!(expected), "{expression}");
            }
            Err(error) => panic!("the shell refused {expression}: {error}"),
        }
    }
}

#[test]
fn sql_errors_are_found_at_compile_time() {
    for (expression, error) in [
        ("country_code ||", "syntax error"),
        ("nosuchfunction(a)", "no such function: nosuchfunction"),
        ("SELECT", "syntax error"),
    ] {
        let refused = Expr::compile(expression, Language::Sql)
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with(&format!("invalid SQL expression '{expression}': "))
                && refused.contains(error),
            "{refused}"
        );
    }
}

#[test]
fn values_bind_and_come_back_as_sqlite_types_them() {
    let row: Map<String, Value> = serde_json::from_value(json!({
        "n": 3, "x": 1.5, "t": "3.96", "flag": true, "gone": null, "doc": {"a": 1}, "quote": "it's"
    }))
    .unwrap();
    let eval = |expression: &str| {
        Expr::compile(expression, Language::Sql)
            .unwrap()
            .eval(&Input::new(&row))
            .unwrap()
    };
    assert_eq!(eval("n + 1"), json!(4));
    assert_eq!(eval("x * 2"), json!(3.0));
    assert_eq!(eval("t * 100"), json!(396.0));
    assert_eq!(eval("typeof(t)"), json!("text"));
    assert_eq!(eval("flag"), json!(1));
    assert_eq!(eval("gone"), json!(null));
    assert_eq!(eval("missing_column IS NULL"), json!(1));
    assert_eq!(eval("json_extract(doc, '$.a')"), json!(1));
    assert_eq!(eval("quote || '!'"), json!("it's!"));
    assert_eq!(eval("x'00ff'"), json!("AP8="));
    let filter = Expr::compile("n > 2 AND t = '3.96'", Language::Sql).unwrap();
    assert!(filter.matches(&Input::new(&row)).unwrap());
    let filter = Expr::compile("gone", Language::Sql).unwrap();
    assert!(!filter.matches(&Input::new(&row)).unwrap());
}

/// SQL through the worker: a filter, an added field and a key, written to Redis.
#[test]
fn sql_filters_fields_and_keys_reach_redis() {
    let redis = RedisServer::start();
    let job = r#"source: {streams: [customers]}
transform:
  - uses: filter
    with: {language: sql, expression: "CAST(age AS INTEGER) > 20"}
  - uses: add_field
    with:
      field: country
      language: sql
      expression: country_code || ' - ' || UPPER(country_name)
output:
  - uses: redis.write
    with:
      key: {language: sql, expression: "'customer:' || id"}
"#;
    let mut con = redis.connection();
    for (id, age) in [(1, "30"), (2, "12")] {
        call::<String>(
            &mut con,
            &[
                "XADD",
                "customers",
                "*",
                "id",
                &id.to_string(),
                "age",
                age,
                "country_code",
                "US",
                "country_name",
                "United States",
            ],
        )
        .unwrap();
    }
    let worker = Worker::reading(&redis, &[job], "[customers]");
    worker.wait_until(&redis, "customer 1 written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "customer:1"])? == 1)
    });
    assert_eq!(
        call::<Option<String>>(&mut con, &["HGET", "customer:1", "country"])
            .unwrap()
            .as_deref(),
        Some("US - UNITED STATES")
    );
    // Both entries were read (the group is done), the filter kept the second out.
    worker.wait_until(&redis, "both entries acknowledged", |con| {
        let summary: Vec<redsink_tests::redis::Value> =
            call(con, &["XPENDING", "customers", "redsink"])?;
        Ok(summary.first() == Some(&redsink_tests::redis::Value::Int(0)))
    });
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "customer:2"]).unwrap(), 0);
}

/// Names as SQLite reads them, and rows that try to make an expression big or long.
#[test]
fn names_are_names_and_rows_cannot_run_away() {
    let row: Map<String, Value> = serde_json::from_value(json!({
        "Total": 5, "order": 3, "total_due": 7, "id": 18_446_744_073_709_551_615_u64, "n": 1_000_000_000
    }))
    .unwrap();
    let eval = |expression: &str| {
        Expr::compile(expression, Language::Sql)
            .unwrap_or_else(|e| panic!("{e}"))
            .eval(&Input::new(&row))
    };
    // Double quotes name a column, keywords included; names ignore case.
    assert_eq!(eval(r#""Total" * 2"#).unwrap(), json!(10));
    assert_eq!(eval(r#""order" + 1"#).unwrap(), json!(4));
    assert_eq!(eval("TOTAL_DUE + 1").unwrap(), json!(8));
    // A trailing comment is a comment.
    assert_eq!(eval("Total + 1 -- the next one").unwrap(), json!(6));
    // An id beyond 64 bits keeps its digits.
    assert_eq!(eval("'k:' || id").unwrap(), json!("k:18446744073709551615"));
    // Long values and long loops stop with an error, for this row only.
    assert!(eval("length(zeroblob(n))").is_err());
    let looping = "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < n) SELECT max(x) FROM c)";
    assert!(eval(looping)
        .unwrap_err()
        .to_string()
        .contains("interrupted"));
    // The same expression on a small row still works.
    let small: Map<String, Value> = serde_json::from_value(json!({"n": 10})).unwrap();
    let expression = Expr::compile(looping, Language::Sql).unwrap();
    assert_eq!(expression.eval(&Input::new(&small)).unwrap(), json!(10));
    // Filters are true where SQLite's WHERE is.
    for (text, kept) in [
        ("'1abc'", true),
        ("'nan'", false),
        ("'0.0'", false),
        ("NULL", false),
        ("2", true),
    ] {
        let filter = Expr::compile(&format!("{text} AND 1"), Language::Sql).unwrap();
        assert_eq!(filter.matches(&Input::new(&small)).unwrap(), kept, "{text}");
    }
}
