//! Module configuration: limits set as module arguments, as `redsink.*` lines of the
//! server's configuration, and with CONFIG SET; bad values are refused clearly.

use std::process::Command;
use std::time::Duration;

use redsink_tests::{call, call_err, free_port, module_path, Options, RedisServer};

fn setting(con: &mut redis::Connection, name: &str) -> String {
    let pair: Vec<String> = call(con, &["CONFIG", "GET", name]).unwrap();
    pair[1].clone()
}

#[test]
fn defaults_are_reported() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(setting(&mut con, "redsink.max-payload-bytes"), "1048576");
    assert_eq!(setting(&mut con, "redsink.max-depth"), "32");
    assert_eq!(setting(&mut con, "redsink.max-fields"), "4096");
    assert_eq!(setting(&mut con, "redsink.tombstone-ttl"), "86400");
}

#[test]
fn module_arguments_set_the_limits() {
    let server = RedisServer::with(Options::default().module_args(&[
        "max-payload-bytes",
        "64",
        "redsink.max-depth",
        "2",
    ]));
    let mut con = server.connection();
    assert_eq!(setting(&mut con, "redsink.max-payload-bytes"), "64");
    assert_eq!(setting(&mut con, "redsink.max-depth"), "2");
    call::<()>(&mut con, &["DS.CREATE", "s"]).unwrap();
    let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(100));
    assert!(
        call_err(&mut con, &["DS.UPDATE", "s", "d", &long]).starts_with("ERR payload is 108 bytes")
    );
    assert!(
        call_err(&mut con, &["DS.UPDATE", "s", "d", r#"{"a":{"b":{}}}"#])
            .starts_with("ERR JSON is nested deeper")
    );
}

#[test]
fn configuration_lines_and_config_set() {
    let server = RedisServer::with(Options::default().config("redsink.max-fields", "7"));
    let mut con = server.connection();
    assert_eq!(setting(&mut con, "redsink.max-fields"), "7");
    call::<()>(&mut con, &["CONFIG", "SET", "redsink.max-fields", "100"]).unwrap();
    assert_eq!(setting(&mut con, "redsink.max-fields"), "100");
    for (name, bad) in [
        ("redsink.max-fields", "0"),
        ("redsink.max-depth", "128"),
        ("redsink.max-payload-bytes", "lots"),
    ] {
        let error = call_err(&mut con, &["CONFIG", "SET", name, bad]);
        assert!(error.starts_with("ERR CONFIG SET failed"), "{error}");
    }
    assert_eq!(setting(&mut con, "redsink.max-depth"), "32");
}

/// A server given a bad module argument must refuse to start and say why.
fn refuses_to_start(module_args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &free_port().to_string(),
            "--save",
            "",
            "--logfile",
            "redis.log",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--loadmodule")
        .arg(module_path())
        .args(module_args)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server started with {module_args:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("redis.log")).unwrap();
    assert!(log.contains(expected), "{log}");
}

#[test]
fn bad_module_arguments_stop_the_server_with_a_reason() {
    refuses_to_start(&["max-typos", "3"], "unknown module argument 'max-typos'");
    refuses_to_start(
        &["max-depth", "1000"],
        "max-depth must be an integer from 1 to 127, got '1000'",
    );
    refuses_to_start(&["max-depth"], "option 'max-depth' needs a value");
}

#[test]
fn module_load_at_run_time_takes_arguments() {
    let server = RedisServer::with(Options::default().without_module());
    let mut con = server.connection();
    let path = module_path().to_string_lossy().into_owned();
    call::<()>(&mut con, &["MODULE", "LOAD", &path, "max-fields", "2"]).unwrap();
    assert_eq!(setting(&mut con, "redsink.max-fields"), "2");
    call::<()>(&mut con, &["DS.CREATE", "s"]).unwrap();
    assert!(
        call_err(&mut con, &["DS.UPDATE", "s", "d", r#"{"a":1,"b":2,"c":3}"#])
            .starts_with("ERR JSON has 3 fields, over redsink.max-fields (2)")
    );
}
