//! Connections from the configuration: host/port or URL, user, password, database, TLS.
//!
//! Everything in the worker that talks to Redis holds a [`Redis`]: one type for any
//! shape of deployment, so that a cluster is one more variant here (the redis crate's
//! cluster connection speaks the same [`ConnectionLike`]) rather than a change in every
//! source and output.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};

use crate::config::RedisConnection;
use crate::error::{Error, Result};

/// A connection to one Redis deployment.
#[derive(Clone)]
pub enum Redis {
    /// One server (a primary; its replicas follow it), reconnected with backoff when it
    /// goes away.
    Server(ConnectionManager),
    /// A Redis Cluster: each command goes to the node serving its key's slot, following
    /// MOVED and ASK while slots move, the topology refreshed after a failover; batches go
    /// one pipeline per primary (see [`Cluster`]).
    Cluster(Cluster),
}

/// A Redis Cluster: the redis crate's cluster connection, which routes each command and
/// follows redirects, and the worker's own connection to each primary, for batches. The
/// crate takes a pipeline only within one slot and, when one of its commands is
/// redirected, sends the whole pipeline again (so the others run twice); a batch of
/// 2,000 events touches nearly as many slots. So `commands::apply` sends a batch as one
/// pipeline per primary on these connections, and only the commands a node redirects go
/// again, one by one, through the cluster connection.
#[derive(Clone)]
pub struct Cluster {
    client: ClusterConnection,
    primaries: Arc<Primaries>,
}

/// The primaries by slot, as last read from CLUSTER SLOTS, with a connection to each.
struct Primaries {
    /// The connection's settings, and the address (with what the URL says: user,
    /// password, TLS) of the node it was given, to open a node's connection with.
    settings: RedisConnection,
    seed: ConnectionInfo,
    name: String,
    topology: Mutex<Topology>,
    /// Readings so far: a connection's reading and place name it.
    readings: AtomicU64,
    /// Nodes whose connection failed: the next reading connects to them afresh.
    broken: Mutex<Vec<Node>>,
    /// The connections that wrote since the last [`Cluster::wait`], by reading and
    /// place: WAIT must go on the connection that wrote.
    written: Mutex<HashMap<(u64, usize), MultiplexedConnection>>,
    /// Writes went through the cluster connection since the last [`Cluster::wait`].
    client_wrote: AtomicBool,
}

/// The last reading of the cluster's slots, and when it was made.
#[derive(Default)]
struct Topology {
    routing: Option<Arc<Routing>>,
    read_at: Option<Instant>,
}

/// How soon the slots are read again when the last reading left some without a
/// connection (a node down, unreachable, or its certificate not for its address): the
/// commands of those slots go through the cluster connection meanwhile.
const REREAD_INCOMPLETE: Duration = Duration::from_secs(2);

/// One reading of the cluster's slots.
pub struct Routing {
    /// Which reading this is.
    reading: u64,
    /// Per slot, its primary's place in `nodes`.
    slots: Vec<Option<u16>>,
    nodes: Vec<(Node, MultiplexedConnection)>,
}

impl Routing {
    /// Whether every slot has a primary with a connection.
    fn is_complete(&self) -> bool {
        self.slots.iter().all(Option::is_some)
    }
}

impl Routing {
    /// The connection to the primary of `slot`, and its place, if one is known.
    pub fn primary_of(&self, slot: u16) -> Option<(usize, MultiplexedConnection)> {
        let at = usize::from((*self.slots.get(usize::from(slot))?)?);
        Some((at, self.nodes.get(at)?.1.clone()))
    }
}

impl Cluster {
    /// The slots' primaries, read again when `stale` (a redirect, a failed node), never
    /// read, or last read incomplete (at most every [`REREAD_INCOMPLETE`]). `None` when
    /// they cannot be read: the commands then go through the cluster connection, one by
    /// one, as do those of slots without a connection.
    pub async fn routing(&mut self, stale: bool) -> Option<Arc<Routing>> {
        let (known, read_at) = {
            let topology = self.primaries.topology.lock().ok()?;
            (topology.routing.clone(), topology.read_at)
        };
        let complete = known.as_deref().is_some_and(Routing::is_complete);
        let due = match read_at {
            None => true,
            Some(_) if stale && complete => true,
            Some(at) => !complete && at.elapsed() >= REREAD_INCOMPLETE,
        };
        if !due {
            return known;
        }
        let read = self.read_routing(known.as_deref()).await;
        let routing = match read {
            Ok(routing) => {
                if !routing.is_complete() && (complete || read_at.is_none()) {
                    tracing::warn!(
                        connection = self.primaries.name,
                        "some of the cluster's primaries cannot be reached on their own: \
                         their slots' writes go one by one until they can"
                    );
                }
                Some(Arc::new(routing))
            }
            Err(error) => {
                if complete || read_at.is_none() {
                    tracing::warn!(
                        connection = self.primaries.name,
                        "cannot read the cluster's slots ({error}): writing command by command"
                    );
                }
                None
            }
        };
        let mut topology = self.primaries.topology.lock().ok()?;
        topology.routing = routing.clone();
        topology.read_at = Some(Instant::now());
        routing
    }

    /// Sends a write through the cluster connection, which follows redirects.
    pub async fn send_routed(&mut self, command: &Cmd) -> RedisResult<Value> {
        self.primaries.client_wrote.store(true, Ordering::Relaxed);
        self.client.req_packed_command(command).await
    }

    /// Notes that the primary at `place` of `routing` was written on.
    pub fn wrote(&self, routing: &Routing, place: usize) {
        if let (Ok(mut written), Some((_, connection))) =
            (self.primaries.written.lock(), routing.nodes.get(place))
        {
            written
                .entry((routing.reading, place))
                .or_insert_with(|| connection.clone());
        }
    }

    /// Notes that the primary at `place` of `routing` failed: the next reading connects
    /// to it afresh.
    pub fn broke(&self, routing: &Routing, place: usize) {
        if let (Ok(mut broken), Some((node, _))) =
            (self.primaries.broken.lock(), routing.nodes.get(place))
        {
            broken.push(node.clone());
        }
    }

    /// WAIT on every connection that wrote since the last WAIT: the primaries' that
    /// took pipelines, and the cluster connection if it wrote (it sends WAIT to every
    /// primary). The fewest replicas that confirmed (`u64::MAX` when nothing was
    /// written).
    pub async fn wait(&mut self, replicas: u64, timeout_ms: u64) -> RedisResult<u64> {
        let mut command = redis::cmd("WAIT");
        command.arg(replicas).arg(timeout_ms);
        let written: Vec<MultiplexedConnection> = match self.primaries.written.lock() {
            Ok(mut written) => written.drain().map(|(_, connection)| connection).collect(),
            Err(_) => Vec::new(),
        };
        let mut confirmed = u64::MAX;
        if self.primaries.client_wrote.swap(false, Ordering::Relaxed) {
            confirmed = command.query_async(&mut self.client).await?;
        }
        let waits = written.into_iter().map(|mut connection| {
            let command = &command;
            async move { command.query_async::<u64>(&mut connection).await }
        });
        for node in futures_util::future::try_join_all(waits).await? {
            confirmed = confirmed.min(node);
        }
        Ok(confirmed)
    }

    /// Reads CLUSTER SLOTS and connects to each primary, keeping the connections of the
    /// reading before except those that failed; a node it cannot reach is left out, its
    /// slots without a connection.
    async fn read_routing(&mut self, before: Option<&Routing>) -> RedisResult<Routing> {
        let ranges: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.client)
            .await?;
        let broken = match self.primaries.broken.lock() {
            Ok(mut broken) => std::mem::take(&mut *broken),
            Err(_) => Vec::new(),
        };
        let mut routing = Routing {
            reading: self.primaries.readings.fetch_add(1, Ordering::Relaxed),
            slots: vec![None; usize::from(redsink_core::cluster::SLOTS)],
            nodes: Vec::new(),
        };
        let mut unreachable: Vec<Node> = Vec::new();
        for range in ranges {
            let Some((start, end, node)) = slot_range(range) else {
                continue;
            };
            if unreachable.contains(&node) {
                continue;
            }
            let at = match routing.nodes.iter().position(|(known, _)| *known == node) {
                Some(at) => at,
                None => {
                    let kept = before
                        .filter(|_| !broken.contains(&node))
                        .and_then(|before| before.nodes.iter().find(|(old, _)| *old == node))
                        .map(|(_, connection)| connection.clone());
                    let opened = match kept {
                        Some(connection) => Ok(connection),
                        None => self.open(&node).await,
                    };
                    let connection = match opened {
                        Ok(connection) => connection,
                        Err(error) => {
                            tracing::debug!(
                                connection = self.primaries.name,
                                "cannot connect to {}:{}: {error}",
                                node.0,
                                node.1
                            );
                            unreachable.push(node);
                            continue;
                        }
                    };
                    routing.nodes.push((node, connection));
                    routing.nodes.len() - 1
                }
            };
            let at = u16::try_from(at).ok();
            for slot in start..=end.min(routing.slots.len().saturating_sub(1)) {
                routing.slots[slot] = at;
            }
        }
        Ok(routing)
    }

    /// A connection to one node, as to the node the configuration names (user, password
    /// and TLS, from its URL or its settings) at the node's address.
    async fn open(&self, (host, port): &Node) -> RedisResult<MultiplexedConnection> {
        let seed = &self.primaries.seed;
        let addr = match seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.clone(), *port),
        };
        let node = RedisConnection {
            db: None,
            ..self.primaries.settings.clone()
        };
        let client = client_for(&self.primaries.name, &node, seed.clone().set_addr(addr))
            .map_err(|e| RedisError::from((redis::ErrorKind::Client, "node", e.to_string())))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// One entry of CLUSTER SLOTS: its first and last slot and its primary's address.
fn slot_range(range: Value) -> Option<(usize, usize, Node)> {
    let Value::Array(fields) = range else {
        return None;
    };
    let number = |value: &Value| match value {
        Value::Int(n) => usize::try_from(*n).ok(),
        _ => None,
    };
    let (start, end) = (number(fields.first()?)?, number(fields.get(1)?)?);
    let Value::Array(primary) = fields.get(2)? else {
        return None;
    };
    let host = match primary.first()? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
        Value::SimpleString(text) => text.clone(),
        _ => return None,
    };
    let port = u16::try_from(number(primary.get(1)?)?).ok()?;
    (!host.is_empty()).then_some((start, end, (host, port)))
}

/// A cluster node by address.
pub type Node = (String, u16);

impl Redis {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// Where a command over the whole keyspace (SCAN) must run: the one server (`None`),
    /// or each primary of a cluster (from CLUSTER NODES, failed ones aside).
    pub async fn primaries(&mut self) -> RedisResult<Vec<Option<Node>>> {
        let Redis::Cluster(cluster) = self else {
            return Ok(vec![None]);
        };
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut cluster.client)
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                // ip:port@cport[,hostname]
                let address = fields.get(1)?.split('@').next()?;
                let (host, port) = address.rsplit_once(':')?;
                Some(Some((host.to_owned(), port.parse().ok()?)))
            })
            .collect())
    }

    /// A write outside a batch (a dead letter): on a cluster, one the next WAIT covers.
    pub async fn write<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Redis::Cluster(cluster) => {
                let reply = cluster.send_routed(cmd).await?.extract_error()?;
                T::from_redis_value(reply).map_err(RedisError::from)
            }
            Redis::Server(server) => cmd.query_async(server).await,
        }
    }

    /// `cmd` on `node` of a cluster (`None`: where it routes by itself).
    pub async fn query_at<T: FromRedisValue>(
        &mut self,
        node: Option<&Node>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, node) {
            (Redis::Cluster(cluster), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = cluster.client.route_command(cmd.clone(), routing).await?;
                T::from_redis_value(reply).map_err(RedisError::from)
            }
            (redis, _) => cmd.query_async(redis).await,
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Server(server) => server.req_packed_command(cmd),
            Redis::Cluster(cluster) => cluster.client.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Server(server) => server.req_packed_commands(pipeline, offset, count),
            Redis::Cluster(cluster) => cluster.client.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Server(server) => server.get_db(),
            Redis::Cluster(cluster) => cluster.client.get_db(),
        }
    }
}

/// A connection that reconnects by itself (with backoff) when Redis goes away.
/// `blocking` connections carry blocking reads and get no response timeout: redis-rs's
/// default of 500 ms would cut every `BLOCK` read short.
pub async fn connect(name: &str, config: &RedisConnection, blocking: bool) -> Result<Redis> {
    if config.urls.is_some() || config.cluster {
        return connect_cluster(name, config, blocking).await;
    }
    let client = client(name, config)?;
    let response_timeout = (!blocking).then_some(Duration::from_secs(10));
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(6)
        .set_max_delay(Duration::from_secs(2));
    client
        .get_connection_manager_with_config(manager_config)
        .await
        .map(Redis::Server)
        .map_err(|e| Error::Invalid(format!("connection '{name}': cannot connect: {e}")))
}

/// A subscription to `channel` on the one server of connection `name`.
pub async fn subscribe(
    name: &str,
    config: &RedisConnection,
    channel: &str,
) -> Result<redis::aio::PubSub> {
    let failed = |e: redis::RedisError| Error::Invalid(format!("connection '{name}': {e}"));
    let mut pubsub = client(name, config)?
        .get_async_pubsub()
        .await
        .map_err(failed)?;
    pubsub.subscribe(channel).await.map_err(failed)?;
    Ok(pubsub)
}

/// A cluster's nodes (`urls`, or the one node `url`/host names with `cluster: true`),
/// with the user, password and TLS of the connection. Blocking connections get no
/// response timeout, as for one server.
async fn connect_cluster(name: &str, config: &RedisConnection, blocking: bool) -> Result<Redis> {
    let invalid = |e: redis::RedisError| Error::Invalid(format!("connection '{name}': {e}"));
    let nodes: Vec<String> = match &config.urls {
        Some(urls) => urls
            .iter()
            .map(|url| insecure(config, url.clone()))
            .collect(),
        None => vec![url(name, config)?],
    };
    let seed = nodes
        .first()
        .ok_or_else(|| Error::Invalid(format!("connection '{name}': urls is empty")))?
        .as_str()
        .into_connection_info()
        .map_err(invalid)?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_secs(5))
        .retries(6);
    if !blocking {
        builder = builder.response_timeout(Duration::from_secs(10));
    }
    if let Some(user) = &config.user {
        builder = builder.username(user);
    }
    if let Some(password) = &config.password {
        builder = builder.password(password);
    }
    if let Some(path) = &config.ca_cert {
        let root_cert = std::fs::read(path).map_err(|e| Error::Read(path.clone(), e))?;
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        });
    }
    let client = builder.build().map_err(invalid)?;
    let client = client.get_async_connection().await.map_err(|e| {
        Error::Invalid(format!(
            "connection '{name}': cannot connect to the cluster: {e}"
        ))
    })?;
    Ok(Redis::Cluster(Cluster {
        client,
        primaries: Arc::new(Primaries {
            settings: config.clone(),
            seed,
            name: name.to_owned(),
            topology: Mutex::new(Topology::default()),
            readings: AtomicU64::new(0),
            broken: Mutex::new(Vec::new()),
            written: Mutex::new(HashMap::new()),
            client_wrote: AtomicBool::new(false),
        }),
    }))
}

/// The one server's URL: `url`, or built from host and port.
fn url(name: &str, config: &RedisConnection) -> Result<String> {
    let scheme = if config.tls { "rediss" } else { "redis" };
    let url = match (&config.url, &config.host) {
        (Some(url), _) => url.clone(),
        (None, Some(host)) => format!("{scheme}://{host}:{}/", config.port.unwrap_or(6379)),
        _ => {
            return Err(Error::Invalid(format!(
                "connection '{name}': give url, host (and port), or urls (a cluster's nodes)"
            )))
        }
    };
    Ok(insecure(config, url))
}

/// `url` accepting any certificate, where the connection says so.
fn insecure(config: &RedisConnection, url: String) -> String {
    if config.skip_verify && !url.contains('#') {
        format!("{url}#insecure")
    } else {
        url
    }
}

fn client(name: &str, config: &RedisConnection) -> Result<Client> {
    let info = url(name, config)?
        .as_str()
        .into_connection_info()
        .map_err(|e| Error::Invalid(format!("connection '{name}': {e}")))?;
    client_for(name, config, info)
}

/// A client for `info` (an address, and what its URL says) with the connection's user,
/// password, database and CA certificate.
fn client_for(name: &str, config: &RedisConnection, info: ConnectionInfo) -> Result<Client> {
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.user {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    if let Some(db) = config.db {
        settings = settings.set_db(db);
    }
    let info = info.set_redis_settings(settings);
    let opened = match &config.ca_cert {
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| Error::Read(path.clone(), e))?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
        None => Client::open(info),
    };
    opened.map_err(|e| Error::Invalid(format!("connection '{name}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// CLUSTER SLOTS entries as Redis 7 and Valkey 8 give them: the range, the primary
    /// (address, port, id, maybe metadata), then replicas.
    #[test]
    fn slot_ranges_name_their_primary() {
        let entry = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![
                bulk("127.0.0.1"),
                Value::Int(30001),
                bulk("09dbe9720cda62f7865eabc5fd8857c5d2678366"),
                Value::Map(vec![]),
            ]),
            Value::Array(vec![
                bulk("127.0.0.1"),
                Value::Int(30004),
                bulk("821d8ca00d7ccf931ed3ffc7e3db0599d2271abf"),
            ]),
        ]);
        assert_eq!(
            slot_range(entry),
            Some((0, 5460, ("127.0.0.1".to_owned(), 30001)))
        );
        let unknown_host = Value::Array(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Array(vec![bulk(""), Value::Int(30001)]),
        ]);
        assert_eq!(slot_range(unknown_host), None);
        assert_eq!(slot_range(Value::Int(3)), None);
        assert_eq!(slot_range(Value::Array(vec![Value::Int(0)])), None);
    }
}
