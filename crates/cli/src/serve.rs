//! `batchbeam serve`: the job API, its workers and the WebSocket progress, on OpenAI (or,
//! without a key, on an in-process openai-sim), until SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use providers::{Settings, Stack, StackOptions};
use server::{Server, ServerConfig};

/// Arguments of `batchbeam serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Where to listen (BATCHBEAM_ADDR; default 127.0.0.1:8080). Without BATCHBEAM_API_TOKEN
    /// only a loopback address is allowed.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Run on an in-process openai-sim instead of OPENAI_BASE_URL (the default when
    /// OPENAI_API_KEY is not set).
    #[arg(long)]
    sim: bool,
    /// Simulated time runs this many times faster (with --sim), so batches finish in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "X")]
    sim_time_scale: f64,
    /// The database of jobs, sessions and batches: several instances on one PostgreSQL
    /// database (--database-url postgres://…, or DATABASE_URL) share the work.
    #[command(flatten)]
    db: crate::settings::DbArgs,
    /// The folder sessions write their images and session.json to (BATCHBEAM_SESSIONS).
    #[arg(long, value_name = "DIR")]
    sessions: Option<PathBuf>,
    /// Jobs run at once (BATCHBEAM_WORKERS; default 4). A job waiting on its batches holds none.
    #[arg(long, value_name = "N")]
    workers: Option<u32>,
    /// This instance's name as the owner of the jobs it runs (BATCHBEAM_INSTANCE_ID; default
    /// srv_ and a new ULID). Restarted under the same name, it resumes its jobs at once
    /// instead of after their leases expire.
    #[arg(long, value_name = "NAME")]
    instance_id: Option<String>,
}

/// `batchbeam serve`.
pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut flags = crate::settings::flags(&args.db, args.sessions.as_deref());
    if let Some(addr) = &args.addr {
        flags.push(("server.addr", addr.clone()));
    }
    if let Some(n) = args.workers {
        flags.push(("server.workers", n.to_string()));
    }
    if let Some(id) = &args.instance_id {
        flags.push(("server.instance_id", id.clone()));
    }
    let settings = Settings::load(&flags)?;
    let config = ServerConfig::from_settings(&settings);
    if let Err(problem) = config.check() {
        bail!("{problem}");
    }
    if (args.sim || settings.openai.api_key.is_none())
        && !(args.sim_time_scale.is_finite() && args.sim_time_scale > 0.0)
    {
        bail!("--sim-time-scale must be more than zero");
    }
    let stack = Stack::open(
        &settings,
        StackOptions {
            sim: args.sim,
            sim_time_scale: args.sim_time_scale,
            batch: false,
            always_queue: true,
            retry_notice: Some(crate::batch_remote::retry_printer()),
        },
    )
    .await?;
    if let Some(why) = stack.simulated {
        eprintln!(
            "simulated models ({why}): an in-process openai-sim answers and nothing is billed"
        );
    }
    if config.token.is_none() {
        eprintln!(
            "no BATCHBEAM_API_TOKEN: no authentication, so listening on loopback only ({})",
            config.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("listening on {}", config.addr))?;
    let addr = listener.local_addr()?;
    let server = Server::start(stack, config).await?;
    eprintln!(
        "batchbeam serve: http://{addr}/ (API under /api, health at /health); instance {}; {} \
         workers; database {}",
        server.instance_id(),
        settings.server.workers,
        settings.data.database_shown()
    );
    server.serve(listener, shutdown_signal()).await?;
    eprintln!("stopped; unfinished jobs resume at the next start");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
