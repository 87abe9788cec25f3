//! The module's commands against the plain-Redis ways to write the same records: every
//! variant of a scenario in the same run on the same server, interleaved A B C A B C
//! over `ROUNDS` rounds, in two regimes (`-P 1 -c 50`, `-P 16 -c 50`), with three
//! payloads; after the rounds each variant writes record 42 once more and the harness
//! checks that all variants stored the same data.

use std::collections::BTreeMap;

use redis::Connection;
use redsink_tests::{call, Options, RedisServer};
use serde_json::{Map, Value};

use crate::load::{self, Load, Record};

const ROUNDS: usize = 5;
const RECORDS: usize = 100_000;
const KEYSPACE: u64 = 10_000;
const REGIMES: [(&str, usize); 2] = [("-P 1 -c 50", 1), ("-P 16 -c 50", 16)];
const CLIENTS: usize = 50;
/// The record every variant writes once more after the rounds, to compare.
const CHECKED: u64 = 42;

/// Flattens like SINK.HASH does, HSETs and sets the TTL.
const LUA_FLATTEN: &str = r#"local function flatten(prefix, object, out)
  for name, value in pairs(object) do
    local field = prefix == '' and name or prefix .. '.' .. name
    if type(value) == 'table' and next(value) ~= nil and value[1] == nil then
      flatten(field, value, out)
    elseif type(value) == 'table' then
      table.insert(out, field); table.insert(out, cjson.encode(value))
    elseif value ~= cjson.null then
      table.insert(out, field); table.insert(out, tostring(value))
    end
  end
end
local fields = {}
flatten('', cjson.decode(ARGV[1]), fields)
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return #fields / 2"#;

/// Stamps like DS.UPDATE does (time and device id) and SETs.
const LUA_STAMP: &str = r#"local record = cjson.decode(ARGV[2])
local now = redis.call('TIME')
record['timestamp'] = now[1] * 1000 + math.floor(now[2] / 1000)
record['deviceId'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record))
return 1"#;

/// Maps members like SINK.STREAM MAP does (ARGV: json, then member/alias pairs) and XADDs.
const LUA_MAP: &str = r#"local row = cjson.decode(ARGV[1])
local fields = {}
for i = 2, #ARGV, 2 do
  local value = row[ARGV[i]]
  if value ~= nil and value ~= cjson.null then
    table.insert(fields, ARGV[i + 1])
    table.insert(fields, type(value) == 'table' and cjson.encode(value) or tostring(value))
  end
end
table.insert(fields, 'op_code'); table.insert(fields, 'c')
return redis.call('XADD', KEYS[1], '*', unpack(fields))"#;

/// The members SINK.STREAM maps, and their aliases: every payload has them.
const STREAM_MAP: [(&str, &str); 4] = [
    ("device", "id"),
    ("firmware", "firmware"),
    ("status", "status"),
    ("rssi", "signal"),
];

/// A payload to write, by size.
struct Payload {
    name: &'static str,
    json: String,
}

fn payloads() -> Vec<Payload> {
    let flat =
        r#"{"device":"dev-1","temp":21.5,"rssi":-67,"ok":true,"firmware":"2.4","status":"ok"}"#;
    let nested = r#"{"device":"dev-1","temperature":21.5,"humidity":40.2,"battery":{"level":87,"charging":false,"voltage":3.71},"location":{"lat":30.2672,"lon":-97.7431,"alt":149.5},"firmware":"2.4.1-rc3","rssi":-67,"status":"ok-nominal-operating-mode-since-boot-no-faults"}"#;
    let mut large = Map::new();
    large.insert("device".into(), "dev-1".into());
    large.insert("firmware".into(), "2.4.1-rc3".into());
    large.insert("status".into(), "ok".into());
    large.insert("rssi".into(), (-67).into());
    for sensor in 0..26 {
        large.insert(
            format!("sensor{sensor:02}"),
            serde_json::json!({
                "value": 20.25 + sensor as f64,
                "unit": "celsius",
                "ok": sensor % 5 != 0,
                "tags": ["rack-a", "row-3"],
            }),
        );
    }
    vec![
        Payload {
            name: "80 B flat",
            json: flat.into(),
        },
        Payload {
            name: "300 B nested",
            json: nested.into(),
        },
        Payload {
            name: "2 KB",
            json: Value::Object(large).to_string(),
        },
    ]
}

/// How to read back what a variant wrote for record `CHECKED`.
enum Stored {
    /// A hash, and whether it must have a TTL.
    Hash(String, bool),
    /// A JSON text under a key, its time stamp left out of the comparison.
    Json(String),
    /// A device's record in a device stream, its time stamp left out.
    Device(String, String),
    /// The newest entry of a stream, without its id.
    StreamEntry(String),
    /// A whole sorted set.
    SortedSet(String),
}

struct Variant {
    name: &'static str,
    record: Record,
    stored: Stored,
}

struct Scenario {
    title: String,
    about: &'static str,
    /// Which variant the other ones are compared with, and whose ratio the targets use.
    variants: Vec<Variant>,
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

fn key(prefix: &str) -> String {
    format!("{prefix}{CHECKED:012}")
}

/// The payload flattened like SINK.HASH does, as HSET's field/value words.
fn flat_fields(json: &str) -> Vec<String> {
    let object: Map<String, Value> = serde_json::from_str(json).expect("a JSON object");
    redsink_core::sink::flatten(&object, ".")
        .into_iter()
        .flat_map(|(field, value)| [field, value])
        .collect()
}

fn hash_scenario(payload: &Payload, lua: &str) -> Scenario {
    let hset = |key: &str| [words(&["HSET", key]), flat_fields(&payload.json)].concat();
    let expire = |key: &str| words(&["EXPIRE", key, "3600"]);
    Scenario {
        title: format!("Hashes, {}", payload.name),
        about: "The floor is `HSET` of fields the client already flattened (no TTL: that takes \
                a second command); then `HSET` + `EXPIRE` pipelined, the same in MULTI/EXEC \
                (pipelined, and as a client without pipelining sends it: four round trips), a \
                Lua script doing cjson decode + flatten + `HSET` + `EXPIRE`, and \
                `SINK.HASH … FLATTEN . TTL 3600`, which does all of it; last `SINK.HASH`'s \
                `FIELDS` form, which takes the fields flattened (as the worker sends rows).",
        variants: vec![
            Variant {
                name: "HSET of pre-flattened fields (floor, no TTL)",
                record: Record::new(&[hset("floor:__rand_int__")]),
                stored: Stored::Hash(key("floor:"), false),
            },
            Variant {
                name: "HSET + EXPIRE, pipelined",
                record: Record::new(&[hset("hx:__rand_int__"), expire("hx:__rand_int__")]),
                stored: Stored::Hash(key("hx:"), true),
            },
            Variant {
                name: "MULTI HSET EXPIRE EXEC",
                record: Record::new(&[
                    words(&["MULTI"]),
                    hset("multi:__rand_int__"),
                    expire("multi:__rand_int__"),
                    words(&["EXEC"]),
                ]),
                stored: Stored::Hash(key("multi:"), true),
            },
            Variant {
                name: "MULTI HSET EXPIRE EXEC, a round trip each (never pipelined)",
                record: Record::new(&[
                    words(&["MULTI"]),
                    hset("rtt:__rand_int__"),
                    expire("rtt:__rand_int__"),
                    words(&["EXEC"]),
                ])
                .round_trip_each(),
                stored: Stored::Hash(key("rtt:"), true),
            },
            Variant {
                name: "EVALSHA: Lua cjson flatten + HSET + EXPIRE",
                record: Record::new(&[words(&[
                    "EVALSHA",
                    lua,
                    "1",
                    "lua:__rand_int__",
                    &payload.json,
                    "3600",
                ])]),
                stored: Stored::Hash(key("lua:"), true),
            },
            Variant {
                name: "SINK.HASH … FLATTEN . TTL 3600",
                record: Record::new(&[words(&[
                    "SINK.HASH",
                    "sink:__rand_int__",
                    &payload.json,
                    "FLATTEN",
                    ".",
                    "TTL",
                    "3600",
                ])]),
                stored: Stored::Hash(key("sink:"), true),
            },
            Variant {
                name: "SINK.HASH FIELDS … TTL 3600 (fields flattened by the client, as the worker sends them)",
                record: Record::new(&[[
                    words(&["SINK.HASH", "fields:__rand_int__", "FIELDS"]),
                    vec![(flat_fields(&payload.json).len() / 2).to_string()],
                    flat_fields(&payload.json),
                    words(&["TTL", "3600"]),
                ]
                .concat()]),
                stored: Stored::Hash(key("fields:"), true),
            },
        ],
    }
}

fn device_scenario(payload: &Payload, lua: &str) -> Scenario {
    let mut stamped: Map<String, Value> = serde_json::from_str(&payload.json).expect("JSON");
    stamped.insert("timestamp".into(), 1_763_754_468_019i64.into());
    stamped.insert("deviceId".into(), "dev-__rand_int__".into());
    let stamped = Value::Object(stamped).to_string();
    Scenario {
        title: format!("Device streams, {}", payload.name),
        about: "The floor is `SET` of a JSON text the client already stamped with the time and \
                device id; the Lua script decodes with cjson, stamps with `TIME` and `SET`s; \
                `DS.UPDATE` stamps and stores the device's one current record.",
        variants: vec![
            Variant {
                name: "SET of the stamped JSON (floor)",
                record: Record::new(&[words(&["SET", "dev:__rand_int__", &stamped])]),
                stored: Stored::Json(key("dev:")),
            },
            Variant {
                name: "EVALSHA: Lua cjson stamping + SET",
                record: Record::new(&[words(&[
                    "EVALSHA",
                    lua,
                    "1",
                    "luadev:__rand_int__",
                    "dev-__rand_int__",
                    &payload.json,
                ])]),
                stored: Stored::Json(key("luadev:")),
            },
            Variant {
                name: "DS.UPDATE",
                record: Record::new(&[words(&[
                    "DS.UPDATE",
                    "ds",
                    "dev-__rand_int__",
                    &payload.json,
                ])]),
                stored: Stored::Device("ds".into(), key("dev-")),
            },
        ],
    }
}

fn stream_scenario(payload: &Payload, lua: &str) -> Scenario {
    let row: Map<String, Value> = serde_json::from_str(&payload.json).expect("JSON");
    let mut xadd = words(&["XADD", "xs:__rand_int__", "*"]);
    for (member, alias) in STREAM_MAP {
        let value = match &row[member] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        xadd.extend([alias.to_owned(), value]);
    }
    xadd.extend(words(&["op_code", "c"]));
    let mut eval = words(&["EVALSHA", lua, "1", "luas:__rand_int__", &payload.json]);
    let mut sink = words(&["SINK.STREAM", "ss:__rand_int__", &payload.json, "MAP"]);
    for (member, alias) in STREAM_MAP {
        eval.extend([member.to_owned(), alias.to_owned()]);
        sink.push(format!("{member}:{alias}"));
    }
    sink.extend(words(&["OPCODE", "c"]));
    Scenario {
        title: format!("Streams, {}", payload.name),
        about: "The floor is `XADD` of fields the client already mapped; the Lua script \
                decodes with cjson, picks and renames the members and `XADD`s; \
                `SINK.STREAM … MAP … OPCODE c` does the same in one command.",
        variants: vec![
            Variant {
                name: "XADD of pre-mapped fields (floor)",
                record: Record::new(&[xadd]),
                stored: Stored::StreamEntry(key("xs:")),
            },
            Variant {
                name: "EVALSHA: Lua cjson mapping + XADD",
                record: Record::new(&[eval]),
                stored: Stored::StreamEntry(key("luas:")),
            },
            Variant {
                name: "SINK.STREAM … MAP … OPCODE c",
                record: Record::new(&[sink]),
                stored: Stored::StreamEntry(key("ss:")),
            },
        ],
    }
}

fn leaderboard_scenario() -> Scenario {
    Scenario {
        title: "Leaderboards: the 100 highest scores".into(),
        about: "A score arrives (member and score from the record's number); the floor keeps \
                the top 100 with `ZADD` + `ZREMRANGEBYRANK` in MULTI/EXEC; `SINK.ZSET … \
                MAXLEN 100` does both.",
        variants: vec![
            Variant {
                name: "MULTI ZADD ZREMRANGEBYRANK EXEC (floor)",
                record: Record::new(&[
                    words(&["MULTI"]),
                    words(&["ZADD", "lb:multi", "__rand_int__", "player-__rand_int__"]),
                    words(&["ZREMRANGEBYRANK", "lb:multi", "0", "-101"]),
                    words(&["EXEC"]),
                ]),
                stored: Stored::SortedSet("lb:multi".into()),
            },
            Variant {
                name: "SINK.ZSET … MAXLEN 100",
                record: Record::new(&[words(&[
                    "SINK.ZSET",
                    "lb:sink",
                    "player-__rand_int__",
                    "__rand_int__",
                    "MAXLEN",
                    "100",
                ])]),
                stored: Stored::SortedSet("lb:sink".into()),
            },
        ],
    }
}

/// One measurement of one variant.
#[derive(Clone, Copy, Default)]
struct Sample {
    records_per_sec: f64,
    cpu_us_per_record: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A scenario's summary for the targets: the median records/s of each variant, by regime.
pub struct Medians {
    pub scenario: String,
    pub regime: &'static str,
    pub by_variant: Vec<(&'static str, f64)>,
}

/// Runs the scenarios whose title contains `only` (all without it); prints Markdown.
pub fn run(only: Option<&str>) -> Vec<Medians> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_cpu = if cpus > 1 { 1 } else { 0 };
    let server = RedisServer::with(
        Options::default()
            .config("save", "")
            .config("appendonly", "no")
            .on_cpu(0),
    );
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "ds"]).unwrap();
    let script = |con: &mut Connection, body: &str| -> String {
        call(con, &["SCRIPT", "LOAD", body]).unwrap()
    };
    let (flatten, stamp, map) = (
        script(&mut con, LUA_FLATTEN),
        script(&mut con, LUA_STAMP),
        script(&mut con, LUA_MAP),
    );
    let mut scenarios = Vec::new();
    for payload in payloads() {
        scenarios.push(hash_scenario(&payload, &flatten));
    }
    for payload in payloads() {
        scenarios.push(device_scenario(&payload, &stamp));
    }
    for payload in payloads() {
        scenarios.push(stream_scenario(&payload, &map));
    }
    scenarios.push(leaderboard_scenario());
    scenarios.retain(|scenario| {
        only.is_none_or(|only| scenario.title.to_lowercase().contains(&only.to_lowercase()))
    });

    println!(
        "Records of each variant: {RECORDS} a round, {ROUNDS} rounds interleaved, keys from \
         {KEYSPACE}, {CLIENTS} connections; the server on CPU 0, the load generator \
         (bench/load.rs) on CPU {load_cpu}. Payloads: {}.\n",
        payloads()
            .iter()
            .map(|p| format!("{} ({} bytes)", p.name, p.json.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut medians = Vec::new();
    for scenario in &scenarios {
        println!("## {}\n\n{}\n", scenario.title, scenario.about);
        for (regime, pipeline) in REGIMES {
            let mut samples = vec![Vec::new(); scenario.variants.len()];
            for _ in 0..ROUNDS {
                for (variant, samples) in scenario.variants.iter().zip(samples.iter_mut()) {
                    let load = Load {
                        port: server.port(),
                        clients: CLIENTS,
                        pipeline,
                        // A round trip a command is slow: fewer records say as much.
                        records: RECORDS / if variant.record.round_trips() { 4 } else { 1 },
                        keyspace: KEYSPACE,
                        cpu: load_cpu,
                    };
                    samples.push(measure(&mut con, load, &variant.record));
                }
            }
            medians.push(print_table(
                &scenario.title,
                regime,
                &scenario.variants,
                &samples,
            ));
        }
        check_same_data(&server, &mut con, scenario);
    }
    medians
}

fn measure(con: &mut Connection, load: Load, record: &Record) -> Sample {
    let cpu_before = server_cpu_us(con);
    let outcome = load::run(load, record);
    let cpu_us = server_cpu_us(con) - cpu_before;
    Sample {
        records_per_sec: outcome.records_per_sec(),
        cpu_us_per_record: cpu_us / outcome.records as f64,
        p50_ms: outcome.latency_ms(0.5),
        p99_ms: outcome.latency_ms(0.99),
    }
}

/// Each variant writes record `CHECKED` once more; all must have stored the same.
fn check_same_data(server: &RedisServer, con: &mut Connection, scenario: &Scenario) {
    let mut seen: Vec<(&str, Value)> = Vec::new();
    for variant in &scenario.variants {
        load::once(server.port(), &variant.record, CHECKED);
        seen.push((variant.name, read(con, &variant.stored)));
    }
    for (name, data) in &seen[1..] {
        assert_eq!(
            data, &seen[0].1,
            "{}: {name} stored other data than {}",
            scenario.title, seen[0].0
        );
    }
    println!(
        "Checked: the variants stored the same data for record {CHECKED} (numbers compared as \
         numbers{}).\n",
        match scenario.variants[0].stored {
            Stored::Json(_) => "; time stamps left out",
            _ => "",
        }
    );
}

/// What a variant stored, normalised: numbers as numbers, time stamps left out.
fn read(con: &mut Connection, stored: &Stored) -> Value {
    let normal = |text: &str| match text.parse::<f64>() {
        Ok(number) => Value::from(number),
        Err(_) => Value::from(text),
    };
    let pairs = |items: Vec<String>| -> Value {
        Value::Array(
            items
                .chunks(2)
                .map(|pair| Value::Array(vec![pair[0].clone().into(), normal(&pair[1])]))
                .collect(),
        )
    };
    let unstamped = |text: String| -> Value {
        let mut record: Map<String, Value> = serde_json::from_str(&text).expect("a JSON record");
        assert!(record.remove("timestamp").is_some(), "stamped: {text}");
        Value::Object(record)
    };
    match stored {
        Stored::Hash(key, ttl) => {
            let fields: BTreeMap<String, String> = call(con, &["HGETALL", key]).unwrap();
            assert!(!fields.is_empty(), "{key} was written");
            let expires = call::<i64>(con, &["TTL", key]).unwrap() > 0;
            assert_eq!(expires, *ttl, "{key}: TTL");
            Value::Object(fields.iter().map(|(f, v)| (f.clone(), normal(v))).collect())
        }
        Stored::Json(key) => unstamped(call(con, &["GET", key]).unwrap()),
        Stored::Device(key, device) => unstamped(call(con, &["DS.GET", key, device]).unwrap()),
        Stored::StreamEntry(key) => {
            let newest: Vec<(String, Vec<String>)> =
                call(con, &["XREVRANGE", key, "+", "-", "COUNT", "1"]).unwrap();
            pairs(newest.into_iter().next().expect("an entry").1)
        }
        Stored::SortedSet(key) => {
            pairs(call(con, &["ZRANGE", key, "0", "-1", "WITHSCORES"]).unwrap())
        }
    }
}

/// The server's CPU time so far (INFO `used_cpu_user` + `used_cpu_sys`), µs.
pub fn server_cpu_us(con: &mut Connection) -> f64 {
    let info: String = call(con, &["INFO", "cpu"]).unwrap();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (field("used_cpu_user:") + field("used_cpu_sys:")) * 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(
    scenario: &str,
    regime: &'static str,
    variants: &[Variant],
    samples: &[Vec<Sample>],
) -> Medians {
    println!("### {regime}\n");
    println!(
        "| variant | records/s (median) | spread | server CPU µs/record | p50 ms | p99 ms | records/s vs floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut floor = None;
    let mut by_variant = Vec::new();
    for (variant, samples) in variants.iter().zip(samples) {
        let pick = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
        let mut rates = pick(|s| s.records_per_sec);
        let (low, high) = (
            rates.iter().cloned().fold(f64::MAX, f64::min),
            rates.iter().cloned().fold(0.0, f64::max),
        );
        let rate = median(&mut rates);
        let floor_rate = *floor.get_or_insert(rate);
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.2} | {:.3} | {:.3} | {:.2} |",
            variant.name,
            rate,
            low,
            high,
            median(&mut pick(|s| s.cpu_us_per_record)),
            median(&mut pick(|s| s.p50_ms)),
            median(&mut pick(|s| s.p99_ms)),
            rate / floor_rate
        );
        by_variant.push((variant.name, rate));
    }
    println!();
    Medians {
        scenario: scenario.to_owned(),
        regime,
        by_variant,
    }
}
