//! End-to-end tests of `batchbeam run`, `sessions` and `cost`: a batch-mode session on the
//! in-process simulator, its listing and cost report, and bad parameters refused with their name.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn batchbeam(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(args)
        .arg("--db")
        .arg(dir.join("batchbeam.db"))
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("BATCH_API_ENABLED")
        .env_remove("DATABASE_URL")
        .env("BATCHBEAM_CONFIG", dir.join("none.toml"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_batch_session_runs_offline_and_reports_its_cost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let out = batchbeam(
        dir.path(),
        &[
            "run",
            "a paper boat on a rain puddle",
            "-n",
            "4",
            "-m",
            "2",
            "-i",
            "2",
            "--ensemble",
            "1",
            "--judging",
            "scoring",
            "--batch",
            "--seed",
            "5",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // The first line names each operation's tier and the expected cost against all on
    // standard; then that nothing is billed on simulated models.
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("tiers: expand batch, refine batch, render batch, judge batch (--batch"),
        "{err}"
    );
    assert!(
        first.contains("on these tiers, ≈ $") && first.contains("all on standard"),
        "{first}"
    );
    assert!(
        err.lines().nth(1).unwrap().starts_with(
            "simulated models (OPENAI_API_KEY is not set): an in-process openai-sim answers and nothing is billed"
        ),
        "{err}"
    );
    assert!(err.contains("render on batch"), "{err}");
    assert!(err.contains("submitted to the Batch API"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    // The hint repeats what placed the session: its database and its tier.
    let hint = format!("resume with `batchbeam resume {id} --db ");
    assert!(err.contains(&hint) && err.contains(" --batch`"), "{err}");
    assert_eq!(v["stages"].as_array().unwrap().len(), 6);
    assert!(
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tier"] == "batch")
    );
    let folder = Path::new(v["folder"].as_str().unwrap());
    let folder = if folder.is_absolute() {
        folder.to_owned()
    } else {
        dir.path().join(folder)
    };
    assert!(folder.join("session.json").is_file());
    assert!(folder.join(v["best"]["image"].as_str().unwrap()).is_file());
    // Scoring: a rating is the score, on the `score` scale.
    assert_eq!(v["rating_scale"], "score");
    assert_eq!(v["best"]["rating"], v["best"]["verdict"]["total"]);
    let last = &v["best_by_iteration"][1];
    assert_eq!(last["id"], v["best"]["id"]);
    assert_eq!(last["rating"], v["best"]["rating"]);
    let total = &v["report"]["total"];
    assert!(
        total["cost"].as_f64().unwrap() * 2.0 <= total["standard_cost"].as_f64().unwrap() + 1e-9
    );

    let listed = batchbeam(dir.path(), &["sessions"]);
    let listed = text(&listed.stdout);
    assert!(
        listed.contains(&id) && listed.contains("completed") && listed.contains("6/6"),
        "{listed}"
    );
    let best = v["best"]["id"].as_str().unwrap();
    assert!(listed.contains(&format!("best {best} score ")), "{listed}");

    let report = batchbeam(dir.path(), &["cost", "report", &id]);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    let report = text(&report.stdout);
    for word in ["render", "judge", "batch", "saving", "50.0%"] {
        assert!(report.contains(word), "{word}: {report}");
    }
}

#[test]
fn bad_parameters_and_unknown_sessions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let out = batchbeam(dir.path(), &["run", "a fox", "-n", "10", "-m", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("parameter n: 10 is not a multiple of m = 3"),
        "{}",
        text(&out.stderr)
    );
    let out = batchbeam(dir.path(), &["run", "a fox", "--plan", "greedy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'greedy' is not one of classic, fused, judge_refines"));
    // Nothing has run here: the database is missing, and named.
    let out = batchbeam(dir.path(), &["cost", "report", "s_nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no database at "),
        "{}",
        text(&out.stderr)
    );
}

/// A tiny session: 2 candidates, 1 survivor, 1 iteration, 1 vote.
const TINY: [&str; 10] = [
    "-n",
    "2",
    "-m",
    "1",
    "-i",
    "1",
    "--ensemble",
    "1",
    "--seed",
    "3",
];

#[test]
fn the_first_line_names_the_default_tier_and_what_batch_would_cost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let mut args = vec!["run", "a lighthouse in a storm"];
    args.extend(TINY);
    let out = batchbeam(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with(
            "tiers: expand standard, render standard, judge standard (standard is the default: BATCH_API_ENABLED is not true); expected for the session ≈ $"
        ),
        "{first}"
    );
    // The estimate is the plan's calls at list prices: 2 high-quality images at $0.167 and a
    // few cheap chat calls; batch is half of it.
    let dollars: Vec<f64> = first
        .split("≈ $")
        .skip(1)
        .map(|s| {
            s.split(|c: char| c != '.' && !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(dollars.len(), 2, "{first}");
    assert!(dollars[0] >= 0.33 && dollars[0] < 0.36, "{first}");
    assert!((dollars[1] - dollars[0] / 2.0).abs() <= 0.01, "{first}");
    assert!(first.contains("with --batch"), "{first}");
    // The report says the figures are list prices, not a bill.
    let out = text(&out.stdout);
    assert!(
        out.contains("simulated models: nothing was billed; these are OpenAI's list prices"),
        "{out}"
    );
    assert!(!out.contains("no cost"), "{out}");
}

#[test]
fn scores_read_as_words() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let mut args = vec!["run", "a lighthouse in a storm"];
    args.extend(TINY);
    let out = text(&batchbeam(dir.path(), &args).stdout);
    // Comparative: 2 images, 1 pair; the winner's rating is above the average's 1500, and
    // the scale is explained.
    let best = out.lines().find(|l| l.starts_with("best: i0c")).unwrap();
    assert!(
        best.contains(", rating 1")
            && best.ends_with(", won 1 of 1 comparisons (score 10.0 of 10)"),
        "{out}"
    );
    let rating: f64 = best
        .split(", rating ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rating > 1500.0, "{out}");
    assert!(
        out.contains("1500 is the first iteration's average image"),
        "{out}"
    );
    assert!(!out.contains("wins (of 10)"), "{out}");
    args.extend(["--judging", "scoring"]);
    let out = text(&batchbeam(dir.path(), &args).stdout);
    let best = out.lines().find(|l| l.starts_with("best: ")).unwrap();
    assert!(
        best.contains(", score ") && best.ends_with(" of 10") && !best.contains("rating"),
        "{best}"
    );
}

#[test]
fn resuming_a_finished_session_shows_its_result() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let mut args = vec!["run", "a lighthouse in a storm", "--json"];
    args.extend(TINY);
    let out = batchbeam(dir.path(), &args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap();
    // Comparative: the outcome's ratings are on the Elo-like scale.
    assert_eq!(v["rating_scale"], "elo");
    assert!(v["best"]["rating"].as_f64().unwrap() > 1500.0, "{v}");
    assert_eq!(v["best_by_iteration"][0]["rating"], v["best"]["rating"]);
    let again = batchbeam(dir.path(), &["resume", id]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let err = text(&again.stderr);
    assert!(
        err.contains(&format!(
            "session {id} is already finished (3 of 3 stages): nothing to resume"
        )),
        "{err}"
    );
    assert!(!err.contains("resuming at stage"), "{err}");
    let out = text(&again.stdout);
    let best = v["best"]["id"].as_str().unwrap();
    assert!(out.contains(&format!("best: {best}, ")), "{out}");
    assert!(
        out.contains("session.json") && out.contains("total"),
        "{out}"
    );
    // --json: the same outcome as one object.
    let again = batchbeam(dir.path(), &["resume", id, "--json"]);
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["best"]["id"], v["best"]["id"]);
    assert_eq!(w["report"]["total"], v["report"]["total"]);
}

#[test]
fn commands_that_only_read_create_nothing_and_speak_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_batchbeam"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("BATCHBEAM_DB")
            .output()
            .unwrap()
    };
    for args in [
        &["sessions", "--db", "typo/typo.db"][..],
        &["cost", "report", "s_x", "--db", "typo/typo.db"],
        &["resume", "s_x", "--db", "typo/typo.db"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("no database at typo/typo.db"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("typo").exists());
    // The default database is not created either.
    assert_eq!(run(&["sessions"]).status.code(), Some(2));
    assert!(!dir.path().join("batchbeam.db").exists());

    let prices = run(&["cost", "prices", "--json"]);
    assert_eq!(prices.status.code(), Some(0), "{}", text(&prices.stderr));
    let list: serde_json::Value = serde_json::from_slice(&prices.stdout).unwrap();
    let mini = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "gpt-4o-mini" && p["tier"] == "batch")
        .unwrap();
    assert_eq!(mini["tokens_per_1m"]["input"], 0.075);

    let mut args = vec!["run", "a fox", "--json", "--db", "b.db"];
    args.extend(TINY);
    let out = run(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap();
    let listed = run(&["sessions", "--json", "--db", "b.db"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], id);
    let report = run(&["cost", "report", id, "--json", "--db", "b.db"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["total"], v["report"]["total"]);
    let out = run(&["cost", "report", "s_nope", "--db", "b.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no session 's_nope'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_finished_run_writes_report_html_beside_its_session() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let mut args = vec!["run", "a lighthouse </script> in a storm"];
    args.extend(TINY);
    let out = batchbeam(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report line in {stdout}"));
    let report = dir.path().join(path);
    let folder = report.parent().unwrap();
    assert!(folder.join("session.json").is_file() && folder.join("images").is_dir());
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: the tree embedded, images beside it, nothing from a server.
    assert!(html.contains(r#"<script id="bb-tree" type="application/json">"#));
    assert!(
        html.contains(r#""imageUrl":"images/i0c"#),
        "images relative to the folder"
    );
    assert!(!html.contains("assets/app.js") && !html.contains("/api/job/"));
    // The idea's `</script>` cannot end the embedded tree.
    assert_eq!(html.matches("</script>").count(), 2);
    // With --json, stdout stays one JSON object and the path goes to stderr.
    args.push("--json");
    let out = batchbeam(dir.path(), &args);
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        text(&out.stderr).contains("report: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn estimate_prints_the_forecast_and_a_budget_stops_the_session_under_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let out = batchbeam(
        dir.path(),
        &[
            "run",
            "a lighthouse in a storm",
            "--render-schedule",
            "low,low,medium",
            "--polish",
            "3",
            "--batch",
            "--estimate",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("forecast for 11 stages (nothing sent):"),
        "{shown}"
    );
    let render = shown.lines().find(|l| l.starts_with("render")).unwrap();
    // 18 low, 9 + 3 medium, 3 polished at full quality, all on batch.
    assert!(
        render.contains("batch") && render.contains(" 33 "),
        "{render}"
    );
    assert!(shown.contains("wall time on batch: 11 stages"), "{shown}");
    assert!(
        !dir.path().join("batchbeam-sessions").exists(),
        "nothing ran"
    );

    let out = batchbeam(
        dir.path(),
        &[
            "run",
            "a lighthouse in a storm",
            "-n",
            "4",
            "-m",
            "2",
            "--render-schedule",
            "nope",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("render_schedule"),
        "{}",
        text(&out.stderr)
    );

    let out = batchbeam(
        dir.path(),
        &[
            "run",
            "a lighthouse in a storm",
            "--seed",
            "3",
            "--budget",
            "2.5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("stopped early: budget $2.5000"), "{shown}");
    let line = shown
        .lines()
        .find(|l| l.starts_with("cost: forecast"))
        .unwrap();
    let actual: f64 = line
        .split("actual $")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(actual <= 2.5, "{line}");
}
