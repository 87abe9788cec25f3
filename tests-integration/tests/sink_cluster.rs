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

/// Every module command that takes a key, on keys numbered `n`.
fn keyed_commands(n: usize) -> Vec<String> {
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
}

/// How many key numbers the cluster-client tests use: enough for keys on every node.
const KEY_NUMBERS: usize = 12;

/// What [`keyed_commands`] left on each key's own node.
fn check_keyed_writes(cluster: &RedisCluster) {
    let nodes_used: std::collections::BTreeSet<u16> = (0..KEY_NUMBERS)
        .map(|n| cluster.node_for(&format!("h:{n}")).port())
        .collect();
    assert_eq!(nodes_used.len(), 3, "keys on every node");
    for n in 0..KEY_NUMBERS {
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
        let stream = format!("x:{n}");
        let mut owner = cluster.node_for(&stream).connection();
        assert_eq!(call::<i64>(&mut owner, &["XLEN", &stream]).unwrap(), 1);
        let device = format!("ds:{n}");
        let mut owner = cluster.node_for(&device).connection();
        assert_eq!(call::<i64>(&mut owner, &["DS.LEN", &device]).unwrap(), 1);
    }
}

/// Every command with a key, called through redis-rs's cluster client on keys spread over
/// the three nodes: each is routed to the node of its key (the key is the first argument)
/// and does its work there.
#[test]
fn every_keyed_command_through_a_cluster_client() {
    let cluster = RedisCluster::start(3);
    let client = cluster.client();
    let mut con = client.get_connection().unwrap();
    for n in 0..KEY_NUMBERS {
        for line in keyed_commands(n) {
            let args = redsink_tests::words(&line);
            let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            cmd.query::<redis::Value>(&mut con)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
    check_keyed_writes(&cluster);
}

/// Every module command through redis-py's cluster client (the wheel `cargo make setup`
/// puts in .servers/): the keyed ones routed by the key redis-py finds in the server's
/// COMMAND table, the named sink's given the node of its hashtag, as docs/cluster.md
/// says.
#[test]
fn every_command_through_redis_py_cluster_client() {
    let cluster = RedisCluster::start(3);
    let wheels = redsink_tests::workspace_dir().join(".servers/redis-py-8.1.0");
    let python_path = [
        "redis-8.1.0-py3-none-any.whl",
        "async_timeout-5.0.1-py3-none-any.whl",
    ]
    .map(|wheel| {
        let wheel = wheels.join(wheel);
        assert!(
            wheel.exists(),
            "{} is missing: cargo make setup fetches it",
            wheel.display()
        );
        wheel.display().to_string()
    })
    .join(":");
    let request = |args: Vec<&str>, node_of: Option<&str>| -> String {
        let mut request = serde_json::json!({ "args": args });
        if let Some(key) = node_of {
            request["node_of"] = key.into();
        }
        request.to_string()
    };
    let mut requests: Vec<String> = (0..KEY_NUMBERS)
        .flat_map(keyed_commands)
        .map(|line| request(line.split(' ').collect(), None))
        .collect();
    let define = "SINK.DEFINE users{eu} TYPE hash PREFIX user:{eu}: KEYFIELD id";
    let write = [
        "SINK.WRITE",
        "users{eu}",
        r#"{"id":"1","name":"Ann"}"#,
        r#"{"id":"2","name":"Bo"}"#,
    ];
    requests.push(request(define.split(' ').collect(), Some("users{eu}")));
    requests.push(request(write.to_vec(), Some("users{eu}")));
    requests.push(request(vec!["SINK.INFO", "users{eu}"], Some("users{eu}")));
    requests.push(request(vec!["SINK.DROP", "users{eu}"], Some("users{eu}")));
    let script =
        redsink_tests::workspace_dir().join("tests-integration/scripts/redis_py_cluster.py");
    let mut python = std::process::Command::new("python3")
        .arg(script)
        .arg(cluster.nodes[0].port().to_string())
        .env("PYTHONPATH", python_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (cargo make setup installs it)");
    let mut stdin = python.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, (requests.join("\n") + "\n").as_bytes()).unwrap();
    drop(stdin);
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(replies.len(), requests.len(), "a reply for every command");
    check_keyed_writes(&cluster);
    let written = &replies[replies.len() - 3];
    assert_eq!(written, &serde_json::json!(2), "SINK.WRITE wrote two rows");
    let mut home = cluster.node_for("user:{eu}:2").connection();
    assert_eq!(
        call::<String>(&mut home, &["HGET", "user:{eu}:2", "name"]).unwrap(),
        "Bo"
    );
    assert!(
        call::<Vec<redis::Value>>(&mut home, &["SINK.INFO"])
            .unwrap()
            .is_empty(),
        "dropped on its node"
    );
}

/// Moves `key`'s slot from node `from` to node `to` as `redis-cli --cluster reshard`
/// does: IMPORTING and MIGRATING, `keys` by MIGRATE, `before_node`, then SETSLOT … NODE
/// on every node (the new owner first).
fn move_slot(
    cluster: &RedisCluster,
    key: &str,
    (from, to): (usize, usize),
    keys: &[&str],
    before_node: impl Fn(),
) {
    let (source, destination) = (&cluster.nodes[from], &cluster.nodes[to]);
    let slot: i64 = call(&mut source.connection(), &["CLUSTER", "KEYSLOT", key]).unwrap();
    let slot = slot.to_string();
    let id = |node: &redsink_tests::RedisServer| -> String {
        call(&mut node.connection(), &["CLUSTER", "MYID"]).unwrap()
    };
    let (source_id, destination_id) = (id(source), id(destination));
    let setslot = |node: &redsink_tests::RedisServer, how: &str, other: &str| {
        call::<()>(
            &mut node.connection(),
            &["CLUSTER", "SETSLOT", &slot, how, other],
        )
        .unwrap();
    };
    setslot(destination, "IMPORTING", &source_id);
    setslot(source, "MIGRATING", &destination_id);
    let port = destination.port().to_string();
    for key in keys {
        call::<()>(
            &mut source.connection(),
            &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key],
        )
        .unwrap();
    }
    before_node();
    setslot(destination, "NODE", &destination_id);
    for node in &cluster.nodes {
        setslot(node, "NODE", &destination_id);
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
    move_slot(&cluster, key, (from, to), &[key], || {});
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

/// Resharding a slot whose keys were deleted with a version: there is no key to
/// MIGRATE, but `CLUSTER SETSLOT … NODE` sends their tombstones to the slot's new node,
/// where an older replay is then refused as on the old one.
#[test]
fn tombstones_follow_their_slot() {
    let cluster = RedisCluster::start(3);
    let (written, never) = ("gone:1", "{gone:1}never-written");
    let from = cluster.index_for(written);
    let to = (from + 1) % cluster.nodes.len();
    let mut source = cluster.nodes[from].connection();
    let run = |con: &mut redis::Connection, line: &str| -> redis::Value {
        call(con, &redsink_tests::words(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    run(&mut source, "SINK.STRING gone:1 x VERSION 5");
    run(&mut source, "SINK.DEL gone:1 VERSION 10");
    run(
        &mut source,
        "SINK.DEL {gone:1}never-written VERSION 7 LANE data:x",
    );
    // The tombstones arrive by the cluster bus (each in a message of its own) once the
    // slot is MIGRATING: writes to keys no longer on the old node go to the new one by
    // ASK from then on.
    let arrived = |con: &mut redis::Connection| -> redis::RedisResult<bool> {
        call::<()>(con, &["ASKING"])?;
        let never: Option<i64> = call(con, &["SINK.VERSION", never, "LANE", "data:x"])?;
        call::<()>(con, &["ASKING"])?;
        let written: Option<i64> = call(con, &["SINK.VERSION", written])?;
        Ok((never, written) == (Some(7), Some(10)))
    };
    move_slot(&cluster, written, (from, to), &[], || {
        cluster.nodes[to].wait_until("the tombstones moved with MIGRATING", arrived);
    });
    let mut destination = cluster.nodes[to].connection();
    assert_eq!(
        run(&mut destination, "SINK.STRING gone:1 back VERSION 9"),
        redis::Value::Nil,
        "an older replay is refused on the new node"
    );
    assert_eq!(
        run(
            &mut destination,
            "SINK.STRING {gone:1}never-written back VERSION 6 LANE data:x"
        ),
        redis::Value::Nil
    );
    assert_eq!(call::<i64>(&mut destination, &["DBSIZE"]).unwrap(), 0);
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
