//! `batchbeam serve`: the guide's job API over HTTP (`POST /api/beam-search`, `GET
//! /api/job/{jobId}`, ...), jobs kept in the database and run by a bounded pool of workers
//! (a batch-mode job waiting on its batches holds none), and live progress over WebSocket.
//! See `docs/server.md`.
//!
//! The server sees the models only through providers' [`Stack`] and the orchestrator: it names
//! neither the batch queue nor the HTTP client.

pub mod api;
pub mod dashboard;
mod error;
pub mod events;
pub mod jobs;
mod listen;
mod metrics;
mod openapi;
pub mod store;
pub mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::{Pricing, SessionStore};
use providers::{ApiToken, Settings, Stack};
use tokio::net::TcpListener;

pub use error::{ApiError, Error, ErrorBody, ErrorObject};
pub use jobs::BeamSearchRequest;
pub use listen::serve;
pub use openapi::ApiDoc;
pub use store::{JobRow, JobStatus, JobStore, SqliteJobStore};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bearer token clients must send; `None`: no auth, loopback only.
    pub token: Option<ApiToken>,
    /// Jobs run at once.
    pub workers: usize,
    /// The largest request body read.
    pub body_limit: usize,
    /// Slower requests are answered 408; a request head (the line and headers) not all in by
    /// then closes the connection.
    pub request_timeout: Duration,
    /// Where sessions write their folders.
    pub sessions_dir: PathBuf,
    /// Prices.
    pub pricing: Pricing,
    /// How often waiting jobs' batches are looked at.
    pub wait_poll: Duration,
}

impl ServerConfig {
    /// From the settings (`BATCHBEAM_ADDR`, `BATCHBEAM_API_TOKEN`, `BATCHBEAM_WORKERS`, ...).
    pub fn from_settings(settings: &Settings) -> ServerConfig {
        let s = &settings.server;
        ServerConfig {
            addr: s.addr,
            token: s.api_token.clone(),
            workers: s.workers,
            body_limit: s.body_limit_bytes,
            request_timeout: s.request_timeout,
            sessions_dir: settings.data.sessions.clone(),
            pricing: Pricing::builtin(),
            wait_poll: Duration::from_millis(500),
        }
    }

    /// Refuses to listen beyond loopback without a token.
    pub fn check(&self) -> Result<(), String> {
        if self.token.is_none() && !self.addr.ip().is_loopback() {
            return Err(format!(
                "{} is not a loopback address: set BATCHBEAM_API_TOKEN to listen there",
                self.addr
            ));
        }
        Ok(())
    }
}

/// A running server: its router, its workers and its state.
pub struct Server {
    app: Arc<jobs::App>,
    router: axum::Router,
    /// How long a request's head may take to arrive (the request timeout).
    head_timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the stores on the stack's database, starts the workers and the waiter, and puts
    /// every unfinished job back to work (a job that was running resumes from its
    /// checkpoints; one waiting stays parked until its batches are settled).
    pub async fn start(stack: Stack, config: ServerConfig) -> Result<Server, Error> {
        let pool = stack.pool.clone().ok_or_else(|| {
            Error::Store("the server needs the batch side of the stack (always_queue)".to_owned())
        })?;
        let jobs: Arc<dyn JobStore> = Arc::new(SqliteJobStore::new(pool.clone()).await?);
        let sessions = SessionStore::new(pool).await?;
        let (app, rx) = jobs::App::new(
            Arc::new(stack),
            jobs.clone(),
            sessions,
            config.pricing.clone(),
            config.sessions_dir.clone(),
            config.workers.max(1),
            config.wait_poll,
        );
        for mut row in jobs
            .with_status(&[JobStatus::Queued, JobStatus::Running])
            .await?
        {
            if row.status == JobStatus::Running {
                row.status = JobStatus::Queued;
                row.owner = None;
                row.lease_until = None;
                row.updated_at_ms = providers::now_ms();
                jobs.save(&row).await?;
            }
            app.enqueue(&row.id);
        }
        jobs::spawn_workers(&app, rx);
        let router = api::router(app.clone(), &config);
        Ok(Server {
            app,
            router,
            head_timeout: config.request_timeout,
        })
    }

    /// The router (for tests, or to serve on a listener of one's own).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, then stops the workers (jobs stay
    /// resumable: a running one goes back to the queue, a waiting one stays parked).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let app = self.app.clone();
        serve(listener, self.router, self.head_timeout, async move {
            shutdown.await;
            app.stop();
        })
        .await;
        self.app.stop();
        Ok(())
    }

    /// Stops the workers and the waiter.
    pub fn stop(&self) {
        self.app.stop();
    }
}
