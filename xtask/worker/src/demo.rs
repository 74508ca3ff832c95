//! `xtask-worker demo-shards DIR`: step 1 of `cargo xtask demo`, a judge stage and a render stage
//! built with batch-format's builder and written to DIR as shards. Prints every normalisation
//! of the first judge request, then one `shard NAME PATH` line per shard.

use std::path::Path;

use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, ImageGenerationRequest, Message,
};

/// A 1x1 PNG, as a judge request would carry a rendered image.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// Builds both stages and writes their shards.
pub(crate) fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // 1. Build a judge stage and a render stage with the builder; gpt-5-mini gets normalised.
    let mut builder = BatchRequestBuilder::new();
    for i in 0..9 {
        let messages = vec![
            Message::system("You judge images for alignment with an idea and for aesthetics."),
            Message::user_parts(vec![
                ContentPart::text(format!("Idea: a lighthouse in a storm. Candidate {i}.")),
                ContentPart::image_url(
                    format!("data:image/png;base64,{PIXEL_PNG}"),
                    ImageDetail::Low,
                ),
            ]),
        ];
        let options = ChatOptions {
            max_tokens: Some(400),
            temperature: Some(0.3),
            ..ChatOptions::new("gpt-5-mini")
        };
        let changes =
            builder.add_chat_completion_request(format!("judge-{i}"), messages, options)?;
        if i == 0 {
            for change in &changes {
                println!("normalised judge-0: {change}");
            }
        }
    }
    for i in 0..9 {
        builder.add_image_generation_request(
            format!("render-{i}"),
            ImageGenerationRequest::new(
                "gpt-image-1",
                format!("a lighthouse in a storm, take {i}"),
            ),
        )?;
    }
    let batch = builder.build_batch("demo")?;
    for shard in batch.shards() {
        let path = dir.join(format!("{}.jsonl", shard.name()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        shard.write_jsonl(&mut file)?;
        std::io::Write::flush(&mut file)?;
        println!("shard {} {}", shard.name(), path.display());
    }
    Ok(())
}
