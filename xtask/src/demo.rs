//! `cargo xtask demo`: runs what the batchbeam binary can do so far on files it generates, and
//! fails if any step does not behave as documented.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, ImageGenerationRequest, Message,
};

use crate::util::{cargo, exec};

/// A 1x1 PNG, as a judge request would carry a rendered image.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--quiet", "-p", "batchbeam"]),
    )?;
    let bin = root.join("target/debug/batchbeam");
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir).context("creating target/demo")?;

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
    println!("built {} shard(s):", batch.shards().len());
    for shard in batch.shards() {
        let path = dir.join(format!("{}.jsonl", shard.name()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        shard.write_jsonl(&mut file)?;
        std::io::Write::flush(&mut file)?;
        println!("  {} -> {}", shard.name(), path.display());
        // 2. Each shard validates.
        let out = validate(&bin, &path)?;
        ensure!(
            out.0 == Some(0),
            "a built shard did not validate:\n{}",
            out.1
        );
        print!("  {}", out.1);
    }

    // 3. A broken file: every problem is reported with its line, and the exit code is 1.
    let bad = dir.join("broken.jsonl");
    std::fs::write(
        &bad,
        concat!(
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}"#,
            "\n",
            r#"{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}"#,
            "\n",
            "not json\n",
            r#"{"custom_id":"c","method":"POST","url":"/v1/embeddings","body":{"model":"gpt-4o","messages":[],"stream":true}}"#,
            "\n",
        ),
    )?;
    let (code, text) = validate(&bin, &bad)?;
    print!("{text}");
    ensure!(code == Some(1), "a broken file should exit 1, got {code:?}");
    for expected in [
        "line 2: duplicate_custom_id",
        "line 2: invalid_method",
        "line 3: invalid_json_line",
    ] {
        if !text.contains(expected) {
            bail!("`batch validate` did not report `{expected}`");
        }
    }
    println!("demo: ok");
    Ok(())
}

/// Runs `batchbeam batch validate` and returns its exit code and combined output.
fn validate(bin: &Path, file: &Path) -> anyhow::Result<(Option<i32>, String)> {
    let out = Command::new(bin)
        .args(["batch", "validate"])
        .arg(file)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code(), text))
}
