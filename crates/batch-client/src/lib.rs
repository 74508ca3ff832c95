//! The OpenAI Files and Batches HTTP client and `BatchJobManager`: submit, poll, persist, resume
//! and retrieve batches, each submitted and billed exactly once.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//!
//! use batch_client::{ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient};
//! use batch_format::{BatchRequestBuilder, ChatOptions, Message};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The simulator or another compatible server; batchbeam builds both configurations from its
//! // settings (`providers::Settings`): this crate never reads the environment.
//! let key = ApiKey::new("sk-local");
//! let client = OpenAiClient::new(ClientConfig::new("http://127.0.0.1:8787/v1", key))?;
//! let config = ManagerConfig::new("batchbeam-files");
//! let manager = BatchJobManager::open(client, Path::new("batchbeam.db"), config).await?;
//!
//! let mut builder = BatchRequestBuilder::new();
//! builder.add_chat_completion_request(
//!     "critique-001",
//!     vec![Message::user("Critique this prompt: a red fox in snow.")],
//!     ChatOptions::new("gpt-4o-mini"),
//! )?;
//! let mut ids = Vec::new();
//! for shard in builder.build_batch("session-1")?.shards() {
//!     // Validated, stored as an intent, uploaded and created: our record id comes back.
//!     ids.push(manager.submit_batch(shard, BTreeMap::new()).await?);
//! }
//! manager.wait(&ids, |_records| {}).await?;
//! for id in &ids {
//!     let results = manager.retrieve_results(id).await?;
//!     println!("{id}: {} succeeded, unfinished: {:?}", results.succeeded, results.unfinished);
//!     results.for_each_outcome(|line| println!("{} -> {}", line.custom_id, line.outcome.is_success()))?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! After a crash, a new manager on the same database carries every unfinished record on with
//! [`BatchJobManager::resume`]; nothing is uploaded or created twice (see `docs/batch-client.md`).
//!
//! The HTTP client alone:
//!
//! ```
//! use batch_client::{ApiKey, ClientConfig, OpenAiClient, RetryPolicy};
//!
//! let config = ClientConfig::new("http://127.0.0.1:8787/v1", ApiKey::new("sk-local"))
//!     .with_project("proj_demo")
//!     .with_retry(RetryPolicy::default());
//! let client = OpenAiClient::new(config)?;
//! // The key never shows: not in Debug, logs, errors or the database.
//! assert!(!format!("{client:?} {:?}", client.config()).contains("sk-local"));
//! # Ok::<(), batch_client::Error>(())
//! ```

mod client;
mod config;
pub mod db;
mod error;
mod manager;
mod store;
mod types;

pub use client::OpenAiClient;
pub use config::{ApiKey, ClientConfig, DEFAULT_BASE_URL, RetryHook, RetryNotice, RetryPolicy};
pub use db::{Database, Dialect, Notice, RECORD_CHANNEL};
pub use error::{ApiError, BoxError, Error, OpenAiErrorBody, Result, SubmitStep};
pub use manager::{
    BatchJobManager, BatchResults, CheckedShard, METADATA_ATTEMPT, METADATA_KEY, METADATA_RECORD,
    ManagerConfig, PollReport, PollerHandle, SubmitInput, SubmitOptions, SubmitOutcome, now_ms,
    upload_filename,
};
pub use store::{
    DbStore, JobRecord, JobState, JobStore, PgStore, RecordStatus, SqliteStore, StatusChange,
    Submission, UnfinishedSummary,
};
pub use types::{
    Batch, BatchError, BatchErrors, BatchListQuery, BatchStatus, CreateBatchRequest, DeletedFile,
    FileListQuery, FileObject, List, RequestCounts,
};
