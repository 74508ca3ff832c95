//! The models the simulator knows: which endpoint serves each, the snapshot an alias resolves
//! to, and what each accepts.
//!
//! Kept apart from batch-format's capability table on purpose: the simulator stands in for the
//! real API, so a mistake in the client's table shows up as a rejected request in tests.

/// What kind of model it is, i.e. which endpoint serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Completion,
    Embedding,
    Moderation,
    Image,
    Video,
}

/// One model of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelInfo {
    /// The alias clients use, e.g. `gpt-4o-mini`.
    pub(crate) alias: &'static str,
    /// The snapshot the alias resolves to, reported as `model` in responses.
    pub(crate) snapshot: &'static str,
    pub(crate) kind: Kind,
    /// Rejects `max_tokens` (wants `max_completion_tokens`) and spends reasoning tokens.
    pub(crate) reasoning: bool,
    /// Accepts non-default `temperature` / `top_p` / penalties.
    pub(crate) sampling: bool,
    /// Accepts image inputs.
    pub(crate) vision: bool,
    /// Accepts `response_format: json_schema`.
    pub(crate) structured: bool,
    /// Most completion tokens one response may have (embeddings: vector size).
    pub(crate) max_output: u64,
    /// Context window: most prompt plus completion tokens of one request; `None` where the
    /// simulator does not know it, which sets no limit.
    pub(crate) context_window: Option<u64>,
}

impl ModelInfo {
    /// This model with a context window of `tokens`.
    const fn window(self, tokens: u64) -> ModelInfo {
        ModelInfo {
            context_window: Some(tokens),
            ..self
        }
    }
}

const fn chat(
    alias: &'static str,
    snapshot: &'static str,
    vision: bool,
    max_output: u64,
) -> ModelInfo {
    ModelInfo {
        alias,
        snapshot,
        kind: Kind::Chat,
        reasoning: false,
        sampling: true,
        vision,
        structured: true,
        max_output,
        context_window: None,
    }
}

const fn legacy_chat(
    alias: &'static str,
    snapshot: &'static str,
    vision: bool,
    max_output: u64,
) -> ModelInfo {
    ModelInfo {
        structured: false,
        ..chat(alias, snapshot, vision, max_output)
    }
}

const fn reasoning(
    alias: &'static str,
    snapshot: &'static str,
    vision: bool,
    max_output: u64,
) -> ModelInfo {
    ModelInfo {
        reasoning: true,
        sampling: false,
        ..chat(alias, snapshot, vision, max_output)
    }
}

const fn other(
    alias: &'static str,
    snapshot: &'static str,
    kind: Kind,
    max_output: u64,
) -> ModelInfo {
    ModelInfo {
        alias,
        snapshot,
        kind,
        reasoning: false,
        sampling: true,
        vision: false,
        structured: false,
        max_output,
        context_window: None,
    }
}

/// Every model the simulator serves.
///
/// Context windows are those of OpenAI's model pages (platform.openai.com/docs/models/<model>,
/// "Context window"), as read in 2025: GPT-4o and GPT-4 Turbo 128,000, the GPT-4.1 family
/// 1,047,576, the GPT-5 family 400,000 (`gpt-5-chat-latest` 128,000), the o-series 200,000,
/// `gpt-4` 8,192 and `gpt-3.5-turbo` 16,385. The spec does not state them.
pub(crate) const MODELS: &[ModelInfo] = &[
    chat("gpt-4o-mini", "gpt-4o-mini-2024-07-18", true, 16_384).window(128_000),
    chat("gpt-4o", "gpt-4o-2024-08-06", true, 16_384).window(128_000),
    chat("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", true, 4_096).window(128_000),
    chat("gpt-4o-2024-11-20", "gpt-4o-2024-11-20", true, 16_384).window(128_000),
    chat("chatgpt-4o-latest", "chatgpt-4o-latest", true, 16_384).window(128_000),
    chat("gpt-4.1", "gpt-4.1-2025-04-14", true, 32_768).window(1_047_576),
    chat("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", true, 32_768).window(1_047_576),
    chat("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14", true, 32_768).window(1_047_576),
    legacy_chat("gpt-4-turbo", "gpt-4-turbo-2024-04-09", true, 4_096).window(128_000),
    legacy_chat("gpt-4", "gpt-4-0613", false, 8_192).window(8_192),
    legacy_chat("gpt-3.5-turbo", "gpt-3.5-turbo-0125", false, 4_096).window(16_385),
    reasoning("gpt-5", "gpt-5-2025-08-07", true, 128_000).window(400_000),
    reasoning("gpt-5-mini", "gpt-5-mini-2025-08-07", true, 128_000).window(400_000),
    reasoning("gpt-5-nano", "gpt-5-nano-2025-08-07", true, 128_000).window(400_000),
    reasoning("gpt-5.1", "gpt-5.1-2025-11-13", true, 128_000).window(400_000),
    // The ChatGPT snapshot wants max_completion_tokens but samples like a chat model.
    ModelInfo {
        sampling: true,
        ..reasoning("gpt-5-chat-latest", "gpt-5-chat-latest", true, 16_384).window(128_000)
    },
    reasoning("o1", "o1-2024-12-17", true, 100_000).window(200_000),
    reasoning("o3", "o3-2025-04-16", true, 100_000).window(200_000),
    reasoning("o3-mini", "o3-mini-2025-01-31", false, 100_000).window(200_000),
    reasoning("o4-mini", "o4-mini-2025-04-16", true, 100_000).window(200_000),
    other(
        "gpt-3.5-turbo-instruct",
        "gpt-3.5-turbo-instruct",
        Kind::Completion,
        4_096,
    ),
    other("davinci-002", "davinci-002", Kind::Completion, 16_384),
    other("babbage-002", "babbage-002", Kind::Completion, 16_384),
    other(
        "text-embedding-3-small",
        "text-embedding-3-small",
        Kind::Embedding,
        1_536,
    ),
    other(
        "text-embedding-3-large",
        "text-embedding-3-large",
        Kind::Embedding,
        3_072,
    ),
    other(
        "text-embedding-ada-002",
        "text-embedding-ada-002",
        Kind::Embedding,
        1_536,
    ),
    other(
        "omni-moderation-latest",
        "omni-moderation-latest",
        Kind::Moderation,
        0,
    ),
    other(
        "omni-moderation-2024-09-26",
        "omni-moderation-2024-09-26",
        Kind::Moderation,
        0,
    ),
    other(
        "text-moderation-latest",
        "text-moderation-007",
        Kind::Moderation,
        0,
    ),
    other("dall-e-2", "dall-e-2", Kind::Image, 0),
    other("dall-e-3", "dall-e-3", Kind::Image, 0),
    other("gpt-image-1", "gpt-image-1", Kind::Image, 0),
    other("gpt-image-1-mini", "gpt-image-1-mini", Kind::Image, 0),
    other("sora-2", "sora-2", Kind::Video, 0),
    other("sora-2-pro", "sora-2-pro", Kind::Video, 0),
];

/// The model `name` names: an alias, a snapshot, or a fine-tune of one (`ft:<base>:<org>::<id>`,
/// reported under its own name).
pub(crate) fn lookup(name: &str) -> Option<(String, ModelInfo)> {
    let (base, fine_tuned) = match name.strip_prefix("ft:") {
        Some(rest) => (rest.split(':').next().unwrap_or(rest), true),
        None => (name, false),
    };
    let info = MODELS
        .iter()
        .find(|m| m.alias == base || m.snapshot == base)
        .copied()?;
    let reported = if fine_tuned {
        name.to_string()
    } else {
        info.snapshot.to_string()
    };
    Some((reported, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_aliases_snapshots_and_fine_tunes() {
        let (snap, info) = lookup("gpt-4o-mini").unwrap();
        assert_eq!(snap, "gpt-4o-mini-2024-07-18");
        assert!(info.vision && !info.reasoning);
        assert_eq!(
            lookup("gpt-4o-mini-2024-07-18").unwrap().0,
            "gpt-4o-mini-2024-07-18"
        );
        let (snap, info) = lookup("ft:gpt-4o-mini-2024-07-18:acme::abc123").unwrap();
        assert_eq!(snap, "ft:gpt-4o-mini-2024-07-18:acme::abc123");
        assert_eq!(info.alias, "gpt-4o-mini");
        assert!(lookup("gpt-9").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn reasoning_models_and_the_chat_exception() {
        for m in [
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-5.1",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
        ] {
            let info = lookup(m).unwrap().1;
            assert!(info.reasoning && !info.sampling, "{m}");
        }
        let chat = lookup("gpt-5-chat-latest").unwrap().1;
        assert!(chat.reasoning && chat.sampling);
    }
}
