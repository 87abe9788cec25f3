//! Each Debezium connector's `source` block: where its change sits in the database's
//! order, when that order is one 64-bit version that never ties two changes of a row and
//! never goes back.
//!
//! | connector | version |
//! |---|---|
//! | `postgresql` (or none named, with an `lsn`) | `lsn`: a row's changes are at growing LSNs (a second writer waits for the first's commit), and a promoted standby goes on from its primary's |
//! | `mysql`, `mariadb` | none: binlog file numbers start again after a failover or `RESET MASTER`, so versions from them would refuse every later change |
//! | `sqlserver` | none: its LSNs are 80 bits |
//! | `oracle` | none: changes of one transaction can share an SCN |
//! | `mongodb` | none: the changes of one transaction share their cluster time |
//! | others | none |
//!
//! Where there is none, the stream entry's id orders the changes (one stream per table).

use serde_json::Value;

use crate::format::Order;

/// The change's order from its `source` block, where its connector's fits.
pub fn order(source: Option<&Value>) -> Option<Order> {
    let source = source?;
    match source.get("connector").and_then(Value::as_str) {
        // Older events of the PostgreSQL connector may not name it.
        Some("postgresql") | None => source
            .get("lsn")
            .and_then(Value::as_i64)
            .map(Order::from_lsn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_by_connector() {
        let version = |source: Value| order(Some(&source)).map(Order::version);
        assert_eq!(
            version(
                json!({"connector": "postgresql", "lsn": 24023128, "sequence": "[\"24023119\",\"24023128\"]"})
            ),
            Some(24_023_128)
        );
        for unordered in [
            json!({"connector": "mysql", "file": "mysql-bin.000003", "pos": 484, "row": 0}),
            json!({"connector": "mariadb", "file": "mariadb-bin.000003", "pos": 570}),
            json!({"connector": "sqlserver", "change_lsn": "00000027:00000758:0003", "commit_lsn": "00000027:00000758:0005"}),
            json!({"connector": "oracle", "scn": "13234397", "commit_scn": "13271102"}),
            json!({"connector": "mongodb", "ts_ms": 1558965508000_i64, "ord": 1}),
            json!({"connector": "postgresql"}),
        ] {
            assert_eq!(version(unordered.clone()), None, "{unordered}");
        }
        assert_eq!(order(None), None);
    }
}
