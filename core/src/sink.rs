//! The logic of the `SINK.*` commands: turning JSON into the fields, members and values of
//! Redis's own types, and parsing each command's options.
//!
//! JSON scalars become their JSON text, strings without quotes (`"Texas"` → `Texas`,
//! `23` → `23`, `true` → `true`); `null` leaves a field out; arrays (and, where nothing is
//! flattened, objects) become compact JSON text.

use serde_json::{Map, Value};

use crate::args::{parse_int, quote, Args, Options};
use crate::error::{Error, Result};
use crate::json;
use crate::json::scan::{write_raw_text, Item, Reader, Step};

/// Largest TTL accepted, in seconds (100 years), as for device streams.
pub const MAX_TTL_SECS: i64 = crate::ds::MAX_TTL_SECS;
/// Largest MAXLEN accepted.
pub const MAX_LENGTH: i64 = 1 << 40;

/// The text a JSON value is stored as, or `None` for `null`.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(json::to_text(other)),
    }
}

/// Field names and their texts, read from a JSON object, in one buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    bytes: Vec<u8>,
    /// Per field: where its name starts, where its text starts, where it ends.
    spans: Vec<(usize, usize, usize)>,
}

impl Fields {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// (name, text) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|&(name, text, end)| (&self.bytes[name..text], &self.bytes[text..end]))
    }

    /// Adds a field whose text `write` appends.
    fn push_with(&mut self, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let text = self.bytes.len();
        write(&mut self.bytes);
        self.spans.push((start, text, self.bytes.len()));
    }

    pub fn push(&mut self, name: &[u8], text: &[u8]) {
        self.push_with(name, |bytes| bytes.extend_from_slice(text));
    }

    /// The fields as owned text (lossy for bytes that are not UTF-8, which JSON text is).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(name, text)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(text).into_owned(),
                )
            })
            .collect()
    }
}

/// How many different names there are among `names` (a JSON object may repeat a member,
/// flattening can make the same name twice: `{"a.b":1,"a":{"b":2}}`, and FIELDS may give
/// one twice).
pub fn distinct_count(names: &[&[u8]]) -> usize {
    // A row's few names are compared pairwise, with nothing allocated.
    const FEW: usize = 32;
    if names.len() <= FEW {
        return names
            .iter()
            .enumerate()
            .filter(|&(i, name)| !names[..i].contains(name))
            .count();
    }
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// SINK.HASH's `FIELDS n field value …`: how many pairs, and the arguments after them.
#[derive(Debug, PartialEq, Eq)]
pub struct GivenFields<'s, 'a> {
    pub count: usize,
    pub options: &'s [&'a [u8]],
}

/// `FIELDS n field value …` at the start of `args` (SINK.HASH's form for fields a client
/// has flattened already); `None` when `args` does not start with FIELDS. The pairs are
/// held to the limits a JSON payload is: at most `max_fields` of them, at most
/// `max_bytes` in all.
pub fn given_fields<'s, 'a>(
    args: &'s [&'a [u8]],
    limits: &json::Limits,
) -> Result<Option<GivenFields<'s, 'a>>> {
    match args.first() {
        Some(first) if first.eq_ignore_ascii_case(b"FIELDS") => {}
        _ => return Ok(None),
    }
    let count = args.get(1).ok_or(Error::MissingValue("FIELDS"))?;
    let max = i64::try_from(limits.max_fields).unwrap_or(i64::MAX);
    let count = match parse_int(count, "FIELDS", 0, i64::MAX)? {
        count if count > max => {
            return Err(Error::Invalid(format!(
                "FIELDS {count} is over redsink.max-fields ({})",
                limits.max_fields
            )))
        }
        count => count as usize,
    };
    let after = args.len() - 2;
    if count > after / 2 {
        return Err(Error::Invalid(format!(
            "FIELDS {count} needs {count} field value pairs after it, got {after} arguments"
        )));
    }
    let pairs = &args[2..2 + 2 * count];
    let size: usize = pairs.iter().map(|arg| arg.len()).sum();
    if size > limits.max_bytes {
        return Err(Error::PayloadTooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    Ok(Some(GivenFields {
        count,
        options: &args[2 + 2 * count..],
    }))
}

impl<N: AsRef<[u8]>, T: AsRef<[u8]>> FromIterator<(N, T)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, T)>>(pairs: I) -> Self {
        let mut fields = Fields::default();
        for (name, text) in pairs {
            fields.push(name.as_ref(), text.as_ref());
        }
        fields
    }
}

/// A JSON object's members as hash fields, read in one pass over its text: nested
/// objects flattened with `separator` (`{"location":{"city":"Austin"}}` →
/// `location.city` = `Austin`), in member order; numbers as written, arrays as compact
/// JSON, nulls left out.
pub fn flatten_json(json: &[u8], separator: &[u8], limits: &json::Limits) -> Result<Fields> {
    flatten_json_with_nulls(json, separator, limits, None)
}

/// [`flatten_json`] for a patch: also the names of the members that are `null`
/// (flattened like the others), whose fields the patch removes.
pub fn flatten_patch(
    json: &[u8],
    separator: &[u8],
    limits: &json::Limits,
) -> Result<(Fields, Vec<Vec<u8>>)> {
    let mut nulls = Vec::new();
    let fields = flatten_json_with_nulls(json, separator, limits, Some(&mut nulls))?;
    Ok((fields, nulls))
}

fn flatten_json_with_nulls(
    json: &[u8],
    separator: &[u8],
    limits: &json::Limits,
    mut nulls: Option<&mut Vec<Vec<u8>>>,
) -> Result<Fields> {
    let mut reader = Reader::object(json, limits)?;
    // Sized once: names and texts take about the payload's bytes (nested names repeat
    // their prefixes), and a field takes a dozen bytes or more.
    let mut fields = Fields {
        bytes: Vec::with_capacity(json.len() * 2),
        spans: Vec::with_capacity(json.len() / 12 + 4),
    };
    let mut name = Vec::with_capacity(64);
    let step = flatten_members(&mut reader, &mut name, separator, &mut fields, &mut nulls);
    step.map_err(|stop| reader.error(stop))?;
    reader.finish()?;
    Ok(fields)
}

// Recursion is bounded by the reader's depth limit.
fn flatten_members(
    reader: &mut Reader,
    name: &mut Vec<u8>,
    separator: &[u8],
    fields: &mut Fields,
    nulls: &mut Option<&mut Vec<Vec<u8>>>,
) -> Step<()> {
    let prefix = name.len();
    while let Some(member) = reader.member()? {
        if prefix > 0 {
            name.extend_from_slice(separator);
        }
        member.write_to(name);
        match reader.item()? {
            Item::Object => flatten_members(reader, name, separator, fields, nulls)?,
            Item::Null => {
                if let Some(nulls) = nulls {
                    nulls.push(name.clone());
                }
            }
            item => fields.push_with(name, |bytes| item.write_text(bytes)),
        }
        name.truncate(prefix);
    }
    Ok(())
}

/// `patch` (a JSON object) merged into `stored` by JSON Merge Patch (RFC 7386: members
/// set, null members removed, the rest kept), as compact JSON text. The members the patch
/// leaves alone keep their text exactly (`1.10`, integers of any size). A missing key, or
/// stored JSON that is not an object, counts as `{}`; stored text that is not JSON is an
/// error (nothing is merged into it). The result is held to `limits`.
pub fn patch_json(stored: Option<&[u8]>, patch: &[u8], limits: &json::Limits) -> Result<String> {
    // Checked against the limits once; merged from its own text, so that its numbers
    // keep their digits too.
    if let value @ (Value::Null
    | Value::Bool(_)
    | Value::Number(_)
    | Value::String(_)
    | Value::Array(_)) = json::parse_value(patch, limits)?
    {
        return Err(Error::NotAnObject(json::kind(&value)));
    }
    let patch = std::str::from_utf8(patch).map_err(|_| Error::NotUtf8("the patch"))?;
    let stored = stored
        .map(|stored| {
            std::str::from_utf8(stored).map_err(|_| {
                Error::Invalid(
                    "the stored value is not JSON text: a JSON patch needs JSON to merge into"
                        .into(),
                )
            })
        })
        .transpose()?;
    let text = merge_raw(stored, patch)?;
    if text.len() > limits.max_bytes {
        return Err(Error::PayloadTooLarge {
            size: text.len(),
            limit: limits.max_bytes,
        });
    }
    Ok(text)
}

/// [`patch_json`]'s merge over text (`patch` a JSON object): each stored member kept as
/// it is written unless the patch names it, and the patch's members as they are written.
fn merge_raw(stored: Option<&str>, patch: &str) -> Result<String> {
    let mut members = match stored {
        Some(text) => raw_members(text)?.unwrap_or_default(),
        None => Vec::new(),
    };
    for (name, value) in raw_members(patch)?.unwrap_or_default() {
        let at = members.iter().position(|(member, _)| *member == name);
        let value = value.trim();
        let text = match value.as_bytes().first() {
            Some(b'n') => {
                if let Some(at) = at {
                    members.remove(at);
                }
                continue;
            }
            Some(b'{') => merge_raw(at.map(|at| members[at].1.as_str()), value)?,
            _ => value.to_owned(),
        };
        match at {
            Some(at) => members[at].1 = text,
            None => members.push((name.clone(), text)),
        }
    }
    Ok(object_text(&members))
}

/// An object's text from its members' names and texts.
fn object_text(members: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, text)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(name.as_str()).to_string());
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
    out
}

/// What `SINK.JSON … KEEP` writes: `object` (a JSON object) with the members of `stored`
/// (the stored document's text, if any) that `keep` names and `object` does not have,
/// each as it is written. Stored text that is not a JSON object keeps nothing. Only
/// `object` is held to `limits`: what is kept is in Redis already.
pub fn keep_members(
    stored: Option<&[u8]>,
    object: &[u8],
    keep: &[String],
    limits: &json::Limits,
) -> Result<String> {
    let object = std::str::from_utf8(object).map_err(|_| Error::NotUtf8("the JSON"))?;
    let Some(mut members) = raw_members(object)? else {
        return Err(Error::NotAnObject(json::kind(&json::parse_value(
            object.as_bytes(),
            limits,
        )?)));
    };
    let stored = stored
        .and_then(|stored| std::str::from_utf8(stored).ok())
        .and_then(|stored| raw_members(stored).ok().flatten())
        .unwrap_or_default();
    for (name, value) in stored {
        if keep.contains(&name) && !members.iter().any(|(member, _)| *member == name) {
            members.push((name, value));
        }
    }
    Ok(object_text(&members))
}

/// A JSON text's members, each as its own text, in order; `None` for JSON that is not an
/// object.
fn raw_members(text: &str) -> Result<Option<Vec<(String, String)>>> {
    use serde_json::value::RawValue;
    let raw: &RawValue = serde_json::from_str(text).map_err(|_| {
        Error::Invalid("the stored value is not JSON: a JSON patch needs JSON to merge into".into())
    })?;
    if !raw.get().trim_start().starts_with('{') {
        return Ok(None);
    }
    let members: Vec<(String, &RawValue)> = serde_json::from_str::<RawMembers>(raw.get())
        .map(|members| members.0)
        .map_err(|e| Error::InvalidJson(e.to_string()))?;
    Ok(Some(
        members
            .into_iter()
            .map(|(name, value)| (name, value.get().to_owned()))
            .collect(),
    ))
}

/// An object's members in order, their values unparsed.
struct RawMembers<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) =
                    map.next_entry::<String, &'de serde_json::value::RawValue>()?
                {
                    members.push(member);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// [`flatten_json`] of an object already parsed (numbers as serde_json writes them).
pub fn flatten(object: &Map<String, Value>, separator: &str) -> Vec<(String, String)> {
    let text = json::to_text(&Value::Object(object.clone()));
    flatten_json(
        text.as_bytes(),
        separator.as_bytes(),
        &json::Limits::UNLIMITED,
    )
    .map(|fields| fields.to_pairs())
    .unwrap_or_default()
}

/// The raw values of the top-level members `mappings` name, into `found`.
fn find_mapped<'a>(
    reader: &mut Reader<'a>,
    mappings: &[Mapping],
    found: &mut [Option<&'a [u8]>],
) -> Step<()> {
    while let Some(member) = reader.member()? {
        let raw = reader.raw_item()?;
        for (slot, mapping) in found.iter_mut().zip(mappings) {
            if member.is(&mapping.field) {
                *slot = Some(raw);
            }
        }
    }
    Ok(())
}

/// A stream entry id `ms-seq` (or `ms`, meaning `ms-0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(text: &[u8]) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "ID must be <ms>-<seq> or <ms>, got '{}'",
                quote(text)
            ))
        };
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        match (number(ms), number(seq)) {
            (Some(ms), Some(seq)) if (ms, seq) != (0, 0) => Ok(StreamId { ms, seq }),
            _ => Err(bad()),
        }
    }

    /// The smallest id above this one; `None` above the largest id a stream can hold.
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => Some(StreamId {
                ms: self.ms.checked_add(1)?,
                seq: 0,
            }),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `field` or `field:alias`: which member of the JSON goes to a stream entry, and as what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub field: String,
    pub alias: Option<String>,
}

impl Mapping {
    /// Splits at the first `:`.
    pub fn parse(text: &[u8]) -> Result<Self> {
        let text = crate::args::to_str(text, "MAP")?;
        let (field, alias) = match text.split_once(':') {
            Some((field, alias)) => (field, Some(alias.to_owned())),
            None => (text, None),
        };
        if field.is_empty() || alias.as_deref() == Some("") {
            return Err(Error::Invalid(format!(
                "MAP takes field or field:alias, got '{text}'"
            )));
        }
        Ok(Mapping {
            field: field.to_owned(),
            alias,
        })
    }

    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.field)
    }
}

/// The fields of a stream entry, read from a JSON object: the mapped top-level members
/// (each as text, objects as compact JSON), or every member flattened with `separator`
/// without a mapping; then `op_code` if given. Members missing or null are left out.
pub fn stream_fields(
    json: &[u8],
    mappings: &[Mapping],
    separator: &str,
    op_code: Option<&str>,
    limits: &json::Limits,
) -> Result<Fields> {
    let mut fields = if mappings.is_empty() {
        flatten_json(json, separator.as_bytes(), limits)?
    } else {
        let mut reader = Reader::object(json, limits)?;
        // The last of duplicate members counts, as in a parsed object.
        let mut found: Vec<Option<&[u8]>> = vec![None; mappings.len()];
        let step = find_mapped(&mut reader, mappings, &mut found);
        step.map_err(|stop| reader.error(stop))?;
        reader.finish()?;
        let mut fields = Fields::default();
        for (raw, mapping) in found.iter().zip(mappings) {
            if let Some(raw) = raw.filter(|raw| !raw.starts_with(b"null")) {
                fields.push_with(mapping.name().as_bytes(), |bytes| {
                    write_raw_text(raw, bytes);
                });
            }
        }
        fields
    };
    if let Some(op) = op_code {
        fields.push(b"op_code", op.as_bytes());
    }
    Ok(fields)
}

/// What a hash write does with the hash's fields the object does not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashUpdate {
    /// Keeps them (the default).
    Merge,
    /// Removes them: the hash becomes exactly the object (`REPLACE`).
    Replace,
    /// Keeps them, but removes those the object sets to null (`PATCH`).
    Patch,
}

impl HashUpdate {
    /// The option that asks for it.
    pub fn option(self) -> Option<&'static str> {
        match self {
            HashUpdate::Merge => None,
            HashUpdate::Replace => Some("REPLACE"),
            HashUpdate::Patch => Some("PATCH"),
        }
    }
}

/// Options shared by the write commands; each command accepts a subset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOptions {
    pub flatten: Option<String>,
    pub replace: bool,
    pub patch: bool,
    pub ttl_secs: Option<i64>,
    /// Where each `TTL` was among the arguments parsed (the last one counts): replicated,
    /// the command gives the absolute time there instead (`PXAT ms`), so that replicas
    /// and the AOF expire the key when the primary does.
    pub ttl_positions: Vec<usize>,
    /// `PXAT ms`: the key expires at this Unix time in milliseconds (SINK.HASH).
    pub expire_at_ms: Option<i64>,
    pub version: Option<i64>,
    pub json: bool,
    pub prepend: bool,
    pub max_len: Option<i64>,
    pub mappings: Vec<Mapping>,
    pub op_code: Option<String>,
    pub id: Option<StreamId>,
    /// Members of the stored JSON document a replace keeps (`KEEP name`, repeatable).
    pub keep: Vec<String>,
    /// The lane VERSION is kept in (`LANE name`; the unnamed lane without).
    pub lane: Option<Vec<u8>>,
}

impl WriteOptions {
    /// The lane of this write's VERSION (the unnamed lane without LANE).
    pub fn lane(&self) -> &[u8] {
        self.lane.as_deref().unwrap_or_default()
    }
}

/// An option of the write commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOption {
    Flatten,
    Replace,
    Patch,
    Ttl,
    PxAt,
    Version,
    Json,
    Prepend,
    MaxLen,
    Map,
    OpCode,
    Id,
    Keep,
    Lane,
}

/// The write commands' options by name.
const WRITE_OPTIONS: Options<WriteOption> = Options(&[
    ("FLATTEN", WriteOption::Flatten),
    ("REPLACE", WriteOption::Replace),
    ("PATCH", WriteOption::Patch),
    ("TTL", WriteOption::Ttl),
    ("PXAT", WriteOption::PxAt),
    ("VERSION", WriteOption::Version),
    ("JSON", WriteOption::Json),
    ("PREPEND", WriteOption::Prepend),
    ("MAXLEN", WriteOption::MaxLen),
    ("MAP", WriteOption::Map),
    ("OPCODE", WriteOption::OpCode),
    ("ID", WriteOption::Id),
    ("KEEP", WriteOption::Keep),
    ("LANE", WriteOption::Lane),
]);

/// The options a command takes.
#[derive(Debug, Clone, Copy)]
pub struct Accepts(pub &'static [WriteOption]);

impl Accepts {
    /// The option `arg` names, if this command takes it, with its name.
    pub fn option(&self, arg: &[u8]) -> Option<(&'static str, WriteOption)> {
        WRITE_OPTIONS
            .named(arg)
            .filter(|(_, option)| self.0.contains(option))
    }
}

impl WriteOptions {
    /// Parses options up to the end of `args`, refusing those the command does not take.
    pub fn parse(args: &mut Args, accepts: Accepts) -> Result<Self> {
        let mut options = WriteOptions::default();
        while let Some(keyword) = args.next_keyword() {
            let Some((name, option)) = accepts.option(keyword.as_bytes()) else {
                return Err(Error::UnknownOption(keyword.into_owned()));
            };
            match option {
                WriteOption::Flatten => options.flatten = Some(args.text_value(name)?.to_owned()),
                WriteOption::Replace => options.replace = true,
                WriteOption::Patch => options.patch = true,
                WriteOption::Ttl => {
                    options.ttl_positions.push(args.position() - 1);
                    options.ttl_secs = Some(args.int_value(name, 1, MAX_TTL_SECS)?)
                }
                WriteOption::PxAt => {
                    options.expire_at_ms = Some(args.int_value(name, 1, crate::time::MAX_MS)?)
                }
                WriteOption::Version => {
                    options.version = Some(args.int_value(name, i64::MIN, i64::MAX)?)
                }
                WriteOption::Json => options.json = true,
                WriteOption::Prepend => options.prepend = true,
                WriteOption::MaxLen => options.max_len = Some(args.int_value(name, 1, MAX_LENGTH)?),
                WriteOption::Map => {
                    // MAP takes every following argument up to the next option.
                    options.mappings.push(Mapping::parse(args.value(name)?)?);
                    while let Some(next) = args.peek().filter(|next| accepts.option(next).is_none())
                    {
                        options.mappings.push(Mapping::parse(next)?);
                        args.next_arg()?;
                    }
                }
                WriteOption::OpCode => options.op_code = Some(args.text_value(name)?.to_owned()),
                WriteOption::Id => options.id = Some(StreamId::parse(args.value(name)?)?),
                WriteOption::Keep => options.keep.push(args.text_value(name)?.to_owned()),
                WriteOption::Lane => options.lane = Some(args.value(name)?.to_vec()),
            }
        }
        if options.lane.is_some() && options.version.is_none() {
            return Err(Error::Invalid(
                "LANE needs VERSION: it names the lane the version is kept in".into(),
            ));
        }
        if options.patch && !options.keep.is_empty() {
            return Err(Error::Invalid(
                "KEEP and PATCH cannot be given together: KEEP keeps members through a replace, PATCH keeps every member it does not set".into(),
            ));
        }
        if options.ttl_secs.is_some() && options.expire_at_ms.is_some() {
            return Err(Error::Invalid(
                "TTL and PXAT cannot be given together: TTL expires the key in seconds from now, PXAT at a time".into(),
            ));
        }
        if options.replace && options.patch {
            return Err(Error::Invalid(
                "REPLACE and PATCH cannot be given together: REPLACE removes every other field, PATCH only those set to null".into(),
            ));
        }
        Ok(options)
    }

    /// What a hash write does with the other fields: REPLACE, PATCH, or neither.
    pub fn hash_update(&self) -> HashUpdate {
        match (self.replace, self.patch) {
            (true, _) => HashUpdate::Replace,
            (_, true) => HashUpdate::Patch,
            _ => HashUpdate::Merge,
        }
    }

    /// The flattening separator: FLATTEN's, or `.`.
    pub fn separator(&self) -> &str {
        self.flatten.as_deref().unwrap_or(".")
    }
}

/// Splits `values… [options]`: options start at the first argument (after at least one
/// value) that names an option the command takes; from there on, everything must parse
/// as options. (So a value cannot equal one of the command's option names.)
pub fn values_then_options<'s, 'a>(
    args: &'s [&'a [u8]],
    accepts: Accepts,
) -> Result<(&'s [&'a [u8]], WriteOptions)> {
    if args.is_empty() {
        return Err(Error::WrongArity);
    }
    let start = (1..args.len())
        .find(|&i| accepts.option(args[i]).is_some())
        .unwrap_or(args.len());
    let options = WriteOptions::parse(&mut Args::new(&args[start..]), accepts)?;
    Ok((&args[..start], options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_members_adds_the_kept_stored_members_the_object_lacks() {
        let limits = json::Limits::default();
        let stored = br#"{"Total":1.10,"Lines":{"1":{"Qty":2}},"Old":true,"Notes":[1]}"#;
        let kept = |object: &[u8], keep: &[&str]| {
            let keep: Vec<String> = keep.iter().map(|name| (*name).to_owned()).collect();
            keep_members(Some(stored), object, &keep, &limits)
        };
        assert_eq!(
            kept(br#"{"Total":2.50}"#, &["Lines"]).unwrap(),
            r#"{"Total":2.50,"Lines":{"1":{"Qty":2}}}"#
        );
        // The object's own member wins; names not stored keep nothing.
        assert_eq!(
            kept(br#"{"Lines":null}"#, &["Lines", "Notes", "Nowhere"]).unwrap(),
            r#"{"Lines":null,"Notes":[1]}"#
        );
        assert_eq!(kept(b"{}", &[]).unwrap(), "{}");
        assert!(matches!(
            kept(b"[1]", &["Lines"]),
            Err(Error::NotAnObject(_))
        ));
        assert!(kept(b"{bad", &["Lines"]).is_err());
        // Nothing stored, or stored text that is no object: the object as it is.
        let keep = ["Lines".to_owned()];
        assert_eq!(
            keep_members(None, br#"{"a":1}"#, &keep, &limits).unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(
            keep_members(Some(b"[1]"), br#"{"a":1}"#, &keep, &limits).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn the_next_stream_id_carries_into_ms_and_ends_at_the_largest() {
        let id = |ms, seq| StreamId { ms, seq };
        assert_eq!(id(5, 7).next(), Some(id(5, 8)));
        assert_eq!(id(5, u64::MAX).next(), Some(id(6, 0)));
        assert_eq!(id(u64::MAX, u64::MAX).next(), None);
    }

    #[test]
    fn distinct_names_count_a_repeated_or_flattened_twin_once() {
        let limits = json::Limits::default();
        let count = |json: &[u8]| {
            let fields = flatten_json(json, b".", &limits).unwrap();
            distinct_count(&fields.iter().map(|(name, _)| name).collect::<Vec<_>>())
        };
        assert_eq!(count(br#"{"a":1,"b":{"c":2}}"#), 2);
        assert_eq!(count(br#"{"a":1,"a":2}"#), 1);
        assert_eq!(count(br#"{"a.b":1,"a":{"b":2},"c":3}"#), 2);
        assert_eq!(count(b"{}"), 0);
    }

    #[test]
    fn given_fields_are_pairs_then_options_within_the_limits() {
        let limits = json::Limits {
            max_bytes: 10,
            max_depth: 32,
            max_fields: 2,
        };
        let given = |words: &[&str]| {
            let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            given_fields(&args, &limits).map(|found| {
                found.map(|GivenFields { count, options }| {
                    let rest: Vec<String> = options
                        .iter()
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .collect();
                    (count, rest)
                })
            })
        };
        assert_eq!(given(&[r#"{"a":1}"#, "REPLACE"]), Ok(None));
        assert_eq!(given(&[]), Ok(None));
        assert_eq!(
            given(&["fields", "2", "a", "1", "b", "2", "REPLACE"]),
            Ok(Some((2, vec!["REPLACE".to_owned()])))
        );
        assert_eq!(given(&["FIELDS", "0", "TTL", "5"]).unwrap().unwrap().0, 0);
        assert_eq!(given(&["FIELDS"]), Err(Error::MissingValue("FIELDS")));
        assert!(matches!(
            given(&["FIELDS", "-1"]),
            Err(Error::BadInteger { .. })
        ));
        assert!(matches!(
            given(&["FIELDS", "x", "a", "1"]),
            Err(Error::BadInteger { .. })
        ));
        let over = |words: &[&str]| given(words).unwrap_err().to_string();
        assert_eq!(
            over(&["FIELDS", "3", "a", "1", "b", "2", "c", "3"]),
            "FIELDS 3 is over redsink.max-fields (2)"
        );
        assert_eq!(
            over(&["FIELDS", "9223372036854775807"]),
            "FIELDS 9223372036854775807 is over redsink.max-fields (2)"
        );
        let short = given(&["FIELDS", "2", "a", "1", "b"]).unwrap_err();
        assert_eq!(
            short.to_string(),
            "FIELDS 2 needs 2 field value pairs after it, got 3 arguments"
        );
        assert_eq!(
            given(&["FIELDS", "1", "name", "a long value"]),
            Err(Error::PayloadTooLarge {
                size: 16,
                limit: 10
            })
        );
    }

    #[test]
    fn distinct_count_counts_each_name_once() {
        assert_eq!(distinct_count(&[b"b", b"a", b"b", b""]), 3);
        assert_eq!(distinct_count(&[]), 0);
        // Many names take the sorting way: the same count.
        let many: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("f{}", i % 40).into_bytes())
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(distinct_count(&many), 40);
        assert_eq!(distinct_count(&many[..30]), 30);
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test payloads are objects"),
        }
    }

    fn parse(words: &[&str], accepts: Accepts) -> Result<WriteOptions> {
        let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        WriteOptions::parse(&mut Args::new(&raw), accepts)
    }

    #[test]
    fn seed_002_traits_flatten_with_dots() {
        let traits = object(json!({"name": "John Doe", "title": "CEO"}));
        assert_eq!(
            flatten(&traits, "."),
            vec![
                ("name".into(), "John Doe".into()),
                ("title".into(), "CEO".into())
            ]
        );
        let nested = object(json!({"location": {"state": "Texas", "city": "Austin"}}));
        assert_eq!(
            flatten(&nested, "."),
            vec![
                ("location.state".into(), "Texas".into()),
                ("location.city".into(), "Austin".into())
            ]
        );
        assert_eq!(
            flatten(&object(json!({"age": 23})), "."),
            vec![("age".into(), "23".into())]
        );
    }

    #[test]
    fn flattening_json_text_keeps_numbers_as_written() {
        let fields = flatten_json(
            br#"{"a":{"b":1.50,"c":[1, 2]},"d":"e\u00e9","n":null,"o":{}}"#,
            b":",
            &json::Limits::default(),
        )
        .unwrap();
        assert_eq!(
            fields.to_pairs(),
            vec![
                ("a:b".into(), "1.50".into()),
                ("a:c".into(), "[1,2]".into()),
                ("d".into(), "eé".into())
            ]
        );
        assert_eq!(
            flatten_json(b"[1]", b".", &json::Limits::default()),
            Err(Error::NotAnObject("an array"))
        );
    }

    #[test]
    fn scalars_arrays_and_nulls() {
        let row = object(
            json!({"a": true, "b": [1, "x", null], "c": null, "d": {"e": {"f": 1.5}}, "g": {}}),
        );
        assert_eq!(
            flatten(&row, "__"),
            vec![
                ("a".into(), "true".into()),
                ("b".into(), r#"[1,"x",null]"#.into()),
                ("d__e__f".into(), "1.5".into())
            ]
        );
    }

    #[test]
    fn stream_ids() {
        assert_eq!(StreamId::parse(b"5-3").unwrap(), StreamId { ms: 5, seq: 3 });
        assert_eq!(StreamId::parse(b"7").unwrap(), StreamId { ms: 7, seq: 0 });
        assert!(StreamId::parse(b"5-3").unwrap() > StreamId::parse(b"5-2").unwrap());
        for bad in [
            &b"0-0"[..],
            b"-1",
            b"a-1",
            b"1-",
            b"",
            b"1-2-3",
            b"+5",
            b"99999999999999999999",
        ] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(StreamId { ms: 1, seq: 2 }.to_string(), "1-2");
    }

    #[test]
    fn seed_001_mapping_with_aliases_and_op_code() {
        use WriteOption::*;
        let all = Accepts(&[Map, OpCode, Id, MaxLen, Ttl]);
        let options = parse(
            &[
                "MAP",
                "InvoiceId:message_id",
                "BillingCountry:country",
                "Total",
                "OPCODE",
                "c",
                "TTL",
                "100",
            ],
            all,
        )
        .unwrap();
        let row = br#"{"Total": 3.960, "InvoiceId": 7, "BillingCountry": "USA", "Other": {"a": 1}, "InvoiceId": 8}"#;
        let fields = stream_fields(
            row,
            &options.mappings,
            ".",
            options.op_code.as_deref(),
            &json::Limits::default(),
        )
        .unwrap();
        // In mapping order, numbers as written, the last of a duplicate member.
        assert_eq!(
            fields.to_pairs(),
            vec![
                ("message_id".into(), "8".into()),
                ("country".into(), "USA".into()),
                ("Total".into(), "3.960".into()),
                ("op_code".into(), "c".into())
            ]
        );
        assert_eq!(options.ttl_secs, Some(100));
        // Only the options this command takes end a MAP: columns named as other
        // commands' options are mapped.
        let columns = parse(&["MAP", "json", "version", "flatten", "TTL", "5"], all).unwrap();
        assert_eq!(columns.mappings.len(), 3);
        assert_eq!(columns.ttl_secs, Some(5));
        assert!(parse(&["MAP"], all).is_err());
        assert!(parse(&["MAP", ":x"], all).is_err());
        assert!(parse(&["MAP", "x:"], all).is_err());
    }

    #[test]
    fn values_then_options_splits_at_the_option_tail() {
        use WriteOption::*;
        let list = Accepts(&[Prepend, MaxLen, Ttl]);
        let split = |words: &[&str]| {
            let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            values_then_options(&raw, list).map(|(values, options)| (values.len(), options))
        };
        let (count, options) = split(&["a", "b", "MAXLEN", "3", "PREPEND"]).unwrap();
        assert_eq!(
            (count, options.max_len, options.prepend),
            (2, Some(3), true)
        );
        assert!(
            split(&["a", "TTL", "b"]).is_err(),
            "a mistyped option is an error, not data"
        );
        assert!(split(&["a", "MAXLEN", "0"]).is_err());
        let (count, options) = split(&["TTL"]).unwrap();
        assert_eq!(
            (count, options),
            (1, WriteOptions::default()),
            "the first argument is a value"
        );
        let (count, _) = split(&["ID", "OPCODE"]).unwrap();
        assert_eq!(
            count, 2,
            "names of options the command does not take are values"
        );
        assert_eq!(split(&[]).unwrap_err(), Error::WrongArity);
    }

    #[test]
    fn options_a_command_does_not_take_are_unknown() {
        use WriteOption::*;
        let hash = Accepts(&[Flatten, Replace, Ttl, Version]);
        assert_eq!(
            parse(&["PREPEND"], hash),
            Err(Error::UnknownOption("PREPEND".into()))
        );
        assert!(parse(&["TTL", "0"], hash).is_err());
        assert!(parse(&["TTL", "-1"], hash).is_err());
        assert!(parse(&["FLATTEN", ""], hash).is_err());
        let options = parse(&["flatten", "_", "replace", "version", "-3"], hash).unwrap();
        assert_eq!(
            (options.separator(), options.replace, options.version),
            ("_", true, Some(-3))
        );
        // TTL's place is kept for replication; PXAT is a time, never with TTL.
        let expiring = Accepts(&[Flatten, Ttl, PxAt]);
        let options = parse(&["FLATTEN", "TTL", "ttl", "60"], expiring).unwrap();
        assert_eq!(
            (options.ttl_positions, options.ttl_secs),
            (vec![2], Some(60))
        );
        let options = parse(&["TTL", "5", "TTL", "60"], expiring).unwrap();
        assert_eq!(
            (options.ttl_positions, options.ttl_secs),
            (vec![0, 2], Some(60))
        );
        let options = parse(&["PXAT", "1764000000000"], expiring).unwrap();
        assert_eq!(options.expire_at_ms, Some(1_764_000_000_000));
        assert!(parse(&["PXAT", "0"], expiring).is_err());
        assert!(parse(&["PXAT", "1", "TTL", "5"], expiring)
            .unwrap_err()
            .to_string()
            .starts_with("TTL and PXAT cannot be given together"));
        assert_eq!(
            parse(&["PXAT", "1"], hash),
            Err(Error::UnknownOption("PXAT".into()))
        );
        let list = Accepts(&[MaxLen]);
        assert!(parse(&["MAXLEN", "0"], list).is_err());
        let patching = Accepts(&[Replace, Patch]);
        assert!(parse(&["PATCH"], patching).unwrap().patch);
        assert!(parse(&["REPLACE", "PATCH"], patching)
            .unwrap_err()
            .to_string()
            .starts_with("REPLACE and PATCH cannot be given together"));
    }

    #[test]
    fn json_patches_merge_into_what_is_stored() {
        let limits = json::Limits::UNLIMITED;
        let patch = |stored: Option<&str>, patch: &str| {
            patch_json(stored.map(str::as_bytes), patch.as_bytes(), &limits)
        };
        assert_eq!(
            patch(
                Some(r#"{"a":1,"b":{"c":2,"d":3},"notes":"long"}"#),
                r#"{"a":2,"b":{"c":null},"e":null}"#
            )
            .unwrap(),
            r#"{"a":2,"b":{"d":3},"notes":"long"}"#
        );
        assert_eq!(patch(None, r#"{"a":1,"b":null}"#).unwrap(), r#"{"a":1}"#);
        assert!(patch(Some("plain text"), r#"{"a":1}"#)
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        // What the patch leaves alone keeps its text.
        assert_eq!(
            patch(
                Some(r#"{"n": 1.10, "big": 12345678901234567890123, "o": {"k": 1e400}, "x": 1}"#),
                r#"{"x":2,"o":{"m":true}}"#
            )
            .unwrap(),
            r#"{"n":1.10,"big":12345678901234567890123,"o":{"k":1e400,"m":true},"x":2}"#
        );
        assert_eq!(patch(Some("[1]"), r#"{"a":1}"#).unwrap(), r#"{"a":1}"#);
        assert!(patch(None, "[1]").is_err());
        assert!(patch(None, "{broken").is_err());
        let small = json::Limits {
            max_bytes: 12,
            ..json::Limits::UNLIMITED
        };
        assert!(patch_json(Some(br#"{"a":"0123456789"}"#), br#"{"b":1}"#, &small).is_err());
    }

    #[test]
    fn a_patch_names_the_members_it_removes() {
        let (fields, nulls) = flatten_patch(
            br#"{"a":1,"gone":null,"doc":{"x":null,"y":"2"},"list":[null]}"#,
            b".",
            &json::Limits::UNLIMITED,
        )
        .unwrap();
        assert_eq!(
            fields.to_pairs(),
            [
                ("a".into(), "1".into()),
                ("doc.y".into(), "2".into()),
                ("list".into(), "[null]".into())
            ]
        );
        assert_eq!(nulls, [b"gone".to_vec(), b"doc.x".to_vec()]);
    }
}
