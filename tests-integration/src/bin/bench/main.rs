//! `cargo make bench [commands|postgres]`: each module command against the plain-Redis
//! ways to do the same work, in one run, on one server, interleaved A B C A B C over
//! several rounds; and the PostgreSQL source's latency and throughput (see `postgres`).
//!
//! Load comes from `redis-benchmark` (redis-tools) on its own CPU; the server is pinned
//! to another. Reported: median ops/s with the spread over rounds, server CPU µs per
//! operation (INFO used_cpu_user+sys delta ÷ operations), p50/p99 latency, and each
//! variant's ratio to the plain built-in command. Prints Markdown for BENCHMARKS.md.

mod postgres;

use std::process::Command;

use redis::Connection;
use redsink_tests::{call, Options, RedisServer};

const ROUNDS: usize = 5;
const REQUESTS: usize = 100_000;
const DEVICES: usize = 10_000;

/// 12 leaves, about 300 bytes: a typical telemetry message.
const PAYLOAD: &str = r#"{"temperature":21.5,"humidity":40.2,"pressure":1013.25,"battery":{"level":87,"charging":false,"voltage":3.71},"location":{"lat":30.2672,"lon":-97.7431,"alt":149.0},"firmware":"2.4.1-rc3","rssi":-67,"status":"ok-nominal-operating-mode"}"#;

/// Flattens the payload like SINK.HASH does, HSETs it and sets the TTL.
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

/// Stamps the payload like DS.UPDATE does and stores it with SET.
const LUA_STAMP: &str = r#"local record = cjson.decode(ARGV[2])
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
record['timestamp'] = ms
record['deviceId'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record))
return 1"#;

struct Scenario {
    title: &'static str,
    about: &'static str,
    variants: Vec<Variant>,
}

struct Variant {
    name: &'static str,
    args: Vec<String>,
}

#[derive(Default, Clone)]
struct Sample {
    ops_per_sec: f64,
    cpu_us_per_op: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() {
    let section = std::env::args().nth(1);
    match section.as_deref() {
        None => {
            commands();
            postgres::run();
        }
        Some("commands") => commands(),
        Some("postgres") => postgres::run(),
        Some(other) => {
            eprintln!("unknown section '{other}': give commands, postgres, or nothing for both");
            std::process::exit(2);
        }
    }
}

/// The module's commands against plain Redis, through redis-benchmark.
fn commands() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = RedisServer::with(
        Options::default()
            .config("save", "")
            .config("appendonly", "no")
            .on_cpu(0),
    );
    let mut con = server.connection();
    call::<()>(&mut con, &["DS.CREATE", "ds"]).unwrap();
    let sha: String = call(&mut con, &["SCRIPT", "LOAD", LUA_STAMP]).unwrap();
    let stamped = {
        let mut record: serde_json::Value = serde_json::from_str(PAYLOAD).unwrap();
        record["timestamp"] = "2026-11-21T19:47:48.019Z".into();
        record["deviceId"] = "dev-000000001234".into();
        record.to_string()
    };
    let hash_sha: String = call(&mut con, &["SCRIPT", "LOAD", LUA_FLATTEN]).unwrap();
    let flat_fields: Vec<String> = {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(PAYLOAD).unwrap();
        redsink_core::sink::flatten(&object, ".")
            .into_iter()
            .flat_map(|(field, value)| [field, value])
            .collect()
    };
    let words = |words: &[&str]| {
        words
            .iter()
            .map(|word| (*word).to_owned())
            .collect::<Vec<String>>()
    };
    let scenarios = [
        Scenario {
            title: "Device streams: DS.UPDATE vs SET vs Lua",
            about: "The floor is `SET` of a JSON text the client already stamped; the Lua \
                    variant decodes with cjson, stamps with `TIME` and `SET`s.",
            variants: vec![
                Variant {
                    name: "SET of the stamped JSON (floor)",
                    args: words(&["SET", "dev:__rand_int__", &stamped]),
                },
                Variant {
                    name: "EVALSHA: Lua cjson stamping + SET",
                    args: words(&[
                        "EVALSHA",
                        &sha,
                        "1",
                        "lua:__rand_int__",
                        "dev-__rand_int__",
                        PAYLOAD,
                    ]),
                },
                Variant {
                    name: "DS.UPDATE",
                    args: words(&["DS.UPDATE", "ds", "dev-__rand_int__", PAYLOAD]),
                },
            ],
        },
        Scenario {
            title: "Hashes: SINK.HASH vs HSET vs Lua",
            about: "The floor is `HSET` of fields the client already flattened (without the \
                    TTL, which needs a second command); the Lua variant decodes with cjson, \
                    flattens, `HSET`s and `EXPIRE`s; `SINK.HASH … TTL 3600` does all of it.",
            variants: vec![
                Variant {
                    name: "HSET of pre-flattened fields (floor, no TTL)",
                    args: [
                        vec!["HSET".to_owned(), "flat:__rand_int__".to_owned()],
                        flat_fields.clone(),
                    ]
                    .concat(),
                },
                Variant {
                    name: "EVALSHA: Lua cjson flatten + HSET + EXPIRE",
                    args: words(&[
                        "EVALSHA",
                        &hash_sha,
                        "1",
                        "lua:h:__rand_int__",
                        PAYLOAD,
                        "3600",
                    ]),
                },
                Variant {
                    name: "SINK.HASH … TTL 3600",
                    args: words(&["SINK.HASH", "sink:__rand_int__", PAYLOAD, "TTL", "3600"]),
                },
            ],
        },
    ];

    println!(
        "Payload {} bytes (12 leaves, nested), {REQUESTS} requests a round, {ROUNDS} rounds \
         interleaved, {DEVICES} keys, {cpus} CPUs (server on CPU 0, redis-benchmark on CPU {}).\n",
        PAYLOAD.len(),
        if cpus > 1 { 1 } else { 0 }
    );
    for scenario in &scenarios {
        println!("## {}\n\n{}\n", scenario.title, scenario.about);
        for (regime, pipeline, clients) in [("-P 1 -c 50", 1, 50), ("-P 16 -c 50", 16, 50)] {
            let mut samples = vec![Vec::new(); scenario.variants.len()];
            for _ in 0..ROUNDS {
                for (variant, samples) in scenario.variants.iter().zip(samples.iter_mut()) {
                    samples.push(measure(&server, &mut con, variant, pipeline, clients, cpus));
                }
            }
            print_table(regime, &scenario.variants, &samples);
        }
    }
    print_memory(&mut con);
}

fn measure(
    server: &RedisServer,
    con: &mut Connection,
    variant: &Variant,
    pipeline: usize,
    clients: usize,
    cpus: usize,
) -> Sample {
    let cpu_before = server_cpu_us(con);
    let mut command = Command::new("taskset");
    command.args(["-c", if cpus > 1 { "1" } else { "0" }, "redis-benchmark"]);
    command
        .args([
            "-p",
            &server.port().to_string(),
            "-n",
            &REQUESTS.to_string(),
        ])
        .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
        .args(["-r", &DEVICES.to_string(), "--csv", "-q"])
        .args(&variant.args);
    let output = command
        .output()
        .expect("run redis-benchmark (cargo make setup installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cpu_us = server_cpu_us(con) - cpu_before;
    let csv = String::from_utf8_lossy(&output.stdout);
    // The row starts with the command itself, commas included: read the seven numbers
    // (rps, avg, min, p50, p95, p99, max) from the end.
    let cells: Vec<f64> = csv
        .lines()
        .nth(1)
        .expect("redis-benchmark CSV row")
        .rsplit(',')
        .take(7)
        .map(|cell| cell.trim_matches('"').parse().expect("a number"))
        .collect();
    Sample {
        ops_per_sec: cells[6],
        cpu_us_per_op: cpu_us / REQUESTS as f64,
        p50_ms: cells[3],
        p99_ms: cells[1],
    }
}

fn server_cpu_us(con: &mut Connection) -> f64 {
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

fn print_table(regime: &str, variants: &[Variant], samples: &[Vec<Sample>]) {
    println!("### {regime}\n");
    println!("| variant | ops/s (median) | spread | server CPU µs/op | p50 ms | p99 ms | ops/s vs floor |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut floor = None;
    for (variant, samples) in variants.iter().zip(samples) {
        let mut ops: Vec<f64> = samples.iter().map(|s| s.ops_per_sec).collect();
        let (low, high) = (
            ops.iter().cloned().fold(f64::MAX, f64::min),
            ops.iter().cloned().fold(0.0, f64::max),
        );
        let ops_median = median(&mut ops);
        let floor_ops = *floor.get_or_insert(ops_median);
        let cpu = median(&mut samples.iter().map(|s| s.cpu_us_per_op).collect::<Vec<_>>());
        let p50 = median(&mut samples.iter().map(|s| s.p50_ms).collect::<Vec<_>>());
        let p99 = median(&mut samples.iter().map(|s| s.p99_ms).collect::<Vec<_>>());
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.2} | {:.3} | {:.3} | {:.2} |",
            variant.name,
            ops_median,
            low,
            high,
            cpu,
            p50,
            p99,
            ops_median / floor_ops
        );
    }
    println!();
}

/// Bytes per device record: a device stream against the same JSON in plain string keys.
fn print_memory(con: &mut Connection) {
    const COUNT: usize = 100_000;
    let used = |con: &mut Connection| -> f64 {
        let info: String = call(con, &["INFO", "memory"]).unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    };
    call::<()>(con, &["FLUSHALL"]).unwrap();
    call::<()>(con, &["DS.CREATE", "mem"]).unwrap();
    let start = used(con);
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("DS.UPDATE")
                .arg("mem")
                .arg(format!("dev-{i:08}"))
                .arg(PAYLOAD)
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    let ds = (used(con) - start) / COUNT as f64;
    let record: String = call(con, &["DS.GET", "mem", "dev-00000001"]).unwrap();
    call::<()>(con, &["FLUSHALL"]).unwrap();
    let start = used(con);
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("dev:{i:08}"))
                .arg(&record)
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    let strings = (used(con) - start) / COUNT as f64;
    println!(
        "## Memory per device record ({COUNT} devices, {} byte records)\n",
        record.len()
    );
    println!("| storage | bytes per device |\n|---|---:|");
    println!("| plain string keys (SET dev:<id> <json>) | {strings:.0} |");
    println!("| one device stream (DS.UPDATE) | {ds:.0} |");
    println!("| ratio DS / strings | {:.2} |\n", ds / strings);
}
