//! The worker as a process against real redis-servers: seed 001's job and a hash job
//! over Debezium events, without the module, a poison entry, and a graceful stop.

use redis::Connection;
use redsink_tests::{call, snapshot, Options, RedisServer};

mod common;
use common::{add_invoice_event, Worker, INVOICE_HASH_JOB, SEED_001};

/// Debezium Server's Redis format: key JSON → change event JSON.
fn debezium(con: &mut Connection, op: &str, invoice: u32, total: f64, country: &str) {
    let row = format!(
        r#"{{"InvoiceId":{invoice},"CustomerId":3,"BillingCountry":"{country}","Total":{total}}}"#
    );
    let (before, after) = match op {
        "d" => (row.as_str(), "null"),
        "u" => (row.as_str(), row.as_str()),
        _ => ("null", row.as_str()),
    };
    let event = format!(
        r#"{{"schema":{{}},"payload":{{"before":{before},"after":{after},"source":{{"table":"invoice"}},"op":"{op}","ts_ms":1}}}}"#
    );
    add_invoice_event(con, invoice, &event);
}

fn feed(con: &mut Connection) {
    for invoice in 1..=20 {
        debezium(con, "c", invoice, f64::from(invoice), "Germany");
    }
    for invoice in (1..=20).step_by(4) {
        debezium(con, "u", invoice, 100.0, "France");
    }
    for invoice in [2, 7] {
        debezium(con, "d", invoice, 0.0, "Germany");
    }
}

fn wait_for_stream(server: &RedisServer, key: &str, length: i64, worker: &Worker) {
    server.wait_until(
        &format!("{key} has {length} entries\n{}", worker.log()),
        |con| Ok(call::<i64>(con, &["XLEN", key])? >= length),
    );
}

#[test]
fn seed_001_and_a_hash_job_over_debezium_events() {
    let server = RedisServer::start();
    let mut con = server.connection();
    feed(&mut con);
    let mut worker = Worker::start(&server, &[SEED_001, INVOICE_HASH_JOB]);
    wait_for_stream(&server, "invoice:events", 27, &worker);

    let entries: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    assert_eq!(entries.len(), 27, "one message per change");
    for (_, fields) in &entries {
        let names: Vec<&str> = fields.iter().step_by(2).map(String::as_str).collect();
        assert_eq!(names, ["message_id", "country", "Total", "op_code"]);
    }
    assert_eq!(
        entries[0].1,
        [
            "message_id",
            "1",
            "country",
            "Germany",
            "Total",
            "1",
            "op_code",
            "c"
        ]
    );
    assert_eq!(entries[20].1[7], "u");
    assert_eq!(
        entries[26].1,
        [
            "message_id",
            "7",
            "country",
            "Germany",
            "Total",
            "0",
            "op_code",
            "d"
        ]
    );
    let ttl: i64 = call(&mut con, &["TTL", "invoice:events"]).unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");

    // The hash job: each invoice's latest state; deletes removed.
    let five: Vec<String> = call(&mut con, &["HGETALL", "invoice:5"]).unwrap();
    assert_eq!(
        five,
        [
            "InvoiceId",
            "5",
            "CustomerId",
            "3",
            "BillingCountry",
            "France",
            "Total",
            "100"
        ]
    );
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "invoice:2"]).unwrap(), 0);
    assert_eq!(call::<i64>(&mut con, &["EXISTS", "invoice:7"]).unwrap(), 0);
    server.wait_until("every entry acknowledged", |con| {
        let pending: Vec<redis::Value> =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(pending.first() == Some(&redis::Value::Int(0)))
    });
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    assert!(worker.log().contains("finishing the batch in hand"));
}

#[test]
fn without_the_module_the_final_state_is_the_same() {
    let with_module = RedisServer::start();
    let without = RedisServer::with(Options::default().without_module());
    for server in [&with_module, &without] {
        feed(&mut server.connection());
        let worker = Worker::start(server, &[SEED_001, INVOICE_HASH_JOB]);
        wait_for_stream(server, "invoice:events", 27, &worker);
        server.wait_until("hashes written", |con| {
            Ok(call::<i64>(con, &["EXISTS", "invoice:20"])? == 1)
        });
        if std::ptr::eq(server, &without) {
            assert!(
                worker.log().contains("no redsink module"),
                "{}",
                worker.log()
            );
        }
    }
    let state = |server: &RedisServer| {
        let mut con = server.connection();
        // Entry ids differ between the two servers' source streams (and so their outputs,
        // which carry them), as does the consumer group's bookkeeping; the data must not.
        let keys: Vec<_> = snapshot(&mut con)
            .into_iter()
            .filter(|(key, _)| !key.starts_with(b"data:") && key != b"invoice:events")
            .collect();
        let messages: Vec<(String, Vec<String>)> =
            call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
        let messages: Vec<Vec<String>> = messages.into_iter().map(|(_, fields)| fields).collect();
        let ttl: i64 = call(&mut con, &["TTL", "invoice:events"]).unwrap();
        (keys, messages, ttl > 0)
    };
    assert_eq!(state(&with_module), state(&without));
}

/// The `ACL SETUSER` line docs/worker.md gives for the worker's user, as arguments.
fn documented_worker_user() -> Vec<String> {
    let docs = std::fs::read_to_string(redsink_tests::workspace_dir().join("docs/worker.md"))
        .expect("read docs/worker.md");
    let line = docs
        .lines()
        .find(|line| line.starts_with("ACL SETUSER redsink-worker"))
        .expect("docs/worker.md gives the worker's ACL user");
    line.split(' ').map(str::to_owned).collect()
}

#[test]
fn runs_as_the_user_its_docs_give_with_and_without_the_module() {
    let with_module = RedisServer::start();
    let without = RedisServer::with(Options::default().without_module());
    for server in [&with_module, &without] {
        let mut con = server.connection();
        // Without the module, its commands' names are unknown: the docs say to leave them.
        let setuser: Vec<String> = documented_worker_user()
            .into_iter()
            .filter(|rule| {
                std::ptr::eq(server, &with_module)
                    || !(rule.starts_with("+sink.") || rule.starts_with("+ds."))
            })
            .collect();
        call::<()>(&mut con, &setuser).unwrap();
        let password = setuser
            .iter()
            .find_map(|rule| rule.strip_prefix('>'))
            .expect("the line sets a password");
        feed(&mut con);
        let config = format!(
            "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}, user: redsink-worker, \
             password: {password}}}\n\
             sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\", consumer: w}}\n\
             processors: {{block_ms: 100, reclaim_idle_ms: 300, max_deliveries: 3}}\n\
             jobs: ./jobs\n",
            server.port()
        );
        let worker = Worker::from_config(&config, &[SEED_001, INVOICE_HASH_JOB]);
        wait_for_stream(server, "invoice:events", 27, &worker);
        server.wait_until("hashes written", |con| {
            Ok(call::<i64>(con, &["EXISTS", "invoice:20"])? == 1)
        });
        let clients: String = call(&mut con, &["CLIENT", "LIST"]).unwrap();
        assert!(clients.contains("user=redsink-worker"), "{clients}");
        assert!(!worker.log().contains("NOPERM"), "{}", worker.log());
        let dead: i64 = call(&mut con, &["EXISTS", "dlq:data:chinook.public.invoice"]).unwrap();
        assert_eq!(dead, 0, "{}", worker.log());
    }
}

#[test]
fn a_poison_entry_goes_to_the_dead_letter_stream_and_holds_nothing_up() {
    let server = RedisServer::start();
    let mut con = server.connection();
    debezium(&mut con, "c", 1, 1.0, "Germany");
    // Not JSON at all, in Debezium's shape: fails every time.
    call::<String>(
        &mut con,
        &[
            "XADD",
            "data:chinook.public.invoice",
            "*",
            r#"{"InvoiceId":2}"#,
            "{not json",
        ],
    )
    .unwrap();
    // A row whose key expression gives null.
    call::<String>(
        &mut con,
        &[
            "XADD",
            "data:chinook.public.invoice",
            "*",
            "body",
            r#"{"Other":1}"#,
        ],
    )
    .unwrap();
    debezium(&mut con, "c", 3, 3.0, "Germany");
    let worker = Worker::start(&server, &[INVOICE_HASH_JOB]);
    server.wait_until(&format!("later entries written\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:3"])? == 1)
    });
    server.wait_until(
        &format!("two entries dead-lettered\n{}", worker.log()),
        |con| Ok(call::<i64>(con, &["XLEN", "dlq:data:chinook.public.invoice"])? == 2),
    );
    let dead: Vec<(String, Vec<String>)> = call(
        &mut con,
        &["XRANGE", "dlq:data:chinook.public.invoice", "-", "+"],
    )
    .unwrap();
    let field = |entry: &[String], name: &str| {
        entry
            .iter()
            .position(|f| f == name)
            .map(|i| entry[i + 1].clone())
            .unwrap_or_default()
    };
    // The one dead-letter format of every source: source, at, error, deliveries, then
    // the change's own fields.
    assert_eq!(field(&dead[0].1, "source"), "data:chinook.public.invoice");
    assert!(field(&dead[0].1, "at").contains('-'), "{:?}", dead[0].1);
    assert_eq!(field(&dead[0].1, "deliveries"), "3");
    assert_eq!(
        dead[0].1.iter().step_by(2).take(4).collect::<Vec<_>>(),
        ["source", "at", "error", "deliveries"]
    );
    assert!(
        field(&dead[1].1, "error")
            .contains("the key expression 'concat(['invoice:', InvoiceId])' gave"),
        "{:?}",
        dead[1].1
    );
    assert_eq!(
        field(&dead[1].1, "body"),
        r#"{"Other":1}"#,
        "the original fields travel along"
    );
    server.wait_until("nothing left pending", |con| {
        let pending: Vec<redis::Value> =
            call(con, &["XPENDING", "data:chinook.public.invoice", "redsink"])?;
        Ok(pending.first() == Some(&redis::Value::Int(0)))
    });
}

/// Seed 004 (RuleGo's stream endpoint): device messages on a stream, routed by a
/// condition to a device data stream, with a reply on the message's `responseTopic`.
#[test]
fn rulego_style_routing_to_a_device_stream_with_replies() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "telemetry"]).unwrap();
    let route = r#"name: device-telemetry
source:
  streams: [device.msg.request]
transform:
  - uses: filter
    with: {expression: "type == 'telemetry'", language: jmespath}
output:
  - uses: redis.write
    with:
      data_type: device_stream
      key: {expression: "`telemetry`", language: jmespath}
      args: {device: deviceId}
"#;
    let request = |con: &mut Connection, fields: &[&str]| -> String {
        let mut args = vec!["XADD", "device.msg.request", "*"];
        args.extend_from_slice(fields);
        call(con, &args).unwrap()
    };
    let d1 = request(
        &mut con,
        &[
            "body",
            r#"{"deviceId":"d1","type":"telemetry","temperature":21.5,"responseTopic":"device.msg.response"}"#,
        ],
    );
    let d2 = request(
        &mut con,
        &[
            "deviceId",
            "d2",
            "type",
            "telemetry",
            "temperature",
            "19",
            "responseTopic",
            "device.msg.response",
        ],
    );
    let heartbeat = request(
        &mut con,
        &[
            "body",
            r#"{"deviceId":"d3","type":"heartbeat","responseTopic":"device.msg.response"}"#,
        ],
    );
    let no_device = request(
        &mut con,
        &[
            "body",
            r#"{"type":"telemetry","responseTopic":"device.msg.response"}"#,
        ],
    );
    let worker = Worker::reading(&server, &[route], "[device.msg.request]");

    server.wait_until(&format!("four replies\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "device.msg.response"])? == 4)
    });
    let record: serde_json::Value =
        serde_json::from_str(&call::<String>(&mut con, &["DS.GET", "telemetry", "d1"]).unwrap())
            .unwrap();
    assert_eq!(record["temperature"], 21.5);
    assert_eq!(record["deviceId"], "d1");
    let ms: i64 = d1.split('-').next().unwrap().parse().unwrap();
    let stamped = record["timestamp"].as_str().unwrap();
    assert!(
        stamped.ends_with('Z') && stamped.len() == 24,
        "{stamped} (the message's time, {ms})"
    );
    let d2_record: serde_json::Value =
        serde_json::from_str(&call::<String>(&mut con, &["DS.GET", "telemetry", "d2"]).unwrap())
            .unwrap();
    assert_eq!(d2_record["temperature"], "19");
    assert_eq!(
        call::<Option<String>>(&mut con, &["DS.GET", "telemetry", "d3"]).unwrap(),
        None,
        "filtered out"
    );

    let replies: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "device.msg.response", "-", "+"]).unwrap();
    let reply_for = |id: &str| {
        replies
            .iter()
            .find(|(_, fields)| {
                fields
                    .windows(2)
                    .any(|pair| pair[0] == "source_id" && pair[1] == id)
            })
            .map(|(_, fields)| fields.clone())
            .unwrap_or_else(|| panic!("no reply for {id}: {replies:?}"))
    };
    for id in [&d1, &d2, &heartbeat] {
        assert_eq!(&reply_for(id)[..2], ["body", "ok"]);
    }
    let failed = reply_for(&no_device);
    assert_eq!(&failed[..2], ["body", "error"]);
    assert!(
        failed
            .iter()
            .any(|f| f.contains("the device expression 'deviceId' gave null")),
        "{failed:?}"
    );
}

#[test]
fn prometheus_metrics_count_what_happened() {
    let server = RedisServer::start();
    let mut con = server.connection();
    feed(&mut con);
    let port = redsink_tests::free_port();
    let worker = Worker::with_metrics(&server, &[SEED_001], port);
    wait_for_stream(&server, "invoice:events", 27, &worker);
    let scrape = || common::scrape_metrics(port);
    server.wait_until("27 events acknowledged in the metrics", |_| {
        Ok(scrape()
            .contains(r#"redsink_events_acked_total{stream="data:chinook.public.invoice"} 27"#))
    });
    let page = scrape();
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    for line in [
        r#"redsink_events_read_total{stream="data:chinook.public.invoice"} 27"#,
        r#"redsink_events_written_total{stream="data:chinook.public.invoice"} 27"#,
        r#"redsink_events_dead_lettered_total{stream="data:chinook.public.invoice"} 0"#,
        r#"redsink_batch_seconds_count{stream="data:chinook.public.invoice"}"#,
    ] {
        assert!(page.contains(line), "missing {line}\n{page}");
    }
    server.wait_until("lag sampled at 0", |_| {
        Ok(scrape().contains(r#"redsink_stream_lag{stream="data:chinook.public.invoice"} 0"#))
    });
    // Changes by operation, what no job wrote or could plan, time per stage, and the
    // age of the oldest unfinished entry (none left).
    let page = scrape();
    let value = |name: &str, label: &str| -> Option<f64> {
        page.lines()
            .find(|line| {
                line.starts_with(name)
                    && line[name.len()..].starts_with('{')
                    && line.contains(r#"stream="data:chinook.public.invoice""#)
                    && line.contains(label)
            })
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(
        value("redsink_events_by_op_total", r#"op="c""#),
        Some(20.0),
        "{page}"
    );
    assert_eq!(value("redsink_events_by_op_total", r#"op="u""#), Some(5.0));
    assert_eq!(value("redsink_events_by_op_total", r#"op="d""#), Some(2.0));
    assert_eq!(value("redsink_events_filtered_total", ""), Some(0.0));
    assert_eq!(value("redsink_events_rejected_total", ""), Some(0.0));
    for stage in ["plan", "write", "ack"] {
        let count = value(
            "redsink_stage_seconds_count",
            &format!(r#"stage="{stage}""#),
        );
        assert!(count.is_some_and(|n| n >= 1.0), "{stage}\n{page}");
    }
    server.wait_until("the oldest unfinished entry sampled", |_| {
        Ok(scrape().contains(
            r#"redsink_stream_oldest_unprocessed_seconds{stream="data:chinook.public.invoice"} 0"#,
        ))
    });
}

/// A stream that appears while the worker runs (the README's walk-through: start the
/// worker, then XADD) is read at once: the module announces it, and the worker looks
/// for it then instead of at its next scan — both when it reads no stream yet and while
/// its read waits on others.
#[test]
fn a_new_stream_is_read_at_once() {
    let server = RedisServer::start();
    let customer_job = "source: {server_name: chinook, schema: public, table: customer}\noutput:\n  - uses: redis.write\n    with:\n      key: {expression: \"concat(['customer:', CustomerId])\"}\n";
    let worker = Worker::start(&server, &[INVOICE_HASH_JOB, customer_job]);
    worker.wait_until(&server, "started", |_| {
        Ok(worker.log().contains("redsink module found"))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut con = server.connection();
    let written_within = |con: &mut Connection, stream: &str, fields: &str, key: &str| {
        let started = std::time::Instant::now();
        call::<String>(con, &["XADD", stream, "*", "value", fields]).unwrap();
        while call::<i64>(con, &["EXISTS", key]).unwrap() == 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{}",
                worker.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        started.elapsed()
    };
    let first = written_within(
        &mut con,
        "data:chinook.public.invoice",
        r#"{"before":null,"after":{"InvoiceId":1,"Total":"1.00"},"op":"c","source":{"lsn":1}}"#,
        "invoice:1",
    );
    // Now the worker's read waits on the invoice stream.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = written_within(
        &mut con,
        "data:chinook.public.customer",
        r#"{"before":null,"after":{"CustomerId":7},"op":"c","source":{"lsn":2}}"#,
        "customer:7",
    );
    eprintln!("new streams written within {first:?} and {second:?}");
    // The scan comes every 2 s: without the announcement, these take up to 2 s.
    for took in [first, second] {
        assert!(
            took < std::time::Duration::from_millis(500),
            "{first:?} {second:?}\n{}",
            worker.log()
        );
    }
}

/// The Grafana dashboard in docs/grafana shows metrics the worker exports (each name is
/// one metrics.rs registers), and every panel has a query.
#[test]
fn the_grafana_dashboard_shows_what_the_worker_exports() {
    let root = redsink_tests::workspace_dir();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/grafana/redsink-worker.json")).unwrap(),
    )
    .unwrap();
    let exported = std::fs::read_to_string(root.join("worker/src/metrics.rs")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .match_indices("redsink_")
                .map(|(at, _)| {
                    let rest = &expr[at..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                })
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(&format!("\"{name}\"")),
                    "{name} (in {expr}) is not a metric the worker exports"
                );
            }
        }
    }
}
