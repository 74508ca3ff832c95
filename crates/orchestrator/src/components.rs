//! The search's components as the guide names them: prompt expander, prompt combiner, image
//! generator, critique generator and prompt refiner. Each writes the requests of its stage (all
//! at once; the search sends them together) and reads their answers. The image ranker lives in
//! `ranker.rs`.
//!
//! Requests name their facts with `Label: value` paragraphs (`Idea:`, `WHAT:`, `HOW:`,
//! `Critique:`...), which real models read as well as the simulated ones do; system
//! instructions carry no such labels.

use batch_format::ImageDetail;
use providers::{ChatRequest, ImageRequest, JsonRequest, Operation, VisionJsonRequest};
use serde_json::{Value, json};

use crate::candidate::{Candidate, Proposal, Verdict};

/// Which half of a candidate a refinement changes: odd iterations WHAT, even ones HOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Content.
    What,
    /// Visual treatment.
    How,
}

impl Dimension {
    /// The dimension iteration `iteration` (>= 1) refines.
    pub fn of_iteration(iteration: u32) -> Dimension {
        if iteration % 2 == 1 {
            Dimension::What
        } else {
            Dimension::How
        }
    }

    /// `WHAT` or `HOW`.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::What => "WHAT",
            Dimension::How => "HOW",
        }
    }
}

const WRITER: &str = "You write prompts for an image model. A candidate has two parts kept apart: \
the content prompt (subjects, objects, action, setting, mood, in sensory prose) and the \
treatment prompt (lighting, composition, palette, texture, medium, lens, in photographic and \
cinematic terms). Be concrete and vivid; never add text or logos to the image.";

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn string_schema(props: &[&str]) -> Value {
    let mut properties = serde_json::Map::new();
    for p in props {
        properties.insert((*p).to_owned(), json!({"type": "string"}));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": props,
        "additionalProperties": false
    })
}

fn child_schema() -> Value {
    string_schema(&["what", "how", "combined"])
}

fn children_schema(k: u32, with_judgement: bool) -> Value {
    let words = json!({"type": "array", "items": {"type": "string"}});
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    if with_judgement {
        for (name, schema) in [
            ("alignment", json!({"type": "number"})),
            ("aesthetic", json!({"type": "number"})),
            ("reasons", json!({"type": "string"})),
            ("strengths", words.clone()),
            ("weaknesses", words.clone()),
        ] {
            properties.insert(name.into(), schema);
            required.push(name);
        }
    }
    properties.insert("critique".into(), json!({"type": "string"}));
    properties.insert(
        "children".into(),
        json!({"type": "array", "items": child_schema(), "minItems": k, "maxItems": k}),
    );
    required.extend(["critique", "children"]);
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// A string field of a JSON answer, trimmed (empty when absent).
pub fn field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The `combined` field of an answer, or the default join of `what` and `how` when the model
/// wrote none.
pub fn combined_of(v: &Value, what: &str, how: &str) -> String {
    match field(v, "combined") {
        c if c.is_empty() => default_combined(what, how),
        c => c,
    }
}

/// The combined prompt when a model wrote none.
pub fn default_combined(what: &str, how: &str) -> String {
    match (what.trim(), how.trim()) {
        (w, "") => w.to_owned(),
        ("", h) => h.to_owned(),
        (w, h) => format!("{}. Visual treatment: {h}", w.trim_end_matches('.')),
    }
}

fn judgement_text(verdict: Option<&Verdict>) -> String {
    let Some(v) = verdict else {
        return String::new();
    };
    let mut s = format!("\n\nScore: {:.1}", v.total);
    if !v.reasons.is_empty() {
        s.push_str(&format!("\n\nReasons: {}", one_line(&v.reasons.join(" "))));
    }
    if !v.strengths.is_empty() {
        s.push_str(&format!("\n\nStrengths: {}", v.strengths.join("; ")));
    }
    if !v.weaknesses.is_empty() {
        s.push_str(&format!("\n\nWeaknesses: {}", v.weaknesses.join("; ")));
    }
    s
}

/// Settings shared by the writers.
#[derive(Debug, Clone)]
pub struct Writing {
    /// The user's idea.
    pub idea: String,
    /// The writer's temperature.
    pub temperature: Option<f64>,
    /// The session's seed.
    pub seed: u64,
}

impl Writing {
    fn chat(&self, op: Operation, user: String, salt: &str) -> ChatRequest {
        let mut r = ChatRequest::new(op, user).with_system(WRITER);
        r.temperature = self.temperature;
        r.seed = Some(seed_for(self.seed, salt));
        r
    }

    fn json(
        &self,
        op: Operation,
        user: String,
        salt: &str,
        name: &str,
        schema: Value,
    ) -> JsonRequest {
        JsonRequest {
            chat: self.chat(op, user, salt),
            schema_name: name.to_owned(),
            schema,
        }
    }
}

/// A call's seed: the session's seed mixed with the call's name (FNV-1a), so that calls that
/// ask the same thing still differ and a session replays exactly.
pub fn seed_for(seed: u64, salt: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in salt.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // OpenAI takes a signed 64-bit seed; keep it positive.
    i64::try_from(h >> 1).unwrap_or(0)
}

/// Writes the first candidates from the idea.
#[derive(Debug, Clone)]
pub struct PromptExpander(pub Writing);

impl PromptExpander {
    /// The `classic` plan's request for candidate `index`'s WHAT (or HOW) alone.
    pub fn half(&self, index: usize, n: u32, dim: Dimension) -> JsonRequest {
        let (prop, what_it_is) = match dim {
            Dimension::What => ("what", "content prompt"),
            Dimension::How => ("how", "treatment prompt"),
        };
        let user = format!(
            "Task: expand\n\nIdea: {}\n\nWrite only the {} ({what_it_is}) of candidate {} of {n}; \
make it differ from the other candidates.",
            one_line(&self.0.idea),
            dim.label(),
            index + 1
        );
        self.0.json(
            Operation::Expand,
            user,
            &format!("expand/{prop}/{index}"),
            &format!("expand_{prop}"),
            string_schema(&[prop]),
        )
    }

    /// The fused plans' request for candidate `index`: WHAT, HOW and the combined prompt.
    pub fn fused(&self, index: usize, n: u32) -> JsonRequest {
        let user = format!(
            "Task: expand\n\nIdea: {}\n\nWrite candidate {} of {n}: its WHAT (content prompt), \
its HOW (treatment prompt) and the combined prompt for the image model that joins them; make \
it differ from the other candidates.",
            one_line(&self.0.idea),
            index + 1
        );
        self.0.json(
            Operation::Expand,
            user,
            &format!("expand/fused/{index}"),
            "candidate",
            child_schema(),
        )
    }
}

/// Joins WHAT and HOW into the prompt sent to the image model.
#[derive(Debug, Clone)]
pub struct PromptCombiner(pub Writing);

impl PromptCombiner {
    /// The request combining `c`.
    pub fn request(&self, c: &Candidate) -> JsonRequest {
        let user = format!(
            "Task: combine\n\nIdea: {}\n\nWHAT: {}\n\nHOW: {}\n\nCombine the WHAT and HOW into one \
image prompt that keeps every detail of both.",
            one_line(&self.0.idea),
            one_line(&c.what),
            one_line(&c.how)
        );
        self.0.json(
            Operation::Combine,
            user,
            &format!("combine/{}", c.id),
            "combined_prompt",
            string_schema(&["combined"]),
        )
    }
}

/// Critiques a parent from its judgement: what is missing, what is weak, what to try.
#[derive(Debug, Clone)]
pub struct CritiqueGenerator(pub Writing);

impl CritiqueGenerator {
    /// The request critiquing `parent` before its children refine `dim`.
    pub fn request(&self, parent: &Candidate, dim: Dimension) -> ChatRequest {
        let user = format!(
            "Task: critique\n\nIdea: {}\n\nWHAT: {}\n\nHOW: {}{}\n\nCritique this candidate \
against the idea: name the content it lacks, the treatment it leaves unspecified, and concrete \
suggestions for its {} prompt.",
            one_line(&self.0.idea),
            one_line(&parent.what),
            one_line(&parent.how),
            judgement_text(parent.verdict.as_ref()),
            dim.label()
        );
        self.0.chat(
            Operation::Critique,
            user,
            &format!("critique/{}", parent.id),
        )
    }
}

/// Writes children from a parent and its critique, changing one dimension.
#[derive(Debug, Clone)]
pub struct PromptRefiner(pub Writing);

impl PromptRefiner {
    /// The `classic` request for child `child` (of `k`) of `parent`.
    pub fn request(
        &self,
        parent: &Candidate,
        critique: &str,
        dim: Dimension,
        child: u32,
        k: u32,
    ) -> JsonRequest {
        let prop = match dim {
            Dimension::What => "what",
            Dimension::How => "how",
        };
        let user = format!(
            "Task: refine\n\nDimension: {}\n\nIdea: {}\n\nWHAT: {}\n\nHOW: {}\n\nCritique: {}\n\n\
Refine the {} prompt following the critique. This is child {} of {k}: take the suggestions in \
a different order from its siblings.",
            dim.label(),
            one_line(&self.0.idea),
            one_line(&parent.what),
            one_line(&parent.how),
            critique.trim(),
            dim.label(),
            child + 1
        );
        self.0.json(
            Operation::Refine,
            user,
            &format!("refine/{}/{child}", parent.id),
            &format!("refined_{prop}"),
            string_schema(&[prop]),
        )
    }

    /// The `fused` request: `parent`'s critique (from its judgement) and its `k` children, each
    /// combined.
    pub fn fused(&self, parent: &Candidate, dim: Dimension, k: u32) -> JsonRequest {
        let user = format!(
            "Task: refine\n\nDimension: {}\n\nIdea: {}\n\nWHAT: {}\n\nHOW: {}{}\n\nFirst critique \
this candidate against the idea and its judgement. Then write {k} children that refine the {} \
prompt following the critique, each different, keeping the other prompt as it is, each with \
its combined prompt for the image model.",
            dim.label(),
            one_line(&self.0.idea),
            one_line(&parent.what),
            one_line(&parent.how),
            judgement_text(parent.verdict.as_ref()),
            dim.label()
        );
        self.0.json(
            Operation::Refine,
            user,
            &format!("refine_fused/{}", parent.id),
            "critique_and_children",
            children_schema(k, false),
        )
    }

    /// The `judge_refines` request: the judge looks at `c`'s image, judges it, critiques it and
    /// proposes the `k` children it would write if `c` survives.
    pub fn review(
        &self,
        c: &Candidate,
        image: Vec<u8>,
        detail: ImageDetail,
        alpha: f64,
        dim: Dimension,
        k: u32,
    ) -> VisionJsonRequest {
        let user = format!(
            "Task: refine\n\nDimension: {}\n\nIdea: {}\n\nAlpha: {alpha}\n\nWHAT: {}\n\nHOW: {}\n\n\
The image above was rendered from these prompts. Judge it (alignment with the idea and \
aesthetic quality, 0 to 10, with reasons, strengths and weaknesses), critique it, and write {k} \
children that refine the {} prompt following your critique, each different, keeping the other \
prompt as it is, each with its combined prompt.",
            dim.label(),
            one_line(&self.0.idea),
            one_line(&c.what),
            one_line(&c.how),
            dim.label()
        );
        let mut chat = self
            .0
            .chat(Operation::Judge, user, &format!("review/{}", c.id));
        chat.system = Some(providers::codec::JUDGE_SYSTEM.to_owned());
        VisionJsonRequest {
            chat,
            images: vec![image],
            detail: Some(detail),
            schema_name: "review".to_owned(),
            schema: children_schema(k, true),
        }
    }
}

/// Reads the children of a fused refinement or a review: at most `k`, each with the
/// dimension not refined taken from the parent.
pub fn read_children(v: &Value, parent: &Candidate, dim: Dimension, k: u32) -> Vec<Proposal> {
    let Some(items) = v.get("children").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .take(k as usize)
        .filter_map(|item| {
            let (mut what, mut how) = (field(item, "what"), field(item, "how"));
            match dim {
                Dimension::What => how = parent.how.clone(),
                Dimension::How => what = parent.what.clone(),
            }
            if what.is_empty() && how.is_empty() {
                return None;
            }
            let combined = combined_of(item, &what, &how);
            Some(Proposal {
                what,
                how,
                combined,
            })
        })
        .collect()
}

/// Renders combined prompts.
#[derive(Debug, Clone)]
pub struct ImageGenerator {
    /// Size asked of the image model.
    pub size: Option<String>,
    /// Quality asked of the image model.
    pub quality: Option<String>,
}

impl ImageGenerator {
    /// The request rendering `c`.
    pub fn request(&self, c: &Candidate) -> ImageRequest {
        ImageRequest {
            prompt: c.combined.clone(),
            size: self.size.clone(),
            quality: self.quality.clone(),
            seed: None,
            key: None,
        }
    }
}

#[cfg(test)]
mod tests;
