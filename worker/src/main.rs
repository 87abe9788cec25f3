//! redsink-worker: the process that feeds change events into Redis through the redsink
//! module's commands.
//!
//! This release ships the module; the worker's sources (Redis stream consumer groups,
//! PostgreSQL logical decoding) and RDI job files come next. Until then it checks its
//! arguments and says plainly that it has nothing to run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Keeps Redis in sync with change events, writing through the redsink module.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The worker's configuration: connections, sources, processors and the jobs folder.
    #[arg(short, long, value_name = "FILE", default_value = "config.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = std::fs::metadata(&cli.config) {
        eprintln!(
            "redsink-worker: cannot read {}: {error}",
            cli.config.display()
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "redsink-worker {}: sources and jobs are not part of this release yet; \
         the redsink module's commands can be used directly (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::FAILURE
}
