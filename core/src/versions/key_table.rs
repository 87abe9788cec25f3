//! A compact map from a key's 64-bit fingerprint to one (lane, version): what most
//! versioned keys need, in about 20 bytes each.
//!
//! It is a linear hash table (Litwin, 1980): entries live in small buckets, and the table
//! grows or shrinks by splitting or merging one bucket at a time, so that no insert or
//! removal ever rehashes more than one bucket (a doubling table would stall the server
//! while it rehashes millions, and be half empty after each growth: up to 36 bytes an
//! entry). Buckets are vectors sized to what they hold, so the buckets not yet split in a
//! round, which hold twice as much, cost a longer scan, not room.

/// Entries a bucket holds on average before the table grows by a bucket.
const GROW_ABOVE: usize = 24;
/// The last bucket is merged back when they hold fewer on average.
const SHRINK_BELOW: usize = 8;
/// Buckets per directory segment: the directory grows a segment at a time, never copying
/// more than one segment.
const SEGMENT: usize = 4096;

/// An entry: 18 bytes, unaligned.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, packed)]
struct Slot {
    id: u64,
    lane: u16,
    version: i64,
}

type Bucket = Vec<Slot>;

#[derive(Clone, Default)]
pub struct KeyTable {
    segments: Vec<Vec<Bucket>>,
    /// Buckets are addressed by the fingerprint's low `level` bits, or `level + 1` bits
    /// for the buckets before `split`, already split in this round.
    level: u32,
    split: usize,
    len: usize,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("len", &self.len)
            .field("buckets", &self.buckets())
            .finish()
    }
}

impl KeyTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lane and version kept for `id`.
    pub fn get(&self, id: u64) -> Option<(u16, i64)> {
        if self.len == 0 {
            return None;
        }
        let slot = self.bucket(id).iter().find(|slot| { slot.id } == id)?;
        Some((slot.lane, slot.version))
    }

    /// Keeps `lane` and `version` for `id`, in place of what it had.
    pub fn insert(&mut self, id: u64, lane: u16, version: i64) {
        let slot = Slot { id, lane, version };
        if self.segments.is_empty() {
            self.segments.push(vec![Bucket::new()]);
        }
        let bucket = self.bucket_mut(id);
        if let Some(old) = bucket.iter_mut().find(|old| { old.id } == id) {
            *old = slot;
            return;
        }
        push(bucket, slot);
        self.len += 1;
        if self.len > self.buckets() * GROW_ABOVE {
            self.split_one();
        }
    }

    /// Removes `id`; its lane and version.
    pub fn remove(&mut self, id: u64) -> Option<(u16, i64)> {
        if self.len == 0 {
            return None;
        }
        let bucket = self.bucket_mut(id);
        let at = bucket.iter().position(|slot| { slot.id } == id)?;
        let removed = bucket.swap_remove(at);
        fit(bucket);
        self.len -= 1;
        if self.buckets() > 1 && self.len < self.buckets() * SHRINK_BELOW {
            self.merge_last();
        }
        Some((removed.lane, removed.version))
    }

    /// Every entry as (fingerprint, lane, version).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u16, i64)> + '_ {
        self.segments
            .iter()
            .flatten()
            .flatten()
            .map(|slot| (slot.id, slot.lane, slot.version))
    }

    /// Bytes the table asks the allocator for (buckets and directory).
    pub fn bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|buckets| {
                let entries: usize = buckets.iter().map(Vec::capacity).sum();
                24 + buckets.capacity() * std::mem::size_of::<Bucket>()
                    + entries * std::mem::size_of::<Slot>()
            })
            .sum()
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

    fn bucket(&self, id: u64) -> &Bucket {
        let index = self.index_of(id);
        &self.segments[index / SEGMENT][index % SEGMENT]
    }

    fn bucket_mut(&mut self, id: u64) -> &mut Bucket {
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
        let moving: Bucket = bucket
            .iter()
            .filter(|slot| slot.id & bit != 0)
            .copied()
            .collect();
        bucket.retain(|slot| slot.id & bit == 0);
        fit(bucket);
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
        into.reserve_exact(moving.len());
        into.extend(moving);
    }
}

/// Adds to a bucket. A full bucket grows to the next allocation size class (jemalloc's,
/// Redis's allocator: four a doubling), so it never holds room the allocator would not
/// charge for anyway.
fn push(bucket: &mut Bucket, slot: Slot) {
    if bucket.len() == bucket.capacity() {
        let room = size_class((bucket.len() + 1) * SLOT_BYTES) / SLOT_BYTES;
        bucket.reserve_exact(room - bucket.len());
    }
    bucket.push(slot);
}

/// Gives back a bucket's room once it holds less than three quarters of it.
fn fit(bucket: &mut Bucket) {
    if bucket.len() * 4 < bucket.capacity() * 3 {
        bucket.shrink_to(size_class(bucket.len() * SLOT_BYTES) / SLOT_BYTES);
    }
}

const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

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

    #[test]
    fn entries_take_18_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 18);
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
    /// splits and merges, including fingerprints that share their low bits (one page).
    #[test]
    fn agrees_with_a_hash_map() {
        let mut rng = StdRng::seed_from_u64(14);
        let mut table = KeyTable::default();
        let mut expected: HashMap<u64, (u16, i64)> = HashMap::new();
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
                let value = (rng.random::<u16>(), rng.random::<i64>());
                table.insert(id, value.0, value.1);
                expected.insert(id, value);
            }
            for &id in ids.iter().step_by(3) {
                table.insert(id, 7, -1);
                expected.insert(id, (7, -1));
            }
            for &id in ids.iter().step_by(2) {
                assert_eq!(table.remove(id), expected.remove(&id));
                assert_eq!(table.remove(id), None);
            }
            assert_eq!(table.len(), expected.len());
            for (&id, &value) in &expected {
                assert_eq!(table.get(id), Some(value));
            }
            assert_eq!(table.get(rng.random()), None);
            let mut listed: Vec<_> = table.iter().collect();
            listed.sort_unstable();
            let mut wanted: Vec<_> = expected.iter().map(|(&id, &(l, v))| (id, l, v)).collect();
            wanted.sort_unstable();
            assert_eq!(listed, wanted);
        }
        for id in expected.keys() {
            table.remove(*id);
        }
        assert!(table.is_empty());
        assert_eq!(table.buckets(), 1, "merged back to one bucket");
    }

    /// The table stays between its bounds at every size: about 20 bytes an entry.
    #[test]
    fn stays_compact_at_every_size() {
        let mut rng = StdRng::seed_from_u64(24);
        let mut table = KeyTable::default();
        let mut ids = Vec::new();
        for n in 1..=400_000usize {
            let id = rng.random();
            ids.push(id);
            table.insert(id, 0, 1);
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
