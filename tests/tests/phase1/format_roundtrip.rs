//! What the builder writes, the validator accepts, and what a batch returns maps back to the
//! shard manifest it came from.

use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, Endpoint, ImageDetail, ImageGenerationRequest,
    Message, ShardLimits, ValidationOptions, validate_jsonl,
};

fn judge_messages(i: usize) -> Vec<Message> {
    vec![
        Message::system("Score the image for alignment and aesthetics."),
        Message::user_parts(vec![
            ContentPart::text(format!("Idea: a lighthouse in a storm. Candidate {i}.")),
            ContentPart::image_url("data:image/png;base64,iVBORw0KGgo=", ImageDetail::Low),
        ]),
    ]
}

fn mixed_builder(limits: ShardLimits) -> BatchRequestBuilder {
    let mut builder = BatchRequestBuilder::with_limits(limits);
    for i in 0..25 {
        let options = ChatOptions {
            max_tokens: Some(200),
            temperature: Some(0.2),
            ..ChatOptions::new(if i % 2 == 0 {
                "gpt-4o-mini"
            } else {
                "gpt-5-mini"
            })
        };
        builder
            .add_chat_completion_request(format!("judge-{i}"), judge_messages(i), options)
            .unwrap();
    }
    for i in 0..7 {
        builder
            .add_image_generation_request(
                format!("render-{i}"),
                ImageGenerationRequest::new("gpt-image-1", format!("a lighthouse, take {i}")),
            )
            .unwrap();
    }
    let mut body = serde_json::Map::new();
    body.insert("model".into(), "text-embedding-3-small".into());
    body.insert("input".into(), "a lighthouse".into());
    builder
        .add_raw_request("embed-0", Endpoint::Embeddings, body)
        .unwrap();
    builder
}

#[test]
fn every_shard_the_builder_writes_passes_the_streaming_validator() {
    let limits = ShardLimits {
        max_lines: 4,
        ..ShardLimits::default()
    };
    let batch = mixed_builder(limits).build_batch("roundtrip").unwrap();
    // 13 + 12 chat lines in shards of 4, 7 renders, 1 embedding: 4 + 3 + 2 + 1 shards.
    assert_eq!(batch.shards().len(), 10);
    let mut seen = 0;
    for shard in batch.shards() {
        let mut jsonl = Vec::new();
        shard.write_jsonl(&mut jsonl).unwrap();
        let mut problems = Vec::new();
        let summary = validate_jsonl(
            jsonl.as_slice(),
            &ValidationOptions {
                expected_endpoint: Some(shard.endpoint()),
                estimate_tokens: true,
                ..ValidationOptions::default()
            },
            |p| problems.push(p),
        )
        .unwrap();
        assert!(problems.is_empty(), "{}: {problems:?}", shard.name());
        assert_eq!(summary.lines as usize, shard.len());
        assert_eq!(summary.bytes as usize, jsonl.len());
        assert_eq!(summary.bytes, shard.byte_size());
        assert_eq!(summary.model.as_deref(), shard.model());
        assert!(summary.estimated_tokens > 0);
        assert_eq!(shard.manifest().custom_ids.len(), shard.len());
        seen += shard.len();
    }
    assert_eq!(seen, 33);
}

#[test]
fn shards_glued_together_are_caught_as_a_mixed_batch() {
    // Two shards of different models in one file: the validator names the first stray line.
    let batch = mixed_builder(ShardLimits::default())
        .build_batch("mixed")
        .unwrap();
    let mut jsonl = Vec::new();
    for shard in batch.shards().iter().take(2) {
        shard.write_jsonl(&mut jsonl).unwrap();
    }
    let first_len = batch.shards()[0].len() as u64;
    let mut problems = Vec::new();
    validate_jsonl(jsonl.as_slice(), &ValidationOptions::default(), |p| {
        problems.push(p)
    })
    .unwrap();
    assert!(!problems.is_empty());
    assert_eq!(problems[0].line, Some(first_len + 1));
    assert_eq!(problems[0].code.as_str(), "mismatched_model");
}
