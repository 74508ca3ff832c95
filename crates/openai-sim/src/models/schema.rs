//! Structured outputs: a JSON value that conforms to a caller's JSON schema, filled with the
//! engine's facts wherever a property's name says what it holds.
//!
//! Supported: `type` (single or list), `properties`, `items`, `enum`, `const`, `anyOf`/`oneOf`
//! (first fitting branch), `allOf` (first branch), local `$ref`s (`#/$defs/..`,
//! `#/definitions/..`), `minItems`/`maxItems`, `minimum`/`maximum`, `maxLength`. Every declared
//! property is written, as strict mode requires.

use serde_json::{Map, Value, json};

use super::text;

/// A value for `schema` filled from `facts` (a JSON object of named facts).
pub(crate) fn fill(schema: &Value, facts: &Value) -> Value {
    Filler { root: schema }.value(schema, Some(facts), "", 0)
}

/// Bounds of the first array property whose name means "children" (candidates, variants,
/// proposals...), when the schema has one.
pub(crate) fn children_bounds(schema: &Value) -> Option<(usize, usize)> {
    let filler = Filler { root: schema };
    filler.find_children(schema, 0)
}

/// Whether some property of the schema means "critique".
pub(crate) fn asks_critique(schema: &Value) -> bool {
    let filler = Filler { root: schema };
    filler.any_property(schema, 0, &|name| canonical(name).0 == Some("critique"))
}

/// What OpenAI's strict mode finds wrong with a schema, worded as its error message after
/// `Invalid schema for response_format 'NAME': `; `None` when the schema is acceptable. Strict
/// mode wants an object at the root and, on every object, `additionalProperties: false` and
/// every property listed in `required`.
pub(crate) fn strict_problem(schema: &Value) -> Option<String> {
    let root_type = types_of(schema);
    if !root_type.contains(&"object") {
        let got = root_type.first().copied().unwrap_or("None");
        return Some(format!(
            "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
        ));
    }
    strict_walk(schema, &mut Vec::new(), 0)
}

fn strict_walk(node: &Value, path: &mut Vec<String>, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let context = |path: &[String]| match path {
        [] => "()".to_string(),
        [one] => format!("('{one}',)"),
        many => format!(
            "({})",
            many.iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let is_object = types_of(node).contains(&"object") || node.get("properties").is_some();
    if is_object {
        if node.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Some(format!(
                "In context={}, 'additionalProperties' is required to be supplied and to be false.",
                context(path)
            ));
        }
        let props = node.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(missing) =
            props.and_then(|p| p.keys().find(|k| !required.contains(&k.as_str())))
        {
            return Some(format!(
                "In context={}, 'required' is required to be supplied and to be an array including every key in properties. Missing '{missing}'.",
                context(path)
            ));
        }
    }
    let mut children: Vec<(Vec<String>, &Value)> = Vec::new();
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            children.push((vec!["properties".into(), k.clone()], v));
        }
    }
    if let Some(items) = node.get("items") {
        children.push((vec!["items".into()], items));
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = node.get(key).and_then(Value::as_array) {
            for (i, b) in branches.iter().enumerate() {
                children.push((vec![key.into(), i.to_string()], b));
            }
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(defs) = node.get(key).and_then(Value::as_object) {
            for (k, v) in defs {
                children.push((vec![key.into(), k.clone()], v));
            }
        }
    }
    for (segments, child) in children {
        let n = segments.len();
        path.extend(segments);
        let found = strict_walk(child, path, depth + 1);
        path.truncate(path.len() - n);
        if found.is_some() {
            return found;
        }
    }
    None
}

struct Filler<'a> {
    root: &'a Value,
}

const MAX_DEPTH: usize = 24;

impl<'a> Filler<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..16 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(pointer) = r.strip_prefix('#') else {
                break;
            };
            match self.root.pointer(pointer) {
                Some(target) => s = target,
                None => break,
            }
        }
        s
    }

    /// The branch of a composite schema to use for `fact`.
    fn branch(&self, schema: &'a Value, fact: Option<&Value>) -> &'a Value {
        let schema = self.resolve(schema);
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                let resolved: Vec<&Value> = branches.iter().map(|b| self.resolve(b)).collect();
                let fits = |b: &&Value| match fact {
                    Some(f) if !f.is_null() => types_of(b).iter().any(|t| kind_fits(t, f)),
                    _ => !types_of(b).contains(&"null"),
                };
                let chosen = resolved
                    .iter()
                    .copied()
                    .find(|b| fits(b))
                    .or_else(|| {
                        resolved
                            .iter()
                            .copied()
                            .find(|b| !types_of(b).contains(&"null"))
                    })
                    .or(resolved.first().copied());
                if let Some(b) = chosen {
                    return self.branch(b, fact);
                }
            }
        }
        if let Some(first) = schema.get("allOf").and_then(|a| a.get(0)) {
            return self.branch(first, fact);
        }
        schema
    }

    fn value(&self, schema: &'a Value, fact: Option<&Value>, name: &str, depth: usize) -> Value {
        let schema = self.branch(schema, fact);
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            return pick_enum(options, fact);
        }
        let types = types_of(schema);
        let ty = match fact {
            Some(f) if !f.is_null() => types
                .iter()
                .find(|t| kind_fits(t, f))
                .or_else(|| types.iter().find(|t| **t != "null"))
                .copied(),
            _ => types.iter().find(|t| **t != "null").copied(),
        }
        .or_else(|| {
            if schema.get("properties").is_some() {
                Some("object")
            } else if schema.get("items").is_some() {
                Some("array")
            } else {
                None
            }
        });
        match ty {
            Some("object") => self.object(schema, fact, depth),
            Some("array") => self.array(schema, fact, name, depth),
            Some("string") => string(schema, fact, name),
            Some("number") => number(schema, fact, false),
            Some("integer") => number(schema, fact, true),
            Some("boolean") => Value::Bool(fact.and_then(Value::as_bool).unwrap_or(false)),
            Some("null") => Value::Null,
            // No type at all: the fact as it is, or an empty string.
            _ => fact.cloned().unwrap_or_else(|| json!("")),
        }
    }

    fn object(&self, schema: &'a Value, fact: Option<&Value>, depth: usize) -> Value {
        let mut out = Map::new();
        let ctx = fact.filter(|f| f.is_object());
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (prop, sub) in props {
                let found = ctx.and_then(|c| lookup(c, prop));
                let sub_resolved = self.branch(sub, found);
                let is_object = types_of(sub_resolved).contains(&"object")
                    || sub_resolved.get("properties").is_some();
                // A nested object whose name means nothing to us (`judgement`) sees the same facts.
                let fact = match found {
                    Some(f) => Some(f),
                    None if is_object => ctx,
                    None => None,
                };
                out.insert(prop.clone(), self.value(sub, fact, prop, depth + 1));
            }
        } else if let (Some(Value::Object(map)), Some(extra)) =
            (ctx, schema.get("additionalProperties"))
        {
            if extra.is_object() {
                for (k, v) in map {
                    out.insert(k.clone(), self.value(extra, Some(v), k, depth + 1));
                }
            } else if extra.as_bool() != Some(false) {
                return Value::Object(map.clone());
            }
        }
        Value::Object(out)
    }

    fn array(&self, schema: &'a Value, fact: Option<&Value>, name: &str, depth: usize) -> Value {
        let items_schema = schema.get("items").unwrap_or(&Value::Null);
        let min = schema
            .get("minItems")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let max = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let facts: Vec<Option<&Value>> = match fact {
            Some(Value::Array(items)) => items.iter().map(Some).collect(),
            Some(Value::Null) | None => vec![None],
            Some(other) => vec![Some(other)],
        };
        let mut out: Vec<Value> = facts
            .iter()
            .map(|f| self.value(items_schema, *f, name, depth + 1))
            .collect();
        if let Some(min) = min {
            let mut i = 0;
            while out.len() < min {
                let f = facts.get(i % facts.len().max(1)).copied().flatten();
                out.push(self.value(items_schema, f, name, depth + 1));
                i += 1;
            }
        }
        if let Some(max) = max {
            out.truncate(max);
        }
        Value::Array(out)
    }

    fn find_children(&self, schema: &'a Value, depth: usize) -> Option<(usize, usize)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let schema = self.branch(schema, None);
        let props = schema.get("properties").and_then(Value::as_object)?;
        for (name, sub) in props {
            let sub = self.branch(sub, None);
            if canonical(name).0 == Some("children") && types_of(sub).contains(&"array") {
                let min = sub.get("minItems").and_then(Value::as_u64).unwrap_or(1) as usize;
                let max = sub.get("maxItems").and_then(Value::as_u64).unwrap_or(16) as usize;
                return Some((min, max));
            }
        }
        props
            .values()
            .find_map(|sub| self.find_children(sub, depth + 1))
    }

    fn any_property(&self, schema: &'a Value, depth: usize, test: &dyn Fn(&str) -> bool) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let schema = self.branch(schema, None);
        if let Some(items) = schema.get("items")
            && self.any_property(items, depth + 1, test)
        {
            return true;
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return false;
        };
        props
            .iter()
            .any(|(name, sub)| test(name) || self.any_property(sub, depth + 1, test))
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn kind_fits(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn pick_enum(options: &[Value], fact: Option<&Value>) -> Value {
    if let Some(f) = fact {
        if let Some(hit) = options.iter().find(|o| *o == f) {
            return hit.clone();
        }
        if let Some(fs) = f.as_str() {
            let fl = fs.to_lowercase();
            // "A" also matches "a", "image_a", "Image A", "first"/"second" by position.
            let pos = match fl.as_str() {
                "a" => Some(0),
                "b" => Some(1),
                _ => None,
            };
            if let Some(hit) = options.iter().find(|o| {
                o.as_str().is_some_and(|s| {
                    let s = s.to_lowercase();
                    s == fl || text::words(&s).last().is_some_and(|w| *w == fl)
                })
            }) {
                return hit.clone();
            }
            if let Some(hit) = pos.and_then(|p| {
                let words = [["first", "1", "left"], ["second", "2", "right"]];
                options.iter().find(|o| {
                    o.as_str()
                        .is_some_and(|s| words[p].contains(&s.to_lowercase().as_str()))
                })
            }) {
                return hit.clone();
            }
        }
    }
    options.first().cloned().unwrap_or(Value::Null)
}

fn string(schema: &Value, fact: Option<&Value>, name: &str) -> Value {
    let mut s = match fact {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("combined")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::Object(o)) => o
            .get("combined")
            .or_else(|| o.get("reasons"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
        Some(Value::Null) | None => {
            if name.is_empty() {
                String::new()
            } else {
                format!("No {} to report.", text::words(name).join(" "))
            }
        }
    };
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        s = s.chars().take(max as usize).collect();
    }
    Value::String(s)
}

/// Facts are on a 0-10 scale; a schema with another `maximum` gets them rescaled.
fn number(schema: &Value, fact: Option<&Value>, integer: bool) -> Value {
    let min = schema
        .get("minimum")
        .or_else(|| schema.get("exclusiveMinimum"))
        .and_then(Value::as_f64);
    let max = schema
        .get("maximum")
        .or_else(|| schema.get("exclusiveMaximum"))
        .and_then(Value::as_f64);
    let raw = match fact {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    let mut x = match raw {
        Some(x) => match (min, max) {
            (lo, Some(hi)) if hi != 10.0 && x <= 10.0 => {
                let lo = lo.unwrap_or(0.0);
                lo + x / 10.0 * (hi - lo)
            }
            _ => x,
        },
        None => min.unwrap_or(0.0),
    };
    if let Some(lo) = min {
        x = x.max(lo);
    }
    if let Some(hi) = max {
        x = x.min(hi);
    }
    if integer {
        json!(x.round() as i64)
    } else {
        json!((x * 100.0).round() / 100.0)
    }
}

/// What a property name means: a canonical fact name, and which image (`a`/`b`) it is about.
/// `image_a_alignment` -> (alignment, a); `refined_prompts` -> (children, -); `winner` -> (winner, -).
pub(crate) fn canonical(name: &str) -> (Option<&'static str>, Option<&'static str>) {
    let tokens = split_name(name);
    let selector = tokens.iter().find_map(|t| match t.as_str() {
        "a" | "first" | "left" | "1" => Some("a"),
        "b" | "second" | "right" | "2" => Some("b"),
        _ => None,
    });
    const TABLE: &[(&str, &[&str])] = &[
        (
            "winner",
            &[
                "winner",
                "preferred",
                "better",
                "choice",
                "best",
                "chosen",
                "preference",
                "verdict",
            ],
        ),
        (
            "alignment",
            &[
                "align",
                "alignment",
                "relevance",
                "faithfulness",
                "adherence",
                "fidelity",
            ],
        ),
        (
            "aesthetic",
            &["aesthetic", "aesthetics", "beauty", "appeal", "quality"],
        ),
        ("ranking", &["ranking", "order", "ranked", "ordering"]),
        ("ranks", &["rank", "ranks"]),
        ("strengths", &["strength", "strengths", "pros", "positives"]),
        (
            "weaknesses",
            &[
                "weakness",
                "weaknesses",
                "cons",
                "negatives",
                "issues",
                "problems",
                "flaws",
            ],
        ),
        ("missing", &["missing", "absent", "omitted"]),
        (
            "suggestions",
            &[
                "suggestion",
                "suggestions",
                "improvements",
                "recommendations",
                "fixes",
            ],
        ),
        (
            "critique",
            &["critique", "feedback", "criticism", "review", "assessment"],
        ),
        (
            "reasons",
            &[
                "reason",
                "reasons",
                "rationale",
                "explanation",
                "justification",
                "reasoning",
                "analysis",
                "comment",
                "comments",
                "summary",
            ],
        ),
        ("what", &["what", "content", "subject", "scene"]),
        ("how", &["how", "style", "treatment", "visual", "technique"]),
        (
            "children",
            &[
                "children",
                "child",
                "candidates",
                "proposals",
                "variants",
                "variations",
                "refinements",
                "offspring",
                "prompts",
                "mutations",
                "proposed",
            ],
        ),
        (
            "combined",
            &[
                "combined",
                "prompt",
                "final",
                "full",
                "merged",
                "fused",
                "description",
            ],
        ),
        ("score", &["score", "total", "overall", "rating", "scores"]),
        ("dimension", &["dimension"]),
        ("loser", &["loser", "worse"]),
    ];
    let kind = TABLE
        .iter()
        .find(|(_, syn)| tokens.iter().any(|t| syn.contains(&t.as_str())))
        .map(|(k, _)| *k);
    (kind, selector)
}

fn split_name(name: &str) -> Vec<String> {
    // camelCase -> camel_case, then words.
    let mut spaced = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && prev_lower {
            spaced.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        spaced.push(c);
    }
    let mut tokens = text::words(&spaced);
    // "imageA" / "image_a": a trailing single letter after "image" is a selector.
    for t in tokens.iter_mut() {
        if let Some(rest) = t.strip_prefix("image")
            && (rest == "a" || rest == "b")
        {
            *t = rest.to_string();
        }
    }
    tokens
}

/// The fact a property name refers to in `facts`.
fn lookup<'v>(facts: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = facts.get(name) {
        return Some(v);
    }
    let lower = name.to_lowercase();
    if let Some(v) = facts.get(&lower) {
        return Some(v);
    }
    let (kind, selector) = canonical(name);
    let scoped = match selector {
        Some(sel) => facts.get(sel),
        None => None,
    };
    match (kind, scoped) {
        (Some(k), Some(side)) => side
            .get(k)
            .or_else(|| facts.get(format!("{k}_{}", selector?))),
        (None, Some(side)) => Some(side),
        (Some(k @ ("ranking" | "ranks" | "winner")), None) => {
            // alignment_ranking, aesthetic_winner, ...
            let tokens = split_name(name);
            let dim = ["alignment", "aesthetic"]
                .into_iter()
                .find(|d| tokens.iter().any(|t| t.starts_with(&d[..5])));
            match dim {
                Some(d) => facts.get(format!("{d}_{k}")).or_else(|| facts.get(k)),
                None => facts.get(k),
            }
        }
        (Some(k), None) => facts.get(k),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schema: Value, facts: Value, expect: Value) {
        assert_eq!(fill(&schema, &facts), expect, "schema {schema}");
    }

    #[test]
    fn fills_properties_by_meaning() {
        check(
            json!({"type": "object", "properties": {
                "what_prompt": {"type": "string"},
                "howPrompt": {"type": "string"},
                "combined": {"type": "string"},
                "note": {"type": "string"}
            }, "required": ["what_prompt", "howPrompt", "combined", "note"], "additionalProperties": false}),
            json!({"what": "W", "how": "H", "combined": "C"}),
            json!({"what_prompt": "W", "howPrompt": "H", "combined": "C", "note": "No note to report."}),
        );
    }

    #[test]
    fn rescales_and_rounds_scores() {
        let facts = json!({"alignment": 7.5, "aesthetic": 4.0, "score": 6.45});
        check(
            json!({"type": "object", "properties": {
                "alignment_score": {"type": "integer", "minimum": 1, "maximum": 10},
                "aesthetic_score": {"type": "number", "minimum": 0, "maximum": 1},
                "total": {"type": "number"}
            }}),
            facts,
            json!({"alignment_score": 8, "aesthetic_score": 0.4, "total": 6.45}),
        );
    }

    #[test]
    fn nested_objects_refs_and_arrays() {
        let schema = json!({
            "type": "object",
            "$defs": {"child": {"type": "object", "properties": {
                "what": {"type": "string"}, "how": {"type": "string"}, "combined": {"type": "string"}}}},
            "properties": {
                "judgement": {"type": "object", "properties": {
                    "alignment": {"type": "number"}, "weaknesses": {"type": "array", "items": {"type": "string"}}}},
                "critique": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/child"}, "minItems": 2, "maxItems": 2}
            }
        });
        let facts = json!({
            "alignment": 5.0, "weaknesses": ["dark"], "critique": "C",
            "children": [{"what": "w1", "how": "h1", "combined": "c1"},
                         {"what": "w2", "how": "h2", "combined": "c2"},
                         {"what": "w3", "how": "h3", "combined": "c3"}]
        });
        check(
            schema.clone(),
            facts,
            json!({
                "judgement": {"alignment": 5.0, "weaknesses": ["dark"]},
                "critique": "C",
                "children": [{"what": "w1", "how": "h1", "combined": "c1"},
                             {"what": "w2", "how": "h2", "combined": "c2"}]
            }),
        );
        assert_eq!(children_bounds(&schema), Some((2, 2)));
        assert!(asks_critique(&schema));
        assert_eq!(
            children_bounds(&json!({"type": "object", "properties": {"x": {"type": "string"}}})),
            None
        );
    }

    #[test]
    fn pads_short_arrays_and_wraps_scalars() {
        check(
            json!({"type": "array", "items": {"type": "string"}, "minItems": 3}),
            json!("x"),
            json!(["x", "x", "x"]),
        );
        check(
            json!({"type": "object", "properties": {"strengths": {"type": "array", "items": {"type": "string"}}}}),
            json!({}),
            json!({"strengths": ["No strengths to report."]}),
        );
    }

    #[test]
    fn enums_unions_and_comparisons() {
        let facts = json!({
            "winner": "B", "ranking": ["B", "A"], "alignment_winner": "A",
            "a": {"alignment": 3.0, "score": 4.0}, "b": {"alignment": 6.0, "score": 7.0}
        });
        check(
            json!({"type": "object", "properties": {
                "winner": {"type": "string", "enum": ["image_a", "image_b"]},
                "preferred": {"enum": ["first", "second"]},
                "alignment_winner": {"type": "string", "enum": ["A", "B"]},
                "image_a": {"type": "object", "properties": {"alignment": {"type": "number"}}},
                "score_b": {"type": ["number", "null"]},
                "ranking": {"type": "array", "items": {"type": "string"}},
                "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
                "kind": {"const": "comparison"}
            }}),
            facts,
            json!({
                "winner": "image_b", "preferred": "second", "alignment_winner": "A",
                "image_a": {"alignment": 3.0}, "score_b": 7.0, "ranking": ["B", "A"],
                "note": "No note to report.", "kind": "comparison"
            }),
        );
    }

    #[test]
    fn strict_mode_wants_closed_objects_with_every_property_required() {
        let ok = json!({"type": "object", "additionalProperties": false, "required": ["a", "b"],
            "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"$ref": "#/$defs/c"}}},
            "$defs": {"c": {"type": "object", "additionalProperties": false, "required": ["x"], "properties": {"x": {"type": "number"}}}}});
        assert_eq!(strict_problem(&ok), None);
        let open =
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}});
        assert_eq!(
            strict_problem(&open).as_deref(),
            Some(
                "In context=(), 'additionalProperties' is required to be supplied and to be false."
            )
        );
        let nested = json!({"type": "object", "additionalProperties": false, "required": ["j"], "properties": {
            "j": {"type": "object", "additionalProperties": false, "required": ["x"], "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}}});
        assert_eq!(
            strict_problem(&nested).as_deref(),
            Some(
                "In context=('properties', 'j'), 'required' is required to be supplied and to be an array including every key in properties. Missing 'y'."
            )
        );
        assert_eq!(
            strict_problem(&json!({"type": "array", "items": {"type": "string"}})).as_deref(),
            Some("schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.")
        );
    }

    #[test]
    fn names_map_to_facts() {
        for (name, expect) in [
            ("alignment_score", (Some("alignment"), None)),
            ("imageB_aesthetic", (Some("aesthetic"), Some("b"))),
            ("refined_prompts", (Some("children"), None)),
            ("image_prompt", (Some("combined"), None)),
            ("what", (Some("what"), None)),
            ("overall", (Some("score"), None)),
            ("preferred_image", (Some("winner"), None)),
            ("xyz", (None, None)),
        ] {
            assert_eq!(canonical(name), expect, "{name}");
        }
    }
}
