//! Device data streams (seed 000): exactly one record per device, stamped with the device
//! id and a timestamp, optionally with each device's last n records and a time to live.
//!
//! Expiry is a pure function of a record's time, the stream's TTL and the clock, so a
//! record past its TTL is invisible to every read at once; freeing its memory
//! ([`DeviceStream::reclaim`]) is garbage collection that changes no answer.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::mem::size_of;
use std::ops::Bound;

use serde_json::Value;

use crate::args::{parse_choice, Args};
use crate::error::{Error, Result};
use crate::json::{self, Limits};
use crate::time;

/// The longest TTL accepted: 100 years.
pub const MAX_TTL_SECS: i64 = 100 * 365 * 86_400;
/// The most records of history one device can keep.
pub const MAX_HISTORY: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    /// Whole seconds since 1970-01-01 UTC, as a JSON integer.
    Epoch,
    /// `2026-11-21T19:47:48.019Z`, as a JSON string.
    Iso8601,
}

impl DateFormat {
    pub const NAMES: [&'static str; 2] = ["EPOCH", "ISO8601"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_index(index: usize) -> Option<Self> {
        [Self::Epoch, Self::Iso8601].get(index).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUpdate {
    /// An update replaces the device's record.
    Replace,
    /// An update is merged into the record as an RFC 7396 merge patch.
    Merge,
}

impl OnUpdate {
    pub const NAMES: [&'static str; 2] = ["REPLACE", "MERGE"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_index(index: usize) -> Option<Self> {
        [Self::Replace, Self::Merge].get(index).copied()
    }
}

/// A stream's settings (`DS.CREATE` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub timestamp_field: String,
    pub device_field: String,
    pub date_format: DateFormat,
    /// Seconds a record stays visible after its time; 0 keeps records forever.
    pub ttl_secs: i64,
    /// Records kept per device for `DS.RANGE`; 0 keeps only the current one.
    pub history: i64,
    pub on_update: OnUpdate,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timestamp_field: "timestamp".into(),
            device_field: "deviceId".into(),
            date_format: DateFormat::Iso8601,
            ttl_secs: 0,
            history: 0,
            on_update: OnUpdate::Replace,
        }
    }
}

/// Settings given on `DS.CREATE` or `DS.ALTER`; what is absent stays as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub timestamp_field: Option<String>,
    pub device_field: Option<String>,
    pub date_format: Option<DateFormat>,
    pub ttl_secs: Option<i64>,
    pub history: Option<i64>,
    pub on_update: Option<OnUpdate>,
}

impl SettingsChange {
    /// Parses `[TIMESTAMP f] [DEVICE f] [DATEFORMAT EPOCH|ISO8601] [TTL s] [HISTORY n]
    /// [ONUPDATE REPLACE|MERGE]` up to the end of `args`.
    pub fn parse(args: &mut Args) -> Result<Self> {
        let mut change = SettingsChange::default();
        while let Some(option) = args.next_keyword() {
            match option.as_ref() {
                "TIMESTAMP" => {
                    change.timestamp_field = Some(args.text_value("TIMESTAMP")?.to_owned())
                }
                "DEVICE" => change.device_field = Some(args.text_value("DEVICE")?.to_owned()),
                "DATEFORMAT" => {
                    let index = parse_choice(
                        args.value("DATEFORMAT")?,
                        "DATEFORMAT",
                        &DateFormat::NAMES,
                        "EPOCH or ISO8601",
                    )?;
                    change.date_format = DateFormat::from_index(index);
                }
                "TTL" => change.ttl_secs = Some(args.int_value("TTL", 0, MAX_TTL_SECS)?),
                "HISTORY" => change.history = Some(args.int_value("HISTORY", 0, MAX_HISTORY)?),
                "ONUPDATE" => {
                    let index = parse_choice(
                        args.value("ONUPDATE")?,
                        "ONUPDATE",
                        &OnUpdate::NAMES,
                        "REPLACE or MERGE",
                    )?;
                    change.on_update = OnUpdate::from_index(index);
                }
                _ => return Err(Error::UnknownOption(option.into_owned())),
            }
        }
        Ok(change)
    }

    /// `settings` with this change applied, if the result is consistent.
    pub fn applied_to(&self, settings: &Settings) -> Result<Settings> {
        let mut next = settings.clone();
        if let Some(field) = &self.timestamp_field {
            next.timestamp_field = field.clone();
        }
        if let Some(field) = &self.device_field {
            next.device_field = field.clone();
        }
        next.date_format = self.date_format.unwrap_or(next.date_format);
        next.ttl_secs = self.ttl_secs.unwrap_or(next.ttl_secs);
        next.history = self.history.unwrap_or(next.history);
        next.on_update = self.on_update.unwrap_or(next.on_update);
        if next.timestamp_field == next.device_field {
            return Err(Error::Invalid(format!(
                "TIMESTAMP and DEVICE must name different fields, both are '{}'",
                next.device_field
            )));
        }
        Ok(next)
    }
}

/// One stored record: its time and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ms: i64,
    pub json: Box<str>,
}

/// What a stream keeps for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    current: Record,
    /// With HISTORY n > 0: the last n records, the current one included, oldest first.
    /// Boxed so that a device without history costs 8 bytes here rather than 32.
    #[allow(clippy::box_collection)]
    history: Option<Box<VecDeque<Record>>>,
}

impl Device {
    pub fn current(&self) -> &Record {
        &self.current
    }

    pub fn history(&self) -> impl Iterator<Item = &Record> {
        self.history.iter().flat_map(|history| history.iter())
    }

    /// `record` as the current one, and in the last `keep` records if history is kept.
    fn store(&mut self, record: Record, keep: Option<usize>) {
        if let Some(keep) = keep {
            let history = self.history.get_or_insert_with(Default::default);
            // Kept in time order, so that a late record with an older time lands in place.
            let at = history.partition_point(|r| r.ms <= record.ms);
            history.insert(at, record.clone());
            while history.len() > keep {
                history.pop_front();
            }
        }
        self.current = record;
    }

    fn heap_bytes(&self, name: &str) -> usize {
        let history = self.history.as_ref().map_or(0, |history| {
            size_of::<VecDeque<Record>>()
                + history.capacity() * size_of::<Record>()
                + history.iter().map(|r| r.json.len()).sum::<usize>()
        });
        // A B-tree slot holds name and device; nodes are about two thirds full.
        (size_of::<Box<str>>() + size_of::<Device>()) * 3 / 2
            + name.len()
            + self.current.json.len()
            + history
    }
}

/// The outcome of [`DeviceStream::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated {
    /// The device had no live record before.
    pub created: bool,
    /// An expired record of the device was dropped before the new one was stored; a
    /// replica must drop it too, whatever its clock says.
    pub dropped_expired: bool,
}

/// One key's device data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStream {
    settings: Settings,
    devices: BTreeMap<Box<str>, Device>,
    /// Where the next [`DeviceStream::reclaim`] pass starts.
    reclaim_from: Option<Box<str>>,
    /// Heap bytes of all devices, kept up to date for `MEMORY USAGE`.
    heap_bytes: usize,
}

impl DeviceStream {
    pub fn new(settings: Settings) -> Self {
        DeviceStream {
            settings,
            devices: BTreeMap::new(),
            reclaim_from: None,
            heap_bytes: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies new settings. A smaller HISTORY trims every device's history now. Stamp
    /// fields are added when a record is read, so new field names and date formats apply
    /// to stored records too; a stored member that now bears a stamp field's name is
    /// dropped, as it would have been had it come in an update.
    pub fn alter(&mut self, settings: Settings) {
        let history_changed = settings.history != self.settings.history;
        let stamps_renamed = settings.timestamp_field != self.settings.timestamp_field
            || settings.device_field != self.settings.device_field;
        self.settings = settings;
        if stamps_renamed {
            let stamps = self.stamp_fields().map(str::to_owned);
            let stamps = [stamps[0].as_str(), stamps[1].as_str()];
            let unstamped = |record: &mut Record| {
                // Bodies were compacted on the way in, so they read back without error.
                if let Ok(body) =
                    json::compact_object(record.json.as_bytes(), &Limits::UNLIMITED, &stamps)
                {
                    record.json = body.into_boxed_str();
                }
            };
            for device in self.devices.values_mut() {
                unstamped(&mut device.current);
                device
                    .history
                    .iter_mut()
                    .flat_map(|h| h.iter_mut())
                    .for_each(unstamped);
            }
        }
        if history_changed {
            let keep = self.history_len();
            for device in self.devices.values_mut() {
                device.history = keep.map(|keep| {
                    let mut history = device
                        .history
                        .take()
                        .unwrap_or_else(|| Box::new(VecDeque::from([device.current.clone()])));
                    while history.len() > keep {
                        history.pop_front();
                    }
                    history.shrink_to_fit();
                    history
                });
            }
        }
        if history_changed || stamps_renamed {
            self.heap_bytes = self.devices.iter().map(|(n, d)| d.heap_bytes(n)).sum();
        }
    }

    fn history_len(&self) -> Option<usize> {
        usize::try_from(self.settings.history)
            .ok()
            .filter(|&n| n > 0)
    }

    /// Whether a record of time `ms` is still visible at `now`.
    pub fn is_live(&self, ms: i64, now: i64) -> bool {
        self.settings.ttl_secs == 0 || ms.saturating_add(self.settings.ttl_secs * 1000) > now
    }

    /// Stores the JSON object `payload` as `device`'s record at time `ms` (REPLACE), or
    /// merges it into the current record (MERGE); the stamp fields come when it is read
    /// ([`DeviceStream::render`]). Returns the record stored, for replication.
    ///
    /// `expire_now` is the clock for expiry decisions, or `None` when replaying a
    /// replication stream or AOF, where a record present is a record live on the primary.
    /// On error nothing is changed.
    pub fn update(
        &mut self,
        device: &str,
        payload: &[u8],
        ms: i64,
        expire_now: Option<i64>,
        limits: &Limits,
    ) -> Result<(Updated, &Record)> {
        let base = match self.settings.on_update {
            OnUpdate::Merge => self
                .devices
                .get(device)
                .filter(|found| expire_now.is_none_or(|now| self.is_live(found.current.ms, now)))
                .map(|found| &*found.current.json),
            OnUpdate::Replace => None,
        };
        let json = match base {
            Some(base) => self.merged_body(device, base, payload, limits)?,
            None => self.body(payload, limits)?,
        };
        Ok(self.put(device, Record { ms, json }, expire_now))
    }

    /// Stores `record` as `device`'s current record exactly as given (and in its history).
    /// An expired record (by `expire_now`) is dropped first, with its history.
    pub fn put(
        &mut self,
        device: &str,
        record: Record,
        expire_now: Option<i64>,
    ) -> (Updated, &Record) {
        let keep = self.history_len();
        let ttl_secs = self.settings.ttl_secs;
        // One search of the tree (the key's copy costs less than a second search).
        let (slot, outcome) = match self.devices.entry(device.into()) {
            Entry::Occupied(found) => {
                let slot = found.into_mut();
                self.heap_bytes -= slot.heap_bytes(device);
                let dropped_expired = expire_now.is_some_and(|now| {
                    ttl_secs > 0 && slot.current.ms.saturating_add(ttl_secs * 1000) <= now
                });
                if dropped_expired {
                    slot.history = None;
                }
                let outcome = Updated {
                    created: dropped_expired,
                    dropped_expired,
                };
                (slot, outcome)
            }
            Entry::Vacant(place) => {
                let slot = place.insert(Device {
                    current: Record {
                        ms: 0,
                        json: Box::default(),
                    },
                    history: None,
                });
                let outcome = Updated {
                    created: true,
                    dropped_expired: false,
                };
                (slot, outcome)
            }
        };
        slot.store(record, keep);
        self.heap_bytes += slot.heap_bytes(device);
        (outcome, &slot.current)
    }

    /// The body stored for the JSON object `json`: compact, without nulls, without the
    /// stamp fields (they are added when the record is read).
    pub fn body(&self, json: &[u8], limits: &Limits) -> Result<Box<str>> {
        Ok(json::compact_object(json, limits, &self.stamp_fields())?.into_boxed_str())
    }

    /// The body stored when `payload` is merged into the stored body `base`.
    fn merged_body(
        &self,
        device: &str,
        base: &str,
        payload: &[u8],
        limits: &Limits,
    ) -> Result<Box<str>> {
        let patch = json::parse_object(payload, limits)?;
        let mut merged: Value =
            serde_json::from_str(base).map_err(|_| Error::CorruptRecord(device.to_owned()))?;
        json::merge_patch(&mut merged, Value::Object(patch));
        if let Value::Object(members) = &mut merged {
            for stamp in self.stamp_fields() {
                members.shift_remove(stamp);
            }
        }
        // A merge can grow a record past the limits one payload is held to.
        json::check_shape(&merged, limits)?;
        let text = json::to_text(&merged);
        if text.len() > limits.max_bytes {
            return Err(Error::PayloadTooLarge {
                size: text.len(),
                limit: limits.max_bytes,
            });
        }
        Ok(text.into_boxed_str())
    }

    fn stamp_fields(&self) -> [&str; 2] {
        [&self.settings.timestamp_field, &self.settings.device_field]
    }

    /// The record as read: its body with the timestamp field (its time, in the stream's
    /// date format) and the device field added at the end.
    pub fn render(&self, device: &str, record: &Record) -> String {
        let body = record.json.strip_suffix('}').unwrap_or(&record.json);
        let mut out = String::with_capacity(body.len() + 64);
        out.push_str(body);
        if body.len() > 1 {
            out.push(',');
        }
        push_json_string(&mut out, &self.settings.timestamp_field);
        out.push(':');
        match self.settings.date_format {
            DateFormat::Epoch => out.push_str(&time::epoch_seconds(record.ms).to_string()),
            DateFormat::Iso8601 => {
                out.push('"');
                out.push_str(&time::format_iso8601(record.ms));
                out.push('"');
            }
        }
        out.push(',');
        push_json_string(&mut out, &self.settings.device_field);
        out.push(':');
        push_json_string(&mut out, device);
        out.push('}');
        out
    }

    /// The device's live record.
    pub fn get(&self, device: &str, now: i64) -> Option<&Record> {
        self.devices
            .get(device)
            .map(Device::current)
            .filter(|record| self.is_live(record.ms, now))
    }

    /// Removes the device; true if it had a live record.
    pub fn delete(&mut self, device: &str, now: i64) -> bool {
        match self.devices.remove_entry(device) {
            Some((name, removed)) => {
                self.heap_bytes -= removed.heap_bytes(&name);
                self.is_live(removed.current.ms, now)
            }
            None => false,
        }
    }

    /// Devices with a live record. O(1) without TTL, O(N) with one.
    pub fn live_len(&self, now: i64) -> usize {
        if self.settings.ttl_secs == 0 {
            self.devices.len()
        } else {
            self.devices
                .values()
                .filter(|device| self.is_live(device.current.ms, now))
                .count()
        }
    }

    /// Devices stored, expired ones not yet reclaimed included.
    pub fn stored_len(&self) -> usize {
        self.devices.len()
    }

    /// All devices in name order, expired ones included (for persistence).
    pub fn devices(&self) -> impl Iterator<Item = (&str, &Device)> {
        self.devices.iter().map(|(name, device)| (&**name, device))
    }

    /// One step of a cursor walk over live devices, in name order: examines up to `count`
    /// devices from `cursor` and returns the next cursor ("0" when done) and the matches.
    /// Devices present for the whole walk are returned exactly once.
    pub fn scan(
        &self,
        cursor: &[u8],
        count: usize,
        pattern: Option<&[u8]>,
        now: i64,
    ) -> Result<(String, Vec<&str>)> {
        let start = decode_cursor(cursor)?;
        let mut walk = self
            .devices
            .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded));
        let mut found = Vec::new();
        for (name, device) in walk.by_ref().take(count.max(1)) {
            if self.is_live(device.current.ms, now)
                && pattern.is_none_or(|p| crate::glob::matches(p, name.as_bytes()))
            {
                found.push(&**name);
            }
        }
        let next = walk
            .next()
            .map_or_else(|| "0".to_owned(), |(name, _)| encode_cursor(name));
        Ok((next, found))
    }

    /// The device's kept records with `from <= ms <= to`, oldest first, at most `count`.
    /// Without HISTORY that is the current record, if in range.
    pub fn range(&self, device: &str, from: i64, to: i64, count: usize, now: i64) -> Vec<&Record> {
        let Some(found) = self.devices.get(device) else {
            return Vec::new();
        };
        if !self.is_live(found.current.ms, now) {
            return Vec::new();
        }
        let in_range = |record: &&Record| (from..=to).contains(&record.ms);
        match &found.history {
            Some(history) => history.iter().filter(in_range).take(count).collect(),
            None => std::iter::once(&found.current)
                .filter(in_range)
                .take(count)
                .collect(),
        }
    }

    /// Frees up to `budget` devices' worth of expired records, continuing where the last
    /// call stopped, and returns the names removed.
    pub fn reclaim(&mut self, now: i64, budget: usize) -> Vec<Box<str>> {
        if self.settings.ttl_secs == 0 {
            self.reclaim_from = None;
            return Vec::new();
        }
        let start = self.reclaim_from.take().unwrap_or_default();
        let mut walk = self
            .devices
            .range::<str, _>((Bound::Included(&*start), Bound::Unbounded));
        let expired: Vec<Box<str>> = walk
            .by_ref()
            .take(budget.max(1))
            .filter(|(_, device)| !self.is_live(device.current.ms, now))
            .map(|(name, _)| name.clone())
            .collect();
        self.reclaim_from = walk.next().map(|(name, _)| name.clone());
        for name in &expired {
            self.delete(name, now);
        }
        expired
    }

    /// Approximate bytes used, for `MEMORY USAGE`.
    pub fn memory(&self) -> usize {
        size_of::<Self>()
            + self.settings.timestamp_field.len()
            + self.settings.device_field.len()
            + self.heap_bytes
    }

    /// Adds a device read back from persistence. `history` is oldest first.
    pub fn insert_loaded(&mut self, name: Box<str>, current: Record, history: Vec<Record>) {
        let history = self
            .history_len()
            .map(|_| Box::new(VecDeque::from(history)));
        let device = Device { current, history };
        self.heap_bytes += device.heap_bytes(&name);
        if let Some(old) = self.devices.insert(name.clone(), device) {
            self.heap_bytes -= old.heap_bytes(&name);
        }
    }
}

/// Appends `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The cursor that resumes a walk at `name`: its bytes in hex, so never "0".
fn encode_cursor(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &[u8]) -> Result<String> {
    if cursor == b"0" {
        return Ok(String::new());
    }
    if cursor.is_empty() || !cursor.len().is_multiple_of(2) {
        return Err(Error::BadCursor);
    }
    let bytes = cursor
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(Error::BadCursor)?;
    String::from_utf8(bytes).map_err(|_| Error::BadCursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_795_290_468_019;

    /// The device's record as DS.GET gives it.
    fn read(ds: &DeviceStream, device: &str, now: i64) -> String {
        ds.render(device, ds.get(device, now).unwrap())
    }

    fn stream(change: &[&str]) -> DeviceStream {
        let raw: Vec<&[u8]> = change.iter().map(|s| s.as_bytes()).collect();
        let change = SettingsChange::parse(&mut Args::new(&raw)).unwrap();
        DeviceStream::new(change.applied_to(&Settings::default()).unwrap())
    }

    fn update(ds: &mut DeviceStream, device: &str, value: Value, ms: i64) -> Updated {
        ds.update(
            device,
            value.to_string().as_bytes(),
            ms,
            Some(ms),
            &Limits::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn records_are_stamped_in_both_formats() {
        let mut ds = stream(&[]);
        let outcome = update(&mut ds, "dev-1", json!({"temp": 21.5}), T0);
        assert!(outcome.created);
        assert_eq!(
            read(&ds, "dev-1", T0),
            r#"{"temp":21.5,"timestamp":"2026-11-21T19:47:48.019Z","deviceId":"dev-1"}"#
        );
        let mut ds = stream(&["TIMESTAMP", "ts", "DEVICE", "id", "DATEFORMAT", "epoch"]);
        update(&mut ds, "d", json!({"id": "spoofed", "ts": 1}), T0);
        assert_eq!(read(&ds, "d", T0), r#"{"ts":1795290468,"id":"d"}"#);
    }

    #[test]
    fn one_record_per_device_replace_and_merge() {
        let mut ds = stream(&[]);
        update(&mut ds, "d", json!({"a": 1, "b": 2}), T0);
        let again = update(&mut ds, "d", json!({"c": 3}), T0 + 1);
        assert!(!again.created);
        assert_eq!(ds.stored_len(), 1);
        assert!(read(&ds, "d", T0).starts_with(r#"{"c":3,"#));

        let mut ds = stream(&["ONUPDATE", "MERGE"]);
        update(&mut ds, "d", json!({"a": 1, "b": {"x": 1, "y": 2}}), T0);
        update(
            &mut ds,
            "d",
            json!({"a": null, "b": {"y": 3}, "c": true}),
            T0 + 5,
        );
        let record: Value = serde_json::from_str(&read(&ds, "d", T0)).unwrap();
        assert_eq!(
            record,
            json!({"b": {"x": 1, "y": 3}, "c": true, "timestamp": "2026-11-21T19:47:48.024Z",
                   "deviceId": "d"})
        );
    }

    #[test]
    fn nulls_are_omitted_on_replace() {
        let mut ds = stream(&[]);
        update(&mut ds, "d", json!({"a": null, "b": {"c": null}}), T0);
        assert_eq!(
            read(&ds, "d", T0),
            r#"{"b":{},"timestamp":"2026-11-21T19:47:48.019Z","deviceId":"d"}"#
        );
    }

    #[test]
    fn merged_records_are_held_to_the_limits() {
        let mut ds = stream(&["ONUPDATE", "MERGE"]);
        let limits = Limits {
            max_fields: 4,
            ..Limits::default()
        };
        ds.update(
            "d",
            json!({"a": 1, "b": 2}).to_string().as_bytes(),
            T0,
            None,
            &limits,
        )
        .unwrap();
        let before = ds.clone();
        let err = ds
            .update(
                "d",
                json!({"c": 1, "e": 2, "f": 3}).to_string().as_bytes(),
                T0,
                None,
                &limits,
            )
            .unwrap_err();
        // The stamp fields are not stored, so they do not count.
        assert_eq!(err, Error::TooManyFields { count: 5, limit: 4 });
        assert_eq!(ds, before);
    }

    #[test]
    fn ttl_hides_then_reclaims() {
        let mut ds = stream(&["TTL", "10"]);
        update(&mut ds, "old", json!({}), T0);
        update(&mut ds, "new", json!({}), T0 + 5_000);
        let later = T0 + 10_000;
        assert!(ds.get("old", later).is_none());
        assert!(ds.get("new", later).is_some());
        assert_eq!(ds.live_len(later), 1);
        assert_eq!(ds.stored_len(), 2);
        assert_eq!(ds.scan(b"0", 10, None, later).unwrap().1, vec!["new"]);
        assert!(ds.range("old", 0, i64::MAX, 10, later).is_empty());
        let before = ds.memory();
        assert_eq!(ds.reclaim(later, 100), vec![Box::from("old")]);
        assert!(ds.memory() < before);
        assert_eq!(ds.stored_len(), 1);
    }

    #[test]
    fn an_expired_record_is_not_merged_into() {
        let mut ds = stream(&["TTL", "1", "ONUPDATE", "MERGE", "HISTORY", "3"]);
        update(&mut ds, "d", json!({"stale": 1}), T0);
        let outcome = update(&mut ds, "d", json!({"fresh": 1}), T0 + 1_000);
        assert_eq!(
            outcome,
            Updated {
                created: true,
                dropped_expired: true
            }
        );
        assert!(!read(&ds, "d", T0 + 1_000).contains("stale"));
        assert_eq!(ds.range("d", 0, i64::MAX, 10, T0 + 1_000).len(), 1);
        // Replaying (no clock): the record present is taken as live.
        let mut replica = stream(&["TTL", "1", "ONUPDATE", "MERGE"]);
        replica
            .update(
                "d",
                json!({"a": 1}).to_string().as_bytes(),
                T0,
                None,
                &Limits::default(),
            )
            .unwrap();
        let (outcome, stored) = replica
            .update(
                "d",
                json!({"b": 1}).to_string().as_bytes(),
                T0 + 9_000,
                None,
                &Limits::default(),
            )
            .unwrap();
        assert!(!outcome.created);
        assert!(stored.json.contains(r#""b":1"#));
        assert!(replica
            .devices()
            .next()
            .unwrap()
            .1
            .current()
            .json
            .contains("\"a\""));
    }

    #[test]
    fn reclaim_walks_in_steps() {
        let mut ds = stream(&["TTL", "1"]);
        for i in 0..25 {
            update(&mut ds, &format!("d{i:02}"), json!({}), T0);
        }
        let later = T0 + 2_000;
        let mut removed = 0;
        for _ in 0..3 {
            removed += ds.reclaim(later, 10).len();
        }
        assert_eq!(removed, 25);
        assert_eq!(ds.stored_len(), 0);
        assert_eq!(ds.memory(), stream(&["TTL", "1"]).memory());
    }

    #[test]
    fn renamed_stamp_fields_apply_to_stored_records() {
        let mut ds = stream(&["HISTORY", "2", "DATEFORMAT", "EPOCH"]);
        update(&mut ds, "d", json!({"ts": 1, "at": "home"}), 1_000);
        update(&mut ds, "d", json!({"ts": 2, "at": "work"}), 2_000);
        let renamed = SettingsChange {
            timestamp_field: Some("ts".into()),
            ..Default::default()
        };
        ds.alter(renamed.applied_to(ds.settings()).unwrap());
        let read: Vec<String> = ds
            .range("d", 0, 5_000, 10, 0)
            .into_iter()
            .map(|record| ds.render("d", record))
            .collect();
        assert_eq!(
            read,
            [
                r#"{"at":"home","ts":1,"deviceId":"d"}"#,
                r#"{"at":"work","ts":2,"deviceId":"d"}"#
            ]
        );
        assert_eq!(ds.memory(), {
            let mut fresh = stream(&["HISTORY", "2", "TIMESTAMP", "ts"]);
            update(&mut fresh, "d", json!({"at": "home"}), 1_000);
            update(&mut fresh, "d", json!({"at": "work"}), 2_000);
            fresh.memory()
        });
    }

    #[test]
    fn history_keeps_the_last_n_in_time_order() {
        let mut ds = stream(&["HISTORY", "3"]);
        for (i, ms) in [10, 20, 40, 30, 50].into_iter().enumerate() {
            update(&mut ds, "d", json!({"i": i}), ms);
        }
        let times: Vec<i64> = ds.range("d", 0, 100, 10, 0).iter().map(|r| r.ms).collect();
        assert_eq!(times, vec![30, 40, 50]);
        let times: Vec<i64> = ds.range("d", 35, 45, 10, 0).iter().map(|r| r.ms).collect();
        assert_eq!(times, vec![40]);
        assert_eq!(ds.range("d", 0, 100, 2, 0).len(), 2);
        assert!(ds.range("nope", 0, 100, 2, 0).is_empty());

        // Shrinking HISTORY trims; HISTORY 0 keeps only the current record.
        let smaller = SettingsChange {
            history: Some(1),
            ..Default::default()
        };
        ds.alter(smaller.applied_to(ds.settings()).unwrap());
        assert_eq!(ds.range("d", 0, 100, 10, 0).len(), 1);
        let none = SettingsChange {
            history: Some(0),
            ..Default::default()
        };
        ds.alter(none.applied_to(ds.settings()).unwrap());
        let current: Vec<i64> = ds.range("d", 0, 100, 10, 0).iter().map(|r| r.ms).collect();
        assert_eq!(current, vec![50]);
        assert!(ds.range("d", 0, 49, 10, 0).is_empty());
    }

    #[test]
    fn scan_visits_every_device_once() {
        let mut ds = stream(&[]);
        for i in 0..100 {
            update(&mut ds, &format!("dev-{i}"), json!({}), T0);
        }
        update(&mut ds, "é-unicode", json!({}), T0);
        let mut cursor = "0".to_owned();
        let mut seen = Vec::new();
        loop {
            let (next, found) = ds.scan(cursor.as_bytes(), 7, None, T0).unwrap();
            seen.extend(found.into_iter().map(str::to_owned));
            // Deleting during a walk does not disturb it.
            ds.delete("dev-99", T0);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no device twice");
        // dev-99 sorts near the end, so it was deleted before the walk reached it.
        assert_eq!(seen.len(), 100);
        assert!(!seen.iter().any(|name| name == "dev-99"));
        let (_, matched) = ds.scan(b"0", 1000, Some(b"dev-1?"), T0).unwrap();
        assert_eq!(matched.len(), 10);
        for bad in [&b"zz"[..], b"1", b"", b"ff"] {
            assert_eq!(ds.scan(bad, 1, None, T0), Err(Error::BadCursor));
        }
    }

    #[test]
    fn settings_are_validated() {
        let parse = |args: &[&str]| {
            let raw: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            SettingsChange::parse(&mut Args::new(&raw))
                .and_then(|change| change.applied_to(&Settings::default()))
        };
        assert_eq!(parse(&["BOGUS"]), Err(Error::UnknownOption("BOGUS".into())));
        assert_eq!(parse(&["TTL"]), Err(Error::MissingValue("TTL")));
        assert!(parse(&["TTL", "-1"]).is_err());
        assert!(parse(&["HISTORY", "10001"]).is_err());
        assert!(parse(&["DATEFORMAT", "RFC2822"]).is_err());
        assert!(parse(&["DEVICE", "timestamp"]).is_err());
        assert!(parse(&["DEVICE", ""]).is_err());
        let settings = parse(&["ttl", "5", "onupdate", "merge", "dateformat", "EPOCH"]).unwrap();
        assert_eq!(settings.ttl_secs, 5);
        assert_eq!(settings.on_update, OnUpdate::Merge);
        assert_eq!(settings.date_format, DateFormat::Epoch);
    }

    #[test]
    fn put_stores_records_verbatim() {
        let mut ds = stream(&["HISTORY", "2"]);
        let record = |ms: i64, json: &str| Record {
            ms,
            json: json.into(),
        };
        ds.put("d", record(5, r#"{"x":1}"#), None);
        let (outcome, stored) = ds.put("d", record(7, r#"{"x":2}"#), None);
        assert!(!outcome.created);
        assert_eq!(&*stored.json, r#"{"x":2}"#);
        assert_eq!(ds.range("d", 0, 10, 10, 0).len(), 2);
    }

    #[test]
    fn memory_follows_the_data() {
        let mut ds = stream(&["HISTORY", "2"]);
        let empty = ds.memory();
        update(&mut ds, "d", json!({"payload": "x".repeat(1000)}), T0);
        let one = ds.memory();
        assert!(one > empty + 2000, "{one} vs {empty}");
        ds.delete("d", T0);
        assert_eq!(ds.memory(), empty);
    }
}
