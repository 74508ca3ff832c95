//! The Bradley–Terry fit: known small tournaments, transitivity, finite unbeaten ratings,
//! determinism and an ordering that does not depend on how many votes were cast.

use super::*;

fn pair(a: &str, b: &str, a_votes: u32, b_votes: u32) -> PairResult {
    PairResult {
        iteration: 0,
        a: a.into(),
        b: b.into(),
        a_votes,
        b_votes,
    }
}

fn order(ratings: &BTreeMap<String, f64>) -> Vec<String> {
    let mut ids: Vec<&String> = ratings.keys().collect();
    ids.sort_by(|x, y| ratings[*y].total_cmp(&ratings[*x]).then(x.cmp(y)));
    ids.into_iter().cloned().collect()
}

#[test]
fn nothing_compared_rates_nobody() {
    assert!(fit(&[]).is_empty());
    // A pair with no vote: both stay at the prior's 1500.
    let r = fit(&[pair("a", "b", 0, 0)]);
    assert_eq!((r["a"], r["b"]), (1500.0, 1500.0));
}

#[test]
fn two_candidates_2_to_1_solve_the_prior_equations() {
    // By symmetry s_a = x, s_b = 1/x, and the MAP equation for a is
    // 2 + 0.5 = 3 x / (x + 1/x) + x / (x + 1). Solved by bisection here.
    let f = |x: f64| 3.0 * x / (x + 1.0 / x) + x / (x + 1.0) - 2.5;
    let (mut lo, mut hi) = (1.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if f(mid) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let expected = 1500.0 + 400.0 * lo.log10();
    let r = fit(&[pair("a", "b", 2, 1)]);
    assert!((r["a"] - expected).abs() <= 0.05, "{r:?} vs {expected}");
    // Symmetric about the average opponent.
    assert!((r["a"] + r["b"] - 3000.0).abs() <= 0.1, "{r:?}");
    // The prior shrinks: less than the 120.4 points a 2:1 odds ratio alone would give a over
    // 1500, more than nothing.
    assert!(r["a"] > 1500.0 && r["a"] - r["b"] < 2.0 * 120.5, "{r:?}");
}

#[test]
fn an_even_record_rates_even() {
    let r = fit(&[
        pair("a", "b", 3, 3),
        pair("b", "c", 2, 2),
        pair("c", "a", 1, 1),
    ]);
    for id in ["a", "b", "c"] {
        assert!((r[id] - 1500.0).abs() <= 0.1, "{r:?}");
    }
}

#[test]
fn wins_carry_over_to_candidates_that_never_met() {
    // a beat b, b beat c; a and c never met. Ratings are transitive: a > b > c.
    let r = fit(&[pair("a", "b", 3, 0), pair("b", "c", 3, 0)]);
    assert!(r["a"] > r["b"] && r["b"] > r["c"], "{r:?}");
    // And a chain across "iterations": d beat a, who beat b. d rates above everyone.
    let mut results = vec![pair("a", "b", 3, 0), pair("b", "c", 3, 0)];
    results.push(PairResult {
        iteration: 1,
        ..pair("d", "a", 2, 1)
    });
    let r = fit(&results);
    assert_eq!(order(&r), ["d", "a", "b", "c"], "{r:?}");
}

#[test]
fn the_first_iteration_averages_1500_and_later_winners_rate_above_it() {
    let first = vec![
        pair("i0c0", "i0c1", 3, 0),
        pair("i0c0", "i0c2", 2, 1),
        pair("i0c1", "i0c2", 1, 2),
    ];
    let mean_of_first = |r: &BTreeMap<String, f64>| (r["i0c0"] + r["i0c1"] + r["i0c2"]) / 3.0;
    let r = fit(&first);
    assert!((mean_of_first(&r) - 1500.0).abs() <= 0.1, "{r:?}");
    // A child of the next iteration beats its parent, the first iteration's best: it rates
    // above the parent, and the first iteration still averages 1500.
    let mut session = first.clone();
    session.push(PairResult {
        iteration: 1,
        ..pair("i1c0", "i0c0", 3, 0)
    });
    let r = fit(&session);
    assert!((mean_of_first(&r) - 1500.0).abs() <= 0.1, "{r:?}");
    assert!(r["i1c0"] > r["i0c0"] && r["i0c0"] > 1500.0, "{r:?}");
    // However the pairs are stored.
    session.reverse();
    assert_eq!(r, fit(&session));
}

#[test]
fn an_unbeaten_candidate_stays_finite() {
    let r = fit(&[pair("a", "b", 1_000, 0)]);
    assert!(r["a"].is_finite() && r["b"].is_finite(), "{r:?}");
    assert!(r["a"] > r["b"]);
    // More wins, a higher (finite) rating.
    let fewer = fit(&[pair("a", "b", 10, 0)]);
    assert!(r["a"] > fewer["a"], "{r:?} {fewer:?}");
}

#[test]
fn the_same_comparisons_in_any_order_give_the_same_ratings() {
    let results = vec![
        pair("i0c0", "i0c1", 2, 1),
        pair("i0c1", "i0c2", 3, 0),
        pair("i0c2", "i0c0", 1, 2),
        pair("i1c0", "i0c0", 2, 1),
        pair("i1c1", "i0c1", 0, 3),
    ];
    let forward = fit(&results);
    let mut reversed = results.clone();
    reversed.reverse();
    assert_eq!(forward, fit(&reversed));
    // A pair written the other way round is the same pair.
    let mut flipped = results.clone();
    flipped[0] = pair("i0c1", "i0c0", 1, 2);
    assert_eq!(forward, fit(&flipped));
    assert_eq!(forward, fit(&results));
}

#[test]
fn the_order_does_not_depend_on_the_number_of_votes() {
    // Every vote count times 5: the evidence is stronger, the ratings spread further, but the
    // candidates keep their order.
    let base = vec![
        pair("a", "b", 2, 1),
        pair("b", "c", 2, 1),
        pair("a", "c", 3, 0),
        pair("c", "d", 2, 1),
        pair("b", "d", 1, 2),
    ];
    let scaled: Vec<PairResult> = base
        .iter()
        .map(|p| pair(&p.a, &p.b, p.a_votes * 5, p.b_votes * 5))
        .collect();
    let (r1, r5) = (fit(&base), fit(&scaled));
    assert_eq!(order(&r1), order(&r5), "{r1:?} {r5:?}");
    let spread = |r: &BTreeMap<String, f64>| r["a"] - r["d"];
    assert!(spread(&r5) > spread(&r1), "{r1:?} {r5:?}");
}

#[test]
fn the_winner_of_a_pair_is_the_one_with_more_votes() {
    assert_eq!(pair("a", "b", 2, 1).winner(), Some("a"));
    assert_eq!(pair("a", "b", 0, 3).winner(), Some("b"));
    assert_eq!(pair("a", "b", 1, 1).winner(), None);
}

/// A session at the bounds (n 64, m 8, 20 iterations): 1,280 candidates, 50,048 pairs of 3
/// votes, each iteration's candidates a little stronger, the top 8 carried on.
fn long_session() -> Vec<PairResult> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut results = Vec::new();
    let mut parents: Vec<(String, f64)> = Vec::new();
    for it in 0..20u32 {
        let mut pool: Vec<(String, f64)> = (0..64)
            .map(|k| {
                let strength = f64::from(it) * 0.9 + rng.random::<f64>() * 9.0;
                (format!("i{it}c{k}"), strength)
            })
            .collect();
        let children = pool.len();
        pool.extend(parents.iter().cloned());
        for i in 0..pool.len() {
            for j in i + 1..pool.len() {
                if i >= children && j >= children {
                    continue;
                }
                let p = 1.0 / (1.0 + (pool[j].1 - pool[i].1).exp());
                let a_votes = (0..3).filter(|_| rng.random::<f64>() < p).count() as u32;
                results.push(PairResult {
                    iteration: it,
                    a: pool[i].0.clone(),
                    b: pool[j].0.clone(),
                    a_votes,
                    b_votes: 3 - a_votes,
                });
            }
        }
        pool.sort_by(|x, y| y.1.total_cmp(&x.1));
        parents = pool.into_iter().take(8).collect();
    }
    results
}

#[test]
fn a_session_at_the_bounds_fits_to_the_maximum() {
    // Newton's method gets there (first-order MM iterations took 10,000 sweeps and 30 s in a
    // debug build on this session, strengths being far apart; this takes about 2 s).
    let results = long_session();
    let r = fit(&results);
    assert_eq!(r.len(), 1_280);
    assert!(r.values().all(|x| x.is_finite()));
    // At the maximum every candidate's wins (the prior's half included) equal its expected
    // wins, within what rounding the ratings to 0.1 allows.
    let theta = |id: &str| r[id] * std::f64::consts::LN_10 / 400.0;
    let p = |a: f64, b: f64| 1.0 / (1.0 + (b - a).exp());
    let mut residual: BTreeMap<&str, f64> = BTreeMap::new();
    for x in &results {
        let (ta, tb) = (theta(&x.a), theta(&x.b));
        let games = f64::from(x.a_votes + x.b_votes);
        *residual.entry(&x.a).or_insert(0.0) += f64::from(x.a_votes) - games * p(ta, tb);
        *residual.entry(&x.b).or_insert(0.0) += f64::from(x.b_votes) - games * p(tb, ta);
    }
    // The anchor moved every rating by one offset, the prior's opponent too: its level is where
    // the prior's terms sum to zero (the pairs' terms do, wins and losses cancelling).
    let offset = {
        let (mut lo, mut hi) = (-100.0f64, 100.0f64);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            let sum: f64 = r.keys().map(|id| 0.5 - p(theta(id), mid)).sum();
            // A higher opponent wins more of the virtual games: the sum rises with it.
            if sum > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        lo
    };
    for (id, res) in &residual {
        let total = res + 0.5 - p(theta(id), offset);
        assert!(total.abs() < 0.05, "{id}: {total}");
    }
}
