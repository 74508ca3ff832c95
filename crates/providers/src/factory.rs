//! The one place that names concrete tiers: configuration in, providers out.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use batch_client::{ClientConfig, OpenAiClient, RetryPolicy};
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};

use crate::transport::{FlexTransport, SimulatedTransport, StandardTransport};
use crate::{
    ConfigError, Delivered, ImageProvider, LlmProvider, OpenAiProvider, Operation, ProviderError,
    ProvidersConfig, Result, Tier, Transport, VisionProvider,
};

/// Builds [`Providers`] from a [`ProvidersConfig`] and the connections the chosen tiers need.
#[derive(Debug, Clone)]
pub struct ProviderFactory {
    config: ProvidersConfig,
    client: Option<ClientConfig>,
    batch: Option<Arc<dyn Transport>>,
}

impl ProviderFactory {
    /// A factory for `config`; add an API client for standard and flex, a batch transport for
    /// batch.
    pub fn new(config: ProvidersConfig) -> ProviderFactory {
        ProviderFactory {
            config,
            client: None,
            batch: None,
        }
    }

    /// The API to call for the standard and flex tiers.
    pub fn with_client(mut self, client: ClientConfig) -> ProviderFactory {
        self.client = Some(client);
        self
    }

    /// The batch tier through `queue`, flushing after each call when `batch.mode` is
    /// immediate.
    pub fn with_queue(self, queue: Arc<batch_queue::BatchRequestQueue>) -> ProviderFactory {
        let mode = self.config.batch.mode;
        self.with_batch(Arc::new(crate::BatchTransport::new(queue, mode)))
    }

    /// The transport of the batch tier (any [`Transport`]; [`ProviderFactory::with_queue`] is
    /// the usual one).
    pub fn with_batch(mut self, batch: Arc<dyn Transport>) -> ProviderFactory {
        self.batch = Some(batch);
        self
    }

    /// The same connections with another configuration (the orchestrator's hybrid mode builds
    /// one set of providers per tier this way).
    pub fn with_config(mut self, config: ProvidersConfig) -> ProviderFactory {
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }

    /// One transport per tier in use, and each operation routed to its tier's.
    pub fn build(&self) -> Result<Providers, ConfigError> {
        let mut by_tier: BTreeMap<&'static str, Arc<dyn Transport>> = BTreeMap::new();
        let mut routes = Vec::new();
        for op in Operation::ALL {
            let tier = self.config.tier_for(op);
            let transport = match by_tier.get(tier.as_str()) {
                Some(t) => t.clone(),
                None => {
                    let t = self.transport(op, tier)?;
                    by_tier.insert(tier.as_str(), t.clone());
                    t
                }
            };
            routes.push((op, transport));
        }
        let router = Arc::new(Router { routes });
        Ok(Providers {
            provider: OpenAiProvider::new(router, self.config.models.clone()),
            config: self.config.clone(),
        })
    }

    fn transport(&self, op: Operation, tier: Tier) -> Result<Arc<dyn Transport>, ConfigError> {
        let client = |config: ClientConfig| {
            OpenAiClient::new(config).map_err(|e| ConfigError::Unreadable(e.to_string()))
        };
        let needs_client = || ConfigError::Missing {
            operation: op,
            tier,
            what: "an API client (OPENAI_API_KEY and OPENAI_BASE_URL)",
        };
        Ok(match tier {
            Tier::Simulated => Arc::new(SimulatedTransport::new(self.config.simulated_seed)),
            Tier::Standard => {
                let config = self.client.clone().ok_or_else(needs_client)?;
                Arc::new(StandardTransport::new(client(config)?))
            }
            Tier::Flex => {
                let config = self.client.clone().ok_or_else(needs_client)?;
                // A busy flex tier should fall back at once, not be retried into the timeout.
                let flex = config
                    .clone()
                    .with_timeout(self.config.flex_timeout)
                    .with_retry(RetryPolicy::NONE);
                Arc::new(FlexTransport::new(
                    client(flex)?,
                    client(config)?,
                    self.config.flex_timeout,
                    self.config.batch.fallback_to_standard,
                ))
            }
            Tier::Batch => self.batch.clone().ok_or(ConfigError::Missing {
                operation: op,
                tier,
                what: "a batch queue",
            })?,
        })
    }
}

/// The providers of one configuration: every operation on its tier.
#[derive(Debug, Clone)]
pub struct Providers {
    provider: OpenAiProvider,
    config: ProvidersConfig,
}

impl Providers {
    /// The prompt writer (each call on its operation's tier).
    pub fn llm(&self) -> Arc<dyn LlmProvider> {
        Arc::new(self.provider.clone())
    }

    /// The image generator (on the render tier).
    pub fn image(&self) -> Arc<dyn ImageProvider> {
        Arc::new(self.provider.clone())
    }

    /// The judge (on the judge tier).
    pub fn vision(&self) -> Arc<dyn VisionProvider> {
        Arc::new(self.provider.clone())
    }

    /// The tier an operation's calls are sent to.
    pub fn tier_for(&self, operation: Operation) -> Tier {
        self.config.tier_for(operation)
    }

    /// The configuration they were built from.
    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }
}

/// Sends each call to its operation's transport.
#[derive(Debug)]
struct Router {
    routes: Vec<(Operation, Arc<dyn Transport>)>,
}

impl Router {
    fn route(&self, op: Operation) -> Result<&Arc<dyn Transport>> {
        self.routes
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, t)| t)
            .ok_or_else(|| ProviderError::InvalidRequest(format!("no tier for {op}")))
    }
}

#[async_trait]
impl Transport for Router {
    fn tier(&self) -> Tier {
        // Mixed: callers read the tier each result reports.
        self.routes
            .first()
            .map_or(Tier::Standard, |(_, t)| t.tier())
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        self.route(op)?.chat(op, key, body).await
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.route(op)?.image(op, key, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatRequest, ImageRequest};

    #[test]
    fn tiers_without_their_connection_are_named() {
        let config = ProvidersConfig::default().with_tier(Operation::Expand, Tier::Simulated);
        match ProviderFactory::new(config).build() {
            Err(ConfigError::Missing {
                operation, tier, ..
            }) => assert_eq!((operation, tier), (Operation::Combine, Tier::Standard)),
            other => panic!("{other:?}"),
        }
        let mut config = ProvidersConfig::default();
        config.batch.enabled = true;
        let factory = ProviderFactory::new(config).with_client(ClientConfig::new(
            "http://127.0.0.1:9",
            batch_client::ApiKey::new("k"),
        ));
        let err = factory.build().unwrap_err();
        assert!(err.to_string().contains("batch queue"), "{err}");
    }

    #[tokio::test]
    async fn each_operation_goes_to_its_tier() {
        let mut config = ProvidersConfig::default();
        for op in Operation::ALL {
            config = config.with_tier(op, Tier::Simulated);
        }
        // Standard for combine, on a port nothing listens on.
        let config = config.with_tier(Operation::Combine, Tier::Standard);
        let client = ClientConfig::new("http://127.0.0.1:9/v1", batch_client::ApiKey::new("k"))
            .with_retry(RetryPolicy::NONE);
        let providers = ProviderFactory::new(config)
            .with_client(client)
            .build()
            .unwrap();
        let llm = providers.llm();
        let reply = llm
            .chat(ChatRequest::new(Operation::Expand, "Idea: a fox"))
            .await
            .unwrap();
        assert_eq!(reply.meta.tier, Tier::Simulated);
        let err = llm
            .chat(ChatRequest::new(Operation::Combine, "Idea: a fox"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Client {
                    tier: Tier::Standard,
                    ..
                }
            ),
            "{err}"
        );
        let image = providers
            .image()
            .generate(ImageRequest::new("a fox"))
            .await
            .unwrap();
        assert_eq!(image.meta.tier, Tier::Simulated);
        assert_eq!(providers.tier_for(Operation::Combine), Tier::Standard);
    }
}
