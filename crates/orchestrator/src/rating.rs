//! Session-wide ratings: a Bradley–Terry fit over every comparison a session has made, on an
//! Elo-like scale, so that candidates of different iterations read on one scale.
//!
//! Comparative judging ranks a pool by the share of its comparisons each image won; that share
//! means nothing outside its pool. The parents carried into the next pool link the iterations,
//! so one Bradley–Terry model over all the session's votes places every judged candidate on one
//! scale: `P(i beats j) = s_i / (s_i + s_j)`, each vote one game. Every candidate also plays one
//! virtual draw (half a win) against a fixed average opponent of strength 1: the weak prior that
//! keeps an unbeaten candidate's strength finite and makes the maximum unique. The fit is
//! Hunter's minorization-maximization (MM) iteration, over candidates and pairs in sorted
//! order, so the same comparisons give the same ratings whatever order they were stored in.
//! A strength `s` reads as `400 * log10(s)` plus the one offset that puts the mean rating of the
//! candidates compared in the session's first judged iteration (its first expansion) at 1500:
//! 1500 is the average first attempt, and 400 points are a factor of 10 in the odds of winning
//! (as in chess's Elo). Anchored so, the scale stays put as the session goes on: a candidate
//! that beats the survivors of earlier pools rates above them, and a session that improves
//! sees its best rating rise. (Anchored on the session's mean instead, the scale would sink
//! under the first iteration's best as better candidates join.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::params::JudgingMode;

/// The mean rating of the candidates compared in the session's first judged iteration.
pub const BASE_RATING: f64 = 1500.0;

/// Rating points per factor of 10 in strength (in the odds of winning).
pub const POINTS_PER_DECADE: f64 = 400.0;

/// MM sweeps at most; the fit stops sooner once no log-strength moves by more than
/// [`TOLERANCE`].
const MAX_SWEEPS: usize = 10_000;

/// The largest change of a log-strength at which the fit has converged.
const TOLERANCE: f64 = 1e-10;

/// The virtual games each candidate plays against the average opponent (half of them won).
const PRIOR_GAMES: f64 = 1.0;

/// Which scale a rating is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatingScale {
    /// Comparative judging: the Bradley–Terry fit over the session's comparisons, Elo-like
    /// (1500 = the first expansion's average; +400 = 10 times the odds of winning).
    Elo,
    /// Scoring judging: the absolute 0-10 total the judges gave.
    Score,
}

impl RatingScale {
    /// The scale ratings are on in judging mode `mode`.
    pub fn of(mode: JudgingMode) -> RatingScale {
        match mode {
            JudgingMode::Comparative => RatingScale::Elo,
            JudgingMode::Scoring => RatingScale::Score,
        }
    }
}

/// One compared pair of a judge stage: its two candidates and the votes each won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairResult {
    /// The iteration it was judged in.
    pub iteration: u32,
    /// One candidate.
    pub a: String,
    /// The other.
    pub b: String,
    /// Votes `a` won.
    pub a_votes: u32,
    /// Votes `b` won.
    pub b_votes: u32,
}

impl PairResult {
    /// The candidate that won more votes, `None` on a tie (or no vote).
    pub fn winner(&self) -> Option<&str> {
        match self.a_votes.cmp(&self.b_votes) {
            std::cmp::Ordering::Greater => Some(&self.a),
            std::cmp::Ordering::Less => Some(&self.b),
            std::cmp::Ordering::Equal => None,
        }
    }
}

/// Every candidate named in `results` and its rating, on the [`RatingScale::Elo`] scale,
/// rounded to 0.1: the mean of those compared in the earliest iteration of `results` is 1500.
/// Candidates that only appear in pairs with no vote rate alike.
pub fn fit(results: &[PairResult]) -> BTreeMap<String, f64> {
    // Candidates in sorted order, and each unordered pair's votes summed.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        index.entry(r.a.as_str()).or_insert(0);
        index.entry(r.b.as_str()).or_insert(0);
    }
    for (k, slot) in index.values_mut().enumerate() {
        *slot = k;
    }
    let n = index.len();
    let mut won = vec![PRIOR_GAMES / 2.0; n];
    let mut games: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for r in results {
        let (Some(&i), Some(&j)) = (index.get(r.a.as_str()), index.get(r.b.as_str())) else {
            continue;
        };
        if i == j {
            continue;
        }
        won[i] += f64::from(r.a_votes);
        won[j] += f64::from(r.b_votes);
        *games.entry((i.min(j), i.max(j))).or_insert(0.0) += f64::from(r.a_votes + r.b_votes);
    }
    let games: Vec<(usize, usize, f64)> = games
        .into_iter()
        .filter(|(_, g)| *g > 0.0)
        .map(|((i, j), g)| (i, j, g))
        .collect();
    let mut strength = vec![1.0f64; n];
    for _ in 0..MAX_SWEEPS {
        // Each candidate's expected games weighted by 1 / (s_i + s_j), the prior's included.
        let mut denominator: Vec<f64> = strength.iter().map(|s| PRIOR_GAMES / (s + 1.0)).collect();
        for &(i, j, g) in &games {
            let d = g / (strength[i] + strength[j]);
            denominator[i] += d;
            denominator[j] += d;
        }
        let mut moved = 0.0f64;
        for k in 0..n {
            let next = won[k] / denominator[k];
            moved = moved.max((next.ln() - strength[k].ln()).abs());
            strength[k] = next;
        }
        if moved < TOLERANCE {
            break;
        }
    }
    let points: Vec<f64> = strength
        .iter()
        .map(|s| POINTS_PER_DECADE * s.log10())
        .collect();
    // The anchor: the candidates of the earliest iteration's pairs.
    let first = results.iter().map(|r| r.iteration).min();
    let mut anchor: BTreeSet<usize> = BTreeSet::new();
    for r in results.iter().filter(|r| Some(r.iteration) == first) {
        for id in [&r.a, &r.b] {
            if let Some(&k) = index.get(id.as_str()) {
                anchor.insert(k);
            }
        }
    }
    let offset = if anchor.is_empty() {
        BASE_RATING
    } else {
        BASE_RATING - anchor.iter().map(|&k| points[k]).sum::<f64>() / anchor.len() as f64
    };
    index
        .into_iter()
        .map(|(id, k)| (id.to_owned(), ((points[k] + offset) * 10.0).round() / 10.0))
        .collect()
}

#[cfg(test)]
mod tests;
