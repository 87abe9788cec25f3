//! Connections from the configuration: host/port or URL, user, password, database, TLS.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};

use crate::config::RedisConnection;
use crate::error::{Error, Result};

/// A connection that reconnects by itself (with backoff) when Redis goes away.
/// `blocking` connections carry blocking reads and get no response timeout: redis-rs's
/// default of 500 ms would cut every `BLOCK` read short.
pub async fn connect(
    name: &str,
    config: &RedisConnection,
    blocking: bool,
) -> Result<ConnectionManager> {
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
