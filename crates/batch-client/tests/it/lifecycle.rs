//! The manager against openai-sim: a clean batch end to end, results mapped to custom ids,
//! status history, lookups by OpenAI's batch id, failed / expired / cancelled / stalled batches,
//! token_limit_exceeded resubmission and resume after a restart.

use std::time::Duration;

use batch_client::{BatchStatus, JobState};
use openai_sim::{BatchOutcome, BatchOutcomeRule, FaultConfig, SimConfig};

use crate::support::{self, drive, manager, manager_with, no_metadata, shards, sim, sim_with};

#[tokio::test]
async fn a_shard_runs_to_completion_and_every_id_has_its_outcome() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let shard = &shards("clean", 1, 5)[0];
    let mut metadata = no_metadata();
    metadata.insert("session".into(), "s-1".into());
    let id = manager.submit_batch(shard, metadata).await.unwrap();
    assert!(id.starts_with("bb_"), "{id}");
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.state, JobState::Submitted);
    let batch_id = record.batch_id.clone().unwrap();

    // The batch carries our key and the caller's metadata.
    let batch = manager.client().retrieve_batch(&batch_id).await.unwrap();
    assert_eq!(
        batch.metadata_value("batchbeam_key"),
        Some(record.idempotency_key.as_str())
    );
    assert_eq!(batch.metadata_value("session"), Some("s-1"));

    drive(&sim, &manager, 50).await;
    let results = manager.retrieve_results(&batch_id).await.unwrap();
    assert_eq!(results.record_id, id);
    assert_eq!(results.status, Some(BatchStatus::Completed));
    assert_eq!(results.succeeded, 5);
    assert_eq!((results.failed, results.unfinished.len()), (0, 0));
    assert!(results.missing.is_empty() && results.duplicates.is_empty());
    let mut ids = Vec::new();
    results
        .for_each_outcome(|line| ids.push(line.custom_id.clone()))
        .unwrap();
    ids.sort();
    assert_eq!(
        ids,
        ["clean-r0", "clean-r1", "clean-r2", "clean-r3", "clean-r4"]
    );
    // The files live beside the database, a folder per record.
    let out = results.output_path.unwrap();
    assert!(
        out.starts_with(dir.path().join("data").join(&id)),
        "{}",
        out.display()
    );

    let history = manager.history(&id).await.unwrap();
    let states: Vec<JobState> = history.iter().map(|c| c.state).collect();
    assert_eq!(states.first(), Some(&JobState::Intent));
    assert!(states.contains(&JobState::Uploaded));
    assert!(states.contains(&JobState::Submitted));
    assert_eq!(states.last(), Some(&JobState::Done));
    let remote: Vec<&str> = history
        .iter()
        .filter_map(|c| c.remote_status.as_deref())
        .collect();
    assert!(remote.contains(&"completed"), "{remote:?}");
    assert!(history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));

    let stats = sim.stats().await;
    assert_eq!((stats.batches_created, stats.files_uploaded), (1, 1));
    assert_eq!(stats.batch_requests_billed, 5);
}

#[tokio::test]
async fn invalid_input_is_rejected_with_its_lines_and_nothing_is_stored() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\nnot json\n{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n",
    )
    .unwrap();
    let err = manager
        .submit_batch(&path, no_metadata())
        .await
        .unwrap_err();
    let batch_client::Error::InvalidInput(problems) = &err else {
        panic!("{err}");
    };
    let lines: Vec<Option<u64>> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [Some(2), Some(3)], "{problems:?}");
    assert!(manager.list().await.unwrap().is_empty());
    assert_eq!(sim.stats().await.files_uploaded, 0);
}

#[tokio::test]
async fn a_jsonl_file_is_submitted_from_where_it_is() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let shard = &shards("file", 1, 3)[0];
    let path = dir.path().join("input.jsonl");
    let mut bytes = Vec::new();
    shard.write_jsonl(&mut bytes).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let id = manager.submit_batch(&path, no_metadata()).await.unwrap();
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.shard_name, "input");
    assert_eq!(record.manifest.custom_ids, shard.manifest().custom_ids);
    drive(&sim, &manager, 50).await;
    assert_eq!(manager.retrieve_results(&id).await.unwrap().succeeded, 3);
}

#[tokio::test]
async fn a_failed_batch_gives_its_validation_errors_with_line_numbers() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail).next(1));
    let sim = sim_with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("fails", 1, 2)[0], no_metadata())
        .await
        .unwrap();
    drive(&sim, &manager, 20).await;
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.status, Some(BatchStatus::Failed));
    assert!(!results.validation_errors.is_empty());
    assert_eq!(results.unfinished, ["fails-r0", "fails-r1"]);
    assert_eq!(sim.stats().await.batch_requests_billed, 0);
}

#[tokio::test]
async fn unknown_model_lines_come_back_with_their_line_numbers() {
    let mut config = SimConfig::default().with_frozen_clock();
    config.known_models = Some(vec!["gpt-4o".into()]);
    let sim = sim_with(config).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("model", 1, 3)[0], no_metadata())
        .await
        .unwrap();
    drive(&sim, &manager, 20).await;
    let results = manager.retrieve_results(&id).await.unwrap();
    let lines: Vec<Option<u64>> = results.validation_errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(1), Some(2), Some(3)]);
    assert_eq!(
        results.validation_errors[0].code.as_deref(),
        Some("model_not_found")
    );
}

#[tokio::test]
async fn an_expired_batch_gives_partial_results_and_the_unfinished_ids() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Expire).next(1));
    let sim = sim_with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("exp", 1, 6)[0], no_metadata())
        .await
        .unwrap();
    // Expiry comes 24 h (simulated) after creation.
    for _ in 0..10 {
        let _ = manager.poll_once().await;
        sim.advance_clock(3.0 * 3600.0).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    drive(&sim, &manager, 20).await;
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.status, Some(BatchStatus::Expired));
    assert_eq!(results.succeeded, 3);
    assert_eq!(results.unfinished.len(), 3);
    assert_eq!(results.succeeded as usize + results.unfinished.len(), 6);
    assert!(results.missing.is_empty());
    assert_eq!(sim.stats().await.batch_requests_billed, 3);
}

#[tokio::test]
async fn a_stalled_batch_is_cancelled_after_max_wait_and_its_ids_reported_unfinished() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Stall).next(1));
    let sim = sim_with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::manager_config(dir.path());
    config.max_wait = Duration::from_millis(20);
    let manager = manager_with(&sim, dir.path(), config).await;
    let id = manager
        .submit_batch(&shards("stall", 1, 4)[0], no_metadata())
        .await
        .unwrap();
    sim.advance_clock(60.0).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    drive(&sim, &manager, 40).await;
    let record = manager.record(&id).await.unwrap();
    assert!(record.cancel_requested);
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.status, Some(BatchStatus::Cancelled));
    assert_eq!(results.succeeded, 0);
    assert_eq!(results.unfinished.len(), 4);
    let history = manager.history(&id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|c| c.detail.as_deref().is_some_and(|d| d.contains("max wait")))
    );
}

#[tokio::test]
async fn a_cancelled_batch_keeps_what_finished() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("cancel", 1, 40)[0], no_metadata())
        .await
        .unwrap();
    // Validation and queue take 12 s, the first request 20 s, then 0.5 s each.
    sim.advance_clock(36.0).await;
    let record = manager.cancel(&id).await.unwrap();
    assert!(record.cancel_requested);
    drive(&sim, &manager, 40).await;
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.status, Some(BatchStatus::Cancelled));
    assert!(
        results.succeeded > 0 && results.succeeded < 40,
        "{results:?}"
    );
    assert_eq!(results.succeeded as usize + results.unfinished.len(), 40);
    assert_eq!(sim.stats().await.batch_requests_billed, results.succeeded);
}

#[tokio::test]
async fn token_limit_exceeded_waits_and_resubmits_on_the_same_record() {
    // Room for one shard's tokens at a time.
    let probe = &shards("probe", 1, 10)[0];
    let limit = probe.estimated_tokens() * 3 / 2;
    let sim = sim_with(
        SimConfig::default()
            .with_frozen_clock()
            .with_token_limit("gpt-4o-mini", limit),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::manager_config(dir.path());
    config.max_attempts = 100;
    let manager = manager_with(&sim, dir.path(), config).await;
    let all = shards("tok", 2, 10);
    let first = manager.submit_batch(&all[0], no_metadata()).await.unwrap();
    let second = manager.submit_batch(&all[1], no_metadata()).await.unwrap();
    drive(&sim, &manager, 100).await;
    let again = manager.record(&second).await.unwrap();
    assert!(again.attempts >= 2, "{again:?}");
    assert_eq!(manager.record(&first).await.unwrap().attempts, 1);
    for id in [&first, &second] {
        let results = manager.retrieve_results(id).await.unwrap();
        assert_eq!(results.succeeded, 10, "{id}");
    }
    // Every attempt's batch id finds the record, not only the last one.
    let first_batch = manager
        .history(&second)
        .await
        .unwrap()
        .iter()
        .find_map(|c| {
            c.detail
                .as_deref()?
                .strip_prefix("created ")?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .unwrap();
    assert_ne!(Some(&first_batch), again.batch_id.as_ref());
    assert_eq!(manager.record(&first_batch).await.unwrap().id, second);
    let stats = sim.stats().await;
    assert_eq!(stats.batch_requests_billed, 20);
    assert_eq!(
        stats.files_uploaded, 2,
        "a resubmission reuses the uploaded file"
    );
    assert_eq!(stats.batches_created, u64::from(again.attempts) + 1);
}

#[tokio::test]
async fn the_poller_task_carries_many_batches_and_a_restart_resumes_them() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let all = shards("many", 4, 3);
    let mut ids = Vec::new();
    {
        let manager = manager(&sim, dir.path()).await;
        for shard in &all {
            ids.push(manager.submit_batch(shard, no_metadata()).await.unwrap());
        }
        // The process "dies" here, with four batches in flight.
    }
    sim.advance_clock(120.0).await;
    let manager = manager(&sim, dir.path()).await;
    let resumed = manager.resume().await.unwrap();
    assert_eq!(resumed.len(), 4);
    let poller = manager.spawn_poller();
    let mut done = false;
    for _ in 0..200 {
        let records = manager.list().await.unwrap();
        if records.iter().all(|r| r.state == JobState::Done) {
            done = true;
            break;
        }
        sim.advance_clock(10.0).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    poller.stop().await;
    assert!(done, "{:#?}", manager.list().await.unwrap());
    for id in &ids {
        assert_eq!(manager.retrieve_results(id).await.unwrap().succeeded, 3);
    }
    let stats = sim.stats().await;
    assert_eq!(
        (stats.batches_created, stats.batch_requests_billed),
        (4, 12)
    );
}

#[tokio::test]
async fn a_wrong_key_pauses_records_and_the_right_one_carries_them_on() {
    let sim = sim_with(
        SimConfig::default()
            .with_frozen_clock()
            .with_api_keys([support::KEY]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let manager = manager(&sim, dir.path()).await;
        manager
            .submit_batch(&shards("key", 1, 2)[0], no_metadata())
            .await
            .unwrap()
    };
    let wrong = batch_client::OpenAiClient::new(batch_client::ClientConfig::new(
        sim.base_url(),
        batch_client::ApiKey::new("sk-rotated-away-000000"),
    ))
    .unwrap();
    let config = support::manager_config(dir.path());
    let misconfigured =
        batch_client::BatchJobManager::open(wrong, &dir.path().join("batchbeam.db"), config)
            .await
            .unwrap();
    sim.advance_clock(120.0).await;
    misconfigured.resume().await.unwrap();
    let record = misconfigured.record(&id).await.unwrap();
    assert_eq!(
        record.state,
        JobState::Submitted,
        "a 401 does not end the record"
    );
    assert!(
        record.last_error.as_deref().unwrap().contains("401"),
        "{record:?}"
    );
    drop(misconfigured);
    let manager = manager(&sim, dir.path()).await;
    drive(&sim, &manager, 30).await;
    assert_eq!(manager.retrieve_results(&id).await.unwrap().succeeded, 2);
}
