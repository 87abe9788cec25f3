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
