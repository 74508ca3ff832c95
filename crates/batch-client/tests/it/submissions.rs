//! `submit_file`: one submission per content. The same file again attaches to its records
//! instead of billing a second batch, a crash after any step of its submit is finished by the next
//! submit of the same file, and `new` submits again on purpose.

use std::path::{Path, PathBuf};

use batch_client::{Error, JobState, SubmitOptions, SubmitStep};

use crate::support::{drive, manager, sim};

/// `n` chat requests (ids `{tag}-{i}`) in `dir/name`.
pub(crate) fn write_input(dir: &Path, name: &str, n: usize, tag: &str) -> PathBuf {
    let path = dir.join(name);
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"custom_id\":\"{tag}-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"Write prompt {i} about a {tag}.\"}}]}}}}\n"
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn sharded(max_lines: usize) -> SubmitOptions {
    SubmitOptions {
        max_lines,
        ..SubmitOptions::default()
    }
}

#[tokio::test]
async fn the_same_content_is_submitted_once_and_new_submits_it_again() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n").unwrap();
    let err = manager
        .submit_file(&bad, SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput(ref p) if p[0].line == Some(1)),
        "{err}"
    );
    assert!(manager.list().await.unwrap().is_empty(), "nothing stored");

    let file = write_input(dir.path(), "a.jsonl", 3, "fox");
    let first = manager
        .submit_file(&file, SubmitOptions::default())
        .await
        .unwrap();
    assert!(!first.attached);
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].state, JobState::Submitted);
    assert_eq!(
        first.records[0].submission_id.as_deref(),
        Some(first.submission.id.as_str())
    );
    assert!(
        first
            .submission
            .content_key
            .starts_with("/v1/chat/completions sha256:")
    );
    // The same bytes under another name, after the batch ended: the same submission.
    drive(&sim, &manager, 60).await;
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&file, &copy).unwrap();
    let again = manager
        .submit_file(&copy, SubmitOptions::default())
        .await
        .unwrap();
    assert!(again.attached);
    assert_eq!(again.submission, first.submission);
    assert_eq!(again.records[0].id, first.records[0].id);
    assert_eq!(again.records[0].state, JobState::Done);
    let stats = sim.stats().await;
    assert_eq!((stats.files_uploaded, stats.batches_created), (1, 1));

    // Other content is another submission; `new` is one on purpose, and later submits attach
    // to it.
    let other = write_input(dir.path(), "b.jsonl", 3, "owl");
    assert!(
        !manager
            .submit_file(&other, SubmitOptions::default())
            .await
            .unwrap()
            .attached
    );
    let new = manager
        .submit_file(
            &file,
            SubmitOptions {
                new: true,
                ..SubmitOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!new.attached);
    assert_eq!(new.submission.seq, 1);
    assert_ne!(new.records[0].id, first.records[0].id);
    let latest = manager
        .submit_file(&file, SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(latest.submission.id, new.submission.id);
    assert_eq!(sim.stats().await.batches_created, 3);
}

#[tokio::test]
async fn a_sharded_file_is_one_submission_found_again_by_its_content() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let file = write_input(dir.path(), "big.jsonl", 5, "elk");
    let first = manager.submit_file(&file, sharded(2)).await.unwrap();
    let ids: Vec<&str> = first.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    let sizes: Vec<usize> = first
        .records
        .iter()
        .map(|r| r.manifest.custom_ids.len())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(first.records[2].manifest.custom_ids, ["elk-4"]);
    // A rerun with other limits still finds the same requests.
    let again = manager.submit_file(&file, sharded(50)).await.unwrap();
    assert!(again.attached);
    let again_ids: Vec<&str> = again.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(again_ids, ids);
    drive(&sim, &manager, 60).await;
    let stats = sim.stats().await;
    assert_eq!((stats.files_uploaded, stats.batches_created), (3, 3));
    assert_eq!(stats.batch_requests_billed, 5);
}

#[tokio::test]
async fn a_crash_after_any_step_of_a_file_submit_is_finished_by_submitting_it_again() {
    for step in [
        SubmitStep::AfterIntent,
        SubmitStep::AfterUpload,
        SubmitStep::AfterCreateSent,
        SubmitStep::AfterCreateStored,
    ] {
        for (max_lines, shards) in [(100, 1u64), (2, 2)] {
            let sim = sim().await;
            let dir = tempfile::tempdir().unwrap();
            let file = write_input(dir.path(), "in.jsonl", 4, "crash");
            {
                let manager = manager(&sim, dir.path()).await;
                manager.set_failpoint(Some(step));
                let err = manager
                    .submit_file(&file, sharded(max_lines))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Failpoint(s) if s == step),
                    "{step}: {err}"
                );
            }
            // A new process runs the same command again.
            let manager = manager(&sim, dir.path()).await;
            let again = manager
                .submit_file(&file, sharded(max_lines))
                .await
                .unwrap();
            assert!(again.attached, "{step}");
            assert_eq!(again.records.len() as u64, shards, "{step}");
            let records = drive(&sim, &manager, 80).await;
            for record in &records {
                let results = manager.retrieve_results(&record.id).await.unwrap();
                assert_eq!(results.succeeded, 4 / shards, "{step}: {results:?}");
            }
            let stats = sim.stats().await;
            assert_eq!(
                (stats.files_uploaded, stats.batches_created),
                (shards, shards),
                "{step}, {shards} shard(s): {stats:?}"
            );
            assert_eq!(stats.batch_requests_billed, 4, "{step}");
        }
    }
}

#[tokio::test]
async fn a_line_over_the_cap_is_refused_by_its_line_and_submitted_once_the_cap_allows_it() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    // Line 2 carries a 5 MB prompt (an inline image would be as long): over the 4 MiB cap.
    let long = "a lighthouse ".repeat(400_000);
    let mut text = String::new();
    for (i, content) in ["short", &long, "short again"].iter().enumerate() {
        text.push_str(&format!(
            "{{\"custom_id\":\"r-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}]}}}}\n"
        ));
    }
    let file = dir.path().join("long.jsonl");
    std::fs::write(&file, text).unwrap();

    let err = manager
        .submit_file(&file, SubmitOptions::default())
        .await
        .unwrap_err();
    let Error::InvalidInput(problems) = &err else {
        panic!("{err}");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, Some(2));
    assert_eq!(problems[0].code.as_str(), "line_too_large");
    assert!(manager.list().await.unwrap().is_empty(), "nothing stored");

    let outcome = manager
        .submit_file(
            &file,
            SubmitOptions {
                max_line_bytes: 8 << 20,
                ..SubmitOptions::default()
            },
        )
        .await
        .unwrap();
    let ids = &outcome.records[0].manifest.custom_ids;
    assert_eq!(ids, &["r-0", "r-1", "r-2"]);
    // The content key is the file's SHA-256, long line included: the same file attaches.
    let again = manager
        .submit_file(
            &file,
            SubmitOptions {
                max_line_bytes: 8 << 20,
                ..SubmitOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(again.attached);
    let sha = {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(std::fs::read(&file).unwrap());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(outcome.submission.sha256, sha);
}
