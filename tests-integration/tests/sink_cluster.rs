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
