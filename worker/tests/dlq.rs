//! `redsink-worker dlq list | replay`: a poison event dead-lettered, its job fixed, the
//! letter replayed onto its stream and written exactly once; replayed again, nothing.

use redsink_tests::{call, RedisServer};

mod common;
use common::{add_invoice_event, run_worker, Worker, INVOICE_HASH_JOB};

const PROCESSORS: &str = "{block_ms: 100, reclaim_idle_ms: 300, max_deliveries: 2}";

fn dlq(worker: &Worker, args: &[&str]) -> (bool, String, String) {
    let config = worker.config_path();
    let mut all = vec!["--config", config.to_str().unwrap(), "dlq"];
    all.extend_from_slice(args);
    run_worker(&all)
}

#[test]
fn a_dead_letter_is_replayed_once_its_job_is_fixed_and_only_once() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // Keyed by a column the second event lacks: it cannot be written.
    let by_state = INVOICE_HASH_JOB.replace(
        "concat(['invoice:', InvoiceId])",
        "concat(['state:', BillingState])",
    );
    let mut worker = Worker::with_processors(&redis, &[&by_state], PROCESSORS);
    let event = |invoice: u32, state: &str| {
        format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"Total":"1.00"{state}}},"op":"c","source":{{"lsn":{invoice}}}}}"#
        )
    };
    add_invoice_event(&mut con, 1, &event(1, r#","BillingState":"CA""#));
    add_invoice_event(&mut con, 2, &event(2, ""));
    let dlq_stream = "dlq:data:chinook.public.invoice";
    worker.wait_until(&redis, "the dead letter", |con| {
        Ok(call::<i64>(con, &["XLEN", dlq_stream])? == 1)
    });
    worker.stop();

    let (ok, out, err) = dlq(&worker, &["list"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(dlq_stream)
            && out.contains("source data:chinook.public.invoice")
            && out.contains("deliveries 2")
            && out.contains("null"),
        "{out}"
    );
    let (ok, out, _) = dlq(&worker, &["list", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = listed[0]["letters"][0]["id"].as_str().unwrap().to_owned();
    let (ok, _, err) = dlq(&worker, &["replay"]);
    assert!(
        !ok && err.contains("--id ID (repeatable) or --all"),
        "{err}"
    );

    // The job fixed: the letter goes back onto its stream and is written.
    let worker = Worker::with_processors(&redis, &[INVOICE_HASH_JOB], PROCESSORS);
    let (ok, out, err) = dlq(
        &worker,
        &["replay", "data:chinook.public.invoice", "--id", &id],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "replayed {dlq_stream} {id} → data:chinook.public.invoice"
        )),
        "{out}"
    );
    worker.wait_until(&redis, "the replayed event", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:2"])? == 1)
    });
    assert_eq!(call::<i64>(&mut con, &["XLEN", dlq_stream]).unwrap(), 0);
    let length = call::<i64>(&mut con, &["XLEN", "data:chinook.public.invoice"]).unwrap();
    assert_eq!(length, 3, "the two events and the one replayed");

    // Again: nothing is left to replay, nothing is added.
    let (ok, out, err) = dlq(&worker, &["replay", "--all"]);
    assert!(ok, "{err}");
    assert_eq!(out, "no dead letters\n");
    assert_eq!(
        call::<i64>(&mut con, &["XLEN", "data:chinook.public.invoice"]).unwrap(),
        length
    );
    let (ok, out, _) = dlq(&worker, &["list"]);
    assert!(ok);
    assert_eq!(out, "no dead letters\n");
}

/// Two replays at once re-queue each letter once: the letter is removed and its change
/// added in one script, which adds only what it removed.
#[test]
fn replays_at_the_same_time_re_queue_each_letter_once() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let stream = "data:chinook.public.invoice";
    let dlq_stream = format!("dlq:{stream}");
    // The stream exists (the source finds it), and 50 letters wait.
    call::<String>(&mut con, &["XADD", stream, "*", "value", "{}"]).unwrap();
    call::<String>(&mut con, &["XGROUP", "CREATE", stream, "redsink", "$"]).unwrap();
    for invoice in 1..=50 {
        let value = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice}}},"op":"c","source":{{"lsn":{invoice}}}}}"#
        );
        call::<String>(
            &mut con,
            &[
                "XADD",
                &dlq_stream,
                "*",
                "source",
                stream,
                "at",
                "1-1",
                "error",
                "e",
                "deliveries",
                "5",
                "value",
                &value,
            ],
        )
        .unwrap();
    }
    let mut worker = Worker::with_processors(&redis, &[INVOICE_HASH_JOB], PROCESSORS);
    worker.stop();
    let config = worker.config_path();
    let replays: Vec<_> = (0..2)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                run_worker(&[
                    "--config",
                    config.to_str().unwrap(),
                    "dlq",
                    "replay",
                    "--all",
                ])
            })
        })
        .collect();
    for replay in replays {
        let (ok, _, err) = replay.join().unwrap();
        assert!(ok, "{err}");
    }
    assert_eq!(call::<i64>(&mut con, &["XLEN", &dlq_stream]).unwrap(), 0);
    assert_eq!(
        call::<i64>(&mut con, &["XLEN", stream]).unwrap(),
        1 + 50,
        "each letter re-queued once"
    );
}
