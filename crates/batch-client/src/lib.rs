//! The OpenAI Files and Batches HTTP client and `BatchJobManager`: submit, poll, persist, resume
//! and retrieve batches.

mod client;
mod config;
mod error;
mod types;

pub use client::OpenAiClient;
pub use config::{ApiKey, ClientConfig, DEFAULT_BASE_URL, RetryPolicy};
pub use error::{ApiError, Error, OpenAiErrorBody, Result, SubmitStep};
pub use types::{
    Batch, BatchError, BatchErrors, BatchListQuery, BatchStatus, CreateBatchRequest, DeletedFile,
    FileListQuery, FileObject, List, RequestCounts,
};
mod store;
pub use store::{JobRecord, JobState, JobStore, SqliteStore, StatusChange};
mod manager;
pub use manager::{
    BatchJobManager, BatchResults, METADATA_ATTEMPT, METADATA_KEY, METADATA_RECORD, ManagerConfig,
    PollReport, PollerHandle, SubmitInput, upload_filename,
};
