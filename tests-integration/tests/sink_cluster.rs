//! In Redis Cluster: explicit-key SINK commands are redirected by Redis like any keyed
//! command; SINK.WRITE refuses rows whose key another node serves, naming the key, and
//! then writes no row at all.

use redsink_tests::{call, snapshot, RedisCluster};

#[test]
fn sink_write_refuses_keys_of_other_nodes() {
    let cluster = RedisCluster::start(3);
    let home = cluster.node_for("user:a");
    let elsewhere = ["user:b", "user:c", "user:d", "user:e", "user:f"]
        .into_iter()
        .find(|key| cluster.node_for(key).port() != home.port())
        .expect("some key on another node");
    let mut con = home.connection();
    call::<()>(
        &mut con,
        &[
            "SINK.DEFINE",
            "users",
            "TYPE",
            "hash",
            "PREFIX",
            "user:",
            "KEYFIELD",
            "id",
        ],
    )
    .unwrap();
    assert_eq!(
        call::<i64>(
            &mut con,
            &["SINK.WRITE", "users", r#"{"id":"a","name":"Ann"}"#]
        )
        .unwrap(),
        1
    );
    assert_eq!(
        call::<String>(&mut con, &["HGET", "user:a", "name"]).unwrap(),
        "Ann"
    );

    let before = snapshot(&mut con);
    let other = &elsewhere["user:".len()..];
    let error = call::<i64>(
        &mut con,
        &[
            "SINK.WRITE",
            "users",
            r#"{"id":"a","name":"Changed"}"#,
            &format!(r#"{{"id":"{other}"}}"#),
        ],
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("row 2: the key '{elsewhere}' is in slot")),
        "{message}"
    );
    assert!(
        message.contains("which this node does not serve"),
        "{message}"
    );
    assert_eq!(snapshot(&mut con), before, "no row was written");

    // Explicit-key commands: Redis redirects them like any keyed command.
    let moved = call::<i64>(&mut con, &["SINK.HASH", elsewhere, r#"{"x":1}"#]).unwrap_err();
    assert_eq!(moved.code(), Some("MOVED"));
    let mut owner = cluster.node_for(elsewhere).connection();
    assert_eq!(
        call::<i64>(&mut owner, &["SINK.HASH", elsewhere, r#"{"x":1}"#]).unwrap(),
        1
    );
}

/// Every command with a key, called through redis-rs's cluster client on keys spread over
/// the three nodes: each is routed to the node of its key (the key is the first argument)
/// and does its work there.
#[test]
fn every_keyed_command_through_a_cluster_client() {
    let cluster = RedisCluster::start(3);
    let client = cluster.client();
    let mut con = client.get_connection().unwrap();
    let lines = |n: usize| -> Vec<String> {
        vec![
            format!("DS.CREATE ds:{n} HISTORY 3"),
            format!("DS.ALTER ds:{n} TTL 3600"),
            format!(r#"DS.UPDATE ds:{n} dev1 {{"t":1}}"#),
            format!(r#"DS.PUT ds:{n} dev2 4102444800000 {{"t":2}}"#),
            format!("DS.GET ds:{n} dev1"),
            format!("DS.MGET ds:{n} dev1 dev2"),
            format!("DS.DEVICES ds:{n}"),
            format!("DS.LEN ds:{n}"),
            format!("DS.RANGE ds:{n} dev1 - +"),
            format!("DS.INFO ds:{n}"),
            format!("DS.DEL ds:{n} dev2"),
            format!(r#"SINK.HASH h:{n} {{"a":1}} VERSION 5"#),
            format!("SINK.STRING s:{n} v VERSION 5"),
            format!("SINK.LIST l:{n} v MAXLEN 3"),
            format!("SINK.SET set:{n} m"),
            format!("SINK.ZSET z:{n} m 1"),
            format!(r#"SINK.STREAM x:{n} {{"a":1}} ID 5-1"#),
            format!("SINK.LATEID x:{n} 1-1 6-1 4102444800000"),
            format!("SINK.VERSION h:{n}"),
            format!("SINK.SETVERSION v:{n} 5 LANE data:x"),
            format!("SINK.DEL s:{n} VERSION 6"),
        ]
    };
    let mut nodes_used = std::collections::BTreeSet::new();
    for n in 0..12 {
        for line in lines(n) {
            let args = redsink_tests::words(&line);
            let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            cmd.query::<redis::Value>(&mut con)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        nodes_used.insert(cluster.node_for(&format!("h:{n}")).port());
    }
    assert_eq!(nodes_used.len(), 3, "keys on every node");
    for n in 0..12 {
        let key = format!("h:{n}");
        let mut owner = cluster.node_for(&key).connection();
        assert_eq!(
            call::<Vec<String>>(&mut owner, &["HGETALL", &key]).unwrap(),
            ["a", "1"]
        );
        let versioned = format!("v:{n}");
        let mut owner = cluster.node_for(&versioned).connection();
        assert_eq!(
            call::<i64>(&mut owner, &["SINK.VERSION", &versioned, "LANE", "data:x"]).unwrap(),
            5
        );
    }
}

/// Resharding: a key moved to another node by MIGRATE (as `redis-cli --cluster reshard`
/// moves it) takes its versions along, every lane: an older replay on its new node is
/// refused, as it was on the old one.
#[test]
fn versions_follow_a_key_that_resharding_moves() {
    let cluster = RedisCluster::start(3);
    let key = "moving:1";
    let from = cluster.index_for(key);
    let to = (from + 1) % cluster.nodes.len();
    let mut source = cluster.nodes[from].connection();
    let mut destination = cluster.nodes[to].connection();
    let run = |con: &mut redis::Connection, line: &str| -> redis::Value {
        call(con, &redsink_tests::words(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    run(
        &mut source,
        r#"SINK.HASH moving:1 {"a":2} VERSION 10 LANE data:x"#,
    );
    run(&mut source, r#"SINK.HASH moving:1 {"b":1} VERSION 3"#);
    let slot: i64 = call(&mut source, &["CLUSTER", "KEYSLOT", key]).unwrap();
    let id = |con: &mut redis::Connection| -> String { call(con, &["CLUSTER", "MYID"]).unwrap() };
    let (source_id, destination_id) = (id(&mut source), id(&mut destination));
    let slot = slot.to_string();
    call::<()>(
        &mut destination,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    )
    .unwrap();
    call::<()>(
        &mut source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &destination_id],
    )
    .unwrap();
    let port = cluster.nodes[to].port().to_string();
    call::<()>(
        &mut source,
        &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key],
    )
    .unwrap();
    for node in &cluster.nodes {
        call::<()>(
            &mut node.connection(),
            &["CLUSTER", "SETSLOT", &slot, "NODE", &destination_id],
        )
        .unwrap();
    }
    // The versions arrive by the cluster bus, just after the key.
    cluster.nodes[to].wait_until("the versions moved", |con| {
        let version: Option<i64> = call(con, &["SINK.VERSION", key, "LANE", "data:x"])?;
        Ok(version == Some(10))
    });
    assert_eq!(
        call::<Option<i64>>(&mut destination, &["SINK.VERSION", key]).unwrap(),
        Some(3)
    );
    assert_eq!(
        run(
            &mut destination,
            r#"SINK.HASH moving:1 {"a":0} VERSION 9 LANE data:x"#
        ),
        redis::Value::Nil,
        "an older replay is refused on the new node"
    );
    assert_eq!(
        call::<Vec<String>>(&mut destination, &["HGETALL", key]).unwrap(),
        ["a", "2", "b", "1"]
    );
}

/// Named sinks from a cluster client: a sink named with the hashtag of its keys' prefix
/// (`users{eu}`, `PREFIX user:{eu}:`) is defined, written and listed on the node of that
/// slot, where the client routes each call by the name.
#[test]
fn named_sinks_through_a_cluster_client() {
    let cluster = RedisCluster::start(3);
    let client = cluster.client();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("SINK.DEFINE")
        .arg("users{eu}")
        .arg(&["TYPE", "hash", "PREFIX", "user:{eu}:", "KEYFIELD", "id"][..])
        .query(&mut con)
        .unwrap();
    let written: i64 = redis::cmd("SINK.WRITE")
        .arg("users{eu}")
        .arg(r#"{"id":"1","name":"Ann"}"#)
        .arg(r#"{"id":"2","name":"Bo"}"#)
        .query(&mut con)
        .unwrap();
    assert_eq!(written, 2);
    let name: String = redis::cmd("HGET")
        .arg("user:{eu}:2")
        .arg("name")
        .query(&mut con)
        .unwrap();
    assert_eq!(name, "Bo");
    let home = cluster.node_for("users{eu}");
    assert_eq!(home.port(), cluster.node_for("user:{eu}:1").port());
    let listed: Vec<Vec<redis::Value>> = call(&mut home.connection(), &["SINK.INFO"]).unwrap();
    assert_eq!(listed.len(), 1, "defined on the node of its slot");
}
