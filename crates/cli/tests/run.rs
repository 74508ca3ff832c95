//! End-to-end tests of `batchbeam run`, `sessions` and `cost`: a batch-mode session on the
//! in-process simulator, its listing and cost report, and bad parameters refused with their name.

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
    assert!(
        err.contains("OPENAI_API_KEY is not set: running on an in-process openai-sim"),
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
    let out = batchbeam(dir.path(), &["cost", "report", "s_nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no session 's_nope'"),
        "{}",
        text(&out.stderr)
    );
}
