//! The simulated transport: openai-sim's models in process (the `simulated` feature).

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, Endpoint, ImageGenerationRequest};
use openai_sim::models::Models;
use serde_json::Value;

use super::delivered;
use crate::{Delivered, Operation, ProviderError, Result, Tier, Transport};

/// The simulated models of openai-sim, in process: the same answers the simulator's HTTP
/// endpoints and batches give for the same body and seed.
#[derive(Debug, Clone)]
pub struct SimulatedTransport {
    models: Models,
}

impl SimulatedTransport {
    /// Models seeded with `seed` (a simulator spawned with the same seed answers the same).
    pub fn new(seed: u64) -> SimulatedTransport {
        SimulatedTransport {
            models: Models::new(seed),
        }
    }

    fn run(&self, endpoint: Endpoint, body: Result<Value, serde_json::Error>) -> Result<Delivered> {
        let tier = Tier::Simulated;
        let body = body.map_err(|e| ProviderError::InvalidRequest(e.to_string()))?;
        let reply = self.models.execute(endpoint, &body);
        if reply.status == 200 {
            return Ok(delivered(reply.body, tier));
        }
        let error = &reply.body["error"];
        Err(ProviderError::Refused {
            tier,
            status: reply.status,
            code: error["code"].as_str().map(str::to_owned),
            message: error["message"]
                .as_str()
                .map_or_else(|| reply.body.to_string(), str::to_owned),
        })
    }
}

#[async_trait]
impl Transport for SimulatedTransport {
    fn tier(&self) -> Tier {
        Tier::Simulated
    }

    async fn chat(
        &self,
        _: Operation,
        _: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        self.run(Endpoint::ChatCompletions, serde_json::to_value(body))
    }

    async fn image(
        &self,
        _: Operation,
        _: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.run(Endpoint::ImagesGenerations, serde_json::to_value(body))
    }
}
