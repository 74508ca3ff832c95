//! The whole stack a beam search runs on, assembled once from [`Settings`]: the process's one
//! [`Database`] (SQLite, or PostgreSQL shared by several processes), the API client (or an
//! in-process openai-sim when there is no key), the batch job manager, the batch queue and the
//! request cache on that database, and the [`ProviderFactory`] over them. `batchbeam run` and `batchbeam
//! serve` both start here, so that neither names the queue or the client; the server asks the
//! stack, not the queue, about the batches its jobs wait on.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use batch_client::{BatchJobManager, ClientConfig, JobState, OpenAiClient, RetryHook};
use batch_queue::{BatchRequestQueue, RequestId};

use crate::{
    BatchTransport, ConfigError, Database, ProviderFactory, ProvidersConfig, RequestCache,
    Settings, Transport,
};

/// How to assemble the stack, beyond the settings.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Run on an in-process openai-sim even with a key (`--sim`).
    pub sim: bool,
    /// Simulated time runs this many times faster (with the simulator).
    pub sim_time_scale: f64,
    /// Send every operation to the Batch API (`--batch`: `BATCH_API_ENABLED` for this run).
    pub batch: bool,
    /// Open the batch manager and queue even when no operation is configured for batch (the
    /// server, whose jobs choose their tiers).
    pub always_queue: bool,
    /// Told of every retried API call (the CLI prints them); `None` to stay quiet.
    pub retry_notice: Option<RetryHook>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            sim: false,
            sim_time_scale: 120.0,
            batch: false,
            always_queue: false,
            retry_notice: None,
        }
    }
}

/// What can stop the stack from opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// A setting or option cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The in-process simulator did not start (or the `simulated` feature is off).
    #[error("starting openai-sim: {0}")]
    Sim(String),
    /// The HTTP client, the batch manager or its database.
    #[error("opening {path}: {source}")]
    Open {
        /// The database: the SQLite file, or the PostgreSQL URL without its password.
        path: PathBuf,
        /// What failed.
        #[source]
        source: batch_client::Error,
    },
    /// The API client could not be built.
    #[error("API client: {0}")]
    Client(#[source] batch_client::Error),
    /// The batch queue could not open or resume.
    #[error("batch queue: {0}")]
    Queue(#[source] batch_queue::Error),
    /// The request cache could not open its table.
    #[error("{0}")]
    Cache(#[source] crate::ProviderError),
}

/// The batch side of the stack, when it is open.
#[derive(Debug, Clone)]
struct BatchSide {
    manager: Arc<BatchJobManager>,
    transport: Arc<BatchTransport>,
}

/// The stack: the factory, the process's one database (which the session and job stores use
/// too), and the simulator kept alive while it runs.
pub struct Stack {
    /// Providers for every tier, configured as the settings (and `--batch`) say.
    pub factory: ProviderFactory,
    /// The process's database, SQLite or PostgreSQL: the batch records, the queue and the
    /// request cache are in it, and the stores above keep their tables there too (a clone
    /// shares the pool).
    pub database: Database,
    /// Whether the models are openai-sim's (nothing is billed), and why.
    pub simulated: Option<&'static str>,
    /// `BATCH_API_ENABLED` as configured (before `--batch`).
    pub batch_configured: bool,
    /// The simulator's base URL (`…/v1`), when it runs in process.
    pub sim_url: Option<String>,
    batch: Option<BatchSide>,
    #[cfg(feature = "simulated")]
    _sim: Option<openai_sim::SimHandle>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("simulated", &self.simulated)
            .field("batch", &self.batch.is_some())
            .finish_non_exhaustive()
    }
}

/// A batch as the server shows it (no client type leaks out).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchInfo {
    /// OpenAI's batch id, once created.
    pub batch_id: Option<String>,
    /// batchbeam's record id (`bb_…`).
    pub record_id: String,
    /// The record's state: `intent`, `uploaded`, `submitted`, `waiting_resubmit`, `ended`,
    /// `done`, `error`.
    pub state: String,
    /// OpenAI's last reported status (`validating`, `in_progress`, `completed`, ...).
    pub remote_status: Option<String>,
    /// Requests in it.
    pub total: u64,
    /// Requests answered with a 2xx.
    pub completed: u64,
    /// Requests answered with an error.
    pub failed: u64,
    /// Whether it is settled (done or in error): its requests are answered or failed.
    pub settled: bool,
}

/// One request's line in a finished batch's results (bodies are left out: an image is
/// megabytes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchLine {
    /// The request's custom id.
    pub custom_id: String,
    /// The HTTP status it was answered with, when it ran.
    pub status_code: Option<u16>,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// What a session put aside waits on: its calls still in flight and the batches carrying them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionWait {
    /// The call keys (`session/stage/call`) not answered yet.
    pub keys: Vec<String>,
    /// The batches carrying them (OpenAI's ids; the record id until the batch is created).
    pub batch_ids: Vec<String>,
}

impl Stack {
    /// Assembles the stack from `settings` and `options`.
    pub async fn open(settings: &Settings, options: StackOptions) -> Result<Stack, StackError> {
        let mut config = settings.providers.clone();
        let batch_configured = config.batch.enabled;
        if options.batch {
            config.batch.enabled = true;
        }
        let simulated = if options.sim {
            Some("--sim")
        } else {
            settings
                .openai
                .api_key
                .is_none()
                .then_some("OPENAI_API_KEY is not set")
        };
        #[cfg_attr(not(feature = "simulated"), allow(unused_mut))]
        let mut sim_url = None;
        #[cfg(feature = "simulated")]
        let mut sim_handle = None;
        let client: ClientConfig = if simulated.is_some() {
            if !(options.sim_time_scale.is_finite() && options.sim_time_scale > 0.0) {
                return Err(StackError::Sim(
                    "the simulated time scale must be more than zero".to_owned(),
                ));
            }
            #[cfg(feature = "simulated")]
            {
                let sim = openai_sim::spawn(
                    openai_sim::SimConfig::default()
                        .with_addr(([127, 0, 0, 1], 0).into())
                        .with_time_scale(options.sim_time_scale)
                        .with_seed(config.simulated_seed),
                )
                .await
                .map_err(|e| StackError::Sim(e.to_string()))?;
                // Batches on the simulator finish in seconds: poll accordingly.
                config.batch.poll_interval_ms = config.batch.poll_interval_ms.min(200);
                let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-sim"));
                sim_url = Some(sim.base_url());
                sim_handle = Some(sim);
                client
            }
            #[cfg(not(feature = "simulated"))]
            {
                return Err(StackError::Sim(
                    "this build has no simulator (the `simulated` feature of providers)".to_owned(),
                ));
            }
        } else {
            let mut client = settings.client_config()?;
            if let Some(hook) = options.retry_notice.clone() {
                client = client.with_retry_notice(hook);
            }
            client
        };
        let data_dir = &settings.data.files;
        let open_error = |source| StackError::Open {
            path: PathBuf::from(settings.data.database_shown()),
            source,
        };
        // One pool per process: every store below (and above) is built on it.
        let connections = settings.data.connections;
        let database = match &settings.data.postgres {
            Some(url) => Database::postgres(url.expose(), connections).await,
            None => Database::sqlite_pooled(&settings.data.db, connections).await,
        }
        .map_err(open_error)?;
        let batch_used = options.always_queue
            || config.batch.hybrid_mode
            || crate::Operation::ALL
                .iter()
                .any(|op| config.tier_for(*op) == crate::Tier::Batch);
        let mut factory = ProviderFactory::new(config.clone()).with_client(client.clone());
        let batch = if batch_used {
            // Leases under a fresh name per process (not the instance id): a create sent just
            // before a crash may land after a restart, and only the create's bound kept on the
            // lease keeps the restarted process from creating that shard's batch again
            // (docs/scaling.md). Record leases last `BATCHBEAM_LEASE_SECS`, renewed while held.
            let mut manager_config = config.manager_config(data_dir);
            manager_config.lease = settings.server.lease;
            let manager = BatchJobManager::on(
                OpenAiClient::new(client.clone()).map_err(StackError::Client)?,
                database.clone(),
                manager_config,
            )
            .await
            .map_err(open_error)?;
            let manager = Arc::new(manager);
            let queue = Arc::new(
                BatchRequestQueue::new(
                    manager.clone(),
                    OpenAiClient::new(client).map_err(StackError::Client)?,
                    config.queue_config(),
                )
                .await
                .map_err(StackError::Queue)?,
            );
            queue.resume().await.map_err(StackError::Queue)?;
            let transport = Arc::new(BatchTransport::new(queue, config.batch.mode));
            factory = factory.with_batch(transport.clone() as Arc<dyn Transport>);
            Some(BatchSide { manager, transport })
        } else {
            None
        };
        // The request cache, in the same database; its images beside the batch files.
        if config.cache {
            let cache = RequestCache::on(database.clone(), data_dir.join("request-cache"))
                .await
                .map_err(StackError::Cache)?;
            factory = factory.with_cache(cache);
        }
        Ok(Stack {
            factory,
            database,
            simulated,
            batch_configured,
            sim_url,
            batch,
            #[cfg(feature = "simulated")]
            _sim: sim_handle,
        })
    }

    /// A factory on the same connections with `config` (a job's own tiers).
    pub fn factory_for(&self, config: ProvidersConfig) -> ProviderFactory {
        self.factory.clone().with_config(config)
    }

    /// Whether the batch side (manager and queue) is open.
    pub fn has_batches(&self) -> bool {
        self.batch.is_some()
    }

    /// What session `session` waits on: its keyed batch calls stored and not answered yet,
    /// and the batches carrying them. Ask it while the session runs (after its
    /// `BatchSubmitted`): the keys are those its running calls hold.
    pub async fn session_wait(&self, session: &str) -> Result<SessionWait, StackError> {
        let Some(side) = &self.batch else {
            return Ok(SessionWait::default());
        };
        let prefix = format!("{session}/");
        let mut keys = side.transport.waiting_keys(&prefix);
        keys.sort();
        let ids: Vec<RequestId> = keys.iter().map(|k| RequestId::for_key(k)).collect();
        // A request another session's flush has claimed but not yet submitted has no record
        // for a moment: ask again briefly so that the batches are named.
        let mut in_flight = Vec::new();
        for _ in 0..100 {
            in_flight = side
                .transport
                .queue()
                .in_flight(&ids)
                .await
                .map_err(StackError::Queue)?;
            if in_flight.iter().all(|(_, record)| record.is_some()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let unsettled: Vec<&RequestId> = in_flight.iter().map(|(id, _)| id).collect();
        let keys: Vec<String> = keys
            .into_iter()
            .zip(ids.iter())
            .filter(|(_, id)| unsettled.contains(id))
            .map(|(k, _)| k)
            .collect();
        let mut records: Vec<String> = Vec::new();
        for (_, record) in in_flight {
            if let Some(r) = record
                && !records.contains(&r)
            {
                records.push(r);
            }
        }
        let mut batch_ids = Vec::new();
        for r in records {
            let id = match side.manager.record(&r).await {
                Ok(rec) => rec.batch_id.unwrap_or(r),
                Err(_) => r,
            };
            batch_ids.push(id);
        }
        Ok(SessionWait { keys, batch_ids })
    }

    /// How many of these call keys are not answered yet (neither done nor failed).
    pub async fn unsettled(&self, keys: &[String]) -> Result<usize, StackError> {
        let Some(side) = &self.batch else {
            return Ok(0);
        };
        let ids: Vec<RequestId> = keys.iter().map(|k| RequestId::for_key(k)).collect();
        let left = side
            .transport
            .queue()
            .in_flight(&ids)
            .await
            .map_err(StackError::Queue)?;
        Ok(left.len())
    }

    /// Of these call keys, those not answered yet (neither done nor failed), for many sessions
    /// at once: one indexed read per 500 keys.
    pub async fn unsettled_among(&self, keys: &[String]) -> Result<HashSet<String>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(HashSet::new());
        };
        let by_id: HashMap<RequestId, &String> =
            keys.iter().map(|k| (RequestId::for_key(k), k)).collect();
        let ids: Vec<RequestId> = by_id.keys().cloned().collect();
        let open = side
            .transport
            .queue()
            .unsettled_among(&ids)
            .await
            .map_err(StackError::Queue)?;
        Ok(open
            .iter()
            .filter_map(|id| by_id.get(id).map(|k| (*k).clone()))
            .collect())
    }

    /// Many batches at once, each by OpenAI's id or batchbeam's record id, keyed by the id
    /// asked for: a few set-based reads without the records' manifests (an id only an earlier
    /// attempt of a record had is looked up on its own). Ids the database does not hold are
    /// left out.
    pub async fn batches_among(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, BatchInfo>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(HashMap::new());
        };
        let statuses = side
            .manager
            .statuses(ids)
            .await
            .map_err(StackError::Client)?;
        let mut found = HashMap::with_capacity(ids.len());
        for s in statuses {
            let info = info_from(
                &s.id,
                s.batch_id.as_ref(),
                s.state,
                s.remote_status.as_ref(),
                s.request_counts,
            );
            if let Some(b) = &s.batch_id {
                found.insert(b.clone(), info.clone());
            }
            found.insert(s.id, info);
        }
        let asked: HashSet<&String> = ids.iter().collect();
        found.retain(|id, _| asked.contains(id));
        for id in ids {
            if !found.contains_key(id)
                && let Some(info) = self.batch(id).await?
            {
                found.insert(id.clone(), info);
            }
        }
        Ok(found)
    }

    /// Every change of a batch record's state or status and every record the queue settled,
    /// in any process on this database, as the record's id (PostgreSQL's `LISTEN`); a
    /// [`Notice::Missed`](crate::db::Notice::Missed) when the listening connection was lost.
    /// `None` on SQLite (one process, which polls) or without the batch side.
    pub async fn batch_notices(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<crate::db::Notice>>, StackError> {
        if self.batch.is_none() {
            return Ok(None);
        }
        self.database.notices().await.map_err(StackError::Client)
    }

    /// A batch by OpenAI's id or batchbeam's record id; `None` when the database has none.
    pub async fn batch(&self, id: &str) -> Result<Option<BatchInfo>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(None);
        };
        match side.manager.record(id).await {
            Ok(r) => Ok(Some(info_of(&r))),
            Err(batch_client::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(StackError::Client(e)),
        }
    }

    /// Every batch the database holds, newest first.
    pub async fn batches(&self) -> Result<Vec<BatchInfo>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(Vec::new());
        };
        let records = side.manager.list().await.map_err(StackError::Client)?;
        Ok(records.iter().map(info_of).collect())
    }

    /// A settled batch's lines (custom id, status, error), read from its files; `None` while
    /// it runs or when unknown.
    pub async fn batch_lines(&self, id: &str) -> Result<Option<Vec<BatchLine>>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(None);
        };
        let record = match side.manager.record(id).await {
            Ok(r) => r,
            Err(batch_client::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(StackError::Client(e)),
        };
        if record.state != JobState::Done {
            return Ok(None);
        }
        let results = side
            .manager
            .retrieve_results(&record.id)
            .await
            .map_err(StackError::Client)?;
        let mut lines = Vec::new();
        results
            .for_each_outcome(|line| {
                use batch_format::Outcome;
                let (status_code, error) = match &line.outcome {
                    Outcome::Succeeded { status, .. } => (Some(*status), None),
                    Outcome::HttpError { status, error, .. } => {
                        (Some(*status), error.message.clone())
                    }
                    Outcome::Failed { code, message } => (None, Some(format!("{code}: {message}"))),
                    _ => (None, None),
                };
                lines.push(BatchLine {
                    custom_id: line.custom_id.clone(),
                    status_code,
                    succeeded: line.outcome.is_success(),
                    error,
                });
            })
            .map_err(StackError::Client)?;
        Ok(Some(lines))
    }

    /// Asks OpenAI to cancel a batch (by OpenAI's id or the record id); what finished in it is
    /// kept and its unfinished requests fail or go to their fallback as the queue decides.
    pub async fn cancel_batch(&self, id: &str) -> Result<Option<BatchInfo>, StackError> {
        let Some(side) = &self.batch else {
            return Ok(None);
        };
        match side.manager.cancel(id).await {
            Ok(r) => Ok(Some(info_of(&r))),
            Err(batch_client::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(StackError::Client(e)),
        }
    }
}

fn info_of(r: &batch_client::JobRecord) -> BatchInfo {
    info_from(
        &r.id,
        r.batch_id.as_ref(),
        r.state,
        r.remote_status.as_ref(),
        r.request_counts,
    )
}

/// A batch as shown, from a record's fields (OpenAI's status as its API spells it).
fn info_from(
    record_id: &str,
    batch_id: Option<&String>,
    state: JobState,
    remote_status: Option<&batch_client::BatchStatus>,
    counts: batch_client::RequestCounts,
) -> BatchInfo {
    BatchInfo {
        batch_id: batch_id.cloned(),
        record_id: record_id.to_owned(),
        state: state.as_str().to_owned(),
        remote_status: remote_status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        total: counts.total,
        completed: counts.completed,
        failed: counts.failed,
        settled: matches!(state, JobState::Done | JobState::Error),
    }
}
