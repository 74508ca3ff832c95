//! A session stopped at any point resumes from its checkpoints: killed inside a batch stage it
//! finishes with no extra batch and no request billed twice; killed anywhere on a synchronous
//! tier it sends only the calls it has no result for, and ends as an uninterrupted session
//! would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use batchbeam_tests::{batch_rig, small};
use openai_sim::SimConfig;
use orchestrator::{Backend, BeamSearch, Engines, Plan, ProgressEvent, SessionStore};
use providers::transport::SimulatedTransport;
use providers::{
    ChatReply, ChatRequest, CompareRequest, Comparison, GeneratedImage, ImageProvider,
    ImageRequest, JsonReply, JsonRequest, JudgeRequest, Judgement, LlmProvider, OpenAiProvider,
    RoleModels, Tier, VisionJsonRequest, VisionProvider,
};

const IDEA: &str = "an old stone bridge over a misty river at dawn";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_killed_inside_a_batch_stage_resumes_without_a_new_batch() {
    let mut config = SimConfig::default().with_frozen_clock();
    // A batch takes an hour of simulated time: 60 clock ticks of a minute.
    config.timing.queue_secs = 3_600.0;
    let sim = Arc::new(openai_sim::spawn(config).await.unwrap());
    let running = Arc::new(AtomicBool::new(true));
    let ticking = Arc::new(tokio::sync::Mutex::new(()));
    {
        let (sim, running, ticking) = (sim.clone(), running.clone(), ticking.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _tick = ticking.lock().await;
                if running.load(Ordering::SeqCst) {
                    sim.advance_clock(60.0).await;
                }
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let mut params = small(IDEA);
    params.plan = Plan::Fused; // 6 stages; stage 4 renders iteration 1
    let rig = batch_rig(&sim, dir.path()).await;
    let search = BeamSearch::start(params, rig.engines, rig.store, dir.path())
        .await
        .unwrap();
    let id = search.id().to_owned();
    let mut events = search.progress().subscribe();
    let task = tokio::spawn(search.run());
    loop {
        match events.recv().await.unwrap() {
            ProgressEvent::StageStarted { index: 4, .. } => {
                // Stop time before the stage's batch can move.
                running.store(false, Ordering::SeqCst);
                drop(ticking.lock().await);
            }
            ProgressEvent::BatchSubmitted { index: 4, .. } => break,
            _ => {}
        }
    }
    let stats = sim.stats().await;
    assert_eq!(
        stats.batches_created, 5,
        "stage 4's batch is out, unfinished"
    );
    task.abort(); // the process dies
    assert!(task.await.unwrap_err().is_cancelled());
    drop(rig.queue);

    let rig = batch_rig(&sim, dir.path()).await;
    rig.queue.resume().await.unwrap();
    running.store(true, Ordering::SeqCst);
    let outcome = BeamSearch::resume(&id, rig.engines, rig.store)
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.stages.len(), 6);
    let stats = sim.stats().await;
    assert_eq!(
        stats.batches_created, 6,
        "no extra batch: stage 4 waited for its own"
    );
    assert_eq!(
        stats.batch_requests_billed as usize, outcome.calls,
        "no request billed twice"
    );
    let render = &outcome.stages[4];
    assert_eq!(render.batch_ids.len(), 1);
    assert_eq!(stats.sync_requests, 0);
}

/// The simulated models, counting the calls that reach them.
struct Counting {
    inner: OpenAiProvider,
    calls: Arc<AtomicUsize>,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl LlmProvider for Counting {
    async fn chat(&self, r: ChatRequest) -> providers::Result<ChatReply> {
        self.tick();
        self.inner.chat(r).await
    }
    async fn json(&self, r: JsonRequest) -> providers::Result<JsonReply> {
        self.tick();
        self.inner.json(r).await
    }
}

#[async_trait]
impl ImageProvider for Counting {
    async fn generate(&self, r: ImageRequest) -> providers::Result<GeneratedImage> {
        self.tick();
        // Slower than the rest, so that kills land inside render stages too.
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.inner.generate(r).await
    }
}

#[async_trait]
impl VisionProvider for Counting {
    async fn judge(&self, r: JudgeRequest) -> providers::Result<Judgement> {
        self.tick();
        self.inner.judge(r).await
    }
    async fn compare(&self, r: CompareRequest) -> providers::Result<Comparison> {
        self.tick();
        self.inner.compare(r).await
    }
    async fn ask(&self, r: VisionJsonRequest) -> providers::Result<JsonReply> {
        self.tick();
        self.inner.ask(r).await
    }
}

fn counting(calls: &Arc<AtomicUsize>) -> Engines {
    let p = Arc::new(Counting {
        inner: OpenAiProvider::new(Arc::new(SimulatedTransport::new(9)), RoleModels::default()),
        calls: calls.clone(),
    });
    Engines::single(
        Tier::Standard,
        Backend {
            llm: p.clone(),
            image: p.clone(),
            vision: p,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_killed_anywhere_sends_only_what_it_lacks_and_ends_the_same() {
    let mut params = small(IDEA);
    params.plan = Plan::Classic;
    params.seed = 3;
    // The uninterrupted session.
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("a.db")).await.unwrap();
    let whole = Arc::new(AtomicUsize::new(0));
    let reference = BeamSearch::start(params.clone(), counting(&whole), store, dir.path())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(whole.load(Ordering::SeqCst), reference.calls);

    // Killed after a few milliseconds of work, three times over, then left to finish.
    let store = SessionStore::open(&dir.path().join("b.db")).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let search = BeamSearch::start(params, counting(&sent), store.clone(), dir.path())
        .await
        .unwrap();
    let id = search.id().to_owned();
    let task = tokio::spawn(search.run());
    tokio::time::sleep(Duration::from_millis(40)).await;
    task.abort();
    let _ = task.await;
    for pause in [25u64, 60] {
        let task = tokio::spawn(
            BeamSearch::resume(&id, counting(&sent), store.clone())
                .await
                .unwrap()
                .run(),
        );
        tokio::time::sleep(Duration::from_millis(pause)).await;
        task.abort();
        let _ = task.await;
    }
    let row = store.session(&id).await.unwrap().unwrap();
    assert!(row.next_stage < 9, "the kills landed before the end");
    let outcome = BeamSearch::resume(&id, counting(&sent), store.clone())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.best.combined, reference.best.combined);
    assert_eq!(outcome.best_by_iteration, reference.best_by_iteration);
    assert_eq!(outcome.calls, reference.calls);
    // Calls in flight at a kill are sent again (their answers never arrived); nothing else is.
    let resent = sent.load(Ordering::SeqCst) - reference.calls;
    assert!(resent <= 3 * 16, "{resent} calls sent twice");
    assert!(matches!(
        BeamSearch::resume("s_missing", counting(&sent), store).await,
        Err(orchestrator::Error::UnknownSession(_))
    ));
}
