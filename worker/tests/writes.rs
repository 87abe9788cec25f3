//! Planned writes against real redis-servers: through the module and through plain
//! commands (a Redis without the module) they end in the same state, and a replayed
//! batch changes nothing.

use std::path::Path;

use redsink_tests::{call, snapshot, Options, RedisCluster, RedisServer};
use redsink_worker::commands::{apply, Server};
use redsink_worker::config::RedisConnection;
use redsink_worker::connect::{connect, Redis};
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

/// The worker's connection to a server (`url`) or a cluster (`urls`).
async fn connection(config: RedisConnection) -> Redis {
    connect("target", &config, false).await.unwrap()
}

/// The worker's connection to a cluster with the module, and what it can do.
async fn into_cluster(cluster: &RedisCluster) -> (Redis, Server) {
    let con = connection(RedisConnection {
        urls: Some(cluster.urls()),
        ..RedisConnection::default()
    })
    .await;
    (con, CLUSTER_WITH_MODULE)
}

/// What a cluster with the module can do.
const CLUSTER_WITH_MODULE: Server = Server {
    module: true,
    json: false,
    cluster: true,
};

async fn run(server: &RedisServer, batches: &[Vec<Write>], module: bool) {
    let mut con = connection(RedisConnection {
        url: Some(server.url()),
        ..RedisConnection::default()
    })
    .await;
    let server = Server {
        module,
        json: false,
        cluster: false,
    };
    write_all(&mut con, batches, server).await;
}

/// The batches, seven events at a time, each event's writes confirmed.
async fn write_all(con: &mut Redis, batches: &[Vec<Write>], server: Server) {
    for chunk in batches.chunks(7) {
        for outcome in apply(con, chunk, &[], server).await.unwrap() {
            outcome.unwrap();
        }
    }
}

/// A cluster (three primaries with the module) ends where one server does: each batch's
/// writes go in one pipeline per primary; a replay changes nothing there either.
#[tokio::test]
async fn a_cluster_ends_where_one_server_does() {
    let batches = planned();
    let single = RedisServer::start();
    run(&single, &batches, true).await;
    let cluster = RedisCluster::start(3);
    let (mut con, server) = into_cluster(&cluster).await;
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

/// A slot moving between nodes while a batch writes two of its keys, one moved already:
/// each write lands where its key is (the moved one by ASK, through the cluster
/// connection), and nothing is written where it does not belong — so MIGRATE then moves
/// the other key without BUSYKEY (a pipeline sent again whole, as the redis crate does on
/// a redirect, would have created it on the new node too). Once the slot has moved, the
/// next batch follows it (MOVED).
#[tokio::test]
async fn writes_follow_a_slot_while_it_moves() {
    let cluster = RedisCluster::start(3);
    let (mut con, server) = into_cluster(&cluster).await;
    let (staying, moved) = ("user:{m}:1", "user:{m}:2");
    let batch = |a: i64| -> Vec<Vec<Write>> {
        [staying, moved]
            .map(|key| {
                vec![Write::Hash {
                    key: key.into(),
                    json: format!(r#"{{"a":{a}}}"#),
                    update: redsink_core::sink::HashUpdate::Replace,
                    ttl: None,
                    version: a.into(),
                }]
            })
            .to_vec()
    };
    let write = |con: &mut Redis, batch: Vec<Vec<Write>>| {
        let mut con = con.clone();
        async move {
            for outcome in apply(&mut con, &batch, &[], server).await.unwrap() {
                outcome.unwrap();
            }
        }
    };
    write(&mut con, batch(1)).await;
    let from = cluster.index_for(staying);
    let to = (from + 1) % cluster.nodes.len();
    let (source, target) = (&cluster.nodes[from], &cluster.nodes[to]);
    let id = |node: &RedisServer| -> String {
        call(&mut node.connection(), &["CLUSTER", "MYID"]).unwrap()
    };
    let slot: i64 = call(&mut source.connection(), &["CLUSTER", "KEYSLOT", staying]).unwrap();
    let slot = slot.to_string();
    let setslot = |node: &RedisServer, how: &str, other: &str| {
        call::<()>(
            &mut node.connection(),
            &["CLUSTER", "SETSLOT", &slot, how, other],
        )
        .unwrap();
    };
    setslot(target, "IMPORTING", &id(source));
    setslot(source, "MIGRATING", &id(target));
    let migrate = |key: &str| -> redis::RedisResult<()> {
        let port = target.port().to_string();
        call(
            &mut source.connection(),
            &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key],
        )
    };
    migrate(moved).unwrap();

    write(&mut con, batch(2)).await;
    let asking = |node: &RedisServer, command: &[&str]| -> redis::Value {
        let mut connection = node.connection();
        call::<()>(&mut connection, &["ASKING"]).unwrap();
        call(&mut connection, command).unwrap()
    };
    assert_eq!(
        call::<Vec<String>>(&mut source.connection(), &["HGETALL", staying]).unwrap(),
        ["a", "2"]
    );
    assert_eq!(
        asking(target, &["HGET", moved, "a"]),
        redis::Value::BulkString(b"2".to_vec())
    );
    assert_eq!(
        asking(target, &["EXISTS", staying]),
        redis::Value::Int(0),
        "the key still on the old node was not written on the new one"
    );
    migrate(staying).expect("MIGRATE finds no key in its way");
    for node in &cluster.nodes {
        setslot(node, "NODE", &id(target));
    }

    write(&mut con, batch(3)).await;
    for key in [staying, moved] {
        assert_eq!(
            call::<Vec<String>>(&mut target.connection(), &["HGETALL", key]).unwrap(),
            ["a", "3"]
        );
    }
}

/// A cluster whose nodes want a password given in the URLs only (`redis://:secret@…`):
/// the worker's own connection to each primary authenticates as the cluster connection
/// does, and every write lands.
#[tokio::test]
async fn a_password_in_the_urls_reaches_every_primary() {
    let cluster = RedisCluster::start(3);
    for node in &cluster.nodes {
        call::<()>(
            &mut node.connection(),
            &["CONFIG", "SET", "requirepass", "secret"],
        )
        .unwrap();
    }
    let urls = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://:secret@127.0.0.1:{}/", node.port()))
        .collect();
    let mut con = connection(RedisConnection {
        urls: Some(urls),
        ..RedisConnection::default()
    })
    .await;
    write_all(&mut con, &planned(), CLUSTER_WITH_MODULE).await;
    let mut keys = 0;
    for node in &cluster.nodes {
        let url = format!("redis://:secret@127.0.0.1:{}/", node.port());
        let mut authenticated = redis::Client::open(url).unwrap().get_connection().unwrap();
        keys += call::<i64>(&mut authenticated, &["DBSIZE"]).unwrap();
    }
    assert!(keys > 0, "the writes landed");
}

/// Transactions whose commands a full server refuses while queueing them (OOM): each of
/// their changes fails with the reason, and so does the change after them — no reply is
/// taken for another's.
#[tokio::test]
async fn refused_transactions_fail_their_changes_and_no_other() {
    let server = RedisServer::start();
    let mut admin = server.connection();
    for (setting, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        call::<()>(&mut admin, &["CONFIG", "SET", setting, value]).unwrap();
    }
    let mut con = connection(RedisConnection {
        url: Some(server.url()),
        ..RedisConnection::default()
    })
    .await;
    let events: Vec<Vec<Write>> = ["a", "b", "c", "d", "e"]
        .map(|key| {
            vec![Write::Hash {
                key: key.into(),
                json: r#"{"x":1}"#.into(),
                update: redsink_core::sink::HashUpdate::Replace,
                ttl: None,
                version: 1.into(),
            }]
        })
        .to_vec();
    let transactions = [Some(1), Some(1), Some(2), Some(2), None];
    let server_kind = Server {
        module: true,
        json: false,
        cluster: false,
    };
    let outcomes = apply(&mut con, &events, &transactions, server_kind)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 5);
    for outcome in &outcomes {
        let error = outcome.as_ref().unwrap_err();
        assert!(
            error.reason.contains("OOM") && error.transient,
            "{outcomes:?}"
        );
    }
}
