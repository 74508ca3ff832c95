//! `BatchRequestQueue`: accumulates requests from every session, groups them by endpoint and
//! model, submits them as batches at a stage barrier (`flush`), a size limit or a delay, and
//! hands each request its own result: from the batch, from a retry in a later batch, or from
//! the standard API when the batch could not carry it. Pending requests live in the same database
//! as batch-client's records (SQLite, or PostgreSQL shared by several instances), so a restart
//! loses nothing.
//!
//! ```no_run
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use batch_client::{ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient};
//! use batch_format::{ChatOptions, Message};
//! use batch_queue::{BatchRequestQueue, QueueConfig, QueuedRequest, Tier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ApiKey::new("sk-local");
//! let client = OpenAiClient::new(ClientConfig::new("http://127.0.0.1:8787/v1", key))?;
//! let config = ManagerConfig::new("batchbeam-files");
//! let manager = BatchJobManager::open(client.clone(), Path::new("batchbeam.db"), config).await?;
//! let queue = BatchRequestQueue::new(Arc::new(manager), client, QueueConfig::default()).await?;
//!
//! let request = ChatOptions::new("gpt-4o-mini")
//!     .into_request(vec![Message::user("Critique this prompt: a red fox in snow.")]);
//! let handle = queue.enqueue("critique", QueuedRequest::Chat(request)).await?;
//! let id = handle.id().clone();
//! queue.flush().await?; // the stage barrier: every pending group is submitted now
//! let done = handle.wait().await?;
//! assert_eq!(done.request_id, id);
//! println!("{} via {:?}: {}", id, done.tier, done.body);
//! # let _ = Tier::Batch;
//! // After a restart: re-attach, then ask by id.
//! queue.resume().await?;
//! let again = queue.result_for(&id).await?;
//! # let _ = again;
//! # Ok(())
//! # }
//! ```

mod error;
mod line;
mod queue;
mod store;
mod types;

pub use error::{Error, Result};
pub use queue::{BatchRequestQueue, METADATA_DISPATCH, RequestHandle};
pub use types::{
    Completed, MAX_GROUP_SIZE, QueueConfig, QueuedRequest, RequestId, Tier, UnknownTier,
};

use batch_client::now_ms;
