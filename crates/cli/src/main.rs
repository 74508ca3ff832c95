//! The `batchbeam` binary: the one user-facing entry point.

mod batch;
mod batch_remote;
mod run;
mod serve;
mod settings;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// batchbeam: an image-prompt beam search that sends every call that can wait through OpenAI's
/// Batch API at half price.
#[derive(Parser)]
#[command(name = "batchbeam", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines written to stderr from this level up (default: info for `serve` and `sim`,
    /// warn for the rest).
    #[arg(long, global = true, value_name = "LEVEL")]
    log: Option<LogLevel>,
}

/// How much the log on stderr says.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Writes the crates' log lines (a job taken over, a flush that failed and will be tried again,
/// a retry) to stderr, from `level` up.
fn install_log(level: LogLevel) {
    use tracing_subscriber::filter::LevelFilter;
    let max = match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    // Only fails when a subscriber is already installed, which leaves logging as it was.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(max)
        .try_init();
}

#[derive(Subcommand)]
enum Command {
    /// Work with Batch API input, output and error files.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Search for the best image prompt for an idea (a beam-search session).
    Run(run::RunArgs),
    /// Carry on a session that stopped (killed, crashed, or failed), from its checkpoints.
    Resume(run::ResumeArgs),
    /// List the sessions in the database, newest first.
    Sessions(run::SessionsArgs),
    /// Session cost reports and the prices they use.
    #[command(subcommand)]
    Cost(run::CostCommand),
    /// Run openai-sim, the local OpenAI-compatible server with simulated models.
    Sim(sim::SimArgs),
    /// Serve the job API (POST /api/beam-search, ...), its workers and live progress.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_) | Command::Sim(_));
    install_log(cli.log.unwrap_or(if serving {
        LogLevel::Info
    } else {
        LogLevel::Warn
    }));
    let outcome = match cli.command {
        Command::Batch(cmd) => batch::run(cmd),
        Command::Run(args) => async_main(run::run(args)),
        Command::Resume(args) => async_main(run::resume(args)),
        Command::Sessions(args) => async_main(run::sessions(args)),
        Command::Cost(cmd) => async_main(run::cost(cmd)),
        Command::Sim(args) => async_main(sim::run(args)).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => async_main(serve::serve(args)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: a cause whose text the message already holds (an
/// error that formats its source and also keeps it as its source) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs one async command on a multi-threaded tokio runtime.
pub(crate) fn async_main<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::other("Is a directory (os error 21)");
        /// Formats its source and keeps it as its source, as many errors do.
        #[derive(Debug)]
        struct Read(std::io::Error);
        impl std::fmt::Display for Read {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot read the pricing file p: {}", self.0)
            }
        }
        impl std::error::Error for Read {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Read(io())).context("loading prices");
        assert_eq!(
            error_text(&e),
            "loading prices: cannot read the pricing file p: Is a directory (os error 21)"
        );
        // A cause the message does not hold is still shown.
        let e = anyhow::Error::new(io()).context("opening batchbeam.db");
        assert_eq!(
            error_text(&e),
            "opening batchbeam.db: Is a directory (os error 21)"
        );
    }
}
