//! The VERSION of each key written with one, so that replays and out-of-order deliveries
//! never move a key backwards.
//!
//! A version belongs to a key: it goes away when the key is deleted, expires or is
//! evicted, and moves when the key is renamed or moved. A delete made *with* a version
//! leaves a tombstone instead, until a deadline, so that an older write arriving after
//! the delete cannot bring the key back.
//!
//! A key's versions are kept in **lanes**: writers whose versions compare (the entry ids
//! of one source stream) share one, so that writers whose versions do not (two streams
//! writing parts of one key) never hold each other's writes back. The unnamed lane is
//! the default.
//!
//! A key is known here by a 64-bit fingerprint of its name, keyed with a secret of the
//! server's, not by the name itself: most versioned keys (one live version) then cost
//! about 20 bytes each in a [`KeyTable`]. Two of 10 million keys share a fingerprint
//! with a probability of 3 in a million (the birthday bound, 10¹⁴ / 2⁶⁵); with the secret
//! unknown, nobody can make names that do.

mod key_table;

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};

use siphasher::sip::SipHasher13;

use crate::cluster::key_slot;
use crate::per_db;
use key_table::{KeyTable, Keyed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub version: i64,
    /// For a deleted key: when the tombstone may be forgotten (ms since the epoch).
    pub tombstone_until: Option<i64>,
}

impl Entry {
    fn live(version: i64) -> Entry {
        Entry {
            version,
            tombstone_until: None,
        }
    }
}

/// A lane, by its place in [`Versions`]'s names: each name is stored once, however many
/// keys it versions.
type LaneId = u16;

/// The most lanes a server keeps: each is a name given with LANE, a guard against a
/// client inventing names without end.
pub const MAX_LANES: usize = 1 << LaneId::BITS;

/// A key's fingerprint: the keyed hash of its name.
pub type KeyId = u64;

/// A key's entries, one per lane; most keys have one, kept without allocating.
#[derive(Debug, Clone, PartialEq)]
enum Lanes {
    One(LaneId, Entry),
    Many(Vec<(LaneId, Entry)>),
}

impl Lanes {
    fn get(&self, lane: LaneId) -> Option<&Entry> {
        match self {
            Lanes::One(id, entry) => (*id == lane).then_some(entry),
            Lanes::Many(entries) => entries
                .iter()
                .find_map(|(id, entry)| (*id == lane).then_some(entry)),
        }
    }

    fn set(&mut self, lane: LaneId, entry: Entry) {
        match self {
            Lanes::One(id, old) if *id == lane => *old = entry,
            Lanes::One(id, old) => *self = Lanes::Many(vec![(*id, *old), (lane, entry)]),
            Lanes::Many(entries) => match entries.iter_mut().find(|(id, _)| *id == lane) {
                Some((_, old)) => *old = entry,
                None => entries.push((lane, entry)),
            },
        }
    }

    /// Removes the lane's entry; whether any is left.
    fn remove(&mut self, lane: LaneId) -> bool {
        match self {
            Lanes::One(id, _) => *id != lane,
            Lanes::Many(entries) => {
                entries.retain(|(id, _)| *id != lane);
                if let [(id, entry)] = entries[..] {
                    *self = Lanes::One(id, entry);
                }
                !matches!(self, Lanes::Many(entries) if entries.is_empty())
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (LaneId, &Entry)> {
        let (one, many) = match self {
            Lanes::One(id, entry) => (Some((*id, entry)), &[][..]),
            Lanes::Many(entries) => (None, &entries[..]),
        };
        one.into_iter()
            .chain(many.iter().map(|(id, entry)| (*id, entry)))
    }
}

/// A key with one live version, in one lane: 18 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Live {
    id: KeyId,
    lane: LaneId,
    version: i64,
}

impl Keyed for Live {
    fn id(&self) -> u64 {
        self.id
    }
}

/// A key with versions in several lanes, or a tombstone, and its name where known (to
/// send its tombstones along when its slot moves to another node).
#[derive(Debug, Clone)]
struct Wide {
    id: KeyId,
    lanes: Lanes,
    name: Option<Box<[u8]>>,
}

impl Keyed for Wide {
    fn id(&self) -> u64 {
        self.id
    }
}

/// One database's versions. A key is in one of the two tables, never both.
#[derive(Debug, Clone, Default)]
struct Db {
    /// Most keys.
    compact: KeyTable<Live>,
    wide: KeyTable<Wide>,
    /// The named wide keys by cluster slot.
    wide_by_slot: BTreeSet<(u16, KeyId)>,
}

impl Db {
    fn get(&self, id: KeyId, lane: LaneId) -> Option<Entry> {
        if let Some(live) = self.compact.get(id) {
            return (live.lane == lane).then_some(Entry::live(live.version));
        }
        self.wide.get(id)?.lanes.get(lane).copied()
    }

    fn set(&mut self, id: KeyId, name: Option<&[u8]>, lane: LaneId, entry: Entry) {
        if entry.tombstone_until.is_none() {
            let in_place = match self.compact.get(id) {
                Some(live) => live.lane == lane,
                None => self.wide.get(id).is_none(),
            };
            if in_place {
                let version = entry.version;
                self.compact.insert(Live { id, lane, version });
                return;
            }
        }
        let (lanes, known) = match self.take(id) {
            Some((mut lanes, known)) => {
                lanes.set(lane, entry);
                (lanes, known)
            }
            None => (Lanes::One(lane, entry), None),
        };
        self.put(id, lanes, name.map(Box::from).or(known));
    }

    /// Takes a key's entries out, with its name where known.
    fn take(&mut self, id: KeyId) -> Option<(Lanes, Option<Box<[u8]>>)> {
        if let Some(live) = self.compact.remove(id) {
            return Some((Lanes::One(live.lane, Entry::live(live.version)), None));
        }
        let wide = self.wide.remove(id)?;
        if let Some(name) = &wide.name {
            self.wide_by_slot.remove(&(key_slot(name), id));
        }
        Some((wide.lanes, wide.name))
    }

    fn put(&mut self, id: KeyId, lanes: Lanes, name: Option<Box<[u8]>>) {
        match lanes {
            Lanes::One(lane, entry) if entry.tombstone_until.is_none() => {
                let version = entry.version;
                self.compact.insert(Live { id, lane, version })
            }
            lanes => {
                if let Some(name) = &name {
                    self.wide_by_slot.insert((key_slot(name), id));
                }
                self.wide.insert(Wide { id, lanes, name });
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.compact.is_empty() && self.wide.is_empty()
    }

    /// Every entry: the key's fingerprint and name (where known), lane, entry.
    fn iter(&self) -> impl Iterator<Item = (KeyId, Option<&[u8]>, LaneId, Entry)> + '_ {
        let compact = self
            .compact
            .iter()
            .map(|live| (live.id, None, live.lane, Entry::live(live.version)));
        let wide = self.wide.iter().flat_map(|wide| {
            wide.lanes
                .iter()
                .map(move |(lane, entry)| (wide.id, wide.name.as_deref(), lane, *entry))
        });
        compact.chain(wide)
    }
}

/// What a key's versions say of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer than the version kept for the key (live, or a tombstone): admitted. A
    /// replica or an AOF replay holds the same entry, or none if it purged a tombstone
    /// sooner, and admits it too, whatever its clock.
    NewerThanKept,
    /// No version kept, or a tombstone past its deadline: admitted. A server that still
    /// holds the tombstone (its clock behind, its purge later) could refuse it.
    NothingKept,
    /// Not newer: refused.
    NotNewer,
}

#[derive(Debug, Clone)]
pub struct Versions {
    /// The fingerprint's key: random for each server, kept in its RDB.
    secret: (u64, u64),
    /// Databases with versions (none empty).
    dbs: HashMap<i32, Db>,
    /// A `rename_from`/`move_from` waiting for its `_to` half.
    moving: Option<Lanes>,
    /// Lane names by id (the default lane, unnamed, first), and ids by name.
    lane_names: Vec<Box<[u8]>>,
    lane_ids: HashMap<Box<[u8]>, LaneId>,
    /// Tombstones by deadline, so that a purge visits only the expired ones, a bounded
    /// number at a time. An entry may be stale (the key written again, renamed or gone
    /// since): a purge checks it against the key's own entry.
    deadlines: BTreeSet<(i64, i32, KeyId, LaneId)>,
}

impl Default for Versions {
    fn default() -> Self {
        let random = RandomState::new();
        Versions::with_secret((random.hash_one(1u8), random.hash_one(2u8)))
    }
}

impl Versions {
    /// Versions whose fingerprints are keyed with `secret` (as saved with them).
    pub fn with_secret(secret: (u64, u64)) -> Self {
        let unnamed: Box<[u8]> = Box::default();
        Versions {
            secret,
            dbs: HashMap::new(),
            moving: None,
            lane_names: vec![unnamed.clone()],
            lane_ids: HashMap::from([(unnamed, 0)]),
            deadlines: BTreeSet::new(),
        }
    }

    pub fn secret(&self) -> (u64, u64) {
        self.secret
    }

    /// The key's fingerprint.
    pub fn key_id(&self, key: &[u8]) -> KeyId {
        let mut hasher = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        hasher.write(key);
        hasher.finish()
    }

    /// Whether a write of `version` to the key, in `lane`, is newer than what was applied
    /// to it in that lane.
    pub fn is_newer(&self, db: i32, key: &[u8], lane: &[u8], version: i64, now: i64) -> bool {
        self.admission(db, self.key_id(key), lane, version, now) != Admission::NotNewer
    }

    /// Whether a write of `version` to the key (by fingerprint), in `lane`, goes ahead,
    /// and whether every server would decide the same.
    pub fn admission(&self, db: i32, id: KeyId, lane: &[u8], version: i64, now: i64) -> Admission {
        let entry = self
            .lane_ids
            .get(lane)
            .and_then(|&lane| self.dbs.get(&db)?.get(id, lane));
        match entry {
            Some(entry) if version > entry.version => Admission::NewerThanKept,
            None => Admission::NothingKept,
            Some(Entry {
                tombstone_until: Some(until),
                ..
            }) if until <= now => Admission::NothingKept,
            Some(_) => Admission::NotNewer,
        }
    }

    /// The key's entry in `lane`, unless it is a tombstone past its deadline.
    pub fn get(&self, db: i32, key: &[u8], lane: &[u8], now: i64) -> Option<Entry> {
        let lane = *self.lane_ids.get(lane)?;
        self.dbs
            .get(&db)?
            .get(self.key_id(key), lane)
            .filter(|entry| entry.tombstone_until.is_none_or(|until| until > now))
    }

    /// Sets the key's entry in `lane`; false if that would be a lane past [`MAX_LANES`].
    pub fn set(&mut self, db: i32, key: &[u8], lane: &[u8], entry: Entry) -> bool {
        self.set_id(db, self.key_id(key), Some(key), lane, entry)
    }

    /// [`Versions::set`] for a key known by its fingerprint, and its name where known (as
    /// saved).
    pub fn set_id(
        &mut self,
        db: i32,
        id: KeyId,
        name: Option<&[u8]>,
        lane: &[u8],
        entry: Entry,
    ) -> bool {
        let Some(lane) = self.lane_id(lane) else {
            return false;
        };
        self.dbs.entry(db).or_default().set(id, name, lane, entry);
        if let Some(until) = entry.tombstone_until {
            self.deadlines.insert((until, db, id, lane));
        }
        true
    }

    /// Whether a write in `lane` could be remembered (an existing lane, or room for one).
    pub fn has_room_for(&self, lane: &[u8]) -> bool {
        self.lane_ids.contains_key(lane) || self.lane_names.len() < MAX_LANES
    }

    fn lane_id(&mut self, lane: &[u8]) -> Option<LaneId> {
        if let Some(id) = self.lane_ids.get(lane) {
            return Some(*id);
        }
        let id = LaneId::try_from(self.lane_names.len()).ok()?;
        self.lane_names.push(lane.into());
        self.lane_ids.insert(lane.into(), id);
        Some(id)
    }

    /// Takes the key's entries out.
    fn take(&mut self, db: i32, key: &[u8]) -> Option<Lanes> {
        let id = self.key_id(key);
        let versions = self.dbs.get_mut(&db)?;
        let taken = versions.take(id);
        if versions.is_empty() {
            self.dbs.remove(&db);
        }
        taken.map(|(lanes, _)| lanes)
    }

    /// The key went away (deleted, expired, evicted, overwritten by RESTORE or COPY).
    pub fn forget(&mut self, db: i32, key: &[u8]) {
        self.take(db, key);
    }

    /// First half of a rename or move: the key leaves `db`.
    pub fn move_from(&mut self, db: i32, key: &[u8]) {
        self.moving = self.take(db, key);
    }

    /// Second half: the key arrives, under its new name or in its new database.
    pub fn move_to(&mut self, db: i32, key: &[u8]) {
        self.forget(db, key);
        let Some(lanes) = self.moving.take() else {
            return;
        };
        let id = self.key_id(key);
        // Its tombstones expire under the new name.
        for (lane, entry) in lanes.iter() {
            if let Some(until) = entry.tombstone_until {
                self.deadlines.insert((until, db, id, lane));
            }
        }
        self.dbs
            .entry(db)
            .or_default()
            .put(id, lanes, Some(key.into()));
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`).
    pub fn flush(&mut self, db: Option<i32>) {
        per_db::flush(&mut self.dbs, db);
        match db {
            Some(db) => self.deadlines.retain(|deadline| deadline.1 != db),
            None => self.deadlines.clear(),
        }
    }

    /// SWAPDB.
    pub fn swap(&mut self, first: i32, second: i32) {
        per_db::swap(&mut self.dbs, first, second);
        let swapped = |db: i32| match db {
            db if db == first => second,
            db if db == second => first,
            db => db,
        };
        self.deadlines = std::mem::take(&mut self.deadlines)
            .into_iter()
            .map(|(until, db, id, lane)| (until, swapped(db), id, lane))
            .collect();
    }

    /// Forgets tombstones past their deadline, `budget` of them at the most (the rest
    /// wait for the next purge); how many it looked at. Only expired tombstones are
    /// visited, never the other versions.
    pub fn purge(&mut self, now: i64, budget: usize) -> usize {
        let mut visited = 0;
        while visited < budget {
            match self.deadlines.first() {
                Some(first) if first.0 <= now => {}
                _ => break,
            }
            let Some((until, db, id, lane)) = self.deadlines.pop_first() else {
                break;
            };
            visited += 1;
            let Some(versions) = self.dbs.get_mut(&db) else {
                continue;
            };
            let expired = |entry: &Entry| entry.tombstone_until == Some(until);
            let is_expired = versions
                .wide
                .get(id)
                .is_some_and(|wide| wide.lanes.get(lane).is_some_and(expired));
            if !is_expired {
                continue;
            }
            if let Some((mut lanes, name)) = versions.take(id) {
                // What is left goes back (to the compact table if one live version).
                if lanes.remove(lane) {
                    versions.put(id, lanes, name);
                }
            }
            if versions.is_empty() {
                self.dbs.remove(&db);
            }
        }
        visited
    }

    /// How many entries (a key's lanes each count).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Every entry as (db, key's fingerprint, key's name where kept, lane, entry).
    pub fn iter(&self) -> impl Iterator<Item = (i32, KeyId, Option<&[u8]>, &[u8], Entry)> {
        self.dbs.iter().flat_map(move |(&db, versions)| {
            versions.iter().map(move |(id, name, lane, entry)| {
                (db, id, name, &*self.lane_names[usize::from(lane)], entry)
            })
        })
    }

    /// Figures for INFO, in time proportional to the databases and their tables' directory
    /// segments (one a 100,000 keys or so).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            lanes: self.lane_names.len(),
            deadlines: self.deadlines.len(),
            ..Stats::default()
        };
        for versions in self.dbs.values() {
            stats.compact_keys += versions.compact.len();
            stats.compact_bytes += versions.compact.bytes();
            stats.wide_keys += versions.wide.len();
            stats.wide_bytes += versions.wide.bytes();
        }
        stats
    }
}

/// What [`Versions`] holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Keys with one live version, and the bytes they take.
    pub compact_keys: usize,
    pub compact_bytes: usize,
    /// Keys with versions in several lanes or a tombstone, and the bytes of their table.
    pub wide_keys: usize,
    pub wide_bytes: usize,
    /// Tombstone deadlines not passed or not purged yet (one may be stale: its key
    /// written again since).
    pub deadlines: usize,
    /// Lane names known, the unnamed one included.
    pub lanes: usize,
}

/// A key's versions as one node sends them to another when the key moves between them
/// (resharding): `[key len u32][key][lanes u32]`, then per lane `[lane len u32][lane]
/// [version i64][tombstone 0|1][until i64]`, numbers little-endian.
pub fn encode_transfer(key: &[u8], lanes: &[(Vec<u8>, Entry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + lanes.len() * 32);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(lanes.len() as u32).to_le_bytes());
    for (lane, entry) in lanes {
        out.extend_from_slice(&(lane.len() as u32).to_le_bytes());
        out.extend_from_slice(lane);
        out.extend_from_slice(&entry.version.to_le_bytes());
        out.push(u8::from(entry.tombstone_until.is_some()));
        out.extend_from_slice(&entry.tombstone_until.unwrap_or(0).to_le_bytes());
    }
    out
}

/// A key and its lanes' entries.
pub type Transfer = (Vec<u8>, Vec<(Vec<u8>, Entry)>);

/// [`encode_transfer`]'s bytes read back; `None` for bytes that are not such a message.
pub fn decode_transfer(message: &[u8]) -> Option<Transfer> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = tail;
            Some(head)
        }
        fn u32(&mut self) -> Option<usize> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
        }
        fn i64(&mut self) -> Option<i64> {
            Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn bytes(&mut self) -> Option<Vec<u8>> {
            let len = self.u32()?;
            Some(self.take(len)?.to_vec())
        }
    }
    let mut reader = Reader(message);
    let key = reader.bytes()?;
    let count = reader.u32()?;
    // Each lane takes at least 21 bytes: a count past what is left is no message.
    if count > reader.0.len() / 21 {
        return None;
    }
    let mut lanes = Vec::with_capacity(count);
    for _ in 0..count {
        let lane = reader.bytes()?;
        let version = reader.i64()?;
        let tombstone = reader.take(1)?[0] != 0;
        let until = reader.i64()?;
        lanes.push((
            lane,
            Entry {
                version,
                tombstone_until: tombstone.then_some(until),
            },
        ));
    }
    reader.0.is_empty().then_some((key, lanes))
}

impl Versions {
    /// The keys of cluster slot `slot` whose versions are kept apart from them (with
    /// tombstones, or in several lanes), by name with their entries: what goes along
    /// when the slot moves to another node, deleted keys' tombstones included. `limit` of
    /// them from fingerprint `from` on, and where the next ones start, if any.
    pub fn keys_in_slot(
        &self,
        db: i32,
        slot: u16,
        from: KeyId,
        limit: usize,
    ) -> (Vec<Transfer>, Option<KeyId>) {
        let Some(versions) = self.dbs.get(&db) else {
            return (Vec::new(), None);
        };
        let mut ids = versions
            .wide_by_slot
            .range((slot, from)..=(slot, KeyId::MAX))
            .map(|&(_, id)| id);
        let keys = ids
            .by_ref()
            .take(limit)
            .filter_map(|id| {
                let wide = versions.wide.get(id)?;
                let lanes = wide
                    .lanes
                    .iter()
                    .map(|(lane, entry)| (self.lane_names[usize::from(lane)].to_vec(), *entry))
                    .collect();
                Some((wide.name.as_deref()?.to_vec(), lanes))
            })
            .collect();
        (keys, ids.next())
    }

    /// The key's entries, lane by lane (names), to send along when it moves.
    pub fn lanes_of(&self, db: i32, key: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let Some(versions) = self.dbs.get(&db) else {
            return Vec::new();
        };
        let id = self.key_id(key);
        let lanes = match versions.compact.get(id) {
            Some(live) => Some(Lanes::One(live.lane, Entry::live(live.version))),
            None => versions.wide.get(id).map(|wide| wide.lanes.clone()),
        };
        lanes.map_or_else(Vec::new, |lanes| {
            lanes
                .iter()
                .map(|(lane, entry)| (self.lane_names[usize::from(lane)].to_vec(), *entry))
                .collect()
        })
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
        assert!(versions.is_newer(0, b"k", b"", 5, 0));
        versions.set(0, b"k", b"", entry(5, LIVE));
        assert!(!versions.is_newer(0, b"k", b"", 5, 0));
        assert!(!versions.is_newer(0, b"k", b"", 4, 0));
        assert!(versions.is_newer(0, b"k", b"", 6, 0));
        assert!(
            versions.is_newer(1, b"k", b"", 1, 0),
            "other databases are other keys"
        );
    }

    #[test]
    fn admission_says_when_the_clock_decided() {
        let mut versions = Versions::default();
        let id = versions.key_id(b"k");
        assert_eq!(versions.admission(0, id, b"", 1, 0), Admission::NothingKept);
        versions.set(0, b"k", b"", entry(5, Some(100)));
        assert_eq!(
            versions.admission(0, id, b"", 6, 0),
            Admission::NewerThanKept
        );
        assert_eq!(versions.admission(0, id, b"", 5, 99), Admission::NotNewer);
        assert_eq!(
            versions.admission(0, id, b"", 5, 100),
            Admission::NothingKept
        );
        assert_eq!(
            versions.admission(0, id, b"other", 1, 0),
            Admission::NothingKept
        );
        versions.set(0, b"k", b"", entry(7, None));
        assert_eq!(
            versions.admission(0, id, b"", 8, 1000),
            Admission::NewerThanKept
        );
        assert_eq!(versions.admission(0, id, b"", 7, 1000), Admission::NotNewer);
    }

    #[test]
    fn tombstones_hold_until_their_deadline() {
        let mut versions = Versions::default();
        versions.set(0, b"k", b"", entry(9, Some(1000)));
        assert!(!versions.is_newer(0, b"k", b"", 8, 999));
        assert!(versions.is_newer(0, b"k", b"", 8, 1000));
        versions.purge(999, 100);
        assert_eq!(versions.len(), 1);
        versions.purge(1000, 100);
        assert!(versions.is_empty());
    }

    #[test]
    fn versions_follow_their_key() {
        let mut versions = Versions::default();
        versions.set(0, b"a", b"", entry(3, LIVE));
        versions.move_from(0, b"a");
        versions.move_to(0, b"b");
        assert!(versions.get(0, b"a", b"", 0).is_none());
        assert_eq!(versions.get(0, b"b", b"", 0), Some(entry(3, LIVE)));
        versions.move_from(0, b"b");
        versions.move_to(2, b"b");
        assert_eq!(versions.get(2, b"b", b"", 0).map(|e| e.version), Some(3));
        // A rename onto a versioned key replaces its version; from an unversioned one
        // clears it.
        versions.set(0, b"c", b"", entry(1, LIVE));
        versions.move_from(0, b"unversioned");
        versions.move_to(0, b"c");
        assert!(versions.get(0, b"c", b"", 0).is_none());
        versions.forget(2, b"b");
        assert!(versions.is_empty());
    }

    #[test]
    fn lanes_version_apart() {
        let mut versions = Versions::default();
        assert!(versions.set(0, b"k", b"data:customers", entry(9, LIVE)));
        // Another lane's older version is not held back, nor is the default lane.
        assert!(versions.is_newer(0, b"k", b"data:addresses", 3, 0));
        assert!(versions.is_newer(0, b"k", b"", 1, 0));
        versions.set(0, b"k", b"data:addresses", entry(3, Some(100)));
        assert!(!versions.is_newer(0, b"k", b"data:customers", 9, 0));
        assert!(!versions.is_newer(0, b"k", b"data:addresses", 3, 0));
        assert_eq!(versions.len(), 2);
        // Lanes go with their key, and tombstones past their deadline go alone.
        versions.move_from(0, b"k");
        versions.move_to(0, b"j");
        assert_eq!(
            versions.get(0, b"j", b"data:customers", 0),
            Some(entry(9, LIVE))
        );
        versions.purge(100, 100);
        assert_eq!(versions.len(), 1);
        let listed: Vec<_> = versions
            .iter()
            .map(|(db, key, _, lane, e)| (db, key, lane.to_vec(), e))
            .collect();
        assert_eq!(
            listed,
            [(
                0,
                versions.key_id(b"j"),
                b"data:customers".to_vec(),
                entry(9, LIVE)
            )]
        );
        versions.forget(0, b"j");
        assert!(versions.is_empty());
    }

    /// A purge visits expired tombstones only, a budget at a time; a tombstone written
    /// over, renamed or swapped to another database is purged as it is now.
    #[test]
    fn purges_visit_only_expired_tombstones_within_a_budget() {
        let mut versions = Versions::default();
        for i in 0..10u32 {
            versions.set(0, &i.to_be_bytes(), b"", entry(1, Some(100)));
        }
        versions.set(0, b"live", b"", entry(1, LIVE));
        versions.set(0, b"later", b"", entry(1, Some(500)));
        assert_eq!(versions.purge(99, 100), 0, "nothing expired yet");
        assert_eq!(versions.purge(100, 4), 4);
        assert_eq!(versions.len(), 8);
        assert_eq!(versions.purge(100, 100), 6);
        assert_eq!(
            versions.len(),
            2,
            "the live version and the later tombstone"
        );
        // Written again before its deadline: the old deadline purges nothing.
        versions.set(0, b"later", b"", entry(2, LIVE));
        assert_eq!(versions.purge(1000, 100), 1);
        assert_eq!(versions.len(), 2);
        // Renamed and swapped: purged under its new name and database.
        versions.set(0, b"old", b"", entry(3, Some(2000)));
        versions.move_from(0, b"old");
        versions.move_to(0, b"new");
        versions.swap(0, 5);
        assert!(versions.get(5, b"new", b"", 1999).is_some());
        versions.purge(2000, 100);
        assert!(versions.get(5, b"new", b"", 0).is_none());
        assert_eq!(versions.len(), 2);
    }

    #[test]
    fn live_versions_take_18_bytes() {
        assert_eq!(std::mem::size_of::<Live>(), 18);
    }

    /// A key with one live version sits in the compact table; a second lane or a
    /// tombstone moves it to the wide map, and it comes back when that is gone.
    #[test]
    fn keys_move_between_compact_and_wide() {
        let mut versions = Versions::default();
        let compact_keys = |versions: &Versions| versions.stats().compact_keys;
        versions.set(0, b"k", b"a", entry(1, LIVE));
        assert_eq!(compact_keys(&versions), 1);
        versions.set(0, b"k", b"b", entry(5, Some(100)));
        assert_eq!(compact_keys(&versions), 0);
        assert_eq!(versions.get(0, b"k", b"a", 0), Some(entry(1, LIVE)));
        assert_eq!(versions.get(0, b"k", b"b", 99), Some(entry(5, Some(100))));
        versions.purge(100, 10);
        assert_eq!(
            compact_keys(&versions),
            1,
            "back once the tombstone is gone"
        );
        assert_eq!(versions.get(0, b"k", b"a", 0), Some(entry(1, LIVE)));
        assert_eq!(versions.get(0, b"k", b"b", 0), None);
        // Deleted with a version: a tombstone in the wide map, then written again.
        versions.set(0, b"k", b"a", entry(2, Some(500)));
        assert_eq!((compact_keys(&versions), versions.len()), (0, 1));
        versions.set(0, b"k", b"a", entry(3, LIVE));
        assert_eq!(compact_keys(&versions), 1);
        assert_eq!(
            versions.purge(1000, 10),
            1,
            "the stale deadline purges nothing"
        );
        assert_eq!(versions.get(0, b"k", b"a", 0), Some(entry(3, LIVE)));
        versions.move_from(0, b"k");
        versions.move_to(3, b"j");
        assert_eq!(versions.get(3, b"j", b"a", 0), Some(entry(3, LIVE)));
        assert_eq!(compact_keys(&versions), 1);
        versions.forget(3, b"j");
        assert!(versions.is_empty());
    }

    /// The keys a slot takes along when it moves: those with tombstones or several lanes,
    /// by name, deleted ones included; not the live single versions (they go with their
    /// key, by MIGRATE), nor other slots' keys.
    #[test]
    fn keys_in_slot_are_the_wide_ones() {
        let mut versions = Versions::default();
        let slot = key_slot(b"{s}gone");
        versions.set(0, b"{s}gone", b"", entry(9, Some(100)));
        versions.set(0, b"{s}two", b"a", entry(1, LIVE));
        versions.set(0, b"{s}two", b"b", entry(2, LIVE));
        versions.set(0, b"{s}one", b"a", entry(3, LIVE));
        versions.set(0, b"{t}gone", b"", entry(4, Some(100)));
        let all = |versions: &Versions, slot| versions.keys_in_slot(0, slot, 0, usize::MAX).0;
        let mut keys = all(&versions, slot);
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys[1].1.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            keys,
            [
                (
                    b"{s}gone".to_vec(),
                    vec![(b"".to_vec(), entry(9, Some(100)))]
                ),
                (
                    b"{s}two".to_vec(),
                    vec![
                        (b"a".to_vec(), entry(1, LIVE)),
                        (b"b".to_vec(), entry(2, LIVE))
                    ]
                ),
            ]
        );
        // Renamed: under its new name (and slot); purged: gone.
        // A part at a time: the first, then from where it says the rest starts.
        let (first, next) = versions.keys_in_slot(0, slot, 0, 1);
        let (rest, after) = versions.keys_in_slot(0, slot, next.unwrap(), 1);
        assert_eq!((first.len(), rest.len(), after), (1, 1, None));
        assert_ne!(first[0].0, rest[0].0);
        versions.move_from(0, b"{s}two");
        versions.move_to(0, b"{t}two");
        assert_eq!(all(&versions, slot).len(), 1);
        assert_eq!(all(&versions, key_slot(b"{t}")).len(), 2);
        versions.purge(100, 10);
        assert!(all(&versions, slot).is_empty());
        assert_eq!(all(&versions, key_slot(b"{t}")).len(), 1);
    }

    /// Fingerprints are keyed: the same secret (as saved) knows the same keys, another
    /// does not.
    #[test]
    fn fingerprints_follow_the_secret() {
        let mut saved = Versions::default();
        saved.set(1, b"k", b"lane", entry(4, LIVE));
        let mut loaded = Versions::with_secret(saved.secret());
        for (db, id, name, lane, entry) in saved.iter() {
            assert!(loaded.set_id(db, id, name, lane, entry));
        }
        assert_eq!(loaded.get(1, b"k", b"lane", 0), Some(entry(4, LIVE)));
        assert_ne!(Versions::default().key_id(b"k"), saved.key_id(b"k"));
    }

    #[test]
    fn transfers_read_back_and_refuse_other_bytes() {
        let lanes = vec![
            (b"".to_vec(), entry(7, LIVE)),
            (b"data:x".to_vec(), entry(-3, Some(99))),
        ];
        let message = encode_transfer(b"k\x00ey", &lanes);
        assert_eq!(
            decode_transfer(&message),
            Some((b"k\x00ey".to_vec(), lanes))
        );
        for cut in 0..message.len() {
            assert_eq!(decode_transfer(&message[..cut]), None, "cut at {cut}");
        }
        let mut longer = message.clone();
        longer.push(0);
        assert_eq!(decode_transfer(&longer), None);
        let mut huge = encode_transfer(b"k", &[]);
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_transfer(&huge), None);
        let mut versions = Versions::default();
        versions.set(0, b"k", b"data:x", entry(4, LIVE));
        versions.set(0, b"k", b"", entry(2, LIVE));
        let mut listed = versions.lanes_of(0, b"k");
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listed,
            [
                (b"".to_vec(), entry(2, LIVE)),
                (b"data:x".to_vec(), entry(4, LIVE))
            ]
        );
        assert!(versions.lanes_of(0, b"other").is_empty());
    }

    #[test]
    fn lanes_are_capped() {
        let mut versions = Versions::default();
        for lane in 1..MAX_LANES {
            let name = lane.to_string();
            assert!(versions.set(0, name.as_bytes(), name.as_bytes(), entry(1, LIVE)));
        }
        assert!(!versions.has_room_for(b"one more"));
        assert!(!versions.set(0, b"k", b"one more", entry(1, LIVE)));
        assert!(
            versions.set(0, b"other", b"7", entry(1, LIVE)),
            "known lanes still take keys"
        );
    }

    #[test]
    fn flush_and_swap() {
        let mut versions = Versions::default();
        versions.set(0, b"k", b"", entry(1, LIVE));
        versions.set(1, b"k", b"", entry(2, LIVE));
        versions.swap(0, 1);
        assert_eq!(versions.get(0, b"k", b"", 0).map(|e| e.version), Some(2));
        versions.flush(Some(0));
        assert!(versions.get(0, b"k", b"", 0).is_none());
        assert_eq!(versions.len(), 1);
        versions.flush(None);
        assert!(versions.is_empty());
        // Tombstones' deadlines go with their database.
        versions.set(0, b"a", b"", entry(1, Some(100)));
        versions.set(1, b"b", b"", entry(1, Some(100)));
        versions.flush(Some(1));
        assert_eq!(versions.stats().deadlines, 1);
        versions.flush(None);
        assert_eq!(versions.stats().deadlines, 0);
    }
}
