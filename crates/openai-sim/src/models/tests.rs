//! Behaviour of the simulated models through [`Models::execute`] alone, including a small beam
//! search that must improve its best score from one iteration to the next.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use batch_format::Endpoint;
use serde_json::{Value, json};

use super::{ModelReply, Models, image};

const IDEA: &str = "a lighthouse in a storm at night";

fn chat(models: &Models, body: Value) -> ModelReply {
    models.execute(Endpoint::ChatCompletions, &body)
}

fn content(reply: &ModelReply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content is a string")
        .to_string()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn error_of(reply: &ModelReply) -> (u16, String, Option<String>, Option<String>) {
    let e = &reply.body["error"];
    (
        reply.status,
        e["message"].as_str().unwrap_or_default().to_string(),
        e["param"].as_str().map(str::to_string),
        e["code"].as_str().map(str::to_string),
    )
}

fn render(models: &Models, prompt: &str) -> String {
    let reply = models.execute(
        Endpoint::ImagesGenerations,
        &json!({"model": "gpt-image-1", "prompt": prompt}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["data"][0]["b64_json"]
        .as_str()
        .unwrap()
        .to_string()
}

fn judge_body(b64: &str, idea: &str, vote: usize) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "response_format": {"type": "json_schema", "json_schema": {"name": "judgement", "strict": true, "schema": {
            "type": "object",
            "properties": {
                "alignment": {"type": "number"},
                "aesthetic": {"type": "number"},
                "reasons": {"type": "string"},
                "strengths": {"type": "array", "items": {"type": "string"}},
                "weaknesses": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["alignment", "aesthetic", "reasons", "strengths", "weaknesses"],
            "additionalProperties": false
        }}},
        "messages": [
            {"role": "system", "content": "You judge images. Score alignment with the idea and aesthetics, 0-10."},
            {"role": "user", "content": [
                {"type": "text", "text": format!("Idea: {idea}\nVote: {vote}")},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}"), "detail": "low"}}
            ]}
        ]
    })
}

fn judge(models: &Models, b64: &str, idea: &str, vote: usize) -> (f64, f64, Value) {
    let v: Value =
        serde_json::from_str(&content(&chat(models, judge_body(b64, idea, vote)))).unwrap();
    (
        v["alignment"].as_f64().unwrap(),
        v["aesthetic"].as_f64().unwrap(),
        v,
    )
}

// ---------------------------------------------------------------------------------------------
// Chat completions: shape and validation

#[test]
fn chat_completion_has_the_real_shape() {
    let models = Models::new(1);
    let reply = chat(
        &models,
        json!({"model": "gpt-4o-mini", "messages": user(&format!("Idea: {IDEA}"))}),
    );
    let b = &reply.body;
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 29, "{id}");
    assert!(id[9..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["created"], 1_735_689_600);
    assert_eq!(b["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(b["choices"][0]["index"], 0);
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(b["choices"][0]["message"]["refusal"], Value::Null);
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["service_tier"], "default");
    assert!(b["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let usage = &b["usage"];
    let text = content(&reply);
    let est = batch_format::TokenEstimator::for_model("gpt-4o-mini");
    // 3 priming + 3 per message + the text.
    let prompt = 6 + est.count_text(&format!("Idea: {IDEA}"));
    assert_eq!(usage["prompt_tokens"], prompt);
    assert_eq!(usage["completion_tokens"], est.count_text(&text));
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(prompt + est.count_text(&text))
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(reply.input_tokens, prompt);
    assert_eq!(reply.output_tokens, est.count_text(&text));
    // execute_at only moves the clock.
    let later = models.execute_at(
        Endpoint::ChatCompletions,
        &json!({"model": "gpt-4o-mini", "messages": user(&format!("Idea: {IDEA}"))}),
        1_800_000_000,
    );
    assert_eq!(later.body["created"], 1_800_000_000);
    assert_eq!(later.body["choices"], b["choices"]);
}

#[test]
fn answers_are_a_function_of_seed_and_body() {
    let body = json!({"model": "gpt-4o", "messages": user(&format!("Idea: {IDEA}\nCandidate 1"))});
    let a = chat(&Models::new(7), body.clone());
    assert_eq!(a, chat(&Models::new(7), body.clone()));
    assert_ne!(content(&a), content(&chat(&Models::new(8), body)));
    let other = json!({"model": "gpt-4o", "messages": user(&format!("Idea: {IDEA}\nCandidate 2"))});
    assert_ne!(content(&a), content(&chat(&Models::new(7), other)));
}

#[test]
fn chat_validation_speaks_like_openai() {
    let m = Models::new(0);
    let check = |body: Value, expect: (u16, &str, Option<&str>, Option<&str>)| {
        let got = error_of(&chat(&m, body.clone()));
        assert_eq!(
            got,
            (
                expect.0,
                expect.1.to_string(),
                expect.2.map(str::to_string),
                expect.3.map(str::to_string)
            ),
            "{body}"
        );
    };
    check(
        json!({"messages": user("hi")}),
        (400, "you must provide a model parameter", None, None),
    );
    check(
        json!({"model": "gpt-4o"}),
        (
            400,
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        ),
    );
    check(
        json!({"model": "gpt-4o", "messages": []}),
        (
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ),
    );
    check(
        json!({"model": "gpt-9", "messages": user("hi")}),
        (
            404,
            "The model `gpt-9` does not exist or you do not have access to it.",
            None,
            Some("model_not_found"),
        ),
    );
    check(
        json!({"model": "gpt-5-mini", "max_tokens": 100, "messages": user("hi")}),
        (
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            Some("max_tokens"),
            Some("unsupported_parameter"),
        ),
    );
    check(
        json!({"model": "o4-mini", "temperature": 0.7, "messages": user("hi")}),
        (
            400,
            "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
            Some("temperature"),
            Some("unsupported_value"),
        ),
    );
    check(
        json!({"model": "gpt-5", "top_p": 0.5, "messages": user("hi")}),
        (
            400,
            "Unsupported value: 'top_p' does not support 0.5 with this model. Only the default (1) value is supported.",
            Some("top_p"),
            Some("unsupported_value"),
        ),
    );
    check(
        json!({"model": "gpt-4o", "temperature": 3, "messages": user("hi")}),
        (
            400,
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.",
            Some("temperature"),
            Some("decimal_above_max_value"),
        ),
    );
    check(
        json!({"model": "gpt-4o-mini", "max_tokens": 1000000, "messages": user("hi")}),
        (
            400,
            "max_tokens is too large: 1000000. This model supports at most 16384 completion tokens, whereas you provided 1000000.",
            Some("max_tokens"),
            Some("invalid_value"),
        ),
    );
    check(
        json!({"model": "gpt-4o", "response_format": {"type": "json_object"}, "messages": user("hi")}),
        (
            400,
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            Some("messages"),
            None,
        ),
    );
    check(
        json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        (
            400,
            "Invalid content type. image_url is only supported by certain models.",
            Some("messages.[0].content.[1].type"),
            None,
        ),
    );
    check(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
        (
            400,
            "Error while downloading https://example.com/a.png.",
            None,
            Some("invalid_image_url"),
        ),
    );
    check(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}),
        (
            400,
            "You uploaded an unsupported image. Please make sure your image is below 20 MB in size and is of one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
            None,
            Some("invalid_image_format"),
        ),
    );
    check(
        json!({"model": "gpt-4o", "response_format": {"type": "json_schema", "json_schema": {
            "name": "j", "strict": true, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "messages": user("hi")}),
        (
            400,
            "Invalid schema for response_format 'j': In context=(), 'additionalProperties' is required to be supplied and to be false.",
            Some("response_format"),
            None,
        ),
    );
    check(
        json!({"model": "gpt-4o", "messages": [{"role": "robot", "content": "hi"}]}),
        (
            400,
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
            Some("messages[0].role"),
            Some("invalid_value"),
        ),
    );
    check(
        json!({"model": "dall-e-3", "messages": user("hi")}),
        (
            404,
            "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use v1/completions?",
            Some("model"),
            None,
        ),
    );
    check(
        json!("not an object"),
        (
            400,
            super::not_an_object().body["error"]["message"]
                .as_str()
                .unwrap(),
            None,
            None,
        ),
    );
}

#[test]
fn reasoning_models_accept_their_own_parameters() {
    let m = Models::new(0);
    let ok = |body: Value| assert_eq!(chat(&m, body.clone()).status, 200, "{body}");
    ok(
        json!({"model": "gpt-5-mini", "max_completion_tokens": 4000, "temperature": 1, "messages": user("hi")}),
    );
    ok(json!({"model": "gpt-5-chat-latest", "temperature": 0.2, "messages": user("hi")}));
    ok(json!({"model": "gpt-4o", "temperature": 0.2, "max_tokens": 500, "messages": user("hi")}));
    let r = chat(
        &m,
        json!({"model": "o3", "messages": user(&format!("Idea: {IDEA}"))}),
    );
    let reasoning = r.body["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning >= 64 && reasoning.is_multiple_of(64));
    assert!(r.body["usage"]["completion_tokens"].as_u64().unwrap() > reasoning);
    assert_eq!(r.body["model"], "o3-2025-04-16");
}

#[test]
fn a_small_budget_cuts_the_answer() {
    let m = Models::new(0);
    let r = chat(
        &m,
        json!({"model": "gpt-4o", "max_tokens": 5, "messages": user(&format!("Idea: {IDEA}"))}),
    );
    assert_eq!(r.body["choices"][0]["finish_reason"], "length");
    assert!(r.body["usage"]["completion_tokens"].as_u64().unwrap() <= 5);
    let r = chat(
        &m,
        json!({"model": "gpt-5-nano", "max_completion_tokens": 10, "messages": user(&format!("Idea: {IDEA}"))}),
    );
    assert_eq!(r.body["choices"][0]["finish_reason"], "length");
    assert_eq!(content(&r), "");
    assert_eq!(r.body["usage"]["completion_tokens"], 10);
}

#[test]
fn n_choices_differ_and_flex_is_reported() {
    let m = Models::new(3);
    let r = chat(
        &m,
        json!({"model": "gpt-4o-mini", "n": 3, "service_tier": "flex", "messages": user(&format!("Idea: {IDEA}"))}),
    );
    let choices = r.body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(choices[2]["index"], 2);
    assert_ne!(
        choices[0]["message"]["content"],
        choices[1]["message"]["content"]
    );
    assert_eq!(r.body["service_tier"], "flex");
}

// ---------------------------------------------------------------------------------------------
// The writer

#[test]
fn expands_an_idea_into_what_and_how() {
    let m = Models::new(11);
    let text = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Expand the user's idea into a WHAT prompt (content) and a HOW prompt (visual treatment)."},
            {"role": "user", "content": format!("Idea: {IDEA}")}
        ]}),
    ));
    assert!(text.starts_with("WHAT: "), "{text}");
    assert!(
        text.contains("\nHOW: ") && text.contains("\nCOMBINED: "),
        "{text}"
    );

    // Asked for the WHAT alone (classic plan: separate calls), it answers only that.
    let what = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Write the WHAT prompt: subjects, setting, mood."},
            {"role": "user", "content": format!("Idea: {IDEA}")}
        ]}),
    ));
    assert!(
        !what.contains("WHAT:") && !what.contains("Visual treatment"),
        "{what}"
    );

    // Fused plan, iteration 0: structured {what, how, combined}.
    let r = chat(
        &m,
        json!({"model": "gpt-4o-mini",
        "response_format": {"type": "json_schema", "json_schema": {"name": "candidate", "strict": true, "schema": {
            "type": "object", "additionalProperties": false, "required": ["what", "how", "combined"],
            "properties": {"what": {"type": "string"}, "how": {"type": "string"}, "combined": {"type": "string"}}}}},
        "messages": user(&format!("Idea: {IDEA}\nCandidate 4 of 9"))}),
    );
    let v: Value = serde_json::from_str(&content(&r)).unwrap();
    let (what, how, combined) = (
        v["what"].as_str().unwrap(),
        v["how"].as_str().unwrap(),
        v["combined"].as_str().unwrap(),
    );
    assert!(
        combined.contains(what.trim_end_matches('.')) && combined.contains(how),
        "{v}"
    );
    assert!(super::text::terms_in(how).len() >= 2, "{how}");
}

#[test]
fn combines_what_and_how() {
    let m = Models::new(0);
    let text = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": user(
        "Combine these into one image prompt.\nWHAT: A lighthouse on a cliff.\nHOW: oil painting, chiaroscuro")}),
    ));
    assert_eq!(
        text,
        "A lighthouse on a cliff. Visual treatment: oil painting, chiaroscuro"
    );
}

#[test]
fn json_object_answers_are_objects() {
    let m = Models::new(0);
    let r = chat(
        &m,
        json!({"model": "gpt-4o", "response_format": {"type": "json_object"},
        "messages": user(&format!("Return JSON with what and how.\nIdea: {IDEA}"))}),
    );
    let v: Value = serde_json::from_str(&content(&r)).unwrap();
    assert!(
        v["what"].is_string() && v["how"].is_string() && v["combined"].is_string(),
        "{v}"
    );
}

#[test]
fn critique_then_refine_adds_what_was_missing() {
    let m = Models::new(5);
    let parent = "WHAT: A weathered lighthouse beneath a heavy sky.\nHOW: Oil painting.";
    let critique = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Critique this candidate.\nIdea: {IDEA}\n{parent}\nWeaknesses: too plain"))}),
    ));
    assert!(
        critique.contains("Missing content: storm, night"),
        "{critique}"
    );
    assert!(critique.contains("too plain"), "{critique}");
    assert!(critique.contains("Suggested treatment: "), "{critique}");

    let refined_what = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Refine the WHAT prompt using the critique.\nIdea: {IDEA}\n{parent}\nCritique: {critique}"))}),
    ));
    assert!(
        refined_what.starts_with("A weathered lighthouse beneath a heavy sky."),
        "{refined_what}"
    );
    assert!(refined_what.contains("storm and night"), "{refined_what}");
    assert!(!refined_what.contains("HOW"), "{refined_what}");

    let refined_how = content(&chat(
        &m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Refine the HOW prompt using the critique.\nIdea: {IDEA}\n{parent}\nCritique: {critique}"))}),
    ));
    let before = super::text::terms_in("Oil painting.").len();
    let after = super::text::terms_in(&refined_how).len();
    assert!(after >= before + 2, "{refined_how}");
    // Every added term was one the critique suggested.
    for t in super::text::terms_in(&refined_how) {
        assert!(
            t.text == "oil painting" || critique.contains(t.text),
            "{} not suggested",
            t.text
        );
    }
}

#[test]
fn fused_refinement_writes_critique_and_children() {
    let m = Models::new(9);
    let body = json!({"model": "gpt-4o-mini",
    "response_format": {"type": "json_schema", "json_schema": {"name": "refinement", "strict": true, "schema": {
        "type": "object", "additionalProperties": false, "required": ["critique", "children"],
        "properties": {
            "critique": {"type": "string"},
            "children": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                "required": ["what", "how", "combined"],
                "properties": {"what": {"type": "string"}, "how": {"type": "string"}, "combined": {"type": "string"}}}}
        }}}},
    "messages": [
        {"role": "system", "content": "Critique the parent from its judgement, then propose 3 children that refine the HOW."},
        {"role": "user", "content": format!("Idea: {IDEA}\n```json\n{}\n```", json!({
            "what": "A lighthouse in a storm at night.", "how": "Watercolor.",
            "judgement": {"alignment": 9.8, "aesthetic": 2.4, "weaknesses": ["lighting is unspecified"]}}))}
    ]});
    let v: Value = serde_json::from_str(&content(&chat(&m, body))).unwrap();
    assert!(
        v["critique"]
            .as_str()
            .unwrap()
            .contains("Suggested treatment"),
        "{v}"
    );
    let kids = v["children"].as_array().unwrap();
    assert_eq!(kids.len(), 3);
    for k in kids {
        assert_eq!(
            k["what"], "A lighthouse in a storm at night.",
            "WHAT is inherited"
        );
        let how = k["how"].as_str().unwrap();
        assert!(how.starts_with("Watercolor, "), "{how}");
        assert!(super::text::terms_in(how).len() >= 3, "{how}");
    }
    assert_ne!(kids[0]["how"], kids[1]["how"]);
}

// ---------------------------------------------------------------------------------------------
// Images and the judge

#[test]
fn image_generation_returns_real_pngs_recording_the_prompt() {
    let m = Models::new(0);
    let r = m.execute(
        Endpoint::ImagesGenerations,
        &json!({"model": "gpt-image-1", "prompt": IDEA, "n": 2, "size": "1536x1024"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let png = B64.decode(data[0]["b64_json"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(image::read_prompt(&png).as_deref(), Some(IDEA));
    assert_ne!(data[0], data[1]);
    assert_eq!(r.body["size"], "1536x1024");
    assert_eq!(r.body["usage"]["output_tokens"], 2 * 6240);
    assert_eq!(r.output_tokens, 2 * 6240);

    // DALL·E answers a URL by default: here, a data URL.
    let r = m.execute(
        Endpoint::ImagesGenerations,
        &json!({"model": "dall-e-3", "prompt": IDEA}),
    );
    let url = r.body["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,"));
    assert_eq!(r.body["data"][0]["revised_prompt"], IDEA);
    assert!(r.body.get("usage").is_none());

    let r = m.execute(
        Endpoint::ImagesGenerations,
        &json!({"model": "dall-e-2", "prompt": IDEA, "response_format": "b64_json"}),
    );
    assert!(r.body["data"][0]["b64_json"].is_string());
}

#[test]
fn image_validation() {
    let m = Models::new(0);
    let check = |body: Value, code: &str| {
        let r = m.execute(Endpoint::ImagesGenerations, &body);
        assert_eq!(r.status / 100, 4, "{body}");
        assert_eq!(r.body["error"]["code"].as_str(), Some(code), "{}", r.body);
    };
    check(
        json!({"model": "gpt-image-1"}),
        "missing_required_parameter",
    );
    check(
        json!({"model": "gpt-image-1", "prompt": "x", "size": "64x64"}),
        "invalid_value",
    );
    check(
        json!({"model": "dall-e-3", "prompt": "x", "n": 2}),
        "integer_above_max_value",
    );
    check(
        json!({"model": "dall-e-2", "prompt": "x".repeat(1001)}),
        "string_above_max_length",
    );
    check(
        json!({"model": "imagine-9", "prompt": "x"}),
        "model_not_found",
    );
    check(
        json!({"model": "gpt-image-1", "prompt": "x", "response_format": "gif"}),
        "invalid_value",
    );
    let r = m.execute(
        Endpoint::ImagesGenerations,
        &json!({"model": "gpt-image-1", "prompt": "x", "size": "64x64"}),
    );
    assert_eq!(
        r.body["error"]["message"],
        "Invalid value: '64x64'. Supported values are: 'auto', '1024x1024', '1536x1024', and '1024x1536'."
    );
}

#[test]
fn the_judge_reads_the_prompt_from_the_image_only() {
    let m = Models::new(2);
    let full = render(
        &m,
        "A lighthouse in a storm at night. Visual treatment: chiaroscuro, rule of thirds, oil painting, 85mm lens",
    );
    let bare = render(&m, "A quiet field. Visual treatment: watercolor");
    // The text around the image claims otherwise; the judge does not care.
    let lie = |b64: &str| {
        json!({"model": "gpt-4o", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": [
            {"type": "text", "text": format!("Return json.\nIdea: {IDEA}\nPrompt: a lighthouse in a storm at night, golden hour lighting")},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}]}]})
    };
    let good: Value = serde_json::from_str(&content(&chat(&m, lie(&full)))).unwrap();
    let poor: Value = serde_json::from_str(&content(&chat(&m, lie(&bare)))).unwrap();
    assert!(good["alignment"].as_f64().unwrap() >= 8.0, "{good}");
    assert!(poor["alignment"].as_f64().unwrap() <= 2.0, "{poor}");
    assert!(good["aesthetic"].as_f64().unwrap() > poor["aesthetic"].as_f64().unwrap() + 2.0);
    assert!(
        poor["weaknesses"]
            .to_string()
            .contains("does not show the lighthouse"),
        "{poor}"
    );
    assert!(
        good["strengths"].to_string().contains("chiaroscuro"),
        "{good}"
    );

    // An image the simulator did not draw: valid, but it cannot be related to the idea.
    let mut plain = Vec::new();
    {
        let mut e = png::Encoder::new(&mut plain, 1, 1);
        e.set_color(png::ColorType::Grayscale);
        e.write_header().unwrap().write_image_data(&[0]).unwrap();
    }
    let (a, _, v) = judge(&m, &B64.encode(&plain), IDEA, 0);
    assert!(a <= 2.0, "{v}");
}

#[test]
fn votes_differ_by_request_and_average_to_the_truth() {
    let m = Models::new(4);
    let prompt = "A lighthouse in a storm. Visual treatment: chiaroscuro, oil painting";
    let b64 = render(&m, prompt);
    let (true_a, true_e) = super::engine::true_scores(prompt, IDEA);
    let votes: Vec<(f64, f64)> = (0..40)
        .map(|i| {
            let (a, e, _) = judge(&m, &b64, IDEA, i);
            (a, e)
        })
        .collect();
    assert_ne!(votes[0], votes[1]);
    assert_eq!(
        judge(&m, &b64, IDEA, 3).0,
        votes[3].0,
        "same request, same vote"
    );
    let mean_e = votes.iter().map(|v| v.1).sum::<f64>() / votes.len() as f64;
    let mean_a = votes.iter().map(|v| v.0).sum::<f64>() / votes.len() as f64;
    assert!((mean_e - true_e).abs() < 0.35, "{mean_e} vs {true_e}");
    // Alignment is clamped at 10, so its mean sits a little below a perfect truth.
    assert!((mean_a - true_a).abs() < 0.45, "{mean_a} vs {true_a}");
}

#[test]
fn the_hidden_quality_is_what_the_votes_scatter_around() {
    let m = Models::new(5);
    let good = "A lighthouse in a storm at night. Visual treatment: chiaroscuro, rule of thirds, oil painting, 85mm lens";
    let poor = "A lighthouse. Visual treatment: watercolor";
    let (q_good, q_poor) = (
        super::hidden_quality(good, IDEA, 0.7),
        super::hidden_quality(poor, IDEA, 0.7),
    );
    let (a, e) = super::engine::true_scores(good, IDEA);
    assert!((q_good - (0.7 * a + 0.3 * e)).abs() < 1e-12);
    assert!(q_good > q_poor + 2.0, "{q_good} vs {q_poor}");
    // The judge's mean score over many votes is the hidden quality (alignment's clamp at 10
    // keeps it a little below).
    let b64 = render(&m, good);
    let mean = (0..40)
        .map(|i| {
            let (a, e, _) = judge(&m, &b64, IDEA, i);
            0.7 * a + 0.3 * e
        })
        .sum::<f64>()
        / 40.0;
    assert!((mean - q_good).abs() < 0.4, "{mean} vs {q_good}");
}

#[test]
fn a_draft_render_hides_fine_detail_from_the_judge_and_is_noisier() {
    let m = Models::new(5);
    // Two lens and texture terms, which a low draft does not show.
    let prompt = "A lighthouse in a storm at night. Visual treatment: chiaroscuro, fine film grain, 85mm lens, shallow depth of field";
    let at = |quality: &str| {
        let reply = m.execute(
            Endpoint::ImagesGenerations,
            &json!({"model": "gpt-image-1", "prompt": prompt, "quality": quality}),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["data"][0]["b64_json"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // A high render is the image as it always was: no quality chunk.
    assert_eq!(at("high"), render(&m, prompt));
    let votes = |b64: &str| -> Vec<(f64, f64)> {
        (0..60)
            .map(|i| {
                let (a, e, _) = judge(&m, b64, IDEA, i);
                (a, e)
            })
            .collect()
    };
    let mean =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let spread = |v: &[(f64, f64)]| {
        let mu = mean(v, |x| x.1);
        (v.iter().map(|x| (x.1 - mu).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let (high, medium, low) = (votes(&at("high")), votes(&at("medium")), votes(&at("low")));
    // Aesthetics: 4 terms at high, 3 at medium (grain lost), 1 at low (lens terms lost too).
    let (_, e_high) = super::engine::true_scores(prompt, IDEA);
    assert!((mean(&high, |x| x.1) - e_high).abs() < 0.3);
    assert!(
        mean(&medium, |x| x.1) < e_high - 0.8,
        "{}",
        mean(&medium, |x| x.1)
    );
    assert!(mean(&low, |x| x.1) < mean(&medium, |x| x.1) - 1.5);
    // Alignment is the idea's words: a draft still shows them.
    assert!((mean(&low, |x| x.0) - mean(&high, |x| x.0)).abs() < 0.6);
    // Noisier votes: low's spread is well over high's.
    assert!(
        spread(&low) > 1.6 * spread(&high),
        "{} vs {}",
        spread(&low),
        spread(&high)
    );
    let (_, _, v) = judge(&m, &at("low"), IDEA, 0);
    assert!(!v["reasons"].as_str().unwrap().contains("85mm lens"), "{v}");
}

#[test]
fn comparison_prefers_the_better_image_and_favours_position_a() {
    let m = Models::new(6);
    let good = render(
        &m,
        "A lighthouse in a storm at night. Visual treatment: chiaroscuro, rule of thirds, oil painting, 85mm lens, teal and orange palette",
    );
    let poor = render(&m, "A lighthouse. Visual treatment: watercolor");
    let compare = |a: &str, b: &str, vote: usize| {
        let body = json!({"model": "gpt-4o-mini",
            "response_format": {"type": "json_schema", "json_schema": {"name": "comparison", "schema": {
                "type": "object", "properties": {
                    "winner": {"type": "string", "enum": ["A", "B"]},
                    "alignment_winner": {"type": "string", "enum": ["A", "B"]},
                    "ranks": {"type": "object", "properties": {"A": {"type": "integer"}, "B": {"type": "integer"}}},
                    "reasons": {"type": "string"}}}}},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": format!("Idea: {IDEA}\nWhich image is better? Vote {vote}")},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{a}")}},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b}")}}]}]});
        serde_json::from_str::<Value>(&content(&chat(&m, body))).unwrap()
    };
    for vote in 0..5 {
        let v = compare(&good, &poor, vote);
        assert_eq!(v["winner"], "A", "{v}");
        assert_eq!(v["ranks"], json!({"A": 1, "B": 2}));
        let v = compare(&poor, &good, vote);
        assert_eq!(v["winner"], "B", "{v}");
        assert_eq!(v["alignment_winner"], "B", "{v}");
    }
    // Two identical images: the first shown wins more often than not.
    let a_wins = (0..40)
        .filter(|&v| compare(&poor, &poor, v)["winner"] == "A")
        .count();
    assert!(a_wins > 24, "{a_wins}/40");
}

// ---------------------------------------------------------------------------------------------
// The search improves

/// One candidate of the tiny search: its prompts and its mean score over the votes.
#[derive(Debug, Clone)]
struct Node {
    what: String,
    how: String,
    score: f64,
}

fn score(m: &Models, combined: &str, votes: usize) -> f64 {
    let b64 = render(m, combined);
    (0..votes)
        .map(|v| {
            let (a, e, _) = judge(m, &b64, IDEA, v);
            0.7 * a + 0.3 * e
        })
        .sum::<f64>()
        / votes as f64
}

fn expand(m: &Models, i: usize) -> (String, String) {
    let v: Value = serde_json::from_str(&content(&chat(m, json!({"model": "gpt-4o-mini",
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Expand the idea into WHAT and HOW prompts. Answer in JSON."},
            {"role": "user", "content": format!("Idea: {IDEA}\nCandidate {i}")}]})))).unwrap();
    (
        v["what"].as_str().unwrap().into(),
        v["how"].as_str().unwrap().into(),
    )
}

fn combine(m: &Models, what: &str, how: &str) -> String {
    content(&chat(
        m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Combine WHAT and HOW into one image prompt.\nWHAT: {what}\nHOW: {how}"))}),
    ))
}

fn critique(m: &Models, parent: &Node) -> String {
    content(&chat(
        m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Critique this candidate.\nIdea: {IDEA}\nWHAT: {}\nHOW: {}\nScore: {:.1}",
        parent.what, parent.how, parent.score))}),
    ))
}

fn refine(m: &Models, parent: &Node, critique: &str, dim: &str, child: usize) -> String {
    content(&chat(
        m,
        json!({"model": "gpt-4o-mini", "messages": user(&format!(
        "Refine the {dim} prompt using the critique. Child {child}.\nIdea: {IDEA}\nWHAT: {}\nHOW: {}\nCritique: {critique}",
        parent.what, parent.how))}),
    ))
}

/// expand -> render -> judge, then rounds of critique -> refine -> render -> judge; returns
/// the best mean score of each iteration.
fn tiny_search(seed: u64, n: usize, keep: usize, iterations: usize) -> Vec<f64> {
    let m = Models::new(seed);
    let mut pool: Vec<Node> = (0..n)
        .map(|i| {
            let (what, how) = expand(&m, i);
            let combined = combine(&m, &what, &how);
            let score = score(&m, &combined, 3);
            Node { what, how, score }
        })
        .collect();
    let mut best = Vec::new();
    for it in 0..iterations {
        pool.sort_by(|a, b| b.score.total_cmp(&a.score));
        best.push(pool[0].score);
        if it + 1 == iterations {
            break;
        }
        let dim = if it % 2 == 0 { "WHAT" } else { "HOW" };
        let parents: Vec<Node> = pool.iter().take(keep).cloned().collect();
        pool = parents
            .iter()
            .flat_map(|p| {
                let critique = critique(&m, p);
                (0..n / keep)
                    .map(|c| {
                        let text = refine(&m, p, &critique, dim, c);
                        let (what, how) = if dim == "WHAT" {
                            (text, p.how.clone())
                        } else {
                            (p.what.clone(), text)
                        };
                        let combined = combine(&m, &what, &how);
                        let score = score(&m, &combined, 3);
                        Node { what, how, score }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    best
}

#[test]
fn a_search_that_follows_the_critique_improves_its_best_score() {
    for seed in 0..4 {
        let best = tiny_search(seed, 4, 2, 3);
        assert!(
            best[1] > best[0] && best[2] > best[1],
            "seed {seed}: {best:?}"
        );
    }
}

#[test]
fn recognises_the_task() {
    use super::engine::{Task, Wants, recognise};
    use super::reading::{Reading, SeenImage};
    let check = |parts: &[&str], images: usize, wants: Wants, expect: Task| {
        let mut r = Reading::default();
        for p in parts {
            r.add_text(p);
        }
        for _ in 0..images {
            r.add_image(SeenImage::Foreign);
        }
        assert_eq!(recognise(&r, wants), expect, "{parts:?}");
    };
    let none = Wants::default();
    check(&["Idea: a cat"], 0, none, Task::Expand);
    check(
        &["Expand this idea into WHAT and HOW: a cat on a roof"],
        0,
        none,
        Task::Expand,
    );
    check(
        &["Combine them.\nWHAT: a cat\nHOW: ink illustration"],
        0,
        none,
        Task::Combine,
    );
    check(
        &["Critique the candidate.\nWHAT: a cat\nHOW: ink"],
        0,
        none,
        Task::Critique,
    );
    check(
        &["Refine the HOW.\nWHAT: a cat\nHOW: ink\nCritique: flat"],
        0,
        none,
        Task::Refine,
    );
    check(&["Improve it.\nWHAT: a cat"], 0, none, Task::Refine);
    check(
        &["WHAT: a cat\nHOW: ink"],
        0,
        Wants {
            children: Some((3, 3)),
            critique: true,
        },
        Task::Refine,
    );
    check(&["Idea: a cat"], 1, none, Task::Judge);
    check(&["Idea: a cat"], 2, none, Task::Compare);
    // An explicit Task label wins over everything.
    check(&["Task: critique\nIdea: a cat"], 1, none, Task::Critique);
    check(
        &["Task: expand\nWHAT: a cat\nCritique: x\nRefine it"],
        0,
        none,
        Task::Expand,
    );
}

/// Figures for the docs: `SIM_SEARCH_FIGURES=40 cargo test -p openai-sim search_figures --
/// --nocapture` runs the tiny search (n=9, m=3, 4 iterations) over that many seeds and prints
/// the mean best score per iteration and how often it rose. Off by default: it takes a while.
#[test]
fn search_figures() {
    let Some(seeds) = std::env::var("SIM_SEARCH_FIGURES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let iterations = 4;
    let mut rises = vec![0; iterations];
    let mut sums = vec![0.0; iterations];
    for seed in 0..seeds {
        let best = tiny_search(seed, 9, 3, iterations);
        for i in 0..iterations {
            sums[i] += best[i];
            if i > 0 && best[i] > best[i - 1] {
                rises[i] += 1;
            }
        }
    }
    let means: Vec<String> = sums
        .iter()
        .map(|s| format!("{:.2}", s / seeds as f64))
        .collect();
    eprintln!(
        "mean best per iteration: {}; rose in {rises:?} of {seeds} runs",
        means.join(" -> ")
    );
}

#[test]
fn the_judge_can_also_critique_and_propose_children() {
    let m = Models::new(12);
    let prompt = "A lighthouse beneath a heavy sky. Visual treatment: Watercolor.";
    let b64 = render(&m, prompt);
    let body = json!({"model": "gpt-4o-mini",
        "response_format": {"type": "json_schema", "json_schema": {"name": "judge_refine", "strict": true, "schema": {
            "type": "object", "additionalProperties": false,
            "required": ["alignment", "aesthetic", "critique", "children"],
            "properties": {
                "alignment": {"type": "number"}, "aesthetic": {"type": "number"}, "critique": {"type": "string"},
                "children": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "object",
                    "additionalProperties": false, "required": ["what", "how", "combined"],
                    "properties": {"what": {"type": "string"}, "how": {"type": "string"}, "combined": {"type": "string"}}}}}}}},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": format!("Idea: {IDEA}\nJudge the image, then critique it and propose children that refine the WHAT.")},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}]}]});
    let v: Value = serde_json::from_str(&content(&chat(&m, body))).unwrap();
    assert!(v["alignment"].as_f64().unwrap() < 6.0, "{v}");
    assert!(
        v["critique"]
            .as_str()
            .unwrap()
            .contains("Missing content: storm, night"),
        "{v}"
    );
    let kids = v["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    for k in kids {
        // Parent prompts recovered from the image; WHAT refined, HOW inherited.
        assert!(
            k["what"].as_str().unwrap().contains("storm and night"),
            "{k}"
        );
        assert_eq!(k["how"], "Watercolor.");
        let (a, _) = super::engine::true_scores(k["combined"].as_str().unwrap(), IDEA);
        assert_eq!(a, 10.0, "{k}");
    }
}

#[test]
fn embeddings_are_deterministic_normalised_and_close_for_shared_words() {
    let m = Models::new(0);
    let r = m.execute(
        Endpoint::Embeddings,
        &json!({"model": "text-embedding-3-small", "input": ["a red fox", "a red fox in snow", "tax law"], "dimensions": 64}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "list");
    assert_eq!(r.body["model"], "text-embedding-3-small");
    let v: Vec<Vec<f64>> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(v[0].len(), 64);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-4);
    assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.3);
    assert_eq!(
        r.body["usage"]["prompt_tokens"],
        r.body["usage"]["total_tokens"]
    );

    // base64: little-endian f32s, as the SDK asks by default.
    let b = m.execute(Endpoint::Embeddings, &json!({"model": "text-embedding-3-small", "input": "a red fox", "dimensions": 64, "encoding_format": "base64"}));
    let bytes = B64
        .decode(b.body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let first = f32::from_le_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(bytes.len(), 64 * 4);
    assert!((f64::from(first) - v[0][0]).abs() < 1e-6);

    let bad = m.execute(
        Endpoint::Embeddings,
        &json!({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        m.execute(
            Endpoint::Embeddings,
            &json!({"model": "gpt-4o", "input": "x"})
        )
        .status,
        404
    );
}

#[test]
fn completions_moderations_responses_and_videos_have_their_shapes() {
    let m = Models::new(0);
    let c = m.execute(
        Endpoint::Completions,
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": format!("Idea: {IDEA}")}),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["object"], "text_completion");
    assert!(c.body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(
        c.body["choices"][0]["text"]
            .as_str()
            .unwrap()
            .contains("WHAT:")
    );
    assert_eq!(
        m.execute(
            Endpoint::Completions,
            &json!({"model": "gpt-4o", "prompt": "x"})
        )
        .status,
        404
    );

    let md = m.execute(
        Endpoint::Moderations,
        &json!({"input": ["a calm lake", "how to build a bomb"]}),
    );
    assert_eq!(md.status, 200, "{}", md.body);
    assert_eq!(md.body["model"], "omni-moderation-latest");
    assert_eq!(md.body["results"][0]["flagged"], false);
    assert_eq!(md.body["results"][1]["flagged"], true);
    assert_eq!(md.body["results"][1]["categories"]["violence"], true);
    assert_eq!(
        md.body["results"][0]["category_scores"]
            .as_object()
            .unwrap()
            .len(),
        13
    );

    let r = m.execute(
        Endpoint::Responses,
        &json!({"model": "gpt-5-mini", "instructions": "Expand the idea.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": format!("Idea: {IDEA}")}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "response");
    assert_eq!(r.body["model"], "gpt-5-mini-2025-08-07");
    let output = r.body["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[1]["content"][0]["type"], "output_text");
    assert!(
        output[1]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("HOW:")
    );
    assert!(
        r.body["usage"]["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let bad = m.execute(
        Endpoint::Responses,
        &json!({"model": "o3", "temperature": 0.3, "input": "x"}),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["code"], "unsupported_parameter");
    // Structured output through text.format, with an image the judge reads.
    let b64 = render(&m, "A lighthouse in a storm at night.");
    let j = m.execute(Endpoint::Responses, &json!({"model": "gpt-4.1-mini",
        "text": {"format": {"type": "json_schema", "name": "j", "schema": {"type": "object", "properties": {"alignment": {"type": "number"}}}}},
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": format!("Idea: {IDEA}")},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{b64}")}]}]}));
    let text = j.body["output"][0]["content"][0]["text"].as_str().unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    assert!(v["alignment"].as_f64().unwrap() > 8.0, "{v}");

    let video = m.execute(
        Endpoint::Videos,
        &json!({"model": "sora-2", "prompt": "a fox"}),
    );
    assert_eq!(video.status, 200);
    assert_eq!(video.body["object"], "video");
    assert_eq!(video.body["status"], "queued");
}

#[test]
fn siblings_refined_by_separate_calls_start_at_different_suggestions() {
    let m = Models::new(3);
    let parent = Node {
        what: "A lighthouse on a cliff.".into(),
        how: "oil painting".into(),
        score: 5.0,
    };
    let critique = "Missing content: storm, night\nSuggested content: drifting mist, glistening spray, hazy horizon";
    let first = refine(&m, &parent, critique, "WHAT", 1);
    let second = refine(&m, &parent, critique, "WHAT", 2);
    assert!(first.contains("drifting mist"), "{first}");
    assert!(second.starts_with("A lighthouse on a cliff."), "{second}");
    assert_ne!(first, second, "child 1 and child 2 differ");
    assert!(!second.contains("drifting mist"), "{second}");
}
