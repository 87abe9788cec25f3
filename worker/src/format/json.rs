//! Plain JSON: a row as one JSON object, or as field/value pairs of text; either is an
//! upsert of the row.

use serde_json::{Map, Value};

use super::{ChangeEvent, Op};
use crate::error::{Error, Result};

/// The row, inserted or updated.
pub fn upsert(row: Map<String, Value>) -> ChangeEvent {
    ChangeEvent::new(Op::Create, row)
}

/// Field/value pairs as a row of strings.
pub fn row_from_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|(name, value)| {
            let name = String::from_utf8(name.clone())
                .map_err(|_| Error::Event("a field name is not UTF-8".into()))?;
            let value = String::from_utf8(value.clone())
                .map_err(|_| Error::Event(format!("field '{name}' is not UTF-8")))?;
            Ok((name, Value::String(value)))
        })
        .collect()
}
