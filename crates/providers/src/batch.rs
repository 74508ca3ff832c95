//! The batch tier: bodies go through the batch queue and come back when their batch is done.

use std::sync::Arc;

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use batch_queue::{BatchRequestQueue, QueuedRequest};

use crate::{BatchMode, Delivered, Operation, ProviderError, Result, Tier, Transport};

/// Calls carried by OpenAI's Batch API through a [`BatchRequestQueue`], at half price.
///
/// Each call is enqueued under its operation's name and resolves when its batch is done. In
/// [`BatchMode::Immediate`] the transport flushes the queue after each enqueue; in
/// [`BatchMode::Deferred`] the call waits for the queue's own flush: the orchestrator's stage
/// barrier ([`BatchRequestQueue::flush`]), a full group, or the queue's flush delay.
///
/// A keyed call ([`ChatRequest::key`](crate::ChatRequest::key) and the like) goes through
/// [`BatchRequestQueue::enqueue_keyed`]: sent at most once, and answered from the queue's
/// database when asked again after a restart.
///
/// A request the queue finally sent to the standard API (its fallback) reports
/// `tier: Standard, fallback_from: Batch`.
#[derive(Debug, Clone)]
pub struct BatchTransport {
    queue: Arc<BatchRequestQueue>,
    mode: BatchMode,
}

impl BatchTransport {
    /// Sends through `queue`, flushing after each call when `mode` is immediate.
    pub fn new(queue: Arc<BatchRequestQueue>, mode: BatchMode) -> BatchTransport {
        BatchTransport { queue, mode }
    }

    /// The queue, for the stage barrier.
    pub fn queue(&self) -> &Arc<BatchRequestQueue> {
        &self.queue
    }

    async fn carry(
        &self,
        op: Operation,
        key: Option<&str>,
        request: QueuedRequest,
    ) -> Result<Delivered> {
        let handle = match key {
            Some(key) => self.queue.enqueue_keyed(op.as_str(), key, request).await,
            None => self.queue.enqueue(op.as_str(), request).await,
        }
        .map_err(ProviderError::Queue)?;
        if self.mode == BatchMode::Immediate {
            self.queue.flush().await.map_err(ProviderError::Queue)?;
        }
        let done = handle.wait().await.map_err(ProviderError::Queue)?;
        // The queue carries a request by batch or, falling back, by the standard API.
        let (tier, fallback_from) = match done.tier {
            batch_queue::Tier::Standard => (Tier::Standard, Some(Tier::Batch)),
            _ => (Tier::Batch, None),
        };
        Ok(Delivered {
            body: done.body,
            tier,
            fallback_from,
        })
    }
}

#[async_trait]
impl Transport for BatchTransport {
    fn tier(&self) -> Tier {
        Tier::Batch
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        self.carry(op, key, QueuedRequest::Chat(body)).await
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.carry(op, key, QueuedRequest::Image(body)).await
    }
}
