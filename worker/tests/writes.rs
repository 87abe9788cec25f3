//! Planned writes against real redis-servers: through the module and through plain
//! commands (a Redis without the module) they end in the same state, and a replayed
//! batch changes nothing.

use std::path::Path;

use redsink_tests::{call, snapshot, Options, RedisCluster, RedisServer};
use redsink_worker::commands::{apply, Server};
use redsink_worker::format::{decode, Decoded, Schemas};
use redsink_worker::job::Job;
use redsink_worker::plan::{plan, Position, Write};

mod common;
use common::{INVOICE_HASH_JOB, SEED_001};

const JOBS: [&str; 3] = [
    SEED_001,
    INVOICE_HASH_JOB,
    r#"source: {server_name: chinook, schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      data_type: sorted_set
      key: {expression: "`invoices:by-total`"}
      args: {score: Total, member: InvoiceId}
"#,
];

/// Debezium events for invoices: inserts, updates and deletes, as the Redis sink writes them.
/// A stream entry: its id and its field/value pairs.
type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

fn events() -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut id = 1_000u64;
    let mut push = |op: &str, before: Option<String>, after: Option<String>, invoice: u32| {
        id += 1;
        let value = format!(
            r#"{{"before":{},"after":{},"source":{{"table":"invoice"}},"op":"{op}","ts_ms":{id}}}"#,
            before.unwrap_or_else(|| "null".into()),
            after.unwrap_or_else(|| "null".into())
        );
        entries.push((
            format!("{id}-0"),
            vec![(
                format!(r#"{{"InvoiceId":{invoice}}}"#).into_bytes(),
                value.into_bytes(),
            )],
        ));
    };
    let row = |invoice: u32, total: f64, country: &str| {
        format!(
            r#"{{"InvoiceId":{invoice},"CustomerId":{},"BillingCountry":"{country}","Total":{total}}}"#,
            invoice % 7
        )
    };
    for invoice in 1..=30 {
        push(
            "c",
            None,
            Some(row(invoice, f64::from(invoice) * 1.5, "Germany")),
            invoice,
        );
    }
    for invoice in (1..=30).step_by(3) {
        push(
            "u",
            Some(row(invoice, 0.0, "Germany")),
            Some(row(invoice, 99.0, "France")),
            invoice,
        );
    }
    for invoice in (2..=30).step_by(5) {
        push("d", Some(row(invoice, 0.0, "Germany")), None, invoice);
    }
    entries
}

fn planned() -> Vec<Vec<Write>> {
    let jobs: Vec<Job> = JOBS
        .iter()
        .map(|text| Job::parse(text, Path::new("job.yaml")).unwrap())
        .collect();
    events()
        .into_iter()
        .map(|(id, fields)| {
            let (Decoded::Change(change) | Decoded::Untyped(change)) =
                decode(&fields, &Schemas::default()).unwrap()
            else {
                panic!("no tombstones here");
            };
            let position = Position {
                version: redsink_worker::format::Order::from_stream_id(&id)
                    .unwrap()
                    .version()
                    .into(),
                time_ms: id.split('-').next().unwrap().parse().unwrap(),
                stream_id: id,
            };
            jobs.iter()
                .flat_map(|job| plan(job, &change, &position).unwrap())
                .collect()
        })
        .collect()
}

async fn run(server: &RedisServer, batches: &[Vec<Write>], module: bool) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let server = Server {
        module,
        json: false,
        cluster: false,
    };
    write_all(&mut con, batches, server).await;
}

/// The batches, seven events at a time, each event's writes confirmed.
async fn write_all<C: redis::aio::ConnectionLike + Clone>(
    con: &mut C,
    batches: &[Vec<Write>],
    server: Server,
) {
    for chunk in batches.chunks(7) {
        for outcome in apply(con, chunk, server).await.unwrap() {
            outcome.unwrap();
        }
    }
}

/// A cluster (three primaries with the module) ends where one server does: each batch's
/// writes go in one pipeline per slot; a replay changes nothing there either.
#[tokio::test]
async fn a_cluster_ends_where_one_server_does() {
    let batches = planned();
    let single = RedisServer::start();
    run(&single, &batches, true).await;
    let cluster = RedisCluster::start(3);
    let mut con = cluster.client().get_async_connection().await.unwrap();
    let server = Server {
        module: true,
        json: false,
        cluster: true,
    };
    write_all(&mut con, &batches, server).await;
    let everything = |cluster: &RedisCluster| {
        let mut keys: Vec<_> = cluster.nodes.iter().flat_map(state).collect();
        keys.sort();
        keys
    };
    let written = everything(&cluster);
    assert_eq!(written, state(&single));
    let spread = cluster
        .nodes
        .iter()
        .filter(|node| !state(node).is_empty())
        .count();
    assert_eq!(spread, 3, "the keys live on every node");
    write_all(&mut con, &batches[batches.len() / 2..], server).await;
    assert_eq!(everything(&cluster), written);
}

/// The data, streams compared by their entries (ids and fields), without expiries.
fn state(server: &RedisServer) -> Vec<(Vec<u8>, Vec<u8>)> {
    snapshot(&mut server.connection())
}

#[tokio::test]
async fn module_and_plain_commands_end_in_the_same_state() {
    let batches = planned();
    let with_module = RedisServer::start();
    let without = RedisServer::with(Options::default().without_module());
    run(&with_module, &batches, true).await;
    run(&without, &batches, false).await;
    assert_eq!(state(&with_module), state(&without));

    let mut con = with_module.connection();
    let entries: Vec<(String, Vec<String>)> =
        call(&mut con, &["XRANGE", "invoice:events", "-", "+"]).unwrap();
    assert_eq!(entries.len(), 30 + 10 + 6, "one message per change");
    assert_eq!(
        entries[0].1,
        [
            "message_id",
            "1",
            "country",
            "Germany",
            "Total",
            "1.5",
            "op_code",
            "c"
        ]
    );
    assert!(entries
        .last()
        .unwrap()
        .1
        .ends_with(&["op_code".to_owned(), "d".to_owned()]));
    let ttl: i64 = call(&mut con, &["TTL", "invoice:events"]).unwrap();
    assert!((1..=100).contains(&ttl));
    let updated: Vec<String> = call(&mut con, &["HGETALL", "invoice:4"]).unwrap();
    assert_eq!(
        updated,
        [
            "InvoiceId",
            "4",
            "CustomerId",
            "4",
            "BillingCountry",
            "France",
            "Total",
            "99"
        ]
    );
    assert_eq!(
        call::<i64>(&mut con, &["EXISTS", "invoice:2"]).unwrap(),
        0,
        "deleted"
    );
    assert_eq!(
        call::<Option<f64>>(&mut con, &["ZSCORE", "invoices:by-total", "2"]).unwrap(),
        None
    );
}

#[tokio::test]
async fn replaying_a_batch_changes_nothing() {
    let batches = planned();
    let server = RedisServer::start();
    run(&server, &batches, true).await;
    let once = state(&server);
    // A crash before the acknowledgement: everything from the middle on comes again.
    run(&server, &batches[batches.len() / 2..], true).await;
    run(&server, &batches, true).await;
    assert_eq!(state(&server), once);
}

#[tokio::test]
async fn on_update_replace_drops_fields_merge_keeps_them() {
    let job = |on_update: &str| {
        let text = format!(
            "source: {{table: invoice}}\noutput:\n  - uses: redis.write\n    with:\n      on_update: {on_update}\n      key: {{expression: \"concat(['invoice:', InvoiceId])\"}}\n"
        );
        Job::parse(&text, Path::new("job.yaml")).unwrap()
    };
    let server = RedisServer::start();
    for (on_update, expected) in [
        ("replace", vec!["InvoiceId", "1", "Total", "2"]),
        (
            "merge",
            vec!["InvoiceId", "1", "BillingCountry", "Germany", "Total", "2"],
        ),
    ] {
        let job = job(on_update);
        let events = [
            (
                1,
                r#"{"before":null,"after":{"InvoiceId":1,"BillingCountry":"Germany","Total":1},"source":{},"op":"c"}"#,
            ),
            (
                2,
                r#"{"before":null,"after":{"InvoiceId":1,"Total":2},"source":{},"op":"u"}"#,
            ),
        ];
        let batches: Vec<Vec<Write>> = events
            .iter()
            .map(|(seq, event)| {
                let (Decoded::Change(change) | Decoded::Untyped(change)) = decode(
                    &[(b"{}".to_vec(), event.as_bytes().to_vec())],
                    &Schemas::default(),
                )
                .unwrap() else {
                    panic!("a change");
                };
                let position = Position {
                    version: (*seq).into(),
                    stream_id: format!("{seq}-0"),
                    time_ms: *seq,
                };
                plan(&job, &change, &position).unwrap()
            })
            .collect();
        call::<()>(&mut server.connection(), &["FLUSHALL"]).unwrap();
        run(&server, &batches, true).await;
        let fields: Vec<String> =
            call(&mut server.connection(), &["HGETALL", "invoice:1"]).unwrap();
        assert_eq!(fields, expected, "on_update: {on_update}");
    }
}
