//! redsink-worker: the process that feeds change events into Redis through the redsink
//! module's commands.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use redsink_worker::config::{Config, Plugin, Source};
use redsink_worker::job;
use tracing_indicatif::filter::{hide_indicatif_span_fields, IndicatifFilter};
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Every change is a few dozen small allocations (its row, its values, its commands):
/// mimalloc serves them for less CPU than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps Redis in sync with change events, writing through the redsink module.
///
/// Reads Redis streams through consumer groups (Debezium change events or plain JSON),
/// or PostgreSQL tables by logical decoding (pgoutput or wal2json), and applies RDI job
/// files to them. Passwords and other secrets can come from the
/// environment: `${NAME}` in any value of the configuration is replaced by `$NAME`.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The worker's configuration: connections, sources, processors and the jobs folder.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "config.yaml",
        global = true
    )]
    config: PathBuf,

    /// Check the configuration and every job file (expressions compiled), print what the
    /// worker would do, and exit: 0 if all is well.
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a job does with one event, offline: no Redis, no configuration. Prints
    /// the event as read, each transform's row, and the writes as redis-cli commands.
    Try {
        /// The job file (RDI's format).
        job: PathBuf,
        /// The event: a Debezium change event (with or without its schema envelope) or a
        /// plain row, as JSON.
        event: PathBuf,
    },
    /// Show what each source has left to do — per stream the consumer group's lag,
    /// pending entries and the age of the oldest, dead letters; per PostgreSQL source its
    /// slot and snapshot; each source's last error — and whether each connection has the
    /// redsink module. Reads Redis and PostgreSQL only: it works while the worker runs
    /// elsewhere.
    Status {
        /// JSON for scripts instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter streams: list their letters, or put letters back where they came
    /// from once their cause is fixed.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// Each dead letter: its id, source, place there, deliveries, and why.
    List {
        /// Only this source's letters: its dead-letter stream, its stream, or
        /// `postgres:<server_name>`.
        stream: Option<String>,
        /// JSON for scripts instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Puts dead letters back on the stream they came from (a PostgreSQL source's on the
    /// stream a redis-stream source with the same jobs reads), removing each as it is
    /// re-queued: run twice, it re-queues nothing twice.
    Replay {
        /// Only this source's letters (as for `list`).
        stream: Option<String>,
        /// The letters to replay, by id (repeatable).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Every letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// An operator's command (`status`, `dlq`), run to its report.
fn operate(
    command: &Command,
    config: &Config,
    jobs: Vec<job::Job>,
) -> redsink_worker::Result<String> {
    let jobs: Vec<Arc<job::Job>> = jobs.into_iter().map(Arc::new).collect();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        redsink_worker::Error::Invalid(format!("cannot start the async runtime: {e}"))
    })?;
    runtime.block_on(async {
        match command {
            Command::Status { json: true } => {
                let status = redsink_worker::status::status(config, &jobs).await?;
                Ok(serde_json::to_string_pretty(&status).unwrap_or_default() + "\n")
            }
            Command::Status { json: false } => {
                Ok(redsink_worker::status::status(config, &jobs).await?.table())
            }
            Command::Dlq { action } => dead_letters(action, config, &jobs).await,
            Command::Try { job, event } => try_job(job, event),
        }
    })
}

/// A command's report on stdout, or the reason it failed on stderr.
fn print_report(report: redsink_worker::Result<String>) -> ExitCode {
    match report {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `dlq list` and `dlq replay`: their report.
async fn dead_letters(
    action: &DlqAction,
    config: &Config,
    jobs: &[Arc<job::Job>],
) -> redsink_worker::Result<String> {
    use redsink_worker::dlq;
    let stream = match action {
        DlqAction::List { stream, .. } | DlqAction::Replay { stream, .. } => stream.as_deref(),
    };
    if let DlqAction::Replay {
        ids, all: false, ..
    } = action
    {
        if ids.is_empty() {
            return Err(redsink_worker::Error::Invalid(
                "say which letters: --id ID (repeatable) or --all".into(),
            ));
        }
    }
    let mut cons = dlq::open_connections(config).await?;
    let sources = dlq::dead_letter_streams(config, jobs, &mut cons, stream).await?;
    if sources.is_empty() {
        return Err(redsink_worker::Error::Invalid(match stream {
            Some(stream) => {
                format!("no source of this configuration has the dead letters of '{stream}'")
            }
            None => "this configuration has no sources".into(),
        }));
    }
    let (mut report, mut listed) = (String::new(), Vec::new());
    for source in &sources {
        let Some(con) = cons.get_mut(&source.connection) else {
            continue;
        };
        let letters = dlq::letters(con, &source.dlq).await?;
        match action {
            DlqAction::List { json: true, .. } => listed.push(serde_json::json!({
                "dlq": source.dlq, "source": source.source, "letters": letters,
            })),
            DlqAction::List { .. } => {
                for letter in &letters {
                    report += &format!(
                        "{} {}  source {}  at {}  deliveries {}  error: {}\n",
                        source.dlq,
                        letter.id,
                        letter.source,
                        letter.at,
                        letter.deliveries,
                        letter.error
                    );
                }
            }
            DlqAction::Replay { ids, all, .. } => {
                // The source stream's own connection, where it is not the letters'.
                let mut elsewhere = source
                    .origin
                    .as_ref()
                    .filter(|(_, connection)| *connection != source.connection)
                    .and_then(|(_, connection)| cons.get(connection).cloned());
                let con = cons.get_mut(&source.connection).expect("opened above");
                for letter in letters.iter().filter(|l| *all || ids.contains(&l.id)) {
                    let stream =
                        dlq::replay_stream(source, letter, &config.processors.stream_prefix)?;
                    if source.origin.is_none() && !dlq::is_read(config, &stream, &source.connection)
                    {
                        return Err(redsink_worker::Error::Invalid(format!(
                            "no redis-stream source of this configuration reads {stream}, where \
                             {} goes back: add one (`- {{type: redis-stream, connection: {}, \
                             streams: \"{}*\"}}`) so that the replayed change is applied",
                            letter.id, source.connection, config.processors.stream_prefix
                        )));
                    }
                    match dlq::replay(con, elsewhere.as_mut(), &source.dlq, letter, &stream).await?
                    {
                        Some(id) => {
                            report +=
                                &format!("replayed {} {} → {stream} {id}\n", source.dlq, letter.id)
                        }
                        None => {
                            report += &format!(
                                "{} {}: replayed by another run meanwhile\n",
                                source.dlq, letter.id
                            )
                        }
                    }
                }
            }
        }
    }
    if let DlqAction::List { json: true, .. } = action {
        report = serde_json::to_string_pretty(&listed).unwrap_or_default() + "\n";
    } else if report.is_empty() {
        report = "no dead letters\n".into();
    }
    Ok(report)
}

/// `try`: the dry run's report.
fn try_job(job: &std::path::Path, event: &std::path::Path) -> redsink_worker::Result<String> {
    let job = job::Job::load(job)?;
    let event = std::fs::read_to_string(event)
        .map_err(|e| redsink_worker::Error::Read(event.to_owned(), e))?;
    redsink_worker::dry_run::dry_run(&job, &event)
}

/// Log lines on stderr (`RUST_LOG` filters them, default `info`), and progress bars for
/// long work (the PostgreSQL snapshot) when stderr is a terminal.
fn init_logging() {
    let bars = IndicatifLayer::new()
        .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(hide_indicatif_span_fields(DefaultFields::new()))
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(bars.get_stderr_writer()),
        )
        .with(bars.with_filter(IndicatifFilter::new(false)))
        .init();
}

fn main() -> ExitCode {
    init_logging();
    // Two crypto backends are built into rustls here (pgwire-replication brings
    // aws-lc-rs): every TLS connection uses ring, chosen once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let Some(Command::Try { job, event }) = &cli.command {
        return print_report(try_job(job, event));
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let jobs = match &config.jobs {
        Some(folder) => match job::load_folder(folder) {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::error!("{error}");
                return ExitCode::FAILURE;
            }
        },
        None => Vec::new(),
    };
    if let Some(command @ (Command::Status { .. } | Command::Dlq { .. })) = &cli.command {
        return print_report(operate(command, &config, jobs));
    }
    if cli.check {
        println!("configuration {}: ok", cli.config.display());
        for source in &config.sources {
            match source {
                Source::RedisStream(streams) => println!(
                    "source redis-stream on '{}': {:?}, group '{}'",
                    streams.connection, streams.streams, streams.group
                ),
                Source::Postgres(postgres) => println!(
                    "source postgres '{}': {}@{}:{}/{}{} tables {:?}, slot {}, {}",
                    postgres.server_name,
                    postgres.user,
                    postgres.host,
                    postgres.port,
                    postgres.database,
                    if postgres.tls { " (TLS)" } else { "" },
                    postgres.tables,
                    postgres.slot_name(),
                    match postgres.plugin {
                        Plugin::Pgoutput =>
                            format!("pgoutput, publication {}", postgres.publication_name()),
                        Plugin::Wal2json =>
                            format!("wal2json, polled every {} ms", postgres.poll_ms),
                    }
                ),
            }
        }
        for job in &jobs {
            let from_postgres = config.sources.iter().any(|source| {
                matches!(source, Source::Postgres(postgres)
                    if job.source.server_name.as_deref() == Some(postgres.server_name.as_str()))
            });
            let reads = if from_postgres {
                format!(
                    "postgres '{}' table {}.{}",
                    job.source.server_name.as_deref().unwrap_or_default(),
                    job.source.schema.as_deref().unwrap_or("public"),
                    job.source.table.as_deref().unwrap_or_default()
                )
            } else {
                job.streams(&config.processors.stream_prefix).join(", ")
            };
            println!(
                "job {} ({}): reads {reads}, {} transform(s), {} output(s)",
                job.name,
                job.file.display(),
                job.transforms.len(),
                job.outputs.len()
            );
            for note in &job.notes {
                println!("  note: {note}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(redsink_worker::run::run(config, jobs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
