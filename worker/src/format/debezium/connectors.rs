//! Each Debezium connector's `source` block: where its change sits in the database's
//! order, when that order fits one 64-bit version that never ties two changes of a row.
//!
//! | connector | version |
//! |---|---|
//! | `postgresql` (or none named, with an `lsn`) | `lsn`: a row's changes are at growing LSNs (a second writer waits for the first's commit) |
//! | `mysql`, `mariadb` | binlog file number × 2^32 + `pos` (the file's number from its name, `mysql-bin.000003`) |
//! | `sqlserver` | none: its LSNs are 80 bits |
//! | `oracle` | none: changes of one transaction can share an SCN |
//! | `mongodb` | none: the changes of one transaction share their cluster time |
//! | others | none |
//!
//! Where there is none, the stream entry's id orders the changes (one stream per table).

use serde_json::Value;

use crate::format::Order;

/// The change's order from its `source` block; `Err` when the connector's position is
/// there but out of the range that keeps versions growing.
pub fn order(source: Option<&Value>) -> Result<Option<Order>, String> {
    let Some(source) = source else {
        return Ok(None);
    };
    match source.get("connector").and_then(Value::as_str) {
        // Older events of the PostgreSQL connector may not name it.
        Some("postgresql") | None => Ok(source
            .get("lsn")
            .and_then(Value::as_i64)
            .map(Order::from_lsn)),
        Some("mysql" | "mariadb") => binlog(source),
        _ => Ok(None),
    }
}

/// A binlog position as one number: the file's number in the high 32 bits, the offset
/// in it in the low 32 (a file stays below 4 GiB; `max_binlog_size` is at most 1 GiB).
fn binlog(source: &Value) -> Result<Option<Order>, String> {
    let (Some(file), Some(pos)) = (
        source.get("file").and_then(Value::as_str),
        source.get("pos").and_then(Value::as_i64),
    ) else {
        return Ok(None);
    };
    let number = file
        .rsplit_once('.')
        .and_then(|(_, suffix)| suffix.parse::<i64>().ok())
        .filter(|number| (0..1 << 31).contains(number))
        .ok_or_else(|| format!("binlog file '{file}' has no number redsink can order by"))?;
    if !(0..1 << 32).contains(&pos) {
        return Err(format!(
            "binlog position {pos} in '{file}' is beyond 4 GiB: redsink cannot order it"
        ));
    }
    Ok(Some(Order::from_binlog(number, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_by_connector() {
        let version = |source: Value| order(Some(&source)).map(|order| order.map(Order::version));
        assert_eq!(
            version(
                json!({"connector": "postgresql", "lsn": 24023128, "sequence": "[\"24023119\",\"24023128\"]"})
            ),
            Ok(Some(24_023_128))
        );
        let mysql = json!({"connector": "mysql", "file": "mysql-bin.000003", "pos": 484, "row": 0});
        assert_eq!(version(mysql), Ok(Some((3 << 32) + 484)));
        let later_file = json!({"connector": "mariadb", "file": "mariadb-bin.000004", "pos": 4});
        assert!(version(later_file).unwrap() > Some((3 << 32) + 0x0FFF_FFFF));
        for unordered in [
            json!({"connector": "sqlserver", "change_lsn": "00000027:00000758:0003", "commit_lsn": "00000027:00000758:0005"}),
            json!({"connector": "oracle", "scn": "13234397", "commit_scn": "13271102"}),
            json!({"connector": "mongodb", "ts_ms": 1558965508000_i64, "ord": 1}),
            json!({"connector": "postgresql"}),
            json!({"connector": "mysql", "gtid": null}),
        ] {
            assert_eq!(version(unordered.clone()), Ok(None), "{unordered}");
        }
        assert!(
            version(json!({"connector": "mysql", "file": "binlog", "pos": 4}))
                .unwrap_err()
                .contains("'binlog'")
        );
        assert!(
            version(json!({"connector": "mysql", "file": "b.000001", "pos": 1_i64 << 32}))
                .unwrap_err()
                .contains("beyond 4 GiB")
        );
        assert_eq!(order(None), Ok(None));
    }
}
