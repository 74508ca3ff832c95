//! `cargo xtask demo`: runs what the batchbeam binary can do so far on files it generates, and
//! fails if any step does not behave as documented.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::sim_process::Sim;
use crate::util::{build_workspace, target_dir};

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    build_workspace(root)?;
    let target = target_dir(root)?;
    let (bin, worker) = (
        target.join("debug/batchbeam"),
        target.join("debug/xtask-worker"),
    );
    let dir = target.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // 1. Build a judge stage and a render stage with the builder; gpt-5-mini gets normalised.
    let out = Command::new(&worker)
        .arg("demo-shards")
        .arg(&dir)
        .output()
        .context("running xtask-worker demo-shards")?;
    ensure!(
        out.status.success(),
        "xtask-worker demo-shards failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut shards = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("shard ").and_then(|l| l.split_once(' ')) {
            Some((name, path)) => shards.push((name.to_owned(), PathBuf::from(path))),
            None => println!("{line}"),
        }
    }
    println!("built {} shard(s):", shards.len());
    let mut shard_files = Vec::new();
    for (name, path) in shards {
        println!("  {name} -> {}", path.display());
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

    // 5. A beam-search session in batch mode, killed while a batch is out, resumed by a new
    //    process: it finishes with one batch per stage and nothing billed twice.
    session(root, &bin, &dir)?;
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

/// `batchbeam run --batch` against a standing `batchbeam sim`, SIGKILLed once its render
/// batch is submitted, then `batchbeam resume`; the simulator's counters show no extra batch.
fn session(root: &Path, bin: &Path, dir: &Path) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let sim = Sim::start(bin, &dir.join("sim-session.log"), &["--time-scale", "100"])?;
    println!("openai-sim at {} (a session this time)", sim.base_url);
    let db = dir.join("sessions.db");
    for stale in ["sessions.db", "sessions.db-wal", "sessions.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let command = |args: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.current_dir(root)
            .args(args)
            .arg("--db")
            .arg(&db)
            .arg("--sessions")
            .arg(dir.join("sessions"))
            .env("OPENAI_BASE_URL", &sim.base_url)
            .env("OPENAI_API_KEY", "sk-demo-key")
            .env("BATCH_API_ENABLED", "true")
            .env("BATCH_POLL_INTERVAL_MS", "100");
        cmd
    };
    let mut child = command(&["run", "a lighthouse in a storm", "--seed", "7"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting batchbeam run")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let mut id = None;
    let mut submitted = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        println!("  | {line}");
        if id.is_none() {
            id = line
                .strip_prefix("session ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
        }
        if line.contains("submitted to the Batch API") {
            submitted += 1;
            if submitted == 2 {
                break;
            }
        }
    }
    child.kill().context("killing batchbeam run")?;
    child.wait()?;
    let id = id.context("`batchbeam run` did not print its session id")?;
    ensure!(
        submitted == 2,
        "the session ended before its render batch was submitted"
    );
    println!("killed the session (SIGKILL) with its render batch out; resuming {id}");
    let out = command(&["resume", &id, "--json"])
        .output()
        .context("running batchbeam resume")?;
    ensure!(
        out.status.success(),
        "`batchbeam resume {id}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        println!("  | {line}");
    }
    let outcome: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`resume --json` is not JSON")?;
    let stages = outcome["stages"].as_array().map_or(0, Vec::len) as u64;
    let calls = outcome["calls"].as_u64().unwrap_or_default();
    let stats = crate::http::get_json(crate::http::host_of(&sim.base_url)?, "/sim/stats", None)?;
    let batches = stats["batches_created"].as_u64().unwrap_or_default();
    let billed = stats["batch_requests_billed"].as_u64().unwrap_or_default();
    println!(
        "session {id}: {stages} stages, {calls} calls; the simulator made {batches} batches and billed {billed} requests"
    );
    println!(
        "best prompt: {}",
        outcome["best"]["combined"].as_str().unwrap_or_default()
    );
    ensure!(
        stages == 9,
        "the fused plan has 9 stages, the session ran {stages}"
    );
    ensure!(
        batches == stages,
        "one batch per stage expected, the simulator made {batches}"
    );
    ensure!(
        billed == calls,
        "{billed} requests billed for {calls} calls"
    );
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
