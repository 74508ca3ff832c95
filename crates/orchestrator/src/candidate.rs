//! The search tree: candidates (WHAT, HOW, the combined prompt, the image), their judgements,
//! critiques and lineage.

use serde::{Deserialize, Serialize};

/// One candidate: a WHAT/HOW pair, its combined prompt, its image and how it was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `i{iteration}c{index}`, unique in the session.
    pub id: String,
    /// The iteration it was written in (0 = the first expansion).
    pub iteration: u32,
    /// The candidate it was refined from.
    pub parent: Option<String>,
    /// Content: subjects, action, setting, mood.
    pub what: String,
    /// Visual treatment: lighting, composition, palette, medium.
    pub how: String,
    /// The prompt sent to the image model (empty until combined).
    pub combined: String,
    /// The image file, relative to the session folder, once rendered.
    pub image: Option<String>,
    /// The prompt as the image model rewrote it, when it says.
    pub revised_prompt: Option<String>,
    /// The setting its image was rendered at (`None`: the session's full quality, as in
    /// sessions from before render schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_as: Option<crate::params::RenderSetting>,
    /// How it was judged, once judged: the latest judgement (a survivor is judged again as a
    /// parent in the next iteration's pool).
    pub verdict: Option<Verdict>,
    /// Every judgement it had, one per pool it was judged in, oldest first: its rank and score
    /// among the candidates of each iteration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judged: Vec<Judged>,
    /// Its rating across the session, once judged: in comparative mode the Bradley–Terry fit
    /// over every comparison of the session so far, Elo-like (see [`crate::rating`]); in
    /// scoring mode its 0-10 total ([`crate::RatingScale`]).
    #[serde(default)]
    pub rating: Option<f64>,
    /// The critique it was given as a parent (or, in `judge_refines`, by its judge).
    pub critique: Option<String>,
    /// Children its judge proposed (`judge_refines`), used if it survives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<Proposal>,
    /// Why it dropped out, if a call it needed failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl Candidate {
    /// A new candidate of `iteration` with index `index`.
    pub fn new(iteration: u32, index: usize, parent: Option<String>) -> Candidate {
        Candidate {
            id: format!("i{iteration}c{index}"),
            iteration,
            parent,
            what: String::new(),
            how: String::new(),
            combined: String::new(),
            image: None,
            revised_prompt: None,
            rendered_as: None,
            verdict: None,
            judged: Vec::new(),
            rating: None,
            critique: None,
            proposals: Vec::new(),
            failed: None,
        }
    }

    /// Its total score, or minus infinity when it has none.
    pub fn score(&self) -> f64 {
        self.verdict.as_ref().map_or(f64::NEG_INFINITY, |v| v.total)
    }

    /// Whether it is still in the running.
    pub fn alive(&self) -> bool {
        self.failed.is_none()
    }

    /// How it was judged in iteration `iteration`'s pool: from [`Candidate::judged`], or, for a
    /// checkpoint written before judgements were kept per pool, its latest verdict when it was
    /// judged in no later pool (it is then the only one it had).
    pub fn verdict_in(&self, iteration: u32) -> Option<&Verdict> {
        match self.judged.iter().find(|j| j.iteration == iteration) {
            Some(j) => Some(&j.verdict),
            None if self.judged.is_empty() && self.iteration == iteration => self.verdict.as_ref(),
            None => None,
        }
    }

    /// Records a judgement of iteration `iteration`'s pool (replacing one of the same pool,
    /// so that a judge stage run again after a resume does not count twice).
    pub(crate) fn judge(&mut self, iteration: u32, verdict: Verdict) {
        self.judged.retain(|j| j.iteration != iteration);
        self.judged.push(Judged {
            iteration,
            verdict: verdict.clone(),
        });
        self.verdict = Some(verdict);
    }
}

/// One judgement of a candidate, in the pool of one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    /// The iteration whose pool it was judged in.
    pub iteration: u32,
    /// The judgement.
    pub verdict: Verdict,
}

/// A child proposed by a judge (`judge_refines`) or a fused refiner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Content.
    pub what: String,
    /// Treatment.
    pub how: String,
    /// The combined prompt.
    pub combined: String,
}

/// A candidate's judgement after its ensemble's votes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `alpha * alignment + (1 - alpha) * aesthetic` (scoring), or in comparative mode the
    /// share of its comparisons it won, times 10, so that both read on 0-10.
    pub total: f64,
    /// Mean alignment (scoring), or mean alignment rank-points (comparative: 10 per win).
    pub alignment: f64,
    /// Mean aesthetic score, or rank-points as for alignment.
    pub aesthetic: f64,
    /// Votes that counted.
    pub votes: u32,
    /// Comparisons it took part in (comparative).
    #[serde(default)]
    pub comparisons: u32,
    /// Comparisons it won by majority (comparative).
    #[serde(default)]
    pub wins: u32,
    /// Its rank in the pool it was judged in (1 = best).
    pub rank: u32,
    /// The judges' reasons.
    pub reasons: Vec<String>,
    /// What works (merged over votes, without repeats).
    pub strengths: Vec<String>,
    /// What does not (merged over votes, without repeats).
    pub weaknesses: Vec<String>,
}

/// Adds `items` to `into`, skipping repeats (case-insensitive), keeping the first order.
pub(crate) fn merge_words(into: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        let item = item.trim().to_owned();
        if !item.is_empty() && !into.iter().any(|s| s.eq_ignore_ascii_case(&item)) {
            into.push(item);
        }
    }
}
