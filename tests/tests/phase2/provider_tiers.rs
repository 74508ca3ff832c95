//! Provider conformance: one script run against every tier (simulated in process, standard and
//! flex against a spawned openai-sim, batch through the queue) gives results of the same shape,
//! and, with the same seed, the same content; flex falls back to standard on 429 and timeouts;
//! the mocks stand in for the traits.

use std::sync::Arc;
use std::time::Duration;

use batch_client::{ApiKey, ClientConfig, OpenAiClient, RetryPolicy};
use openai_sim::{
    BatchOutcome, BatchOutcomeRule, FaultConfig, FaultKind, FaultRule, SimConfig, SimHandle,
};
use providers::transport::{FlexTransport, SimulatedTransport, StandardTransport};
use providers::{BatchMode, BatchTransport};
use providers::{
    ChatRequest, CompareRequest, ImageProvider, ImageRequest, JsonRequest, JudgeRequest,
    LlmProvider, OpenAiProvider, Operation, ProviderError, RoleModels, Side, Tier, Transport,
    VisionProvider,
};
use serde_json::{Value, json};

const SEED: u64 = 7;
const IDEA: &str = "a lighthouse in a storm";

/// PNG bytes that show only their size when a comparison fails.
#[derive(PartialEq)]
struct Png(Vec<u8>);

impl std::fmt::Debug for Png {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Png({} bytes)", self.0.len())
    }
}

/// What the script saw, without the tier: equal transcripts mean equal content.
#[derive(Debug, PartialEq)]
struct Transcript {
    text: String,
    json: Value,
    pngs: Vec<Png>,
    judgement: (f64, f64, f64, String, Vec<String>, Vec<String>),
    comparison: (Side, String, Vec<String>, Vec<String>),
    usage: Vec<batch_format::Usage>,
    models: Vec<String>,
}

fn candidate_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"what": {"type": "string"}, "how": {"type": "string"}, "combined": {"type": "string"}},
        "required": ["what", "how", "combined"],
        "additionalProperties": false
    })
}

/// The conformance script: every call the pipeline makes, with the shape checks every tier
/// must pass. `tiers` are the tiers a result may report.
async fn conform<P>(p: &P, tiers: &[Tier]) -> Transcript
where
    P: LlmProvider + ImageProvider + VisionProvider,
{
    let mut usage = Vec::new();
    let mut models = Vec::new();
    let mut seen = |meta: &providers::CallMeta| {
        assert!(
            tiers.contains(&meta.tier),
            "tier {} not in {tiers:?}",
            meta.tier
        );
        assert!(!meta.model.is_empty());
        usage.push(meta.usage);
        models.push(meta.model.clone());
    };

    let chat = p
        .chat(ChatRequest::new(Operation::Expand, format!("Idea: {IDEA}")).with_seed(1))
        .await
        .expect("chat");
    assert!(
        chat.text.contains("WHAT:") && chat.text.contains("HOW:"),
        "{}",
        chat.text
    );
    assert_eq!(chat.finish_reason.as_deref(), Some("stop"));
    assert!(chat.meta.usage.input_tokens > 0 && chat.meta.usage.output_tokens > 0);
    seen(&chat.meta);

    let json = p
        .json(JsonRequest {
            chat: ChatRequest::new(Operation::Expand, format!("Idea: {IDEA}\n\nCandidate: 2"))
                .with_system("Write one candidate as JSON."),
            schema_name: "candidate".into(),
            schema: candidate_schema(),
        })
        .await
        .expect("json");
    for key in ["what", "how", "combined"] {
        assert!(
            json.value[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} in {}",
            json.value
        );
    }
    seen(&json.meta);

    let mut pngs = Vec::new();
    for prompt in [
        json.value["combined"].as_str().unwrap_or(IDEA).to_owned(),
        "a teapot".to_owned(),
    ] {
        let image = p
            .generate(ImageRequest::new(prompt.clone()))
            .await
            .expect("image");
        assert_eq!(
            openai_sim::models::read_prompt(&image.png).as_deref(),
            Some(prompt.as_str())
        );
        seen(&image.meta);
        pngs.push(Png(image.png));
    }

    let judgement = p
        .judge(JudgeRequest {
            idea: IDEA.into(),
            image: pngs[0].0.clone(),
            detail: None,
            alpha: 0.7,
            vote: 0,
            seed: None,
            key: None,
        })
        .await
        .expect("judge");
    for s in [judgement.alignment, judgement.aesthetic, judgement.total] {
        assert!((0.0..=10.0).contains(&s), "{judgement:?}");
    }
    let expect = 0.7 * judgement.alignment + 0.3 * judgement.aesthetic;
    assert!((judgement.total - expect).abs() < 1e-9);
    assert!(!judgement.reasons.is_empty());
    seen(&judgement.meta);

    let comparison = p
        .compare(CompareRequest {
            idea: IDEA.into(),
            image_a: pngs[1].0.clone(),
            image_b: pngs[0].0.clone(),
            detail: None,
            alpha: 0.7,
            vote: 1,
            seed: None,
            key: None,
        })
        .await
        .expect("compare");
    let (a, b) = (comparison.ranks_a, comparison.ranks_b);
    for (x, y) in [
        (a.total, b.total),
        (a.alignment, b.alignment),
        (a.aesthetic, b.aesthetic),
    ] {
        assert_eq!((x.min(y), x.max(y)), (1, 2), "{comparison:?}");
    }
    let winner_ranks = if comparison.winner == Side::A { a } else { b };
    assert_eq!(winner_ranks.total, 1);
    // The lighthouse (B) shows the idea; the teapot does not.
    assert_eq!(comparison.winner, Side::B, "{comparison:?}");
    seen(&comparison.meta);

    Transcript {
        text: chat.text,
        json: json.value,
        pngs,
        judgement: (
            judgement.alignment,
            judgement.aesthetic,
            judgement.total,
            judgement.reasons,
            judgement.strengths,
            judgement.weaknesses,
        ),
        comparison: (
            comparison.winner,
            comparison.reasons,
            comparison.strengths,
            comparison.weaknesses,
        ),
        usage,
        models,
    }
}

/// A refused request has the same shape on every tier: an error with the model's status.
async fn conform_refusal(transport: Arc<dyn Transport>) {
    let models = RoleModels {
        llm: "no-such-model".into(),
        ..RoleModels::default()
    };
    let p = OpenAiProvider::new(transport.clone(), models);
    let err = p
        .chat(ChatRequest::new(Operation::Refine, "Idea: x"))
        .await
        .expect_err("an unknown model is refused");
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(err.to_string().contains("no-such-model"), "{err}");
    let p = OpenAiProvider::new(transport, RoleModels::default());
    let err = p
        .judge(JudgeRequest {
            idea: IDEA.into(),
            image: b"GIF89a".to_vec(),
            detail: None,
            alpha: 0.7,
            vote: 0,
            seed: None,
            key: None,
        })
        .await
        .expect_err("not a PNG");
    assert!(matches!(err, ProviderError::InvalidRequest(_)), "{err}");
}

fn client(sim: &openai_sim::SimHandle) -> OpenAiClient {
    OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new("sk-test")).with_retry(RetryPolicy::fast()),
    )
    .expect("client")
}

fn provider(t: impl Transport + 'static) -> OpenAiProvider {
    OpenAiProvider::new(Arc::new(t), RoleModels::default())
}

#[tokio::test]
async fn simulated_standard_and_flex_conform_and_agree() {
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_time_scale(1000.0))
        .await
        .expect("sim");

    let simulated = conform(&provider(SimulatedTransport::new(SEED)), &[Tier::Simulated]).await;
    let standard = conform(
        &provider(StandardTransport::new(client(&sim))),
        &[Tier::Standard],
    )
    .await;
    assert_eq!(
        simulated, standard,
        "standard over HTTP answers what the models answer"
    );

    let flex = FlexTransport::new(client(&sim), client(&sim), Duration::from_secs(30), false);
    // Images have no flex tier: they go to standard and say so.
    let flex = conform(&provider(flex), &[Tier::Flex, Tier::Standard]).await;
    assert_eq!(
        flex, standard,
        "the tier that carries a request changes how fast it is answered, not what it says"
    );

    conform_refusal(Arc::new(SimulatedTransport::new(SEED))).await;
    conform_refusal(Arc::new(StandardTransport::new(client(&sim)))).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn flex_falls_back_to_standard_on_a_rate_limit_and_records_it() {
    let faults = FaultConfig::default().with_rule(
        FaultRule::new(FaultKind::RateLimit)
            .on("POST", "/v1/chat/completions")
            .next(1),
    );
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_faults(faults))
        .await
        .expect("sim");
    let no_retry = OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new("sk-test")).with_retry(RetryPolicy::NONE),
    )
    .expect("client");
    let flex = provider(FlexTransport::new(
        no_retry,
        client(&sim),
        Duration::from_secs(30),
        true,
    ));
    let request = ChatRequest::new(Operation::Critique, format!("Idea: {IDEA}"));
    let reply = flex.chat(request.clone()).await.expect("fell back");
    assert_eq!(reply.meta.tier, Tier::Standard);
    assert_eq!(reply.meta.fallback_from, Some(Tier::Flex));
    let standard = provider(SimulatedTransport::new(SEED))
        .chat(request.clone())
        .await
        .unwrap();
    assert_eq!(
        reply.text, standard.text,
        "the fallback sends the standard body"
    );
    // The fault fired once: the next call is served by flex itself.
    let reply = flex.chat(request).await.expect("flex");
    assert_eq!(
        (reply.meta.tier, reply.meta.fallback_from),
        (Tier::Flex, None)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn flex_times_out_into_standard_or_into_an_error() {
    // Flex waits 5 s of simulated time at time scale 1: longer than the 200 ms limit.
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED))
        .await
        .expect("sim");
    let limit = Duration::from_millis(200);
    let request = ChatRequest::new(Operation::Refine, format!("Idea: {IDEA}"));

    let flex = provider(FlexTransport::new(client(&sim), client(&sim), limit, true));
    let reply = flex.chat(request.clone()).await.expect("fell back");
    assert_eq!(
        (reply.meta.tier, reply.meta.fallback_from),
        (Tier::Standard, Some(Tier::Flex))
    );

    let strict = provider(FlexTransport::new(client(&sim), client(&sim), limit, false));
    match strict.chat(request).await {
        Err(
            e @ ProviderError::Timeout {
                tier: Tier::Flex, ..
            },
        ) => assert!(e.is_busy_or_slow()),
        other => panic!("expected a flex timeout, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_factory_builds_every_operation_on_its_configured_tier() {
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_time_scale(1000.0))
        .await
        .expect("sim");
    let config = providers::ProvidersConfig {
        simulated_seed: SEED,
        ..Default::default()
    }
    .with_tier(Operation::Expand, Tier::Simulated)
    .with_tier(Operation::Render, Tier::Standard)
    .with_tier(Operation::Judge, Tier::Simulated);
    let built = providers::ProviderFactory::new(config)
        .with_client(ClientConfig::new(sim.base_url(), ApiKey::new("sk-test")))
        .build()
        .expect("factory");
    let reply = built
        .llm()
        .chat(ChatRequest::new(Operation::Expand, format!("Idea: {IDEA}")))
        .await
        .unwrap();
    assert_eq!(reply.meta.tier, Tier::Simulated);
    let reply = built
        .llm()
        .chat(ChatRequest::new(
            Operation::Combine,
            "WHAT: a fox\nHOW: chiaroscuro\n\nCombine them.",
        ))
        .await
        .unwrap();
    assert_eq!(reply.meta.tier, Tier::Standard);
    let image = built
        .image()
        .generate(ImageRequest::new("a fox"))
        .await
        .unwrap();
    assert_eq!(image.meta.tier, Tier::Standard);
    let judged = built
        .vision()
        .judge(JudgeRequest {
            idea: "a fox".into(),
            image: image.png,
            detail: None,
            alpha: 0.5,
            vote: 0,
            seed: None,
            key: None,
        })
        .await
        .unwrap();
    assert_eq!(judged.meta.tier, Tier::Simulated);
    assert_eq!(
        sim.stats().await.sync_requests,
        2,
        "only combine and render went over HTTP"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn mocks_stand_in_for_the_traits() {
    let mut llm = providers::MockLlmProvider::new();
    llm.expect_chat().times(1).returning(|req| {
        Ok(providers::ChatReply {
            text: format!("echo: {}", req.user),
            finish_reason: Some("stop".into()),
            meta: providers::CallMeta {
                tier: Tier::Batch,
                fallback_from: None,
                model: "mock".into(),
                usage: batch_format::Usage::default(),
                cached: false,
            },
        })
    });
    let llm: Arc<dyn LlmProvider> = Arc::new(llm);
    let reply = llm
        .chat(ChatRequest::new(Operation::Critique, "hi"))
        .await
        .unwrap();
    assert_eq!(
        (reply.text.as_str(), reply.meta.tier),
        ("echo: hi", Tier::Batch)
    );

    let mut vision = providers::MockVisionProvider::new();
    vision
        .expect_judge()
        .returning(|_| Err(ProviderError::InvalidRequest("no image".into())));
    assert!(
        vision
            .judge(JudgeRequest {
                idea: "x".into(),
                image: vec![],
                detail: None,
                alpha: 0.7,
                vote: 0,
                seed: None,
                key: None,
            })
            .await
            .is_err()
    );
    let _image: Box<dyn ImageProvider> = Box::new(providers::MockImageProvider::new());
}

/// A batch queue over `sim`, its database and files in `dir`.
async fn queue(
    sim: &SimHandle,
    dir: &std::path::Path,
    queue_config: batch_queue::QueueConfig,
) -> Arc<batch_queue::BatchRequestQueue> {
    let mut config = batch_client::ManagerConfig::new(dir.join("files"));
    config.poll_interval = Duration::from_millis(2);
    config.poll_ceiling = Duration::from_millis(5);
    let manager =
        batch_client::BatchJobManager::open(client(sim), &dir.join("batchbeam.db"), config)
            .await
            .expect("manager");
    let queue = batch_queue::BatchRequestQueue::new(Arc::new(manager), client(sim), queue_config)
        .await
        .expect("queue");
    Arc::new(queue)
}

#[tokio::test]
async fn batch_conforms_and_agrees_with_the_other_tiers() {
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_time_scale(1000.0))
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = BatchTransport::new(
        queue(&sim, dir.path(), Default::default()).await,
        BatchMode::Immediate,
    );
    let batch = conform(&provider(batch), &[Tier::Batch]).await;
    let simulated = conform(&provider(SimulatedTransport::new(SEED)), &[Tier::Simulated]).await;
    assert_eq!(
        batch, simulated,
        "a batch line gets the answer the models give"
    );
    let stats = sim.stats().await;
    assert_eq!(
        stats.sync_requests, 0,
        "nothing went to the synchronous API"
    );
    assert_eq!(stats.batch_requests_billed, 6);
    conform_refusal(Arc::new(BatchTransport::new(
        queue(&sim, &dir.path().join("refusal"), Default::default()).await,
        BatchMode::Immediate,
    )))
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_falls_back_to_standard_and_says_so() {
    let faults =
        FaultConfig::default().with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail));
    let sim = openai_sim::spawn(
        SimConfig::default()
            .with_seed(SEED)
            .with_time_scale(1000.0)
            .with_faults(faults),
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    // No retry in a later batch: a failed batch goes straight to the standard API.
    let no_retry = batch_queue::QueueConfig {
        max_retries: 0,
        ..Default::default()
    };
    let q = queue(&sim, dir.path(), no_retry).await;
    let p = provider(BatchTransport::new(q, BatchMode::Immediate));
    let request = ChatRequest::new(Operation::Critique, format!("Idea: {IDEA}"));
    let reply = p.chat(request.clone()).await.expect("fell back");
    assert_eq!(
        (reply.meta.tier, reply.meta.fallback_from),
        (Tier::Standard, Some(Tier::Batch))
    );
    let simulated = provider(SimulatedTransport::new(SEED))
        .chat(request)
        .await
        .unwrap();
    assert_eq!(reply.text, simulated.text);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_calls_wait_for_the_stage_barrier() {
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_time_scale(1000.0))
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let q = queue(&sim, dir.path(), Default::default()).await;
    let p = Arc::new(provider(BatchTransport::new(
        q.clone(),
        BatchMode::Deferred,
    )));
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                let request = ChatRequest::new(Operation::Expand, format!("Idea: {IDEA}"));
                p.chat(request.with_seed(i)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        calls.iter().all(|c| !c.is_finished()),
        "nothing runs before the barrier"
    );
    assert_eq!(sim.stats().await.batches_created, 0);
    q.flush().await.expect("flush");
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the barrier released the call")
            .expect("task")
            .expect("reply");
        assert_eq!(reply.meta.tier, Tier::Batch);
    }
    assert_eq!(
        sim.stats().await.batches_created,
        1,
        "one batch for the stage"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn batch_settings_route_judging_through_the_queue() {
    let sim = openai_sim::spawn(SimConfig::default().with_seed(SEED).with_time_scale(1000.0))
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = providers::ProvidersConfig {
        simulated_seed: SEED,
        ..Default::default()
    };
    config.batch.enabled = true;
    config.batch.mode = BatchMode::Immediate;
    config.batch.llm_enabled = false;
    let config = config.with_tier(Operation::Render, Tier::Simulated);
    let q = queue(&sim, dir.path(), config.queue_config()).await;
    let built = providers::ProviderFactory::new(config)
        .with_client(ClientConfig::new(sim.base_url(), ApiKey::new("sk-test")))
        .with_queue(q)
        .build()
        .expect("factory");
    assert_eq!(built.tier_for(Operation::Judge), Tier::Batch);
    assert_eq!(
        built.tier_for(Operation::Critique),
        Tier::Standard,
        "LLM batching is off"
    );
    let image = built
        .image()
        .generate(ImageRequest::new(IDEA))
        .await
        .unwrap();
    assert_eq!(image.meta.tier, Tier::Simulated);
    let judged = built
        .vision()
        .judge(JudgeRequest {
            idea: IDEA.into(),
            image: image.png,
            detail: None,
            alpha: 0.7,
            vote: 0,
            seed: None,
            key: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (judged.meta.tier, judged.meta.fallback_from),
        (Tier::Batch, None)
    );
    assert_eq!(sim.stats().await.batches_created, 1);
    sim.shutdown().await;
}
