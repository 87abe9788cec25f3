//! TLS at both ends, against real servers with certificates of a CA of our own:
//! PostgreSQL (the certificate checked against `ca_cert`, refused against the system's
//! roots, accepted unchecked with `skip_verify`) and Redis (source and writes over TLS).

use redsink_tests::{call, free_port, Options, PostgresServer, RedisServer, TestCertificates};

mod common;
use common::{Worker, INVOICE_HASH_JOB};

fn postgres_config(redis: &RedisServer, postgres: &PostgresServer, tls: &str) -> String {
    format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - {{type: postgres, server_name: chinook, host: 127.0.0.1, port: {}, \
         database: postgres, user: postgres, tables: [public.invoice], poll_ms: 50, {tls}}}\n\
         jobs: ./jobs\n",
        redis.port(),
        postgres.port()
    )
}

#[test]
fn postgres_over_tls_checks_the_certificate() {
    let certificates = TestCertificates::generate();
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    postgres.enable_tls(&certificates);
    let mut client = postgres.client().unwrap();
    client
        .batch_execute(
            r#"CREATE TABLE invoice ("InvoiceId" int PRIMARY KEY, "Total" numeric(10,2));
               INSERT INTO invoice VALUES (1, 3.96), (2, 1.98)"#,
        )
        .unwrap();

    // The system's roots do not know our CA.
    let mut refused = Worker::from_config(
        &postgres_config(&redis, &postgres, "tls: true"),
        &[INVOICE_HASH_JOB],
    );
    assert_eq!(refused.exit_code(), Some(1));
    assert!(
        refused.log().contains("cannot connect") && refused.log().contains("UnknownIssuer"),
        "{}",
        refused.log()
    );

    let checked = format!("tls: true, ca_cert: {}", certificates.ca.display());
    let worker = Worker::from_config(
        &postgres_config(&redis, &postgres, &checked),
        &[INVOICE_HASH_JOB],
    );
    redis.wait_until(&format!("the snapshot\n{}", worker.log()), |con| {
        Ok(call::<String>(con, &["HGET", "invoice:2", "Total"]).ok() == Some("1.98".into()))
    });
    client
        .batch_execute(r#"UPDATE invoice SET "Total" = 5.00 WHERE "InvoiceId" = 1"#)
        .unwrap();
    redis.wait_until(&format!("the update\n{}", worker.log()), |con| {
        Ok(call::<String>(con, &["HGET", "invoice:1", "Total"])? == "5.00")
    });
    let encrypted: Vec<bool> = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'redsink-worker'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        encrypted,
        [true, true],
        "the worker's connections (SQL and replication) are encrypted"
    );
    drop(worker);

    let unchecked = Worker::from_config(
        &postgres_config(&redis, &postgres, "tls: true, skip_verify: true"),
        &[INVOICE_HASH_JOB],
    );
    redis.wait_until(&format!("started\n{}", unchecked.log()), |_| {
        Ok(unchecked.log().contains("postgres source started"))
    });
}

#[test]
fn redis_over_tls_reads_and_writes() {
    let certificates = TestCertificates::generate();
    let tls_port = free_port().to_string();
    let redis = RedisServer::with(
        Options::default()
            .config("tls-port", &tls_port)
            .config("tls-cert-file", &certificates.cert.display().to_string())
            .config("tls-key-file", &certificates.key.display().to_string())
            .config("tls-ca-cert-file", &certificates.ca.display().to_string())
            .config("tls-auth-clients", "no"),
    );
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {tls_port}, tls: true, ca_cert: {}}}\n\
         sources:\n  - {{type: redis-stream, connection: target, streams: \"data:*\"}}\n\
         processors: {{block_ms: 100}}\njobs: ./jobs\n",
        certificates.ca.display()
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    let mut con = redis.connection();
    call::<String>(
        &mut con,
        &[
            "XADD",
            "data:chinook.public.invoice",
            "*",
            "value",
            r#"{"before":null,"after":{"InvoiceId":7,"Total":"2.50"},"op":"c","source":{"lsn":10}}"#,
        ],
    )
    .unwrap();
    redis.wait_until(&format!("the event\n{}", worker.log()), |con| {
        Ok(call::<String>(con, &["HGET", "invoice:7", "Total"]).ok() == Some("2.50".into()))
    });
    // Only TLS is spoken on that port: the worker got there, so it spoke TLS.
    assert!(
        worker.log().contains("redsink module found"),
        "{}",
        worker.log()
    );
}
