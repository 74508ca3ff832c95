//! The prompt engine: the simulated language and vision model behind chat completions.
//!
//! It recognises one of six tasks in a conversation (expand, combine, critique, refine, judge,
//! compare), works out the answer as a set of named facts, and renders them as plain text or as
//! a JSON object; [`super::schema`] shapes them to a caller's JSON schema.

use serde_json::{Map, Value, json};

use super::reading::{self, Draft, Reading, SeenImage};
use super::rng::Dice;
use super::text::{self, Category, Term};

/// Weight of alignment in a total score when the conversation gives no `alpha`.
pub(crate) const DEFAULT_ALPHA: f64 = 0.7;
/// Standard deviation of the noise added to each score of each vote, on the 0-10 scale.
pub(crate) const VOTE_NOISE: f64 = 0.5;
/// Vote noise on a `medium` draft render (fine texture lost).
pub(crate) const MEDIUM_DRAFT_NOISE: f64 = 0.8;
/// Vote noise on a `low` draft render (texture and lens detail lost).
pub(crate) const LOW_DRAFT_NOISE: f64 = 1.2;
/// Visual terms at which aesthetics reach 63% of the scale: `10 * (1 - exp(-terms / 6))`.
pub(crate) const AESTHETIC_SCALE: f64 = 6.0;
/// Total-score bonus the judge gives the image it is shown first in a comparison.
pub(crate) const POSITION_BIAS: f64 = 0.4;
/// Each idea word is kept by a first expansion with this probability (at least one is kept).
pub(crate) const EXPAND_KEEP: f64 = 0.6;
/// Prompts longer than this many words lose aesthetic points.
pub(crate) const LONG_PROMPT_WORDS: usize = 150;
/// Separator the combiner puts between WHAT and HOW.
pub(crate) const TREATMENT_MARK: &str = "Visual treatment:";

/// The task a conversation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// Idea -> WHAT and HOW (and their combination).
    Expand,
    /// WHAT + HOW -> one image prompt.
    Combine,
    /// Candidate + judgement -> critique.
    Critique,
    /// Candidate + critique -> refined candidate(s).
    Refine,
    /// One image -> alignment and aesthetic scores.
    Judge,
    /// Two images -> the better one.
    Compare,
}

impl Task {
    fn from_word(value: &str) -> Option<Task> {
        let v = value.to_lowercase();
        let has = |w: &str| v.contains(w);
        if has("compar") || has("pairwise") {
            Some(Task::Compare)
        } else if has("judg") || has("scor") || has("rank") {
            Some(Task::Judge)
        } else if has("critiq") {
            Some(Task::Critique)
        } else if has("refin") || has("improv") {
            Some(Task::Refine)
        } else if has("combin") || has("merg") {
            Some(Task::Combine)
        } else if has("expan") {
            Some(Task::Expand)
        } else {
            None
        }
    }
}

/// Which half of a candidate a task writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dims {
    What,
    How,
    Both,
}

/// A candidate's prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) what: String,
    pub(crate) how: String,
    pub(crate) combined: String,
}

impl Candidate {
    fn new(what: String, how: String) -> Candidate {
        let combined = combine(&what, &how);
        Candidate {
            what,
            how,
            combined,
        }
    }

    fn facts(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("what".into(), json!(self.what));
        m.insert("how".into(), json!(self.how));
        m.insert("combined".into(), json!(self.combined));
        m.insert("prompt".into(), json!(self.combined));
        m
    }

    fn all_text(&self) -> String {
        format!("{} {} {}", self.what, self.how, self.combined)
    }
}

/// What the engine answers: the facts, and how to say them in prose.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// Named facts (`what`, `alignment`, `critique`, `children`, ...): a JSON object.
    pub(crate) facts: Value,
    /// The answer as plain text.
    pub(crate) text: String,
}

/// What the caller knows about the expected output, beyond the conversation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wants {
    /// The response schema has a children array with these item bounds.
    pub(crate) children: Option<(usize, usize)>,
    /// The response schema asks for a critique.
    pub(crate) critique: bool,
}

/// The one prompt WHAT + HOW make: the combiner's rule, also used by fused children.
pub(crate) fn combine(what: &str, how: &str) -> String {
    let what = what.trim().trim_end_matches('.');
    let how = how.trim();
    match (what.is_empty(), how.is_empty()) {
        (true, _) => how.to_string(),
        (false, true) => format!("{what}."),
        (false, false) => format!("{what}. {TREATMENT_MARK} {how}"),
    }
}

/// Answers the conversation. `dice` is seeded by the whole request, so any change to it (a
/// vote index, the A/B order, the choice index) gives different noise.
pub(crate) fn answer(reading: &Reading, wants: Wants, base: u64) -> Answer {
    let task = recognise(reading, wants);
    let idea = idea_of(reading);
    match task {
        Task::Expand => expand_answer(reading, &idea, wants, base),
        Task::Combine => {
            let c = Candidate::new(
                reading.field(reading::WHAT).unwrap_or_default().to_string(),
                reading.field(reading::HOW).unwrap_or_default().to_string(),
            );
            Answer {
                text: c.combined.clone(),
                facts: Value::Object(c.facts()),
            }
        }
        Task::Critique => {
            let parent = parent_of(reading);
            let notes = critique(&idea, &parent, reading, &mut Dice::new(base, "critique"));
            Answer {
                text: notes.text.clone(),
                facts: Value::Object(notes.facts()),
            }
        }
        Task::Refine => refine_answer(reading, &idea, wants, base),
        Task::Judge => judge_answer(reading, &idea, wants, base),
        Task::Compare => compare_answer(reading, &idea, base),
    }
}

/// The task: an explicit `Task:` field wins; then images decide (two: compare, one: judge);
/// then the words of the conversation.
pub(crate) fn recognise(reading: &Reading, wants: Wants) -> Task {
    if let Some(task) = reading.field(reading::TASK).and_then(Task::from_word) {
        return task;
    }
    match reading.images.len() {
        0 => {}
        1 => return Task::Judge,
        _ => return Task::Compare,
    }
    let lower = reading.text.to_lowercase();
    let mentions = |stems: &[&str]| {
        text::words(&lower)
            .iter()
            .any(|w| stems.iter().any(|s| w.starts_with(s)))
    };
    let has_parent =
        reading.field(reading::WHAT).is_some() || reading.field(reading::HOW).is_some();
    let has_critique = reading.field(reading::CRITIQUE).is_some();
    let asks_refine = mentions(&["refin", "improv", "revis", "rewrit"]);
    if has_parent && (has_critique || wants.children.is_some()) && asks_refine {
        return Task::Refine;
    }
    if has_parent && wants.children.is_some() {
        return Task::Refine;
    }
    if has_parent && (mentions(&["critiqu", "critic"]) || wants.critique) {
        return Task::Critique;
    }
    if reading.field(reading::WHAT).is_some()
        && reading.field(reading::HOW).is_some()
        && mentions(&["combin", "merg", "fuse"])
    {
        return Task::Combine;
    }
    if has_parent && asks_refine {
        return Task::Refine;
    }
    Task::Expand
}

/// The user's idea: an `Idea:` field, else the last line of text that is not a labelled field.
fn idea_of(reading: &Reading) -> String {
    if let Some(idea) = reading.field(reading::IDEA) {
        return idea.to_string();
    }
    reading
        .text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !reading::is_label_line(l))
        .unwrap_or_default()
        .to_string()
}

/// The candidate a conversation talks about; a missing half is recovered from a combined prompt.
fn parent_of(reading: &Reading) -> Candidate {
    let combined = reading.field(reading::COMBINED).unwrap_or_default();
    let (c_what, c_how) = match combined.split_once(TREATMENT_MARK) {
        Some((w, h)) => (w.trim(), h.trim()),
        None => (combined, ""),
    };
    let what = reading.field(reading::WHAT).unwrap_or(c_what).to_string();
    let how = reading.field(reading::HOW).unwrap_or(c_how).to_string();
    let mut c = Candidate::new(what, how);
    if !combined.is_empty() {
        c.combined = combined.to_string();
    }
    c
}

/// Which half the conversation asks to write: a `Dimension:` field, then phrases such as
/// "refine the WHAT", then (for expansion) whether only one of WHAT / HOW is named.
fn dims_of(reading: &Reading, task: Task) -> Dims {
    if let Some(d) = reading.field(reading::DIMENSION) {
        let w = text::words(d);
        match (w.iter().any(|x| x == "what"), w.iter().any(|x| x == "how")) {
            (true, false) => return Dims::What,
            (false, true) => return Dims::How,
            _ => {}
        }
    }
    let words = text::words(&reading.text);
    for pair in words.windows(3) {
        let verb = [
            "refine", "improve", "revise", "rewrite", "change", "modify", "write",
        ]
        .contains(&pair[0].as_str());
        let target = if pair[1] == "the" || pair[1] == "only" {
            &pair[2]
        } else {
            &pair[1]
        };
        if verb {
            match target.as_str() {
                "what" => return Dims::What,
                "how" => return Dims::How,
                _ => {}
            }
        }
    }
    if task == Task::Expand {
        let shouty = |w: &str| {
            reading
                .text
                .split(|c: char| !c.is_alphanumeric())
                .any(|x| x == w)
        };
        match (shouty("WHAT"), shouty("HOW")) {
            (true, false) => return Dims::What,
            (false, true) => return Dims::How,
            _ => {}
        }
    }
    Dims::Both
}

/// How many children the conversation asks for: the schema's bounds around a count named in
/// the text ("3 children", "Children: 3"), 3 by default.
fn children_count(reading: &Reading, wants: Wants) -> usize {
    let from_field = reading
        .field(reading::CHILDREN)
        .and_then(|v| v.trim().parse::<usize>().ok());
    let from_text = || {
        let words = text::words(&reading.text);
        let nouns = [
            "children",
            "child",
            "variants",
            "variations",
            "candidates",
            "proposals",
            "refinements",
            "refined",
            "prompts",
        ];
        words.iter().enumerate().find_map(|(i, w)| {
            let n = number(w)?;
            words[i + 1..]
                .iter()
                .take(3)
                .any(|x| nouns.contains(&x.as_str()))
                .then_some(n)
        })
    };
    let n = from_field.or_else(from_text).unwrap_or(3);
    match wants.children {
        Some((lo, hi)) => n.clamp(lo.max(1), hi.max(lo.max(1))),
        None => n.clamp(1, 16),
    }
}

fn number(word: &str) -> Option<usize> {
    const WORDS: [&str; 10] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    word.parse::<usize>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .or_else(|| WORDS.iter().position(|w| *w == word).map(|i| i + 1))
}

/// Which child a single refinement writes, from a phrase like "child 2 of 3" (0-based; 0 when
/// the conversation names none).
fn child_index(reading: &Reading) -> usize {
    let words = text::words(&reading.text);
    words
        .windows(2)
        .find_map(|w| (w[0] == "child").then(|| number(&w[1])).flatten())
        .map_or(0, |n| n - 1)
}

/// `alpha` from an `Alpha:` field, else [`DEFAULT_ALPHA`].
fn alpha_of(reading: &Reading) -> f64 {
    reading
        .field(reading::ALPHA)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|a| (0.0..=1.0).contains(a))
        .unwrap_or(DEFAULT_ALPHA)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A first WHAT/HOW pair for `idea`: each idea word kept with probability [`EXPAND_KEEP`], a
/// setting and a sensory clause, maybe one atmosphere term; HOW names 2-3 treatment terms from
/// different categories.
pub(crate) fn expand(idea: &str, dice: &mut Dice) -> Candidate {
    Candidate::new(expand_what(idea, dice), expand_how(dice))
}

fn expand_what(idea: &str, dice: &mut Dice) -> String {
    let words = text::content_words(idea);
    let mut kept: Vec<&String> = words.iter().filter(|_| dice.chance(EXPAND_KEEP)).collect();
    if kept.is_empty() && !words.is_empty() {
        kept.push(&words[dice.below(words.len())]);
    }
    let adjective = dice.pick(text::ADJECTIVES).copied().unwrap_or("quiet");
    let setting = dice.pick(text::SETTINGS).copied().unwrap_or("");
    let sense = dice.pick(text::SENSES).copied().unwrap_or("");
    let subject = if kept.is_empty() {
        "scene".to_string()
    } else {
        join_and(&kept.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    };
    let mut what = format!("A {adjective} {subject} {setting}; {sense}");
    if dice.chance(0.5)
        && let Some(t) = dice.pick(Category::Atmosphere.terms())
    {
        what.push_str(&format!(", with {t}"));
    }
    what.push('.');
    what
}

fn expand_how(dice: &mut Dice) -> String {
    let mut cats = Category::TREATMENT.to_vec();
    dice.shuffle(&mut cats);
    let count = 2 + dice.below(2);
    let terms: Vec<&str> = cats
        .iter()
        .take(count)
        .filter_map(|c| dice.pick(c.terms()).copied())
        .collect();
    format!("{}.", capitalise(&terms.join(", ")))
}

fn expand_answer(reading: &Reading, idea: &str, wants: Wants, base: u64) -> Answer {
    let dims = dims_of(reading, Task::Expand);
    let c = expand(idea, &mut Dice::new(base, "expand"));
    let mut facts = c.facts();
    if wants.children.is_some() {
        let n = children_count(reading, wants);
        let kids: Vec<Value> = (0..n)
            .map(|i| {
                Value::Object(expand(idea, &mut Dice::new(base, &format!("child{i}"))).facts())
            })
            .collect();
        facts.insert("children".into(), Value::Array(kids));
    }
    let text = match dims {
        Dims::What => c.what.clone(),
        Dims::How => c.how.clone(),
        Dims::Both => format!("WHAT: {}\nHOW: {}\nCOMBINED: {}", c.what, c.how, c.combined),
    };
    Answer {
        facts: Value::Object(facts),
        text,
    }
}

/// What a critique tells the refiner.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notes {
    pub(crate) text: String,
    pub(crate) strengths: Vec<String>,
    pub(crate) weaknesses: Vec<String>,
    /// Content words the candidate should add.
    pub(crate) missing: Vec<String>,
    /// Atmosphere terms to add to WHAT.
    pub(crate) for_what: Vec<&'static str>,
    /// Treatment terms to add to HOW.
    pub(crate) for_how: Vec<&'static str>,
}

impl Notes {
    fn facts(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("critique".into(), json!(self.text));
        m.insert("strengths".into(), json!(self.strengths));
        m.insert("weaknesses".into(), json!(self.weaknesses));
        m.insert("missing".into(), json!(self.missing));
        let suggestions: Vec<&str> = self.for_what.iter().chain(&self.for_how).copied().collect();
        m.insert("suggestions".into(), json!(suggestions));
        m.insert("suggested_what".into(), json!(self.for_what));
        m.insert("suggested_how".into(), json!(self.for_how));
        m
    }
}

/// The critic: names the idea words the candidate misses, the treatment categories it leaves
/// unspecified, and suggests new terms (3 atmosphere terms for WHAT, 5 treatment terms for HOW,
/// unspecified categories first). Weaknesses from a judgement in the conversation are kept.
pub(crate) fn critique(
    idea: &str,
    parent: &Candidate,
    reading: &Reading,
    dice: &mut Dice,
) -> Notes {
    let all = parent.all_text();
    let have = text::stems(&all);
    let idea_words = text::content_words(idea);
    let (covered, missing): (Vec<&String>, Vec<&String>) = idea_words
        .iter()
        .partition(|w| have.contains(&text::stem(w)));
    let terms = text::terms_in(&all);
    let used: Vec<Category> = terms.iter().map(|t| t.category).collect();
    let unspecified: Vec<Category> = Category::TREATMENT
        .into_iter()
        .filter(|c| !used.contains(c))
        .collect();

    let (strengths, mut weaknesses) = coverage_notes(&covered, &missing, &terms);
    if let Some(from_judge) = reading.field(reading::WEAKNESSES) {
        for w in from_judge.split(';') {
            let w = w.trim().to_string();
            if !w.is_empty() && !weaknesses.contains(&w) {
                weaknesses.push(w);
            }
        }
    }
    if weaknesses.is_empty() {
        weaknesses.push("the treatment could be richer".into());
    }

    let for_what = suggest(&[Category::Atmosphere], &all, 3, dice);
    let mut order = unspecified.clone();
    let mut rest: Vec<Category> = Category::TREATMENT
        .into_iter()
        .filter(|c| !unspecified.contains(c))
        .collect();
    dice.shuffle(&mut order);
    dice.shuffle(&mut rest);
    order.extend(rest);
    let for_how = suggest(&order, &all, 5, dice);

    let missing: Vec<String> = missing.into_iter().cloned().collect();
    let summary = if missing.is_empty() {
        "The candidate covers the whole idea".to_string()
    } else if covered.is_empty() {
        "The candidate misses the idea".to_string()
    } else {
        format!(
            "The candidate follows the idea only in part: it shows {} but not {}",
            join_and(&covered.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            join_and(&missing.iter().map(String::as_str).collect::<Vec<_>>())
        )
    };
    let text = format!(
        "{summary}; its treatment names {} visual term{}.\nWeaknesses: {}\nMissing content: {}\nSuggested content: {}\nSuggested treatment: {}",
        terms.len(),
        if terms.len() == 1 { "" } else { "s" },
        weaknesses.join("; "),
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(", ")
        },
        for_what.join(", "),
        for_how.join(", "),
    );
    Notes {
        text,
        strengths,
        weaknesses,
        missing,
        for_what,
        for_how,
    }
}

/// Up to `n` terms not already in `have`, one per category in `order` round-robin.
fn suggest(order: &[Category], have: &str, n: usize, dice: &mut Dice) -> Vec<&'static str> {
    let present: Vec<Term> = text::terms_in(have);
    let mut pools: Vec<Vec<&'static str>> = order
        .iter()
        .map(|c| {
            let mut pool: Vec<&'static str> = c
                .terms()
                .iter()
                .copied()
                .filter(|t| !present.iter().any(|p| p.text == *t))
                .collect();
            dice.shuffle(&mut pool);
            pool
        })
        .collect();
    let mut out = Vec::new();
    while out.len() < n && pools.iter().any(|p| !p.is_empty()) {
        for pool in pools.iter_mut() {
            if out.len() == n {
                break;
            }
            if let Some(t) = pool.pop() {
                out.push(t);
            }
        }
    }
    out
}

/// What a critique in the conversation asks for, as the refiner reads it: words named as
/// missing, idea words the critique mentions that the candidate lacks, and visual terms it
/// names that the candidate lacks. Without a critique, nothing.
fn read_critique(reading: &Reading, idea: &str, parent: &Candidate) -> Notes {
    let critique_text = [
        reading.fields_of(reading::CRITIQUE),
        reading.fields_of(reading::WEAKNESSES),
        reading.fields_of(reading::MISSING),
        reading.fields_of(reading::SUGGESTED),
    ]
    .join("\n");
    let have = text::stems(&parent.all_text());
    let mentioned = text::stems(&critique_text);
    let mut missing: Vec<String> = Vec::new();
    let named_missing = reading.fields_of(reading::MISSING);
    for w in text::content_words(&named_missing).into_iter().chain(
        text::content_words(idea)
            .into_iter()
            .filter(|w| mentioned.contains(&text::stem(w))),
    ) {
        if w != "none" && !have.contains(&text::stem(&w)) && !missing.contains(&w) {
            missing.push(w);
        }
    }
    let present = text::terms_in(&parent.all_text());
    let new_terms: Vec<Term> = text::terms_in(&critique_text)
        .into_iter()
        .filter(|t| !present.contains(t))
        .collect();
    Notes {
        text: critique_text,
        missing,
        for_what: new_terms
            .iter()
            .filter(|t| t.category == Category::Atmosphere)
            .map(|t| t.text)
            .collect(),
        for_how: new_terms
            .iter()
            .filter(|t| t.category != Category::Atmosphere)
            .map(|t| t.text)
            .collect(),
        ..Notes::default()
    }
}

/// The refiner. WHAT gains a sentence naming every missing word and up to two of the suggested
/// atmosphere terms; HOW gains two or three of the suggested treatment terms. Child `i` starts
/// at a different suggestion, so siblings differ. Without suggestions it adds one random unused
/// term (a blind refinement still changes something).
pub(crate) fn refine(
    parent: &Candidate,
    notes: &Notes,
    dims: Dims,
    child: usize,
    dice: &mut Dice,
) -> Candidate {
    let mut what = parent.what.trim().to_string();
    let mut how = parent.how.trim().to_string();
    let all = parent.all_text();
    if dims != Dims::How {
        let mut atmosphere = rotate(&notes.for_what, child);
        if atmosphere.is_empty() {
            atmosphere = suggest(&[Category::Atmosphere], &all, 1, dice);
        }
        atmosphere.truncate(2);
        let mut sentence = Vec::new();
        if !notes.missing.is_empty() {
            sentence.push(format!(
                "The {} {} clearly in view",
                join_and(&notes.missing.iter().map(String::as_str).collect::<Vec<_>>()),
                if notes.missing.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            ));
        }
        if !atmosphere.is_empty() {
            sentence.push(format!("amid {}", join_and(&atmosphere)));
        }
        let addition = capitalise(&sentence.join(", "));
        what = if what.is_empty() {
            format!("{addition}.")
        } else {
            format!("{} {addition}.", with_stop(&what))
        };
    }
    if dims != Dims::What {
        let mut treatment = rotate(&notes.for_how, child);
        let take = if child.is_multiple_of(2) { 3 } else { 2 };
        if treatment.is_empty() {
            let mut cats = Category::TREATMENT.to_vec();
            dice.shuffle(&mut cats);
            treatment = suggest(&cats, &all, 1, dice);
        }
        treatment.truncate(take);
        let added = treatment.join(", ");
        how = if how.is_empty() {
            format!("{}.", capitalise(&added))
        } else {
            format!("{}, {added}.", how.trim_end_matches('.'))
        };
    }
    Candidate::new(what, how)
}

fn refine_answer(reading: &Reading, idea: &str, wants: Wants, base: u64) -> Answer {
    let parent = parent_of(reading);
    let dims = dims_of(reading, Task::Refine);
    let has_critique = reading.field(reading::CRITIQUE).is_some()
        || reading.field(reading::MISSING).is_some()
        || reading.field(reading::SUGGESTED).is_some();
    // A fused call gets the judgement, not a critique: it writes its own and follows it.
    let (notes, wrote_critique) = if has_critique {
        (read_critique(reading, idea, &parent), false)
    } else if wants.children.is_some() || wants.critique {
        (
            critique(idea, &parent, reading, &mut Dice::new(base, "critique")),
            true,
        )
    } else {
        (read_critique(reading, idea, &parent), false)
    };
    // "child 2 of 3": siblings written by separate calls start at different suggestions.
    let index = child_index(reading);
    let child = refine(&parent, &notes, dims, index, &mut Dice::new(base, "child0"));
    let mut facts = child.facts();
    facts.insert(
        "dimension".into(),
        json!(match dims {
            Dims::What => "what",
            Dims::How => "how",
            Dims::Both => "both",
        }),
    );
    let mut text = match dims {
        Dims::What => child.what.clone(),
        Dims::How => child.how.clone(),
        Dims::Both => format!(
            "WHAT: {}\nHOW: {}\nCOMBINED: {}",
            child.what, child.how, child.combined
        ),
    };
    if wrote_critique {
        for (k, v) in notes.facts() {
            facts.insert(k, v);
        }
    }
    if wants.children.is_some() || wrote_critique {
        let n = children_count(reading, wants);
        let kids = children(&parent, &notes, dims, n, base);
        text = format!("Critique: {}\n\n{}", notes.text, children_text(&kids));
        facts.insert(
            "children".into(),
            Value::Array(kids.iter().map(|k| Value::Object(k.facts())).collect()),
        );
    }
    Answer {
        facts: Value::Object(facts),
        text,
    }
}

fn children(parent: &Candidate, notes: &Notes, dims: Dims, n: usize, base: u64) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            refine(
                parent,
                notes,
                dims,
                i,
                &mut Dice::new(base, &format!("child{i}")),
            )
        })
        .collect()
}

fn children_text(kids: &[Candidate]) -> String {
    kids.iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "CHILD {}:\nWHAT: {}\nHOW: {}\nCOMBINED: {}",
                i + 1,
                k.what,
                k.how,
                k.combined
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

// ---------------------------------------------------------------------------------------------
// Judging

/// One vote on one image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judgement {
    pub(crate) alignment: f64,
    pub(crate) aesthetic: f64,
    pub(crate) score: f64,
    pub(crate) reasons: String,
    pub(crate) strengths: Vec<String>,
    pub(crate) weaknesses: Vec<String>,
    pub(crate) missing: Vec<String>,
}

impl Judgement {
    fn facts(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("alignment".into(), json!(self.alignment));
        m.insert("aesthetic".into(), json!(self.aesthetic));
        m.insert("score".into(), json!(self.score));
        m.insert("reasons".into(), json!(self.reasons));
        m.insert("strengths".into(), json!(self.strengths));
        m.insert("weaknesses".into(), json!(self.weaknesses));
        m.insert("missing".into(), json!(self.missing));
        m
    }
}

/// The noise-free scores of a prompt for an idea, on 0-10:
/// `alignment = 10 * covered / idea words` (5 when the idea has no content words) and
/// `aesthetic = 10 * (1 - exp(-terms / 6))`, less `0.02` per word beyond
/// [`LONG_PROMPT_WORDS`] (at most 3).
pub(crate) fn true_scores(prompt: &str, idea: &str) -> (f64, f64) {
    let idea_words = text::content_words(idea);
    let have = text::stems(prompt);
    let alignment = if idea_words.is_empty() {
        5.0
    } else {
        let covered = idea_words
            .iter()
            .filter(|w| have.contains(&text::stem(w)))
            .count();
        10.0 * covered as f64 / idea_words.len() as f64
    };
    let terms = text::terms_in(prompt).len() as f64;
    let length = text::words(prompt).len();
    let penalty = (length.saturating_sub(LONG_PROMPT_WORDS) as f64 * 0.02).min(3.0);
    let aesthetic = (10.0 * (1.0 - (-terms / AESTHETIC_SCALE).exp()) - penalty).max(0.0);
    (alignment, aesthetic)
}

/// What a prompt shows of the idea and of the visual vocabulary: strengths (idea words it
/// covers, visual terms it uses) and weaknesses (idea words it misses, treatment categories it
/// leaves unspecified), in that order.
fn coverage_notes(
    covered: &[impl std::fmt::Display],
    missing: &[impl std::fmt::Display],
    terms: &[Term],
) -> (Vec<String>, Vec<String>) {
    let mut strengths: Vec<String> = covered.iter().map(|w| format!("shows the {w}")).collect();
    strengths.extend(
        terms
            .iter()
            .map(|t| format!("{} ({})", t.text, t.category.name())),
    );
    let mut weaknesses: Vec<String> = missing
        .iter()
        .map(|w| format!("does not show the {w} from the idea"))
        .collect();
    weaknesses.extend(
        Category::TREATMENT
            .iter()
            .filter(|c| !terms.iter().any(|t| t.category == **c))
            .map(|c| format!("{} is unspecified", c.name())),
    );
    (strengths, weaknesses)
}

/// One vote: [`true_scores`] plus normal noise ([`VOTE_NOISE`]) on each, clamped to 0-10 and
/// rounded to one decimal; `score = alpha * alignment + (1 - alpha) * aesthetic`. An image this
/// simulator did not draw scores alignment 0 and aesthetic 1.
///
/// A draft render ([`SeenImage::Draft`]) shows less: the terms of the categories its quality
/// loses ([`lost_in`]) are invisible to the judge (they neither score nor appear in its
/// reasons), and each vote is noisier ([`LOW_DRAFT_NOISE`], [`MEDIUM_DRAFT_NOISE`]). So a draft
/// judge can rank two images in an order a full-quality judge would not.
pub(crate) fn judge(image: &SeenImage, idea: &str, alpha: f64, dice: &mut Dice) -> Judgement {
    let (seen, noise) = match image {
        SeenImage::Drawn(p) => (p.clone(), VOTE_NOISE),
        SeenImage::Draft(p, draft) => {
            let noise = match draft {
                Draft::Low => LOW_DRAFT_NOISE,
                Draft::Medium => MEDIUM_DRAFT_NOISE,
            };
            (without_lost_terms(p, *draft), noise)
        }
        SeenImage::Foreign => (String::new(), VOTE_NOISE),
    };
    let prompt = seen.as_str();
    let (a, e) = match image {
        SeenImage::Foreign => (0.0, 1.0),
        _ => true_scores(prompt, idea),
    };
    let alignment = round1((a + dice.normal(noise)).clamp(0.0, 10.0));
    let aesthetic = round1((e + dice.normal(noise)).clamp(0.0, 10.0));
    let score = round1(alpha * alignment + (1.0 - alpha) * aesthetic);

    let idea_words = text::content_words(idea);
    let have = text::stems(prompt);
    let (covered, missing): (Vec<String>, Vec<String>) = idea_words
        .into_iter()
        .partition(|w| have.contains(&text::stem(w)));
    let terms = text::terms_in(prompt);
    let (strengths, mut weaknesses) = coverage_notes(&covered, &missing, &terms);
    if matches!(image, SeenImage::Foreign) {
        weaknesses.insert(0, "the image cannot be related to the idea".into());
    }
    let reasons = format!(
        "The image shows {} of {} idea words{}; its treatment uses {} recognisable visual term{}{}.",
        covered.len(),
        covered.len() + missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" (missing: {})", missing.join(", "))
        },
        terms.len(),
        if terms.len() == 1 { "" } else { "s" },
        if terms.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                terms.iter().map(|t| t.text).collect::<Vec<_>>().join(", ")
            )
        },
    );
    Judgement {
        alignment,
        aesthetic,
        score,
        reasons,
        strengths,
        weaknesses,
        missing,
    }
}

/// The treatment categories a draft of this quality does not show.
pub(crate) fn lost_in(draft: Draft) -> &'static [Category] {
    match draft {
        Draft::Low => &[Category::Texture, Category::Lens],
        Draft::Medium => &[Category::Texture],
    }
}

/// `prompt` as a draft shows it: its words (punctuation dropped), the terms of the categories
/// the draft loses taken out.
fn without_lost_terms(prompt: &str, draft: Draft) -> String {
    let mut seen = text::normalise(prompt);
    for t in text::terms_in(prompt) {
        if lost_in(draft).contains(&t.category) {
            seen = seen.replace(&text::normalise(t.text), " ");
        }
    }
    seen.trim().to_owned()
}

fn judge_answer(reading: &Reading, idea: &str, wants: Wants, base: u64) -> Answer {
    let alpha = alpha_of(reading);
    let image = reading
        .images
        .first()
        .cloned()
        .unwrap_or(SeenImage::Foreign);
    let j = judge(&image, idea, alpha, &mut Dice::new(base, "vote"));
    let mut facts = j.facts();
    let mut text = format!(
        "Alignment: {}/10\nAesthetic: {}/10\nScore: {}\nReasons: {}\nStrengths: {}\nWeaknesses: {}",
        j.alignment,
        j.aesthetic,
        j.score,
        j.reasons,
        j.strengths.join("; "),
        j.weaknesses.join("; ")
    );
    // judge_refines: the judge also writes the critique and the children it would propose.
    let lower = reading.text.to_lowercase();
    let asks = wants.children.is_some()
        || wants.critique
        || lower.contains("children")
        || lower.contains("critique");
    if asks {
        let mut parent = parent_of(reading);
        if parent.what.is_empty()
            && parent.how.is_empty()
            && let Some(p) = image.prompt()
        {
            let (w, h) = p.split_once(TREATMENT_MARK).unwrap_or((p, ""));
            parent = Candidate::new(w.trim().to_string(), h.trim().to_string());
        }
        let mut notes = critique(idea, &parent, reading, &mut Dice::new(base, "critique"));
        notes.weaknesses.retain(|w| !w.is_empty());
        let dims = dims_of(reading, Task::Refine);
        let n = children_count(reading, wants);
        let kids = children(&parent, &notes, dims, n, base);
        for (k, v) in notes.facts() {
            if k != "strengths" && k != "weaknesses" {
                facts.insert(k, v);
            }
        }
        facts.insert(
            "children".into(),
            Value::Array(kids.iter().map(|k| Value::Object(k.facts())).collect()),
        );
        text = format!(
            "{text}\nCritique: {}\n\n{}",
            notes.text.replace('\n', " "),
            children_text(&kids)
        );
    }
    Answer {
        facts: Value::Object(facts),
        text,
    }
}

fn compare_answer(reading: &Reading, idea: &str, base: u64) -> Answer {
    let alpha = alpha_of(reading);
    let a_img = &reading.images[0];
    let b_img = &reading.images[1];
    let a = judge(a_img, idea, alpha, &mut Dice::new(base, "vote-a"));
    let b = judge(b_img, idea, alpha, &mut Dice::new(base, "vote-b"));
    let a_total = a.score + POSITION_BIAS;
    let (winner, loser, w, l) = if a_total >= b.score {
        ("A", "B", &a, &b)
    } else {
        ("B", "A", &b, &a)
    };
    let by = |x: f64, y: f64| if x >= y { ("A", "B") } else { ("B", "A") };
    let (align_w, align_l) = by(a.alignment, b.alignment);
    let (aest_w, aest_l) = by(a.aesthetic, b.aesthetic);
    let side = |j: &Judgement| {
        json!({"alignment": j.alignment, "aesthetic": j.aesthetic, "score": j.score,
               "reasons": j.reasons, "strengths": j.strengths, "weaknesses": j.weaknesses})
    };
    let reasons = format!(
        "Image {winner} is preferred. A: {} B: {}",
        a.reasons, b.reasons
    );
    let facts = json!({
        "winner": winner,
        "loser": loser,
        "ranking": [winner, loser],
        "ranks": {winner: 1, loser: 2},
        "alignment_winner": align_w,
        "aesthetic_winner": aest_w,
        "alignment_ranking": [align_w, align_l],
        "aesthetic_ranking": [aest_w, aest_l],
        "alignment_ranks": {align_w: 1, align_l: 2},
        "aesthetic_ranks": {aest_w: 1, aest_l: 2},
        "a": side(&a),
        "b": side(&b),
        "reasons": reasons,
        "strengths": w.strengths,
        "weaknesses": l.weaknesses,
    });
    let text = format!(
        "Winner: {winner}\nAlignment winner: {align_w}\nAesthetic winner: {aest_w}\nReasons: {reasons}"
    );
    Answer { facts, text }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn rotate(items: &[&'static str], by: usize) -> Vec<&'static str> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = by % items.len();
    items[k..].iter().chain(&items[..k]).copied().collect()
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn with_stop(s: &str) -> String {
    let s = s.trim();
    if s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}
