//! Words and vocabulary: content words of an idea, light stemming, and the visual terms the
//! simulated writer draws on and the simulated judge counts.

use std::collections::BTreeSet;

/// A family of visual terms. Treatment categories belong in HOW; [`Category::Atmosphere`]
/// describes the scene and belongs in WHAT. All of them count towards aesthetics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Category {
    Lighting,
    Composition,
    Palette,
    Texture,
    Medium,
    Lens,
    Atmosphere,
}

impl Category {
    /// Every category, treatment first.
    pub(crate) const ALL: [Category; 7] = [
        Category::Lighting,
        Category::Composition,
        Category::Palette,
        Category::Texture,
        Category::Medium,
        Category::Lens,
        Category::Atmosphere,
    ];

    /// The categories that describe the visual treatment (HOW).
    pub(crate) const TREATMENT: [Category; 6] = [
        Category::Lighting,
        Category::Composition,
        Category::Palette,
        Category::Texture,
        Category::Medium,
        Category::Lens,
    ];

    /// The category's name as critiques and judgements write it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::Lighting => "lighting",
            Category::Composition => "composition",
            Category::Palette => "palette",
            Category::Texture => "texture",
            Category::Medium => "medium",
            Category::Lens => "lens",
            Category::Atmosphere => "atmosphere",
        }
    }

    /// The visual terms of this category.
    pub(crate) fn terms(self) -> &'static [&'static str] {
        match self {
            Category::Lighting => &[
                "golden hour lighting",
                "soft diffused light",
                "chiaroscuro",
                "rim lighting",
                "volumetric light",
                "dramatic backlighting",
                "low-key lighting",
                "overcast light",
                "neon glow",
                "candlelight",
            ],
            Category::Composition => &[
                "rule of thirds",
                "leading lines",
                "symmetrical composition",
                "low angle",
                "wide establishing shot",
                "close-up framing",
                "negative space",
                "centered framing",
                "dutch angle",
                "layered foreground",
            ],
            Category::Palette => &[
                "muted earth tones",
                "teal and orange palette",
                "monochrome",
                "pastel palette",
                "high contrast",
                "complementary colors",
                "desaturated blues",
                "warm amber tones",
                "jewel tones",
                "analogous greens",
            ],
            Category::Texture => &[
                "fine film grain",
                "crisp detail",
                "weathered textures",
                "soft bokeh",
                "glossy reflections",
                "rough brushstrokes",
                "matte finish",
                "intricate detail",
            ],
            Category::Medium => &[
                "oil painting",
                "watercolor",
                "35mm film photograph",
                "digital matte painting",
                "charcoal sketch",
                "gouache",
                "cinematic still",
                "ink illustration",
                "analog photograph",
            ],
            Category::Lens => &[
                "85mm lens",
                "wide-angle lens",
                "shallow depth of field",
                "telephoto compression",
                "macro lens",
                "anamorphic lens flare",
                "tilt-shift",
                "long exposure",
                "wide aperture",
            ],
            Category::Atmosphere => &[
                "drifting mist",
                "low-hanging fog",
                "rain-slicked surfaces",
                "swirling dust motes",
                "sun-dappled shadows",
                "glistening spray",
                "crackling embers",
                "hazy horizon",
                "falling snowflakes",
                "shimmering heat haze",
            ],
        }
    }
}

/// A visual term found in a text, with its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Term {
    pub(crate) category: Category,
    pub(crate) text: &'static str,
}

/// Every visual term of the vocabulary.
pub(crate) fn vocabulary() -> impl Iterator<Item = Term> {
    Category::ALL.into_iter().flat_map(|category| {
        category
            .terms()
            .iter()
            .map(move |&text| Term { category, text })
    })
}

/// Lowercase words separated by single spaces, punctuation removed, so phrases match on
/// word boundaries (`rain-slicked` is `rain slicked`).
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for word in words(text) {
        out.push_str(&word);
        out.push(' ');
    }
    out
}

/// Lowercase alphanumeric words of `text` in order.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The distinct visual terms that `text` contains, in vocabulary order.
pub(crate) fn terms_in(text: &str) -> Vec<Term> {
    let hay = normalise(text);
    vocabulary()
        .filter(|t| hay.contains(&normalise(t.text)))
        .collect()
}

/// A crude English stemmer: enough that `storms` matches `storm` and `skies` matches `sky`.
pub(crate) fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    let w = w.strip_suffix("'s").unwrap_or(&w).to_string();
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.ends_with("sses") {
        return w[..w.len() - 2].to_string();
    }
    for suffix in ["xes", "ches", "shes", "zes"] {
        if w.len() > suffix.len() + 1 && w.ends_with(suffix) {
            return w[..w.len() - 2].to_string();
        }
    }
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        return w[..w.len() - 1].to_string();
    }
    w
}

/// Words that carry no content: function words, and the words prompts use to give
/// instructions, so an unlabelled instruction still yields the idea's content.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "one",
    "two",
    "three",
    "its",
    "onto",
    "upon",
    "within",
    "without",
    "via",
    "per",
    "yet",
    "let",
    "may",
    "might",
    "must",
    "shall",
    // instruction words
    "idea",
    "user",
    "prompt",
    "prompts",
    "image",
    "images",
    "picture",
    "write",
    "expand",
    "describe",
    "description",
    "return",
    "json",
    "object",
    "generate",
    "create",
    "make",
    "please",
    "given",
    "following",
    "candidate",
    "candidates",
    "content",
    "style",
    "visual",
    "treatment",
    "combine",
    "combined",
    "refine",
    "refined",
    "critique",
    "judge",
    "score",
    "scores",
    "rate",
    "task",
    "output",
    "input",
    "respond",
    "answer",
    "field",
    "fields",
    "text",
    "using",
    "use",
    "based",
    "show",
    "shows",
    "showing",
    "depict",
    "depicts",
    "photo",
    "want",
];

/// Whether `word` (lowercase) is a stopword.
pub(crate) fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// The distinct content words of `text` in first-seen order, in their original lowercase form:
/// at least three letters, not a stopword, not a number.
pub(crate) fn content_words(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    words(text)
        .into_iter()
        .filter(|w| w.chars().count() >= 3 && !is_stopword(w))
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .filter(|w| seen.insert(stem(w)))
        .collect()
}

/// The stems of every word of `text`.
pub(crate) fn stems(text: &str) -> BTreeSet<String> {
    words(text).iter().map(|w| stem(w)).collect()
}

/// Adjectives for the sensory prose of a WHAT prompt; they score nothing.
pub(crate) const ADJECTIVES: &[&str] = &[
    "weathered",
    "solitary",
    "towering",
    "delicate",
    "ancient",
    "quiet",
    "restless",
    "gleaming",
    "half-hidden",
    "lonely",
    "vibrant",
    "timeworn",
];

/// Settings for the sensory prose of a WHAT prompt; they score nothing (unless the idea names
/// the same thing).
pub(crate) const SETTINGS: &[&str] = &[
    "beneath a heavy sky",
    "at the edge of the world",
    "in the first light of morning",
    "under drifting clouds",
    "in a hushed landscape",
    "against a vast horizon",
];

/// Sensory clauses for the prose of a WHAT prompt; they score nothing.
pub(crate) const SENSES: &[&str] = &[
    "the air tastes of salt",
    "a low hum fills the silence",
    "the scent of wet stone hangs close",
    "a distant echo carries",
    "wind tugs at every edge",
    "warmth lingers on every surface",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_plurals() {
        for (word, expect) in [
            ("storms", "storm"),
            ("skies", "sky"),
            ("boxes", "box"),
            ("churches", "church"),
            ("glass", "glass"),
            ("bus", "bus"),
            ("cat's", "cat"),
            ("Lighthouse", "lighthouse"),
        ] {
            assert_eq!(stem(word), expect, "{word}");
        }
    }

    #[test]
    fn content_words_drop_function_and_instruction_words() {
        assert_eq!(
            content_words("Expand this idea: a lighthouse in a storm, storms at night!"),
            vec!["lighthouse", "storm", "night"]
        );
        assert_eq!(content_words("a cat"), vec!["cat"]);
        assert!(content_words("the 3 of us").is_empty());
    }

    #[test]
    fn finds_terms_on_word_boundaries() {
        let found =
            terms_in("Chiaroscuro, rain-slicked surfaces; shot on an 85mm lens. Monochromes");
        let texts: Vec<&str> = found.iter().map(|t| t.text).collect();
        assert_eq!(
            texts,
            vec!["chiaroscuro", "85mm lens", "rain-slicked surfaces"]
        );
        assert!(terms_in("lowangle").is_empty());
    }

    #[test]
    fn vocabulary_terms_are_distinct_and_normalised_apart() {
        let all: Vec<String> = vocabulary().map(|t| normalise(t.text)).collect();
        let set: BTreeSet<&String> = all.iter().collect();
        assert_eq!(all.len(), set.len());
        // No term contains another, so counting distinct terms never double counts.
        for a in &all {
            for b in &all {
                assert!(a == b || !a.contains(b.as_str()), "{a} contains {b}");
            }
        }
    }
}
