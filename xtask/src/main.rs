//! Project automation for batchbeam: `cargo xtask ci`, `phase N`, `bench`, `demo` and the tidy
//! checks. xtask builds from a few small crates; what needs the workspace's own crates runs in
//! `xtask-worker` (xtask/worker).

mod bench;
mod bench_queue;
mod bench_scale;
mod bench_session;
mod browser;
mod chaos;
mod ci;
mod conformance;
mod demo;
mod deny;
mod http;
mod postgres;
mod serve_process;
mod sim_process;
mod tools;
mod util;

#[cfg(test)]
mod tidy;

use clap::{Parser, Subcommand};

/// batchbeam's project automation.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything CI checks, in order, stopping at the first failure.
    Ci,
    /// Run one phase's integration suite (1 core, 2 queue and providers, 3 orchestrator, 4 advanced).
    Phase {
        /// The phase number, 1 to 4.
        #[arg(value_parser = clap::value_parser!(u8).range(1..=4))]
        n: u8,
    },
    /// `cargo deny`: licences, bans, sources and RustSec advisories (see docs/development.md).
    Deny,
    /// Benchmarks, reported as ratios against a baseline measured in the same run.
    Bench {
        /// Which benchmark: `format` (batch-format against Python), `queue` (BatchRequestQueue
        /// throughput), `session` (the guide's session per plan, batch against standard), `scale`
        /// (10,000 parked sessions on two instances over PostgreSQL).
        #[arg(default_value = "format")]
        what: String,
        /// `scale` only: park at most this many sessions (`--sessions 1000` runs the first
        /// step alone).
        #[arg(long, value_name = "N")]
        sessions: Option<usize>,
        /// `scale` only: each instance's `--workers` (jobs run at once; the server's default
        /// when not given).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
    },
    /// The official `openai` Python SDK against `batchbeam sim` (scripts/conformance).
    Conformance,
    /// Run a command beside a throwaway PostgreSQL (`cargo xtask pg -- cargo test -p
    /// batch-client`): the store suites then run on PostgreSQL as well as SQLite.
    Pg {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Three `batchbeam serve` on one PostgreSQL and a faulty `batchbeam sim`, instances
    /// SIGKILLed at seeded moments; checks that every job finished and nothing ran twice.
    Chaos {
        /// Seeds the jobs, the kills and the simulator's faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// CI's size: 12 jobs, 5 kills.
        #[arg(long, conflicts_with = "long")]
        short: bool,
        /// The documented size: 50 jobs, 24 kills.
        #[arg(long)]
        long: bool,
        /// One instance on an SQLite file instead (SQLite takes one process).
        #[arg(long)]
        sqlite: bool,
        /// Stop (and fail) after this many seconds instead of the size's deadline.
        #[arg(long, value_name = "SECS")]
        deadline: Option<u64>,
    },
    /// Show what the batchbeam binary can do so far, end to end, on generated files.
    Demo,
    /// The dashboard in Debian's chromium (scripts/browser); screenshots in target/screenshots.
    Browser,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = util::project_root();
    match cli.command {
        Command::Ci => ci::run(&root),
        Command::Phase { n } => ci::phase(&root, n),
        Command::Deny => deny::run(&root),
        Command::Bench { what, .. } if what == "session" => bench_session::run(&root),
        Command::Bench {
            what,
            sessions,
            workers,
        } if what == "scale" => bench_scale::run(&root, sessions, workers),
        Command::Bench { what, .. } => bench::run(&root, &what),
        Command::Demo => demo::run(&root),
        Command::Chaos {
            seed,
            short,
            long,
            sqlite,
            deadline,
        } => {
            let size = match (short, long) {
                (true, _) => chaos::Size::Short,
                (_, true) => chaos::Size::Long,
                _ => chaos::Size::Normal,
            };
            chaos::run(&root, seed, size, sqlite, deadline)
        }
        Command::Pg { command } => postgres::with_server(&command),
        Command::Conformance => conformance::run(&root),
        Command::Browser => browser::run(&root),
    }
}
