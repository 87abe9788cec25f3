//! The commands a write becomes, and applying them: the module's single commands where
//! it is loaded, or plain commands in MULTI/EXEC where it is not (a managed Redis that
//! allows no modules).
//!
//! Replay safety: hash, string and delete writes carry VERSION (the module skips older
//! ones); stream messages carry an explicit id, so a replayed message is refused as
//! "not above the last id" and counts as written; set and sorted-set adds are idempotent
//! by nature.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};
use redsink_core::cluster::key_slot;
use redsink_core::json::Limits;
use redsink_core::sink::{flatten_json, flatten_patch, Fields, HashUpdate};

use crate::connect::{Cluster, Redis};
use crate::plan::{json_path, nested_patch, Version, Write};

/// What the target server can do, beyond Redis's own commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// The redsink module is loaded.
    pub module: bool,
    /// JSON documents: RedisJSON, or Redis 8's own.
    pub json: bool,
    /// A Redis Cluster: no transaction spans keys of different slots.
    pub cluster: bool,
}

/// `VERSION n`, and `LANE l` for a named lane.
impl redis::ToRedisArgs for Version {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(b"VERSION");
        out.write_arg(self.number.to_string().as_bytes());
        if !self.lane.is_empty() {
            out.write_arg(b"LANE");
            out.write_arg(self.lane.as_bytes());
        }
    }
}

/// A JSON document's write where the server has no JSON: the same on JSON text in a
/// string (a nested row's entry removed by a patch that nulls it; a replace that keeps
/// nested maps merged in instead).
fn as_string(write: &Write) -> Option<Write> {
    match write {
        Write::Json { document: true, .. } => {
            let mut string = write.clone();
            if let Write::Json {
                document,
                patch,
                keep,
                ..
            } = &mut string
            {
                *document = false;
                *patch |= !keep.is_empty();
                keep.clear();
            }
            Some(string)
        }
        Write::JsonRemove { key, path } => Some(Write::Json {
            key: key.clone(),
            json: nested_patch(path, "null"),
            patch: true,
            document: false,
            ttl: None,
            version: None,
            keep: Vec::new(),
        }),
        _ => None,
    }
}

/// `JSON.DEL key $["a"]["b"]` (planning refused names no path can hold).
fn json_remove(key: &str, path: &[String]) -> Cmd {
    redis::cmd("JSON.DEL")
        .arg(key)
        .arg(json_path(path).unwrap_or_default())
        .to_owned()
}

/// `write`'s commands on `server`: the module's single command where it can, plain
/// commands to run in one MULTI/EXEC where it cannot. A JSON document is JSON text in a
/// string where the server has no JSON.
fn commands_for(write: &Write, server: Server) -> Vec<Cmd> {
    if let Some(string) = as_string(write).filter(|_| !server.json) {
        return commands_for(&string, server);
    }
    if server.module {
        vec![module_command(write)]
    } else {
        plain_commands(write)
    }
}

/// The module's single command for `write`.
pub fn module_command(write: &Write) -> Cmd {
    let mut cmd;
    let ttl = match write {
        Write::Hash {
            key,
            json,
            update,
            ttl,
            version,
        } => {
            cmd = redis::cmd("SINK.HASH");
            cmd.arg(key);
            // Flattened here, so that Redis reads no JSON (BENCHMARKS.md, issue 17); a
            // patch's null members only the JSON form carries, and a row that does not
            // flatten goes as JSON, for the module to say why.
            let flattened = (*update != HashUpdate::Patch).then(|| flat_fields(json));
            match flattened.flatten() {
                Some(fields) => {
                    cmd.arg("FIELDS").arg(fields.len());
                    for (name, text) in fields.iter() {
                        cmd.arg(name).arg(text);
                    }
                }
                None => {
                    cmd.arg(json);
                }
            }
            if let Some(option) = update.option() {
                cmd.arg(option);
            }
            cmd.arg(version);
            ttl
        }
        Write::Json {
            key,
            json,
            patch,
            document,
            ttl,
            version,
            keep,
        } => {
            if *document {
                cmd = redis::cmd("SINK.JSON");
                cmd.arg(key).arg(json);
                for name in keep {
                    cmd.arg("KEEP").arg(name);
                }
            } else {
                cmd = redis::cmd("SINK.STRING");
                cmd.arg(key).arg(json).arg("JSON");
            }
            if *patch {
                cmd.arg("PATCH");
            }
            cmd.arg(version);
            ttl
        }
        Write::Text {
            key,
            value,
            ttl,
            version,
        } => {
            cmd = redis::cmd("SINK.STRING");
            cmd.arg(key).arg(value).arg(version);
            ttl
        }
        Write::SetAdd { key, member, ttl } => {
            cmd = redis::cmd("SINK.SET");
            cmd.arg(key).arg(member);
            ttl
        }
        Write::SortedSetAdd {
            key,
            member,
            score,
            ttl,
        } => {
            cmd = redis::cmd("SINK.ZSET");
            cmd.arg(key).arg(member).arg(score.to_string());
            ttl
        }
        Write::Stream {
            key,
            json,
            op_code,
            id,
            ttl,
        } => {
            cmd = redis::cmd("SINK.STREAM");
            cmd.arg(key).arg(json);
            if let Some(op_code) = op_code {
                cmd.arg("OPCODE").arg(*op_code);
            }
            cmd.arg("ID").arg(id);
            ttl
        }
        Write::DeviceUpdate {
            key,
            device,
            json,
            time_ms,
        } => {
            return redis::cmd("DS.UPDATE")
                .arg(key)
                .arg(device)
                .arg(json)
                .arg("TS")
                .arg(time_ms)
                .to_owned()
        }
        Write::DeviceDelete { key, device } => {
            return redis::cmd("DS.DEL").arg(key).arg(device).to_owned()
        }
        Write::Delete { key, version } => {
            cmd = redis::cmd("SINK.DEL");
            cmd.arg(key).arg(version);
            &None
        }
        Write::SetRemove { key, member } => {
            return redis::cmd("SREM").arg(key).arg(member).to_owned()
        }
        Write::SortedSetRemove { key, member } => {
            return redis::cmd("ZREM").arg(key).arg(member).to_owned()
        }
        Write::JsonRemove { key, path } => return json_remove(key, path),
    };
    if let Some(ttl) = ttl {
        cmd.arg("TTL").arg(ttl);
    }
    cmd
}

/// A command as redis-cli takes it: plain arguments as they are, others in double quotes
/// with redis-cli's escapes.
pub fn as_cli(cmd: &Cmd) -> String {
    cmd.args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => cli_argument(bytes),
            // A cursor argument (SCAN's); writes have none.
            _ => "0".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cli_argument(bytes: &[u8]) -> String {
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
    if plain {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut quoted = String::from("\"");
    for &byte in bytes {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b'\n' => quoted.push_str("\\n"),
            b'\r' => quoted.push_str("\\r"),
            b'\t' => quoted.push_str("\\t"),
            0x20..=0x7e => quoted.push(byte as char),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    quoted.push('"');
    quoted
}

/// The same write as plain commands, to run in one MULTI/EXEC.
pub fn plain_commands(write: &Write) -> Vec<Cmd> {
    let expire = |key: &str, ttl: &Option<i64>| {
        ttl.map(|ttl| redis::cmd("EXPIRE").arg(key).arg(ttl).to_owned())
    };
    match write {
        Write::Hash {
            key,
            json,
            update,
            ttl,
            ..
        } => {
            let fields = flat_fields(json).unwrap_or_default();
            let mut commands = Vec::new();
            match update {
                HashUpdate::Replace => commands.push(redis::cmd("DEL").arg(key).to_owned()),
                // The columns set to null (their own fields; without the module, not
                // those flattened under them).
                HashUpdate::Patch => commands.extend(
                    null_members(json)
                        .map(|names| redis::cmd("HDEL").arg(key).arg(names).to_owned()),
                ),
                HashUpdate::Merge => {}
            }
            if !fields.is_empty() {
                let mut hset = redis::cmd("HSET");
                hset.arg(key);
                for (field, value) in fields.iter() {
                    hset.arg(field).arg(value);
                }
                commands.push(hset);
            }
            commands.extend(expire(key, ttl));
            commands
        }
        // A JSON document: JSON.SET key $ json, or JSON.MERGE to patch (and for a replace
        // that keeps nested maps, which only the module can do).
        Write::Json {
            key,
            json,
            patch,
            document: true,
            ttl,
            keep,
            ..
        } => {
            let name = if *patch || !keep.is_empty() {
                "JSON.MERGE"
            } else {
                "JSON.SET"
            };
            let mut commands = vec![redis::cmd(name).arg(key).arg("$").arg(json).to_owned()];
            commands.extend(expire(key, ttl));
            commands
        }
        // Merging into a string's JSON is the module's: without it the change fails
        // (unknown command) and goes to the dead-letter stream whole.
        Write::Json { patch: true, .. } => vec![module_command(write)],
        Write::Json {
            key,
            json: value,
            ttl,
            ..
        }
        | Write::Text {
            key, value, ttl, ..
        } => {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(value);
            if let Some(ttl) = ttl {
                set.arg("EX").arg(ttl);
            }
            vec![set]
        }
        Write::SetAdd { key, member, ttl } => {
            let mut commands = vec![redis::cmd("SADD").arg(key).arg(member).to_owned()];
            commands.extend(expire(key, ttl));
            commands
        }
        Write::SortedSetAdd {
            key,
            member,
            score,
            ttl,
        } => {
            let mut commands = vec![redis::cmd("ZADD")
                .arg(key)
                .arg(score.to_string())
                .arg(member)
                .to_owned()];
            commands.extend(expire(key, ttl));
            commands
        }
        Write::Stream {
            key,
            json,
            op_code,
            id,
            ttl,
        } => {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(key).arg(id);
            for (field, value) in flat_fields(json).unwrap_or_default().iter() {
                xadd.arg(field).arg(value);
            }
            if let Some(op_code) = op_code {
                xadd.arg("op_code").arg(*op_code);
            }
            let mut commands = vec![xadd];
            commands.extend(expire(key, ttl));
            commands
        }
        Write::Delete { key, .. } => vec![redis::cmd("DEL").arg(key).to_owned()],
        Write::SetRemove { .. } | Write::SortedSetRemove { .. } | Write::JsonRemove { .. } => {
            vec![module_command(write)]
        }
        // Device streams are the module's own type: the worker refuses to start a job
        // with such an output against a Redis without it.
        Write::DeviceUpdate { .. } | Write::DeviceDelete { .. } => vec![module_command(write)],
    }
}

/// The names of a row's null members (flattened with `.`), if it has any.
fn null_members(json: &str) -> Option<Vec<String>> {
    let (_, nulls) = flatten_patch(json.as_bytes(), b".", &Limits::UNLIMITED).ok()?;
    (!nulls.is_empty()).then(|| {
        nulls
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect()
    })
}

/// A row's JSON text (which the worker made) as hash or stream fields, flattened with `.`
/// as the module's commands flatten it; `None` for a row that does not flatten (nested
/// deeper than any JSON reader here goes).
fn flat_fields(json: &str) -> Option<Fields> {
    flatten_json(json.as_bytes(), b".", &Limits::UNLIMITED).ok()
}

/// An error that means the write was already made: a replayed stream id.
pub fn is_replayed(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.contains("equal or smaller than the target stream top item"))
}

/// Applies each event's writes; returns, per event, `Ok` or the error Redis gave it.
/// `transactions` names each event's source transaction (where the source has them):
/// on one server, the writes of one transaction's events go in one MULTI/EXEC, so that a
/// reader never sees half of it; without the module, each event is one MULTI/EXEC at
/// least. All of it in one pipeline. On a cluster the commands go in one pipeline per
/// primary, all at once (in order within each: the writes of one key share its slot),
/// and no transaction spans them. A transport failure (Redis gone) fails the whole call
/// instead: it says nothing about the events, and must not count against them.
pub async fn apply(
    con: &mut Redis,
    events: &[Vec<Write>],
    transactions: &[Option<i64>],
    server: Server,
) -> Result<Vec<Result<(), Failed>>, RedisError> {
    if events.iter().all(Vec::is_empty) {
        return Ok(vec![Ok(()); events.len()]);
    }
    // Per event: its commands, each answered by one reply.
    let commands: Vec<Vec<Cmd>> = events
        .iter()
        .map(|writes| {
            writes
                .iter()
                .flat_map(|write| commands_for(write, server))
                .collect()
        })
        .collect();
    if let Redis::Cluster(cluster) = con {
        // Each command's transaction: its event's.
        let command_transactions: Vec<Option<i64>> = commands
            .iter()
            .enumerate()
            .flat_map(|(at, event)| {
                let transaction = transactions.get(at).copied().flatten();
                std::iter::repeat_n(transaction, event.len())
            })
            .collect();
        let mut replies = by_node(cluster, &commands, &command_transactions)
            .await?
            .into_iter();
        return Ok(commands
            .iter()
            .map(|event| outcome(replies.by_ref().take(event.len())))
            .collect());
    }
    let blocks = blocks(&commands, transactions, server);
    let mut pipe = Pipeline::new();
    pipe.ignore_errors();
    for block in &blocks {
        if block.atomic {
            pipe.add_command(redis::cmd("MULTI"));
        }
        for command in commands[block.events.clone()].iter().flatten() {
            pipe.add_command(command.clone());
        }
        if block.atomic {
            pipe.add_command(redis::cmd("EXEC"));
        }
    }
    let replies: Vec<RedisResult<Value>> = pipe.query_async(con).await?;
    let mut replies = replies.into_iter();
    let mut outcomes = Vec::with_capacity(events.len());
    for block in blocks {
        let events = &commands[block.events];
        if !block.atomic {
            outcomes.extend(
                events
                    .iter()
                    .map(|event| outcome(replies.by_ref().take(event.len()))),
            );
            continue;
        }
        let queued = events.iter().map(Vec::len).sum::<usize>() + 1;
        // Every queued reply is read (a refused one does not end the block's replies).
        let queued: Vec<RedisResult<Value>> = replies.by_ref().take(queued).collect();
        let refused = queued
            .iter()
            .find_map(|reply| reply.as_ref().err().map(Failed::from));
        let queued = queued.len();
        match replies.next() {
            Some(Ok(Value::Array(ran))) if ran.len() + 1 == queued => {
                let mut ran = ran.into_iter().map(server_error_as_err);
                outcomes.extend(
                    events
                        .iter()
                        .map(|event| outcome(ran.by_ref().take(event.len()))),
                );
            }
            exec => {
                // Why it did not run: the command refused, rather than EXECABORT.
                let error = match (refused, exec) {
                    (Some(refused), _) => refused,
                    (None, Some(Err(error))) => Failed::from(&error),
                    (None, _) => Failed::of_event("the transaction did not run".to_owned()),
                };
                outcomes.extend(events.iter().map(|_| Err(error.clone())));
            }
        }
    }
    Ok(outcomes)
}

/// An event's outcome from its commands' replies: the first error, a replayed stream id
/// aside.
fn outcome(replies: impl Iterator<Item = RedisResult<Value>>) -> Result<(), Failed> {
    for reply in replies {
        if let Err(error) = reply {
            if !is_replayed(&error) {
                return Err(Failed::from(&error));
            }
        }
    }
    Ok(())
}

/// Why an event's writes did not take.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub reason: String,
    /// Redis refused them for its own state — out of memory, busy running a script,
    /// loading its data, a failover under way — and not for anything in the event: they
    /// are written again once it passes, and never counted against the event.
    pub transient: bool,
}

impl Failed {
    /// A failure that is the event's own (its writes cannot be made as they are).
    pub fn of_event(reason: String) -> Failed {
        Failed {
            reason,
            transient: false,
        }
    }
}

/// Error codes with which Redis refuses writes for its own state.
const TRANSIENT: [&str; 8] = [
    "OOM",
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
    "NOREPLICAS",
];

impl From<&RedisError> for Failed {
    fn from(error: &RedisError) -> Failed {
        let reason = error.to_string();
        let transient = match error.code() {
            Some(code) if TRANSIENT.contains(&code) => true,
            // A transaction discarded for one of them (`… because of: OOM …`).
            Some("EXECABORT") => TRANSIENT
                .iter()
                .any(|code| error.detail().is_some_and(|detail| detail.contains(code))),
            _ => false,
        };
        Failed { reason, transient }
    }
}

/// Events whose writes go to one server together: in MULTI/EXEC (`atomic`) when they are
/// one transaction's with more than one command between them, or, without the module,
/// one event's commands; else each on its own.
struct Block {
    events: std::ops::Range<usize>,
    atomic: bool,
}

fn blocks(commands: &[Vec<Cmd>], transactions: &[Option<i64>], server: Server) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut start = 0;
    while start < commands.len() {
        let transaction = transactions.get(start).copied().flatten();
        let mut end = start + 1;
        while transaction.is_some()
            && end < commands.len()
            && transactions.get(end).copied().flatten() == transaction
        {
            end += 1;
        }
        let writes: usize = commands[start..end].iter().map(Vec::len).sum();
        let atomic = writes > 1 || (!server.module && writes > 0);
        blocks.push(Block {
            events: start..end,
            atomic,
        });
        start = end;
    }
    blocks
}

/// How many replicas must confirm a batch's writes, and for how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub replicas: u64,
    pub timeout_ms: u64,
}

/// WAIT on the connections that wrote (on a cluster, see [`Cluster::wait`]: the fewest
/// confirmations count); whether the replicas confirmed in time.
pub async fn replicas_confirm(con: &mut Redis, wait: Wait) -> Result<bool, RedisError> {
    let confirmed: u64 = match con {
        Redis::Cluster(cluster) => cluster.wait(wait.replicas, wait.timeout_ms).await?,
        Redis::Server(_) => {
            redis::cmd("WAIT")
                .arg(wait.replicas)
                .arg(wait.timeout_ms)
                .query_async(con)
                .await?
        }
    };
    Ok(confirmed >= wait.replicas)
}

/// Every command's reply, in order. The commands go in one pipeline per primary (by the
/// slot of their key, their first argument), the pipelines at once, on the worker's own
/// connections (see [`Cluster`]). The commands a node redirects (MOVED, ASK: their slot
/// moved or is moving) or cannot take now (see [`to_send_again`]) go again through the
/// cluster connection, which follows redirects and waits out a failover, one at a time
/// in their order within each slot; the slots are read again before the next batch. A node that fails fails the call (its commands may or may not have
/// run: the batch goes again, and its writes are replay-safe).
async fn by_node(
    cluster: &mut Cluster,
    commands: &[Vec<Cmd>],
    transactions: &[Option<i64>],
) -> Result<Vec<RedisResult<Value>>, RedisError> {
    let commands: Vec<&Cmd> = commands.iter().flatten().collect();
    let slots: Vec<u16> = commands
        .iter()
        .map(|command| match command.args_iter().nth(1) {
            Some(redis::Arg::Simple(key)) => key_slot(key),
            _ => 0,
        })
        .collect();
    let routing = cluster.routing(false).await;
    // Per primary: its connection, and its commands by slot (in order within each).
    let mut nodes = BTreeMap::new();
    let mut again = Vec::new();
    for (at, &slot) in slots.iter().enumerate() {
        match routing
            .as_ref()
            .and_then(|routing| routing.primary_of(slot))
        {
            Some((node, connection)) => nodes
                .entry(node)
                .or_insert_with(|| (connection, BTreeMap::<u16, Vec<usize>>::new()))
                .1
                .entry(slot)
                .or_default()
                .push(at),
            None => again.push(at),
        }
    }
    let commands = &commands;
    let sent = nodes
        .into_iter()
        .map(|(node, (mut connection, by_slot))| async move {
            let groups: Vec<SlotGroup> = by_slot
                .into_values()
                .map(|places| SlotGroup::new(places, commands, transactions))
                .collect();
            let mut pipe = Pipeline::new();
            pipe.ignore_errors();
            for group in &groups {
                group.add_to(&mut pipe, commands);
            }
            let replies = connection.req_packed_commands(&pipe, 0, pipe.len()).await;
            (node, replies.map(|replies| (groups, replies)))
        });
    let mut answered = Vec::new();
    let mut failure = None;
    for (node, outcome) in futures_util::future::join_all(sent).await {
        let Some(routing) = routing.as_deref() else {
            continue;
        };
        // Sent, answered or not: WAIT must go on this connection.
        cluster.wrote(routing, node);
        match outcome {
            Ok(replies) => answered.push(replies),
            Err(error) => {
                cluster.broke(routing, node);
                failure = Some(error);
            }
        }
    }
    if let Some(error) = failure {
        cluster.routing(true).await;
        return Err(error);
    }
    let mut replies: Vec<Option<RedisResult<Value>>> = std::iter::repeat_with(|| None)
        .take(commands.len())
        .collect();
    let mut stale = false;
    for (groups, node_replies) in answered {
        let mut node_replies = node_replies.into_iter();
        for group in groups {
            match group.take_replies(&mut node_replies) {
                Ok(answers) => {
                    for (at, reply) in answers {
                        match to_send_again(&reply) {
                            Some(kind) => {
                                stale |= kind != ServerErrorKind::Ask;
                                again.push(at);
                            }
                            None => replies[at] = Some(server_error_as_err(reply)),
                        }
                    }
                }
                Err(redirected) => {
                    stale |= redirected;
                    again.extend(group.places);
                }
            }
        }
    }
    if stale {
        cluster.routing(true).await;
    }
    again.sort_unstable();
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for at in again {
        by_slot.entry(slots[at]).or_default().push(at);
    }
    let resent = by_slot.into_values().map(|places| {
        let mut cluster = cluster.clone();
        let commands = &commands;
        async move {
            let mut replies = Vec::with_capacity(places.len());
            for at in places {
                let reply = cluster.send_routed(commands[at]).await;
                replies.push((at, reply.and_then(server_error_as_err)));
            }
            replies
        }
    });
    for (at, reply) in futures_util::future::join_all(resent)
        .await
        .into_iter()
        .flatten()
    {
        replies[at] = Some(reply);
    }
    Ok(replies
        .into_iter()
        .map(|reply| {
            reply.unwrap_or_else(|| Err(RedisError::from((redis::ErrorKind::Client, "no reply"))))
        })
        .collect())
}

/// One slot's commands in a node's pipeline. Where a key comes more than once, or one
/// source transaction has more than one command, they go in MULTI/EXEC (a transaction
/// cannot span slots in a cluster). A node that cannot take a command now (MOVED while a
/// replica is being promoted, CLUSTERDOWN, LOADING) may take the next one a moment later,
/// and the one sent again would then land after it (a stream message out of order); in
/// a transaction either all run or none, and all go again in order.
struct SlotGroup {
    places: Vec<usize>,
    atomic: bool,
}

impl SlotGroup {
    fn new(places: Vec<usize>, commands: &[&Cmd], transactions: &[Option<i64>]) -> SlotGroup {
        let mut keys = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        let atomic = places.iter().any(|&at| {
            let key = match commands[at].args_iter().nth(1) {
                Some(redis::Arg::Simple(key)) => key,
                _ => &[][..],
            };
            let transaction = transactions.get(at).copied().flatten();
            !keys.insert(key) || transaction.is_some_and(|transaction| !seen.insert(transaction))
        });
        SlotGroup { places, atomic }
    }

    fn add_to(&self, pipe: &mut Pipeline, commands: &[&Cmd]) {
        if self.atomic {
            pipe.add_command(redis::cmd("MULTI"));
        }
        for &at in &self.places {
            pipe.add_command(commands[at].clone());
        }
        if self.atomic {
            pipe.add_command(redis::cmd("EXEC"));
        }
    }

    /// This group's replies from the node's, each with its command's place; `Err` when a
    /// transaction did not run (whether the node redirected or refused it: the routing
    /// is then stale).
    fn take_replies(
        &self,
        replies: &mut impl Iterator<Item = Value>,
    ) -> Result<Vec<(usize, Value)>, bool> {
        if !self.atomic {
            return Ok(self.places.iter().copied().zip(replies.by_ref()).collect());
        }
        let queued: Vec<Value> = replies.by_ref().take(self.places.len() + 1).collect();
        match replies.next() {
            Some(Value::Array(ran)) if ran.len() == self.places.len() => {
                Ok(self.places.iter().copied().zip(ran).collect())
            }
            exec => {
                let redirected = queued.iter().chain(exec.iter()).any(|reply| {
                    to_send_again(reply).is_some_and(|kind| kind != ServerErrorKind::Ask)
                });
                Err(redirected)
            }
        }
    }
}

/// A reply, an error reply as `Err`.
fn server_error_as_err(reply: Value) -> RedisResult<Value> {
    match reply {
        Value::ServerError(error) => Err(error.into()),
        reply => Ok(reply),
    }
}

/// Whether a node's reply says the command belongs elsewhere or later, not that it is
/// wrong: a redirect (MOVED, ASK), or what the cluster connection waits out and retries
/// (TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY: a primary demoted by a
/// failover). Its kind, if so.
fn to_send_again(reply: &Value) -> Option<ServerErrorKind> {
    match reply {
        Value::ServerError(error) => error.kind().filter(|kind| {
            matches!(
                kind,
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
            )
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A reply as Redis sends it (`-MOVED …`, `+OK`).
    fn reply(resp: &str) -> Value {
        redis::parse_redis_value(format!("{resp}\r\n").as_bytes()).unwrap()
    }

    /// One transaction's events go to one server in one MULTI/EXEC; without the module,
    /// each event at least; with it, a lone command needs none.
    #[test]
    fn transactions_make_blocks() {
        let one = || vec![redis::cmd("SET").arg("k").arg(1).clone()];
        let commands = [one(), one(), one(), one(), Vec::new()];
        let transactions = [Some(7), Some(7), None, Some(8), Some(8)];
        let shape = |server: Server| -> Vec<(std::ops::Range<usize>, bool)> {
            blocks(&commands, &transactions, server)
                .into_iter()
                .map(|block| (block.events, block.atomic))
                .collect()
        };
        let module = Server {
            module: true,
            json: false,
            cluster: false,
        };
        assert_eq!(shape(module), [(0..2, true), (2..3, false), (3..5, false)]);
        let plain = Server {
            module: false,
            ..module
        };
        assert_eq!(shape(plain), [(0..2, true), (2..3, true), (3..5, true)]);
        assert_eq!(
            blocks(&commands, &[], module).len(),
            5,
            "no transactions: each event alone"
        );
    }

    /// A slot's commands where a key comes twice go in MULTI/EXEC; their replies are the
    /// EXEC's, or, when the transaction did not run, none (all go again).
    #[test]
    fn slot_groups_run_a_key_twice_as_one_transaction() {
        let (a, b) = (
            redis::cmd("SET").arg("k").arg(1).clone(),
            redis::cmd("SET").arg("j").arg(1).clone(),
        );
        let commands = [&a, &b, &a];
        let plain = SlotGroup::new(vec![0, 1], &commands, &[]);
        assert!(!plain.atomic);
        let atomic = SlotGroup::new(vec![0, 1, 2], &commands, &[]);
        assert!(atomic.atomic);
        let one_transaction = SlotGroup::new(vec![0, 1], &commands, &[Some(9), Some(9)]);
        assert!(one_transaction.atomic, "a transaction's keys of one slot");
        assert!(!SlotGroup::new(vec![0, 1], &commands, &[Some(9), Some(10)]).atomic);
        let mut pipe = Pipeline::new();
        atomic.add_to(&mut pipe, &commands);
        assert_eq!(pipe.len(), 5, "MULTI, three commands, EXEC");
        let ran = [
            reply("+OK"),
            reply("+QUEUED"),
            reply("+QUEUED"),
            reply("+QUEUED"),
            reply("*3\r\n+OK\r\n-ERR no\r\n+OK"),
        ];
        let answers = atomic.take_replies(&mut ran.into_iter()).unwrap();
        assert_eq!(
            answers.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(matches!(answers[1].1, Value::ServerError(_)));
        // A replica being promoted: the first refused, the next ones taken; nothing ran.
        let moved = [
            reply("+OK"),
            reply("-MOVED 1 127.0.0.1:7000"),
            reply("+QUEUED"),
            reply("+QUEUED"),
            reply("-EXECABORT Transaction discarded"),
        ];
        assert_eq!(atomic.take_replies(&mut moved.into_iter()), Err(true));
        let asked = [
            reply("+OK"),
            reply("-ASK 1 127.0.0.1:7000"),
            reply("+QUEUED"),
            reply("+QUEUED"),
            reply("-EXECABORT Transaction discarded"),
        ];
        assert_eq!(
            atomic.take_replies(&mut asked.into_iter()),
            Err(false),
            "ASK: the slot is not stale"
        );
        // Plain groups take one reply each, and leave the rest to the next group.
        let mut rest = [reply("+OK"), reply("+OK"), reply("+NEXT")].into_iter();
        assert_eq!(plain.take_replies(&mut rest).unwrap().len(), 2);
        assert_eq!(rest.next(), Some(reply("+NEXT")));
    }

    fn packed(cmd: &Cmd) -> String {
        cmd.args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn row() -> String {
        json!({"id": 1, "n": {"a": "x"}}).to_string()
    }

    #[test]
    fn module_commands() {
        let hash = Write::Hash {
            key: "k".into(),
            json: row(),
            update: HashUpdate::Replace,
            ttl: Some(5),
            version: 9.into(),
        };
        // Flattened here: Redis reads no JSON.
        assert_eq!(
            packed(&module_command(&hash)),
            "SINK.HASH k FIELDS 2 id 1 n.a x REPLACE VERSION 9 TTL 5"
        );
        let merged = Write::Hash {
            key: "k".into(),
            json: "{}".into(),
            update: HashUpdate::Merge,
            ttl: None,
            version: 9.into(),
        };
        assert_eq!(
            packed(&module_command(&merged)),
            "SINK.HASH k FIELDS 0 VERSION 9"
        );
        let stream = Write::Stream {
            key: "s".into(),
            json: row(),
            op_code: Some("d"),
            id: "7-0".into(),
            ttl: None,
        };
        assert_eq!(
            packed(&module_command(&stream)),
            r#"SINK.STREAM s {"id":1,"n":{"a":"x"}} OPCODE d ID 7-0"#
        );
        let delete = Write::Delete {
            key: "k".into(),
            version: 3.into(),
        };
        assert_eq!(packed(&module_command(&delete)), "SINK.DEL k VERSION 3");
        // A named lane goes with its version.
        let laned = Write::Delete {
            key: "k".into(),
            version: Version {
                number: 3,
                lane: "data:public.addresses".into(),
            },
        };
        assert_eq!(
            packed(&module_command(&laned)),
            "SINK.DEL k VERSION 3 LANE data:public.addresses"
        );
        let zadd = Write::SortedSetAdd {
            key: "z".into(),
            member: "m".into(),
            score: 1.5,
            ttl: Some(2),
        };
        assert_eq!(packed(&module_command(&zadd)), "SINK.ZSET z m 1.5 TTL 2");
        let patch = Write::Hash {
            key: "k".into(),
            json: r#"{"id":1,"gone":null}"#.into(),
            update: HashUpdate::Patch,
            ttl: None,
            version: 9.into(),
        };
        assert_eq!(
            packed(&module_command(&patch)),
            r#"SINK.HASH k {"id":1,"gone":null} PATCH VERSION 9"#
        );
        let json_patch = Write::Json {
            key: "j".into(),
            json: r#"{"a":null}"#.into(),
            patch: true,
            document: false,
            ttl: None,
            version: Some(2.into()),
            keep: Vec::new(),
        };
        assert_eq!(
            packed(&module_command(&json_patch)),
            r#"SINK.STRING j {"a":null} JSON PATCH VERSION 2"#
        );
        let document = Write::Json {
            key: "j".into(),
            json: r#"{"a":null}"#.into(),
            patch: true,
            document: true,
            ttl: Some(4),
            version: Some(2.into()),
            keep: Vec::new(),
        };
        assert_eq!(
            packed(&module_command(&document)),
            r#"SINK.JSON j {"a":null} PATCH VERSION 2 TTL 4"#
        );
    }

    /// A JSON document on each server: SINK.JSON with the module and JSON, JSON.SET or
    /// JSON.MERGE without the module, JSON text in a string without JSON.
    #[test]
    fn json_documents_take_what_the_server_has() {
        let document = |patch| Write::Json {
            key: "j".into(),
            json: r#"{"a":1}"#.into(),
            patch,
            document: true,
            ttl: Some(3),
            version: Some(5.into()),
            keep: Vec::new(),
        };
        let on = |write: &Write, module, json| -> Vec<String> {
            commands_for(
                write,
                Server {
                    module,
                    json,
                    cluster: false,
                },
            )
            .iter()
            .map(packed)
            .collect()
        };
        assert_eq!(
            on(&document(false), true, true),
            [r#"SINK.JSON j {"a":1} VERSION 5 TTL 3"#]
        );
        assert_eq!(
            on(&document(true), false, true),
            [r#"JSON.MERGE j $ {"a":1}"#, "EXPIRE j 3"]
        );
        assert_eq!(
            on(&document(false), false, true),
            [r#"JSON.SET j $ {"a":1}"#, "EXPIRE j 3"]
        );
        assert_eq!(
            on(&document(true), true, false),
            [r#"SINK.STRING j {"a":1} JSON PATCH VERSION 5 TTL 3"#]
        );
        assert_eq!(
            on(&document(false), false, false),
            [r#"SET j {"a":1} EX 3"#]
        );
        // A replace that keeps nested maps: KEEP with the module, a merge without.
        let mut keeping = document(false);
        if let Write::Json { keep, .. } = &mut keeping {
            keep.push("Lines".into());
        }
        assert_eq!(
            on(&keeping, true, true),
            [r#"SINK.JSON j {"a":1} KEEP Lines VERSION 5 TTL 3"#]
        );
        assert_eq!(
            on(&keeping, false, true),
            [r#"JSON.MERGE j $ {"a":1}"#, "EXPIRE j 3"]
        );
        assert_eq!(
            on(&keeping, true, false),
            [r#"SINK.STRING j {"a":1} JSON PATCH VERSION 5 TTL 3"#]
        );
    }

    #[test]
    fn plain_commands_do_the_same_work() {
        let hash = Write::Hash {
            key: "k".into(),
            json: row(),
            update: HashUpdate::Replace,
            ttl: Some(5),
            version: 9.into(),
        };
        let commands: Vec<String> = plain_commands(&hash).iter().map(packed).collect();
        assert_eq!(commands, ["DEL k", "HSET k id 1 n.a x", "EXPIRE k 5"]);
        let stream = Write::Stream {
            key: "s".into(),
            json: row(),
            op_code: Some("c"),
            id: "7-0".into(),
            ttl: Some(100),
        };
        let commands: Vec<String> = plain_commands(&stream).iter().map(packed).collect();
        assert_eq!(
            commands,
            ["XADD s 7-0 id 1 n.a x op_code c", "EXPIRE s 100"]
        );
        let patch = Write::Hash {
            key: "k".into(),
            json: r#"{"id":1,"gone":null,"n":{"x":null}}"#.into(),
            update: HashUpdate::Patch,
            ttl: None,
            version: 9.into(),
        };
        let commands: Vec<String> = plain_commands(&patch).iter().map(packed).collect();
        assert_eq!(commands, ["HDEL k gone n.x", "HSET k id 1"]);
        let json = Write::Json {
            key: "j".into(),
            json: "{}".into(),
            patch: false,
            document: false,
            ttl: Some(3),
            version: Some(1.into()),
            keep: Vec::new(),
        };
        assert_eq!(
            plain_commands(&json).iter().map(packed).collect::<Vec<_>>(),
            ["SET j {} EX 3"]
        );
    }
}
