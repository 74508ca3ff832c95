//! Errors as the user reads them: each cause once, naming what was wrong.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn batchbeam(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env("BATCHBEAM_CONFIG", dir.join("none.toml"))
        .output()
        .unwrap()
}

/// The error line: exit 2, `error:` and no cause twice.
#[track_caller]
fn error_of(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    assert_eq!(err.matches(needle).count(), 1, "a cause repeated: {err}");
    err
}

#[test]
fn each_cause_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    let is_dir = "Is a directory";

    let out = batchbeam(dir.path(), &["batch", "validate", "adir"]);
    error_of(&out, is_dir);

    let out = batchbeam(dir.path(), &["cost", "prices", "--pricing", "adir"]);
    let err = error_of(&out, is_dir);
    assert!(err.contains("pricing file adir"), "{err}");

    let out = batchbeam(dir.path(), &["sim", "--faults", "adir"]);
    let err = error_of(&out, is_dir);
    assert!(err.contains("adir"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = batchbeam(dir.path(), &["sim", "--addr", &addr]);
    let err = error_of(&out, "Address already in use");
    assert!(err.contains(&addr), "{err}");
}
