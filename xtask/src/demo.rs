//! `cargo xtask demo`: runs what the batchbeam binary can do so far on files it generates, and
//! fails if any step does not behave as documented.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, ImageGenerationRequest, Message,
};

use crate::sim_process::Sim;
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
    let mut shard_files = Vec::new();
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
        shard_files.push(path);
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

    // 4. Submit every shard to a local openai-sim, wait, and fetch the results.
    round_trip(root, &bin, &dir, &shard_files)?;
    println!("demo: ok");
    Ok(())
}

/// `batch submit --wait`, `batch list` and `batch results` against `batchbeam sim`.
fn round_trip(
    root: &Path,
    bin: &Path,
    dir: &Path,
    shards: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let log = dir.join("sim.log");
    let sim = Sim::start(bin, &log, &["--time-scale", "1000"])?;
    println!("openai-sim at {}", sim.base_url);
    let db = dir.join("batchbeam.db");
    for stale in ["batchbeam.db", "batchbeam.db-wal", "batchbeam.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let batchbeam = |args: &[&str]| -> anyhow::Result<String> {
        let mut cmd = Command::new(bin);
        cmd.current_dir(root)
            .arg("batch")
            .args(args)
            .arg("--db")
            .arg(&db)
            .env("OPENAI_BASE_URL", &sim.base_url)
            .env("OPENAI_API_KEY", "sk-demo-key")
            // The simulator runs 1000x faster than real time: poll often.
            .env("BATCH_POLL_INTERVAL_MS", "100")
            .env("BATCH_POLL_MAX_INTERVAL_MS", "500");
        let out = cmd.output().context("running batchbeam")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "`batchbeam batch {}` failed: {}{}",
            args.join(" "),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    };
    for shard in shards {
        let path = shard.to_str().context("non-UTF-8 path")?;
        print!("{}", batchbeam(&["submit", path, "--wait"])?);
    }
    print!("{}", batchbeam(&["list"])?);
    let records: serde_json::Value = serde_json::from_str(&batchbeam(&["list", "--json"])?)
        .context("`batch list --json` is not JSON")?;
    let records = records
        .as_array()
        .context("`batch list --json` is not a list")?;
    ensure!(
        records.len() == shards.len(),
        "expected one record per shard: {records:?}"
    );
    for record in records {
        let id = record["id"].as_str().context("a record without an id")?;
        let out = dir.join(format!("{id}-results.jsonl"));
        batchbeam(&[
            "results",
            id,
            "--out",
            out.to_str().context("non-UTF-8 path")?,
        ])?;
        let lines = std::fs::read_to_string(&out)?.lines().count();
        let expected = record["requests"].as_u64().unwrap_or_default() as usize;
        ensure!(
            lines == expected,
            "{id}: {lines} result lines for {expected} requests"
        );
        println!("results of {id}: {lines} lines -> {}", out.display());
    }
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
