//! The prompts each component writes, as snapshots, and how answers are read back.

use super::*;

fn writing() -> Writing {
    Writing {
        idea: "a lighthouse\nin a storm".into(),
        temperature: Some(0.9),
        seed: 7,
    }
}

#[test]
fn dimensions_alternate_from_what() {
    let dims: Vec<_> = (1..5).map(Dimension::of_iteration).collect();
    assert_eq!(
        dims,
        [
            Dimension::What,
            Dimension::How,
            Dimension::What,
            Dimension::How
        ]
    );
}

#[test]
fn calls_that_ask_the_same_differ_by_seed_and_text() {
    let e = PromptExpander(writing());
    let (a, b) = (e.fused(0, 9), e.fused(1, 9));
    assert_ne!(a.chat.seed, b.chat.seed);
    assert_ne!(a.chat.user, b.chat.user);
    assert!(a.chat.user.contains("Idea: a lighthouse in a storm"));
    // The same call twice is the same request (a session replays exactly).
    assert_eq!(e.fused(3, 9), e.fused(3, 9));
}

#[test]
fn children_inherit_the_dimension_not_refined() {
    let mut parent = Candidate::new(0, 0, None);
    parent.what = "a lighthouse".into();
    parent.how = "oil painting".into();
    let v = json!({"children": [
        {"what": "a lighthouse in spray", "how": "watercolor", "combined": "c1"},
        {"what": "", "how": "", "combined": ""},
        {"what": "a lighthouse at dusk", "how": "x", "combined": ""},
        {"what": "extra", "how": "y", "combined": "z"}
    ]});
    let kids = read_children(&v, &parent, Dimension::What, 3);
    assert_eq!(kids.len(), 3);
    assert!(kids.iter().all(|k| k.how == "oil painting"));
    assert_eq!(kids[0].combined, "c1");
    assert_eq!(
        kids[2].combined,
        "a lighthouse at dusk. Visual treatment: oil painting"
    );
    assert!(read_children(&json!({}), &parent, Dimension::How, 3).is_empty());
}

#[test]
fn schemas_are_strict() {
    let s = children_schema(3, true);
    let props = s["properties"].as_object().unwrap();
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(props.len(), required.len());
    assert_eq!(s["additionalProperties"], false);
    assert_eq!(s["properties"]["children"]["minItems"], 3);
}

/// The exact bodies the writers send, one per kind of call (what a reviewer of the prompts
/// reads, and what must stay valid for the API).
#[test]
fn request_bodies() {
    let w = Writing {
        idea: "a lighthouse in a storm".into(),
        temperature: Some(0.9),
        seed: 7,
    };
    let mut parent = Candidate::new(0, 2, None);
    parent.what = "A lighthouse on a basalt cliff, waves breaking.".into();
    parent.how = "oil painting, rim lighting".into();
    parent.verdict = Some(Verdict {
        total: 6.4,
        alignment: 7.0,
        aesthetic: 5.0,
        votes: 3,
        comparisons: 0,
        wins: 0,
        rank: 1,
        reasons: vec!["Shows the lighthouse; the storm is faint.".into()],
        strengths: vec!["shows the lighthouse".into()],
        weaknesses: vec!["does not show the storm".into()],
    });
    let model = "gpt-4o-mini";
    let json =
        |r: &JsonRequest| serde_json::to_value(providers::codec::json_body(model, r)).unwrap();
    let chat =
        |r: &ChatRequest| serde_json::to_value(providers::codec::chat_body(model, r)).unwrap();
    insta::assert_json_snapshot!("expand_fused", json(&PromptExpander(w.clone()).fused(0, 9)));
    insta::assert_json_snapshot!(
        "expand_what",
        json(&PromptExpander(w.clone()).half(1, 9, Dimension::What))
    );
    insta::assert_json_snapshot!("combine", json(&PromptCombiner(w.clone()).request(&parent)));
    insta::assert_json_snapshot!(
        "critique",
        chat(&CritiqueGenerator(w.clone()).request(&parent, Dimension::How))
    );
    insta::assert_json_snapshot!(
        "refine",
        json(&PromptRefiner(w.clone()).request(
            &parent,
            "Missing content: storm",
            Dimension::What,
            1,
            3
        ))
    );
    insta::assert_json_snapshot!(
        "refine_fused",
        json(&PromptRefiner(w.clone()).fused(&parent, Dimension::How, 3))
    );
    let png = b"\x89PNG\r\n\x1a\n".to_vec();
    let review = PromptRefiner(w).review(&parent, png, ImageDetail::Low, 0.7, Dimension::What, 3);
    insta::assert_json_snapshot!(
        "review",
        serde_json::to_value(providers::codec::vision_json_body(model, &review).unwrap()).unwrap()
    );
}
