//! `cargo xtask ci`: format, lints, tests, snapshots and `cargo deny`, in that order, with a
//! one-line summary per step and its time; the first failure stops the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::chaos::{Backend, Size};
use crate::postgres::{Postgres, TEST_URL_VAR};
use crate::tools::CARGO_NEXTEST;
use crate::util::{build_workspace, cargo, exec};

/// A step: its name, what it does (printed when it starts), and the work.
type Step = (
    &'static str,
    &'static str,
    Box<dyn Fn(&Path) -> anyhow::Result<()>>,
);

pub(crate) fn run_ci(root: &Path, steps: Vec<Step>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut summary = Vec::new();
    let count = steps.len();
    for (n, (name, what, step)) in steps.into_iter().enumerate() {
        eprintln!("==> [{}/{count}] {name}: {what}", n + 1);
        let t = Instant::now();
        let result = step(root);
        let secs = t.elapsed().as_secs_f64();
        let line = match result {
            Ok(()) => format!("ok    {name:<12} {secs:>7.1}s"),
            Err(e) => {
                summary.push(format!("FAIL  {name:<12} {secs:>7.1}s  {e:#}"));
                print_summary(&summary);
                bail!("step `{name}` failed: {e:#}");
            }
        };
        // Print each step's line as soon as it is known, and again in the closing table.
        eprintln!("{line}");
        summary.push(line);
    }
    print_summary(&summary);
    eprintln!(
        "xtask ci: all steps passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_summary(lines: &[String]) {
    eprintln!("\n== xtask ci summary ==");
    for line in lines {
        eprintln!("{line}");
    }
}

/// The whole CI sequence.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let steps: Vec<Step> = vec![
        ("fmt", "cargo fmt --check", Box::new(fmt)),
        (
            "clippy",
            "clippy on every target, warnings denied (a cold run compiles the workspace first)",
            Box::new(clippy),
        ),
        (
            "tests",
            "build every target once, then every test with cargo-nextest, a short chaos run, then the doctests",
            Box::new(tests),
        ),
        (
            "conformance",
            "the official openai Python SDK and OpenAI's spec against batchbeam sim",
            Box::new(crate::conformance::run),
        ),
        (
            "browser",
            "the dashboard in Debian's chromium: a live search from the form, and a report.html",
            Box::new(crate::browser::run),
        ),
        (
            "snapshots",
            "no pending insta snapshots",
            Box::new(snapshots),
        ),
        (
            "deny",
            "cargo deny: licences, bans, sources, advisories",
            Box::new(crate::deny::run),
        ),
    ];
    run_ci(root, steps)
}

fn fmt(root: &Path) -> anyhow::Result<()> {
    exec(cargo().current_dir(root).args(["fmt", "--all", "--check"]))
        .context("code is not formatted; run `cargo fmt --all`")
}

fn clippy(root: &Path) -> anyhow::Result<()> {
    exec(cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The seed of CI's chaos run: one seed, so that a red run can be run again as it was.
const CHAOS_SEED: u64 = 1;

/// Environment for test runs: snapshots must match, never be written.
fn test_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env("INSTA_UPDATE", "no").env("CI", "true")
}

fn tests(root: &Path) -> anyhow::Result<()> {
    CARGO_NEXTEST.ensure()?;
    // One build of every target, shown as it goes; nextest, the conformance suite and the demo
    // then find it built.
    build_workspace(root)?;
    // The store suites run on PostgreSQL as well as SQLite: a throwaway server for this step,
    // stopped when it ends, passed or failed.
    let pg = Postgres::start().context("starting a PostgreSQL for the store tests")?;
    exec(
        test_env(cargo().current_dir(root).args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]))
        .env(TEST_URL_VAR, pg.url()),
    )?;
    // The short chaos run on the same server: three instances, SIGKILLs, faults, its table.
    eprintln!("==> tests: cargo xtask chaos --short --seed {CHAOS_SEED} on the same PostgreSQL");
    crate::util::catch_interrupts();
    crate::chaos::run_on(root, Backend::Postgres(&pg), CHAOS_SEED, Size::Short, None)?;
    drop(pg);
    // nextest does not run doctests; the crates' opening examples must compile and pass.
    exec(test_env(cargo().current_dir(root).args([
        "test",
        "--workspace",
        "--locked",
        "--doc",
    ])))
}

/// Fails on snapshot files that insta left pending (`.snap.new`, `.pending-snap`).
fn snapshots(root: &Path) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        find_pending(&root.join(dir), &mut pending)?;
    }
    if !pending.is_empty() {
        let list: Vec<String> = pending.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{} pending snapshot(s); review them (cargo insta review) or delete them:\n  {}",
            list.len(),
            list.join("\n  ")
        );
    }
    Ok(())
}

fn find_pending(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            find_pending(&path, out)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && (name.ends_with(".snap.new") || name.ends_with(".pending-snap"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// `cargo xtask phase N`: one phase's integration suite.
pub(crate) fn phase(root: &Path, n: u8) -> anyhow::Result<()> {
    let test = format!("phase{n}");
    CARGO_NEXTEST.ensure()?;
    exec(test_env(cargo().current_dir(root).args([
        "nextest",
        "run",
        "-p",
        "batchbeam-tests",
        "--test",
        &test,
        "--no-tests=pass",
    ])))
}
