//! The judge stage: every image judged at once (scored alone, or compared in pairs with the
//! parents, whose order is known), the votes ranked, the session's comparisons kept and every
//! judged candidate's rating refitted (`crate::rating`), the best `m` kept; in `judge_refines`
//! the same stage also critiques each image and proposes its children.

use std::collections::BTreeMap;

use crate::candidate::Candidate;
use crate::components::{Dimension, PromptRefiner, field, read_children};
use crate::events::ProgressEvent;
use crate::params::Plan;
use crate::ranker::{Ballot, Entrant, ImageRanker, VoteResult};
use crate::rating::{self, PairResult, RatingScale};
use crate::{Error, Result};

use super::BeamSearch;
use super::calls::{Outcome, Payload, Spec, StageCalls};

/// Who is judged: the children with images, then the parents, each with what the ranker
/// knows of it already.
struct Field {
    members: Vec<Candidate>,
    pool: Vec<Entrant>,
    /// Each member's image as the judge gets it, in `members`' order.
    images: Vec<Vec<u8>>,
}

impl BeamSearch {
    pub(super) async fn judge(&mut self, at: StageCalls) -> Result<()> {
        let ranker = self.ranker();
        let field = self.field().await?;
        let ballots = ranker.ballots(at.it, &field.pool);
        let mut specs: Vec<(String, Spec)> = ballots
            .iter()
            .map(|b| ballot_spec(&ranker, &field, b))
            .collect();
        // judge_refines: the judge also critiques each image and proposes its children.
        let reviews = self.params.plan == Plan::JudgeRefines && at.it + 1 < self.params.iterations;
        let dim = Dimension::of_iteration(at.it + 1);
        let k = self.params.children_per_parent();
        if reviews {
            let refiner = PromptRefiner(self.writing());
            for (c, image) in field.members.iter().zip(&field.images) {
                let request = refiner.review(
                    c,
                    image.clone(),
                    self.params.detail,
                    self.params.alpha,
                    dim,
                    k,
                );
                specs.push((format!("review/{}", c.id), Spec::Vision(request)));
            }
        }
        let results = self.run_calls(&at, &specs).await?;
        let (votes, review_results) = results.split_at(ballots.len());
        let votes: Vec<(Ballot, Option<VoteResult>)> = ballots
            .iter()
            .zip(votes)
            .map(|(b, r)| match r {
                Ok(Payload::Vote { vote }) => (*b, Some(vote.clone())),
                _ => (*b, None),
            })
            .collect();
        for (c, verdict) in field.members.iter().zip(ranker.rank(&field.pool, &votes)) {
            let slot = self.state.candidate_mut(&self.id, &c.id)?;
            match verdict {
                Some(v) => slot.judge(at.it, v),
                None if slot.verdict.is_none() => {
                    slot.failed = Some("no judge's vote came back".into());
                }
                None => {}
            }
        }
        self.record_comparisons(at.it, &field.members, &votes);
        self.refit_ratings();
        if reviews {
            self.take_reviews(&field.members, review_results, dim, k)?;
        }
        self.keep_the_best(at.it, &field.members)
    }

    /// Polish: the candidates drawn again at full quality, judged against each other (no
    /// priors: every pair); the best of them is the session's final pick.
    pub(super) async fn polish_judge(&mut self, at: StageCalls) -> Result<()> {
        let members: Vec<Candidate> = self.state.alive(&self.state.polished);
        let mut images = Vec::with_capacity(members.len());
        if members.len() > 1 {
            for c in &members {
                images.push(self.judge_image(c).await?);
            }
        }
        let field = Field {
            pool: members
                .iter()
                .map(|_| Entrant {
                    prior_rank: None,
                    prior: None,
                })
                .collect(),
            members,
            images,
        };
        let ranker = self.ranker();
        let ballots = if field.members.len() > 1 {
            ranker.ballots(at.it, &field.pool)
        } else {
            Vec::new()
        };
        let specs: Vec<(String, Spec)> = ballots
            .iter()
            .map(|b| ballot_spec(&ranker, &field, b))
            .collect();
        let results = self.run_calls(&at, &specs).await?;
        if field.members.len() == 1 {
            self.state.final_pick = Some(field.members[0].id.clone());
            return Ok(());
        }
        let votes: Vec<(Ballot, Option<VoteResult>)> = ballots
            .iter()
            .zip(&results)
            .map(|(b, r)| match r {
                Ok(Payload::Vote { vote }) => (*b, Some(vote.clone())),
                _ => (*b, None),
            })
            .collect();
        let mut pick: Option<(u32, String)> = None;
        for (c, verdict) in field.members.iter().zip(ranker.rank(&field.pool, &votes)) {
            let Some(v) = verdict else { continue };
            if pick.as_ref().is_none_or(|(rank, _)| v.rank < *rank) {
                pick = Some((v.rank, c.id.clone()));
            }
            self.state.candidate_mut(&self.id, &c.id)?.judge(at.it, v);
        }
        // No vote came back: the draft judges' pick stands.
        self.state.final_pick = pick.map(|(_, id)| id);
        Ok(())
    }

    /// The children that have an image and the parents, with their images.
    async fn field(&self) -> Result<Field> {
        let parents = self.state.alive(&self.state.pool);
        let children = self.state.alive(&self.state.working);
        let members: Vec<Candidate> = children
            .into_iter()
            .filter(|c| c.image.is_some())
            .chain(parents.iter().cloned())
            .collect();
        let pool = members
            .iter()
            .map(|c| {
                let is_parent = parents.iter().any(|p| p.id == c.id);
                Entrant {
                    prior_rank: is_parent.then(|| c.verdict.as_ref().map_or(u32::MAX, |v| v.rank)),
                    prior: if is_parent { c.verdict.clone() } else { None },
                }
            })
            .collect();
        let mut images = Vec::with_capacity(members.len());
        for c in &members {
            images.push(self.judge_image(c).await?);
        }
        Ok(Field {
            members,
            pool,
            images,
        })
    }

    /// `judge_refines`: each member's critique and proposed children, from its review.
    fn take_reviews(
        &mut self,
        members: &[Candidate],
        reviews: &[Outcome],
        dim: Dimension,
        k: u32,
    ) -> Result<()> {
        for (c, result) in members.iter().zip(reviews) {
            let slot = self.state.candidate_mut(&self.id, &c.id)?;
            slot.proposals.clear();
            if let Ok(Payload::Json { value }) = result {
                let critique = field(value, "critique");
                slot.critique = (!critique.is_empty()).then_some(critique);
                slot.proposals = read_children(value, c, dim, k);
            }
        }
        Ok(())
    }

    /// Comparative mode: the votes of this judge stage, per pair, into the session's
    /// comparisons (replacing those of an earlier run of the same stage).
    fn record_comparisons(
        &mut self,
        it: u32,
        members: &[Candidate],
        votes: &[(Ballot, Option<VoteResult>)],
    ) {
        let mut pairs: BTreeMap<(usize, usize), (u32, u32)> = BTreeMap::new();
        for (ballot, result) in votes {
            if let (Ballot::Pair { first, second, .. }, Some(VoteResult::Pair { first_wins, .. })) =
                (ballot, result)
            {
                let tally = pairs.entry((*first, *second)).or_insert((0, 0));
                if *first_wins {
                    tally.0 += 1;
                } else {
                    tally.1 += 1;
                }
            }
        }
        self.state.comparisons.retain(|p| p.iteration != it);
        for ((first, second), (a_votes, b_votes)) in pairs {
            let (Some(a), Some(b)) = (members.get(first), members.get(second)) else {
                continue;
            };
            self.state.comparisons.push(PairResult {
                iteration: it,
                a: a.id.clone(),
                b: b.id.clone(),
                a_votes,
                b_votes,
            });
        }
    }

    /// Every judged candidate's rating: comparative, the Bradley–Terry fit over all the
    /// session's comparisons; scoring, its total.
    fn refit_ratings(&mut self) {
        match RatingScale::of(self.params.judging) {
            RatingScale::Elo => {
                let ratings = rating::fit(&self.state.comparisons);
                for c in &mut self.state.candidates {
                    c.rating = ratings.get(&c.id).copied();
                }
            }
            RatingScale::Score => {
                for c in &mut self.state.candidates {
                    c.rating = c.verdict.as_ref().map(|v| v.total);
                }
            }
        }
    }

    /// The best `m` judged members become the pool; the iteration's best (the highest-rated
    /// candidate of the session so far) is recorded.
    fn keep_the_best(&mut self, it: u32, members: &[Candidate]) -> Result<()> {
        let ids: Vec<String> = members.iter().map(|c| c.id.clone()).collect();
        let mut ranked: Vec<Candidate> = self
            .state
            .alive(&ids)
            .into_iter()
            .filter(|c| c.verdict.is_some())
            .collect();
        ranked.sort_by_key(|c| c.verdict.as_ref().map_or(u32::MAX, |v| v.rank));
        ranked.truncate(self.params.m as usize);
        if ranked.is_empty() {
            return Err(Error::Stage {
                stage: "judge".into(),
                iteration: it,
                problem: "no image could be judged".into(),
            });
        }
        self.state.pool = ranked.iter().map(|c| c.id.clone()).collect();
        let Some(best) = self.state.best_so_far().cloned() else {
            return Err(Error::Stage {
                stage: "judge".into(),
                iteration: it,
                problem: "no image could be judged".into(),
            });
        };
        self.state.best.retain(|(i, _, _)| *i != it);
        self.state.best.push((it, best.id.clone(), best.score()));
        self.state.best_wins.retain(|(i, _, _)| *i != it);
        let wins = best
            .verdict
            .as_ref()
            .filter(|v| v.comparisons > 0)
            .map(|v| (v.wins, v.comparisons));
        if let Some((won, of)) = wins {
            self.state.best_wins.push((it, won, of));
        }
        self.state.best_ratings.retain(|(i, _)| *i != it);
        if let Some(rating) = best.rating {
            self.state.best_ratings.push((it, rating));
        }
        self.progress.send(ProgressEvent::IterationJudged {
            session: self.id.clone(),
            iteration: it,
            best_id: best.id.clone(),
            best_score: best.score(),
            wins,
            best_rating: best.rating,
            scale: RatingScale::of(self.params.judging),
        });
        Ok(())
    }

    /// A candidate's image as the judge gets it: downscaled to what its detail level uses.
    async fn judge_image(&self, c: &Candidate) -> Result<Vec<u8>> {
        let file = c.image.as_deref().unwrap_or_default();
        let path = self.folder.join(file);
        let bytes = tokio::fs::read(&path).await.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        match crate::downscale::prepare_for_judge(&bytes, self.params.detail) {
            Ok(prepared) => Ok(prepared.bytes),
            Err(e) => {
                tracing::warn!(image = %path.display(), error = %e, "sent as rendered");
                Ok(bytes)
            }
        }
    }

    pub(super) fn ranker(&self) -> ImageRanker {
        ImageRanker {
            idea: self.params.idea.clone(),
            alpha: self.params.alpha,
            ensemble: self.params.ensemble,
            mode: self.params.judging,
            detail: self.params.detail,
            seed: self.params.seed,
        }
    }
}

/// A ballot's call and its name (a score of one image, or a pair in the order shown).
fn ballot_spec(ranker: &ImageRanker, field: &Field, ballot: &Ballot) -> (String, Spec) {
    let id = |i: usize| &field.members[i].id;
    match *ballot {
        Ballot::Score { who, vote } => (
            format!("score/{}/{vote}", id(who)),
            Spec::Judge(ranker.judge_request(field.images[who].clone(), vote)),
        ),
        Ballot::Pair {
            first,
            second,
            vote,
            swapped,
        } => {
            let (a, b) = if swapped {
                (second, first)
            } else {
                (first, second)
            };
            let request =
                ranker.compare_request(field.images[a].clone(), field.images[b].clone(), vote);
            (
                format!("pair/{}-{}/{vote}", id(first), id(second)),
                Spec::Compare(request, swapped),
            )
        }
    }
}
