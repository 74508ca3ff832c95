//! One unit per stage kind that writes or renders: each builds its calls from the state, has
//! the call runner send them, and writes the answers back into the candidates.

use crate::Result;
use crate::candidate::Proposal;
use crate::components::{
    CritiqueGenerator, Dimension, ImageGenerator, PromptCombiner, PromptExpander, PromptRefiner,
    combined_of, default_combined, field, read_children,
};
use crate::params::{Plan, RenderSetting, StageKind};

use super::BeamSearch;
use super::calls::{Payload, Spec, StageCalls};

impl BeamSearch {
    /// Runs stage `idx` of the plan (`kind` of iteration `it`, `left` stages to go, this one
    /// included).
    pub(super) async fn stage(
        &mut self,
        idx: usize,
        kind: StageKind,
        it: u32,
        left: usize,
    ) -> Result<()> {
        let at = StageCalls {
            idx,
            kind,
            it,
            left,
        };
        match kind {
            StageKind::Expand | StageKind::ExpandFused => self.expand(at).await,
            StageKind::Combine => self.combine(at).await,
            StageKind::Critique => self.critique(at).await,
            StageKind::Refine => self.refine(at).await,
            StageKind::RefineFused => self.refine_fused(at).await,
            StageKind::Render => self.render(at).await,
            StageKind::Judge => self.judge(at).await,
            StageKind::Polish => self.polish(at).await,
            StageKind::PolishJudge => self.polish_judge(at).await,
        }
    }

    /// The first candidates: WHAT and HOW written apart (classic), or both and the combined
    /// prompt in one call (fused).
    async fn expand(&mut self, at: StageCalls) -> Result<()> {
        let n = self.params.n;
        let fused = at.kind == StageKind::ExpandFused;
        let ids = self.new_candidates(0, &vec![None; n as usize]);
        let expander = PromptExpander(self.writing());
        let mut specs = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if fused {
                specs.push((id.clone(), Spec::Json(expander.fused(i, n))));
                continue;
            }
            for dim in [Dimension::What, Dimension::How] {
                let name = format!("{id}/{}", dim.label().to_lowercase());
                specs.push((name, Spec::Json(expander.half(i, n, dim))));
            }
        }
        let results = self.run_calls(&at, &specs).await?;
        for ((name, _), result) in specs.iter().zip(results) {
            let id = name.split('/').next().unwrap_or_default().to_owned();
            let c = self.state.candidate_mut(&self.id, &id)?;
            match result {
                Ok(Payload::Json { value }) if fused => {
                    c.what = field(&value, "what");
                    c.how = field(&value, "how");
                    c.combined = combined_of(&value, &c.what, &c.how);
                }
                Ok(Payload::Json { value }) if name.ends_with("/what") => {
                    c.what = field(&value, "what");
                }
                Ok(Payload::Json { value }) => c.how = field(&value, "how"),
                Ok(other) => c.failed = Some(format!("unexpected answer {other:?}")),
                Err(e) => c.failed = Some(e),
            }
        }
        for id in ids {
            let c = self.state.candidate_mut(&self.id, &id)?;
            if c.failed.is_none() && (c.what.is_empty() || c.how.is_empty()) {
                c.failed = Some("the writer left WHAT or HOW empty".into());
            }
        }
        self.require_alive(at.kind, at.it, &self.state.working.clone(), 1)
    }

    /// WHAT and HOW into the prompt the image model gets (classic).
    async fn combine(&mut self, at: StageCalls) -> Result<()> {
        let combiner = PromptCombiner(self.writing());
        let working = self.state.alive(&self.state.working);
        let specs: Vec<_> = working
            .iter()
            .map(|c| (c.id.clone(), Spec::Json(combiner.request(c))))
            .collect();
        let results = self.run_calls(&at, &specs).await?;
        for ((id, _), result) in specs.iter().zip(results) {
            let c = self.state.candidate_mut(&self.id, id)?;
            match result {
                Ok(Payload::Json { value }) => c.combined = combined_of(&value, &c.what, &c.how),
                Ok(_) => c.combined = default_combined(&c.what, &c.how),
                Err(e) => c.failed = Some(e),
            }
        }
        self.require_alive(at.kind, at.it, &self.state.working.clone(), 1)
    }

    /// A critique of each surviving parent (classic).
    async fn critique(&mut self, at: StageCalls) -> Result<()> {
        let dim = Dimension::of_iteration(at.it);
        let critic = CritiqueGenerator(self.writing());
        let parents = self.state.alive(&self.state.pool);
        let specs: Vec<_> = parents
            .iter()
            .map(|p| (p.id.clone(), Spec::Chat(critic.request(p, dim))))
            .collect();
        let results = self.run_calls(&at, &specs).await?;
        for ((id, _), result) in specs.iter().zip(results) {
            let c = self.state.candidate_mut(&self.id, id)?;
            // A parent whose critique failed is refined blind rather than dropped.
            c.critique = match result {
                Ok(Payload::Text { text }) => Some(text),
                _ => None,
            };
        }
        Ok(())
    }

    /// `n / m` children per parent, each with the iteration's dimension rewritten (classic).
    async fn refine(&mut self, at: StageCalls) -> Result<()> {
        let k = self.params.children_per_parent();
        let dim = Dimension::of_iteration(at.it);
        let refiner = PromptRefiner(self.writing());
        let parents = self.state.alive(&self.state.pool);
        let lineage: Vec<Option<String>> = parents
            .iter()
            .flat_map(|p| std::iter::repeat_n(Some(p.id.clone()), k as usize))
            .collect();
        let ids = self.new_candidates(at.it, &lineage);
        let mut specs = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let parent = &parents[i / k as usize];
            let child = u32::try_from(i % k as usize).unwrap_or(0);
            let critique = parent.critique.clone().unwrap_or_default();
            let c = self.state.candidate_mut(&self.id, id)?;
            (c.what, c.how) = (parent.what.clone(), parent.how.clone());
            let request = refiner.request(parent, &critique, dim, child, k);
            specs.push((id.clone(), Spec::Json(request)));
        }
        let results = self.run_calls(&at, &specs).await?;
        for ((id, _), result) in specs.iter().zip(results) {
            let c = self.state.candidate_mut(&self.id, id)?;
            let (prop, slot) = match dim {
                Dimension::What => ("what", &mut c.what),
                Dimension::How => ("how", &mut c.how),
            };
            match result {
                Ok(Payload::Json { value }) if !field(&value, prop).is_empty() => {
                    *slot = field(&value, prop);
                }
                Ok(_) => c.failed = Some(format!("the refiner wrote no {prop}")),
                Err(e) => c.failed = Some(e),
            }
        }
        self.require_alive(at.kind, at.it, &self.state.working.clone(), 1)
    }

    /// One call per parent: its critique and its children, already combined (fused).
    async fn refine_fused(&mut self, at: StageCalls) -> Result<()> {
        let k = self.params.children_per_parent();
        let dim = Dimension::of_iteration(at.it);
        let refiner = PromptRefiner(self.writing());
        let parents = self.state.alive(&self.state.pool);
        let specs: Vec<_> = parents
            .iter()
            .map(|p| (p.id.clone(), Spec::Json(refiner.fused(p, dim, k))))
            .collect();
        let results = self.run_calls(&at, &specs).await?;
        let mut proposals: Vec<(String, Proposal)> = Vec::new();
        for (parent, result) in parents.iter().zip(results) {
            if let Ok(Payload::Json { value }) = result {
                let critique = field(&value, "critique");
                let p = self.state.candidate_mut(&self.id, &parent.id)?;
                p.critique = (!critique.is_empty()).then_some(critique);
                for child in read_children(&value, parent, dim, k) {
                    proposals.push((parent.id.clone(), child));
                }
            }
        }
        self.adopt_proposals(at.it, proposals)?;
        self.require_alive(at.kind, at.it, &self.state.working.clone(), 1)
    }

    /// Every working candidate's combined prompt into an image in the session folder (in
    /// `judge_refines`, after the survivors' proposals became the candidates).
    async fn render(&mut self, at: StageCalls) -> Result<()> {
        if self.params.plan == Plan::JudgeRefines && at.it > 0 {
            let proposals: Vec<(String, Proposal)> = self
                .state
                .alive(&self.state.pool)
                .into_iter()
                .flat_map(|p| {
                    let id = p.id.clone();
                    p.proposals.into_iter().map(move |x| (id.clone(), x))
                })
                .collect();
            self.adopt_proposals(at.it, proposals)?;
        }
        let setting = self.params.render_at(at.it);
        let working = self.state.alive(&self.state.working);
        let mut specs: Vec<(String, Spec)> = working
            .iter()
            .map(|c| {
                let file = format!("images/{}.png", c.id);
                (
                    c.id.clone(),
                    Spec::Image(generator(&setting).request(c), file),
                )
            })
            .collect();
        // Parents drawn at another setting are drawn again at this one: every comparison of
        // the judge stage is between images of one quality.
        if at.it > 0 {
            for p in self.state.alive(&self.state.pool) {
                if self.rendered_as(&p) != setting {
                    let file = format!("images/{}-{}.png", p.id, file_tag(&setting));
                    let request = generator(&setting).request(&p);
                    specs.push((format!("again/{}", p.id), Spec::Image(request, file)));
                }
            }
        }
        let results = self.run_calls(&at, &specs).await?;
        for ((name, _), result) in specs.iter().zip(results) {
            let (id, again) = match name.strip_prefix("again/") {
                Some(id) => (id, true),
                None => (name.as_str(), false),
            };
            let drawn = matches!(result, Ok(Payload::Image { .. }));
            if again && !drawn {
                // A parent not drawn again is judged no more: its draft would be compared
                // with images of another quality.
                self.state.pool.retain(|p| p != id);
                continue;
            }
            let c = self.state.candidate_mut(&self.id, id)?;
            match result {
                Ok(Payload::Image {
                    file,
                    revised_prompt,
                }) => {
                    c.image = Some(file);
                    c.rendered_as = Some(setting.clone());
                    if !again {
                        c.revised_prompt = revised_prompt;
                    }
                }
                Ok(_) => c.failed = Some("the image model returned no image".into()),
                Err(e) => c.failed = Some(e),
            }
        }
        self.require_alive(at.kind, at.it, &self.state.working.clone(), 1)
    }

    /// The setting a candidate's image was drawn at.
    pub(super) fn rendered_as(&self, c: &crate::candidate::Candidate) -> RenderSetting {
        let full = self.params.full_render();
        c.rendered_as.as_ref().map_or(full.clone(), |r| r.or(&full))
    }

    /// Polish: the top `polish` candidates drawn again at full quality (those drawn at it
    /// already are kept as they are), to be judged against each other.
    async fn polish(&mut self, at: StageCalls) -> Result<()> {
        let full = self.params.full_render();
        let top: Vec<crate::candidate::Candidate> = self
            .state
            .ranked()
            .into_iter()
            .filter(|c| c.image.is_some())
            .take(self.params.polish as usize)
            .cloned()
            .collect();
        self.state.draft_best = top.first().map(|c| c.id.clone());
        let specs: Vec<(String, Spec)> = top
            .iter()
            .filter(|c| self.rendered_as(c) != full)
            .map(|c| {
                let file = format!("images/{}-polished.png", c.id);
                (c.id.clone(), Spec::Image(generator(&full).request(c), file))
            })
            .collect();
        let results = self.run_calls(&at, &specs).await?;
        let mut redrawn_failed = Vec::new();
        for ((id, _), result) in specs.iter().zip(results) {
            let c = self.state.candidate_mut(&self.id, id)?;
            match result {
                Ok(Payload::Image { file, .. }) => {
                    c.image = Some(file);
                    c.rendered_as = Some(full.clone());
                }
                // Not drawn at full quality: left out of the polish, its draft kept.
                _ => redrawn_failed.push(id.clone()),
            }
        }
        self.state.polished = top
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !redrawn_failed.contains(id))
            .collect();
        Ok(())
    }
}

/// The image generator for `setting`.
fn generator(setting: &RenderSetting) -> ImageGenerator {
    ImageGenerator {
        size: setting.size.clone(),
        quality: setting.quality.clone(),
    }
}

/// A setting as part of a file name: `low`, `medium-1024x1536`.
fn file_tag(setting: &RenderSetting) -> String {
    setting
        .label()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
