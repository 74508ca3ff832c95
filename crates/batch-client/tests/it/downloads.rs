//! Result files that cannot be downloaded: one that is gone is named with the requests whose
//! lines it held and the record is never `done` with it missing; one that fails for now is tried
//! again, and retrieving the results later gets them.

use batch_client::{Error, JobState};
use openai_sim::{FaultConfig, FaultKind, FaultRule};

use crate::support::{client, manager, no_metadata, shards, sim};

/// Submits one shard of 3 requests and lets it complete at the simulator without polling it.
async fn completed_batch(
    sim: &openai_sim::SimHandle,
    manager: &batch_client::BatchJobManager,
) -> (String, batch_client::Batch) {
    let shard = &shards("dl", 1, 3)[0];
    let id = manager.submit_batch(shard, no_metadata()).await.unwrap();
    sim.advance_clock(3600.0).await;
    let batch_id = manager.record(&id).await.unwrap().batch_id.unwrap();
    let batch = client(&sim.base_url())
        .retrieve_batch(&batch_id)
        .await
        .unwrap();
    assert_eq!(batch.status(), batch_client::BatchStatus::Completed);
    (id, batch)
}

#[tokio::test]
async fn a_result_file_that_is_gone_is_named_and_the_record_is_not_done() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let (id, batch) = completed_batch(&sim, &manager).await;
    let output = batch.output_file_id.clone().unwrap();
    client(&sim.base_url()).delete_file(&output).await.unwrap();

    manager.poll_once().await.unwrap();
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.state, JobState::Error);
    let why = record.last_error.unwrap();
    assert!(
        why.contains(&format!(
            "the output file {output} (the lines of 3 of 3 requests) could not be downloaded"
        )),
        "{why}"
    );
    assert!(why.contains("404"), "{why}");
    assert!(why.contains("submitted again"), "{why}");
    // Retrieving the results tries the download again and says what is missing.
    let err = manager.retrieve_results(&id).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidState { reason, .. } if reason.contains(&output)),
        "{err}"
    );
    // So does resume; the record stays in error, never done without its results.
    assert!(manager.resume().await.unwrap().contains(&id));
    assert_eq!(manager.record(&id).await.unwrap().state, JobState::Error);
}

#[tokio::test]
async fn a_download_that_fails_for_now_is_kept_for_later_and_then_collected() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let (id, _) = completed_batch(&sim, &manager).await;
    sim.set_faults(
        FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::ServiceUnavailable).on("GET", "/v1/files/*/content"),
        ),
    );
    manager.poll_once().await.unwrap();
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.state, JobState::Ended, "not done, not given up");
    let why = record.last_error.unwrap();
    assert!(why.contains("could not download the output file"), "{why}");
    assert!(manager.retrieve_results(&id).await.is_err());

    sim.set_faults(FaultConfig::default());
    let results = manager.retrieve_results(&id).await.unwrap();
    assert_eq!(results.succeeded, 3);
    assert_eq!(manager.record(&id).await.unwrap().state, JobState::Done);
}
