//! RDI job files: which source table a job reads, how its rows are transformed, and
//! where they are written (`uses: redis.write`). Parsed and compiled once at start, so a
//! bad expression stops the worker before it reads anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redsink_core::ds::OnUpdate;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::expr::{Expr, Language};

/// A job file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Option<String>,
    source: JobSource,
    #[serde(default)]
    transform: Vec<StepFile>,
    #[serde(default)]
    output: Vec<StepFile>,
}

/// What a job reads: a table's change stream (`server_name`, `db`, `schema`, `table`, as
/// RDI), or streams named directly (`streams`, as a RuleGo endpoint subscribes to them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSource {
    pub server_name: Option<String>,
    /// The database, where the connector names it in its streams (SQL Server, MySQL).
    pub db: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub streams: Option<Vec<String>>,
    /// What transforms and keys see: the row (`data`, the default) or the whole change
    /// (`full`: `key`, `before`, `after`, `opcode`, `db`, `schema`, `table`).
    #[serde(default, deserialize_with = "row_format")]
    pub row_format: RowFormat,
    /// RDI's `case_insensitive` (true unless given): `server_name`, `db`, `schema` and
    /// `table` match the source's names in any case.
    #[serde(default = "case_insensitive")]
    pub case_insensitive: bool,
}

fn case_insensitive() -> bool {
    true
}

/// RDI's `row_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RowFormat {
    #[default]
    Data,
    Full,
}

fn row_format<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<RowFormat, D::Error> {
    let name = String::deserialize(deserializer)?;
    match name.to_ascii_lowercase().as_str() {
        "data" => Ok(RowFormat::Data),
        "full" => Ok(RowFormat::Full),
        _ => Err(serde::de::Error::custom(format!(
            "row_format must be data or full, got '{name}'"
        ))),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    uses: String,
    #[serde(default)]
    with: serde_norway::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpressionFile {
    expression: String,
    #[serde(default = "jmespath_language")]
    language: String,
    /// RDI's result cache: accepted, and said to change nothing (see [`CACHE_NOTE`]).
    #[serde(default, rename = "cache")]
    _cache: serde::de::IgnoredAny,
}

/// What `--check` says of a `cache` block.
pub const CACHE_NOTE: &str = "its expression cache changes nothing here: expressions are compiled once and evaluated in microseconds";

fn jmespath_language() -> String {
    "jmespath".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    #[serde(default = "target_connection")]
    connection: String,
    /// A hash when not given (a JSON document with `nest`).
    data_type: Option<DataType>,
    key: Option<ExpressionFile>,
    #[serde(default)]
    mapping: Vec<MappingFile>,
    expire: Option<ExpireFile>,
    /// Replace when not given (merge with `nest`).
    #[serde(default, deserialize_with = "on_update")]
    on_update: Option<OnUpdate>,
    #[serde(default)]
    args: BTreeMap<String, ArgFile>,
    nest: Option<NestFile>,
}

/// RDI's `nest`: each row an entry of a map in its parent row's JSON document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NestFile {
    parent: NestParentFile,
    nesting_key: String,
    parent_key: String,
    child_key: Option<String>,
    path: String,
    structure: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NestParentFile {
    table: String,
    // The parent's key is `<table>:<parent_key>:<value>` whatever its server and schema.
    #[serde(default, rename = "server_name")]
    _server_name: serde::de::IgnoredAny,
    #[serde(default, rename = "schema")]
    _schema: serde::de::IgnoredAny,
}

/// An output's argument: a field name as RDI writes it (`member: InvoiceId`, a JMESPath
/// field expression), or an expression in any language.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ArgFile {
    Field(String),
    Expression(ExpressionFile),
}

fn target_connection() -> String {
    "target".into()
}

/// `- field` or `- field: alias`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum MappingFile {
    Field(String),
    Alias(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ExpireFile {
    Seconds(i64),
    Expression(ExpressionFile),
}

/// What an output writes, as a job file names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DataType {
    #[default]
    Hash,
    String,
    Json,
    Set,
    SortedSet,
    Stream,
    /// A device data stream (`DS.UPDATE`): key the stream, `args.device` the device id.
    DeviceStream,
}

/// RDI's `on_update: replace | merge`, as the device streams' `ONUPDATE` (one type for
/// both: an update replaces what is stored, or is merged into it).
fn on_update<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<OnUpdate>, D::Error> {
    let name = String::deserialize(deserializer)?;
    OnUpdate::NAMES
        .iter()
        .position(|known| known.eq_ignore_ascii_case(&name))
        .and_then(OnUpdate::from_index)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("on_update must be replace or merge, got '{name}'"))
        })
}

/// A compiled job.
#[derive(Debug)]
pub struct Job {
    pub name: String,
    pub file: PathBuf,
    pub source: JobSource,
    pub transforms: Vec<Transform>,
    pub outputs: Vec<Output>,
    /// What `--check` should tell about the file beyond its shape (settings that change
    /// nothing here).
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub enum Transform {
    /// Keep only rows for which the expression is truthy.
    Filter(Expr),
    /// Set fields to expression values.
    AddFields(Vec<(String, Expr)>),
    RemoveFields(Vec<String>),
    RenameFields(Vec<(String, String)>),
    /// RDI's `map`: the row replaced by a new one.
    Map(Mapped),
    /// RDI's `redis.lookup`: a read-only command's reply set as a field.
    Lookup(Lookup),
}

/// A `redis.lookup`: the command, its arguments' expressions, and the field its reply
/// goes to. It reads through the connection the job writes to.
#[derive(Debug)]
pub struct Lookup {
    pub connection: String,
    pub command: String,
    pub args: Vec<Expr>,
    pub field: String,
}

/// The commands a lookup may run: those that read and write nothing.
const LOOKUP_COMMANDS: [&str; 38] = [
    "GET",
    "MGET",
    "GETRANGE",
    "STRLEN",
    "EXISTS",
    "TYPE",
    "TTL",
    "PTTL",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "ZRANGE",
    "ZSCORE",
    "ZMSCORE",
    "ZRANK",
    "ZCARD",
    "ZCOUNT",
    "XRANGE",
    "XREVRANGE",
    "XLEN",
    "JSON.GET",
    "JSON.MGET",
    "JSON.TYPE",
    "DS.GET",
    "DS.MGET",
    "SINK.VERSION",
];

impl Job {
    /// Whether any transform looks something up (and so needs Redis to plan).
    pub fn looks_up(&self) -> bool {
        self.transforms
            .iter()
            .any(|step| matches!(step, Transform::Lookup(_)))
    }
}

/// What `map` makes the row: one expression giving the whole object (JMESPath's
/// multiselect hash), or one expression a field (a YAML mapping, as SQL maps are written).
#[derive(Debug)]
pub enum Mapped {
    Whole(Expr),
    Fields(Vec<(String, Expr)>),
}

/// One `redis.write`: the key, what of the row is written, and the target type's own
/// settings.
#[derive(Debug)]
pub struct Output {
    pub connection: String,
    /// The key's expression; none for RDI's default, `<table>:<key column>:<value>…` of
    /// the record key.
    pub key: Option<Expr>,
    /// (field, name to write it as); empty for every field as it is.
    pub mapping: Vec<(String, String)>,
    pub expire: Option<Expire>,
    pub target: Target,
}

/// The Redis type an output writes, with what that type needs besides the row. Members
/// default to the mapped row as JSON.
#[derive(Debug)]
pub enum Target {
    Hash {
        on_update: OnUpdate,
    },
    /// `data_type: string`: the row as one JSON text.
    Json,
    /// `data_type: json`: the row as a JSON document (RedisJSON's, where the server has
    /// JSON; else JSON text in a string), replaced or merged into.
    Document {
        on_update: OnUpdate,
        /// The document's members a replace keeps: the maps other jobs nest rows in.
        keep: Vec<String>,
    },
    /// `data_type: string` with `args.value`: that value as text.
    Text {
        value: Expr,
    },
    Set {
        member: Option<Expr>,
    },
    SortedSet {
        score: Expr,
        member: Option<Expr>,
    },
    Stream,
    /// A device data stream (`DS.UPDATE`): the key is the stream, `device` the id.
    DeviceStream {
        device: Expr,
    },
    /// RDI's `nest`: the row merged into its parent's JSON document as an entry of a map.
    Nested(Nest),
}

/// Where `nest` puts a row: in the document of its parent row, RDI's default key
/// `<parent table>:<parent key>:<value>`, at `path.<nesting key's value>`.
#[derive(Debug)]
pub struct Nest {
    pub parent_table: String,
    pub parent_key: String,
    /// The row's column that holds the parent key's value (`parent_key` unless given).
    pub child_key: String,
    /// The row's column whose value names the row's entry in the map.
    pub nesting_key: String,
    /// The names from the document's root (`$`) to the map.
    pub path: Vec<String>,
}

impl Nest {
    /// RDI's `$.a.b`: the names after `$`, at least one.
    fn path(text: &str) -> Result<Vec<String>> {
        let names: Option<Vec<String>> = text
            .strip_prefix("$.")
            .map(|rest| rest.split('.').map(str::to_owned).collect());
        match names {
            Some(names)
                if names.iter().all(|name| {
                    !name.is_empty() && !name.contains(['[', ']', '*', '\'', '"', '\\', ' '])
                }) =>
            {
                Ok(names)
            }
            _ => Err(Error::Invalid(format!(
                "nest path must name the map from the document's root, as $.InvoiceLineItems \
                 (names joined by dots), got '{text}'"
            ))),
        }
    }
}

#[derive(Debug)]
pub enum Expire {
    Seconds(i64),
    Expression(Expr),
}

impl Job {
    /// Reads and compiles the job at `path`.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_owned(), e))?;
        Job::parse(&text, path).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Job> {
        let file: JobFile = serde_norway::from_str(text).map_err(|e| Error::Yaml(e.to_string()))?;
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem().map_or_else(
                || "job".to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            )
        });
        let transforms = file
            .transform
            .iter()
            .map(compile_transform)
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = file
            .output
            .iter()
            .map(compile_output)
            .collect::<Result<Vec<_>>>()?;
        // RDI's default output: each row as a hash under its default key.
        if outputs.is_empty() {
            outputs.push(Output {
                connection: target_connection(),
                key: None,
                mapping: Vec::new(),
                expire: None,
                target: Target::Hash {
                    on_update: OnUpdate::Replace,
                },
            });
        }
        match (&file.source.table, &file.source.streams) {
            (Some(_), None) => {}
            (None, Some(streams)) if !streams.is_empty() => {}
            _ => {
                return Err(Error::Invalid(
                    "a job's source names a table (server_name, schema, table) or streams, one of the two".into(),
                ))
            }
        }
        let notes = if has_cache_block(text) {
            vec![CACHE_NOTE.to_owned()]
        } else {
            Vec::new()
        };
        Ok(Job {
            name,
            file: path.to_owned(),
            source: file.source,
            transforms,
            outputs,
            notes,
        })
    }

    /// The streams this job reads: those named, or `<prefix><server_name>.<db>.<schema>.<table>`
    /// (the parts the job gives, as Debezium names its topics).
    pub fn streams(&self, prefix: &str) -> Vec<String> {
        if let Some(streams) = &self.source.streams {
            return streams.clone();
        }
        let parts: Vec<&str> = [
            self.source.server_name.as_deref(),
            self.source.db.as_deref(),
            self.source.schema.as_deref(),
            self.source.table.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        vec![format!("{prefix}{}", parts.join("."))]
    }
}

/// A YAML scalar as expression text (`id: trackid`, `n: 5`).
fn scalar_text(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::String(text) => Some(text.clone()),
        serde_norway::Value::Number(number) => Some(number.to_string()),
        serde_norway::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Whether a job file has an expression `cache` block anywhere.
fn has_cache_block(text: &str) -> bool {
    fn walk(node: &serde_norway::Value) -> bool {
        match node {
            serde_norway::Value::Mapping(mapping) => mapping
                .iter()
                .any(|(key, value)| key.as_str() == Some("cache") || walk(value)),
            serde_norway::Value::Sequence(items) => items.iter().any(walk),
            _ => false,
        }
    }
    serde_norway::from_str(text).is_ok_and(|document| walk(&document))
}

/// Every job file (`*.yaml`, `*.yml`) in `folder`, in name order.
pub fn load_folder(folder: &Path) -> Result<Vec<Job>> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::Read(folder.to_owned(), e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    let mut jobs = paths
        .iter()
        .map(|path| Job::load(path))
        .collect::<Result<Vec<_>>>()?;
    keep_nested_maps(&mut jobs);
    Ok(jobs)
}

/// `nest` writes rows into their parent's document, whose own job may replace it: such a
/// job (its table the nest's parent, `data_type: json` under RDI's default key) keeps the
/// nested maps through each replace, so that a parent's update, or a parent written after
/// its children, loses none of them. Where the jobs do not meet as RDI documents (no job
/// reads the parent table, or its output is no JSON document under the default key),
/// `--check` notes it on the job concerned.
pub fn keep_nested_maps(jobs: &mut [Job]) {
    // (nesting job, parent table, map's name)
    let nests: Vec<(usize, String, String)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(index, job)| job.outputs.iter().map(move |output| (index, output)))
        .filter_map(|(index, output)| match &output.target {
            Target::Nested(nest) => Some((index, nest.parent_table.clone(), nest.path[0].clone())),
            _ => None,
        })
        .collect();
    for (child, parent_table, map) in &nests {
        let parents: Vec<usize> = (0..jobs.len())
            .filter(|&index| jobs[index].source.table.as_deref() == Some(parent_table))
            .collect();
        if parents.is_empty() {
            let note = format!(
                "nest: no job here reads table '{parent_table}': its documents will hold the nested '{map}' map alone"
            );
            jobs[*child].notes.push(note);
        }
        let child_name = jobs[*child].name.clone();
        for parent in parents {
            for output in &mut jobs[parent].outputs {
                match (&output.key, &mut output.target) {
                    (None, Target::Document { keep, .. }) => {
                        if !keep.contains(map) {
                            keep.push(map.clone());
                        }
                    }
                    _ => {
                        let note = format!(
                            "nest: job '{child_name}' nests rows in '{map}' of this table's JSON documents under RDI's default key; this output writes no such document (give it data_type: json and no key), so the two do not meet"
                        );
                        jobs[parent].notes.push(note);
                    }
                }
            }
        }
    }
}

fn compile_expression(file: &ExpressionFile) -> Result<Expr> {
    Expr::compile(&file.expression, Language::from_name(&file.language)?)
}

fn step_with<T: serde::de::DeserializeOwned>(step: &StepFile) -> Result<T> {
    serde_norway::from_value(step.with.clone())
        .map_err(|e| Error::Invalid(format!("{}: {e}", step.uses)))
}

/// RDI's transform blocks, in their one-field and `fields:` list forms.
fn compile_transform(step: &StepFile) -> Result<Transform> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AddField {
        field: String,
        expression: String,
        #[serde(default = "jmespath_language")]
        language: String,
        #[serde(default, rename = "cache")]
        _cache: serde::de::IgnoredAny,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many { fields: Vec<T> },
        One(T),
    }
    impl<T> OneOrMany<T> {
        fn into_vec(self) -> Vec<T> {
            match self {
                OneOrMany::Many { fields } => fields,
                OneOrMany::One(one) => vec![one],
            }
        }
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FieldName {
        field: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rename {
        from_field: String,
        to_field: String,
    }
    match step.uses.as_str() {
        "filter" => Ok(Transform::Filter(compile_expression(&step_with(step)?)?)),
        "redis.lookup" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct LookupFile {
                #[serde(default = "target_connection")]
                connection: String,
                cmd: String,
                #[serde(default)]
                args: Vec<String>,
                #[serde(default = "jmespath_language")]
                language: String,
                field: String,
                #[serde(default, rename = "cache")]
                _cache: serde::de::IgnoredAny,
                #[serde(default, rename = "lookup_cache")]
                _lookup_cache: serde::de::IgnoredAny,
            }
            let lookup: LookupFile = step_with(step)?;
            let command = lookup.cmd.to_ascii_uppercase();
            if !LOOKUP_COMMANDS.contains(&command.as_str()) {
                return Err(Error::Invalid(format!(
                    "redis.lookup runs commands that only read ({}); '{}' is not one",
                    LOOKUP_COMMANDS.join(", "),
                    lookup.cmd
                )));
            }
            let language = Language::from_name(&lookup.language)?;
            let args = lookup
                .args
                .iter()
                .map(|arg| Expr::compile(arg, language))
                .collect::<Result<_>>()?;
            Ok(Transform::Lookup(Lookup {
                connection: lookup.connection,
                command,
                args,
                field: lookup.field,
            }))
        }
        "map" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct MapFile {
                expression: serde_norway::Value,
                #[serde(default = "jmespath_language")]
                language: String,
                #[serde(default, rename = "cache")]
                _cache: serde::de::IgnoredAny,
            }
            let map: MapFile = step_with(step)?;
            let language = Language::from_name(&map.language)?;
            let mapped = match map.expression {
                serde_norway::Value::String(text) => Mapped::Whole(Expr::compile(&text, language)?),
                serde_norway::Value::Mapping(fields) => Mapped::Fields(
                    fields
                        .iter()
                        .map(|(field, expression)| {
                            let (Some(field), Some(expression)) = (field.as_str(), scalar_text(expression)) else {
                                return Err(Error::Invalid(
                                    "map: each field of a mapping is `name: expression`".into(),
                                ));
                            };
                            Ok((field.to_owned(), Expr::compile(&expression, language)?))
                        })
                        .collect::<Result<_>>()?,
                ),
                _ => {
                    return Err(Error::Invalid(
                        "map: the expression is text (an object expression) or a mapping of fields to expressions".into(),
                    ))
                }
            };
            Ok(Transform::Map(mapped))
        }
        "add_field" => {
            let fields: OneOrMany<AddField> = step_with(step)?;
            let compiled = fields
                .into_vec()
                .into_iter()
                .map(|add| {
                    let expression = ExpressionFile {
                        expression: add.expression,
                        language: add.language,
                        _cache: serde::de::IgnoredAny,
                    };
                    Ok((add.field, compile_expression(&expression)?))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Transform::AddFields(compiled))
        }
        "remove_field" => {
            let fields: OneOrMany<FieldName> = step_with(step)?;
            Ok(Transform::RemoveFields(
                fields.into_vec().into_iter().map(|f| f.field).collect(),
            ))
        }
        "rename_field" => {
            let fields: OneOrMany<Rename> = step_with(step)?;
            Ok(Transform::RenameFields(
                fields
                    .into_vec()
                    .into_iter()
                    .map(|r| (r.from_field, r.to_field))
                    .collect(),
            ))
        }
        other => Err(Error::Invalid(format!(
            "unknown transform '{other}' (known: filter, add_field, remove_field, rename_field, map, redis.lookup)"
        ))),
    }
}

fn compile_output(step: &StepFile) -> Result<Output> {
    if step.uses != "redis.write" {
        return Err(Error::Invalid(format!(
            "unknown output '{}' (known: redis.write)",
            step.uses
        )));
    }
    let with: WriteFile = step_with(step)?;
    if let Some(nest) = &with.nest {
        return compile_nest(nest, &with);
    }
    let key = with.key.as_ref().map(compile_expression).transpose()?;
    let expire = match &with.expire {
        Some(ExpireFile::Seconds(seconds)) if *seconds > 0 => Some(Expire::Seconds(*seconds)),
        Some(ExpireFile::Seconds(seconds)) => {
            return Err(Error::Invalid(format!(
                "expire must be a positive number of seconds, got {seconds}"
            )))
        }
        Some(ExpireFile::Expression(expression)) => {
            Some(Expire::Expression(compile_expression(expression)?))
        }
        None => None,
    };
    let arg = |name: &str| -> Result<Option<Expr>> {
        with.args
            .get(name)
            .map(|arg| match arg {
                ArgFile::Field(field) => Expr::jmespath(field),
                ArgFile::Expression(expression) => compile_expression(expression),
            })
            .transpose()
    };
    let needed = |name: &str, data_type: &str| -> Result<Expr> {
        arg(name)?.ok_or_else(|| {
            Error::Invalid(format!(
                "a {data_type} output needs args: {{{name}: <expression>}}"
            ))
        })
    };
    let on_update = with.on_update.unwrap_or(OnUpdate::Replace);
    let target = match with.data_type.unwrap_or_default() {
        DataType::Hash => Target::Hash { on_update },
        DataType::String => match arg("value")? {
            Some(value) => Target::Text { value },
            None => Target::Json,
        },
        DataType::Json => Target::Document {
            on_update,
            keep: Vec::new(),
        },
        DataType::Set => Target::Set {
            member: arg("member")?,
        },
        DataType::SortedSet => Target::SortedSet {
            score: needed("score", "sorted_set")?,
            member: arg("member")?,
        },
        DataType::Stream => Target::Stream,
        DataType::DeviceStream => Target::DeviceStream {
            device: needed("device", "device_stream")?,
        },
    };
    Ok(Output {
        connection: with.connection,
        key,
        mapping: compile_mapping(&with.mapping)?,
        expire,
        target,
    })
}

/// `- field` or `- field: alias` entries as (field, name to write it as).
fn compile_mapping(mapping: &[MappingFile]) -> Result<Vec<(String, String)>> {
    mapping
        .iter()
        .map(|entry| match entry {
            MappingFile::Field(field) => Ok((field.clone(), field.clone())),
            MappingFile::Alias(pair) if pair.len() == 1 => {
                let (field, alias) = pair
                    .iter()
                    .next()
                    .map(|(f, a)| (f.clone(), a.clone()))
                    .unwrap_or_default();
                Ok((field, alias))
            }
            MappingFile::Alias(_) => Err(Error::Invalid(
                "a mapping entry is `field` or `field: alias`".into(),
            )),
        })
        .collect()
}

/// A `nest` output: what RDI's documentation allows beside it (data_type json, on_update
/// merge, a mapping), refused with the reason otherwise.
fn compile_nest(nest: &NestFile, with: &WriteFile) -> Result<Output> {
    let refuse = |reason: &str| Err(Error::Invalid(format!("nest: {reason}")));
    if with.key.is_some() {
        return refuse(
            "a nested row's key is its parent's, <parent table>:<parent_key>:<value>: remove key",
        );
    }
    if with.expire.is_some() || !with.args.is_empty() {
        return refuse("a nested row is part of its parent's document, which has no expire or args of its own: remove them");
    }
    if with
        .data_type
        .is_some_and(|data_type| data_type != DataType::Json)
    {
        return refuse("a nested row goes into its parent's JSON document: data_type must be json");
    }
    if with.on_update == Some(OnUpdate::Replace) {
        return refuse(
            "a nested row is merged into its parent's document: on_update must be merge",
        );
    }
    if let Some(structure) = nest.structure.as_deref().filter(|s| *s != "map") {
        return refuse(&format!(
            "structure must be map (RDI's only one), got '{structure}'"
        ));
    }
    Ok(Output {
        connection: with.connection.clone(),
        key: None,
        mapping: compile_mapping(&with.mapping)?,
        expire: None,
        target: Target::Nested(Nest {
            parent_table: nest.parent.table.clone(),
            parent_key: nest.parent_key.clone(),
            child_key: nest
                .child_key
                .clone()
                .unwrap_or_else(|| nest.parent_key.clone()),
            nesting_key: nest.nesting_key.clone(),
            path: Nest::path(&nest.path)?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Input;
    use serde_json::json;

    /// What RDI's documentation allows beside `nest`, and nothing else.
    #[test]
    fn nest_takes_what_rdi_documents() {
        let nest = |extra: &str| {
            let text = format!(
                "source: {{table: InvoiceLine}}\noutput:\n  - uses: redis.write\n    with:\n      nest: {{parent: {{table: Invoice, schema: public}}, nesting_key: InvoiceLineId, parent_key: InvoiceId, path: $.Lines.Items}}\n{extra}"
            );
            Job::parse(&text, Path::new("lines.yaml"))
        };
        let job = nest("").unwrap();
        let Target::Nested(nested) = &job.outputs[0].target else {
            panic!("a nested output");
        };
        assert_eq!(
            (
                nested.parent_table.as_str(),
                nested.child_key.as_str(),
                &nested.path[..]
            ),
            (
                "Invoice",
                "InvoiceId",
                &["Lines".to_owned(), "Items".to_owned()][..]
            )
        );
        nest("      data_type: json\n      on_update: merge\n      mapping: [UnitPrice]\n")
            .unwrap();
        for (extra, reason) in [
            ("      key: {expression: a}\n", "remove key"),
            ("      expire: 10\n", "remove them"),
            ("      data_type: hash\n", "data_type must be json"),
            ("      on_update: replace\n", "on_update must be merge"),
        ] {
            let error = nest(extra).unwrap_err().to_string();
            assert!(error.contains(reason), "{extra}: {error}");
        }
        let path = |path: &str| {
            let text = format!("source: {{table: t}}\noutput:\n  - uses: redis.write\n    with:\n      nest: {{parent: {{table: p}}, nesting_key: id, parent_key: pid, path: '{path}', structure: map}}\n");
            Job::parse(&text, Path::new("t.yaml")).map(|_| ())
        };
        path("$.Items").unwrap();
        for bad in ["$", "Items", "$.", "$.a..b", "$[a]", "$.*"] {
            let error = path(bad).unwrap_err().to_string();
            assert!(
                error.contains("nest path must name the map"),
                "{bad}: {error}"
            );
        }
    }

    /// A nest's parent job keeps the nested map through its replaces; jobs that do not
    /// meet as RDI documents get a note.
    #[test]
    fn nests_are_linked_to_their_parents_or_noted() {
        let parse = |text: &str| Job::parse(text, Path::new("job.yaml")).unwrap();
        let lines = "source: {table: InvoiceLine}\noutput:\n  - uses: redis.write\n    with:\n      nest: {parent: {table: Invoice}, nesting_key: InvoiceLineId, parent_key: InvoiceId, path: $.Lines}\n";
        let parent = |with: &str| {
            parse(&format!(
                "source: {{table: Invoice}}\noutput:\n  - uses: redis.write\n    with: {with}\n"
            ))
        };
        let mut jobs = vec![parse(lines), parent("{data_type: json}")];
        keep_nested_maps(&mut jobs);
        let Target::Document { keep, .. } = &jobs[1].outputs[0].target else {
            panic!("a document");
        };
        assert_eq!(keep, &["Lines"]);
        assert!(jobs.iter().all(|job| job.notes.is_empty()));

        let mut jobs = vec![
            parse(lines),
            parent("{data_type: hash}"),
            parent("{data_type: json, key: {expression: \"concat(['inv:', InvoiceId])\"}}"),
        ];
        keep_nested_maps(&mut jobs);
        for parent in &jobs[1..] {
            assert!(
                parent.notes[0].contains("so the two do not meet"),
                "{:?}",
                parent.notes
            );
        }
        let mut alone = vec![parse(lines)];
        keep_nested_maps(&mut alone);
        assert!(alone[0].notes[0].contains("no job here reads table 'Invoice'"));
    }

    /// Seed 001's job, verbatim (the example the README runs).
    const INVOICE_STREAM_JOB: &str = include_str!("../../examples/jobs/invoice-events.yaml");

    #[test]
    fn seed_001_job_is_accepted_verbatim() {
        let job = Job::parse(INVOICE_STREAM_JOB, Path::new("jobs/invoice.yaml")).unwrap();
        assert_eq!(job.name, "invoice");
        assert_eq!(job.streams("data:"), ["data:chinook.public.invoice"]);
        let output = &job.outputs[0];
        assert_eq!(output.connection, "target");
        assert!(matches!(output.target, Target::Stream));
        assert_eq!(
            output
                .key
                .as_ref()
                .unwrap()
                .eval(&Input::new(&Default::default()))
                .unwrap(),
            json!("invoice:events")
        );
        assert_eq!(
            output.mapping,
            vec![
                ("InvoiceId".to_owned(), "message_id".to_owned()),
                ("BillingCountry".to_owned(), "country".to_owned()),
                ("Total".to_owned(), "Total".to_owned())
            ]
        );
        assert!(matches!(output.expire, Some(Expire::Seconds(100))));
    }

    #[test]
    fn transforms_and_other_outputs() {
        let text = r#"name: invoices
source: {table: invoice}
transform:
  - uses: filter
    with: {expression: "Total > `1`", language: jmespath}
  - uses: add_field
    with:
      fields:
        - {field: country, expression: "lower(BillingCountry)", language: jmespath}
  - uses: remove_field
    with: {field: BillingPostalCode}
  - uses: rename_field
    with: {from_field: InvoiceDate, to_field: date}
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['invoice:', InvoiceId])", language: jmespath}
      on_update: merge
  - uses: redis.write
    with:
      data_type: sorted_set
      key: {expression: "`invoices:by-total`"}
      args: {score: Total, member: InvoiceId}
      expire: {expression: "`60`"}
"#;
        let job = Job::parse(text, Path::new("x.yaml")).unwrap();
        assert_eq!(job.name, "invoices");
        assert_eq!(job.streams("data:"), ["data:invoice"]);
        assert_eq!(job.transforms.len(), 4);
        assert!(matches!(
            job.outputs[0].target,
            Target::Hash {
                on_update: OnUpdate::Merge
            }
        ));
        let Target::SortedSet {
            score,
            member: Some(member),
        } = &job.outputs[1].target
        else {
            panic!("a sorted set with a member");
        };
        assert_eq!((score.text(), member.text()), ("Total", "InvoiceId"));
    }

    #[test]
    fn databases_name_streams_and_caches_change_nothing() {
        let text = r#"name: Cached country field
source:
  db: inventory
  schema: dbo
  table: customer
transform:
  - uses: add_field
    with:
      field: country
      language: sql
      expression: country_code || ' - ' || UPPER(country_name)
      cache:
        enabled: true
        max_size: 500
        ttl_seconds: 300
output:
  - uses: redis.write
    with:
      key: {expression: "concat(['customer:', id])", cache: {enabled: true}}
"#;
        let job = Job::parse(text, Path::new("x.yaml")).unwrap();
        assert_eq!(job.streams("data:"), ["data:inventory.dbo.customer"]);
        assert_eq!(job.notes, [CACHE_NOTE]);
        let plain = Job::parse(INVOICE_STREAM_JOB, Path::new("x.yaml")).unwrap();
        assert!(plain.notes.is_empty());
    }

    #[test]
    fn bad_jobs_are_refused_with_the_reason() {
        let bad = |text: &str| {
            Job::parse(text, Path::new("x.yaml"))
                .unwrap_err()
                .to_string()
        };
        let no_output =
            Job::parse("source: {table: t}\noutput: []\n", Path::new("x.yaml")).unwrap();
        assert!(matches!(
            &no_output.outputs[..],
            [Output {
                key: None,
                target: Target::Hash {
                    on_update: OnUpdate::Replace
                },
                ..
            }]
        ));
        assert!(bad("source: {table: t}\noutput:\n  - uses: kafka.write\n")
            .contains("unknown output 'kafka.write'"));
        assert!(bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"concat(\"}}\n")
            .contains("invalid JMESPath expression"));
        assert!(bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: a, language: python}}\n")
            .contains("language 'python' is not supported"));
        assert!(bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {key: {expression: \"nosuch(a)\", language: sql}}\n")
            .contains("invalid SQL expression 'nosuch(a)': no such function: nosuch"));
        assert!(bad(
            "source: {table: t}\noutput:\n  - uses: redis.write\n    with: {data_type: graph}\n"
        )
        .contains("graph"));
        assert!(bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {data_type: sorted_set}\n")
            .contains("needs args"));
        assert!(bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {data_type: sorted_set, args: {score: {expression: a, language: python}}}\n")
            .contains("language 'python' is not supported"));
        assert!(
            bad("source: {table: t}\noutput:\n  - uses: redis.write\n    with: {expire: 0}\n")
                .contains("expire must be a positive")
        );
        assert!(
            bad("source: {table: t}\ntransform:\n  - uses: explode\noutput: []\n")
                .contains("unknown transform 'explode'")
        );
        assert!(bad("source: {table: t}\ntransform:\n  - uses: redis.lookup\n    with: {cmd: SET, args: [a, b], field: f}\n")
            .contains("redis.lookup runs commands that only read"));
        assert!(bad("source: {table: t}\nouptut: []\n").contains("unknown field `ouptut`"));
        assert!(bad(
            "source: {table: t}\noutput:\n  - uses: redis.write\n    with: {on_update: sideways}\n"
        )
        .contains("on_update must be replace or merge, got 'sideways'"));
    }
}
