//! Connections from the configuration: host/port or URL, user, password, database, TLS.
//!
//! Everything in the worker that talks to Redis holds a [`Redis`]: one type for any
//! shape of deployment, so that a cluster is one more variant here (the redis crate's
//! cluster connection speaks the same [`ConnectionLike`]) rather than a change in every
//! source and output.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Client, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
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
    /// MOVED and ASK while slots move, the topology refreshed after a failover. A pipeline
    /// must stay in one slot (see `commands::apply`).
    Cluster(ClusterConnection),
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
            .query_async(cluster)
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
                let reply = cluster.route_command(cmd.clone(), routing).await?;
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
            Redis::Cluster(cluster) => cluster.req_packed_command(cmd),
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
            Redis::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Server(server) => server.get_db(),
            Redis::Cluster(cluster) => cluster.get_db(),
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

/// A cluster's nodes (`urls`, or the one node `url`/host names with `cluster: true`),
/// with the user, password and TLS of the connection. Blocking connections get no
/// response timeout, as for one server.
async fn connect_cluster(name: &str, config: &RedisConnection, blocking: bool) -> Result<Redis> {
    let invalid = |e: redis::RedisError| Error::Invalid(format!("connection '{name}': {e}"));
    let nodes = match &config.urls {
        Some(urls) => urls
            .iter()
            .map(|url| insecure(config, url.clone()))
            .collect(),
        None => vec![url(name, config)?],
    };
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
    client
        .get_async_connection()
        .await
        .map(Redis::Cluster)
        .map_err(|e| {
            Error::Invalid(format!(
                "connection '{name}': cannot connect to the cluster: {e}"
            ))
        })
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
