//! `cargo make bench versions [KEYS]`: what VERSION costs at scale, as a user would see
//! it — the memory of `KEYS` versioned keys next to the same keys written without a
//! version, and the server's responsiveness while `KEYS` tombstones expire (the largest
//! PING round trip while they are forgotten, next to the largest while nothing expires).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Connection;
use redsink_tests::{call, Options, RedisServer};

use crate::used_memory;

/// Keys measured when no number is given: the issue's scale.
pub const DEFAULT_KEYS: usize = 10_000_000;

/// How long the tombstones last: long enough that a quiet stretch separates the last
/// delete from the first expiry (deletes go at 200,000 a second and more here), to
/// measure the machine's own noise.
fn tombstone_ttl_secs(keys: usize) -> u64 {
    (keys as u64 / 100_000).max(20)
}

pub fn run(keys: usize) {
    memory(keys);
    tombstone_expiry(keys);
}

fn server() -> RedisServer {
    RedisServer::with(
        Options::default()
            .config("save", "")
            .config("appendonly", "no"),
    )
}

/// Sends `args` once for each key (`key:<n>` after the first word), pipelined.
fn each_key(con: &mut Connection, keys: usize, args: &[&str]) {
    const CHUNK: usize = 20_000;
    for start in (0..keys).step_by(CHUNK) {
        let mut pipe = redis::pipe();
        for n in start..keys.min(start + CHUNK) {
            pipe.cmd(args[0])
                .arg(format!("key:{n}"))
                .arg(&args[1..])
                .ignore();
        }
        pipe.query::<()>(con).expect("the pipeline");
    }
}

fn info_field(con: &mut Connection, field: &str) -> usize {
    let info: String = call(con, &["INFO", "redsink"]).expect("INFO redsink");
    let prefix = format!("redsink_{field}:");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO redsink"))
}

fn memory(keys: usize) {
    let ways: [(&str, &[&str]); 3] = [
        ("HSET k a 1", &["HSET", "a", "1"]),
        (
            r#"SINK.HASH k {"a":1} VERSION 5"#,
            &["SINK.HASH", r#"{"a":1}"#, "VERSION", "5"],
        ),
        (
            r#"SINK.HASH k {"a":1} VERSION 5 LANE data:chinook.public.invoice"#,
            &[
                "SINK.HASH",
                r#"{"a":1}"#,
                "VERSION",
                "5",
                "LANE",
                "data:chinook.public.invoice",
            ],
        ),
    ];
    println!("## Version state at scale ({keys} keys)\n");
    println!("`cargo make bench versions {keys}`: each way fills a fresh server with {keys} keys `key:<n>`;");
    println!("bytes per key from INFO memory's used_memory before and after.\n");
    println!(
        "| command per key | bytes per key | version state per key | INFO compact_bytes per key |"
    );
    println!("|---|---:|---:|---:|");
    let mut plain = None;
    for (label, args) in ways {
        let server = server();
        let con = &mut server.connection();
        let before = used_memory(con);
        each_key(con, keys, args);
        let per_key = (used_memory(con) - before) / keys as f64;
        let versions = plain.map_or("–".to_owned(), |plain: f64| {
            format!("{:.1}", per_key - plain)
        });
        let compact = info_field(con, "compact_bytes") as f64 / keys as f64;
        plain.get_or_insert(per_key);
        println!("| `{label}` | {per_key:.1} | {versions} | {compact:.1} |");
    }
    println!();
}

/// PING round trips, one after another, until told to stop: the largest, and how many
/// took over a millisecond.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, usize, usize)>,
}

impl Probe {
    fn start(server: &RedisServer) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let mut con = server.connection();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut worst, mut over_1ms, mut pings) = (Duration::ZERO, 0, 0);
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                call::<String>(&mut con, &["PING"]).expect("PING");
                let took = started.elapsed();
                worst = worst.max(took);
                over_1ms += usize::from(took > Duration::from_millis(1));
                pings += 1;
            }
            (worst, over_1ms, pings)
        });
        Probe { stop, thread }
    }

    fn finish(self) -> (Duration, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the probe")
    }
}

fn tombstone_expiry(keys: usize) {
    let server = server();
    let con = &mut server.connection();
    let ttl_secs = tombstone_ttl_secs(keys);
    let ttl = ttl_secs.to_string();
    call::<()>(con, &["CONFIG", "SET", "redsink.tombstone-ttl", &ttl]).expect("CONFIG SET");
    let filled = Instant::now();
    each_key(con, keys, &["SINK.DEL", "VERSION", "2"]);
    let fill_time = filled.elapsed();
    let bytes = used_memory(con) / keys as f64;
    let first_expiry = filled + Duration::from_secs(ttl_secs);
    // Nothing expires yet: the machine's own noise.
    let quiet = first_expiry
        .saturating_duration_since(Instant::now())
        .saturating_sub(Duration::from_secs(1));
    let probe = Probe::start(&server);
    std::thread::sleep(quiet);
    let before = probe.finish();
    std::thread::sleep(first_expiry.saturating_duration_since(Instant::now()));
    let probe = Probe::start(&server);
    let expiring = Instant::now();
    let mut poll = server.connection();
    while info_field(&mut poll, "tombstone_deadlines") > 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let purge_time = expiring.elapsed();
    let during = probe.finish();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("## {keys} tombstones expiring\n");
    println!(
        "`SINK.DEL key:<n> VERSION 2` for {keys} keys in {:.1} s ({bytes:.0} bytes per tombstone), \
         tombstone-ttl {ttl_secs} s; a client PINGs the server one round trip after another.\n",
        fill_time.as_secs_f64()
    );
    println!(
        "The server's own figure (INFO redsink_tombstone_purge_slowest_us): the most CPU time one \
         slice of the purge took was {} µs. The round trips below also show the machine: \
         a server descheduled by the system stalls as long, expiring or not.\n",
        info_field(&mut poll, "tombstone_purge_slowest_us")
    );
    println!("| stretch | length | PINGs | largest round trip | over 1 ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| nothing expiring | {:.1} s | {} | {:.2} ms | {} |",
        quiet.as_secs_f64(),
        before.2,
        ms(before.0),
        before.1
    );
    println!(
        "| every tombstone expiring, until all are forgotten | {:.1} s | {} | {:.2} ms | {} |\n",
        purge_time.as_secs_f64(),
        during.2,
        ms(during.0),
        during.1
    );
}
