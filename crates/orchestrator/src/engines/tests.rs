//! Tier routing: hybrid picks, and a tier without a backend.

use super::*;

#[test]
fn hybrid_picks_the_cheapest_tier_that_fits() {
    let h = Hybrid {
        deadline: Duration::from_secs(3600 * 24),
        turnaround: Turnaround::default(),
    };
    let all = [Tier::Standard, Tier::Flex, Tier::Batch];
    let hours = |n: u64| Duration::from_secs(n * 3600);
    // A day for 9 stages: batch fits (1 h each).
    assert_eq!(h.pick(&all, hours(24), 9), Some(Tier::Batch));
    // 3 hours for 9 stages (20 min each): flex fits, batch does not.
    assert_eq!(h.pick(&all, hours(3), 9), Some(Tier::Flex));
    // 9 minutes for 9 stages: only standard.
    assert_eq!(
        h.pick(&all, Duration::from_secs(540), 9),
        Some(Tier::Standard)
    );
    // Past the deadline: the fastest there is.
    assert_eq!(h.pick(&all, Duration::ZERO, 3), Some(Tier::Standard));
    // Render has no flex: a 20-minute share goes to standard.
    assert_eq!(
        h.pick(&[Tier::Standard, Tier::Batch], hours(3), 9),
        Some(Tier::Standard)
    );
}

#[test]
fn a_tier_without_a_backend_is_an_error_naming_it() {
    let provider = providers::MockLlmProvider::new();
    let backend = Backend {
        llm: Arc::new(provider),
        image: Arc::new(providers::MockImageProvider::new()),
        vision: Arc::new(providers::MockVisionProvider::new()),
    };
    let engines = Engines::single(Tier::Standard, backend);
    assert!(engines.backend(Tier::Standard).is_ok());
    let err = engines.backend(Tier::Batch).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoBackend {
                tier: Tier::Batch,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("batch") && text.contains("standard"),
        "{text}"
    );
    assert!(engines.barrier(Tier::Flex).is_err());
}
