//! The strict checks through [`Models::execute`]: unknown parameters, enum values from the spec
//! and context windows, each with OpenAI's exact error body.

use batch_format::Endpoint;
use serde_json::{Value, json};

use super::{ModelReply, Models};

fn run(endpoint: Endpoint, body: Value) -> ModelReply {
    Models::new(0).execute(endpoint, &body)
}

/// The whole error envelope, so that `type`, `param` and `code` are all checked.
fn check(endpoint: Endpoint, body: Value, status: u16, expect: Value) {
    let reply = run(endpoint, body.clone());
    assert_eq!(
        (reply.status, &reply.body),
        (status, &json!({"error": expect})),
        "{body}"
    );
    assert_eq!((reply.input_tokens, reply.output_tokens), (0, 0));
}

fn ok(endpoint: Endpoint, body: Value) -> Value {
    let reply = run(endpoint, body.clone());
    assert_eq!(reply.status, 200, "{body} -> {}", reply.body);
    reply.body
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn image(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "prompt": "a red fox"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn unrecognized(name: &str) -> Value {
    json!({
        "message": format!("Unrecognized request argument supplied: {name}"),
        "type": "invalid_request_error",
        "param": name,
        "code": null
    })
}

fn invalid_value(param: &str, message: &str) -> Value {
    json!({"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_value"})
}

#[test]
fn unknown_chat_parameters_are_refused_by_name() {
    let e = Endpoint::ChatCompletions;
    check(
        e,
        chat(json!({"temprature": 0.5})),
        400,
        unrecognized("temprature"),
    );
    // Checked before anything else, and also when null.
    check(
        e,
        json!({"model": "gpt-9", "messages": [], "api_key": null}),
        400,
        unrecognized("api_key"),
    );
    // Several: the first by name.
    check(
        e,
        chat(json!({"zeta": 1, "beta": 2})),
        400,
        unrecognized("beta"),
    );
    // `reasoning` is the Responses API's word, not chat's.
    check(
        e,
        chat(json!({"reasoning": {"effort": "low"}})),
        400,
        unrecognized("reasoning"),
    );
    // Every property the spec declares passes the name check.
    for name in super::params::CHAT {
        let r = run(e, chat(json!({ (*name): null })));
        assert!(
            !r.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Unrecognized"),
            "{name}: {}",
            r.body
        );
    }
    ok(
        e,
        chat(
            json!({"seed": 3, "user": "u", "store": false, "metadata": {"a": "b"},
                    "parallel_tool_calls": true, "stop": ["x"], "safety_identifier": "s"}),
        ),
    );
}

#[test]
fn unknown_image_parameters_are_refused_by_name() {
    check(
        Endpoint::ImagesGenerations,
        image("gpt-image-1", json!({"aspect_ratio": "16:9"})),
        400,
        unrecognized("aspect_ratio"),
    );
    // `input_fidelity` and `mask` belong to edits, not generations.
    check(
        Endpoint::ImagesGenerations,
        image("gpt-image-1", json!({"input_fidelity": "high"})),
        400,
        unrecognized("input_fidelity"),
    );
    ok(
        Endpoint::ImagesEdits,
        image("gpt-image-1", json!({"input_fidelity": "high"})),
    );
    check(
        Endpoint::ImagesEdits,
        image("gpt-image-1", json!({"style": "vivid"})),
        400,
        unrecognized("style"),
    );
    for name in super::params::IMAGE_GENERATION {
        let r = run(
            Endpoint::ImagesGenerations,
            image("gpt-image-1", json!({ (*name): null })),
        );
        assert!(
            !r.body.to_string().contains("Unrecognized"),
            "{name}: {}",
            r.body
        );
    }
}

#[test]
fn chat_enum_fields_take_only_the_specs_values() {
    let e = Endpoint::ChatCompletions;
    check(
        e,
        chat(json!({"service_tier": "turbo"})),
        400,
        invalid_value(
            "service_tier",
            "Invalid value: 'turbo'. Supported values are: 'auto', 'default', 'flex', 'scale', 'priority', and 'fast'.",
        ),
    );
    check(
        e,
        json!({"model": "gpt-5-mini", "reasoning_effort": "extreme", "messages": [{"role": "user", "content": "hi"}]}),
        400,
        invalid_value(
            "reasoning_effort",
            "Invalid value: 'extreme'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh', and 'max'.",
        ),
    );
    check(
        e,
        chat(json!({"modalities": ["text", "video"]})),
        400,
        invalid_value(
            "modalities",
            "Invalid value: 'video'. Supported values are: 'text' and 'audio'.",
        ),
    );
    check(
        e,
        chat(json!({"verbosity": "loud"})),
        400,
        invalid_value(
            "verbosity",
            "Invalid value: 'loud'. Supported values are: 'low', 'medium', and 'high'.",
        ),
    );
    check(
        e,
        chat(json!({"tool_choice": "always"})),
        400,
        invalid_value(
            "tool_choice",
            "Invalid value: 'always'. Supported values are: 'none', 'auto', and 'required'.",
        ),
    );
    check(
        e,
        chat(json!({"response_format": {"type": "yaml"}})),
        400,
        invalid_value(
            "response_format.type",
            "Invalid value: 'yaml'. Supported values are: 'text', 'json_schema', and 'json_object'.",
        ),
    );
    check(
        e,
        chat(json!({"service_tier": 1})),
        400,
        json!({"message": "Invalid type for 'service_tier': expected a string, but got an integer instead.",
               "type": "invalid_request_error", "param": "service_tier", "code": "invalid_type"}),
    );
    check(
        e,
        chat(json!({"response_format": {"type": 5}})),
        400,
        json!({"message": "Invalid type for 'response_format.type': expected a string, but got an integer instead.",
               "type": "invalid_request_error", "param": "response_format.type", "code": "invalid_type"}),
    );
    check(
        e,
        chat(json!({"response_format": "json"})),
        400,
        json!({"message": "Invalid type for 'response_format': expected an object, but got a string instead.",
               "type": "invalid_request_error", "param": "response_format", "code": "invalid_type"}),
    );
    // Valid values pass, and the tier asked for is the tier reported.
    for tier in ["auto", "default", "flex", "scale", "priority", "fast"] {
        let body = ok(e, chat(json!({"service_tier": tier})));
        let reported = if tier == "auto" { "default" } else { tier };
        assert_eq!(body["service_tier"], reported);
    }
    ok(
        e,
        chat(
            json!({"modalities": ["text"], "tool_choice": {"type": "function", "function": {"name": "f"}},
                    "prompt_cache_retention": "24h"}),
        ),
    );
    ok(
        e,
        json!({"model": "gpt-5-mini", "reasoning_effort": "minimal", "verbosity": "low",
               "messages": [{"role": "user", "content": "hi"}]}),
    );
}

#[test]
fn image_enum_fields_take_only_the_specs_values_per_model() {
    let e = Endpoint::ImagesGenerations;
    check(
        e,
        image("gpt-image-1", json!({"quality": "hd"})),
        400,
        invalid_value(
            "quality",
            "Invalid value: 'hd'. Supported values are: 'low', 'medium', 'high', and 'auto'.",
        ),
    );
    check(
        e,
        image("dall-e-3", json!({"quality": "high"})),
        400,
        invalid_value(
            "quality",
            "Invalid value: 'high'. Supported values are: 'standard', 'hd', and 'auto'.",
        ),
    );
    check(
        e,
        image("dall-e-2", json!({"quality": "hd"})),
        400,
        invalid_value(
            "quality",
            "Invalid value: 'hd'. Supported values are: 'standard' and 'auto'.",
        ),
    );
    check(
        e,
        image("dall-e-3", json!({"size": "1536x1024"})),
        400,
        invalid_value(
            "size",
            "Invalid value: '1536x1024'. Supported values are: '1024x1024', '1792x1024', and '1024x1792'.",
        ),
    );
    check(
        e,
        image("dall-e-2", json!({"size": "1792x1024"})),
        400,
        invalid_value(
            "size",
            "Invalid value: '1792x1024'. Supported values are: '256x256', '512x512', and '1024x1024'.",
        ),
    );
    check(
        e,
        image("gpt-image-1", json!({"background": "green"})),
        400,
        invalid_value(
            "background",
            "Invalid value: 'green'. Supported values are: 'transparent', 'opaque', and 'auto'.",
        ),
    );
    check(
        e,
        image("gpt-image-1", json!({"output_format": "gif"})),
        400,
        invalid_value(
            "output_format",
            "Invalid value: 'gif'. Supported values are: 'png', 'jpeg', and 'webp'.",
        ),
    );
    check(
        e,
        image("gpt-image-1", json!({"moderation": "off"})),
        400,
        invalid_value(
            "moderation",
            "Invalid value: 'off'. Supported values are: 'low' and 'auto'.",
        ),
    );
    check(
        e,
        image("dall-e-3", json!({"response_format": "png"})),
        400,
        invalid_value(
            "response_format",
            "Invalid value: 'png'. Supported values are: 'url' and 'b64_json'.",
        ),
    );
    check(
        e,
        image("dall-e-3", json!({"style": "noir"})),
        400,
        invalid_value(
            "style",
            "Invalid value: 'noir'. Supported values are: 'vivid' and 'natural'.",
        ),
    );
    // A valid JPEG or WebP is refused rather than answered with a PNG labelled as one.
    check(
        e,
        image("gpt-image-1", json!({"output_format": "jpeg"})),
        400,
        json!({"message": "openai-sim draws PNG images only; send 'output_format': 'png'.",
               "type": "invalid_request_error", "param": "output_format", "code": "unsupported_value"}),
    );
    // Valid values are reported as asked.
    let body = ok(
        e,
        image(
            "gpt-image-1",
            json!({"quality": "low", "background": "transparent", "output_format": "png",
                   "moderation": "low", "size": "1536x1024"}),
        ),
    );
    assert_eq!(
        (
            &body["quality"],
            &body["background"],
            &body["output_format"],
            &body["size"]
        ),
        (
            &json!("low"),
            &json!("transparent"),
            &json!("png"),
            &json!("1536x1024")
        )
    );
    ok(
        e,
        image(
            "dall-e-3",
            json!({"quality": "hd", "style": "natural", "size": "1792x1024"}),
        ),
    );
    ok(
        e,
        image(
            "dall-e-2",
            json!({"quality": "standard", "size": "256x256"}),
        ),
    );
}

fn context_error(message: &str) -> Value {
    json!({"message": message, "type": "invalid_request_error", "param": "messages",
           "code": "context_length_exceeded"})
}

#[test]
fn prompt_and_completion_must_fit_the_context_window() {
    let e = Endpoint::ChatCompletions;
    // gpt-4: 8,192 tokens; "hi" costs 3 (priming) + 3 (message) + 1.
    check(
        e,
        json!({"model": "gpt-4", "max_tokens": 8_190, "messages": [{"role": "user", "content": "hi"}]}),
        400,
        context_error(
            "This model's maximum context length is 8192 tokens. However, you requested 8197 tokens (7 in the messages, 8190 in the completion). Please reduce the length of the messages or completion.",
        ),
    );
    ok(
        e,
        json!({"model": "gpt-4", "max_tokens": 8_185, "messages": [{"role": "user", "content": "hi"}]}),
    );
    // Without a completion budget only the prompt counts, and the message says so.
    let long = "lighthouse ".repeat(130_000);
    let r = run(
        e,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": long}]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "context_length_exceeded");
    assert_eq!(r.body["error"]["param"], "messages");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("This model's maximum context length is 128000 tokens. However, your messages resulted in ")
            && message.ends_with(" tokens. Please reduce the length of the messages."),
        "{message}"
    );
    // The same prompt fits gpt-4.1's million-token window.
    ok(
        e,
        json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": long}]}),
    );
    // max_completion_tokens counts the same way, on reasoning models too.
    let r = run(
        e,
        json!({"model": "o4-mini", "max_completion_tokens": 100_000,
               "messages": [{"role": "user", "content": "lighthouse ".repeat(110_000)}]}),
    );
    assert_eq!(
        r.body["error"]["code"], "context_length_exceeded",
        "{}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(", 100000 in the completion)"),
    );
}

#[test]
fn catalogue_windows() {
    let window = |m: &str| super::catalog::lookup(m).unwrap().1.context_window;
    for (model, tokens) in [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-5", 400_000),
        ("gpt-5-nano", 400_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
    ] {
        assert_eq!(window(model), Some(tokens), "{model}");
    }
    // A fine-tune has its base model's window; non-chat models have none.
    assert_eq!(window("ft:gpt-4o-mini-2024-07-18:acme::x"), Some(128_000));
    assert_eq!(window("gpt-image-1"), None);
}

#[test]
fn odd_bodies_never_panic() {
    for body in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": u64::MAX}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "modalities": [1]}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "modalities": "text"}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tool_choice": 7}),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": 5}}),
    ] {
        for e in [
            Endpoint::ChatCompletions,
            Endpoint::ImagesGenerations,
            Endpoint::ImagesEdits,
        ] {
            let r = run(e, body.clone());
            assert_eq!(r.status / 100, 4, "{e} {body}: {}", r.body);
        }
    }
}
