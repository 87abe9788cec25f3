//! One table, one Redis state, whichever way its changes come: a PostgreSQL table with a
//! column of each type, captured by the built-in source (snapshot, then pgoutput and
//! wal2json side by side), and the same rows as Debezium Server writes them (JSON with
//! schemas, `decimal.handling.mode=precise`, adaptive time precision) in both stream
//! formats, compact and extended, through a redis-stream source. Hashes, JSON strings and stream messages come out
//! identical, and each column holds the documented value.
//!
//! The Debezium values are those of Debezium's own type vectors for the same SQL literals
//! (worker/tests/data/debezium/pg_type_vectors.json); the few marked "derived" follow the
//! documented encodings.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use redsink_tests::{call, PostgresServer, RedisServer};

mod common;
use common::Worker;

/// A column: its name, SQL type, Debezium field schema, and for each of two rows the SQL
/// literal, Debezium's value for it, and what the hash field must hold (`None`: no field,
/// the value is NULL).
struct Column {
    name: &'static str,
    sql_type: &'static str,
    schema: Value,
    rows: [(&'static str, Value, Option<&'static str>); 2],
}

fn named(kind: &str, name: &str) -> Value {
    json!({"type": kind, "name": name, "version": 1})
}

fn decimal(scale: &str) -> Value {
    json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
           "parameters": {"scale": scale}})
}

fn columns() -> Vec<Column> {
    let array = |items: Value| json!({"type": "array", "items": items});
    vec![
        Column {
            name: "ts",
            sql_type: "timestamp(6)",
            schema: named("int64", "io.debezium.time.MicroTimestamp"),
            rows: [
                (
                    "'2016-11-04T13:51:30.123456'",
                    json!(1_478_267_490_123_456_i64),
                    Some("2016-11-04T13:51:30.123456Z"),
                ),
                (
                    "'4713-12-31T23:59:59.999999 BC'",
                    json!(-210_831_897_600_000_001_i64),
                    Some("-4712-12-31T23:59:59.999999Z"),
                ),
            ],
        },
        Column {
            name: "ts3",
            sql_type: "timestamp(3)",
            schema: named("int64", "io.debezium.time.Timestamp"),
            rows: [
                (
                    "'2016-11-04T13:51:30.123456'",
                    json!(1_478_267_490_123_i64),
                    Some("2016-11-04T13:51:30.123Z"),
                ),
                // Derived: the microsecond sentinel in milliseconds.
                (
                    "'infinity'",
                    json!(9_223_372_036_825_200_i64),
                    Some("infinity"),
                ),
            ],
        },
        Column {
            name: "tstz",
            sql_type: "timestamptz",
            schema: named("string", "io.debezium.time.ZonedTimestamp"),
            rows: [
                (
                    "'2016-11-04T13:51:30.123456+02:00'",
                    json!("2016-11-04T11:51:30.123456Z"),
                    Some("2016-11-04T11:51:30.123456Z"),
                ),
                (
                    "'21016-11-04T13:51:30.000000+07:00'",
                    json!("+21016-11-04T06:51:30.000000Z"),
                    Some("+21016-11-04T06:51:30Z"),
                ),
            ],
        },
        Column {
            name: "d",
            sql_type: "date",
            schema: named("int32", "io.debezium.time.Date"),
            rows: [
                ("'2016-11-04'", json!(17109), Some("2016-11-04")),
                ("'1997-05-19'", json!(10000), Some("1997-05-19")),
            ],
        },
        Column {
            name: "t",
            sql_type: "time",
            schema: named("int64", "io.debezium.time.MicroTime"),
            rows: [
                ("'13:51:30'", json!(49_890_000_000_i64), Some("13:51:30")),
                ("'24:00:00'", json!(86_400_000_000_i64), Some("24:00:00")),
            ],
        },
        Column {
            name: "t3",
            sql_type: "time(3)",
            schema: named("int32", "io.debezium.time.Time"),
            rows: [
                ("'13:51:30.123'", json!(49_890_123), Some("13:51:30.123")),
                ("'00:00:00'", json!(0), Some("00:00:00")),
            ],
        },
        Column {
            name: "ttz",
            sql_type: "timetz",
            schema: named("string", "io.debezium.time.ZonedTime"),
            rows: [
                (
                    "'13:51:30.123789+02:00'",
                    json!("11:51:30.123789Z"),
                    Some("11:51:30.123789Z"),
                ),
                (
                    "'13:51:30.123+02:00'",
                    json!("11:51:30.123Z"),
                    Some("11:51:30.123Z"),
                ),
            ],
        },
        Column {
            name: "iv",
            sql_type: "interval",
            schema: named("int64", "io.debezium.time.MicroDuration"),
            rows: [
                (
                    "'P1Y2M3DT4H5M6.78S'",
                    json!(37_091_106_780_000_i64),
                    Some("37091106780000"),
                ),
                // Derived from MicroDuration's formula.
                (
                    "'-1 day -02:00:00'",
                    json!(-93_600_000_000_i64),
                    Some("-93600000000"),
                ),
            ],
        },
        Column {
            name: "n",
            sql_type: "numeric(3,2)",
            schema: decimal("2"),
            rows: [
                ("1.1", json!("bg=="), Some("1.10")),
                ("3.30", json!("AUo="), Some("3.30")),
            ],
        },
        Column {
            name: "nv",
            sql_type: "numeric",
            schema: named("struct", "io.debezium.data.VariableScaleDecimal"),
            rows: [
                (
                    "10.1111",
                    json!({"scale": 4, "value": "AYr3"}),
                    Some("10.1111"),
                ),
                ("22", json!({"scale": 0, "value": "Fg=="}), Some("22")),
            ],
        },
        Column {
            name: "m",
            sql_type: "money",
            schema: decimal("2"),
            rows: [
                ("'$1234.11'", json!("AeIT"), Some("1234.11")),
                ("'($1234.11)'", json!("/h3t"), Some("-1234.11")),
            ],
        },
        Column {
            name: "i8",
            sql_type: "bigint",
            schema: json!({"type": "int64"}),
            rows: [
                (
                    "1234567890123",
                    json!(1_234_567_890_123_i64),
                    Some("1234567890123"),
                ),
                // Beyond 2^53: kept exact.
                (
                    "9223372036854775807",
                    json!(i64::MAX),
                    Some("9223372036854775807"),
                ),
            ],
        },
        Column {
            name: "r",
            sql_type: "real",
            schema: json!({"type": "float"}),
            rows: [
                ("3.3", json!(3.3), Some("3.3")),
                // NaN and ±Infinity are left out here: wal2json writes them as null
                // (docs/worker.md); the snapshot and Debezium keep them (unit tests).
                ("-0.5", json!(-0.5), Some("-0.5")),
            ],
        },
        Column {
            name: "f8",
            sql_type: "double precision",
            schema: json!({"type": "double"}),
            rows: [
                ("4.44", json!(4.44), Some("4.44")),
                ("1e300", json!(1e300), Some("1e+300")),
            ],
        },
        Column {
            name: "b",
            sql_type: "boolean",
            schema: json!({"type": "boolean"}),
            rows: [
                ("true", json!(true), Some("true")),
                ("false", json!(false), Some("false")),
            ],
        },
        Column {
            name: "jb",
            sql_type: "jsonb",
            schema: named("string", "io.debezium.data.Json"),
            rows: [
                (
                    // An object is flattened into the hash: field `jb.bar`.
                    r#"'{"bar": "baz"}'"#,
                    json!(r#"{"bar": "baz"}"#),
                    None,
                ),
                ("'[1, 2]'", json!("[1, 2]"), Some("[1,2]")),
            ],
        },
        Column {
            name: "x",
            sql_type: "xml",
            schema: named("string", "io.debezium.data.Xml"),
            rows: [
                (
                    "'<foo>bar</foo><foo>bar</foo>'",
                    json!("<foo>bar</foo><foo>bar</foo>"),
                    Some("<foo>bar</foo><foo>bar</foo>"),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "u",
            sql_type: "uuid",
            schema: named("string", "io.debezium.data.Uuid"),
            rows: [
                (
                    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                    json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                    Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "ia",
            sql_type: "int[]",
            schema: array(json!({"type": "int32"})),
            rows: [
                ("'{1,2,3}'", json!([1, 2, 3]), Some("[1,2,3]")),
                ("'{}'", json!([]), Some("[]")),
            ],
        },
        Column {
            name: "ca",
            sql_type: "char(10)[]",
            schema: array(json!({"type": "string"})),
            rows: [
                (
                    r#"'{"cone","ctwo","cthree"}'"#,
                    json!(["cone      ", "ctwo      ", "cthree    "]),
                    Some(r#"["cone      ","ctwo      ","cthree    "]"#),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "da",
            sql_type: "date[]",
            schema: array(named("int32", "io.debezium.time.Date")),
            rows: [
                (
                    "'{2016-11-04,2016-11-05,2016-11-06}'",
                    json!([17109, 17110, 17111]),
                    Some(r#"["2016-11-04","2016-11-05","2016-11-06"]"#),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "na",
            sql_type: "numeric(10,2)[]",
            schema: array(decimal("2")),
            rows: [
                (
                    "'{1.2,3.4,5.6}'",
                    json!(["eA==", "AVQ=", "AjA="]),
                    Some(r#"["1.20","3.40","5.60"]"#),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "ja",
            sql_type: "jsonb[]",
            schema: array(named("string", "io.debezium.data.Json")),
            rows: [
                (
                    r#"array['{"bar": "baz"}','{"foo": "qux"}']::jsonb[]"#,
                    json!([r#"{"bar": "baz"}"#, r#"{"foo": "qux"}"#]),
                    Some(r#"[{"bar":"baz"},{"foo":"qux"}]"#),
                ),
                ("NULL", Value::Null, None),
            ],
        },
        Column {
            name: "ba",
            sql_type: "bytea",
            schema: json!({"type": "bytes"}),
            rows: [
                (
                    r"'\x0123456789abcdef'",
                    json!("ASNFZ4mrze8="),
                    Some("ASNFZ4mrze8="),
                ),
                (r"'\x'", json!(""), Some("")),
            ],
        },
        Column {
            name: "bt",
            sql_type: "bit(3)",
            schema: json!({"type": "bytes", "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "3"}}),
            rows: [
                ("B'101'", json!("BQ=="), Some("101")),
                ("B'000'", json!(""), Some("000")),
            ],
        },
        Column {
            name: "b1",
            sql_type: "bit(1)",
            schema: json!({"type": "boolean"}),
            rows: [
                ("B'1'", json!(true), Some("true")),
                ("B'0'", json!(false), Some("false")),
            ],
        },
        Column {
            name: "e",
            sql_type: "bear",
            schema: json!({"type": "string", "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": "polar,brown"}}),
            rows: [
                ("'polar'", json!("polar"), Some("polar")),
                ("'brown'", json!("brown"), Some("brown")),
            ],
        },
    ]
}

/// The rows' ids: 1 and 4 are in the table before the worker starts (its snapshot), 2
/// and 3 are inserted after (pgoutput, wal2json); 1 and 3 hold the first set of values, 2 and 4
/// the second.
const ROWS: [(i32, usize, &str); 4] = [(1, 0, "r"), (4, 1, "r"), (2, 1, "c"), (3, 0, "c")];

fn insert(client: &mut redsink_tests::pg_client::Client, columns: &[Column], id: i32, set: usize) {
    let names: Vec<&str> = columns.iter().map(|column| column.name).collect();
    let values: Vec<&str> = columns.iter().map(|column| column.rows[set].0).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO kinds (id, {}) VALUES ({id}, {})",
            names.join(", "),
            values.join(", ")
        ))
        .unwrap();
}

/// Debezium Server's key and value for a row, with schemas, as its JSON converter writes
/// them.
fn debezium_entry(columns: &[Column], id: i32, set: usize, op: &str, lsn: i64) -> (String, String) {
    let mut fields = vec![json!({"type": "int32", "optional": false, "field": "id"})];
    let mut after = serde_json::Map::new();
    after.insert("id".into(), json!(id));
    for column in columns {
        let mut schema = column.schema.clone();
        schema["optional"] = json!(true);
        schema["field"] = json!(column.name);
        fields.push(schema);
        after.insert(column.name.into(), column.rows[set].1.clone());
    }
    let row = |side: &str| json!({"type": "struct", "fields": fields, "optional": true, "name": "dbz.public.kinds.Value", "field": side});
    let source_schema = json!({"type": "struct", "fields": [
        {"type": "string", "optional": false, "field": "connector"},
        {"type": "int64", "optional": true, "field": "lsn"}], "optional": false,
        "name": "io.debezium.connector.postgresql.Source", "field": "source"});
    let value = json!({
        "schema": {"type": "struct", "fields": [row("before"), row("after"), source_schema,
                   {"type": "string", "optional": false, "field": "op"},
                   {"type": "int64", "optional": true, "field": "ts_ms"}],
                   "optional": false, "name": "dbz.public.kinds.Envelope"},
        "payload": {"before": null, "after": after,
                    "source": {"connector": "postgresql", "lsn": lsn}, "op": op, "ts_ms": 1_700_000_000_000_i64}
    });
    let key = json!({
        "schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}],
                   "optional": false, "name": "dbz.public.kinds.Key"},
        "payload": {"id": id}
    });
    (key.to_string(), value.to_string())
}

/// A hash, a JSON string and a stream message for every change, under `prefix`.
fn job(source: &str, prefix: &str) -> String {
    format!(
        r#"source: {source}
output:
  - uses: redis.write
    with:
      key: {{expression: "concat(['{prefix}:', id])"}}
  - uses: redis.write
    with:
      data_type: string
      key: {{expression: "concat(['{prefix}-json:', id])"}}
  - uses: redis.write
    with:
      data_type: stream
      key: {{expression: "`{prefix}:events`"}}
"#
    )
}

fn hash(con: &mut redis::Connection, key: &str) -> BTreeMap<String, String> {
    call(con, &["HGETALL", key]).unwrap()
}

#[test]
fn a_table_reaches_redis_the_same_from_postgresql_and_from_debezium_in_both_formats() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    let columns = columns();
    let definitions: Vec<String> = columns
        .iter()
        .map(|column| format!("{} {}", column.name, column.sql_type))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TYPE bear AS ENUM ('polar', 'brown');
             CREATE TABLE kinds (id integer PRIMARY KEY, {});",
            definitions.join(", ")
        ))
        .unwrap();
    for (id, set, op) in ROWS {
        if op == "r" {
            insert(&mut client, &columns, id, set);
        }
    }
    // The same table through both plugins: wal2json (`pg`) and pgoutput (`pgo`).
    let source = |name: &str, plugin: &str| {
        format!(
            "  - type: postgres\n    server_name: {name}\n    plugin: {plugin}\n    host: 127.0.0.1\n\
             \x20   port: {}\n    database: postgres\n    user: postgres\n    tables: [public.kinds]\n\
             \x20   poll_ms: 50\n",
            postgres.port()
        )
    };
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\nsources:\n{}{}jobs: ./jobs\n",
        redis.port(),
        source("chinook", "wal2json"),
        source("chinook_pgo", "pgoutput"),
    );
    let from_postgres = Worker::from_config(
        &config,
        &[
            &job("{server_name: chinook, schema: public, table: kinds}", "pg"),
            &job(
                "{server_name: chinook_pgo, schema: public, table: kinds}",
                "pgo",
            ),
        ],
    );
    let written = |con: &mut redis::Connection, n: i64| -> redis::RedisResult<bool> {
        Ok(call::<i64>(con, &["XLEN", "pg:events"])? == n
            && call::<i64>(con, &["XLEN", "pgo:events"])? == n)
    };
    from_postgres.wait_until(&redis, "snapshot written", |con| written(con, 2));
    for (id, set, op) in ROWS {
        if op == "c" {
            insert(&mut client, &columns, id, set);
        }
    }
    from_postgres.wait_until(&redis, "changes written", |con| written(con, 4));

    // The same changes as Debezium Server writes them, in the same order.
    let mut con = redis.connection();
    for (lsn, (id, set, op)) in (1..).zip(ROWS) {
        let (key, value) = debezium_entry(&columns, id, set, op, lsn);
        call::<String>(&mut con, &["XADD", "dbz.public.kinds", "*", &key, &value]).unwrap();
        call::<String>(
            &mut con,
            &[
                "XADD",
                "dbzx.public.kinds",
                "*",
                "key",
                &key,
                "value",
                &value,
                "__DEBEZIUM.CONTEXT.TASKID",
                "0",
            ],
        )
        .unwrap();
    }
    let from_debezium = Worker::reading(
        &redis,
        &[
            &job("{streams: [dbz.public.kinds]}", "compact"),
            &job("{streams: [dbzx.public.kinds]}", "extended"),
        ],
        "[dbz.public.kinds, dbzx.public.kinds]",
    );
    from_debezium.wait_until(&redis, "Debezium's changes written", |con| {
        Ok(call::<i64>(con, &["XLEN", "compact:events"])? == 4
            && call::<i64>(con, &["XLEN", "extended:events"])? == 4)
    });

    for (id, set, _) in ROWS {
        let from_table = hash(&mut con, &format!("pg:{id}"));
        // Every column holds its documented value (NULLs leave no field).
        for column in &columns {
            assert_eq!(
                from_table.get(column.name).map(String::as_str),
                column.rows[set].2,
                "row {id}, column {} ({})\n{}",
                column.name,
                column.sql_type,
                from_postgres.log()
            );
        }
        if set == 0 {
            assert_eq!(from_table.get("jb.bar").map(String::as_str), Some("baz"));
        }
        for format in ["pgo", "compact", "extended"] {
            assert_eq!(
                hash(&mut con, &format!("{format}:{id}")),
                from_table,
                "{format} row {id}"
            );
            assert_eq!(
                call::<String>(&mut con, &["GET", &format!("{format}-json:{id}")]).unwrap(),
                call::<String>(&mut con, &["GET", &format!("pg-json:{id}")]).unwrap(),
                "{format} row {id}"
            );
        }
    }
    let messages = |con: &mut redis::Connection, stream: &str| -> Vec<Vec<String>> {
        call::<Vec<(String, Vec<String>)>>(con, &["XRANGE", stream, "-", "+"])
            .unwrap()
            .into_iter()
            .map(|(_, fields)| fields)
            .collect()
    };
    let from_table = messages(&mut con, "pg:events");
    assert_eq!(from_table.len(), 4);
    for format in ["pgo", "compact", "extended"] {
        assert_eq!(
            messages(&mut con, &format!("{format}:events")),
            from_table,
            "{format}"
        );
    }
    assert!(
        !from_debezium.log().contains("without their schema"),
        "enveloped events are decoded: {}",
        from_debezium.log()
    );
}

/// What Debezium did not capture keeps its stored value: an unchanged TOASTed column
/// (its `__debezium_unavailable_value`), and the fields a MongoDB update without the whole
/// document does not name; columns set to null (or removed) go.
#[test]
fn what_debezium_did_not_capture_keeps_its_stored_value() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let schema = json!({"type": "struct", "fields": [
        {"type": "struct", "field": "after", "optional": true, "fields": [
            {"type": "int32", "optional": false, "field": "id"},
            {"type": "string", "optional": true, "field": "notes"},
            {"type": "string", "optional": true, "field": "status"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Json", "field": "doc"}]}]});
    let change = |op: &str, after: Value, lsn: i64| {
        json!({"schema": schema, "payload": {"before": null, "after": after, "op": op,
               "source": {"connector": "postgresql", "lsn": lsn}}})
        .to_string()
    };
    let entries = [
        change(
            "c",
            json!({"id": 1, "notes": "a long text", "status": "new", "doc": r#"{"a":1,"b":2}"#}),
            10,
        ),
        change(
            "u",
            json!({"id": 1, "notes": "__debezium_unavailable_value", "status": null,
                           "doc": "__debezium_unavailable_value"}),
            11,
        ),
    ];
    for value in &entries {
        call::<String>(
            &mut con,
            &["XADD", "pg.public.docs", "*", r#"{"id":1}"#, value],
        )
        .unwrap();
    }
    // MongoDB: the whole document, then an update naming only what changed.
    let mongo = [
        r#"{"after":"{\"_id\": 7, \"name\": \"Anne\", \"email\": \"a@example.com\", \"city\": \"Berlin\"}","source":{"connector":"mongodb"},"op":"c"}"#,
        r#"{"after":null,"updateDescription":{"removedFields":["email"],"updatedFields":"{\"name\": \"Anne Marie\"}","truncatedArrays":null},"source":{"connector":"mongodb"},"op":"u"}"#,
    ];
    for value in mongo {
        call::<String>(
            &mut con,
            &["XADD", "mongo.shop.customers", "*", r#"{"id":"7"}"#, value],
        )
        .unwrap();
    }
    let worker = Worker::reading(
        &redis,
        &[
            &job("{streams: [pg.public.docs]}", "docs"),
            r#"source: {streams: [mongo.shop.customers]}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['customer:', _id])"}
"#,
        ],
        "[pg.public.docs, mongo.shop.customers]",
    );
    worker.wait_until(&redis, "both updates written", |con| {
        Ok(call::<i64>(con, &["XLEN", "docs:events"])? == 2
            && call::<Option<String>>(con, &["HGET", "customer:7", "name"])?.as_deref()
                == Some("Anne Marie"))
    });
    assert_eq!(
        hash(&mut con, "docs:1"),
        BTreeMap::from([
            ("id".into(), "1".into()),
            ("notes".into(), "a long text".into()),
            ("doc.a".into(), "1".into()),
            ("doc.b".into(), "2".into()),
        ]),
        "{}",
        worker.log()
    );
    let stored: Value =
        serde_json::from_str(&call::<String>(&mut con, &["GET", "docs-json:1"]).unwrap()).unwrap();
    assert_eq!(
        stored,
        json!({"id": 1, "notes": "a long text", "doc": {"a": 1, "b": 2}})
    );
    // MongoDB's events came without the schema envelope: said once, for that stream.
    let log = worker.log();
    assert_eq!(log.matches("without their schema").count(), 1, "{log}");
    assert!(log.contains("stream=\"mongo.shop.customers\""), "{log}");
    assert_eq!(
        hash(&mut con, "customer:7"),
        BTreeMap::from([
            ("_id".into(), "7".into()),
            ("name".into(), "Anne Marie".into()),
            ("city".into(), "Berlin".into()),
        ])
    );
}
