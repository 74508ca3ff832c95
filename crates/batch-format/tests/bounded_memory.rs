//! `batch validate` runs in bounded memory: a file with a 100 MB line is validated as the CLI
//! does it, that line reported and read past, and the process's peak resident memory stays
//! under 64 MiB. A test binary of its own, so that no other test's memory counts.

use std::io::{BufReader, Read};

use batch_format::{ProblemCode, ValidationOptions, validate_jsonl_parallel};

/// The peak resident set of this process, in bytes (`VmHWM`), where Linux says it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_100_mb_line_is_read_past_in_bounded_memory() {
    let request = |id: &str, content: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{content}"}}]}}}}"#
        )
    };
    let head = format!("{}\n", request("a", "hi"));
    let (open, close) = request("big", "\u{0}")
        .split_once('\u{0}')
        .map(|(a, b)| (a.to_owned(), format!("{b}\n")))
        .unwrap();
    let tail = format!("{}\n", request("c", "bye"));
    // Made as it is read: the test holds none of it.
    let file = std::io::Cursor::new(head)
        .chain(std::io::Cursor::new(open))
        .chain(std::io::repeat(b'A').take(100 << 20))
        .chain(std::io::Cursor::new(close))
        .chain(std::io::Cursor::new(tail));
    // As `batch validate` reads (token estimates on, a 1 MiB buffer), on two threads: more
    // threads hold a block of lines each. Loading the BPE tables alone takes about 53 MiB.
    let opts = ValidationOptions {
        estimate_tokens: true,
        ..ValidationOptions::default()
    };
    let mut problems = Vec::new();
    let reader = BufReader::with_capacity(1 << 20, file);
    let summary = validate_jsonl_parallel(reader, &opts, 2, |p| problems.push(p)).unwrap();
    assert_eq!(summary.lines, 3);
    assert_eq!(summary.problems, 1, "{problems:?}");
    assert_eq!(
        (problems[0].line, problems[0].code),
        (Some(2), ProblemCode::LineTooLarge)
    );
    if let Some(peak) = peak_rss() {
        assert!(peak <= 64 << 20, "peak resident memory {} MiB", peak >> 20);
    }
}
