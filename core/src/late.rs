//! Stream ids added late: when several writers feed one stream, an entry can arrive after
//! one with a higher id was added. It is then added with a new id, and its own id is
//! remembered here until a deadline, so that a replay of it adds nothing.

use std::collections::BTreeMap;

use crate::per_db::PerDb;

use crate::sink::StreamId;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LateIds {
    /// Per database, per stream key: late ids and when each may be forgotten.
    ids: PerDb<BTreeMap<StreamId, i64>>,
}

impl LateIds {
    pub fn contains(&self, db: i32, key: &[u8], id: StreamId, now: i64) -> bool {
        self.ids
            .get(db, key)
            .and_then(|ids| ids.get(&id))
            .is_some_and(|&until| until > now)
    }

    pub fn insert(&mut self, db: i32, key: &[u8], id: StreamId, until: i64) {
        self.ids.entry(db, key).insert(id, until);
    }

    /// Forgets ids past their deadline.
    pub fn purge(&mut self, now: i64) {
        self.ids.retain(|ids| {
            ids.retain(|_, until| *until > now);
            !ids.is_empty()
        });
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`).
    pub fn flush(&mut self, db: Option<i32>) {
        self.ids.flush(db);
    }

    /// SWAPDB.
    pub fn swap(&mut self, first: i32, second: i32) {
        self.ids.swap(first, second);
    }

    pub fn len(&self) -> usize {
        self.ids.iter().map(|(_, _, ids)| ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every late id as (db, key, id, deadline).
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8], StreamId, i64)> {
        self.ids
            .iter()
            .flat_map(|(db, key, ids)| ids.iter().map(move |(&id, &until)| (db, key, id, until)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: StreamId = StreamId { ms: 5, seq: 0 };

    #[test]
    fn remembered_until_the_deadline() {
        let mut late = LateIds::default();
        late.insert(0, b"s", ID, 100);
        assert!(late.contains(0, b"s", ID, 99));
        assert!(!late.contains(0, b"s", ID, 100));
        assert!(!late.contains(1, b"s", ID, 0));
        assert!(!late.contains(0, b"t", ID, 0));
        assert_eq!(late.iter().count(), 1);
        late.purge(100);
        assert!(late.is_empty());
    }

    #[test]
    fn flush_and_swap() {
        let mut late = LateIds::default();
        late.insert(0, b"s", ID, 100);
        late.swap(0, 3);
        assert!(late.contains(3, b"s", ID, 0));
        late.flush(Some(3));
        assert!(late.is_empty());
    }
}
