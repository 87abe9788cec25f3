//! The worker writing into a Redis Cluster (three primaries with the module), its change
//! streams on a server of their own: every change lands on the node of its key's slot.

use redis::Commands;
use redsink_tests::{call, RedisCluster, RedisServer};

mod common;
use common::{acknowledged, add_invoice_event, Worker, INVOICE_HASH_JOB, SEED_001};

const STREAM: &str = "data:chinook.public.invoice";

/// Waits, a minute at the most, until `total` changes of `STREAM` are acknowledged.
fn wait_acknowledged(con: &mut redis::Connection, worker: &Worker, total: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged(con, STREAM).unwrap() < i64::from(total) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every change acknowledged:\n{}",
            worker.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn seed_001_and_hashes_written_into_a_cluster() {
    let streams = RedisServer::start();
    let cluster = RedisCluster::start(3);
    let mut con = streams.connection();
    for invoice in 1..=60 {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"BillingCountry":"Germany","Total":{invoice}.5}},"source":{{"table":"invoice"}},"op":"c"}}"#
        );
        add_invoice_event(&mut con, invoice, &event);
    }
    let config = cluster.worker_config(&streams, "{}");
    let worker = Worker::from_config(&config, &[SEED_001, INVOICE_HASH_JOB]);
    let client = cluster.client();
    let mut target = client.get_connection().unwrap();
    worker.wait_until(&cluster.nodes[0], "every change written", |_| {
        let written: usize = target.xlen("invoice:events")?;
        Ok(written == 60)
    });
    for invoice in 1..=60 {
        let key = format!("invoice:{invoice}");
        let fields: Vec<String> = target.hgetall(&key).unwrap();
        assert_eq!(
            fields,
            [
                "InvoiceId",
                &invoice.to_string(),
                "BillingCountry",
                "Germany",
                "Total",
                &format!("{invoice}.5")
            ],
            "{key}"
        );
        let node = cluster.node_for(&key);
        assert_eq!(
            call::<i64>(&mut node.connection(), &["EXISTS", &key]).unwrap(),
            1,
            "{key} on the node of its slot"
        );
    }
    let nodes_with_invoices = cluster
        .nodes
        .iter()
        .filter(|node| {
            let keys: Vec<String> = call(&mut node.connection(), &["KEYS", "invoice:*"]).unwrap();
            !keys.is_empty()
        })
        .count();
    assert_eq!(nodes_with_invoices, 3);
    assert!(
        worker.log().contains("redsink module found"),
        "{}",
        worker.log()
    );
}

/// The change streams on the cluster too, on different nodes: found on every primary,
/// each read on its own, every change written and acknowledged.
#[test]
fn streams_on_every_node_of_a_cluster() {
    let cluster = RedisCluster::start(3);
    let mut con = cluster.client().get_connection().unwrap();
    let tables = ["invoice", "customer", "album", "track", "genre", "artist"];
    for table in tables {
        for id in 1..=20 {
            let event = format!(
                r#"{{"before":null,"after":{{"id":{id},"name":"{table} {id}"}},"source":{{"table":"{table}"}},"op":"c"}}"#
            );
            let _: String = redis::cmd("XADD")
                .arg(format!("data:chinook.public.{table}"))
                .arg("*")
                .arg(format!(r#"{{"id":{id}}}"#))
                .arg(event)
                .query(&mut con)
                .unwrap();
        }
    }
    let holding_streams = cluster
        .nodes
        .iter()
        .filter(|node| {
            let keys: Vec<String> = call(&mut node.connection(), &["KEYS", "data:*"]).unwrap();
            !keys.is_empty()
        })
        .count();
    assert!(holding_streams >= 2, "streams on more than one node");
    let job = r#"source: {server_name: chinook, schema: public, table: "*"}
output:
  - uses: redis.write
    with:
      key: {expression: "concat([name, ':', id])", language: jmespath}
"#;
    let urls: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect();
    let config = format!(
        "connections:\n  target: {{type: redis, urls: [{}]}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\"}}\n\
         processors: {{block_ms: 100}}\n\
         jobs: ./jobs\n",
        urls.join(", ")
    );
    let worker = Worker::from_config(&config, &[job]);
    worker.wait_until(&cluster.nodes[0], "every change acknowledged", |_| {
        for table in tables {
            let pending: Vec<redis::Value> = redis::cmd("XPENDING")
                .arg(format!("data:chinook.public.{table}"))
                .arg("redsink")
                .query(&mut con)?;
            let read: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(format!("data:chinook.public.{table}"))
                .query(&mut con)?;
            let done = pending.first() == Some(&redis::Value::Int(0))
                && read.first().and_then(|group| group.get("entries-read"))
                    == Some(&redis::Value::Int(20));
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    });
    for table in tables {
        for id in 1..=20 {
            let key = format!("{table} {id}:{id}");
            let fields: Vec<String> = con.hgetall(&key).unwrap();
            assert_eq!(
                fields,
                ["id", &id.to_string(), "name", &format!("{table} {id}")]
            );
        }
    }
}

/// Seed 001's job and a hash job into a cluster with a replica per primary while events
/// flow; the primary holding `invoice:events` SIGKILLed mid-flow and its replica promoted,
/// the killed node then back as a replica: no change lost, no message twice, every hash
/// as the source's last row (the worker waits for a replica before acknowledging).
#[test]
fn a_primary_killed_mid_flow_loses_and_duplicates_nothing() {
    const EVENTS: u32 = 1500;
    const INVOICES: u32 = 300;
    let streams = RedisServer::start();
    let mut cluster = RedisCluster::with_replicas(3, 1);
    let config = cluster.worker_config(
        &streams,
        "{block_ms: 100, read_batch_size: 50, wait_replicas: 1, wait_timeout_ms: 2000}",
    );
    let worker = Worker::from_config(&config, &[SEED_001, INVOICE_HASH_JOB]);
    let source_url = streams.url();
    let producer = std::thread::spawn(move || {
        let mut con = redis::Client::open(source_url)
            .unwrap()
            .get_connection()
            .unwrap();
        for i in 1..=EVENTS {
            let invoice = (i - 1) % INVOICES + 1;
            let op = if i <= INVOICES { "c" } else { "u" };
            let event = format!(
                r#"{{"before":null,"after":{{"InvoiceId":{invoice},"BillingCountry":"Germany","Total":{i}}},"source":{{"table":"invoice"}},"op":"{op}"}}"#
            );
            add_invoice_event(&mut con, invoice, &event);
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    let acked = |con: &mut redis::Connection| acknowledged(con, STREAM);
    streams.wait_until("a fifth acknowledged", |con| Ok(acked(con)? >= 300));
    let victim = cluster.index_for("invoice:events");
    cluster.nodes[victim].kill();
    producer.join().unwrap();
    // Its replica promoted, the killed node comes back as the new primary's replica (as an
    // operator restarts it): until then, with `wait_replicas: 1`, nothing written to the
    // new primary is acknowledged (`on_wait_timeout: retry`).
    cluster.wait_until_ok();
    cluster.nodes[victim].restart();
    cluster.wait_until_ok();
    let mut con = streams.connection();
    wait_acknowledged(&mut con, &worker, EVENTS);
    cluster.wait_until_ok();
    let mut target = cluster.client().get_connection().unwrap();
    let messages: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("invoice:events")
        .arg("-")
        .arg("+")
        .query(&mut target)
        .unwrap();
    assert_eq!(
        messages.len(),
        EVENTS as usize,
        "one message per change, none twice\n{}",
        worker.log()
    );
    let totals: Vec<String> = messages
        .iter()
        .map(|(_, fields)| fields[5].clone())
        .collect();
    let expected: Vec<String> = (1..=EVENTS).map(|i| i.to_string()).collect();
    assert_eq!(totals, expected, "in order");
    for invoice in 1..=INVOICES {
        let last = (EVENTS - INVOICES) + invoice;
        let total: String = target.hget(format!("invoice:{invoice}"), "Total").unwrap();
        assert_eq!(total, last.to_string(), "invoice:{invoice}");
    }
    assert!(
        worker.log().contains("retrying"),
        "the failover was felt:\n{}",
        worker.log()
    );
}

/// A slot range resharded (`redis-cli --cluster reshard`) while events flow; then changes
/// older than every key's last write come again (their LSNs say so): no key moves
/// backwards, the moved ones included — their versions moved with them.
#[test]
fn resharding_mid_flow_keeps_keys_from_moving_backwards() {
    const EVENTS: u32 = 3000;
    const INVOICES: u32 = 300;
    let streams = RedisServer::start();
    let cluster = RedisCluster::start(3);
    let config = cluster.worker_config(&streams, "{block_ms: 100, read_batch_size: 100}");
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    // Debezium events with their LSN: the version of each write.
    let add = |con: &mut redis::Connection, invoice: u32, lsn: u32, total: i64| {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"Total":{total}}},"source":{{"table":"invoice","lsn":{lsn}}},"op":"u"}}"#
        );
        add_invoice_event(con, invoice, &event);
    };
    let source_url = streams.url();
    let producer = std::thread::spawn(move || {
        let mut con = redis::Client::open(source_url)
            .unwrap()
            .get_connection()
            .unwrap();
        for lsn in 1..=EVENTS {
            add(&mut con, (lsn - 1) % INVOICES + 1, lsn, i64::from(lsn));
            if lsn % 100 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    });
    let acked = |con: &mut redis::Connection| acknowledged(con, STREAM);
    streams.wait_until("a third acknowledged", |con| Ok(acked(con)? >= 1000));
    // Where each invoice's hash is before the resharding.
    let home = |cluster: &RedisCluster| -> Vec<u16> {
        (1..=INVOICES)
            .map(|invoice| cluster.node_for(&format!("invoice:{invoice}")).port())
            .collect()
    };
    let before = home(&cluster);
    let id = |node: &RedisServer| -> String {
        call(&mut node.connection(), &["CLUSTER", "MYID"]).unwrap()
    };
    let reshard = std::process::Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", cluster.nodes[0].port()),
        ])
        .args(["--cluster-from", &id(&cluster.nodes[0])])
        .args(["--cluster-to", &id(&cluster.nodes[1])])
        .args(["--cluster-slots", "3000", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        reshard.status.success(),
        "{}",
        String::from_utf8_lossy(&reshard.stdout)
    );
    producer.join().unwrap();
    let mut con = streams.connection();
    wait_acknowledged(&mut con, &worker, EVENTS);
    let after = home(&cluster);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(moved > 20, "only {moved} invoices moved");
    // Changes older than every invoice's last write, again.
    for invoice in 1..=INVOICES {
        add(&mut con, invoice, invoice, -1);
    }
    wait_acknowledged(&mut con, &worker, EVENTS + INVOICES);
    for invoice in 1..=INVOICES {
        let key = format!("invoice:{invoice}");
        let total: String = call(
            &mut cluster.node_for(&key).connection(),
            &["HGET", &key, "Total"],
        )
        .unwrap();
        let last = EVENTS - INVOICES + invoice;
        assert_eq!(total, last.to_string(), "{key} moved backwards");
    }
}
