//! The factory: tiers without their connection, each operation on its tier.

use super::*;
use crate::{ChatRequest, ImageRequest};

#[test]
fn tiers_without_their_connection_are_named() {
    let config = ProvidersConfig::default().with_tier(Operation::Expand, Tier::Simulated);
    match ProviderFactory::new(config).build() {
        Err(ProviderError::Config(ConfigError::Missing {
            operation, tier, ..
        })) => assert_eq!((operation, tier), (Operation::Combine, Tier::Standard)),
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
