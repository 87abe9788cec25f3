//! `cargo make bench [commands [scenario]|versions [keys]|worker [drain|lag|new-streams]|postgres]`: the module's
//! commands against the plain-Redis ways to write the same records (see `commands`), the
//! memory of a device record, VERSION's memory and tombstone upkeep at scale (see
//! `versions`), the worker's drain rate and lag (see `worker`), and the PostgreSQL
//! source's latency and throughput (see `postgres`). Prints Markdown; a whole run (no section
//! named) is what BENCHMARKS.md shows below its marker line (Makefile.toml puts it there).

mod commands;
mod load;
mod postgres;
mod process;
mod versions;
mod worker;

use redis::Connection;
use redsink_tests::{call, Options, RedisServer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            machine();
            let medians = commands::run(None);
            memory();
            targets(&medians);
            versions::run(versions::DEFAULT_KEYS);
            worker::run(None);
            postgres::run();
        }
        Some("commands") => {
            let medians = commands::run(args.get(1).map(String::as_str));
            if args.len() == 1 {
                memory();
            }
            targets(&medians);
        }
        Some("versions") => match args.get(1).map(|keys| keys.parse()) {
            None => versions::run(versions::DEFAULT_KEYS),
            Some(Ok(keys)) if keys > 0 => versions::run(keys),
            Some(_) => {
                eprintln!("versions takes a number of keys above 0");
                std::process::exit(2);
            }
        },
        Some("postgres") => postgres::run(),
        Some("worker") => worker::run(args.get(1).map(String::as_str)),
        Some(other) => {
            eprintln!(
                "unknown section '{other}': give commands [scenario], versions [keys], worker [drain], postgres, or nothing for all"
            );
            std::process::exit(2);
        }
    }
}

/// When and where the numbers were taken: they only compare within one run.
fn machine() {
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let file = |path: &str, key: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                line.strip_prefix(key)
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
            .unwrap_or_default()
    };
    let memory_gib = file("/proc/meminfo", "MemTotal:")
        .trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let server = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    println!(
        "Run of {} by `cargo make bench`: {} CPUs ({}), {memory_gib:.0} GiB, {}; {}.\n",
        output("date", &["+%F"]),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        file("/proc/cpuinfo", "model name\t:"),
        file("/etc/os-release", "PRETTY_NAME="),
        output(&server, &["--version"])
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
}

/// The issue's goals: a variant's median records/s against another's, in a scenario.
/// Variants are named by how their names start (the first match counts).
const GOALS: [(&str, &str, &str, &str); 7] = [
    (
        "SINK.HASH ≥ 0.75 × HSET floor",
        HASH_300,
        "SINK.HASH",
        "HSET of",
    ),
    (
        "SINK.HASH ≥ 2 × MULTI/EXEC pipelined",
        HASH_300,
        "SINK.HASH",
        "MULTI HSET EXPIRE EXEC",
    ),
    (
        "SINK.HASH ≥ 2 × MULTI/EXEC, a round trip each",
        HASH_300,
        "SINK.HASH",
        "MULTI HSET EXPIRE EXEC, a round trip",
    ),
    ("SINK.HASH ≥ 3 × Lua", HASH_300, "SINK.HASH", "EVALSHA"),
    (
        "SINK.HASH FIELDS ≥ 0.75 × HSET floor",
        HASH_300,
        "SINK.HASH FIELDS",
        "HSET of",
    ),
    (
        "SINK.HASH FIELDS ≥ 3 × Lua",
        HASH_300,
        "SINK.HASH FIELDS",
        "EVALSHA",
    ),
    ("DS.UPDATE ≥ 0.7 × SET", DS_300, "DS.UPDATE", "SET of"),
];
const HASH_300: &str = "Hashes, 300 B nested";
const DS_300: &str = "Device streams, 300 B nested";

/// The issue's goals, read off this run's medians.
fn targets(medians: &[commands::Medians]) {
    let rate = |scenario: &str, regime: &str, variant: &str| {
        medians
            .iter()
            .filter(|m| m.scenario == scenario && m.regime == regime)
            .flat_map(|m| &m.by_variant)
            .find(|(name, _)| name.starts_with(variant))
            .map(|(_, rate)| *rate)
    };
    println!("## Targets\n\n| goal | this run |\n|---|---:|");
    for regime in ["-P 16 -c 50", "-P 1 -c 50"] {
        for (goal, scenario, variant, against) in GOALS {
            // A section run without the scenario has no line for it.
            if let (Some(n), Some(d)) = (
                rate(scenario, regime, variant),
                rate(scenario, regime, against),
            ) {
                println!("| {goal} ({regime}) | {:.2} |", n / d);
            }
        }
    }
    println!();
}

/// INFO memory's used_memory, in bytes.
/// The `p` quantile (0 to 1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

pub fn used_memory(con: &mut Connection) -> f64 {
    let info: String = call(con, &["INFO", "memory"]).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The 300 B nested payload of the benchmarks.
const MEMORY_PAYLOAD: &str = r#"{"device":"dev-1","temperature":21.5,"humidity":40.2,"battery":{"level":87,"charging":false,"voltage":3.71},"location":{"lat":30.2672,"lon":-97.7431,"alt":149.5},"firmware":"2.4.1-rc3","rssi":-67,"status":"ok-nominal-operating-mode-since-boot-no-faults"}"#;

/// Bytes per device record: a device stream against the same JSON in plain string keys.
fn memory() {
    let server = RedisServer::with(
        Options::default()
            .config("save", "")
            .config("appendonly", "no"),
    );
    let con = &mut server.connection();
    const COUNT: usize = 100_000;
    call::<()>(con, &["FLUSHALL"]).unwrap();
    call::<()>(con, &["DS.CREATE", "mem"]).unwrap();
    let start = used_memory(con);
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("DS.UPDATE")
                .arg("mem")
                .arg(format!("dev-{i:08}"))
                .arg(MEMORY_PAYLOAD)
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    let ds = (used_memory(con) - start) / COUNT as f64;
    let record: String = call(con, &["DS.GET", "mem", "dev-00000001"]).unwrap();
    call::<()>(con, &["FLUSHALL"]).unwrap();
    let start = used_memory(con);
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
    let strings = (used_memory(con) - start) / COUNT as f64;
    println!(
        "## Memory per device record ({COUNT} devices, {} byte records)\n",
        record.len()
    );
    println!("| storage | bytes per device |\n|---|---:|");
    println!("| plain string keys (SET dev:<id> <json>) | {strings:.0} |");
    println!("| one device stream (DS.UPDATE) | {ds:.0} |");
    println!("| ratio DS / strings | {:.2} |\n", ds / strings);
}
