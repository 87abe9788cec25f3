//! The worker binary's command line: `--help`, and `--check` on good and bad setups.

use std::path::Path;
use std::process::Command;

fn worker(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_redsink-worker"))
        .args(args)
        .output()
        .expect("run redsink-worker");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
