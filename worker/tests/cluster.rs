//! The worker writing into a Redis Cluster (three primaries with the module), its change
//! streams on a server of their own: every change lands on the node of its key's slot.

use redis::Commands;
use redsink_tests::{call, RedisCluster, RedisServer};

mod common;
use common::{Worker, INVOICE_HASH_JOB, SEED_001};

#[test]
fn seed_001_and_hashes_written_into_a_cluster() {
    let streams = RedisServer::start();
    let cluster = RedisCluster::start(3);
    let mut con = streams.connection();
    for invoice in 1..=60 {
        let event = format!(
            r#"{{"before":null,"after":{{"InvoiceId":{invoice},"BillingCountry":"Germany","Total":{invoice}.5}},"source":{{"table":"invoice"}},"op":"c"}}"#
        );
        let key = format!(r#"{{"InvoiceId":{invoice}}}"#);
        call::<String>(
            &mut con,
            &["XADD", "data:chinook.public.invoice", "*", &key, &event],
        )
        .unwrap();
    }
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("\"{}\"", node.url()))
        .collect();
    let config = format!(
        "connections:\n  source: {{type: redis, host: 127.0.0.1, port: {}}}\n  target: {{type: redis, urls: [{}]}}\n\
         sources:\n  - {{type: redis-stream, connection: source, streams: \"data:*\"}}\n\
         jobs: ./jobs\n",
        streams.port(),
        urls.join(", ")
    );
    let worker = Worker::from_config(&config, &[SEED_001, INVOICE_HASH_JOB]);
    let client = redis::cluster::ClusterClient::new(
        cluster
            .nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>(),
    )
    .unwrap();
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
    let client = redis::cluster::ClusterClient::new(
        cluster
            .nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut con = client.get_connection().unwrap();
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
        .nodes
        .iter()
        .map(|node| format!("\"{}\"", node.url()))
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
