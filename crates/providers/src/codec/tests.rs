//! Request bodies and how answers are read.

use super::*;
use crate::Operation;

#[test]
fn chat_bodies_drop_temperature_for_reasoning_models() {
    let req = ChatRequest::new(Operation::Expand, "Idea: a fox").with_temperature(0.7);
    let body = serde_json::to_value(chat_body("gpt-5-mini", &req)).unwrap();
    assert!(body.get("temperature").is_none(), "{body}");
    let body = serde_json::to_value(chat_body("gpt-4o-mini", &req)).unwrap();
    assert_eq!(body["temperature"], 0.7);
}

#[test]
fn judge_bodies_refuse_bad_input() {
    let mut req = JudgeRequest {
        idea: "a fox".into(),
        image: b"not a png".to_vec(),
        detail: None,
        alpha: 0.7,
        vote: 0,
        seed: None,
        key: None,
    };
    assert!(matches!(
        judge_body("gpt-4o-mini", &req),
        Err(ProviderError::InvalidRequest(_))
    ));
    req.image = PNG_SIGNATURE.to_vec();
    req.alpha = 1.5;
    assert!(judge_body("gpt-4o-mini", &req).is_err());
}

#[test]
fn answers_that_lack_what_was_asked_are_decode_errors() {
    let cases = [
        json!({}),
        json!({"choices": [{"message": {"content": null, "refusal": "no"}}]}),
        json!({"choices": [{"message": {"content": "not json"}}]}),
        json!({"choices": [{"message": {"content": "{\"alignment\": \"high\"}"}}]}),
    ];
    for body in cases {
        assert!(
            matches!(read_judgement(&body), Err(ProviderError::Decode { .. })),
            "{body}"
        );
    }
    assert!(read_image(&json!({"data": [{"b64_json": "!!"}]})).is_err());
    assert!(read_image(&json!({"data": [{"url": "https://x/y.png"}]})).is_err());
}

#[test]
fn comparisons_rank_each_dimension() {
    let answer = json!({"winner": "B", "alignment_winner": "A", "aesthetic_winner": "b",
                        "reasons": "r", "strengths": ["s"], "weaknesses": []});
    let body = json!({"choices": [{"message": {"content": answer.to_string()}}]});
    let (winner, a, b, ..) = read_comparison(&body).unwrap();
    assert_eq!(winner, Side::B);
    assert_eq!((a.total, a.alignment, a.aesthetic), (2, 1, 2));
    assert_eq!((b.total, b.alignment, b.aesthetic), (1, 2, 1));
}

#[test]
fn usage_is_read_under_either_naming() {
    let u = usage_of(
        &json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4,
        "completion_tokens_details": {"reasoning_tokens": 2}}}),
    );
    assert_eq!((u.input_tokens, u.output_tokens, u.total_tokens), (3, 4, 7));
    assert_eq!(u.reasoning_tokens, Some(2));
    let u =
        usage_of(&json!({"usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}}));
    assert_eq!(u.total_tokens, 11);
    assert_eq!(usage_of(&json!({})), Usage::default());
}
