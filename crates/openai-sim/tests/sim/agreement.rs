//! One validator: `batch validate` (batch-format's streaming validator, as the CLI runs it) and
//! the simulator's upload and batch validation reach the same verdict on the same file, for
//! generated files mixing valid lines with what tends to split parsers: CRLF endings, blank
//! lines, a UTF-8 byte-order mark, numbers longer than any float, nesting around serde_json's
//! depth limit, escapes and lone surrogates, truncated lines and repeated ids.
//!
//! The verdicts compared: `batch validate` finds the same problems with and without its token
//! estimate; a file the upload refuses must have a problem on its first line in
//! `batch validate`; a file the upload accepts must fail the batch's validation with exactly
//! the `(line, code)` pairs `batch validate` reports, or pass it when it reports none.

use std::collections::BTreeSet;

use batch_format::{Endpoint, ValidationOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::support::Ctx;

/// A request line's body text, for one kind of line.
fn line(kind: u8, i: usize, n: u32) -> Vec<u8> {
    let req = |id: &str, extra: &str, content: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{content}"}}]{extra}}}}}"#
        )
    };
    let id = format!("r{i}");
    let text = match kind {
        // A plain request.
        0 => req(&id, "", "a lighthouse in a storm"),
        // CRLF ending.
        1 => format!("{}\r", req(&id, "", "hi")),
        // Blank lines of several kinds.
        2 => ["", "   ", "\r", "\t"][n as usize % 4].to_owned(),
        // A byte-order mark before the line.
        3 => format!("\u{feff}{}", req(&id, "", "hi")),
        // An integer of n digits where a small one belongs.
        4 => req(
            &id,
            &format!(
                r#","max_completion_tokens":1{}"#,
                "0".repeat(n as usize % 400)
            ),
            "hi",
        ),
        // A float out of f64's range (1e400), or a tiny one that underflows.
        5 => req(&id, &format!(r#","temperature":1e{}"#, 300 + n % 200), "hi"),
        // Nesting around the depth limit (128), in an unknown top-level field.
        6 => {
            let d = 110 + (n as usize % 40);
            let v = format!("{}1{}", "[".repeat(d), "]".repeat(d));
            let r = req(&id, "", "hi");
            format!(r#"{{"x":{v},{}"#, &r[1..])
        }
        // Escapes: accented, a surrogate pair, a lone surrogate.
        7 => req(
            &id,
            "",
            [
                r"caf\u00e9",
                r"\ud83c\udf0a wave",
                r"lone \ud800 half",
                r"tab\tand\\slash",
            ][n as usize % 4],
        ),
        // A line cut short.
        8 => {
            let r = req(&id, "", "hi");
            r[..(n as usize % r.len()).max(1)].to_owned()
        }
        // An id used before.
        9 => req("r0", "", "again"),
        // Not an object.
        _ => ["[]", "null", "\"text\"", "42"][n as usize % 4].to_owned(),
    };
    text.into_bytes()
}

fn file() -> impl Strategy<Value = Vec<u8>> {
    // Mostly valid lines, so that files pass as often as they fail.
    let kind = prop_oneof![
        6 => Just(0u8),
        1 => 1u8..=10,
    ];
    prop::collection::vec((kind, any::<u32>()), 1..6).prop_map(|lines| {
        let mut bytes = Vec::new();
        for (i, (kind, n)) in lines.into_iter().enumerate() {
            bytes.extend(line(kind, i, n));
            bytes.push(b'\n');
        }
        bytes
    })
}

/// `(line, code)` of every problem `batch validate` finds, with the simulator's options and
/// with or without its token estimate (which reads lines with other parsers).
fn validate(bytes: &[u8], estimate_tokens: bool) -> BTreeSet<(u64, String)> {
    let opts = ValidationOptions {
        expected_endpoint: Some(Endpoint::ChatCompletions),
        max_line_bytes: 200 << 20,
        estimate_tokens,
        ..ValidationOptions::default()
    };
    let mut problems = BTreeSet::new();
    batch_format::validate_jsonl(bytes, &opts, |p| {
        problems.insert((p.line.unwrap_or(0), p.code.as_str().to_owned()));
    })
    .unwrap();
    problems
}

async fn check(ctx: &Ctx, bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(&bytes).into_owned();
    let ours = validate(&bytes, false);
    prop_assert_eq!(
        &ours,
        &validate(&bytes, true),
        "with and without token estimates:\n{}",
        shown
    );
    let up = ctx.upload_raw(Some("batch"), "input.jsonl", bytes).await;
    if up.status != 200 {
        prop_assert_eq!(up.status, 400, "{}", up.text);
        prop_assert!(
            !ours.is_empty(),
            "the upload refused a file batch validate passes ({}):\n{}",
            up.text,
            shown
        );
        return Ok(());
    }
    let file = up.json()["id"].as_str().unwrap().to_owned();
    let batch = ctx.create_batch(&file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ctx.advance(60.0).await;
    let b = ctx.batch(&batch).await;
    let theirs: BTreeSet<(u64, String)> = match b["errors"]["data"].as_array() {
        Some(errors) if b["status"] == "failed" => errors
            .iter()
            .map(|e| {
                (
                    e["line"].as_u64().unwrap_or(0),
                    e["code"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        _ => BTreeSet::new(),
    };
    prop_assert_eq!(&ours, &theirs, "batch {}:\n{}", b, shown);
    Ok(())
}

#[test]
fn batch_validate_and_the_simulator_agree_on_generated_files() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = rt.block_on(Ctx::new());
    let config = Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    };
    // A fixed seed: the same files on every run (a failure is reproducible, CI is not flaky).
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&file(), |bytes| rt.block_on(check(&ctx, bytes)));
    if let Err(e) = result {
        panic!("{e}");
    }
}
