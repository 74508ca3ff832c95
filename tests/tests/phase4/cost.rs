//! Cost accounting against what was sent: on every tier (standard, flex, batch, hybrid, and
//! flex or batch falling back to standard) and every plan, the cost report counts exactly the
//! calls the simulator served, each on the tier that carried it, and its total is the sum of
//! the per-call costs in `session.json`.

use std::sync::Arc;
use std::time::Duration;

use batchbeam_tests::{Clock, batch_rig_with, client_config, small};
use openai_sim::{
    BatchOutcome, BatchOutcomeRule, FaultConfig, FaultKind, FaultRule, SimConfig, SimHandle,
};
use orchestrator::{BeamSearch, Engines, Hybrid, Plan, SessionOutcome, SessionStore, Turnaround};
use providers::{Operation, ProviderFactory, ProvidersConfig, Tier};

/// Where a session's calls go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    Standard,
    Flex,
    /// Flex, the first chat call refused with a 429: it falls back to standard.
    FlexFallback,
    Batch,
    /// Batch, the first batch and its retry failed: their calls fall back to standard.
    BatchFallback,
    /// By deadline: flex for the writer and judge (gpt-5-mini has flex), standard renders,
    /// batch once the time per stage allows.
    Hybrid,
}

const SETUPS: [Setup; 6] = [
    Setup::Standard,
    Setup::Flex,
    Setup::FlexFallback,
    Setup::Batch,
    Setup::BatchFallback,
    Setup::Hybrid,
];

/// Models offered on every tier, so that flex is priced (gpt-4o-mini has no flex).
fn flex_models(mut config: ProvidersConfig) -> ProvidersConfig {
    config.models.llm = "gpt-5-mini".into();
    config.models.vision = "gpt-5-mini".into();
    config
}

async fn session(plan: Plan, setup: Setup) -> (SessionOutcome, serde_json::Value, Arc<SimHandle>) {
    let mut faults = FaultConfig::default();
    if setup == Setup::FlexFallback {
        faults = faults.with_rule(
            FaultRule::new(FaultKind::RateLimit)
                .on("POST", "/v1/chat/completions")
                .next(1),
        );
    }
    if setup == Setup::BatchFallback {
        faults = faults.with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail).next(2));
    }
    let mut sim_config = SimConfig::default().with_frozen_clock().with_faults(faults);
    sim_config.flex_delay_secs = 0.0;
    let sim = Arc::new(openai_sim::spawn(sim_config).await.unwrap());
    let _clock = Clock::start(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut params = small("a lighthouse in a storm");
    (params.n, params.m, params.plan) = (2, 1, plan);
    let deadline = Duration::from_secs(5_400);
    let (engines, store): (Engines, SessionStore) = match setup {
        Setup::Standard | Setup::Flex | Setup::FlexFallback => {
            let mut config = ProvidersConfig::default();
            if setup != Setup::Standard {
                config = flex_models(config);
                for op in Operation::ALL {
                    config = config.with_tier(op, Tier::Flex);
                }
            }
            let factory = ProviderFactory::new(config).with_client(client_config(&sim));
            let store = SessionStore::open(&dir.path().join("batchbeam.db"))
                .await
                .unwrap();
            (Engines::from_factory(&factory, None).unwrap(), store)
        }
        Setup::Batch | Setup::BatchFallback | Setup::Hybrid => {
            let mut config = ProvidersConfig::default();
            config.batch.enabled = true;
            let hybrid = (setup == Setup::Hybrid).then(|| {
                config = flex_models(config.clone());
                Hybrid {
                    deadline,
                    turnaround: Turnaround::default(),
                }
            });
            let rig = batch_rig_with(&sim, dir.path(), config, hybrid).await;
            (rig.engines, rig.store)
        }
    };
    let mut search = BeamSearch::start(params, engines, store, dir.path())
        .await
        .unwrap();
    if setup == Setup::Hybrid {
        search = search.with_deadline(deadline);
    }
    let outcome = search.run().await.unwrap();
    let json = std::fs::read(outcome.folder.join("session.json")).unwrap();
    (outcome, serde_json::from_slice(&json).unwrap(), sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_counts_and_prices_every_call_sent_on_every_tier_and_plan() {
    for plan in Plan::ALL {
        for setup in SETUPS {
            let (outcome, doc, sim) = session(plan, setup).await;
            let what = format!("{plan} on {setup:?}");
            let stats = sim.stats().await;
            let report = &outcome.report;
            let served = stats.sync_requests + stats.batch_requests_billed;
            let sent = outcome.calls as u64;
            // Every call was served once: nothing sent twice, not even a fallback.
            assert_eq!(served, sent, "{what}: {stats:?}\n{report}");
            assert_eq!(report.total.calls, sent, "{what}:\n{report}");
            assert_eq!(report.total.unpriced, 0, "{what}: {:?}", report.notes);

            // The total is the sum of the calls' own costs, as session.json lists them.
            let calls = doc["calls"]["calls"].as_array().unwrap();
            assert_eq!(calls.len() as u64, sent, "{what}");
            let summed: f64 = calls.iter().map(|c| c["cost"].as_f64().unwrap()).sum();
            assert!(
                (summed - report.total.cost).abs() < 1e-9,
                "{what}: {summed} vs {}",
                report.total.cost
            );
            assert!(report.total.cost > 0.0, "{what}");
            assert_eq!(doc["cost"]["total"]["calls"].as_u64(), Some(sent), "{what}");

            // Each call on the tier that carried it, and where it fell back from.
            let rows: Vec<(Tier, Option<Tier>)> = report
                .rows
                .iter()
                .map(|r| (r.tier, r.fallback_from))
                .collect();
            let has = |tier, from| rows.contains(&(tier, from));
            match setup {
                Setup::Standard => assert!(rows.iter().all(|r| *r == (Tier::Standard, None))),
                Setup::Flex => {
                    // The image endpoint has no flex: renders fall back to standard.
                    assert!(has(Tier::Flex, None), "{what}: {rows:?}");
                    let render = report
                        .rows
                        .iter()
                        .find(|r| r.operation == Operation::Render)
                        .unwrap();
                    assert_eq!(
                        (render.tier, render.fallback_from),
                        (Tier::Standard, Some(Tier::Flex))
                    );
                    assert_eq!(stats.batch_requests_billed, 0);
                }
                Setup::FlexFallback => {
                    let chat_fell_back = report.rows.iter().any(|r| {
                        r.operation != Operation::Render && r.fallback_from == Some(Tier::Flex)
                    });
                    assert!(chat_fell_back, "{what}:\n{report}");
                }
                Setup::Batch => {
                    assert!(rows.iter().all(|r| *r == (Tier::Batch, None)), "{what}");
                    let batch = report.tier_totals(Tier::Batch);
                    assert!(batch.cost <= 0.5 * batch.standard_cost + 1e-9);
                }
                Setup::BatchFallback => {
                    assert!(has(Tier::Standard, Some(Tier::Batch)), "{what}:\n{report}");
                    assert!(has(Tier::Batch, None), "{what}:\n{report}");
                    assert!(stats.sync_requests > 0);
                }
                Setup::Hybrid => {
                    assert!(has(Tier::Flex, None), "{what}:\n{report}");
                    assert!(
                        has(Tier::Standard, None) || has(Tier::Batch, None),
                        "{what}"
                    );
                }
            }
            // The table shows where a fallback came from.
            let text = report.to_string();
            if rows.iter().any(|(_, from)| *from == Some(Tier::Batch)) {
                assert!(text.contains("batch→standard"), "{text}");
            }
            if rows.iter().any(|(_, from)| *from == Some(Tier::Flex)) {
                assert!(text.contains("flex→standard"), "{text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hybrid_mode_keeps_gpt_4o_mini_off_flex() {
    // gpt-4o-mini has no flex tier (OpenAI refuses service_tier flex for it): with a deadline
    // that would pick flex, its stages go to standard, and every call is priced on its tier.
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let _clock = Clock::start(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProvidersConfig::default();
    config.batch.enabled = true;
    let deadline = Duration::from_secs(5_400);
    let hybrid = Hybrid {
        deadline,
        turnaround: Turnaround::default(),
    };
    let rig = batch_rig_with(&sim, dir.path(), config, Some(hybrid)).await;
    let outcome = BeamSearch::start(small("a koi pond"), rig.engines, rig.store, dir.path())
        .await
        .unwrap()
        .with_deadline(deadline)
        .run()
        .await
        .unwrap();
    assert!(
        outcome.stages.iter().all(|s| s.tier != "flex"),
        "{:?}",
        outcome.stages
    );
    let stats = sim.stats().await;
    assert_eq!(
        outcome.report.total.calls,
        stats.sync_requests + stats.batch_requests_billed
    );
    assert_eq!(outcome.report.total.unpriced, 0);
}
