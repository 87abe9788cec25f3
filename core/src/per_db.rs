//! Module state kept per database and key, following Redis's own database operations:
//! FLUSHDB/FLUSHALL clear it and SWAPDB swaps it.

use std::collections::HashMap;

/// Values per database, per key. Looked up by `&[u8]` without allocating.
#[derive(Debug, Clone, PartialEq)]
pub struct PerDb<V> {
    dbs: HashMap<i32, HashMap<Vec<u8>, V>>,
}

impl<V> Default for PerDb<V> {
    fn default() -> Self {
        PerDb {
            dbs: HashMap::new(),
        }
    }
}

impl<V> PerDb<V> {
    pub fn get(&self, db: i32, key: &[u8]) -> Option<&V> {
        self.dbs.get(&db)?.get(key)
    }

    pub fn get_mut(&mut self, db: i32, key: &[u8]) -> Option<&mut V> {
        self.dbs.get_mut(&db)?.get_mut(key)
    }

    /// The key's value, made with `Default` if there is none.
    pub fn entry(&mut self, db: i32, key: &[u8]) -> &mut V
    where
        V: Default,
    {
        let keys = self.dbs.entry(db).or_default();
        if !keys.contains_key(key) {
            keys.insert(key.to_vec(), V::default());
        }
        keys.get_mut(key).expect("inserted just above")
    }

    /// Sets the key's value; the key's bytes are copied only when it is new.
    pub fn insert(&mut self, db: i32, key: &[u8], value: V) {
        let keys = self.dbs.entry(db).or_default();
        match keys.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                keys.insert(key.to_vec(), value);
            }
        }
    }

    pub fn remove(&mut self, db: i32, key: &[u8]) -> Option<V> {
        let keys = self.dbs.get_mut(&db)?;
        let value = keys.remove(key);
        if keys.is_empty() {
            self.dbs.remove(&db);
        }
        value
    }

    /// Keeps the values `keep` says to keep, dropping keys and databases left empty.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        for keys in self.dbs.values_mut() {
            keys.retain(|_, value| keep(value));
        }
        self.dbs.retain(|_, keys| !keys.is_empty());
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`).
    pub fn flush(&mut self, db: Option<i32>) {
        flush(&mut self.dbs, db);
    }

    /// SWAPDB.
    pub fn swap(&mut self, first: i32, second: i32) {
        swap(&mut self.dbs, first, second);
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Every value as (db, key, value).
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8], &V)> {
        self.dbs.iter().flat_map(|(&db, keys)| {
            keys.iter()
                .map(move |(key, value)| (db, key.as_slice(), value))
        })
    }
}

/// FLUSHDB (`Some(db)`) or FLUSHALL (`None`) on any state kept by database.
pub fn flush<T>(dbs: &mut HashMap<i32, T>, db: Option<i32>) {
    match db {
        Some(db) => {
            dbs.remove(&db);
        }
        None => dbs.clear(),
    }
}

/// SWAPDB on any state kept by database.
pub fn swap<T>(dbs: &mut HashMap<i32, T>, first: i32, second: i32) {
    let (one, other) = (dbs.remove(&first), dbs.remove(&second));
    dbs.extend(one.map(|state| (second, state)));
    dbs.extend(other.map(|state| (first, state)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_database_and_key() {
        let mut map: PerDb<u32> = PerDb::default();
        map.insert(0, b"k", 1);
        *map.entry(1, b"k") += 5;
        assert_eq!((map.get(0, b"k"), map.get(1, b"k")), (Some(&1), Some(&5)));
        map.swap(0, 1);
        assert_eq!(map.get(0, b"k"), Some(&5));
        map.retain(|value| *value > 1);
        assert_eq!(map.get(1, b"k"), None);
        map.flush(Some(0));
        assert!(map.is_empty());
        map.insert(2, b"x", 1);
        assert_eq!(map.remove(2, b"x"), Some(1));
        assert!(map.is_empty());
    }
}
