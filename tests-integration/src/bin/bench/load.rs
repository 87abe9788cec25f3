//! A load generator in the manner of redis-benchmark that sends *records* — one command,
//! or several (HSET + EXPIRE, MULTI … EXEC) — so that every way of writing a record is
//! measured by the same client: `clients` connections on one thread pinned to its own
//! CPU, each keeping `pipeline` records in flight and timing every batch.
//!
//! `__rand_int__` in an argument becomes a random key number (12 digits, below
//! `keyspace`), the same within one record. Each connection's random numbers come from a
//! fixed seed, so every variant of a scenario writes the same keys in the same order.

use std::time::{Duration, Instant};

use redsink_tests::pin_to_cpu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PLACEHOLDER: &[u8] = b"__rand_int__";

/// One argument: fixed bytes, or bytes around the record's key number.
#[derive(Clone, Debug)]
enum Arg {
    Fixed(Vec<u8>),
    Keyed(Vec<u8>, Vec<u8>),
}

/// What one record sends: its commands, each a list of arguments.
#[derive(Clone, Debug)]
pub struct Record {
    commands: Vec<Vec<Arg>>,
    /// Each command waits for the reply to the one before, as a client without
    /// pipelining sends a transaction: records go one at a time, whatever the pipeline.
    round_trip_each: bool,
}

impl Record {
    /// `commands`: each a command's words, `__rand_int__` where the key number goes.
    pub fn new(commands: &[Vec<String>]) -> Record {
        let commands = commands
            .iter()
            .map(|words| {
                words
                    .iter()
                    .map(|word| {
                        let bytes = word.as_bytes();
                        match bytes
                            .windows(PLACEHOLDER.len())
                            .position(|w| w == PLACEHOLDER)
                        {
                            Some(at) => Arg::Keyed(
                                bytes[..at].to_vec(),
                                bytes[at + PLACEHOLDER.len()..].to_vec(),
                            ),
                            None => Arg::Fixed(bytes.to_vec()),
                        }
                    })
                    .collect()
            })
            .collect();
        Record {
            commands,
            round_trip_each: false,
        }
    }

    /// The same commands, each sent after the reply to the one before.
    pub fn round_trip_each(mut self) -> Record {
        self.round_trip_each = true;
        self
    }

    /// Appends the record, for key number `key`, in RESP.
    fn encode(&self, key: u64, out: &mut Vec<u8>) {
        for command in 0..self.commands.len() {
            self.encode_command(command, key, out);
        }
    }

    /// Appends the record's command number `command`, for key number `key`, in RESP.
    fn encode_command(&self, command: usize, key: u64, out: &mut Vec<u8>) {
        let digits = format!("{key:012}");
        let args = &self.commands[command];
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            let (before, after): (&[u8], Option<&[u8]>) = match arg {
                Arg::Fixed(bytes) => (bytes, None),
                Arg::Keyed(before, after) => (before, Some(after)),
            };
            let length = before.len() + after.map_or(0, |after| digits.len() + after.len());
            out.extend_from_slice(format!("${length}\r\n").as_bytes());
            out.extend_from_slice(before);
            if let Some(after) = after {
                out.extend_from_slice(digits.as_bytes());
                out.extend_from_slice(after);
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Whether each command waits for the reply to the one before.
    pub fn round_trips(&self) -> bool {
        self.round_trip_each
    }

    fn replies(&self) -> usize {
        self.commands.len()
    }
}

/// How to load the server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub port: u16,
    pub clients: usize,
    pub pipeline: usize,
    pub records: usize,
    pub keyspace: u64,
    /// The CPU the load runs on.
    pub cpu: usize,
}

/// What a run measured.
pub struct Outcome {
    pub records: usize,
    pub elapsed: Duration,
    /// Each batch's round trip, in microseconds: every record of a batch waited that long.
    pub batch_latencies_us: Vec<u64>,
}

impl Outcome {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile of record latency, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        let mut sorted = self.batch_latencies_us.clone();
        sorted.sort_unstable();
        sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    }
}

/// Sends `load.records` records from `load.clients` connections; panics on an error reply.
pub fn run(load: Load, record: &Record) -> Outcome {
    let record = record.clone();
    std::thread::spawn(move || {
        pin_to_cpu(load.cpu);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(drive(load, record))
    })
    .join()
    .expect("the load thread")
}

/// Sends one record for key number `key` and waits for its replies.
pub fn once(port: u16, record: &Record, key: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut connection = Connection::open(port).await;
        let mut out = Vec::new();
        record.encode(key, &mut out);
        connection.round_trip(&out, record.replies()).await;
    });
}

async fn drive(load: Load, record: Record) -> Outcome {
    let per_client = load.records.div_ceil(load.clients);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(load.clients);
    for client in 0..load.clients {
        let record = record.clone();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(load.port).await;
            let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ (client as u64 + 1));
            let mut latencies = Vec::with_capacity(per_client / load.pipeline + 1);
            let mut out = Vec::new();
            let mut sent = 0;
            while sent < per_client {
                if record.round_trip_each {
                    let key = random.below(load.keyspace);
                    let began = Instant::now();
                    for command in 0..record.commands.len() {
                        out.clear();
                        record.encode_command(command, key, &mut out);
                        connection.round_trip(&out, 1).await;
                    }
                    latencies.push(began.elapsed().as_micros() as u64);
                    sent += 1;
                    continue;
                }
                let batch = load.pipeline.min(per_client - sent);
                out.clear();
                for _ in 0..batch {
                    record.encode(random.below(load.keyspace), &mut out);
                }
                let began = Instant::now();
                connection.round_trip(&out, batch * record.replies()).await;
                latencies.push(began.elapsed().as_micros() as u64);
                sent += batch;
            }
            (sent, latencies)
        }));
    }
    let mut outcome = Outcome {
        records: 0,
        elapsed: Duration::ZERO,
        batch_latencies_us: Vec::new(),
    };
    for task in tasks {
        let (sent, latencies) = task.await.expect("a load task");
        outcome.records += sent;
        outcome.batch_latencies_us.extend(latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to redis-server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Connection {
            stream,
            buffer: Vec::with_capacity(64 * 1024),
        }
    }

    /// Writes `request` and reads `replies` replies.
    async fn round_trip(&mut self, request: &[u8], replies: usize) {
        self.stream.write_all(request).await.expect("write");
        let mut done = 0;
        while done < replies {
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "redis-server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
            let mut at = 0;
            while let Some(end) = reply_end(&self.buffer, at) {
                if self.buffer[at] == b'-' {
                    panic!(
                        "error reply: {}",
                        String::from_utf8_lossy(&self.buffer[at..end]).trim_end()
                    );
                }
                at = end;
                done += 1;
            }
            self.buffer.drain(..at);
        }
    }
}

/// Where the RESP reply starting at `at` ends, if it is complete.
fn reply_end(buffer: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buffer.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buffer[at + 1..line_end]).ok()?;
    let after_line = line_end + 2;
    match buffer[at] {
        b'+' | b'-' | b':' => Some(after_line),
        b'$' => {
            let length: i64 = header.parse().ok()?;
            if length < 0 {
                return Some(after_line);
            }
            let end = after_line + length as usize + 2;
            (buffer.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = header.parse().ok()?;
            let mut end = after_line;
            for _ in 0..count.max(0) {
                end = reply_end(buffer, end)?;
            }
            Some(end)
        }
        other => panic!("unexpected RESP type byte {other}"),
    }
}

/// xorshift64*: fast, and the same sequence for the same seed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_encode_with_their_key_number() {
        let record = Record::new(&[
            vec![
                "HSET".into(),
                "h:__rand_int__".into(),
                "f".into(),
                "v".into(),
            ],
            vec!["EXPIRE".into(), "h:__rand_int__".into(), "60".into()],
        ]);
        let mut out = Vec::new();
        record.encode(42, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "*4\r\n$4\r\nHSET\r\n$14\r\nh:000000000042\r\n$1\r\nf\r\n$1\r\nv\r\n\
             *3\r\n$6\r\nEXPIRE\r\n$14\r\nh:000000000042\r\n$2\r\n60\r\n"
        );
    }

    #[test]
    fn replies_are_found_whole() {
        let replies = b"+OK\r\n:1\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n*1\r\n+QUEUED\r\n*3\r\n:1";
        let mut at = 0;
        let mut ends = Vec::new();
        while let Some(end) = reply_end(replies, at) {
            ends.push(end);
            at = end;
        }
        assert_eq!(ends, [5, 9, 18, 23, 44]);
    }
}
