//! When a stage's progress is worth an event.

use super::Tally;

fn reports(total: usize, reused: usize) -> Vec<usize> {
    let mut tally = Tally::new(total, reused);
    (reused..total).filter_map(|_| tally.one_more()).collect()
}

#[test]
fn a_small_stage_reports_every_call() {
    assert_eq!(reports(3, 0), [1, 2, 3]);
    assert_eq!(reports(20, 0), (1..=20).collect::<Vec<_>>());
    // Calls from checkpoints count as done from the start.
    assert_eq!(reports(5, 2), [3, 4, 5]);
}

#[test]
fn a_large_stage_reports_every_twentieth_and_the_last_call() {
    let r = reports(189, 0);
    assert_eq!(r.len(), 20, "{r:?}");
    assert_eq!(r.last(), Some(&189));
    // Reports 5% apart (189 / 20 = 9.45 calls).
    assert!(r.windows(2).all(|w| w[1] - w[0] >= 9), "{r:?}");
    let r = reports(1_000, 500);
    assert_eq!(r.len(), 10, "{r:?}");
    assert_eq!(r.first(), Some(&550));
}

#[test]
fn an_empty_stage_reports_nothing() {
    assert!(reports(0, 0).is_empty());
}
