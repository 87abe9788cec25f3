//! The PostgreSQL source against a real PostgreSQL (wal2json) and redis-server: seed
//! 001's job and a hash job over the chinook-style `invoice` table — snapshot, inserts,
//! updates, deletes — end with Redis equal to the table.

use std::collections::BTreeMap;

use redsink_tests::{call, pg_client, PostgresServer, RedisServer};

mod common;
use common::Worker;

const SEED_001: &str = r#"source:
  server_name: chinook
  schema: public
  table: invoice
output:
  - uses: redis.write
    with:
      connection: target
      data_type: stream
      key:
        expression: "`invoice:events`"
        language: jmespath
      mapping:
        - InvoiceId: message_id
        - BillingCountry: country
        - Total
      expire: 100
"#;

const HASH_JOB: &str = r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['invoice:', InvoiceId])", language: jmespath}
"#;

const INVOICE_TABLE: &str = r#"CREATE TABLE invoice (
    "InvoiceId" integer PRIMARY KEY,
    "CustomerId" integer NOT NULL,
    "InvoiceDate" timestamp NOT NULL,
    "BillingAddress" varchar(70),
    "BillingCity" varchar(40),
    "BillingState" varchar(40),
    "BillingCountry" varchar(40),
    "BillingPostalCode" varchar(10),
    "Total" numeric(10,2) NOT NULL
)"#;

fn config(redis: &RedisServer, postgres: &PostgresServer) -> String {
    format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - type: postgres\n    server_name: chinook\n    host: 127.0.0.1\n    port: {}\n\
         \x20   database: postgres\n    user: postgres\n    tables: [public.invoice]\n    poll_ms: 50\n\
         processors: {{read_batch_size: 100}}\njobs: ./jobs\n",
        redis.port(),
        postgres.port()
    )
}

fn insert(client: &mut pg_client::Client, id: i32) {
    client
        .execute(
            r#"INSERT INTO invoice VALUES ($1, $2, '2021-01-01 10:00:00', 'Street 1', 'Berlin', NULL, 'Germany', '10115', $3::text::numeric)"#,
            &[&id, &(id % 7), &format!("{}.{:02}", id, id % 100)],
        )
        .unwrap();
}

/// What each invoice's hash must hold: the table's rows, mapped as documented.
fn expected(client: &mut pg_client::Client) -> BTreeMap<String, Vec<String>> {
    client
        .query(
            r#"SELECT "InvoiceId", "CustomerId", "BillingAddress", "BillingCity", "BillingCountry", "BillingPostalCode", "Total"::text FROM invoice"#,
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| {
            let id: i32 = row.get(0);
            let customer: i32 = row.get(1);
            let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
            let fields = vec![
                "InvoiceId".into(), id.to_string(),
                "CustomerId".into(), customer.to_string(),
                "InvoiceDate".into(), "2021-01-01T10:00:00Z".into(),
                "BillingAddress".into(), text(2),
                "BillingCity".into(), text(3),
                "BillingCountry".into(), text(4),
                "BillingPostalCode".into(), text(5),
                "Total".into(), text(6),
            ];
            (format!("invoice:{id}"), fields)
        })
        .collect()
}

#[test]
fn snapshot_then_changes_end_equal_to_the_table() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    client.batch_execute(INVOICE_TABLE).unwrap();
    // Deletes carry every column, so that stream messages of deletes have them too.
    client
        .batch_execute("ALTER TABLE invoice REPLICA IDENTITY FULL")
        .unwrap();
    for id in 1..=50 {
        insert(&mut client, id);
    }
    let worker = Worker::from_config(&config(&redis, &postgres), &[SEED_001, HASH_JOB]);
    redis.wait_until(&format!("snapshot written\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "invoice:events"])? == 50)
    });
    for id in 51..=70 {
        insert(&mut client, id);
    }
    client.execute(r#"UPDATE invoice SET "Total" = "Total" + 1, "BillingCountry" = 'France' WHERE "InvoiceId" <= 10"#, &[]).unwrap();
    client
        .execute(
            r#"DELETE FROM invoice WHERE "InvoiceId" IN (11, 12, 13, 60, 70)"#,
            &[],
        )
        .unwrap();
    redis.wait_until(&format!("every change written\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "invoice:events"])? == 50 + 20 + 10 + 5)
    });

    let mut con = redis.connection();
    let want = expected(&mut client);
    assert_eq!(want.len(), 65);
    for (key, fields) in &want {
        let got: Vec<String> = call(&mut con, &["HGETALL", key]).unwrap();
        let (mut got_pairs, mut want_pairs): (Vec<_>, Vec<_>) =
            (got.chunks(2).collect(), fields.chunks(2).collect());
        got_pairs.sort();
        want_pairs.sort();
        // NULL columns are left out of hashes.
        want_pairs.retain(|pair| pair[0] != "BillingState");
        assert_eq!(got_pairs, want_pairs, "{key}");
    }
    for deleted in [11, 12, 13, 60, 70] {
        assert_eq!(
            call::<i64>(&mut con, &["EXISTS", &format!("invoice:{deleted}")]).unwrap(),
            0
        );
    }
    let messages: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let ops: BTreeMap<String, usize> =
        messages
            .iter()
            .fold(BTreeMap::new(), |mut ops, (_, fields)| {
                *ops.entry(fields.last().unwrap().clone()).or_default() += 1;
                ops
            });
    assert_eq!(
        ops,
        BTreeMap::from([
            ("r".into(), 50),
            ("c".into(), 20),
            ("u".into(), 10),
            ("d".into(), 5)
        ])
    );
    for (_, fields) in &messages {
        let names: Vec<&str> = fields.iter().step_by(2).map(String::as_str).collect();
        assert_eq!(names, ["message_id", "country", "Total", "op_code"]);
    }
    let ttl: i64 = call(&mut con, &["TTL", "invoice:events"]).unwrap();
    assert!((1..=100).contains(&ttl));
}
