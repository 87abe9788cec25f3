//! The harness's private PostgreSQL: logical decoding with wal2json works, and a crash
//! and restart keep committed rows and the replication slot.

use redsink_tests::PostgresServer;

#[test]
fn wal2json_decodes_changes_and_survives_a_crash() {
    let mut server = PostgresServer::start();
    let mut client = server.client().unwrap();
    // One statement each: a slot cannot be created in a transaction that wrote.
    for statement in [
        "CREATE TABLE invoice (\"InvoiceId\" int PRIMARY KEY, \"Total\" numeric(10,2))",
        "SELECT pg_create_logical_replication_slot('redsink_test', 'wal2json')",
        "INSERT INTO invoice VALUES (1, 3.96)",
    ] {
        client.batch_execute(statement).unwrap();
    }
    let changes = |client: &mut postgres::Client| -> Vec<String> {
        client
            .query(
                "SELECT data FROM pg_logical_slot_peek_changes('redsink_test', NULL, NULL, 'format-version', '2')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect()
    };
    let seen = changes(&mut client);
    assert!(
        seen.iter()
            .any(|change| change.contains(r#""action":"I""#) && change.contains("3.96")),
        "{seen:?}"
    );
    drop(client);
    server.restart();
    let mut client = server.client().unwrap();
    let after = changes(&mut client);
    assert_eq!(after, seen, "the slot kept its place across the crash");
}
