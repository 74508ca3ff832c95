//! Calls that fail for good: a candidate whose image cannot be rendered drops out (recorded with
//! its error) and the search goes on; a stage where every call fails stops the session, which
//! keeps its checkpoints and can be resumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use batchbeam_tests::small;
use orchestrator::{Backend, BeamSearch, Engines, SessionState, SessionStore};
use providers::transport::SimulatedTransport;
use providers::{
    GeneratedImage, ImageProvider, ImageRequest, OpenAiProvider, ProviderError, RoleModels, Tier,
};

/// Renders with the simulated model, but refuses every `every`-th image (or every one).
struct Refusing {
    inner: OpenAiProvider,
    seen: AtomicUsize,
    every: usize,
}

#[async_trait]
impl ImageProvider for Refusing {
    async fn generate(&self, r: ImageRequest) -> providers::Result<GeneratedImage> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every) {
            return Err(ProviderError::Refused {
                tier: Tier::Standard,
                status: 400,
                code: Some("moderation_blocked".into()),
                message: "Your request was rejected by the safety system.".into(),
            });
        }
        self.inner.generate(r).await
    }
}

fn engines(every: usize) -> Engines {
    let p = OpenAiProvider::new(Arc::new(SimulatedTransport::new(4)), RoleModels::default());
    Engines::single(
        Tier::Standard,
        Backend {
            llm: Arc::new(p.clone()),
            image: Arc::new(Refusing {
                inner: p.clone(),
                seen: AtomicUsize::new(0),
                every,
            }),
            vision: Arc::new(p),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_image_drops_its_candidate_and_the_search_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let outcome = BeamSearch::start(small("a fox in the snow"), engines(4), store, dir.path())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outcome.folder.join("session.json")).unwrap())
            .unwrap();
    let failed: Vec<&serde_json::Value> = doc["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["failed"].is_string())
        .collect();
    // 12 renders, every 4th refused.
    assert_eq!(failed.len(), 3, "{failed:?}");
    for c in &failed {
        assert!(
            c["failed"].as_str().unwrap().contains("safety system"),
            "{c}"
        );
        assert!(c["image"].is_null() && c["verdict"].is_null());
    }
    assert!(outcome.best.failed.is_none() && outcome.best.image.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_with_nothing_left_stops_the_session_resumably() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let search = BeamSearch::start(
        small("a fox in the snow"),
        engines(1),
        store.clone(),
        dir.path(),
    )
    .await
    .unwrap();
    let id = search.id().to_owned();
    let err = search.run().await.unwrap_err().to_string();
    assert!(
        err.starts_with("stage render of iteration 0: every candidate failed (6 of 6)"),
        "{err}"
    );
    assert!(err.contains("safety system"), "{err}");
    let row = store.session(&id).await.unwrap().unwrap();
    assert_eq!((row.state, row.next_stage), (SessionState::Failed, 1));
    // Once the images render again, the session resumes from its checkpoint and finishes,
    // answering the expansion from the database.
    let outcome = BeamSearch::resume(&id, engines(usize::MAX), store.clone())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    let row = store.session(&id).await.unwrap().unwrap();
    assert_eq!((row.state, row.next_stage), (SessionState::Completed, 6));
    assert_eq!(outcome.stages.len(), 6);
    assert_eq!(outcome.stages[0].kind, "expand_fused");
}
