//! End-to-end tests of `batchbeam batch validate`: exit codes, the summary line and one line per
//! problem.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output};

fn validate(content: &[u8], extra: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content).unwrap();
    Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(["batch", "validate"])
        .arg(file.path())
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const GOOD: &str = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}}"#;

#[test]
fn a_valid_file_exits_zero_with_a_one_line_summary() {
    let content = format!("{GOOD}\n{}\n", GOOD.replace("\"a\"", "\"b\""));
    let out = validate(content.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("valid: 2 lines"), "{line}");
    assert!(line.contains("endpoint /v1/chat/completions"), "{line}");
    assert!(line.contains("model gpt-4o-mini"), "{line}");
    assert!(line.contains(&format!("{} bytes", content.len())), "{line}");
    // "hello there" and the message overhead make a small, non-zero estimate.
    let tokens: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" estimated tokens"))
        .expect("an estimated token count")
        .parse()
        .unwrap();
    assert!(tokens > 0 && tokens < 100, "{line}");
}

#[test]
fn every_problem_gets_its_own_line_with_its_number_and_code() {
    let content = format!(
        "{GOOD}\n{}\nnot json\n{}\n",
        GOOD.replace("POST", "GET"),
        GOOD.replace("\"a\"", "\"c\"")
            .replace("/v1/chat/completions", "/v1/chat")
    );
    let out = validate(content.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("line 2: duplicate_custom_id: ")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("line 2: invalid_method: ")),
        "{text}"
    );
    assert!(
        lines.contains(&"line 3: invalid_json_line: This line is not parseable as valid JSON."),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("line 4: invalid_url: ")),
        "{text}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("line 1:")), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("invalid: 4 problems;"), "{stderr}");
}

#[test]
fn limits_and_the_expected_endpoint_come_from_the_command_line() {
    let content = format!("{GOOD}\n{}\n", GOOD.replace("\"a\"", "\"b\""));
    let out = validate(content.as_bytes(), &["--max-lines", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("file: too_many_lines: "),
        "{}",
        stdout(&out)
    );

    let out = validate(content.as_bytes(), &["--endpoint", "/v1/embeddings"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).matches(": invalid_url: ").count(),
        2,
        "{}",
        stdout(&out)
    );

    let out = validate(content.as_bytes(), &["--endpoint", "/v1/nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'/v1/nope' is not a Batch API endpoint")
    );
}

#[test]
fn an_empty_file_is_invalid_and_a_missing_file_is_an_error() {
    let out = validate(b"", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("file: empty_file: "),
        "{}",
        stdout(&out)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(["batch", "validate", "/definitely/not/here.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open /definitely/not/here.jsonl")
    );
}

#[test]
fn json_output_carries_the_summary_and_every_problem_with_the_same_exit_codes() {
    let content = format!("{GOOD}\n{}\n", GOOD.replace("\"a\"", "\"b\""));
    let out = validate(content.as_bytes(), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["lines"], 2);
    assert_eq!(v["endpoint"], "/v1/chat/completions");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["bytes"], content.len());
    assert!(v["tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["problems"], serde_json::json!([]));

    let bad = format!("{GOOD}\nnot json\n");
    let out = validate(bad.as_bytes(), &["--json", "--no-tokens"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["tokens"], serde_json::Value::Null);
    assert_eq!(v["problem_count"], 1);
    assert_eq!(v["problems"][0]["line"], 2);
    assert_eq!(v["problems"][0]["code"], "invalid_json_line");
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );

    let out = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(["batch", "validate", "/definitely/not/here.jsonl", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_file_over_the_size_limit_is_said_first_and_once_and_its_lines_still_checked() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(format!("{GOOD}\n{GOOD}\n").as_bytes())
        .unwrap();
    // Sparse: 1 MB more than the limit given below, written in no time.
    file.as_file().set_len(3 << 20).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(["batch", "validate"])
        .arg(file.path())
        .args(["--max-bytes", &(2u64 << 20).to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("file: file_too_large: "), "{text}");
    assert!(first.contains("3145728 bytes"), "{text}");
    assert_eq!(text.matches("file_too_large").count(), 1, "{text}");
    // The duplicate custom id on line 2 is still found.
    assert!(text.contains("line 2: duplicate_custom_id"), "{text}");
}

#[test]
fn a_line_over_the_line_limit_is_reported_unless_the_limit_is_raised() {
    // A valid request whose text makes the line about 5 MiB, over the 4 MiB default.
    let long = GOOD.replace("hello there", &"storm ".repeat(5 << 18));
    let content = format!("{long}\n");
    let out = validate(content.as_bytes(), &["--no-tokens"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("line 1: line_too_large: "),
        "{}",
        stdout(&out)
    );
    let out = validate(
        content.as_bytes(),
        &["--no-tokens", "--max-line-bytes", &(8u64 << 20).to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
