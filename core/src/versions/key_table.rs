//! A map from a key's 64-bit fingerprint to an entry, in buckets that grow and shrink one
//! at a time: the versions of millions of keys without a stall or a half-empty table.
//!
//! It is a linear hash table (Litwin, 1980): the table grows or shrinks by splitting or
//! merging one bucket at a time, so that no insert or removal ever moves more than one
//! bucket's entries and no allocation is ever larger than a directory segment. A doubling
//! table would stall the server while it rehashes millions (and again when it frees
//! them), and be half empty after each growth. Buckets are vectors sized to what they
//! hold, so the buckets not yet split in a round, which hold twice as much, cost a longer
//! scan, not room.

/// What the table holds: entries that know their key's fingerprint.
pub trait Keyed {
    fn id(&self) -> u64;
}

/// Entries a bucket holds on average before the table grows by a bucket.
const GROW_ABOVE: usize = 24;
/// The last bucket is merged back when they hold fewer on average.
const SHRINK_BELOW: usize = 8;
/// Buckets per directory segment: the directory grows a segment at a time, never copying
/// more than one segment.
const SEGMENT: usize = 4096;

#[derive(Clone)]
pub struct KeyTable<E> {
    segments: Vec<Vec<Vec<E>>>,
    /// Buckets are addressed by the fingerprint's low `level` bits, or `level + 1` bits
    /// for the buckets before `split`, already split in this round.
    level: u32,
    split: usize,
    len: usize,
    /// The buckets' capacities, summed: entries they have room for.
    room: usize,
}

impl<E> Default for KeyTable<E> {
    fn default() -> Self {
        KeyTable {
            segments: Vec::new(),
            level: 0,
            split: 0,
            len: 0,
            room: 0,
        }
    }
}

impl<E> std::fmt::Debug for KeyTable<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("len", &self.len)
            .field("buckets", &((1usize << self.level) + self.split))
            .finish()
    }
}

impl<E: Keyed> KeyTable<E> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: u64) -> Option<&E> {
        if self.len == 0 {
            return None;
        }
        self.bucket(id).iter().find(|entry| entry.id() == id)
    }

    /// Keeps `entry`, in place of the one with the same fingerprint.
    pub fn insert(&mut self, entry: E) {
        let id = entry.id();
        if self.segments.is_empty() {
            self.segments.push(vec![Vec::new()]);
        }
        let bucket = self.bucket_mut(id);
        if let Some(old) = bucket.iter_mut().find(|old| old.id() == id) {
            *old = entry;
            return;
        }
        let before = bucket.capacity();
        push(bucket, entry);
        self.room += bucket.capacity() - before;
        self.len += 1;
        if self.len > self.buckets() * GROW_ABOVE {
            self.split_one();
        }
    }

    /// Removes the entry with fingerprint `id`.
    pub fn remove(&mut self, id: u64) -> Option<E> {
        if self.len == 0 {
            return None;
        }
        let bucket = self.bucket_mut(id);
        let at = bucket.iter().position(|entry| entry.id() == id)?;
        let removed = bucket.swap_remove(at);
        let before = bucket.capacity();
        fit(bucket);
        self.room -= before - bucket.capacity();
        self.len -= 1;
        if self.buckets() > 1 && self.len < self.buckets() * SHRINK_BELOW {
            self.merge_last();
        }
        Some(removed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.segments.iter().flatten().flatten()
    }

    /// Bytes the table asks the allocator for (buckets and directory; not what entries
    /// point to), in time proportional to the directory's segments (one a 4,096 buckets).
    pub fn bytes(&self) -> usize {
        let bucket = std::mem::size_of::<Vec<E>>();
        let directory: usize = self
            .segments
            .iter()
            .map(|buckets| bucket + buckets.capacity() * bucket)
            .sum();
        self.room * std::mem::size_of::<E>() + directory
    }

    fn buckets(&self) -> usize {
        (1 << self.level) + self.split
    }

    fn index_of(&self, id: u64) -> usize {
        let low = (id & ((1u64 << self.level) - 1)) as usize;
        if low < self.split {
            (id & ((1u64 << (self.level + 1)) - 1)) as usize
        } else {
            low
        }
    }

    fn bucket(&self, id: u64) -> &Vec<E> {
        let index = self.index_of(id);
        &self.segments[index / SEGMENT][index % SEGMENT]
    }

    fn bucket_mut(&mut self, id: u64) -> &mut Vec<E> {
        let index = self.index_of(id);
        &mut self.segments[index / SEGMENT][index % SEGMENT]
    }

    /// Splits the next bucket in this round: its entries whose next address bit is set
    /// go to a new bucket at the end.
    fn split_one(&mut self) {
        let (from, to) = (self.split, self.buckets());
        let bit = 1u64 << self.level;
        self.split += 1;
        if self.split == 1 << self.level {
            self.level += 1;
            self.split = 0;
        }
        let bucket = &mut self.segments[from / SEGMENT][from % SEGMENT];
        let before = bucket.capacity();
        let mut moving = Vec::new();
        for entry in bucket.extract_if(.., |entry| entry.id() & bit != 0) {
            push(&mut moving, entry);
        }
        fit(bucket);
        self.room = self.room - before + bucket.capacity() + moving.capacity();
        if to % SEGMENT == 0 {
            self.segments.push(Vec::new());
        }
        self.segments[to / SEGMENT].push(moving);
    }

    /// Undoes the last split: the last bucket's entries go back to the one they came from.
    fn merge_last(&mut self) {
        if self.split == 0 {
            self.level -= 1;
            self.split = 1 << self.level;
        }
        self.split -= 1;
        let last = self.buckets();
        let segment = &mut self.segments[last / SEGMENT];
        let moving = segment.pop().unwrap_or_default();
        if segment.is_empty() {
            self.segments.pop();
        }
        let into = &mut self.segments[self.split / SEGMENT][self.split % SEGMENT];
        let before = into.capacity() + moving.capacity();
        into.reserve_exact(moving.len());
        into.extend(moving);
        self.room = self.room - before + into.capacity();
    }
}

/// Adds to a bucket. A full bucket grows to the next allocation size class (jemalloc's,
/// Redis's allocator: four a doubling), so it never holds room the allocator would not
/// charge for anyway.
fn push<E>(bucket: &mut Vec<E>, entry: E) {
    if bucket.len() == bucket.capacity() {
        let size = std::mem::size_of::<E>().max(1);
        let room = size_class((bucket.len() + 1) * size) / size;
        bucket.reserve_exact(room - bucket.len());
    }
    bucket.push(entry);
}

/// Gives back a bucket's room once it holds less than three quarters of it.
fn fit<E>(bucket: &mut Vec<E>) {
    if bucket.len() * 4 < bucket.capacity() * 3 {
        let size = std::mem::size_of::<E>().max(1);
        bucket.shrink_to(size_class(bucket.len() * size) / size);
    }
}

/// The smallest allocation size class holding `bytes`: multiples of 16 up to 64, then
/// four classes between powers of two.
fn size_class(bytes: usize) -> usize {
    let step = if bytes <= 64 {
        16
    } else {
        bytes.next_power_of_two() / 8
    };
    bytes.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    /// An 18-byte entry, as the versions keep.
    #[derive(Debug, Clone, Copy, PartialEq)]
    #[repr(C, packed)]
    struct Entry {
        id: u64,
        lane: u16,
        version: i64,
    }

    impl Keyed for Entry {
        fn id(&self) -> u64 {
            self.id
        }
    }

    fn entry(id: u64, lane: u16, version: i64) -> Entry {
        Entry { id, lane, version }
    }

    /// What `bytes` tracks, found by walking every bucket.
    fn walked_bytes<E>(table: &KeyTable<E>) -> usize {
        let bucket = std::mem::size_of::<Vec<E>>();
        table
            .segments
            .iter()
            .map(|buckets| {
                let entries: usize = buckets.iter().map(Vec::capacity).sum();
                bucket + buckets.capacity() * bucket + entries * std::mem::size_of::<E>()
            })
            .sum()
    }

    #[test]
    fn size_classes_are_jemallocs() {
        let classes: Vec<usize> = [1, 16, 17, 64, 65, 80, 81, 128, 129, 400, 448, 449, 1000]
            .into_iter()
            .map(size_class)
            .collect();
        assert_eq!(
            classes,
            [16, 16, 32, 64, 80, 80, 96, 128, 160, 448, 448, 512, 1024]
        );
    }

    /// Random inserts, updates and removals agree with a HashMap at every step, across
    /// splits and merges, including fingerprints that share their low bits (one bucket).
    #[test]
    fn agrees_with_a_hash_map() {
        let mut rng = StdRng::seed_from_u64(14);
        let mut table = KeyTable::default();
        let mut expected: HashMap<u64, Entry> = HashMap::new();
        for round in 0..4 {
            let ids: Vec<u64> = (0..20_000u64)
                .map(|i| match round {
                    // Same low 20 bits: every one in one bucket.
                    0 => (i << 20) | 0xABCDE,
                    _ => rng.random(),
                })
                .take(if round == 0 { 300 } else { 20_000 })
                .collect();
            for &id in &ids {
                let value = entry(id, rng.random(), rng.random());
                table.insert(value);
                expected.insert(id, value);
            }
            for &id in ids.iter().step_by(3) {
                table.insert(entry(id, 7, -1));
                expected.insert(id, entry(id, 7, -1));
            }
            for &id in ids.iter().step_by(2) {
                assert_eq!(table.remove(id), expected.remove(&id));
                assert_eq!(table.remove(id), None);
            }
            assert_eq!(table.len(), expected.len());
            for (&id, value) in &expected {
                assert_eq!(table.get(id), Some(value));
            }
            assert_eq!(table.get(rng.random()), None);
            assert_eq!(table.bytes(), walked_bytes(&table), "tracked as walked");
            let key = |e: &Entry| (e.id, e.lane, e.version);
            let mut listed: Vec<_> = table.iter().map(key).collect();
            listed.sort_unstable();
            let mut wanted: Vec<_> = expected.values().map(key).collect();
            wanted.sort_unstable();
            assert_eq!(listed, wanted);
        }
        for id in expected.keys() {
            table.remove(*id);
        }
        assert!(table.is_empty());
        assert_eq!(table.buckets(), 1, "merged back to one bucket");
        assert_eq!(table.bytes(), walked_bytes(&table));
    }

    /// The table stays between its bounds at every size: about 21 bytes an 18-byte
    /// entry, and it shrinks as entries go.
    #[test]
    fn stays_compact_at_every_size() {
        let mut rng = StdRng::seed_from_u64(24);
        let mut table = KeyTable::default();
        let mut ids = Vec::new();
        for n in 1..=400_000usize {
            let id = rng.random();
            ids.push(id);
            table.insert(entry(id, 0, 1));
            if n % 50_000 == 0 {
                let per_entry = table.bytes() as f64 / n as f64;
                assert!(per_entry < 23.0, "{per_entry:.1} bytes an entry at {n}");
            }
        }
        for id in ids.drain(..300_000) {
            table.remove(id);
        }
        let per_entry = table.bytes() as f64 / table.len() as f64;
        assert!(
            per_entry < 48.0,
            "{per_entry:.1} bytes an entry after removals"
        );
    }
}
