//! Connections from the configuration: host/port or URL, user, password, database, TLS.
//!
//! Everything in the worker that talks to Redis holds a [`Redis`]: one type for any
//! shape of deployment, so that a cluster is one more variant here (the redis crate's
//! cluster connection speaks the same [`ConnectionLike`]) rather than a change in every
//! source and output.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::config::RedisConnection;
use crate::error::{Error, Result};

/// A connection to one Redis deployment.
#[derive(Clone)]
pub enum Redis {
    /// One server (a primary; its replicas follow it), reconnected with backoff when it
    /// goes away.
    Server(ConnectionManager),
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Server(server) => server.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Server(server) => server.get_db(),
        }
    }
}

/// A connection that reconnects by itself (with backoff) when Redis goes away.
/// `blocking` connections carry blocking reads and get no response timeout: redis-rs's
/// default of 500 ms would cut every `BLOCK` read short.
pub async fn connect(name: &str, config: &RedisConnection, blocking: bool) -> Result<Redis> {
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

fn client(name: &str, config: &RedisConnection) -> Result<Client> {
    let scheme = if config.tls { "rediss" } else { "redis" };
    let url = match (&config.url, &config.host) {
        (Some(url), _) => url.clone(),
        (None, Some(host)) => format!("{scheme}://{host}:{}/", config.port.unwrap_or(6379)),
        _ => {
            return Err(Error::Invalid(format!(
                "connection '{name}': cluster connections (urls) are not supported by this release; use host/port or url"
            )))
        }
    };
    let url = if config.skip_verify && !url.contains('#') {
        format!("{url}#insecure")
    } else {
        url
    };
    let info = url
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
