//! The standard-API fallback: requests the batches could not carry, sent synchronously through
//! `OpenAiClient`, a few at a time.

use std::sync::Arc;

use batch_format::{ChatCompletionRequest, Endpoint, ImageGenerationRequest};
use serde_json::Value;
use sqlx::Row;

use super::{Inner, STANDARD_CONCURRENCY};
use crate::store::{self, StoredError, now_ms};
use crate::{Completed, Error, RequestId, Result, Tier};

impl Inner {
    /// Sends waiting fallbacks to the standard API, a few at a time; whether any ran.
    pub(super) async fn run_standard(self: &Arc<Self>) -> Result<bool> {
        let rows = sqlx::query(
            "SELECT id, endpoint, body FROM queue_requests WHERE state = 'standard' ORDER BY seq LIMIT ?",
        )
        .bind(STANDARD_CONCURRENCY as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        if rows.is_empty() {
            return Ok(false);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for row in rows {
            let id: String = row.try_get(0).map_err(Error::store)?;
            let endpoint: String = row.try_get(1).map_err(Error::store)?;
            let body: String = row.try_get(2).map_err(Error::store)?;
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
                Ok((id, outcome)) => self.finish_standard(&id, outcome).await,
                Err(e) => Err(Error::Store(format!("standard task: {e}"))),
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

    pub(super) async fn finish_standard(
        &self,
        id: &str,
        outcome: std::result::Result<Value, StoredError>,
    ) -> Result<()> {
        let mut tx = crate::store::write_tx(&self.pool).await?;
        let row = sqlx::query(
            "SELECT attempts, batch_ids FROM queue_requests WHERE id = ? AND state = 'standard'",
        )
        .bind(id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::store)?;
        let Some(row) = row else { return Ok(()) };
        let attempts =
            u32::try_from(row.try_get::<i64, _>(0).map_err(Error::store)?).unwrap_or(0) + 1;
        let batch_ids: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>(1).map_err(Error::store)?)
                .unwrap_or_default();
        let rid = RequestId::from(id);
        let now = now_ms();
        let result = match outcome {
            Ok(body) => {
                let usage = store::usage_from_body(&body);
                sqlx::query("UPDATE queue_requests SET state = 'done', tier = 'standard', attempts = ?, result = ?, usage = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(i64::from(attempts))
                    .bind(body.to_string())
                    .bind(usage.as_ref().map(store::usage_to_json))
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::store)?;
                Ok(Completed {
                    request_id: rid.clone(),
                    body,
                    usage,
                    tier: Tier::Standard,
                    attempts,
                    batch_ids,
                })
            }
            Err(error) => {
                sqlx::query("UPDATE queue_requests SET state = 'failed', tier = 'standard', attempts = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(i64::from(attempts))
                    .bind(serde_json::to_string(&error).map_err(Error::store)?)
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::store)?;
                Err(error.into_error(rid.clone(), attempts))
            }
        };
        tx.commit().await.map_err(Error::store)?;
        self.send_all([(rid, result)]);
        Ok(())
    }
}
