//! The batch tier: bodies go through the batch queue and come back when their batch is done.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use batch_queue::{BatchRequestQueue, QueuedRequest, RequestId};
use tokio::sync::watch;

use crate::{
    BatchMode, Delivered, Operation, ProviderError, Result, StageBarrier, Tier, Transport,
};

/// Calls carried by OpenAI's Batch API through a [`BatchRequestQueue`], at half price.
///
/// Each call is enqueued under its operation's name and resolves when its batch is done. In
/// [`BatchMode::Immediate`] the transport flushes the queue after each enqueue; in
/// [`BatchMode::Deferred`] the call waits for the queue's own flush: the orchestrator's stage
/// barrier ([`BatchRequestQueue::flush_soon`]: sent once other sessions had
/// `BATCH_COALESCE_MS` to join, so that many sessions share few batches), a full group, or the
/// queue's flush delay.
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
    /// The keys of the calls stored in the queue and not answered yet: the barrier waits on
    /// it, woken by each change instead of polling the queue.
    stored: Arc<watch::Sender<HashSet<String>>>,
}

impl BatchTransport {
    /// Sends through `queue`, flushing after each call when `mode` is immediate.
    pub fn new(queue: Arc<BatchRequestQueue>, mode: BatchMode) -> BatchTransport {
        BatchTransport {
            queue,
            mode,
            stored: Arc::new(watch::Sender::new(HashSet::new())),
        }
    }

    /// The queue it sends through.
    pub fn queue(&self) -> &Arc<BatchRequestQueue> {
        &self.queue
    }

    /// The keys starting with `prefix` of the keyed calls stored and not answered yet (a
    /// session's calls: `session/`), as its running calls hold them.
    pub fn waiting_keys(&self, prefix: &str) -> Vec<String> {
        self.stored
            .borrow()
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
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
        // Stored: the barrier may now count it, until it is answered.
        let _stored = key.map(|key| Stored::new(&self.stored, key));
        if self.mode == BatchMode::Immediate {
            self.queue.flush().await.map_err(ProviderError::Queue)?;
        }
        let done = handle.wait().await.map_err(ProviderError::Queue)?;
        // The queue carries a request by batch or, falling back, by the standard API.
        Ok(Delivered {
            body: done.body,
            tier: done.tier,
            fallback_from: (done.tier == Tier::Standard).then_some(Tier::Batch),
        })
    }
}

/// A keyed call in the barrier's set while it is stored and unanswered (also when its future
/// is dropped).
struct Stored<'a> {
    set: &'a watch::Sender<HashSet<String>>,
    key: String,
}

impl<'a> Stored<'a> {
    fn new(set: &'a watch::Sender<HashSet<String>>, key: &str) -> Stored<'a> {
        set.send_modify(|s| {
            s.insert(key.to_owned());
        });
        Stored {
            set,
            key: key.to_owned(),
        }
    }
}

impl Drop for Stored<'_> {
    fn drop(&mut self) {
        self.set.send_modify(|s| {
            s.remove(&self.key);
        });
    }
}

#[async_trait]
impl StageBarrier for BatchTransport {
    fn holds_calls(&self) -> bool {
        true
    }

    async fn stored(&self, keys: &[String]) -> Result<()> {
        let mut changes = self.stored.subscribe();
        // The sender lives as long as `self`: waiting cannot outlive it.
        let _ = changes
            .wait_for(|set| keys.iter().all(|k| set.contains(k)))
            .await;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        self.queue.flush_soon().await.map_err(ProviderError::Queue)
    }

    async fn batches(&self, keys: &[String]) -> Vec<String> {
        let mut batches: Vec<String> = Vec::new();
        for key in keys {
            // A call that failed or is still on its way names no batch yet.
            if let Ok(Some(done)) = self.queue.result_for(&RequestId::for_key(key)).await {
                for b in done.batch_ids {
                    if !batches.contains(&b) {
                        batches.push(b);
                    }
                }
            }
        }
        batches
    }
}

#[async_trait]
impl Transport for BatchTransport {
    fn tier(&self) -> Tier {
        Tier::Batch
    }

    fn barrier(&self) -> Arc<dyn StageBarrier> {
        Arc::new(self.clone())
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

#[cfg(test)]
mod tests;
