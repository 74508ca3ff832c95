//! Faults on the wire: 429 storms, 5xx, connection resets and truncated downloads lose and
//! duplicate nothing; a 4xx is never retried.

use batch_client::JobState;
use openai_sim::{FaultConfig, FaultKind, FaultRule, SimConfig};

use crate::support::{client, drive, manager, no_metadata, shards, sim, sim_with};

#[tokio::test]
async fn storms_of_429_5xx_and_resets_lose_and_duplicate_nothing() {
    let mut faults = FaultConfig::default();
    faults.seed = Some(11);
    let faults = faults
        .with_rule(
            FaultRule::new(FaultKind::RateLimit)
                .probability(0.2)
                .retry_after_secs(1),
        )
        .with_rule(FaultRule::new(FaultKind::ServerError).probability(0.1))
        .with_rule(FaultRule::new(FaultKind::ServiceUnavailable).probability(0.05))
        .with_rule(FaultRule::new(FaultKind::ConnectionReset).probability(0.1))
        .with_rule(
            FaultRule::new(FaultKind::TruncatedDownload)
                .on("GET", "/v1/files/*/content")
                .probability(0.5),
        );
    let sim = sim_with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let all = shards("storm", 5, 6);
    let mut ids = Vec::new();
    for shard in &all {
        // A submit that runs out of retries leaves its record for the poller to carry on.
        match manager.submit_batch(shard, no_metadata()).await {
            Ok(id) => ids.push(id),
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    let records = drive(&sim, &manager, 200).await;
    assert_eq!(records.len(), 5);
    let mut succeeded = 0;
    for record in &records {
        assert_eq!(record.state, JobState::Done, "{record:?}");
        let results = manager.retrieve_results(&record.id).await.unwrap();
        assert!(results.unfinished.is_empty() && results.duplicates.is_empty());
        succeeded += results.succeeded;
    }
    assert_eq!(succeeded, 30);
    let stats = sim.stats().await;
    assert_eq!(stats.files_uploaded, 5, "{stats:?}");
    assert_eq!(stats.batches_created, 5, "{stats:?}");
    assert_eq!(stats.batch_requests_billed, 30);
    for kind in [
        "rate_limit",
        "server_error",
        "connection_reset",
        "truncated_download",
    ] {
        assert!(
            stats.faults.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {:?}",
            stats.faults
        );
    }
}

#[tokio::test]
async fn a_truncated_download_is_detected_and_retried() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("trunc", 1, 5)[0], no_metadata())
        .await
        .unwrap();
    sim.set_faults(
        FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::TruncatedDownload)
                .on("GET", "/v1/files/*/content")
                .next(2),
        ),
    );
    drive(&sim, &manager, 50).await;
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.succeeded, 5);
    let path = results.output_path.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.ends_with('\n'));
    assert_eq!(sim.stats().await.faults.get("truncated_download"), Some(&2));
}

#[tokio::test]
async fn the_client_retries_429_and_5xx_but_never_a_404() {
    let sim = sim().await;
    let client = client(&sim.base_url());
    sim.set_faults(
        FaultConfig::default()
            .with_rule(
                FaultRule::new(FaultKind::RateLimit)
                    .on("GET", "/v1/batches")
                    .next(3),
            )
            .with_rule(
                FaultRule::new(FaultKind::BadGateway)
                    .on("GET", "/v1/batches")
                    .next(2),
            ),
    );
    let page = client.list_batches(&Default::default()).await.unwrap();
    assert!(page.data.is_empty());
    let err = client.retrieve_batch("batch_nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
    let batch_client::Error::Api(api) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        api.error.as_ref().unwrap().message.as_deref(),
        Some("No batch found with id 'batch_nope'.")
    );
    assert!(api.body.contains("invalid_request_error"));
    let stats = sim.stats().await;
    assert_eq!(stats.faults.get("rate_limit"), Some(&3));
    assert_eq!(stats.faults.get("bad_gateway"), Some(&2));
}

/// Collects every retry notice a client gives.
fn noticing(
    base_url: &str,
    retries: usize,
) -> (
    batch_client::OpenAiClient,
    std::sync::Arc<std::sync::Mutex<Vec<batch_client::RetryNotice>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let mut policy = batch_client::RetryPolicy::fast();
    policy.max_retries = retries;
    let config =
        batch_client::ClientConfig::new(base_url, batch_client::ApiKey::new(crate::support::KEY))
            .with_retry(policy)
            .with_retry_notice(batch_client::RetryHook::new(move |n| {
                sink.lock().unwrap().push(n.clone())
            }));
    (batch_client::OpenAiClient::new(config).unwrap(), seen)
}

#[tokio::test]
async fn every_retry_is_announced_with_what_failed_and_the_attempt_never_the_key() {
    // A port nothing listens on: every attempt is refused.
    let dead = openai_sim::RefusedPort::new().unwrap();
    let (client, seen) = noticing(&dead.base_url(), 2);
    let err = client.retrieve_batch("batch_abc").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let notices = seen.lock().unwrap().clone();
    assert_eq!(notices.len(), 2, "{notices:?}");
    for (i, n) in notices.iter().enumerate() {
        assert_eq!((n.attempt, n.attempts), (i + 1, 3));
        let text = n.to_string();
        assert!(
            text.starts_with(&format!(
                "attempt {} of 3 failed: GET /batches/batch_abc: connect",
                i + 1
            )),
            "{text}"
        );
        assert!(text.contains("next try in"), "{text}");
        assert!(
            !text.contains(crate::support::KEY) && !text.contains("Bearer"),
            "{text}"
        );
    }

    // The manager's own look-then-retry loops (upload, create) announce theirs too.
    let sim = sim_with(
        SimConfig::default().with_faults(
            FaultConfig::default().with_rule(
                FaultRule::new(FaultKind::ServerError)
                    .on("POST", "/v1/batches")
                    .next(2),
            ),
        ),
    )
    .await;
    let (client, seen) = noticing(&sim.base_url(), 8);
    let dir = tempfile::tempdir().unwrap();
    let manager = batch_client::BatchJobManager::open(
        client,
        &dir.path().join("b.db"),
        crate::support::manager_config(dir.path()),
    )
    .await
    .unwrap();
    manager
        .submit_batch(&shards("notice", 1, 2)[0], no_metadata())
        .await
        .unwrap();
    let notices = seen.lock().unwrap().clone();
    let creates: Vec<&batch_client::RetryNotice> = notices
        .iter()
        .filter(|n| n.error.starts_with("POST /batches: HTTP 500"))
        .collect();
    assert_eq!(creates.len(), 2, "{notices:?}");
    assert_eq!(sim.stats().await.batches_created, 1);
}
