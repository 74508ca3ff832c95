//! `ImageRanker`: every vote of a judge stage at once (never one comparison after another), then
//! the pool ranked from them. Scoring mode averages each image's scores over its votes;
//! comparative mode compares every pair of the pool except parent with parent (their order is
//! known), swaps A/B at random per vote against position bias, and ranks by majority wins.

use batch_format::ImageDetail;
use providers::{CompareRequest, Comparison, JudgeRequest, Judgement, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Verdict, merge_words};
use crate::components::seed_for;
use crate::params::JudgingMode;

/// One member of the pool being ranked.
#[derive(Debug, Clone)]
pub struct Entrant {
    /// Its rank in the previous pool, for a parent (its order among parents is known).
    pub prior_rank: Option<u32>,
    /// Its verdict from before, for a parent (scoring mode keeps it: scores are absolute).
    pub prior: Option<Verdict>,
}

/// One vote to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ballot {
    /// Score entrant `who` alone (vote `vote`).
    Score {
        /// The entrant.
        who: usize,
        /// The vote's index.
        vote: u32,
    },
    /// Compare entrants `first` and `second` (first < second); `swapped` shows `second` as A.
    Pair {
        /// The entrant with the lower index.
        first: usize,
        /// The other.
        second: usize,
        /// The vote's index.
        vote: u32,
        /// Whether `second` is shown first (as A).
        swapped: bool,
    },
}

/// What one vote said, in pool terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VoteResult {
    /// A score.
    Score {
        /// 0-10.
        alignment: f64,
        /// 0-10.
        aesthetic: f64,
        /// The weighted total.
        total: f64,
        /// Why.
        reasons: String,
        /// What works.
        strengths: Vec<String>,
        /// What does not.
        weaknesses: Vec<String>,
    },
    /// A comparison, with A/B already mapped back to the pair's first and second entrant.
    Pair {
        /// The first entrant won overall.
        first_wins: bool,
        /// The first entrant won on alignment.
        first_aligns: bool,
        /// The first entrant won on aesthetics.
        first_pleases: bool,
        /// Why.
        reasons: String,
        /// What the winner does well.
        strengths: Vec<String>,
        /// What the loser lacks.
        weaknesses: Vec<String>,
    },
}

impl VoteResult {
    /// A judgement as a vote.
    pub fn from_judgement(j: &Judgement) -> VoteResult {
        VoteResult::Score {
            alignment: j.alignment,
            aesthetic: j.aesthetic,
            total: j.total,
            reasons: j.reasons.clone(),
            strengths: j.strengths.clone(),
            weaknesses: j.weaknesses.clone(),
        }
    }

    /// A comparison as a vote, `swapped` when the pair's second entrant was shown as A.
    pub fn from_comparison(c: &Comparison, swapped: bool) -> VoteResult {
        let first_side = if swapped { Side::B } else { Side::A };
        let first_ranks = if swapped { c.ranks_b } else { c.ranks_a };
        VoteResult::Pair {
            first_wins: c.winner == first_side,
            first_aligns: first_ranks.alignment == 1,
            first_pleases: first_ranks.aesthetic == 1,
            reasons: c.reasons.clone(),
            strengths: c.strengths.clone(),
            weaknesses: c.weaknesses.clone(),
        }
    }
}

/// Ranks images for an idea.
#[derive(Debug, Clone)]
pub struct ImageRanker {
    /// The user's idea.
    pub idea: String,
    /// Weight of alignment.
    pub alpha: f64,
    /// Votes per judgement.
    pub ensemble: u32,
    /// Scoring or comparative.
    pub mode: JudgingMode,
    /// The detail level judges see images at.
    pub detail: ImageDetail,
    /// The session's seed (A/B swaps).
    pub seed: u64,
}

impl ImageRanker {
    /// Every vote needed to rank `pool` in iteration `iteration`.
    pub fn ballots(&self, iteration: u32, pool: &[Entrant]) -> Vec<Ballot> {
        let mut out = Vec::new();
        match self.mode {
            JudgingMode::Scoring => {
                for (who, e) in pool.iter().enumerate() {
                    if e.prior.is_none() {
                        out.extend((0..self.ensemble).map(|vote| Ballot::Score { who, vote }));
                    }
                }
            }
            JudgingMode::Comparative => {
                for first in 0..pool.len() {
                    for second in first + 1..pool.len() {
                        if pool[first].prior_rank.is_some() && pool[second].prior_rank.is_some() {
                            continue;
                        }
                        for vote in 0..self.ensemble {
                            let salt = format!("swap/{iteration}/{first}/{second}/{vote}");
                            let swapped = ChaCha8Rng::seed_from_u64(
                                seed_for(self.seed, &salt).unsigned_abs(),
                            )
                            .random_bool(0.5);
                            out.push(Ballot::Pair {
                                first,
                                second,
                                vote,
                                swapped,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The request of a scoring ballot.
    pub fn judge_request(&self, image: Vec<u8>, vote: u32) -> JudgeRequest {
        JudgeRequest {
            idea: self.idea.clone(),
            image,
            detail: Some(self.detail),
            alpha: self.alpha,
            vote,
            seed: None,
            key: None,
        }
    }

    /// The request of a pair ballot: `a` shown first.
    pub fn compare_request(&self, a: Vec<u8>, b: Vec<u8>, vote: u32) -> CompareRequest {
        CompareRequest {
            idea: self.idea.clone(),
            image_a: a,
            image_b: b,
            detail: Some(self.detail),
            alpha: self.alpha,
            vote,
            seed: None,
            key: None,
        }
    }

    /// The pool's verdicts from its ballots' results (a failed vote is `None` and simply does
    /// not count), each with its rank in the pool. An entrant with no vote and no prior verdict
    /// gets none and ranks last.
    pub fn rank(
        &self,
        pool: &[Entrant],
        votes: &[(Ballot, Option<VoteResult>)],
    ) -> Vec<Option<Verdict>> {
        let mut verdicts = match self.mode {
            JudgingMode::Scoring => self.scores(pool, votes),
            JudgingMode::Comparative => self.comparisons(pool, votes),
        };
        let mut order: Vec<usize> = (0..pool.len()).collect();
        let key = |i: usize| {
            verdicts[i]
                .as_ref()
                .map(|v| (v.total, v.alignment, v.aesthetic))
        };
        order.sort_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            let by_score = match (ka, kb) {
                (Some(x), Some(y)) => {
                    y.0.total_cmp(&x.0)
                        .then(y.1.total_cmp(&x.1))
                        .then(y.2.total_cmp(&x.2))
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_score
                .then_with(|| {
                    let p = |i: usize| pool[i].prior_rank.unwrap_or(u32::MAX);
                    p(a).cmp(&p(b))
                })
                .then(a.cmp(&b))
        });
        for (rank, i) in order.into_iter().enumerate() {
            if let Some(v) = verdicts[i].as_mut() {
                v.rank = u32::try_from(rank + 1).unwrap_or(u32::MAX);
            }
        }
        verdicts
    }

    fn scores(
        &self,
        pool: &[Entrant],
        votes: &[(Ballot, Option<VoteResult>)],
    ) -> Vec<Option<Verdict>> {
        pool.iter()
            .enumerate()
            .map(|(i, e)| {
                if let Some(prior) = &e.prior {
                    return Some(prior.clone());
                }
                let mut v = empty_verdict();
                let (mut al, mut ae, mut to) = (0.0, 0.0, 0.0);
                for (ballot, result) in votes {
                    let (
                        Ballot::Score { who, .. },
                        Some(VoteResult::Score {
                            alignment,
                            aesthetic,
                            total,
                            reasons,
                            strengths,
                            weaknesses,
                        }),
                    ) = (ballot, result)
                    else {
                        continue;
                    };
                    if *who != i {
                        continue;
                    }
                    v.votes += 1;
                    (al, ae, to) = (al + alignment, ae + aesthetic, to + total);
                    merge_words(&mut v.reasons, [reasons.clone()]);
                    merge_words(&mut v.strengths, strengths.iter().cloned());
                    merge_words(&mut v.weaknesses, weaknesses.iter().cloned());
                }
                (v.votes > 0).then(|| {
                    let n = f64::from(v.votes);
                    v.alignment = round1(al / n);
                    v.aesthetic = round1(ae / n);
                    v.total = round2(to / n);
                    v
                })
            })
            .collect()
    }

    // Long: one pass of majority, rank averaging and merging per pair, kept together so the
    // comparative rules read in one place.
    fn comparisons(
        &self,
        pool: &[Entrant],
        votes: &[(Ballot, Option<VoteResult>)],
    ) -> Vec<Option<Verdict>> {
        let n = pool.len();
        let mut verdicts: Vec<Verdict> = (0..n).map(|_| empty_verdict()).collect();
        let (mut align_wins, mut aesth_wins, mut cast) =
            (vec![0u32; n], vec![0u32; n], vec![0u32; n]);
        for first in 0..n {
            for second in first + 1..n {
                let (pa, pb) = (pool[first].prior_rank, pool[second].prior_rank);
                let first_wins = if let (Some(a), Some(b)) = (pa, pb) {
                    Some(a < b)
                } else {
                    let mut margin = 0i32;
                    let mut tiebreak = 0i32;
                    for (ballot, result) in votes {
                        let (
                            Ballot::Pair {
                                first: f,
                                second: s,
                                ..
                            },
                            Some(VoteResult::Pair {
                                first_wins,
                                first_aligns,
                                first_pleases,
                                reasons,
                                strengths,
                                weaknesses,
                            }),
                        ) = (ballot, result)
                        else {
                            continue;
                        };
                        if (*f, *s) != (first, second) {
                            continue;
                        }
                        margin += if *first_wins { 1 } else { -1 };
                        tiebreak += i32::from(*first_aligns) + i32::from(*first_pleases) - 1;
                        for (who, won_align, won_aesth) in [
                            (first, *first_aligns, *first_pleases),
                            (second, !*first_aligns, !*first_pleases),
                        ] {
                            cast[who] += 1;
                            align_wins[who] += u32::from(won_align);
                            aesth_wins[who] += u32::from(won_aesth);
                        }
                        let (winner, loser) = if *first_wins {
                            (first, second)
                        } else {
                            (second, first)
                        };
                        if verdicts[winner].reasons.len() < 3 {
                            merge_words(&mut verdicts[winner].reasons, [reasons.clone()]);
                        }
                        merge_words(&mut verdicts[winner].strengths, strengths.iter().cloned());
                        merge_words(&mut verdicts[loser].weaknesses, weaknesses.iter().cloned());
                    }
                    match margin.cmp(&0) {
                        std::cmp::Ordering::Greater => Some(true),
                        std::cmp::Ordering::Less => Some(false),
                        std::cmp::Ordering::Equal if tiebreak != 0 => Some(tiebreak > 0),
                        // No vote came back, or a dead heat: the pair counts for neither.
                        std::cmp::Ordering::Equal => None,
                    }
                };
                if let Some(first_wins) = first_wins {
                    for who in [first, second] {
                        verdicts[who].comparisons += 1;
                    }
                    let winner = if first_wins { first } else { second };
                    verdicts[winner].wins += 1;
                }
            }
        }
        verdicts
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                if v.comparisons == 0 {
                    return None;
                }
                v.votes = cast[i];
                v.total = round2(10.0 * f64::from(v.wins) / f64::from(v.comparisons));
                if cast[i] > 0 {
                    v.alignment = round1(10.0 * f64::from(align_wins[i]) / f64::from(cast[i]));
                    v.aesthetic = round1(10.0 * f64::from(aesth_wins[i]) / f64::from(cast[i]));
                } else if let Some(prior) = &pool[i].prior {
                    (v.alignment, v.aesthetic) = (prior.alignment, prior.aesthetic);
                }
                Some(v)
            })
            .collect()
    }
}

fn empty_verdict() -> Verdict {
    Verdict {
        total: 0.0,
        alignment: 0.0,
        aesthetic: 0.0,
        votes: 0,
        comparisons: 0,
        wins: 0,
        rank: 0,
        reasons: Vec::new(),
        strengths: Vec::new(),
        weaknesses: Vec::new(),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests;
