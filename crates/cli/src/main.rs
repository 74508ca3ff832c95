//! The `batchbeam` binary: the one user-facing entry point.

mod batch;
mod batch_remote;
mod run;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Batch(cmd) => batch::run(cmd),
        Command::Run(args) => async_main(run::run(args)),
        Command::Resume(args) => async_main(run::resume(args)),
        Command::Sessions(args) => async_main(run::sessions(args)),
        Command::Cost(cmd) => async_main(run::cost(cmd)),
        Command::Sim(args) => async_main(sim::run(args)).map(|()| ExitCode::SUCCESS),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
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
