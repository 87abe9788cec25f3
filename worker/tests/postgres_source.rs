//! The PostgreSQL source against a real PostgreSQL (wal2json) and redis-server: seed
//! 001's job and a hash job over the chinook-style `invoice` table — snapshot, inserts,
//! updates, deletes — end with Redis equal to the table, also when the worker is killed
//! and PostgreSQL crashes along the way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use redsink_tests::{call, pg_client, PostgresServer, RedisCluster, RedisServer};

mod common;
use common::{Worker, INVOICE_HASH_JOB, SEED_001};

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

/// redis-server, and PostgreSQL with `schema` run on it, and a client to it.
fn servers(schema: &str) -> (RedisServer, PostgresServer, pg_client::Client) {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    client.batch_execute(schema).unwrap();
    (redis, postgres, client)
}

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

/// Waits until the hash `key`'s `field` holds `value`.
fn wait_for_field(redis: &RedisServer, worker: &Worker, key: &str, field: &str, value: &str) {
    worker.wait_until(redis, &format!("{key} {field} = {value}"), |con| {
        Ok(call::<Option<String>>(con, &["HGET", key, field])?.as_deref() == Some(value))
    });
}

/// Asserts that the `invoice:*` hashes are exactly the table's rows; returns how many.
fn hashes_equal_the_table(redis: &RedisServer, client: &mut pg_client::Client) -> usize {
    let mut con = redis.connection();
    let want = expected(client);
    let keys: BTreeSet<String> = call::<Vec<String>>(&mut con, &["KEYS", "invoice:[0-9]*"])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        want.keys().cloned().collect::<BTreeSet<_>>(),
        "one hash per row, none for deleted rows"
    );
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
    want.len()
}

fn snapshot_then_changes_end_equal_to_the_table(plugin: &str) {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    // Deletes carry every column, so that stream messages of deletes have them too.
    client
        .batch_execute("ALTER TABLE invoice REPLICA IDENTITY FULL")
        .unwrap();
    for id in 1..=50 {
        insert(&mut client, id);
    }
    let worker = Worker::from_config(
        &with_plugin(&config(&redis, &postgres), plugin),
        &[SEED_001, INVOICE_HASH_JOB],
    );
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
    assert_eq!(hashes_equal_the_table(&redis, &mut client), 65);
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

/// Counts what committed, whatever crashes: a trigger in the changing transaction.
const AUDIT: &str = r#"CREATE TABLE audit (op text NOT NULL);
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit VALUES (CASE TG_OP WHEN 'INSERT' THEN 'c' WHEN 'UPDATE' THEN 'u' ELSE 'd' END);
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON invoice FOR EACH ROW EXECUTE FUNCTION audit();"#;

const SNAPSHOT_ROWS: i32 = 3_000;

/// Two writers committing small transactions (`churn`) until stopped.
struct Churn {
    stop: Arc<AtomicBool>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(port: u16) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (1..=2)
            .map(|writer| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || churn(port, writer, stop))
            })
            .collect();
        Churn { stop, writers }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.join().unwrap();
        }
    }
}

/// Small transactions of inserts, updates and deletes until `stop`, through crashes of
/// PostgreSQL. Every insert and update sets a Total no other change sets, so that each
/// stream message can be told apart.
fn churn(port: u16, writer: i32, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(writer as u64);
    let (mut next_id, mut serial) = (100_000 * writer, 10_000_000 * writer);
    let mut client: Option<pg_client::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(con) = client.as_mut().filter(|con| !con.is_closed()) else {
            client = pg_client::Client::connect(
                &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                pg_client::NoTls,
            )
            .ok();
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.random_range(1..=4) {
            serial += 1;
            let id = rng.random_range(1..=SNAPSHOT_ROWS);
            sql += &match rng.random_range(0..10) {
                0..=2 => {
                    next_id += 1;
                    format!(
                        r#"INSERT INTO invoice VALUES ({next_id}, 1, '2021-01-01 10:00:00', 'Street 1', 'Oslo', NULL, 'Norway', '0150', {serial});"#
                    )
                }
                3 => format!(r#"DELETE FROM invoice WHERE "InvoiceId" = {id};"#),
                _ => format!(
                    r#"UPDATE invoice SET "Total" = {serial}, "BillingCity" = 'City {serial}' WHERE "InvoiceId" = {id};"#
                ),
            };
        }
        sql += "COMMIT;";
        // Deadlocks between the writers and crashes roll transactions back: fine.
        if con.batch_execute(&sql).is_err() && !con.is_closed() {
            let _ = con.batch_execute("ROLLBACK");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn worker_killed_and_postgres_crashing_lose_and_duplicate_nothing(plugin: &str) {
    let (redis, mut postgres, mut client) = servers(INVOICE_TABLE);
    client
        .batch_execute("ALTER TABLE invoice REPLICA IDENTITY FULL")
        .unwrap();
    client
        .execute(
            r#"INSERT INTO invoice SELECT i, i % 7, '2021-01-01 10:00:00', 'Street 1', 'Berlin', NULL, 'Germany', '10115', i FROM generate_series(1, $1) i"#,
            &[&SNAPSHOT_ROWS],
        )
        .unwrap();
    client.batch_execute(AUDIT).unwrap();
    let xlen = |con: &mut redis::Connection| call::<i64>(con, &["XLEN", "invoice:events"]);

    // Killed in the middle of the snapshot, the worker resumes it.
    let mut worker = Worker::from_config(
        &with_plugin(&config(&redis, &postgres), plugin),
        &[SEED_001, INVOICE_HASH_JOB],
    );
    redis.wait_until("a third of the snapshot", |con| Ok(xlen(con)? >= 1_000));
    worker.kill();
    worker.spawn();
    redis.wait_until(&format!("the snapshot\n{}", worker.log()), |con| {
        Ok(xlen(con)? >= SNAPSHOT_ROWS as i64)
    });

    // Changes flow while the worker is killed and PostgreSQL crashes.
    let writers = Churn::start(postgres.port());
    let mut rng = StdRng::seed_from_u64(5);
    let mut kill_at_random = |worker: &mut Worker| {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..900)));
        worker.kill();
        std::thread::sleep(Duration::from_millis(100));
        worker.spawn();
    };
    kill_at_random(&mut worker);
    kill_at_random(&mut worker);
    // A crash of PostgreSQL also takes the slot back to its last checkpoint: what the
    // worker wrote since comes again, and must change nothing.
    std::thread::sleep(Duration::from_millis(300));
    postgres.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !worker.log().contains("reconnected to postgres") {
        assert!(std::time::Instant::now() < deadline, "{}", worker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        kill_at_random(&mut worker);
    }
    std::thread::sleep(Duration::from_millis(500));
    writers.stop();

    let mut client = postgres.client().unwrap();
    let committed: BTreeMap<String, i64> = client
        .query("SELECT op, count(*) FROM audit GROUP BY op", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(committed.values().all(|&n| n > 50), "{committed:?}");
    let changes: i64 = committed.values().sum();
    redis.wait_until(&format!("every change\n{}", worker.log()), |con| {
        Ok(xlen(con)? >= SNAPSHOT_ROWS as i64 + changes)
    });
    // Nothing more arrives: no duplicates written late.
    std::thread::sleep(Duration::from_millis(500));
    let mut con = redis.connection();
    let messages: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let mut by_op: BTreeMap<String, i64> = BTreeMap::new();
    let mut distinct = BTreeSet::new();
    for (_, fields) in &messages {
        let field = |name: &str| {
            let at = fields.iter().position(|f| f == name).unwrap();
            fields[at + 1].clone()
        };
        *by_op.entry(field("op_code")).or_default() += 1;
        distinct.insert((field("op_code"), field("message_id"), field("Total")));
    }
    assert_eq!(distinct.len(), messages.len(), "no message twice");
    let mut want = committed.clone();
    want.insert("r".into(), SNAPSHOT_ROWS as i64);
    assert_eq!(by_op, want, "one message per committed change");
    hashes_equal_the_table(&redis, &mut client);
}

/// pgoutput's snapshot is the slot's exported one, so a change committed while the
/// snapshot is read is streamed and not also read: no snapshot row holds a Total that a
/// streamed insert or update set (each sets its own). (wal2json's snapshot, read as the
/// tables are, shows such rows twice.)
fn a_change_during_the_snapshot_is_streamed_not_read(plugin: &str) -> usize {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    client
        .batch_execute(
            r#"ALTER TABLE invoice REPLICA IDENTITY FULL;
               INSERT INTO invoice SELECT i, i % 7, '2021-01-01 10:00:00', 'Street 1', 'Berlin', NULL, 'Germany', '10115', i FROM generate_series(1, 20000) i"#,
        )
        .unwrap();
    let writers = Churn::start(postgres.port());
    let worker = Worker::from_config(
        &with_plugin(&config(&redis, &postgres), plugin),
        &[SEED_001, INVOICE_HASH_JOB],
    );
    redis.wait_until(&format!("the snapshot\n{}", worker.log()), |_| {
        Ok(worker.log().contains("snapshot of the table done"))
    });
    writers.stop();
    // Written after every change: once it is in Redis, they all are.
    insert(&mut client, 999_999);
    redis.wait_until(&format!("every change\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:999999"])? == 1)
    });
    hashes_equal_the_table(&redis, &mut client);
    let mut con = redis.connection();
    let messages: Vec<(String, BTreeMap<String, String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    let totals = |ops: &[&str]| -> BTreeSet<String> {
        messages
            .iter()
            .filter(|(_, fields)| ops.contains(&fields["op_code"].as_str()))
            .map(|(_, fields)| fields["Total"].clone())
            .collect()
    };
    let (read, streamed) = (totals(&["r"]), totals(&["c", "u"]));
    assert!(streamed.len() > 100, "changes flowed: {}", streamed.len());
    read.intersection(&streamed).count()
}

#[test]
fn pgoutput_snapshot_is_exactly_where_the_stream_starts() {
    assert_eq!(
        a_change_during_the_snapshot_is_streamed_not_read("pgoutput"),
        0,
        "rows both read by the snapshot and streamed"
    );
}

/// A change that keeps failing in a late part of a large transaction is dead-lettered
/// after `max_deliveries`, though the parts before it are written again each time.
#[test]
fn a_failing_change_in_a_large_transaction_is_dead_lettered() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    let by_state = INVOICE_HASH_JOB.replace(
        "concat(['invoice:', InvoiceId])",
        "concat(['state:', BillingState])",
    );
    let config = config(&redis, &postgres)
        .replace(
            "processors: {read_batch_size: 100}",
            "processors: {read_batch_size: 100, max_deliveries: 2}",
        )
        .replace(
            "poll_ms: 50",
            "poll_ms: 50\n    max_transaction_changes: 100",
        );
    let worker = Worker::from_config(&config, &[&by_state]);
    redis.wait_until(&format!("snapshot done\n{}", worker.log()), |_| {
        Ok(worker.log().contains("snapshot of the table done"))
    });
    // Row 250 has no state, so no key.
    client
        .batch_execute(
            r#"INSERT INTO invoice SELECT i, 1, '2021-01-01 10:00:00', NULL, NULL,
                   CASE WHEN i = 250 THEN NULL ELSE 'S' END, NULL, NULL, i
               FROM generate_series(1, 300) i"#,
        )
        .unwrap();
    redis.wait_until(&format!("the dead letter\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "dlq:postgres:chinook"])? == 1)
    });
    let mut con = redis.connection();
    let letters: Vec<(String, BTreeMap<String, String>)> =
        call(&mut con, &["XRANGE", "dlq:postgres:chinook", "-", "+"]).unwrap();
    let event: serde_json::Value = serde_json::from_str(&letters[0].1["value"]).unwrap();
    assert_eq!(event["after"]["InvoiceId"], 250);
    // The transaction's last row is written, and the slot moves past it.
    wait_for_field(&redis, &worker, "state:S", "InvoiceId", "300");
}

/// A table added to `tables` later is added to the publication redsink made, so that
/// its changes come too (not only its snapshot).
#[test]
fn a_table_added_later_joins_the_publication() {
    let (redis, postgres, mut client) = servers(&format!(
        "{INVOICE_TABLE}; CREATE TABLE note (id integer PRIMARY KEY, body text)"
    ));
    let mut worker = Worker::from_config(&config(&redis, &postgres), &[INVOICE_HASH_JOB]);
    redis.wait_until(&format!("started\n{}", worker.log()), |_| {
        Ok(worker.log().contains("snapshot of the table done"))
    });
    worker.stop();
    let note_job = "source: {server_name: chinook, schema: public, table: note}\noutput:\n  - uses: redis.write\n    with:\n      key: {expression: \"concat(['note:', id])\"}\n";
    let config = config(&redis, &postgres).replace(
        "tables: [public.invoice]",
        "tables: [public.invoice, public.note]",
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB, note_job]);
    redis.wait_until(&format!("the snapshot of note\n{}", worker.log()), |_| {
        Ok(worker.log().contains("tables added to the publication")
            && worker.log().matches("snapshot of the table done").count() == 1)
    });
    client
        .batch_execute("INSERT INTO note VALUES (1, 'streamed')")
        .unwrap();
    wait_for_field(&redis, &worker, "note:1", "body", "streamed");
}

/// Starts a worker on `config` that must refuse to start; its log.
fn refused(config: &str) -> String {
    let mut worker = Worker::from_config(config, &[INVOICE_HASH_JOB]);
    assert_eq!(worker.exit_code(), Some(1), "{}", worker.log());
    worker.log()
}

#[test]
fn unknown_tables_and_wrong_passwords_are_refused_with_what_to_do() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    let config = config(&redis, &postgres);

    let log = refused(&config.replace("public.invoice", "public.invoices"));
    assert!(
        log.contains("table public.invoices does not exist in database postgres"),
        "{log}"
    );

    // A user that does not own the tables: the publication is made by one who does.
    client
        .batch_execute(
            "CREATE ROLE redsink LOGIN REPLICATION PASSWORD 'right'; GRANT SELECT ON invoice TO redsink;
             CREATE PUBLICATION redsink_chinook FOR TABLE invoice",
        )
        .unwrap();
    let hba = postgres.dir().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all redsink 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let as_redsink = |password: &str| {
        config.replace(
            "user: postgres",
            &format!("user: redsink\n    password: {password}"),
        )
    };
    let log = refused(&as_redsink("wrong"));
    assert!(
        log.contains(&format!(
            "cannot connect to 127.0.0.1:{} as redsink",
            postgres.port()
        )) && log.contains("password authentication failed")
            && log.contains("check host, port, database, user and password"),
        "{log}"
    );
    let worker = Worker::from_config(&as_redsink("right"), &[INVOICE_HASH_JOB]);
    redis.wait_until(&format!("started\n{}", worker.log()), |_| {
        Ok(worker.log().contains("postgres source started"))
    });
}

/// The log of a worker with the `plugin` refused by a PostgreSQL with these settings.
fn refused_by_server(plugin: &str, settings: &[&str]) -> String {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start_with(settings);
    postgres
        .client()
        .unwrap()
        .batch_execute(INVOICE_TABLE)
        .unwrap();
    refused(&with_plugin(&config(&redis, &postgres), plugin))
}

/// A configuration with the source's `plugin` set.
fn with_plugin(config: &str, plugin: &str) -> String {
    config.replace("poll_ms: 50", &format!("poll_ms: 50\n    plugin: {plugin}"))
}

#[test]
fn wal_level_below_logical_is_refused_with_what_to_do() {
    let log = refused_by_server("pgoutput", &["wal_level=replica"]);
    assert!(
        log.contains("wal_level is 'replica'; set wal_level = logical in postgresql.conf and restart PostgreSQL"),
        "{log}"
    );
}

#[test]
fn a_server_without_wal2json_is_refused_with_what_to_do() {
    // Output plugins are found on dynamic_library_path: an empty folder hides wal2json.
    let log = refused_by_server("wal2json", &["dynamic_library_path=/nonexistent"]);
    assert!(
        log.contains("the wal2json output plugin is not installed on the server")
            && log.contains("apt-get install postgresql-15-wal2json")
            && log.contains("or use `plugin: pgoutput`"),
        "{log}"
    );
}

#[test]
fn a_publication_or_slot_that_does_not_fit_is_refused_with_what_to_do() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    let config = config(&redis, &postgres);
    let log = refused(&config.replace("poll_ms: 50", "poll_ms: 50\n    publication: invoices"));
    assert!(
        log.contains("publication invoices does not exist in database postgres")
            && log.contains("CREATE PUBLICATION invoices FOR TABLE"),
        "{log}"
    );
    client
        .batch_execute(
            "CREATE TABLE other (id int PRIMARY KEY); CREATE PUBLICATION others FOR TABLE other",
        )
        .unwrap();
    let log = refused(&config.replace("poll_ms: 50", "poll_ms: 50\n    publication: others"));
    assert!(
        log.contains("publication others does not publish public.invoice; add them"),
        "{log}"
    );
    let log = refused(&config.replace("poll_ms: 50", "poll_ms: 50\n    slot: Invoices"));
    assert!(
        log.contains(
            "slot name 'Invoices': use 1 to 63 lower-case letters, digits and underscores"
        ),
        "{log}"
    );
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('redsink_chinook', 'wal2json')")
        .unwrap();
    let log = refused(&config);
    assert!(
        log.contains(
            "replication slot redsink_chinook decodes with wal2json, and this source with pgoutput"
        ) && log.contains("set `plugin: wal2json`"),
        "{log}"
    );
}

fn an_idle_slot_follows_wal_written_by_other_databases(plugin: &str) {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    let worker = Worker::from_config(
        &with_plugin(&config(&redis, &postgres), plugin),
        &[INVOICE_HASH_JOB],
    );
    let confirmed = |client: &mut pg_client::Client| -> i64 {
        client
            .query_one(
                "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots",
                &[],
            )
            // NULL while the slot is being created.
            .map(|row| row.get::<_, Option<i64>>(0).unwrap_or(0))
            .unwrap_or(0)
    };
    redis.wait_until(&format!("the slot\n{}", worker.log()), |_| {
        Ok(confirmed(&mut client) > 0)
    });
    // Another database's writes: nothing the slot decodes for us.
    client.batch_execute("CREATE DATABASE other").unwrap();
    let mut other = pg_client::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=other",
            postgres.port()
        ),
        pg_client::NoTls,
    )
    .unwrap();
    other
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 10000) AS n")
        .unwrap();
    let written: i64 = other
        .query_one("SELECT (pg_current_wal_lsn() - '0/0')::bigint", &[])
        .unwrap()
        .get(0);
    assert!(confirmed(&mut client) < written);
    // poll_ms 50: moved after 100 idle polls, about 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while confirmed(&mut client) < written {
        assert!(std::time::Instant::now() < deadline, "{}", worker.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_change_that_cannot_be_written_is_dead_lettered_as_a_debezium_event_to_replay() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    // Keyed by a column that is NULL in the row: no key, the change cannot be written.
    let by_state = INVOICE_HASH_JOB.replace(
        "concat(['invoice:', InvoiceId])",
        "concat(['state:', BillingState])",
    );
    let config = config(&redis, &postgres).replace(
        "processors: {read_batch_size: 100}",
        "processors: {read_batch_size: 100, max_deliveries: 2, block_ms: 100}",
    );
    let mut worker = Worker::from_config(&config, &[&by_state]);
    // Inserted after the (empty) snapshot, the row comes as a change, not a snapshot row.
    redis.wait_until(&format!("snapshot done\n{}", worker.log()), |_| {
        Ok(worker.log().contains("snapshot of the table done"))
    });
    insert(&mut client, 1);
    let mut con = redis.connection();
    redis.wait_until(&format!("the dead letter\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "dlq:postgres:chinook"])? == 1)
    });
    let letters: Vec<(String, BTreeMap<String, String>)> =
        call(&mut con, &["XRANGE", "dlq:postgres:chinook", "-", "+"]).unwrap();
    let letter = &letters[0].1;
    // The one dead-letter format of every source: source, at, error, deliveries, then
    // the change's own fields (here `value`, the change as Debezium gives it).
    assert_eq!(letter["source"], "postgres:chinook", "{letter:?}");
    assert!(letter["error"].contains("null"), "{letter:?}");
    assert!(letter["at"].starts_with("lsn "), "{letter:?}");
    assert_eq!(letter["deliveries"], "2", "{letter:?}");
    assert_eq!(letter.len(), 5, "{letter:?}");
    let event: serde_json::Value = serde_json::from_str(&letter["value"]).unwrap();
    assert_eq!(event["op"], "c");
    assert_eq!(event["after"]["InvoiceId"], 1);
    assert_eq!(event["after"]["Total"], "1.01");
    assert_eq!(event["source"]["table"], "invoice");
    assert!(event["source"]["lsn"].as_i64().unwrap() > 0);
    worker.stop();

    // Replayed without a source to apply it: refused, with what to add.
    let config_path = worker.config_path();
    let replay = |config_path: &std::path::Path| {
        common::run_worker(&[
            "--config",
            config_path.to_str().unwrap(),
            "dlq",
            "replay",
            "--all",
        ])
    };
    let (ok, _, err) = replay(&config_path);
    assert!(
        !ok && err.contains(
            "no redis-stream source of this configuration reads data:chinook.public.invoice"
        ),
        "{err}"
    );
    // With the job fixed and a redis-stream source on the job's stream, `dlq replay`
    // puts the change there, and it is applied.
    let config = config.replace(
        "sources:\n",
        "sources:\n  - {type: redis-stream, connection: target, streams: \"data:*\"}\n",
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    let (ok, out, err) = replay(&worker.config_path());
    assert!(ok, "{err}");
    assert!(
        out.contains("replayed dlq:postgres:chinook")
            && out.contains("→ data:chinook.public.invoice"),
        "{out}"
    );
    wait_for_field(&redis, &worker, "invoice:1", "Total", "1.01");
    assert_eq!(
        call::<i64>(&mut con, &["XLEN", "dlq:postgres:chinook"]).unwrap(),
        0
    );
}

#[test]
fn a_snapshot_row_that_cannot_be_written_is_dead_lettered_at_once() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    // In the table before the worker starts: the snapshot reads it.
    insert(&mut client, 1);
    let by_state = INVOICE_HASH_JOB.replace(
        "concat(['invoice:', InvoiceId])",
        "concat(['state:', BillingState])",
    );
    let worker = Worker::from_config(&config(&redis, &postgres), &[&by_state]);
    let mut con = redis.connection();
    redis.wait_until(&format!("the dead letter\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["XLEN", "dlq:postgres:chinook"])? == 1)
    });
    let letters: Vec<(String, BTreeMap<String, String>)> =
        call(&mut con, &["XRANGE", "dlq:postgres:chinook", "-", "+"]).unwrap();
    let letter = &letters[0].1;
    assert_eq!(letter["at"], "snapshot row 1", "{letter:?}");
    assert_eq!(letter["deliveries"], "1", "tried once: {letter:?}");
    let event: serde_json::Value = serde_json::from_str(&letter["value"]).unwrap();
    assert_eq!(event["op"], "r");
    assert_eq!(event["after"]["InvoiceId"], 1);
}

/// RDI's default key, `<table>:<key column>:<value>`, for snapshot rows and changes alike.
#[test]
fn a_job_without_a_key_writes_under_rdis_default_key() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    insert(&mut client, 1);
    let job = "source: {server_name: chinook, schema: public, table: invoice}\noutput:\n  - uses: redis.write\n";
    let worker = Worker::from_config(&config(&redis, &postgres), &[job]);
    worker.wait_until(&redis, "the snapshot row", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:InvoiceId:1"])? == 1)
    });
    insert(&mut client, 2);
    worker.wait_until(&redis, "the inserted row", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:InvoiceId:2"])? == 1)
    });
    let mut con = redis.connection();
    let total: Option<String> = call(&mut con, &["HGET", "invoice:InvoiceId:2", "Total"]).unwrap();
    assert_eq!(total.as_deref(), Some("2.02"));
}

/// Transactions that move an amount between two rows, while a reader reads both keys in
/// one MULTI: the sum never differs from the constant — a transaction's writes reach
/// Redis as one MULTI/EXEC.
fn a_transaction_is_seen_whole(plugin: &str) {
    const TRANSFERS: i32 = 300;
    let (redis, postgres, mut client) = servers(
        "CREATE TABLE account (id integer PRIMARY KEY, balance integer NOT NULL, note text);
         INSERT INTO account VALUES (1, 1000, ''), (2, 0, '');",
    );
    let config =
        with_plugin(&config(&redis, &postgres), plugin).replace("public.invoice", "public.account");
    let job = r#"source: {server_name: chinook, schema: public, table: account}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['account:', to_string(id)])", language: jmespath}
"#;
    let worker = Worker::from_config(&config, &[job]);
    let balances = |con: &mut redis::Connection| -> redis::RedisResult<(i64, i64)> {
        redis::pipe()
            .atomic()
            .hget("account:1", "balance")
            .hget("account:2", "balance")
            .query(con)
    };
    worker.wait_until(&redis, "the snapshot", |con| {
        Ok(balances(con).ok() == Some((1000, 0)))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let mut con = redis.connection();
        std::thread::spawn(move || {
            let (mut reads, mut torn) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let (one, two) = balances(&mut con).unwrap();
                reads += 1;
                if one + two != 1000 {
                    torn.push((one, two));
                }
            }
            (reads, torn)
        })
    };
    // Notes of 2 KB make each batch's pipeline longer than what Redis reads at once
    // (16 KB): a transaction not sent as one unit would be split between two reads, with
    // the reader served in between.
    for transfer in 0..TRANSFERS {
        client
            .batch_execute(&format!(
                "BEGIN;
                 UPDATE account SET balance = balance - 1, note = repeat('{}', 2048) WHERE id = 1;
                 UPDATE account SET balance = balance + 1, note = repeat('{}', 2048) WHERE id = 2;
                 COMMIT;",
                transfer % 10,
                transfer % 7
            ))
            .unwrap();
    }
    let end = (i64::from(1000 - TRANSFERS), i64::from(TRANSFERS));
    worker.wait_until(&redis, "every transfer", |con| Ok(balances(con)? == end));
    stop.store(true, Ordering::Relaxed);
    let (reads, torn) = reader.join().unwrap();
    assert!(reads > 100, "the reader read along ({reads} reads)");
    assert!(torn.is_empty(), "half-applied transactions seen: {torn:?}");
}

/// A transaction of more changes than `max_transaction_changes` is written in parts of
/// that many, so that the worker never holds more: every row arrives, the log says so.
fn a_large_transaction_is_written_in_parts(plugin: &str) {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    let config = with_plugin(&config(&redis, &postgres), plugin).replace(
        "poll_ms: 50",
        "poll_ms: 50\n    max_transaction_changes: 100",
    );
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    // Once the (empty) table's snapshot is done, the insert is a change, not a snapshot
    // row.
    worker.wait_until(&redis, "the snapshot done", |_| {
        Ok(worker.log().contains("snapshot of the table done"))
    });
    client
        .batch_execute(
            r#"INSERT INTO invoice SELECT i, i % 7, '2021-01-01 10:00:00', 'Street 1', 'Berlin', NULL, 'Germany', '10115', i
               FROM generate_series(1, 1000) AS i"#,
        )
        .unwrap();
    worker.wait_until(&redis, "every row of the transaction", |con| {
        Ok(call::<Vec<String>>(con, &["KEYS", "invoice:[0-9]*"])?.len() == 1000)
    });
    assert!(
        worker.log().contains("written in parts"),
        "{}",
        worker.log()
    );
    assert_eq!(hashes_equal_the_table(&redis, &mut client), 1000);
}

/// An update that changes a row's key column moves its hash: the old key goes (wal2json
/// sends the old key as the update's identity), the new one holds the row.
#[test]
fn an_update_of_the_key_moves_the_hash() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    insert(&mut client, 1);
    let worker = Worker::from_config(&config(&redis, &postgres), &[INVOICE_HASH_JOB]);
    worker.wait_until(&redis, "the snapshot row", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:1"])? == 1)
    });
    client
        .batch_execute(r#"UPDATE invoice SET "InvoiceId" = 99 WHERE "InvoiceId" = 1"#)
        .unwrap();
    worker.wait_until(&redis, "the hash moved", |con| {
        Ok(
            call::<i64>(con, &["EXISTS", "invoice:1", "invoice:99"])? == 1
                && call::<i64>(con, &["EXISTS", "invoice:99"])? == 1,
        )
    });
    assert_eq!(hashes_equal_the_table(&redis, &mut client), 1);
}

/// A column stored out of line (TOAST) that an update leaves alone is not sent with the
/// change: the hash keeps it rather than losing it.
fn unchanged_toasted_columns_are_kept(plugin: &str) {
    let (redis, postgres, mut client) = servers(
        "CREATE TABLE doc (id integer PRIMARY KEY, title text, body text);
         ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO doc VALUES (1, 'first', repeat('0123456789', 1000));",
    );
    let config = with_plugin(&config(&redis, &postgres), plugin)
        .replace("tables: [public.invoice]", "tables: [public.doc]");
    let job = r#"source: {server_name: chinook, schema: public, table: doc}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['doc:', to_string(id)])", language: jmespath}
"#;
    let worker = Worker::from_config(&config, &[job]);
    worker.wait_until(&redis, "the snapshot row", |con| {
        Ok(call::<i64>(con, &["HSTRLEN", "doc:1", "body"])? == 10_000)
    });
    client
        .batch_execute("UPDATE doc SET title = 'second' WHERE id = 1")
        .unwrap();
    wait_for_field(&redis, &worker, "doc:1", "title", "second");
    let mut con = redis.connection();
    assert_eq!(
        call::<i64>(&mut con, &["HSTRLEN", "doc:1", "body"]).unwrap(),
        10_000,
        "the unchanged TOASTed body is kept"
    );
}

/// PostgreSQL gone for a while: each failed attempt is counted
/// (`redsink_source_errors_total`), the failures in a row shown
/// (`redsink_source_failing`), and once they keep coming they are logged as errors; back,
/// the source says it works again and the gauge falls to 0.
#[test]
fn a_failure_that_keeps_coming_back_shows() {
    let (redis, mut postgres, mut client) = servers(INVOICE_TABLE);
    insert(&mut client, 1);
    let port = redsink_tests::free_port();
    let config =
        config(&redis, &postgres) + &format!("metrics: {{address: \"127.0.0.1:{port}\"}}\n");
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    worker.wait_until(&redis, "the snapshot row", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:1"])? == 1)
    });
    drop(client);
    postgres.kill();
    let failing = |page: &str| -> u64 {
        page.lines()
            .find_map(|line| {
                line.strip_prefix(r#"redsink_source_failing{source="postgres:chinook"} "#)
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    worker.wait_until(&redis, "five failures in a row", |_| {
        Ok(failing(&common::scrape_metrics(port)) >= 5)
    });
    assert!(
        worker.log().contains("still failing after 5 attempts"),
        "{}",
        worker.log()
    );
    assert!(common::scrape_metrics(port)
        .contains(r#"redsink_source_errors_total{source="postgres:chinook"}"#));
    // `status`, from another process, says it too.
    let config_path = worker.config_path();
    let status = || -> serde_json::Value {
        let (ok, out, err) = common::run_worker(&[
            "--config",
            config_path.to_str().unwrap(),
            "status",
            "--json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let shown = status();
    let failure = &shown["failures"]["postgres:chinook"];
    assert!(failure["failing"].as_u64().unwrap() >= 1, "{shown}");
    assert!(
        failure["error"].as_str().unwrap().contains("postgres"),
        "{shown}"
    );
    assert!(
        shown["postgres"][0]["error"].is_string(),
        "PostgreSQL is down: {shown}"
    );
    postgres.restart();
    worker.wait_until(&redis, "working again", |_| {
        Ok(failing(&common::scrape_metrics(port)) == 0)
    });
    assert!(worker.log().contains("working again"), "{}", worker.log());
    worker.wait_until(&redis, "status says it works again", |_| {
        Ok(status()["failures"]["postgres:chinook"]["failing"] == 0)
    });
    let mut client = postgres.client().unwrap();
    insert(&mut client, 2);
    worker.wait_until(&redis, "a change after the outage", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:2"])? == 1)
    });
}

/// Tables and columns named like the snapshot's row alias, keywords, in mixed case,
/// with spaces, dots and quotes: captured by the snapshot and by the changes after it,
/// each name as it is.
#[test]
fn any_table_and_column_name_is_captured() {
    let (redis, postgres, mut client) = servers(
        r#"CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."Order ""Items"", v2.t" (
               t integer PRIMARY KEY, "select" text, "Mixed Case" text, "with space" text
           );
           INSERT INTO "My Schema"."Order ""Items"", v2.t" VALUES (1, 'a', 'b', 'c');"#,
    );
    let config = format!(
        "connections:\n  target: {{type: redis, host: 127.0.0.1, port: {}}}\n\
         sources:\n  - type: postgres\n    server_name: shop\n    host: 127.0.0.1\n    port: {}\n\
         \x20   database: postgres\n    user: postgres\n    tables: ['My Schema.Order \"Items\", v2.t']\n\
         \x20   poll_ms: 50\njobs: ./jobs\n",
        redis.port(),
        postgres.port()
    );
    let job = r#"source: {server_name: shop, schema: My Schema, table: 'Order "Items", v2.t'}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['item:', to_string(t)])", language: jmespath}
"#;
    let worker = Worker::from_config(&config, &[job]);
    let item = |con: &mut redis::Connection| -> redis::RedisResult<Vec<String>> {
        let fields: Vec<String> = call(con, &["HGETALL", "item:1"])?;
        let mut pairs: Vec<String> = fields.chunks(2).map(|pair| pair.join("=")).collect();
        pairs.sort();
        Ok(pairs)
    };
    worker.wait_until(&redis, "the snapshot row", |con| {
        Ok(item(con)? == ["Mixed Case=b", "select=a", "t=1", "with space=c"])
    });
    client
        .batch_execute(
            r#"UPDATE "My Schema"."Order ""Items"", v2.t" SET "select" = 'z' WHERE t = 1"#,
        )
        .unwrap();
    worker.wait_until(&redis, "the update", |con| {
        Ok(item(con)? == ["Mixed Case=b", "select=z", "t=1", "with space=c"])
    });
    client
        .batch_execute(r#"DELETE FROM "My Schema"."Order ""Items"", v2.t""#)
        .unwrap();
    worker.wait_until(&redis, "the delete", |con| {
        Ok(call::<i64>(con, &["EXISTS", "item:1"])? == 0)
    });
}

/// The postgres source writing into a Redis Cluster (three primaries with the module):
/// the snapshot and the changes after it, each invoice's hash on the node of its slot.
#[test]
fn changes_written_into_a_cluster() {
    let cluster = RedisCluster::start(3);
    let postgres = PostgresServer::start();
    let mut client = postgres.client().unwrap();
    client.batch_execute(INVOICE_TABLE).unwrap();
    for id in 1..=20 {
        insert(&mut client, id);
    }
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("\"{}\"", node.url()))
        .collect();
    let config = config(&cluster.nodes[0], &postgres).replace(
        &format!("host: 127.0.0.1, port: {}}}", cluster.nodes[0].port()),
        &format!("urls: [{}]}}", urls.join(", ")),
    );
    assert!(config.contains("urls: ["), "{config}");
    let worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    for id in 21..=30 {
        insert(&mut client, id);
    }
    client
        .execute(
            r#"UPDATE invoice SET "BillingCountry" = 'France' WHERE "InvoiceId" <= 5"#,
            &[],
        )
        .unwrap();
    let want = expected(&mut client);
    let pairs = |fields: &[String]| {
        let mut pairs: Vec<(String, String)> = fields
            .chunks(2)
            .filter(|pair| pair[0] != "BillingState")
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        pairs.sort();
        pairs
    };
    for (key, fields) in &want {
        let node = cluster.node_for(key);
        worker.wait_until(node, &format!("{key} as the table has it"), |con| {
            let got: Vec<String> = call(con, &["HGETALL", key])?;
            Ok(pairs(&got) == pairs(fields))
        });
    }
    assert_eq!(want.len(), 30);
}

/// Tables read at once (`snapshot_readers: 3`) into one stream: every row once, each
/// table's rows in key order, also when the worker is killed mid-snapshot and resumes.
#[test]
fn tables_read_at_once_reach_one_stream_whole_and_in_order() {
    let tables = ["a", "b", "c"];
    let schema: String = tables
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL);
                 INSERT INTO {t} SELECT i, '{t}' FROM generate_series(1, 2000) i;"
            )
        })
        .collect();
    let (redis, postgres, _client) = servers(&schema);
    let jobs: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "source: {{server_name: chinook, schema: public, table: {t}}}\noutput:\n  - uses: redis.write\n    with:\n      data_type: stream\n      key: {{expression: \"`all:events`\"}}\n"
            )
        })
        .collect();
    let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let config = config(&redis, &postgres).replace(
        "tables: [public.invoice]",
        "tables: [public.a, public.b, public.c]\n    snapshot_readers: 3",
    );
    let xlen = |con: &mut redis::Connection| call::<i64>(con, &["XLEN", "all:events"]);
    let mut worker = Worker::from_config(&config, &jobs);
    redis.wait_until(&format!("part of the snapshot\n{}", worker.log()), |con| {
        Ok(xlen(con)? >= 2_500)
    });
    worker.kill();
    worker.spawn();
    redis.wait_until(&format!("the snapshot\n{}", worker.log()), |con| {
        Ok(xlen(con)? >= 6_000)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut con = redis.connection();
    let messages: Vec<(String, BTreeMap<String, String>)> =
        call(&mut con, &["XRANGE", "all:events", "-", "+"]).unwrap();
    assert_eq!(messages.len(), 6_000, "every row once\n{}", worker.log());
    for table in tables {
        let ids: Vec<i64> = messages
            .iter()
            .filter(|(_, fields)| fields["name"] == table)
            .map(|(_, fields)| fields["id"].parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<i64>>(), "table {table}");
    }
}

/// The scenarios each plugin must pass, as a test each: `pgoutput::…` and `wal2json::…`.
macro_rules! on_both_plugins {
    ($($scenario:ident),* $(,)?) => {
        mod pgoutput {
            $(#[test]
            fn $scenario() {
                super::$scenario("pgoutput");
            })*
        }
        mod wal2json {
            $(#[test]
            fn $scenario() {
                super::$scenario("wal2json");
            })*
        }
    };
}

on_both_plugins!(
    snapshot_then_changes_end_equal_to_the_table,
    worker_killed_and_postgres_crashing_lose_and_duplicate_nothing,
    a_transaction_is_seen_whole,
    a_large_transaction_is_written_in_parts,
    unchanged_toasted_columns_are_kept,
    an_idle_slot_follows_wal_written_by_other_databases,
);

/// A batch of the first snapshot that fails for a passing reason (here: no replica
/// confirmed it under `wait_replicas`) is written again; only what the configuration gets
/// wrong stops the source before it has worked.
#[test]
fn a_passing_failure_during_the_first_snapshot_is_retried() {
    let (redis, postgres, mut client) = servers(INVOICE_TABLE);
    for id in 1..=5 {
        insert(&mut client, id);
    }
    let config = config(&redis, &postgres).replace(
        "processors: {read_batch_size: 100}",
        "processors: {read_batch_size: 100, wait_replicas: 1, wait_timeout_ms: 200}",
    );
    let mut worker = Worker::from_config(&config, &[INVOICE_HASH_JOB]);
    redis.wait_until("a batch not confirmed", |_| {
        Ok(worker.log().contains("fewer than 1 replicas confirmed"))
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(worker.is_running(), "{}", worker.log());
    let _replica = redis.replica();
    redis.wait_until(&format!("the snapshot written\n{}", worker.log()), |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice:5"])? == 1)
    });
    assert_eq!(hashes_equal_the_table(&redis, &mut client), 5);
}
