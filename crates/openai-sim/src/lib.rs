//! openai-sim: a faithful local OpenAI server (Files, Batches and the synchronous model
//! endpoints) with simulated models, a simulated clock and injectable faults. It is batchbeam's
//! test double and offline default.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), openai_sim::Error> {
//! let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_time_scale(100.0)).await?;
//! println!("{}", sim.base_url()); // http://127.0.0.1:PORT/v1
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What it serves
//! - `POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`
//! - `POST/GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`
//! - `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`,
//!   `/v1/moderations`, `/v1/images/generations`, answered by [`models::Models`]
//! - `GET /sim/stats`, `GET /sim/stats/requests`, `POST /sim/clock/advance?seconds=N`, `POST /sim/faults` (no auth)
//!
//! Objects, error bodies, ids and headers follow `shared/openai/observed-behaviour.md`.
//! A batch moves `validating` -> `in_progress` -> `finalizing` -> `completed` (or `failed`,
//! `expired`, `cancelling` -> `cancelled`) on a clock that runs [`SimConfig::time_scale`] times
//! faster than real time; [`BatchTiming`] sets how long each phase takes.

mod api;
mod batch;
mod clock;
mod config;
mod error;
mod faults;
mod files;
mod ids;
mod jsonfmt;
mod limits;
pub mod models;
mod refused;
mod server;
mod state;
mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{BatchTiming, SimConfig};
pub use error::{Error, Result};
pub use faults::{BatchOutcome, BatchOutcomeRule, FaultConfig, FaultKind, FaultRule};
pub use limits::Limits;
pub use refused::RefusedPort;
pub use stats::{BatchStats, RequestStats, StatsSnapshot};

use state::{Sim, lock};

/// A running simulator. Dropping it stops the server; [`SimHandle::shutdown`] also waits.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the `base_url` for an OpenAI client.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for the `/sim` admin routes.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory holding uploaded and produced files.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.sim.data_dir
    }

    /// Current simulated Unix time in seconds.
    pub fn now(&self) -> i64 {
        self.sim.now().floor() as i64
    }

    /// Jumps simulated time forward by `seconds` and brings every batch up to date.
    pub async fn advance_clock(&self, seconds: f64) {
        let sim = Arc::clone(&self.sim);
        let _ = tokio::task::spawn_blocking(move || {
            sim.clock.advance(seconds);
            sim.advance();
        })
        .await;
    }

    /// The counters `GET /sim/stats` serves.
    pub async fn stats(&self) -> StatsSnapshot {
        let sim = Arc::clone(&self.sim);
        tokio::task::spawn_blocking(move || sim.stats())
            .await
            .unwrap_or_default()
    }

    /// Per custom id, what the batches ran and billed (same as `GET /sim/stats/requests`).
    pub async fn request_stats(&self) -> BTreeMap<String, RequestStats> {
        let sim = Arc::clone(&self.sim);
        tokio::task::spawn_blocking(move || sim.request_stats())
            .await
            .unwrap_or_default()
    }

    /// Replaces the fault rules; counts of faults already injected are kept.
    pub fn set_faults(&self, faults: FaultConfig) {
        lock(&self.sim.faults).replace(faults, self.sim.config.seed);
    }

    /// Stops the server and its background task, and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds [`SimConfig::addr`] and serves in the background.
pub async fn spawn(config: SimConfig) -> Result<SimHandle> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.addr.to_string(),
        source,
    })?;
    let sim = Arc::new(Sim::new(config)?);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(listener, Arc::clone(&sim), stop.clone()));
    Ok(SimHandle {
        addr,
        sim,
        stop,
        task: Some(task),
    })
}

/// Serves on `listener` until the process ends (or `shutdown` resolves, see
/// [`serve_with_shutdown`]).
pub async fn serve(listener: TcpListener, config: SimConfig) -> Result<()> {
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let sim = Arc::new(Sim::new(config)?);
    let stop = CancellationToken::new();
    let server = run(listener, sim, stop.clone());
    tokio::select! {
        _ = server => {}
        _ = shutdown => stop.cancel(),
    }
    Ok(())
}

async fn run(listener: TcpListener, sim: Arc<Sim>, stop: CancellationToken) {
    let ticker = tokio::spawn(tick(Arc::clone(&sim), stop.clone()));
    let limits = sim.config.limits.clone();
    server::run(listener, api::router(Arc::clone(&sim)), limits, stop).await;
    let _ = ticker.await;
}

/// The one background task: advances every batch on a fixed real-time tick.
async fn tick(sim: Arc<Sim>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(sim.config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {
                let s = Arc::clone(&sim);
                let _ = tokio::task::spawn_blocking(move || s.advance()).await;
            }
        }
    }
}
