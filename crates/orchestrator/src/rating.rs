//! Session-wide ratings: a Bradley–Terry fit over every comparison a session has made, on an
//! Elo-like scale, so that candidates of different iterations read on one scale.
//!
//! Comparative judging ranks a pool by the share of its comparisons each image won; that share
//! means nothing outside its pool. The parents carried into the next pool link the iterations,
//! so one Bradley–Terry model over all the session's votes places every judged candidate on one
//! scale: `P(i beats j) = s_i / (s_i + s_j)`, each vote one game. Every candidate also plays one
//! virtual draw (half a win) against a fixed average opponent of strength 1: the weak prior that
//! keeps an unbeaten candidate's strength finite and makes the maximum unique. The fit is
//! Newton's method on the log-strengths (each step solved by preconditioned conjugate
//! gradients, halved until the posterior rises), over candidates and pairs in sorted order, so
//! the same comparisons give the same ratings whatever order they were stored in. (Hunter's
//! MM iteration, the textbook fit, needed 10,000 sweeps and 30 s of a debug build for a session
//! at the parameters' bounds, whose strengths lie far apart; Newton takes about 2 s there.)
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

/// Newton steps at most; the fit stops sooner once no candidate's gradient exceeds
/// [`TOLERANCE`].
const MAX_STEPS: usize = 200;

/// The largest gradient of the log-posterior (in games) at which the fit has converged.
const TOLERANCE: f64 = 1e-9;

/// The largest change of a log-strength in one Newton step (e^8: a factor of about 3,000 in
/// strength), so that a step from far away cannot overflow.
const MAX_MOVE: f64 = 8.0;

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
    let points: Vec<f64> = log_strengths(&won, &games)
        .iter()
        .map(|theta| POINTS_PER_DECADE * theta / std::f64::consts::LN_10)
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

/// The log-strengths (natural) that maximise the posterior of candidates that won `won` games
/// (the prior's half game included) in `games` `(i, j, games)`, each also playing the prior's
/// game against strength 1: Newton's method from all-zero, each step solved by conjugate
/// gradients preconditioned by the diagonal, and halved until the posterior rises (it is
/// strictly concave, so this converges to its one maximum).
fn log_strengths(won: &[f64], games: &[(usize, usize, f64)]) -> Vec<f64> {
    let n = won.len();
    let mut theta = vec![0.0f64; n];
    let mut value = log_posterior(&theta, won, games);
    for _ in 0..MAX_STEPS {
        // The gradient, and the negative Hessian as its diagonal and one weight per pair.
        let mut gradient = won.to_vec();
        let mut diagonal = vec![0.0f64; n];
        for (k, t) in theta.iter().enumerate() {
            let p = logistic(*t);
            gradient[k] -= PRIOR_GAMES * p;
            diagonal[k] += PRIOR_GAMES * p * (1.0 - p);
        }
        let weights: Vec<f64> = games
            .iter()
            .map(|&(i, j, g)| {
                let p = logistic(theta[i] - theta[j]);
                gradient[i] -= g * p;
                gradient[j] -= g * (1.0 - p);
                let w = g * p * (1.0 - p);
                diagonal[i] += w;
                diagonal[j] += w;
                w
            })
            .collect();
        if gradient.iter().all(|g| g.abs() < TOLERANCE) {
            break;
        }
        let mut step = solve(&gradient, &diagonal, games, &weights);
        let longest = step.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        if !longest.is_finite() {
            break;
        }
        if longest > MAX_MOVE {
            step.iter_mut().for_each(|d| *d *= MAX_MOVE / longest);
        }
        let mut t = 1.0;
        let improved = loop {
            let next: Vec<f64> = theta.iter().zip(&step).map(|(x, d)| x + t * d).collect();
            let v = log_posterior(&next, won, games);
            if v >= value {
                break Some((next, v));
            }
            t /= 2.0;
            if t < 1e-12 {
                break None;
            }
        };
        match improved {
            Some((next, v)) => (theta, value) = (next, v),
            // No step up: at the maximum as far as f64 tells.
            None => break,
        }
    }
    theta
}

/// The log-posterior (up to a constant) of log-strengths `theta`.
fn log_posterior(theta: &[f64], won: &[f64], games: &[(usize, usize, f64)]) -> f64 {
    let mut v: f64 = theta
        .iter()
        .zip(won)
        .map(|(t, w)| w * t - PRIOR_GAMES * log_sum_exp(*t, 0.0))
        .sum();
    for &(i, j, g) in games {
        v -= g * log_sum_exp(theta[i], theta[j]);
    }
    v
}

/// Solves `H x = b` by conjugate gradients preconditioned by `diagonal`, where `H` is the
/// diagonal less each pair's weight off the diagonal (symmetric positive definite: the prior
/// adds to every diagonal entry).
fn solve(b: &[f64], diagonal: &[f64], games: &[(usize, usize, f64)], weights: &[f64]) -> Vec<f64> {
    let n = b.len();
    let times = |v: &[f64]| {
        let mut out: Vec<f64> = v.iter().zip(diagonal).map(|(x, d)| x * d).collect();
        for (&(i, j, _), w) in games.iter().zip(weights) {
            out[i] -= w * v[j];
            out[j] -= w * v[i];
        }
        out
    };
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let precondition = |r: &[f64]| -> Vec<f64> {
        r.iter()
            .zip(diagonal)
            .map(|(x, d)| if *d > 0.0 { x / d } else { *x })
            .collect()
    };
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1.0);
    let mut x = vec![0.0f64; n];
    let mut r = b.to_vec();
    let mut z = precondition(&r);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    for _ in 0..(2 * n + 20) {
        let hp = times(&p);
        let curvature = dot(&p, &hp);
        if !(curvature > 0.0 && curvature.is_finite()) {
            break;
        }
        let alpha = rz / curvature;
        x.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut().zip(&hp).for_each(|(r, h)| *r -= alpha * h);
        if r.iter().all(|r| r.abs() < 1e-13 * scale) {
            break;
        }
        z = precondition(&r);
        let next = dot(&r, &z);
        let beta = next / rz;
        rz = next;
        p.iter_mut().zip(&z).for_each(|(p, z)| *p = z + beta * *p);
    }
    x
}

/// `1 / (1 + e^-x)`.
fn logistic(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(e^a + e^b)` without overflow.
fn log_sum_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests;
