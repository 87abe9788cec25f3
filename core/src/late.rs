//! Stream ids added late: when several writers feed one stream, an entry can arrive after
//! one with a higher id was added. It is then added with a new id, and its own id is
//! remembered here until a deadline, so that a replay of it adds nothing.

use std::collections::{BTreeMap, HashMap};

use crate::sink::StreamId;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LateIds {
    /// Per database, per stream key: late ids and when each may be forgotten.
    dbs: HashMap<i32, HashMap<Vec<u8>, BTreeMap<StreamId, i64>>>,
}

impl LateIds {
    pub fn contains(&self, db: i32, key: &[u8], id: StreamId, now: i64) -> bool {
        self.dbs
            .get(&db)
            .and_then(|keys| keys.get(key))
            .and_then(|ids| ids.get(&id))
            .is_some_and(|&until| until > now)
    }

    pub fn insert(&mut self, db: i32, key: &[u8], id: StreamId, until: i64) {
        self.dbs
            .entry(db)
            .or_default()
            .entry(key.to_vec())
            .or_default()
            .insert(id, until);
    }

    /// Forgets ids past their deadline; returns how many.
    pub fn purge(&mut self, now: i64) -> usize {
        let before = self.len();
        for keys in self.dbs.values_mut() {
            for ids in keys.values_mut() {
                ids.retain(|_, until| *until > now);
            }
            keys.retain(|_, ids| !ids.is_empty());
        }
        self.dbs.retain(|_, keys| !keys.is_empty());
        before - self.len()
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`).
    pub fn flush(&mut self, db: Option<i32>) {
        match db {
            Some(db) => {
                self.dbs.remove(&db);
            }
            None => self.dbs.clear(),
        }
    }

    /// SWAPDB.
    pub fn swap(&mut self, first: i32, second: i32) {
        let a = self.dbs.remove(&first);
        let b = self.dbs.remove(&second);
        if let Some(keys) = a {
            self.dbs.insert(second, keys);
        }
        if let Some(keys) = b {
            self.dbs.insert(first, keys);
        }
    }

    pub fn len(&self) -> usize {
        self.dbs
            .values()
            .flat_map(HashMap::values)
            .map(BTreeMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Every late id as (db, key, id, deadline).
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8], StreamId, i64)> {
        self.dbs.iter().flat_map(|(&db, keys)| {
            keys.iter().flat_map(move |(key, ids)| {
                ids.iter()
                    .map(move |(&id, &until)| (db, key.as_slice(), id, until))
            })
        })
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
        assert_eq!(late.purge(100), 1);
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
