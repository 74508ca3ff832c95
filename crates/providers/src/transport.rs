//! The standard, flex and simulated transports (batch lives in `batch.rs`; the simulated one
//! only with the `simulated` feature, which brings in openai-sim).

use std::time::Duration;

use async_trait::async_trait;
use batch_client::OpenAiClient;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest, ServiceTier};
use serde_json::Value;

use crate::{Delivered, Operation, ProviderError, Result, Tier, Transport};

#[cfg(feature = "simulated")]
mod simulated;
#[cfg(feature = "simulated")]
pub use simulated::SimulatedTransport;

pub(crate) fn delivered(body: Value, tier: Tier) -> Delivered {
    Delivered {
        body,
        tier,
        fallback_from: None,
    }
}

/// Synchronous calls at full price through [`OpenAiClient`] (which retries 429 and 5xx).
#[derive(Debug, Clone)]
pub struct StandardTransport {
    client: OpenAiClient,
}

impl StandardTransport {
    /// Sends through `client`.
    pub fn new(client: OpenAiClient) -> StandardTransport {
        StandardTransport { client }
    }
}

#[async_trait]
impl Transport for StandardTransport {
    fn tier(&self) -> Tier {
        Tier::Standard
    }

    async fn chat(
        &self,
        _: Operation,
        _: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        let tier = Tier::Standard;
        let v = (self.client.chat_completion(&body).await)
            .map_err(|source| ProviderError::Client { tier, source })?;
        Ok(delivered(v, tier))
    }

    async fn image(
        &self,
        _: Operation,
        _: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        let tier = Tier::Standard;
        let v = (self.client.image_generation(&body).await)
            .map_err(|source| ProviderError::Client { tier, source })?;
        Ok(delivered(v, tier))
    }
}

/// Synchronous calls with `service_tier: "flex"` under a time limit; on a rate limit (429) or
/// a timeout, the same body without `service_tier` goes to the standard tier when fallback is
/// on, and the result records `tier: Standard, fallback_from: Flex`.
///
/// The image endpoint has no flex tier: image calls go to standard and say so the same way.
#[derive(Debug, Clone)]
pub struct FlexTransport {
    flex: OpenAiClient,
    standard: StandardTransport,
    timeout: Duration,
    fallback: bool,
}

impl FlexTransport {
    /// Flex calls through `flex` (give it few or no retries: a 429 should fall back, not wait),
    /// each limited to `timeout`, falling back to `standard` when `fallback` is on.
    pub fn new(
        flex: OpenAiClient,
        standard: OpenAiClient,
        timeout: Duration,
        fallback: bool,
    ) -> FlexTransport {
        FlexTransport {
            flex,
            standard: StandardTransport::new(standard),
            timeout,
            fallback,
        }
    }
}

#[async_trait]
impl Transport for FlexTransport {
    fn tier(&self) -> Tier {
        Tier::Flex
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        let mut flex_body = body.clone();
        flex_body.service_tier = Some(ServiceTier::Flex);
        let tier = Tier::Flex;
        let error =
            match tokio::time::timeout(self.timeout, self.flex.chat_completion(&flex_body)).await {
                Ok(Ok(v)) => return Ok(delivered(v, tier)),
                Ok(Err(source)) => ProviderError::Client { tier, source },
                Err(_) => ProviderError::Timeout {
                    tier,
                    after: self.timeout,
                },
            };
        if !(self.fallback && error.is_busy_or_slow()) {
            return Err(error);
        }
        let mut d = self.standard.chat(op, key, body).await?;
        d.fallback_from = Some(Tier::Flex);
        Ok(d)
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        let mut d = self.standard.image(op, key, body).await?;
        d.fallback_from = Some(Tier::Flex);
        Ok(d)
    }
}
