//! The changes read from the slot and not written yet, whichever plugin decoded them, and
//! where the reading stands in its transaction: so that both plugins hand the pipeline
//! the same deliveries, cut into parts at the same places.

use std::sync::Arc;

use crate::format::postgres::Change;
use crate::format::{ChangeEvent, Op, Order};
use crate::pipeline::{Delivery, Fields};
use crate::plan::{Position, Version};

pub(super) struct Held {
    pub deliveries: Vec<Delivery>,
    /// The commit LSN of the transaction being read.
    commit: Option<Order>,
    /// Between its Begin and its Commit.
    open: bool,
    /// Its row changes read so far, and how many of them when its last part was cut.
    number: i64,
    part_start: i64,
    /// The most changes of one transaction held at once (`max_transaction_changes`).
    part_size: i64,
    /// The last change's table: a batch's changes mostly share one.
    route: Arc<str>,
    source: String,
}

impl Held {
    pub fn new(part_size: usize, source: String) -> Held {
        Held {
            deliveries: Vec::new(),
            commit: None,
            open: false,
            number: 0,
            part_start: 0,
            part_size: part_size.max(1) as i64,
            route: Arc::from(""),
            source,
        }
    }

    /// Adds one decoded message, read at `at` (its LSN). An update that lacks columns
    /// (unchanged TOAST) is completed from the table's `columns`; a message that did not
    /// decode is its own dead letter, `raw()`.
    pub fn add<'a>(
        &mut self,
        decoded: crate::error::Result<Change>,
        at: Order,
        columns: impl FnOnce(&str) -> Option<&'a [String]>,
        raw: impl FnOnce() -> Fields,
    ) {
        match &decoded {
            Ok(Change::Begin { commit }) => {
                (self.commit, self.number, self.open, self.part_start) =
                    (Some(*commit), 0, true, 0);
            }
            Ok(Change::Commit) => self.open = false,
            Ok(Change::Row { .. }) | Err(_) => self.number += 1,
            Ok(Change::Truncate { table }) => tracing::warn!(
                table,
                "TRUNCATE is not applied to Redis: the keys it empties cannot be listed"
            ),
            Ok(Change::Other) => {}
        }
        let change = match decoded {
            Ok(Change::Row { table, mut event }) => {
                if event.op == Op::Update {
                    complete_update(&mut event, columns(&table));
                }
                if *self.route != *table {
                    self.route = Arc::from(table);
                }
                let position = Position {
                    version: Version {
                        number: at.version(),
                        lane: Arc::clone(&self.route),
                    },
                    stream_id: format!("{}-{}", self.commit.unwrap_or(at).version(), self.number),
                    time_ms: redsink_core::time::now_ms(),
                };
                Ok(Some((*event, position)))
            }
            Ok(_) => Ok(None),
            Err(error) => Err(error.to_string()),
        };
        let raw = match change {
            Err(_) => raw(),
            Ok(_) => Vec::new(),
        };
        self.deliveries.push(Delivery {
            route: Arc::clone(&self.route),
            at: format!("lsn {}", at.version()),
            change,
            reply_to: None,
            transaction: self.commit.map(Order::version),
            raw,
        });
    }

    /// Between transactions: what is held is whole transactions.
    pub fn between_transactions(&self) -> bool {
        !self.open
    }

    /// The transaction being read has more than `max_transaction_changes` changes since
    /// its last part: a part of it is due (small transactions are never split).
    pub fn part_due(&self) -> bool {
        self.open && self.number - self.part_start >= self.part_size
    }

    /// Whether so many changes are held that they are to be written, whole transactions
    /// or not.
    pub fn full(&self) -> bool {
        self.deliveries.len() as i64 >= self.part_size
    }

    /// Takes what is held; within a transaction, as one of its parts (said once a
    /// transaction, when its first part is cut).
    pub fn take(&mut self) -> Vec<Delivery> {
        if self.open {
            if self.part_start == 0 {
                tracing::warn!(
                    source = self.source,
                    commit = self.commit.map(Order::version),
                    "a transaction of more than {} changes (max_transaction_changes): \
                     written in parts, which readers may see one at a time",
                    self.part_size
                );
            }
            self.part_start = self.number;
        }
        std::mem::take(&mut self.deliveries)
    }
}

/// An update that lacks some of the table's columns (wal2json leaves unchanged TOASTed
/// values out, pgoutput marks them unchanged) takes them from the old row where it has
/// them (REPLICA IDENTITY FULL); if any are still missing, the update is partial: written
/// as a patch, what it lacks keeps its stored value.
fn complete_update(event: &mut ChangeEvent, columns: Option<&[String]>) {
    let Some(columns) = columns else {
        return;
    };
    for column in columns {
        if event.row.contains_key(column) {
            continue;
        }
        match event.before.as_ref().and_then(|before| before.get(column)) {
            Some(value) => {
                event.row.insert(column.clone(), value.clone());
            }
            None => event.partial = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(row: serde_json::Value, before: Option<serde_json::Value>) -> ChangeEvent {
        let object = |value: serde_json::Value| value.as_object().cloned().unwrap();
        ChangeEvent {
            before: before.map(object),
            ..ChangeEvent::new(Op::Update, object(row))
        }
    }

    /// An update without some of the table's columns (unchanged TOAST) takes them from
    /// the old row where it has them, else is partial; a whole one is neither.
    #[test]
    fn updates_are_completed_or_partial() {
        let columns = vec!["id".to_owned(), "title".to_owned(), "body".to_owned()];
        let mut whole = update(json!({"id": 1, "title": "t", "body": null}), None);
        complete_update(&mut whole, Some(&columns));
        assert!(!whole.partial);
        let mut lacking = update(json!({"id": 1, "title": "t"}), Some(json!({"id": 1})));
        complete_update(&mut lacking, Some(&columns));
        assert!(lacking.partial, "the old row has only the key");
        let old = json!({"id": 1, "title": "s", "body": "long"});
        let mut full_identity = update(json!({"id": 1, "title": "t"}), Some(old));
        complete_update(&mut full_identity, Some(&columns));
        assert!(!full_identity.partial);
        assert_eq!(full_identity.row["body"], "long");
        assert_eq!(full_identity.row["title"], "t");
    }

    fn row(id: i64) -> Change {
        Change::Row {
            table: "public.t".into(),
            event: Box::new(ChangeEvent::new(
                Op::Create,
                json!({"id": id}).as_object().cloned().unwrap(),
            )),
        }
    }

    /// Stream ids are `<commit>-<n>`; a transaction is cut into parts only past the
    /// limit, and each part counts on from the last.
    #[test]
    fn transactions_are_numbered_and_cut_past_the_limit() {
        let mut held = Held::new(2, "postgres:t".into());
        let no_columns = |_: &str| None;
        held.add(
            Ok(Change::Begin {
                commit: Order::from_lsn(90),
            }),
            Order::from_lsn(10),
            no_columns,
            Vec::new,
        );
        held.add(Ok(row(1)), Order::from_lsn(11), no_columns, Vec::new);
        assert!(!held.part_due() && !held.between_transactions());
        held.add(Ok(row(2)), Order::from_lsn(12), no_columns, Vec::new);
        assert!(held.part_due());
        let part = held.take();
        assert_eq!(part.len(), 3);
        let ids: Vec<String> = part
            .iter()
            .filter_map(|d| {
                d.change
                    .as_ref()
                    .ok()?
                    .as_ref()
                    .map(|(_, p)| p.stream_id.clone())
            })
            .collect();
        assert_eq!(ids, ["90-1", "90-2"]);
        assert!(part.iter().all(|d| d.transaction == Some(90)));
        held.add(Ok(row(3)), Order::from_lsn(13), no_columns, Vec::new);
        assert!(!held.part_due(), "one change since the last part");
        held.add(
            Ok(Change::Commit),
            Order::from_lsn(14),
            no_columns,
            Vec::new,
        );
        assert!(held.between_transactions() && !held.part_due());
        held.add(
            Err(crate::error::Error::Event("bad".into())),
            Order::from_lsn(15),
            no_columns,
            || vec![(b"pgoutput".to_vec(), b"raw".to_vec())],
        );
        let rest = held.take();
        assert_eq!(rest.len(), 3);
        assert_eq!(rest[2].raw, vec![(b"pgoutput".to_vec(), b"raw".to_vec())]);
    }
}
