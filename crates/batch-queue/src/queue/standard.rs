//! The standard-API fallback: requests the batches could not carry, sent synchronously through
//! `OpenAiClient`, a few at a time.

use std::sync::Arc;

use batch_format::{ChatCompletionRequest, Endpoint, ImageGenerationRequest};
use serde_json::Value;

use super::{Inner, STANDARD_CONCURRENCY};
use crate::store::{QueueStore, StoredError};
use crate::{Error, Result, Tier};

impl<S: QueueStore> Inner<S> {
    /// Sends waiting fallbacks to the standard API, a few at a time, each claimed first (one
    /// queue on the database calls it; another only once the claim has expired); whether any
    /// ran.
    pub(super) async fn run_standard(self: &Arc<Self>) -> Result<bool> {
        let rows = self
            .store
            .standard_waiting(self.lease(), STANDARD_CONCURRENCY)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (id, endpoint, body) in rows {
            let inner = Arc::clone(self);
            tasks.spawn(async move {
                let outcome = inner.call_standard(&endpoint, &body).await;
                (id, outcome)
            });
        }
        // Every answer is stored before any error is returned: returning early would drop the
        // other tasks, whose requests OpenAI may already have answered (and billed), and the
        // next pass would send them again.
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let stored = match joined {
                Ok((id, outcome)) => self
                    .store
                    .finish_standard(&id, outcome)
                    .await
                    .map(|settled| self.send_all(settled)),
                Err(e) => Err(Error::task("standard")(e)),
            };
            if let Err(e) = stored {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(true), Err)
    }

    pub(super) async fn call_standard(
        &self,
        endpoint: &str,
        body: &str,
    ) -> std::result::Result<Value, StoredError> {
        let fail = |status, code: Option<String>, message: String| StoredError {
            tier: Tier::Standard,
            status,
            code,
            message,
        };
        let answer = match Endpoint::from_url(endpoint) {
            Some(Endpoint::ChatCompletions) => {
                let req: ChatCompletionRequest = serde_json::from_str(body)
                    .map_err(|e| fail(None, Some("invalid_request".into()), e.to_string()))?;
                self.standard.chat_completion(&req).await
            }
            Some(Endpoint::ImagesGenerations) => {
                let req: ImageGenerationRequest = serde_json::from_str(body)
                    .map_err(|e| fail(None, Some("invalid_request".into()), e.to_string()))?;
                self.standard.image_generation(&req).await
            }
            _ => {
                return Err(fail(
                    None,
                    Some("no_standard_endpoint".into()),
                    format!(
                        "the standard API fallback covers chat completions and image generation, not {endpoint}"
                    ),
                ));
            }
        };
        answer.map_err(|e| match &e {
            batch_client::Error::Api(api) => fail(
                Some(api.status),
                api.error
                    .as_ref()
                    .and_then(|b| b.code.clone().or(b.kind.clone())),
                api.error
                    .as_ref()
                    .and_then(|b| b.message.clone())
                    .unwrap_or_else(|| e.to_string()),
            ),
            other => fail(
                other.status(),
                other.code().map(str::to_owned),
                other.to_string(),
            ),
        })
    }
}
