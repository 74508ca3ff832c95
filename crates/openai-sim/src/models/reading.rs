//! Reading a conversation: the labelled fields, embedded JSON and images a prompt carries.
//!
//! The simulated writer and judge only understand what this module extracts, so the rules are
//! simple and documented in the crate docs: `Label: value` lines with known labels, JSON objects
//! with known keys, and images drawn by this simulator.

use std::collections::BTreeMap;

use serde_json::Value;

use super::text;

/// What a conversation gave the model: its text, fields found in it and the images it showed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reading {
    /// Every text part of every message, in order, one part per line block.
    pub(crate) text: String,
    /// Labelled values by normalised label (`"user idea"`, `"what"`, ...); repeated labels are
    /// joined with `"; "`.
    pub(crate) fields: BTreeMap<String, String>,
    /// The images shown, in order.
    pub(crate) images: Vec<SeenImage>,
}

/// An image the model was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeenImage {
    /// A PNG drawn by this simulator at full (`high`) quality: the prompt read back from its
    /// text chunk.
    Drawn(String),
    /// A PNG drawn by this simulator at a draft quality (`low` or `medium`, from its
    /// `batchbeam:quality` chunk): the prompt, and how much of it the picture shows.
    Draft(String, Draft),
    /// Any other image: the model sees it but cannot tell what it shows.
    Foreign,
}

/// A draft render's quality: what the judge can make out in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draft {
    /// `low`: fine detail (texture, lens) is lost and each vote is noisier.
    Low,
    /// `medium`: fine texture is lost and each vote is a little noisier.
    Medium,
}

impl SeenImage {
    /// The prompt a drawn image was drawn from, at any quality.
    pub(crate) fn prompt(&self) -> Option<&str> {
        match self {
            SeenImage::Drawn(p) | SeenImage::Draft(p, _) => Some(p),
            SeenImage::Foreign => None,
        }
    }
}

/// Labels the reader recognises, grouped by the field they fill. The first of each group is
/// the canonical name.
pub(crate) const IDEA: &[&str] = &[
    "idea",
    "user idea",
    "original idea",
    "the idea",
    "users idea",
    "user s idea",
    "concept",
    "brief",
    "request",
    "user request",
];
pub(crate) const WHAT: &[&str] = &[
    "what",
    "what prompt",
    "content prompt",
    "parent what",
    "current what",
];
pub(crate) const HOW: &[&str] = &[
    "how",
    "how prompt",
    "style prompt",
    "treatment",
    "parent how",
    "current how",
];
pub(crate) const COMBINED: &[&str] = &[
    "combined",
    "combined prompt",
    "image prompt",
    "final prompt",
    "prompt",
];
pub(crate) const CRITIQUE: &[&str] = &["critique", "feedback", "criticism", "review"];
pub(crate) const WEAKNESSES: &[&str] = &["weaknesses", "weakness", "issues", "problems"];
pub(crate) const STRENGTHS: &[&str] = &["strengths", "strength"];
pub(crate) const REASONS: &[&str] = &["reasons", "reason", "rationale"];
pub(crate) const MISSING: &[&str] = &["missing content", "missing"];
pub(crate) const SUGGESTED: &[&str] = &[
    "suggested content",
    "suggested treatment",
    "suggestions",
    "suggestion",
];
pub(crate) const TASK: &[&str] = &["task", "mode", "operation", "step"];
pub(crate) const DIMENSION: &[&str] = &["dimension", "refine dimension"];
pub(crate) const ALPHA: &[&str] = &["alpha"];
pub(crate) const CHILDREN: &[&str] = &[
    "children",
    "number of children",
    "n children",
    "num children",
    "variants",
];
pub(crate) const SCORES: &[&str] = &[
    "alignment",
    "aesthetic",
    "aesthetics",
    "score",
    "judgement",
    "judgment",
];

fn known_label(label: &str) -> bool {
    [
        IDEA, WHAT, HOW, COMBINED, CRITIQUE, WEAKNESSES, STRENGTHS, REASONS, MISSING, SUGGESTED,
        TASK, DIMENSION, ALPHA, CHILDREN, SCORES,
    ]
    .iter()
    .any(|group| group.contains(&label))
}

/// `WHAT prompt`, `**User idea**`, `what_prompt` all become `what prompt` / `user idea`.
pub(crate) fn normalise_label(label: &str) -> String {
    text::words(label).join(" ")
}

impl Reading {
    /// Adds one text part: its labelled lines and any JSON object it holds.
    pub(crate) fn add_text(&mut self, part: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(part);
        for object in json_objects(part) {
            self.add_json(&object, 0);
        }
        self.add_labels(part);
    }

    /// Adds an image the model was shown.
    pub(crate) fn add_image(&mut self, image: SeenImage) {
        self.images.push(image);
    }

    /// The value of the first label of `group` present, trimmed, if not empty.
    pub(crate) fn field(&self, group: &[&str]) -> Option<&str> {
        group
            .iter()
            .filter_map(|label| self.fields.get(*label))
            .map(|v| v.trim())
            .find(|v| !v.is_empty())
    }

    /// Every value of every label of `group`, joined by newlines.
    pub(crate) fn fields_of(&self, group: &[&str]) -> String {
        group
            .iter()
            .filter_map(|label| self.fields.get(*label))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn insert(&mut self, label: String, value: String) {
        let value = value
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == '`');
        if value.is_empty() {
            return;
        }
        self.fields
            .entry(label)
            .and_modify(|v| {
                if !v.contains(value) {
                    v.push_str("; ");
                    v.push_str(value);
                }
            })
            .or_insert_with(|| value.to_string());
    }

    fn add_json(&mut self, value: &Value, depth: usize) {
        let Value::Object(map) = value else { return };
        if depth > 6 {
            return;
        }
        for (key, v) in map {
            let label = normalise_label(key);
            match v {
                Value::Object(_) => self.add_json(v, depth + 1),
                Value::Array(items) if items.iter().any(Value::is_object) => {
                    for item in items {
                        self.add_json(item, depth + 1);
                    }
                }
                _ => {
                    if let Some(text) = flat_text(v) {
                        self.insert(label, text);
                    }
                }
            }
        }
    }

    /// `Label: value` lines. The value of a multi-line label (WHAT, HOW, critique, ...) runs
    /// on over the following lines until a blank line or a line that looks like a label;
    /// single-line labels (idea, task, dimension, alpha, children, scores) stop at the line end.
    fn add_labels(&mut self, part: &str) {
        let mut current: Option<(String, String)> = None;
        for line in part.lines() {
            let starts_new = label_like(line).is_some() || line.trim().is_empty();
            if starts_new && let Some((l, v)) = current.take() {
                self.insert(l, v);
            }
            if let Some((label, value)) = label_line(line) {
                if SINGLE_LINE
                    .iter()
                    .any(|group| group.contains(&label.as_str()))
                {
                    self.insert(label, value);
                } else {
                    current = Some((label, value));
                }
            } else if !starts_new && let Some((_, v)) = current.as_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        }
        if let Some((l, v)) = current.take() {
            self.insert(l, v);
        }
    }
}

/// Labels whose value is the rest of their line only.
const SINGLE_LINE: [&[&str]; 6] = [IDEA, TASK, DIMENSION, ALPHA, CHILDREN, SCORES];

/// A line of the form `[- * # >]* [**]Label[**]: value` whose label is known.
fn label_line(line: &str) -> Option<(String, String)> {
    let (label, value) = label_like(line)?;
    let label = normalise_label(label);
    if !known_label(&label) {
        return None;
    }
    let value = value.trim().trim_start_matches("**").trim();
    Some((label, value.to_string()))
}

/// Whether `line` starts a known label.
pub(crate) fn is_label_line(line: &str) -> bool {
    label_line(line).is_some()
}

/// Any line that looks like `Some label: value`: up to four words of letters, digits and
/// `_ ' / ( ) -`, starting with a letter, before the colon.
fn label_like(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start_matches(|c: char| c.is_whitespace() || "-*#>".contains(c));
    let (label, value) = trimmed.split_once(':')?;
    let label = label.trim().trim_matches('*').trim();
    let starts_with_letter = label.chars().next().is_some_and(char::is_alphabetic);
    let plain = label
        .chars()
        .all(|c| c.is_alphanumeric() || " _'/()-".contains(c));
    let short = label.split_whitespace().count() <= 4 && label.len() <= 40;
    (starts_with_letter && plain && short).then_some((label, value))
}
/// Strings as they are, numbers and booleans printed, arrays of scalars joined with `"; "`.
fn flat_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(flat_text).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        _ => None,
    }
}

/// JSON objects in a text part: the whole part, fenced blocks, or the span from the first `{`
/// to the last `}`.
fn json_objects(part: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut try_parse = |s: &str| {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(s.trim()) {
            found.push(v);
            true
        } else {
            false
        }
    };
    if try_parse(part) {
        return found;
    }
    let mut any_fence = false;
    for (i, block) in part.split("```").enumerate() {
        if i % 2 == 1 {
            let block = block.strip_prefix("json").unwrap_or(block);
            any_fence |= try_parse(block);
        }
    }
    if !any_fence
        && let (Some(start), Some(end)) = (part.find('{'), part.rfind('}'))
        && start < end
    {
        try_parse(&part[start..=end]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(parts: &[&str]) -> Reading {
        let mut r = Reading::default();
        for p in parts {
            r.add_text(p);
        }
        r
    }

    #[test]
    fn reads_labelled_lines() {
        let r = read(&[
            "You refine prompts.\n**User idea:** a lighthouse in a storm\nin the night\n\n- WHAT prompt: A tall tower\non a cliff.\nHOW: oil painting\nNote: ignored\nnot part of HOW",
        ]);
        // The idea is one line; WHAT runs on; an unknown label ends HOW without being read.
        assert_eq!(r.field(IDEA), Some("a lighthouse in a storm"));
        assert_eq!(r.field(WHAT), Some("A tall tower\non a cliff."));
        assert_eq!(r.field(HOW), Some("oil painting"));
        assert!(!r.fields.contains_key("note"));
        assert_eq!(r.field(CRITIQUE), None);
    }

    #[test]
    fn reads_embedded_json() {
        let r = read(&[
            "Parent:\n```json\n{\"what\": \"a cat\", \"how\": \"watercolor\", \"judgement\": {\"alignment\": 7, \"weaknesses\": [\"no light\", \"flat\"]}}\n```",
            "Idea: cats",
        ]);
        assert_eq!(r.field(WHAT), Some("a cat"));
        assert_eq!(r.field(HOW), Some("watercolor"));
        assert_eq!(r.field(SCORES), Some("7"));
        assert_eq!(r.field(WEAKNESSES), Some("no light; flat"));
        assert_eq!(r.field(IDEA), Some("cats"));

        let r = read(&["{\"idea\": \"a fox\", \"children\": 3}"]);
        assert_eq!(r.field(IDEA), Some("a fox"));
        assert_eq!(r.field(CHILDREN), Some("3"));
        let r = read(&["the parent was {\"what\": \"x\"} and more text"]);
        assert_eq!(r.field(WHAT), Some("x"));
    }

    #[test]
    fn repeated_labels_are_joined() {
        let r = read(&[
            "Weaknesses: too dark",
            "Weaknesses: too dark",
            "Weaknesses: flat",
        ]);
        assert_eq!(r.field(WEAKNESSES), Some("too dark; flat"));
    }
}
