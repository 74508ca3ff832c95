//! `BatchRequestQueue`: enqueue, group, flush, dispatch and map results back.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use batch_client::{BatchJobManager, OpenAiClient};

use crate::{Completed, Error, QueueConfig, QueuedRequest, RequestId, Result};

/// Accumulates requests from any number of sessions, submits them as batches grouped by
/// endpoint and model, and hands every request its own result. Cheap to clone.
#[derive(Clone)]
pub struct BatchRequestQueue {
    inner: Arc<Inner>,
}

struct Inner {
    _manager: Arc<BatchJobManager>,
    _standard: OpenAiClient,
    _config: QueueConfig,
}

impl std::fmt::Debug for BatchRequestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRequestQueue").finish_non_exhaustive()
    }
}

/// One queued request: its id now, its result later.
#[derive(Debug)]
pub struct RequestHandle {
    id: RequestId,
}

impl RequestHandle {
    /// The request's stable id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Waits for the request's result.
    pub async fn wait(self) -> Result<Completed> {
        Err(Error::Closed(self.id))
    }
}

impl IntoFuture for RequestHandle {
    type Output = Result<Completed>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Completed>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

impl BatchRequestQueue {
    /// A queue keeping its requests in the manager's database.
    pub async fn new(
        manager: Arc<BatchJobManager>,
        standard: OpenAiClient,
        config: QueueConfig,
    ) -> Result<Self> {
        config.validate()?;
        Ok(BatchRequestQueue {
            inner: Arc::new(Inner {
                _manager: manager,
                _standard: standard,
                _config: config,
            }),
        })
    }

    /// Stores the request and returns its handle.
    pub async fn enqueue(&self, operation: &str, request: QueuedRequest) -> Result<RequestHandle> {
        let _ = (operation, request, &self.inner);
        Err(Error::Store("not built yet".into()))
    }

    /// Submits every pending group now.
    pub async fn flush(&self) -> Result<()> {
        Err(Error::Store("not built yet".into()))
    }

    /// A request's result, also after a restart.
    pub async fn result_for(&self, id: &RequestId) -> Result<Option<Completed>> {
        Err(Error::UnknownRequest(id.clone()))
    }

    /// Re-attaches to the batches of a previous run.
    pub async fn resume(&self) -> Result<usize> {
        Err(Error::Store("not built yet".into()))
    }
}
