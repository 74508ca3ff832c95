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
pub use store::{Claim, DbJobStore, JobRow, JobStatus, JobStore, Watched};

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
    /// How often the waiter looks at what changed: the batch records announced by any
    /// instance (PostgreSQL), the jobs parked here; on SQLite, every waiting job.
    pub wait_poll: Duration,
    /// How often, on PostgreSQL, the waiter looks at every waiting job even when nothing was
    /// announced: the safety net under the announcements.
    pub wait_sweep: Duration,
    /// This instance's name as the owner of the jobs it runs (`--instance-id`).
    pub instance_id: String,
    /// How long a job stays this instance's without a renewal; then another instance on the
    /// same database takes it over.
    pub lease: Duration,
    /// How often a running job's lease is renewed, and the database scanned for jobs to
    /// claim (queued, or whose owner's lease expired); also how soon a cancel posted to
    /// another instance stops a job running here. Well inside `lease`.
    pub heartbeat: Duration,
    /// Takeovers after which a job is failed rather than taken over again.
    pub max_takeovers: u32,
}

/// A new instance name: `srv_` and a lowercase ULID.
pub fn new_instance_id() -> String {
    format!("srv_{}", ulid::Ulid::new().to_string().to_lowercase())
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
            wait_sweep: Duration::from_secs(15),
            instance_id: s.instance_id.clone().unwrap_or_else(new_instance_id),
            lease: s.lease,
            heartbeat: s.lease / 3,
            max_takeovers: 3,
        }
    }

    /// Refuses to listen beyond loopback without a token, or a heartbeat not inside the lease.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() || self.heartbeat >= self.lease {
            return Err(format!(
                "the lease renewal every {:?} must be shorter than the lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
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
    /// Opens the stores on the stack's database, starts the workers, the waiter and the
    /// scanner, which claims every job it may (queued ones, and those of an instance whose
    /// lease expired: a job that was running resumes from its checkpoints; one waiting stays
    /// parked until its batches are settled).
    pub async fn start(stack: Stack, config: ServerConfig) -> Result<Server, Error> {
        if !stack.has_batches() {
            return Err(Error::Store(
                "the server needs the batch side of the stack (always_queue)".to_owned(),
            ));
        }
        config.check().map_err(Error::Store)?;
        let db = stack.database.clone();
        let jobs: Arc<dyn JobStore> = Arc::new(DbJobStore::new(db.clone()).await?);
        let sessions = SessionStore::on(db).await?;
        let (app, rx) = jobs::App::new(Arc::new(stack), jobs.clone(), sessions, &config);
        jobs::spawn_workers(&app, rx);
        jobs::scan(&app).await?;
        let router = api::router(app.clone(), &config);
        Ok(Server {
            app,
            router,
            head_timeout: config.request_timeout,
        })
    }

    /// This instance's name as a job owner.
    pub fn instance_id(&self) -> &str {
        &self.app.owner
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

    /// Stops the workers, the waiter and the scanner (jobs stay resumable: each running job
    /// goes back to the queue as its worker stops).
    pub fn stop(&self) {
        self.app.stop();
    }

    /// Stops everything at once, as a crashed process would: no job is given back, and no
    /// lease renewed. Another instance takes its jobs over when their leases expire (tests of
    /// takeovers).
    pub fn kill(&self) {
        self.app.kill();
    }
}
