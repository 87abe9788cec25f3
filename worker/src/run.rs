//! Running the worker: connect, detect the module, start the sources, stop gracefully.

use std::sync::Arc;

use redis::Value;
use tokio::sync::watch;

use crate::commands::Server;
use redsink_core::NEW_STREAMS_CHANNEL;

use crate::config::{Config, Connection, RedisConnection, RedisStreamSource, Source, Streams};
use crate::connect::{connect, Redis};
use crate::error::{Error, Result};
use crate::job::{Job, Target, Transform};
use crate::pipeline::{Pipeline, Routes};
use crate::source::postgres::PgSource;
use crate::source::redis_stream::{Announcements, StreamSource};

/// Runs every source until SIGINT or SIGTERM; each finishes the batch in hand first.
pub async fn run(config: Config, jobs: Vec<Job>) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing the batch in hand");
        let _ = stop.send(true);
    });
    if let Some(metrics) = &config.metrics {
        crate::metrics::serve(metrics.address)?;
    }
    let jobs: Vec<Arc<Job>> = jobs.into_iter().map(Arc::new).collect();
    let mut routes = Routes::default();
    for job in &jobs {
        for stream in job.streams(&config.processors.stream_prefix) {
            routes.add(stream, job);
        }
    }
    let mut tasks = Vec::new();
    for source in &config.sources {
        match source {
            Source::RedisStream(settings) => {
                let target = target_connection(&config, &jobs, &settings.connection)?;
                let Connection::Redis(source_connection) =
                    &config.connections[&settings.connection];
                let Connection::Redis(target_connection) = &config.connections[&target];
                let reader = connect(&settings.connection, source_connection, true).await?;
                let mut writer = connect(&target, target_connection, false).await?;
                let server = server_of(&mut writer, &target, &jobs).await?;
                // The streams' own commands (SCAN, XACK, XAUTOCLAIM…) go where the streams
                // are, which may not be where the jobs write.
                let streams = if target == settings.connection {
                    writer.clone()
                } else {
                    connect(&settings.connection, source_connection, false).await?
                };
                let source = StreamSource {
                    settings: settings.clone(),
                    processors: config.processors.clone(),
                    pipeline: Pipeline::new(
                        routes.clone(),
                        writer.clone(),
                        server,
                        &config.processors,
                        stopped.clone(),
                    ),
                    reader,
                    streams,
                    consumer: settings.consumer.clone().unwrap_or_else(default_consumer),
                    decoding: Default::default(),
                    announcements: announcements(&settings.connection, source_connection, settings)
                        .await,
                };
                tasks.push(tokio::spawn(source.run(stopped.clone())));
            }
            Source::Postgres(settings) => {
                let Some(Connection::Redis(target)) = config.connections.get(&settings.connection)
                else {
                    return Err(Error::Invalid(format!(
                        "source postgres '{}' writes to connection '{}', which is not defined under connections",
                        settings.server_name, settings.connection
                    )));
                };
                let mut writer = connect(&settings.connection, target, false).await?;
                let server = server_of(&mut writer, &settings.connection, &jobs).await?;
                let mut table_routes = Routes::default();
                for job in &jobs {
                    let source = &job.source;
                    let server = source.server_name.as_deref().unwrap_or_default();
                    let ours = if source.case_insensitive {
                        server.eq_ignore_ascii_case(&settings.server_name)
                    } else {
                        server == settings.server_name
                    };
                    if !ours {
                        continue;
                    }
                    if let Some(table) = &source.table {
                        let schema = source.schema.as_deref().unwrap_or("public");
                        table_routes.add(format!("{schema}.{table}"), job);
                    }
                }
                let source = PgSource {
                    settings: settings.clone(),
                    processors: config.processors.clone(),
                    pipeline: Pipeline::new(
                        table_routes,
                        writer.clone(),
                        server,
                        &config.processors,
                        stopped.clone(),
                    ),
                    writer,
                    columns: Default::default(),
                };
                tasks.push(tokio::spawn(source.run(stopped.clone())));
            }
        }
    }
    if tasks.is_empty() {
        return Err(Error::Invalid(
            "the configuration has no sources: nothing to do".into(),
        ));
    }
    for task in tasks {
        task.await
            .map_err(|e| Error::Invalid(format!("a source stopped abnormally: {e}")))??;
    }
    Ok(())
}

/// The connection the jobs write to: the one their outputs name, all the same.
pub(crate) fn target_connection(
    config: &Config,
    jobs: &[Arc<Job>],
    source_connection: &str,
) -> Result<String> {
    // Lookups read through the connection the jobs write to: the same one.
    let lookups = jobs
        .iter()
        .flat_map(|job| &job.transforms)
        .filter_map(|step| match step {
            Transform::Lookup(lookup) => Some(lookup.connection.as_str()),
            _ => None,
        });
    let mut names: Vec<&str> = jobs
        .iter()
        .flat_map(|job| job.outputs.iter().map(|o| o.connection.as_str()))
        .chain(lookups)
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [] => Ok(source_connection.to_owned()),
        [one] if config.connections.contains_key(*one) => Ok((*one).to_owned()),
        [one] => Err(Error::Invalid(format!(
            "jobs write to connection '{one}', which is not defined under connections"
        ))),
        several => Err(Error::Invalid(format!(
            "jobs write to and look up in several connections ({}); this release uses one",
            several.join(", ")
        ))),
    }
}

/// Whether the target has the module and JSON (said in the log); without the module, jobs
/// with device_stream outputs cannot run, and without either, jobs that nest rows.
async fn server_of(writer: &mut Redis, target: &str, jobs: &[Arc<Job>]) -> Result<Server> {
    let server = Server {
        module: has_command(writer, "SINK.HASH").await?,
        json: has_command(writer, "JSON.SET").await?,
        cluster: writer.is_cluster(),
    };
    let outputs = || jobs.iter().flat_map(|job| &job.outputs);
    if outputs().any(|o| matches!(o.target, Target::DeviceStream { .. })) && !server.module {
        return Err(Error::Invalid(format!(
            "connection '{target}': device_stream outputs need the redsink module, which this Redis has not loaded"
        )));
    }
    let nests = outputs().any(|o| matches!(o.target, Target::Nested(_)));
    if nests && !server.module && !server.json {
        return Err(Error::Invalid(format!(
            "connection '{target}': nest outputs merge rows into their parent's document, which needs JSON on the server (RedisJSON, or Redis 8) or the redsink module; this Redis has neither"
        )));
    }
    if nests || outputs().any(|o| matches!(o.target, Target::Document { .. })) {
        if server.json && server.module {
            tracing::info!(
                connection = target,
                "data_type json outputs: JSON documents, with SINK.JSON (JSON.SET and JSON.MERGE, versioned)"
            );
        } else if server.json {
            tracing::info!(
                connection = target,
                "data_type json outputs: JSON documents, with JSON.SET and JSON.MERGE (replays are not version-checked without the module)"
            );
        } else {
            tracing::warn!(
                connection = target,
                "data_type json outputs: this server has no JSON (RedisJSON or Redis 8): each document is written as JSON text in a string"
            );
        }
    }
    if server.module {
        tracing::info!(
            connection = target,
            "redsink module found: writing with its commands"
        );
    } else {
        tracing::warn!(
            connection = target,
            "no redsink module: writing with plain commands in MULTI/EXEC"
        );
    }
    Ok(server)
}

/// Whether `name` is a command of the server (SINK.HASH: the module is loaded).
async fn has_command(con: &mut Redis, name: &str) -> Result<bool> {
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query_async(con)
        .await?;
    Ok(matches!(info, Value::Array(items) if items.first().is_some_and(|item| *item != Value::Nil)))
}

/// This worker's name in consumer groups: the host name, the same across restarts, so
/// that a restarted worker takes up its own pending entries before anything new (give
/// each worker on one host its own `consumer`).
fn default_consumer() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "redsink-worker".into())
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The module's announcements of new streams, where a source reads by a pattern from one
/// server with the module; without them, new streams are found by the next scan.
async fn announcements(
    name: &str,
    config: &RedisConnection,
    settings: &RedisStreamSource,
) -> Option<Announcements> {
    if !matches!(settings.streams, Streams::Pattern(_)) || config.urls.is_some() || config.cluster {
        return None;
    }
    match crate::connect::subscribe(name, config, NEW_STREAMS_CHANNEL).await {
        Ok(subscription) => Some(Announcements {
            subscription,
            connection: name.to_owned(),
            config: config.clone(),
        }),
        Err(error) => {
            tracing::warn!("new streams will be found by scanning every 2 s: {error}");
            None
        }
    }
}
