//! `batchbeam sim`: runs openai-sim standalone, for demos, scripts and offline runs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use openai_sim::{FaultConfig, SimConfig};

/// Serve a local OpenAI-compatible API (Files, Batches, chat, images) with simulated models.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8787")]
    addr: SocketAddr,
    /// Simulated time runs this many times faster than real time; 0 freezes it (it then moves
    /// only with `POST /sim/clock/advance?seconds=N`).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Faults to inject: a TOML file (JSON when it ends in .json); see docs/openai-sim.md.
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Seed for the simulated models, output order and faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to keep uploaded and produced files (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Accept only this API key (repeat for several); by default any non-empty key.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Print the listen address as one JSON line (`{"addr": …, "base_url": …}`) instead of text.
    #[arg(long)]
    json: bool,
}

/// Starts the simulator, prints `openai-sim listening on http://ADDR/v1` (or, with `--json`,
/// `{"addr":"ADDR","base_url":"http://ADDR/v1"}`) and serves until Ctrl-C (or SIGTERM).
pub(crate) async fn run(args: SimArgs) -> anyhow::Result<()> {
    let mut config = SimConfig::default()
        .with_addr(args.addr)
        .with_time_scale(args.time_scale)
        .with_seed(args.seed);
    if let Some(path) = &args.faults {
        config = config.with_faults(FaultConfig::from_file(path)?);
    }
    if let Some(dir) = args.data_dir {
        config = config.with_data_dir(dir);
    }
    if !args.api_keys.is_empty() {
        config = config.with_api_keys(args.api_keys);
    }
    let sim = openai_sim::spawn(config)
        .await
        .context("starting openai-sim")?;
    {
        let mut out = std::io::stdout().lock();
        if args.json {
            let line = serde_json::json!({
                "addr": sim.addr().to_string(),
                "base_url": sim.base_url(),
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "openai-sim listening on {}", sim.base_url())?;
        }
        out.flush()?;
    }
    stop_signal().await?;
    sim.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one (what `kill` and process supervisors send).
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
