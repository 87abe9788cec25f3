//! A job applied to a change event: the writes to make, before anything is written.
//! Pure logic (no Redis): transforms, key expressions, mappings, expiries, and what each
//! output type does with creates, updates and deletes.

use std::sync::Arc;

use serde_json::{Map, Value};

use redsink_core::ds::OnUpdate;
use redsink_core::json::to_text;
use redsink_core::sink::HashUpdate;

use crate::error::{Error, Result};
use crate::expr::{Expr, Input};
use crate::format::{ChangeEvent, Op};
use crate::job::{Expire, Job, Mapped, Nest, Output, RowFormat, Target, Transform};

/// A write's VERSION: its number, and the lane it compares in (`LANE`): the change's
/// source (its stream, or its table), so that writes to one key from two sources (RDI's
/// one-to-one denormalization) never hold each other back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub number: i64,
    /// Empty for the unnamed lane.
    pub lane: Arc<str>,
}

impl From<i64> for Version {
    /// `number` in the unnamed lane.
    fn from(number: i64) -> Self {
        Version {
            number,
            lane: Arc::from(""),
        }
    }
}

/// Where an event sits in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Orders the changes of one key from one source: replays and late deliveries of
    /// older versions change nothing.
    pub version: Version,
    /// The id a stream output's entry gets, so that a replay adds nothing.
    pub stream_id: String,
    /// The event's time (ms since the epoch): a device record's time, so that a replay
    /// writes the same record.
    pub time_ms: i64,
}

/// One write to Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// The row as compact JSON text; what becomes of the hash's other fields.
    Hash {
        key: String,
        json: String,
        update: HashUpdate,
        ttl: Option<i64>,
        version: Version,
    },
    /// A string output's value (`args.value`) as text.
    Text {
        key: String,
        value: String,
        ttl: Option<i64>,
        version: Version,
    },
    /// The row as JSON: text in a string (string outputs), or a JSON document (json
    /// outputs, where the server has JSON); with `patch`, merged into the stored JSON by
    /// JSON Merge Patch.
    Json {
        key: String,
        json: String,
        patch: bool,
        document: bool,
        ttl: Option<i64>,
        /// None for a nested row, which shares its parent's key (and version).
        version: Option<Version>,
        /// The stored document's members a replace keeps (nested maps).
        keep: Vec<String>,
    },
    /// A nested row's entry removed from its parent's JSON document: the names from the
    /// root to it.
    JsonRemove {
        key: String,
        path: Vec<String>,
    },
    SetAdd {
        key: String,
        member: String,
        ttl: Option<i64>,
    },
    SetRemove {
        key: String,
        member: String,
    },
    SortedSetAdd {
        key: String,
        member: String,
        score: f64,
        ttl: Option<i64>,
    },
    SortedSetRemove {
        key: String,
        member: String,
    },
    /// A stream message: streams keep every change, deletes included (`op_code d`).
    Stream {
        key: String,
        json: String,
        op_code: Option<&'static str>,
        id: String,
        ttl: Option<i64>,
    },
    /// A device's record in a device data stream.
    DeviceUpdate {
        key: String,
        device: String,
        json: String,
        time_ms: i64,
    },
    DeviceDelete {
        key: String,
        device: String,
    },
    Delete {
        key: String,
        version: Version,
    },
}

/// Sets a field, a dotted name reaching into objects (`after.status`, as RDI's full row
/// format writes it), made where missing. A name the row has as it is, dots and all, is
/// that field.
fn set_field(row: &mut Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        Some((head, rest)) if !row.contains_key(field) => {
            if let Some(inner) = inner_object(row, head) {
                set_field(inner, rest, value);
            }
        }
        _ => {
            row.insert(field.to_owned(), value);
        }
    }
}

/// The member `name` of `object` as an object: made where missing, and in place of what
/// is not one.
fn inner_object<'a>(
    object: &'a mut Map<String, Value>,
    name: &str,
) -> Option<&'a mut Map<String, Value>> {
    let inner = object
        .entry(name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !inner.is_object() {
        *inner = Value::Object(Map::new());
    }
    inner.as_object_mut()
}

/// Removes a field, a dotted name reaching into objects.
fn remove_field(row: &mut Map<String, Value>, field: &str) {
    if row.shift_remove(field).is_some() {
        return;
    }
    if let Some((head, rest)) = field.split_once('.') {
        if let Some(Value::Object(inner)) = row.get_mut(head) {
            remove_field(inner, rest);
        }
    }
}

/// The new row a `map` makes of `row`.
fn map(mapped: &Mapped, row: &Map<String, Value>) -> Result<Map<String, Value>> {
    let input = Input::new(row);
    match mapped {
        Mapped::Fields(fields) => fields
            .iter()
            .map(|(field, expression)| Ok((field.clone(), expression.eval(&input)?)))
            .collect(),
        Mapped::Whole(expression) => match expression.eval(&input)? {
            Value::Object(object) => Ok(object),
            // SQL's json_object() gives JSON text.
            Value::String(text) => match serde_json::from_str(&text) {
                Ok(Value::Object(object)) => Ok(object),
                _ => Err(not_an_object(expression)),
            },
            _ => Err(not_an_object(expression)),
        },
    }
}

fn not_an_object(expression: &Expr) -> Error {
    Error::Event(format!(
        "the map expression '{}' gave no object for this row",
        expression.text()
    ))
}

/// The writes for `event` under `job`; none when a filter drops it.
pub fn plan(job: &Job, event: &ChangeEvent, position: &Position) -> Result<Vec<Write>> {
    plan_with(job, event, position, &mut Lookups::default())
}

/// The replies of `redis.lookup` commands made so far, by command, and the commands
/// planning wanted but found no reply for.
#[derive(Debug, Default)]
pub struct Lookups {
    replies: std::collections::HashMap<Vec<u8>, Value>,
    pub wanted: Vec<redis::Cmd>,
}

impl Lookups {
    /// The reply to `command`, or `None` (and the command noted as wanted) if it was not
    /// made yet.
    fn reply(&mut self, command: redis::Cmd) -> Option<Value> {
        let packed = command.get_packed_command();
        if let Some(reply) = self.replies.get(&packed) {
            return Some(reply.clone());
        }
        if !self
            .wanted
            .iter()
            .any(|wanted| wanted.get_packed_command() == packed)
        {
            self.wanted.push(command);
        }
        None
    }

    /// Keeps `reply` as the reply to `command`.
    pub fn answer(&mut self, command: &redis::Cmd, reply: Value) {
        self.replies.insert(command.get_packed_command(), reply);
    }
}

/// [`plan`] with lookups: `Error::LookupsPending` when one was not made yet (it is then in
/// `lookups.wanted`).
pub fn plan_with(
    job: &Job,
    event: &ChangeEvent,
    position: &Position,
    lookups: &mut Lookups,
) -> Result<Vec<Write>> {
    if job.source.row_format == RowFormat::Full {
        return plan_full(job, event, position, lookups);
    }
    // Without transforms the event's own row is read; with them, a copy is changed.
    let transformed;
    let row = if job.transforms.is_empty() {
        &event.row
    } else {
        let Some(mut row) = transform(job, event.row.clone(), lookups)? else {
            return Ok(Vec::new());
        };
        // Of a partial row, only the source's own nulls remove stored fields: a null a
        // transform made from a column the source did not capture means nothing.
        if event.partial {
            row.retain(|name, value| {
                !value.is_null() || event.row.get(name).is_some_and(Value::is_null)
            });
        }
        transformed = row;
        &transformed
    };
    let input = Input::new(row);
    let subject = Subject {
        op: event.op,
        partial: event.partial,
        data: row,
        input: &input,
        data_input: &input,
        event,
        table: job.source.table.as_deref(),
    };
    let mut writes = moved_away(job, event, row, &input, &position.version, lookups)?;
    for output in &job.outputs {
        writes.push(write_for(output, &subject, position)?);
    }
    Ok(writes)
}

/// An update that changes where a row is written (its key expression reads a column that
/// changed, or a set's member did): what was written for the old row goes. Needs the old
/// row (Debezium's `before`, with REPLICA IDENTITY FULL).
fn moved_away(
    job: &Job,
    event: &ChangeEvent,
    row: &Map<String, Value>,
    input: &Input,
    version: &Version,
    lookups: &mut Lookups,
) -> Result<Vec<Write>> {
    let Some(before) = event
        .before
        .as_ref()
        .filter(|_| event.op == Op::Update && !event.partial)
    else {
        return Ok(Vec::new());
    };
    let Some(before) = transform(job, before.clone(), lookups)? else {
        return Ok(Vec::new());
    };
    let old_input = Input::new(&before);
    let mut writes = Vec::new();
    for output in &job.outputs {
        if let Target::Nested(nest) = &output.target {
            let location = |row| -> Result<(String, Vec<String>)> {
                Ok((nest_key(nest, row)?, nest_path(nest, row)?))
            };
            // The old row may lack its location (a partial before): nothing to remove.
            if let Ok(old) = location(&before) {
                if old != location(row)? {
                    let (key, path) = old;
                    writes.push(Write::JsonRemove { key, path });
                }
            }
            continue;
        }
        let Some(expression) = &output.key else {
            continue;
        };
        // The old row may lack what the key needs (a partial before): nothing to remove.
        let Ok(old_key) = text(expression, &old_input, "key") else {
            continue;
        };
        let new_key = text(expression, input, "key")?;
        let member = |member: &Option<Expr>, input: &Input, row: &Map<String, Value>| match member {
            Some(member) => text(member, input, "member").ok(),
            None => Some(mapped_json(output, row)),
        };
        match &output.target {
            Target::Hash { .. } | Target::Json | Target::Document { .. } | Target::Text { .. }
                if old_key != new_key =>
            {
                writes.push(Write::Delete {
                    key: old_key,
                    version: version.clone(),
                });
            }
            Target::Set { member: of } | Target::SortedSet { member: of, .. } => {
                let old = member(of, &old_input, &before);
                let new = member(of, input, row);
                if let Some(old) = old
                    .filter(|old| (old_key.as_str(), Some(old)) != (new_key.as_str(), new.as_ref()))
                {
                    writes.push(match output.target {
                        Target::Set { .. } => Write::SetRemove {
                            key: old_key,
                            member: old,
                        },
                        _ => Write::SortedSetRemove {
                            key: old_key,
                            member: old,
                        },
                    });
                }
            }
            _ => {}
        }
    }
    Ok(writes)
}

/// RDI's `row_format: full`: transforms and expressions see the whole change, `{key,
/// before, after, opcode, db, schema, table}`; `after` is what is written, and an opcode a
/// transform rewrote is the one applied.
fn plan_full(
    job: &Job,
    event: &ChangeEvent,
    position: &Position,
    lookups: &mut Lookups,
) -> Result<Vec<Write>> {
    let full = full_row(event);
    let Some(mut full) = transform(job, full, lookups)? else {
        return Ok(Vec::new());
    };
    // As for data rows: only the source's own nulls remove stored fields.
    if let (true, Some(Value::Object(after))) = (event.partial, full.get_mut("after")) {
        after.retain(|name, value| {
            !value.is_null() || event.row.get(name).is_some_and(Value::is_null)
        });
    }
    let op = full
        .get("opcode")
        .and_then(Value::as_str)
        .and_then(Op::parse)
        .ok_or_else(|| Error::Event("row_format full: the opcode must be c, u, d or r".into()))?;
    let data = match (full.get("after"), full.get("before")) {
        (Some(Value::Object(after)), _) => after.clone(),
        (_, Some(Value::Object(before))) => before.clone(),
        _ => Map::new(),
    };
    let (input, data_input) = (Input::new(&full), Input::new(&data));
    let subject = Subject {
        op,
        partial: event.partial,
        data: &data,
        input: &input,
        data_input: &data_input,
        event,
        table: job.source.table.as_deref(),
    };
    job.outputs
        .iter()
        .map(|output| write_for(output, &subject, position))
        .collect()
}

/// The whole change as RDI's full row format gives it to transforms: `{key, before,
/// after, opcode, db, schema, table}` (a delete's row is its `before`).
pub fn full_row(event: &ChangeEvent) -> Map<String, Value> {
    let object = |row: Option<&Map<String, Value>>| row.cloned().map_or(Value::Null, Value::Object);
    let deleted = event.op == Op::Delete;
    let before = event.before.as_ref().or(deleted.then_some(&event.row));
    let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::String);
    [
        ("key", object(event.key.as_ref())),
        ("before", object(before)),
        ("after", object((!deleted).then_some(&event.row))),
        ("opcode", Value::from(event.op.code())),
        ("db", text(&event.origin.db)),
        ("schema", text(&event.origin.schema)),
        ("table", text(&event.origin.table)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// What an output writes from: the change's op, the row written, what key and expiry
/// expressions read (the whole change in RDI's full row format), what `args` read (the
/// row written), and the event (its record key and table, for RDI's default key).
struct Subject<'a> {
    op: Op,
    partial: bool,
    data: &'a Map<String, Value>,
    input: &'a Input<'a>,
    data_input: &'a Input<'a>,
    event: &'a ChangeEvent,
    /// The job's table, when the event does not name its own.
    table: Option<&'a str>,
}

impl Subject<'_> {
    /// RDI's default key: `<table>:<key column>:<value>`, each key column in turn.
    fn default_key(&self) -> Result<String> {
        let table = self.event.origin.table.as_deref().or(self.table);
        let key = self.event.key.as_ref().filter(|key| !key.is_empty());
        let (Some(table), Some(key)) = (table, key) else {
            return Err(Error::Event(
                "the output has no key expression, and the event carries no table and record key for RDI's default key <table>:<key column>:<value>".into(),
            ));
        };
        let mut text = table.to_owned();
        for (column, value) in key {
            let value = key_part(value)
                .ok_or_else(|| Error::Event(format!("the record key's {column} is null")))?;
            text.push_str(&format!(":{column}:{value}"));
        }
        Ok(text)
    }
}

/// A value as RDI writes it in a key: a string's text, other values as JSON; none for
/// null.
fn key_part(value: &Value) -> Option<String> {
    match value {
        Value::String(value) => Some(value.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A column of a nested row, as it goes into a key or path.
fn nest_column(row: &Map<String, Value>, name: &str, role: &str) -> Result<String> {
    row.get(name).and_then(key_part).ok_or_else(|| {
        Error::Event(format!(
            "nest: the row has no {name} ({role}); PostgreSQL sends every column of an \
             update's old row and of a delete only with REPLICA IDENTITY FULL"
        ))
    })
}

/// The key of the document `nest` puts `row` in: its parent's, `<parent table>:<parent
/// key>:<value>`.
fn nest_key(nest: &Nest, row: &Map<String, Value>) -> Result<String> {
    let parent = nest_column(row, &nest.child_key, "its parent's key")?;
    Ok(format!(
        "{}:{}:{parent}",
        nest.parent_table, nest.parent_key
    ))
}

/// The names from the parent document's root to `row`'s entry.
fn nest_path(nest: &Nest, row: &Map<String, Value>) -> Result<Vec<String>> {
    let entry = nest_column(row, &nest.nesting_key, "its nesting key")?;
    let path: Vec<String> = nest.path.iter().cloned().chain([entry]).collect();
    if json_path(&path).is_none() {
        return Err(Error::Event(format!(
            "nest: {} '{}' holds a backslash, or both kinds of quotes, which no JSON path \
             of RedisJSON can name",
            nest.nesting_key,
            path.last().map_or("", String::as_str)
        )));
    }
    Ok(path)
}

/// RedisJSON's path to `names` from the root, `$["a"]["b"]`: each name as it is, in double
/// quotes, or single ones where it holds a double quote (RedisJSON reads no escapes in
/// them); none for a name with a backslash or both quotes.
pub fn json_path(names: &[String]) -> Option<String> {
    let mut path = String::from("$");
    for name in names {
        let quote = match (name.contains('"'), name.contains('\'')) {
            _ if name.contains('\\') => return None,
            (false, _) => '"',
            (true, false) => '\'',
            (true, true) => return None,
        };
        path.push('[');
        path.push(quote);
        path.push_str(name);
        path.push(quote);
        path.push(']');
    }
    Some(path)
}

/// The merge patch that puts `json` at `path`: `{"a":{"b":json}}`.
pub fn nested_patch(path: &[String], json: &str) -> String {
    let mut patch = String::with_capacity(json.len() + 16 * path.len());
    for name in path {
        patch.push('{');
        patch.push_str(&to_text(&Value::from(name.as_str())));
        patch.push(':');
    }
    patch.push_str(json);
    patch.extend(std::iter::repeat_n('}', path.len()));
    patch
}

/// Applies the job's transforms in order; `None` if a filter drops the row.
fn transform(
    job: &Job,
    mut row: Map<String, Value>,
    lookups: &mut Lookups,
) -> Result<Option<Map<String, Value>>> {
    for step in &job.transforms {
        match apply(step, row, lookups)? {
            Some(next) => row = next,
            None => return Ok(None),
        }
    }
    Ok(Some(row))
}

/// One transform on a row: the row it makes, or `None` if a filter drops it.
pub fn apply(
    step: &Transform,
    mut row: Map<String, Value>,
    lookups: &mut Lookups,
) -> Result<Option<Map<String, Value>>> {
    match step {
        Transform::Filter(expression) => {
            if !expression.matches(&Input::new(&row))? {
                return Ok(None);
            }
        }
        Transform::AddFields(fields) => {
            let input = Input::new(&row);
            let values = fields
                .iter()
                .map(|(field, expression)| Ok((field, expression.eval(&input)?)))
                .collect::<Result<Vec<_>>>()?;
            for (field, value) in values {
                set_field(&mut row, field, value);
            }
        }
        Transform::RemoveFields(fields) => {
            for field in fields {
                remove_field(&mut row, field);
            }
        }
        Transform::RenameFields(renames) => {
            for (from, to) in renames {
                if let Some(value) = row.shift_remove(from) {
                    row.insert(to.clone(), value);
                }
            }
        }
        Transform::Map(mapped) => row = map(mapped, &row)?,
        Transform::Lookup(lookup) => {
            let input = Input::new(&row);
            let mut command = redis::cmd(&lookup.command);
            for arg in &lookup.args {
                command.arg(text(arg, &input, "lookup argument")?);
            }
            let reply = lookups.reply(command).ok_or(Error::LookupsPending)?;
            set_field(&mut row, &lookup.field, reply);
        }
    }
    Ok(Some(row))
}

fn write_for(output: &Output, subject: &Subject, position: &Position) -> Result<Write> {
    let (row, input) = (subject.data, subject.input);
    let key = match (&output.key, &output.target) {
        (Some(expression), _) => text(expression, input, "key")?,
        (None, Target::Nested(nest)) => nest_key(nest, row)?,
        (None, _) => subject.default_key()?,
    };
    let ttl = match &output.expire {
        Some(Expire::Seconds(seconds)) => Some(*seconds),
        Some(Expire::Expression(expression)) => Some(seconds(expression, input)?),
        None => None,
    };
    let (op, version) = (subject.op, position.version.clone());
    let deleted = op == Op::Delete;
    let member = |expression: &Option<Expr>| match expression {
        Some(expression) => text(expression, subject.data_input, "member"),
        None => Ok(mapped_json(output, row)),
    };
    Ok(match &output.target {
        Target::Hash { .. } | Target::Json | Target::Document { .. } | Target::Text { .. }
            if deleted =>
        {
            Write::Delete { key, version }
        }
        Target::Document { on_update, keep } => {
            // A row with columns missing is merged in, so that the others stay.
            let patch = subject.partial || *on_update == OnUpdate::Merge;
            Write::Json {
                key,
                json: mapped_json(output, row),
                patch,
                document: true,
                ttl,
                version: Some(version),
                keep: if patch { Vec::new() } else { keep.clone() },
            }
        }
        Target::Text { value } => Write::Text {
            key,
            value: text(value, subject.data_input, "value")?,
            ttl,
            version,
        },
        Target::Hash { on_update } => Write::Hash {
            key,
            json: mapped_json(output, row),
            // A row with columns missing keeps their stored values.
            update: match (subject.partial, on_update) {
                (true, _) => HashUpdate::Patch,
                (false, OnUpdate::Replace) => HashUpdate::Replace,
                (false, OnUpdate::Merge) => HashUpdate::Merge,
            },
            ttl,
            version,
        },
        Target::Json => Write::Json {
            key,
            json: mapped_json(output, row),
            patch: subject.partial,
            document: false,
            ttl,
            version: Some(version),
            keep: Vec::new(),
        },
        Target::Set { member: of } if deleted => Write::SetRemove {
            key,
            member: member(of)?,
        },
        Target::Set { member: of } => Write::SetAdd {
            key,
            member: member(of)?,
            ttl,
        },
        Target::SortedSet { member: of, .. } if deleted => Write::SortedSetRemove {
            key,
            member: member(of)?,
        },
        Target::SortedSet { score, member: of } => {
            let score =
                redsink_core::named::score(Some(&score.eval(subject.data_input)?), score.text())
                    .map_err(|e| Error::Event(e.to_string()))?;
            Write::SortedSetAdd {
                key,
                member: member(of)?,
                score,
                ttl,
            }
        }
        Target::Stream => Write::Stream {
            key,
            json: mapped_json(output, row),
            op_code: Some(op.code()),
            id: position.stream_id.clone(),
            ttl,
        },
        Target::Nested(nest) if deleted => Write::JsonRemove {
            key,
            path: nest_path(nest, row)?,
        },
        // Merged in at its entry: its parent's fields and the other entries stay.
        Target::Nested(nest) => Write::Json {
            key,
            json: nested_patch(&nest_path(nest, row)?, &mapped_json(output, row)),
            patch: true,
            document: true,
            ttl: None,
            version: None,
            keep: Vec::new(),
        },
        Target::DeviceStream { device } => {
            let device = text(device, subject.data_input, "device")?;
            if deleted {
                Write::DeviceDelete { key, device }
            } else {
                Write::DeviceUpdate {
                    key,
                    device,
                    json: mapped_json(output, row),
                    time_ms: position.time_ms,
                }
            }
        }
    })
}

/// The row's fields through the output's mapping (all of them without one), as compact
/// JSON text.
fn mapped_json(output: &Output, row: &Map<String, Value>) -> String {
    if output.mapping.is_empty() {
        // Serializing a map of JSON values cannot fail.
        return serde_json::to_string(row).unwrap_or_default();
    }
    // In a JSON document a dotted name is a nested member (RDI's `path.to.field`, `\.` a
    // dot of the name).
    let nests = matches!(output.target, Target::Document { .. } | Target::Nested(_));
    let mut mapped = Map::new();
    for (field, name) in &output.mapping {
        let Some(value) = row.get(field) else {
            continue;
        };
        if nests {
            set_path(&mut mapped, &member_path(name), value.clone());
        } else {
            mapped.insert(name.clone(), value.clone());
        }
    }
    to_text(&Value::Object(mapped))
}

/// `a.b\.c` as the names `a`, `b.c`.
fn member_path(name: &str) -> Vec<String> {
    let mut names = vec![String::new()];
    let mut chars = name.chars();
    while let Some(char) = chars.next() {
        match (char, chars.clone().next()) {
            ('\\', Some('.')) => {
                chars.next();
                names.last_mut().into_iter().for_each(|name| name.push('.'));
            }
            ('.', _) => names.push(String::new()),
            _ => names
                .last_mut()
                .into_iter()
                .for_each(|name| name.push(char)),
        }
    }
    names
}

/// Sets the member at `path`, making the objects on the way (replacing what is not one).
fn set_path(object: &mut Map<String, Value>, path: &[String], value: Value) {
    let [name, rest @ ..] = path else {
        return;
    };
    if rest.is_empty() {
        object.insert(name.clone(), value);
    } else if let Some(inner) = inner_object(object, name) {
        set_path(inner, rest, value);
    }
}

/// An expression's value as text: it must be a string, number or boolean.
fn text(expression: &Expr, input: &Input, role: &str) -> Result<String> {
    match expression.eval(input)? {
        // A string's value may be empty; a key, member or device may not.
        Value::String(text) if !text.is_empty() || role == "value" => Ok(text),
        value @ (Value::Number(_) | Value::Bool(_)) => Ok(value.to_string()),
        other => Err(Error::Event(format!(
            "the {role} expression '{}' gave {} for this row",
            expression.text(),
            match other {
                Value::Null => "null",
                Value::String(_) => "an empty string",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        ))),
    }
}

fn seconds(expression: &Expr, input: &Input) -> Result<i64> {
    expression
        .eval(input)?
        .as_f64()
        .filter(|seconds| *seconds >= 1.0 && *seconds <= redsink_core::sink::MAX_TTL_SECS as f64)
        .map(|seconds| seconds as i64)
        .ok_or_else(|| {
            Error::Event(format!(
                "the expire expression '{}' gave no positive number of seconds",
                expression.text()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn job(text: &str) -> Job {
        Job::parse(text, Path::new("test.yaml")).unwrap()
    }

    fn event(op: Op, row: Value) -> ChangeEvent {
        let Value::Object(row) = row else {
            unreachable!("rows are objects")
        };
        ChangeEvent::new(op, row)
    }

    fn at(version: i64) -> Position {
        Position {
            version: version.into(),
            stream_id: format!("{version}-0"),
            time_ms: version,
        }
    }

    /// Seed 001's job, verbatim (the example the README runs).
    const SEED_001: &str = include_str!("../../examples/jobs/invoice-events.yaml");

    const INVOICE: &str =
        r#"{"InvoiceId": 98, "CustomerId": 7, "BillingCountry": "Germany", "Total": 3.96}"#;

    #[test]
    fn seed_001_stream_messages_for_every_change() {
        let job = job(SEED_001);
        let row: Value = serde_json::from_str(INVOICE).unwrap();
        for (op, code) in [(Op::Create, "c"), (Op::Update, "u"), (Op::Delete, "d")] {
            let writes = plan(&job, &event(op, row.clone()), &at(7)).unwrap();
            assert_eq!(
                writes,
                vec![Write::Stream {
                    key: "invoice:events".into(),
                    json: json!({"message_id": 98, "country": "Germany", "Total": 3.96})
                        .to_string(),
                    op_code: Some(code),
                    id: "7-0".into(),
                    ttl: Some(100),
                }]
            );
        }
    }

    #[test]
    fn hash_outputs_replace_or_merge_and_deletes_remove_the_key() {
        let replace = job("source: {table: invoice}\noutput:\n  - uses: redis.write\n    with:\n      key: {expression: \"concat(['invoice:', InvoiceId])\"}\n");
        let row: Value = serde_json::from_str(INVOICE).unwrap();
        let Write::Hash {
            key,
            update,
            version,
            ..
        } = &plan(&replace, &event(Op::Update, row.clone()), &at(9)).unwrap()[0]
        else {
            panic!("a hash write");
        };
        assert_eq!(
            (key.as_str(), *update, version.clone()),
            ("invoice:98", HashUpdate::Replace, 9.into())
        );
        let merge = job("source: {table: invoice}\noutput:\n  - uses: redis.write\n    with:\n      on_update: merge\n      key: {expression: \"concat(['invoice:', InvoiceId])\"}\n");
        assert!(matches!(
            &plan(&merge, &event(Op::Update, row.clone()), &at(9)).unwrap()[0],
            Write::Hash {
                update: HashUpdate::Merge,
                ..
            }
        ));
        assert_eq!(
            plan(&merge, &event(Op::Delete, row), &at(10)).unwrap(),
            vec![Write::Delete {
                key: "invoice:98".into(),
                version: 10.into()
            }]
        );
    }

    #[test]
    fn transforms_run_in_order_and_filters_drop() {
        let job = job(r#"source: {table: invoice}
transform:
  - uses: filter
    with: {expression: "Total > `1`"}
  - uses: add_field
    with: {field: country, expression: "lower(BillingCountry)"}
  - uses: remove_field
    with: {fields: [{field: CustomerId}, {field: BillingCountry}]}
  - uses: rename_field
    with: {from_field: Total, to_field: total}
output:
  - uses: redis.write
    with:
      data_type: json
      key: {expression: "concat(['invoice:', InvoiceId])"}
"#);
        let writes = plan(
            &job,
            &event(Op::Create, serde_json::from_str(INVOICE).unwrap()),
            &at(1),
        )
        .unwrap();
        assert_eq!(
            writes,
            vec![Write::Json {
                key: "invoice:98".into(),
                json: r#"{"InvoiceId":98,"country":"germany","total":3.96}"#.into(),
                patch: false,
                document: true,
                ttl: None,
                version: Some(1.into()),
                keep: Vec::new(),
            }]
        );
        let cheap = event(Op::Create, json!({"InvoiceId": 1, "Total": 0.5}));
        assert!(plan(&job, &cheap, &at(1)).unwrap().is_empty());
    }

    #[test]
    fn sets_and_sorted_sets_add_and_remove_members() {
        let job = job(r#"source: {table: invoice}
output:
  - uses: redis.write
    with:
      data_type: sorted_set
      key: {expression: "`invoices:by-total`"}
      args: {score: Total, member: InvoiceId}
      expire: {expression: "`3600`"}
  - uses: redis.write
    with:
      data_type: set
      key: {expression: "concat(['country:', BillingCountry])"}
      args: {member: InvoiceId}
  - uses: redis.write
    with:
      data_type: set
      key: {expression: "`countries`"}
      args: {member: {expression: "concat([BillingCountry, ':', InvoiceId])", language: jmespath}}
"#);
        let row: Value = serde_json::from_str(INVOICE).unwrap();
        assert_eq!(
            plan(&job, &event(Op::Create, row.clone()), &at(1)).unwrap(),
            vec![
                Write::SortedSetAdd {
                    key: "invoices:by-total".into(),
                    member: "98".into(),
                    score: 3.96,
                    ttl: Some(3600)
                },
                Write::SetAdd {
                    key: "country:Germany".into(),
                    member: "98".into(),
                    ttl: None
                },
                Write::SetAdd {
                    key: "countries".into(),
                    member: "Germany:98".into(),
                    ttl: None
                },
            ]
        );
        assert_eq!(
            plan(&job, &event(Op::Delete, row), &at(2)).unwrap(),
            vec![
                Write::SortedSetRemove {
                    key: "invoices:by-total".into(),
                    member: "98".into()
                },
                Write::SetRemove {
                    key: "country:Germany".into(),
                    member: "98".into()
                },
                Write::SetRemove {
                    key: "countries".into(),
                    member: "Germany:98".into()
                },
            ]
        );
    }

    /// RDI's documented job examples (tests/data/rdi).
    fn rdi_example(name: &str) -> Job {
        let examples: Vec<Value> =
            serde_json::from_str(include_str!("../tests/data/rdi/examples.json")).unwrap();
        let example = examples
            .iter()
            .find(|example| example["name"] == name)
            .unwrap_or_else(|| panic!("no example {name}"));
        job(example["job_yaml"].as_str().unwrap())
    }

    #[test]
    fn rdi_map_examples_give_their_documented_output() {
        // JMESPath: JSON.GET emp:1 in the docs, for Chinook's employee 1.
        let employees = rdi_example("Create multilevel employee JSON");
        let andrew = json!({"employeeid": 1, "lastname": "Adams", "firstname": "Andrew",
            "address": "11120 Jasper Ave NW", "city": "Edmonton", "state": "AB", "country": "Canada",
            "postalcode": "T5K 2N1", "phone": "+1 (780) 428-9482", "email": "andrew@chinookcorp.com"});
        let [Write::Json {
            key,
            json,
            document: true,
            ..
        }] = &plan(&employees, &event(Op::Create, andrew), &at(1)).unwrap()[..]
        else {
            panic!("one JSON document write");
        };
        assert_eq!(key, "emp:1");
        assert_eq!(
            serde_json::from_str::<Value>(json).unwrap(),
            serde_json::from_str::<Value>(r#"{"id":1,"name":"Andrew ADAMS","address":{"street":"11120 Jasper Ave NW","city":"Edmonton","state":"AB","postalCode":"T5K 2N1","country":"Canada"},"contact":{"phone":"+1 (780) 428-9482","safeEmail":"andrew_at_chinookcorp_dot_com"}}"#).unwrap()
        );
        // SQL: HGETALL track:16 in the docs, for Chinook's track 16.
        let tracks = rdi_example("Create track hash with calculated fields");
        let track = json!({"trackid": 16, "name": "Dog Eat Dog", "albumid": 4, "milliseconds": 215196, "bytes": 7032162});
        let [Write::Hash { key, json, .. }] =
            &plan(&tracks, &event(Op::Create, track), &at(1)).unwrap()[..]
        else {
            panic!("one hash write");
        };
        assert_eq!(key, "track:16");
        assert_eq!(
            json,
            r#"{"id":16,"name":"Dog Eat Dog","duration":"3:35.0","storagesize":"6.71MB"}"#
        );
    }

    #[test]
    fn string_outputs_write_args_value_as_text() {
        let job = job("source: {table: album}\noutput:\n  - uses: redis.write\n    with:\n      data_type: string\n      key: {expression: \"concat(['AlbumTitle:', albumid])\"}\n      args: {value: title}\n      expire: 86400\n");
        let row =
            json!({"albumid": 1, "title": "For Those About To Rock We Salute You", "artistid": 1});
        assert_eq!(
            plan(&job, &event(Op::Create, row.clone()), &at(4)).unwrap(),
            vec![Write::Text {
                key: "AlbumTitle:1".into(),
                value: "For Those About To Rock We Salute You".into(),
                ttl: Some(86400),
                version: 4.into(),
            }]
        );
        assert_eq!(
            plan(&job, &event(Op::Delete, row), &at(5)).unwrap(),
            vec![Write::Delete {
                key: "AlbumTitle:1".into(),
                version: 5.into()
            }]
        );
    }

    /// A change as Debezium carries it: the record key, the row before, the table.
    fn keyed(op: Op, key: Value, before: Option<Value>, row: Value, table: &str) -> ChangeEvent {
        let object = |value: Value| match value {
            Value::Object(object) => object,
            _ => unreachable!("objects"),
        };
        ChangeEvent {
            key: Some(object(key)),
            before: before.map(object),
            origin: crate::format::Origin {
                table: Some(table.into()),
                ..Default::default()
            },
            ..event(op, row)
        }
    }

    /// RDI's `nest` example (data-denormalization#3): each invoice line an entry of its
    /// invoice's `InvoiceLineItems` map, keyed `Invoice:InvoiceId:<id>`.
    #[test]
    fn nested_rows_go_into_their_parents_document() {
        let lines = rdi_example("data-pipelines__data-denormalization#3");
        let line = |id: i64, invoice: i64, price: f64| json!({"InvoiceLineId": id, "InvoiceId": invoice, "TrackId": 1, "UnitPrice": price});
        let created = plan(&lines, &event(Op::Create, line(5, 1, 0.99)), &at(1)).unwrap();
        assert_eq!(
            created,
            vec![Write::Json {
                key: "Invoice:InvoiceId:1".into(),
                json: r#"{"InvoiceLineItems":{"5":{"InvoiceLineId":5,"InvoiceId":1,"TrackId":1,"UnitPrice":0.99}}}"#.into(),
                patch: true,
                document: true,
                ttl: None,
                version: None,
                keep: Vec::new(),
            }]
        );
        let deleted = plan(&lines, &event(Op::Delete, line(5, 1, 0.99)), &at(2)).unwrap();
        assert_eq!(
            deleted,
            vec![Write::JsonRemove {
                key: "Invoice:InvoiceId:1".into(),
                path: vec!["InvoiceLineItems".into(), "5".into()],
            }]
        );
        // Moved to another invoice: out of the old one's map, into the new one's.
        let mut moved = event(Op::Update, line(5, 2, 0.99));
        moved.before = line(5, 1, 0.99).as_object().cloned();
        let writes = plan(&lines, &moved, &at(3)).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(
            writes[0],
            Write::JsonRemove {
                key: "Invoice:InvoiceId:1".into(),
                path: vec!["InvoiceLineItems".into(), "5".into()],
            }
        );
        assert!(matches!(&writes[1], Write::Json { key, .. } if key == "Invoice:InvoiceId:2"));
        // An entry named with a double quote: a path in single quotes; with a backslash,
        // none can name it.
        assert_eq!(
            json_path(&["Items".into(), r#"say "hi""#.into()]).as_deref(),
            Some(r#"$["Items"]['say "hi"']"#)
        );
        for unnameable in [r"a\b", r#"it's "it""#] {
            let mut row = line(5, 1, 0.99);
            row["InvoiceLineId"] = json!(unnameable);
            let error = plan(&lines, &event(Op::Delete, row), &at(5)).unwrap_err();
            assert!(error.to_string().contains("no JSON path"), "{error}");
        }
        // Without the parent's key (a delete without REPLICA IDENTITY FULL): an error.
        let keyless = event(Op::Delete, json!({"InvoiceLineId": 5}));
        let error = plan(&lines, &keyless, &at(4)).unwrap_err().to_string();
        assert!(
            error.contains("no InvoiceId") && error.contains("REPLICA IDENTITY FULL"),
            "{error}"
        );
    }

    /// RDI: a JSON document's mapping makes nested members of dotted names, `\.` a dot
    /// of the name; a hash's takes names as they are (flattened with dots anyway).
    #[test]
    fn json_mappings_nest_dotted_names() {
        let mapping = |data_type: &str| {
            job(&format!(
                "source: {{table: t}}\noutput:\n  - uses: redis.write\n    with:\n      data_type: {data_type}\n      key: {{expression: \"`k`\"}}\n      mapping:\n        - city: address.city\n        - zip: address.zip\n        - version: app\\.version\n        - gone: never.there\n"
            ))
        };
        let row = json!({"city": "Austin", "zip": "73301", "version": "1.2"});
        let json = |data_type: &str| match &plan(
            &mapping(data_type),
            &event(Op::Create, row.clone()),
            &at(1),
        )
        .unwrap()[0]
        {
            Write::Json { json, .. } | Write::Hash { json, .. } => json.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            json("json"),
            r#"{"address":{"city":"Austin","zip":"73301"},"app.version":"1.2"}"#
        );
        assert_eq!(
            json("hash"),
            r#"{"address.city":"Austin","address.zip":"73301","app\\.version":"1.2"}"#
        );
    }

    #[test]
    fn rdi_full_row_format_examples() {
        let album = json!({"albumid": 42, "title": "Let There Be Rock", "artistid": 1});
        let titles = rdi_example("Write album title to string");
        assert_eq!(
            plan(
                &titles,
                &keyed(Op::Create, json!({"albumid": 42}), None, album, "album"),
                &at(1)
            )
            .unwrap(),
            vec![Write::Text {
                key: "AlbumTitle:42".into(),
                value: "Let There Be Rock".into(),
                ttl: Some(86400),
                version: 1.into()
            }]
        );
        let employee = json!({"employeeid": 3, "lastname": "Peacock"});
        // A delete rewritten as an update: the key stays, holding what `after` then holds
        // (RDI's after is null for a delete: just the status).
        let status = rdi_example("Track status based on operation code");
        let deleted = keyed(
            Op::Delete,
            json!({"employeeid": 3}),
            None,
            employee.clone(),
            "employee",
        );
        let [Write::Hash { key, json, .. }] = &plan(&status, &deleted, &at(2)).unwrap()[..] else {
            panic!("one hash write");
        };
        assert_eq!(
            (key.as_str(), json.as_str()),
            ("employee:employeeid:3", r#"{"status":"inactive"}"#)
        );
        let updated = keyed(
            Op::Update,
            json!({"employeeid": 3}),
            None,
            employee.clone(),
            "employee",
        );
        let [Write::Hash { json, .. }] = &plan(&status, &updated, &at(3)).unwrap()[..] else {
            panic!("one hash write");
        };
        assert_eq!(
            json,
            r#"{"employeeid":3,"lastname":"Peacock","status":"active"}"#
        );
        // Deletes filtered out.
        let no_deletes = rdi_example("Filter out delete operations");
        assert!(plan(&no_deletes, &deleted, &at(4)).unwrap().is_empty());
        assert_eq!(plan(&no_deletes, &updated, &at(4)).unwrap().len(), 1);
        // A delete's key from before.
        let addresses = rdi_example("Handle delete operations with full row format");
        let address = keyed(
            Op::Delete,
            json!({"ID": 7}),
            None,
            json!({"ID": 7, "CITY": "Austin"}),
            "addresses",
        );
        assert_eq!(
            plan(&addresses, &address, &at(5)).unwrap(),
            vec![Write::Delete {
                key: "addresses:7".into(),
                version: 5.into()
            }]
        );
        // Fields added under after. reach Redis; the opcode is there to read.
        let opcode = rdi_example("Add operation code to employee");
        let [Write::Hash { json, .. }] = &plan(&opcode, &updated, &at(6)).unwrap()[..] else {
            panic!("one hash write");
        };
        assert_eq!(
            json,
            r#"{"employeeid":3,"lastname":"Peacock","operation_code":"u"}"#
        );
    }

    #[test]
    fn rdis_default_key_is_table_key_column_and_value() {
        let job = job("source: {table: invoice}\noutput:\n  - uses: redis.write\n");
        let change = keyed(
            Op::Create,
            json!({"InvoiceId": 98, "Line": 2}),
            None,
            json!({"InvoiceId": 98}),
            "invoice",
        );
        let [Write::Hash { key, .. }] = &plan(&job, &change, &at(1)).unwrap()[..] else {
            panic!("one hash write");
        };
        assert_eq!(key, "invoice:InvoiceId:98:Line:2");
        let keyless = event(Op::Create, json!({"InvoiceId": 98}));
        assert!(plan(&job, &keyless, &at(1))
            .unwrap_err()
            .to_string()
            .contains("RDI's default key"));
    }

    #[test]
    fn an_update_that_moves_a_row_removes_what_was_written_for_the_old_one() {
        let job = job(r#"source: {table: users}
output:
  - uses: redis.write
    with: {key: {expression: "concat(['user:', email])"}}
  - uses: redis.write
    with:
      data_type: set
      key: {expression: "concat(['country:', country])"}
      args: {member: id}
"#);
        let before = json!({"id": 1, "email": "a@x.org", "country": "DE"});
        let moved = keyed(
            Op::Update,
            json!({"id": 1}),
            Some(before.clone()),
            json!({"id": 1, "email": "b@x.org", "country": "FR"}),
            "users",
        );
        let writes = plan(&job, &moved, &at(9)).unwrap();
        assert_eq!(
            writes[0],
            Write::Delete {
                key: "user:a@x.org".into(),
                version: 9.into()
            }
        );
        assert_eq!(
            writes[1],
            Write::SetRemove {
                key: "country:DE".into(),
                member: "1".into()
            }
        );
        assert!(matches!(&writes[2], Write::Hash { key, .. } if key == "user:b@x.org"));
        assert!(matches!(&writes[3], Write::SetAdd { key, .. } if key == "country:FR"));
        // Nothing moved: nothing removed.
        let stayed = keyed(
            Op::Update,
            json!({"id": 1}),
            Some(before),
            json!({"id": 1, "email": "a@x.org", "country": "DE", "n": 2}),
            "users",
        );
        assert_eq!(plan(&job, &stayed, &at(10)).unwrap().len(), 2);
    }

    #[test]
    fn a_partial_row_patches_hashes_and_json() {
        let job = job("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"concat(['k:', id])\"}}\n  - uses: redis.write\n    with: {data_type: json, key: {expression: \"concat(['j:', id])\"}}\n");
        let mut partial = event(Op::Update, json!({"id": 1, "gone": null}));
        partial.partial = true;
        let writes = plan(&job, &partial, &at(3)).unwrap();
        // A field a transform made null (from a column not captured) removes nothing.
        let with_field = Job::parse(
            "source: {table: t}\ntransform:\n  - uses: add_field\n    with: {field: upper_notes, expression: \"upper(notes)\"}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"concat(['k:', id])\"}}\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let [Write::Hash { json, .. }] = &plan(&with_field, &partial, &at(3)).unwrap()[..] else {
            panic!("one hash write");
        };
        assert_eq!(json, r#"{"id":1,"gone":null}"#);
        assert!(matches!(
            &writes[0],
            Write::Hash { update: HashUpdate::Patch, json, .. } if json == r#"{"id":1,"gone":null}"#
        ));
        assert!(matches!(
            &writes[1],
            Write::Json {
                patch: true,
                document: true,
                ..
            }
        ));
    }

    #[test]
    fn a_key_expression_giving_null_is_an_error_for_this_event() {
        let job = job("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"concat(['k:', id])\"}}\n  - uses: redis.write\n    with: {key: {expression: missing}}\n");
        let error = plan(&job, &event(Op::Create, json!({"id": 1})), &at(1)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the key expression 'missing' gave null for this row"
        );
    }
}
