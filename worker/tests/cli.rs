//! The worker binary's command line: `--help`, `--check` on good and bad setups, `status`.

use std::path::Path;

mod common;

fn worker(args: &[&str]) -> (bool, String, String) {
    common::run_worker(args)
}

/// `text` as `config.yaml` in a new directory (removed when the returned guard drops),
/// and the file's path.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).unwrap();
    (dir, config.to_string_lossy().into_owned())
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/config.yaml")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn help_explains_the_options() {
    let (ok, out, _) = worker(&["--help"]);
    assert!(ok);
    assert!(
        out.contains("--config <FILE>") && out.contains("--check") && out.contains("${NAME}"),
        "{out}"
    );
}

#[test]
fn check_accepts_the_example_with_seed_001s_job() {
    let (ok, out, err) = worker(&["--config", &examples(), "--check"]);
    assert!(ok, "{err}");
    assert!(out.contains("job invoice-events"), "{out}");
    assert!(out.contains("reads data:chinook.public.invoice"), "{out}");
}

#[test]
fn check_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "connections:\n  target: {type: redis, host: 127.0.0.1, port: 6379, password: \"${REDSINK_TEST_UNSET}\"}\njobs: jobs\n",
    )
    .unwrap();
    let config = dir
        .path()
        .join("config.yaml")
        .to_string_lossy()
        .into_owned();
    let (ok, _, err) = worker(&["--config", &config, "--check"]);
    assert!(!ok);
    assert!(
        err.contains("environment variable REDSINK_TEST_UNSET is not set"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("config.yaml"),
        "connections: {}\njobs: jobs\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/broken.yaml"),
        "source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"concat([\"}}\n",
    )
    .unwrap();
    let (ok, _, err) = worker(&["--config", &config, "--check"]);
    assert!(!ok);
    assert!(
        err.contains("broken.yaml") && err.contains("invalid JMESPath expression 'concat(['"),
        "{err}"
    );
}

#[test]
fn check_shows_what_a_postgres_source_feeds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs/invoice-events.yaml"),
        dir.path().join("jobs/invoice-events.yaml"),
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "connections:\n  target: {type: redis, host: 127.0.0.1, port: 6379}\n\
         sources:\n  - {type: postgres, server_name: chinook, host: db, database: chinook, \
         user: redsink, password: x, tables: [public.invoice], tls: true}\njobs: jobs\n",
    )
    .unwrap();
    let (ok, out, err) = worker(&["--config", &config.to_string_lossy(), "--check"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "source postgres 'chinook': redsink@db:5432/chinook (TLS) tables [\"public.invoice\"], slot redsink_chinook, pgoutput, publication redsink_chinook"
        ) && out.contains("reads postgres 'chinook' table public.invoice"),
        "{out}"
    );
}

#[test]
fn try_shows_a_jobs_writes_offline() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"before":null,"after":{"InvoiceId":98,"BillingCountry":"Germany","Total":"3.96"},"source":{"connector":"postgresql","lsn":7},"op":"u"}"#,
    )
    .unwrap();
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs/invoice-events.yaml");
    let (ok, out, err) = worker(&["try", &job.to_string_lossy(), &event.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("event: an update of a row"), "{out}");
    assert!(out.contains("SINK.STREAM invoice:events"), "{out}");
    let (ok, _, err) = worker(&["try", &job.to_string_lossy(), "/nonexistent.json"]);
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
    let (ok, out, _) = worker(&["try", "--help"]);
    assert!(ok && out.contains("offline"), "{out}");
}

/// `status` (with `--config` before or after it) shows what XINFO and XPENDING say of
/// each stream's group, the dead letters, and a PostgreSQL source's slot and snapshot —
/// with no worker running.
#[test]
fn status_shows_groups_dead_letters_slots_and_snapshots() {
    use redsink_tests::{call, PostgresServer, RedisServer};

    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut con = redis.connection();
    let stream = "data:chinook.public.invoice";
    for i in 1..=5 {
        call::<String>(&mut con, &["XADD", stream, "*", "n", &i.to_string()]).unwrap();
    }
    call::<String>(&mut con, &["XGROUP", "CREATE", stream, "redsink", "0"]).unwrap();
    // Three delivered to c1, the first of them acknowledged.
    let first: String =
        call::<Vec<(String, Vec<String>)>>(&mut con, &["XRANGE", stream, "-", "+", "COUNT", "1"])
            .unwrap()
            .remove(0)
            .0;
    call::<redis::Value>(
        &mut con,
        &[
            "XREADGROUP",
            "GROUP",
            "redsink",
            "c1",
            "COUNT",
            "3",
            "STREAMS",
            stream,
            ">",
        ],
    )
    .unwrap();
    call::<i64>(&mut con, &["XACK", stream, "redsink", &first]).unwrap();
    call::<String>(&mut con, &["XADD", &format!("dlq:{stream}"), "*", "a", "1"]).unwrap();
    let mut client = postgres.client().unwrap();
    client
        .batch_execute("CREATE TABLE invoice (id int PRIMARY KEY)")
        .unwrap();
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('redsink_chinook', 'pgoutput')")
        .unwrap();
    call::<i64>(
        &mut con,
        &[
            "HSET",
            "redsink:snapshot:chinook:redsink_chinook",
            "done:public.invoice",
            "1",
        ],
    )
    .unwrap();
    let (_dir, config) = config_file(&format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\"}}\n\
         \x20 - {{type: postgres, server_name: chinook, host: 127.0.0.1, port: {}, database: postgres, \
         user: postgres, tables: [public.invoice, public.note]}}\n",
        redis.port(),
        postgres.port()
    ));

    let (ok, out, err) = worker(&["status", "--json", "--config", &config]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    // What the server itself says.
    let groups: Vec<std::collections::BTreeMap<String, redis::Value>> =
        call(&mut con, &["XINFO", "GROUPS", stream]).unwrap();
    let int = |name: &str| match &groups[0][name] {
        redis::Value::Int(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let shown = &status["streams"][0];
    assert_eq!(shown["stream"], stream, "{out}");
    assert_eq!(shown["length"], 5);
    assert_eq!(shown["pending"], int("pending"));
    assert_eq!(shown["lag"], int("lag"));
    assert_eq!((int("pending"), int("lag")), (2, 2));
    assert!(shown["oldest_pending_ms"].as_i64().unwrap() >= 0, "{out}");
    assert_eq!(shown["dead_letters"], 1);
    assert!(
        status["modules"]["target"].is_string(),
        "the module's version: {out}"
    );
    let pg = &status["postgres"][0];
    assert_eq!(pg["slot"], "redsink_chinook");
    assert_eq!(pg["slot_state"]["plugin"], "pgoutput", "{out}");
    assert_eq!(pg["slot_state"]["active"], false);
    assert_eq!(pg["snapshot_done"], serde_json::json!(["public.invoice"]));
    assert_eq!(pg["snapshot_due"], serde_json::json!(["public.note"]));

    let (ok, table, err) = worker(&["--config", &config, "status"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("connection target: redsink module")
            && table.contains("STREAM")
            && table.lines().any(|line| line.starts_with(stream)
                && line.split_whitespace().collect::<Vec<_>>()[2..5] == ["5", "2", "2"])
            && table.contains("due: public.note"),
        "{table}"
    );
}

/// What an earlier run of the worker left failing is cleared once the source works.
#[test]
fn status_forgets_a_failure_an_earlier_run_left_once_the_source_works() {
    use redsink_tests::{call, RedisServer};
    let redis = RedisServer::start();
    let mut con = redis.connection();
    call::<i64>(
        &mut con,
        &[
            "HSET",
            "redsink:status:redis-stream:redsink",
            "error",
            "redis: connection refused",
            "at",
            "1",
            "failing",
            "7",
        ],
    )
    .unwrap();
    let running = common::Worker::start(&redis, &[common::INVOICE_HASH_JOB]);
    common::add_invoice_event(
        &mut con,
        1,
        r#"{"before":null,"after":{"InvoiceId":1},"op":"c","source":{"lsn":1}}"#,
    );
    running.wait_until(&redis, "the event written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:1"])? == 1)
    });
    let config = running.config_path().to_string_lossy().into_owned();
    running.wait_until(&redis, "status clears the old failure", |_| {
        let (ok, out, err) = worker(&["status", "--json", "--config", &config]);
        assert!(ok, "{err}");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        Ok(status["failures"]["redis-stream:redsink"]["failing"] == 0)
    });
}

/// A stream the configuration names that nothing has written yet: status says so.
#[test]
fn status_shows_a_named_stream_not_made_yet() {
    let redis = redsink_tests::RedisServer::start();
    let (_dir, config) = config_file(&format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: [\"data:none\"]}}\n",
        redis.port()
    ));
    let (ok, out, err) = worker(&["status", "--json", "--config", &config]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let shown = &status["streams"][0];
    assert_eq!(shown["stream"], "data:none", "{out}");
    assert_eq!(shown["length"], 0);
    assert_eq!(shown["group_exists"], false, "{out}");
}
