//! The VERSION of each key written with one, so that replays and out-of-order deliveries
//! never move a key backwards.
//!
//! A version belongs to a key: it goes away when the key is deleted, expires or is
//! evicted, and moves when the key is renamed or moved. A delete made *with* a version
//! leaves a tombstone instead, until a deadline, so that an older write arriving after
//! the delete cannot bring the key back.

use crate::per_db::PerDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub version: i64,
    /// For a deleted key: when the tombstone may be forgotten (ms since the epoch).
    pub tombstone_until: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Versions {
    /// Every delete in the server passes through [`Versions::forget`]: looked up without
    /// allocating.
    entries: PerDb<Entry>,
    /// A `rename_from`/`move_from` waiting for its `_to` half.
    moving: Option<Entry>,
}

impl Versions {
    /// Whether a write of `version` to the key is newer than what was applied to it.
    pub fn is_newer(&self, db: i32, key: &[u8], version: i64, now: i64) -> bool {
        match self.get(db, key, now) {
            Some(entry) => version > entry.version,
            None => true,
        }
    }

    /// The key's entry, unless it is a tombstone past its deadline.
    pub fn get(&self, db: i32, key: &[u8], now: i64) -> Option<Entry> {
        self.entries
            .get(db, key)
            .copied()
            .filter(|entry| entry.tombstone_until.is_none_or(|until| until > now))
    }

    pub fn set(&mut self, db: i32, key: &[u8], entry: Entry) {
        self.entries.insert(db, key, entry);
    }

    /// The key went away (deleted, expired, evicted, overwritten by RESTORE or COPY).
    pub fn forget(&mut self, db: i32, key: &[u8]) {
        self.entries.remove(db, key);
    }

    /// First half of a rename or move: the key leaves `db`.
    pub fn move_from(&mut self, db: i32, key: &[u8]) {
        self.moving = self.entries.remove(db, key);
    }

    /// Second half: the key arrives, under its new name or in its new database.
    pub fn move_to(&mut self, db: i32, key: &[u8]) {
        match self.moving.take() {
            Some(entry) => self.set(db, key, entry),
            None => self.forget(db, key),
        }
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`).
    pub fn flush(&mut self, db: Option<i32>) {
        self.entries.flush(db);
    }

    /// SWAPDB.
    pub fn swap(&mut self, first: i32, second: i32) {
        self.entries.swap(first, second);
    }

    /// Forgets tombstones past their deadline.
    pub fn purge(&mut self, now: i64) {
        self.entries
            .retain(|entry| entry.tombstone_until.is_none_or(|until| until > now));
    }

    pub fn len(&self) -> usize {
        self.entries.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry as (db, key, entry).
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8], &Entry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Option<i64> = None;

    fn entry(version: i64, tombstone_until: Option<i64>) -> Entry {
        Entry {
            version,
            tombstone_until,
        }
    }

    #[test]
    fn only_newer_versions_apply() {
        let mut versions = Versions::default();
        assert!(versions.is_newer(0, b"k", 5, 0));
        versions.set(0, b"k", entry(5, LIVE));
        assert!(!versions.is_newer(0, b"k", 5, 0));
        assert!(!versions.is_newer(0, b"k", 4, 0));
        assert!(versions.is_newer(0, b"k", 6, 0));
        assert!(
            versions.is_newer(1, b"k", 1, 0),
            "other databases are other keys"
        );
    }

    #[test]
    fn tombstones_hold_until_their_deadline() {
        let mut versions = Versions::default();
        versions.set(0, b"k", entry(9, Some(1000)));
        assert!(!versions.is_newer(0, b"k", 8, 999));
        assert!(versions.is_newer(0, b"k", 8, 1000));
        versions.purge(999);
        assert_eq!(versions.len(), 1);
        versions.purge(1000);
        assert!(versions.is_empty());
    }

    #[test]
    fn versions_follow_their_key() {
        let mut versions = Versions::default();
        versions.set(0, b"a", entry(3, LIVE));
        versions.move_from(0, b"a");
        versions.move_to(0, b"b");
        assert!(versions.get(0, b"a", 0).is_none());
        assert_eq!(versions.get(0, b"b", 0), Some(entry(3, LIVE)));
        versions.move_from(0, b"b");
        versions.move_to(2, b"b");
        assert_eq!(versions.get(2, b"b", 0).map(|e| e.version), Some(3));
        // A rename onto a versioned key replaces its version; from an unversioned one
        // clears it.
        versions.set(0, b"c", entry(1, LIVE));
        versions.move_from(0, b"unversioned");
        versions.move_to(0, b"c");
        assert!(versions.get(0, b"c", 0).is_none());
        versions.forget(2, b"b");
        assert!(versions.is_empty());
    }

    #[test]
    fn flush_and_swap() {
        let mut versions = Versions::default();
        versions.set(0, b"k", entry(1, LIVE));
        versions.set(1, b"k", entry(2, LIVE));
        versions.swap(0, 1);
        assert_eq!(versions.get(0, b"k", 0).map(|e| e.version), Some(2));
        versions.flush(Some(0));
        assert!(versions.get(0, b"k", 0).is_none());
        assert_eq!(versions.len(), 1);
        versions.flush(None);
        assert!(versions.is_empty());
    }
}
