//! Tests of the output reader: outcomes, problems, usage, matching, and the parallel reader.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use std::io::BufRead;

use super::parallel::read_output_blocks;
use super::usage::read_usage;
use super::*;

/// A success line in the real format (CUR cassette, with `choices` and `usage` filled in).
const SUCCESS: &str = r#"{"id": "batch_req_6780bb36c8508190a5254f418acd5ed0", "custom_id": "0", "response": {"status_code": 200, "request_id": "ed3ad7feb8ad212a440ab12a1175798e", "body": {"id": "chatcmpl-Ao2bZUcX4NWHN7CDnc08E2pPhqQ0Q", "object": "chat.completion", "created": 1736489777, "model": "gpt-3.5-turbo-0125", "choices": [{"index": 0, "message": {"role": "assistant", "content": "2 + 2 equals 4.", "refusal": null}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}, "service_tier": "default", "system_fingerprint": null}}, "error": null}"#;
/// A real 429 error-file line, verbatim from observed-behaviour.md §3.
const QUOTA_429: &str = r#"{"id": "batch_req_67fe330d8b5481908f01ae063d9b8e2e", "custom_id": "sou_2003_115", "response": {"status_code": 429, "request_id": "97d81ac7354608175784538d9d367611", "body": {"error": {"message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}}, "error": null}"#;
/// The guide's batch_expired line, verbatim.
const EXPIRED: &str = r#"{"id": "batch_req_123", "custom_id": "request-3", "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}"#;

fn render_usage(u: &Usage) -> String {
    let mut s = format!(
        "usage={}/{}/{}",
        u.input_tokens, u.output_tokens, u.total_tokens
    );
    if let Some(c) = u.cached_tokens {
        s.push_str(&format!(" cached={c}"));
    }
    if let Some(r) = u.reasoning_tokens {
        s.push_str(&format!(" reasoning={r}"));
    }
    s
}

fn render(item: &std::result::Result<OutcomeLine, LineProblem>) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    match item {
        Ok(l) => {
            let head = format!("{} {} {}", l.line, opt(&l.id), l.custom_id);
            match &l.outcome {
                Outcome::Succeeded {
                    status,
                    request_id,
                    usage,
                    ..
                } => format!(
                    "{head} ok {status} req={} {}",
                    opt(request_id),
                    usage.as_ref().map_or("usage=-".into(), render_usage)
                ),
                Outcome::HttpError { status, error, .. } => format!(
                    "{head} http_error {status} type={} code={} param={}: {}",
                    opt(&error.kind),
                    opt(&error.code),
                    opt(&error.param),
                    opt(&error.message)
                ),
                Outcome::Failed { code, message } => {
                    format!("{head} failed {code}: {message}")
                }
            }
        }
        Err(p) => format!(
            "{} problem {} id={}: {}",
            p.line,
            p.kind.as_str(),
            opt(&p.custom_id),
            p.message
        ),
    }
}

fn check(input: &str, expect: &str) {
    let got: Vec<String> = OutputReader::new(input.as_bytes())
        .map(|item| render(&item.unwrap()))
        .collect();
    let expect: Vec<&str> = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(got, expect, "input:\n{input}");
}

#[test]
fn real_format_lines() {
    check(
        &format!("{SUCCESS}\n{QUOTA_429}\n{EXPIRED}\n"),
        "
            1 batch_req_6780bb36c8508190a5254f418acd5ed0 0 ok 200 req=ed3ad7feb8ad212a440ab12a1175798e usage=24/9/33 cached=0 reasoning=0
            2 batch_req_67fe330d8b5481908f01ae063d9b8e2e sou_2003_115 http_error 429 type=insufficient_quota code=insufficient_quota param=-: You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.
            3 batch_req_123 request-3 failed batch_expired: This request could not be executed before the completion window expired.
            ",
    );
}

#[test]
fn success_keeps_the_raw_body() {
    let (lines, problems) = read_output(SUCCESS.as_bytes()).unwrap();
    assert!(problems.is_empty());
    let Outcome::Succeeded { body, .. } = &lines[0].outcome else {
        panic!("{:?}", lines[0]);
    };
    let body: serde_json::Value = serde_json::from_str(body.get()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "2 + 2 equals 4.");
    assert!(lines[0].outcome.is_success());
    assert_eq!(lines[0].outcome.usage().unwrap().total_tokens, 33);
}

#[test]
fn usage_under_either_naming() {
    let line = |id: &str, body: &str| {
        format!(
            r#"{{"id":"r","custom_id":"{id}","response":{{"status_code":200,"request_id":"x","body":{body}}},"error":null}}"#
        )
    };
    check(
        &[
            line(
                "responses",
                r#"{"object":"response","usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":2},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":18}}"#,
            ),
            line(
                "embeddings",
                r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#,
            ),
            line("no-total", r#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#),
            line("no-usage", r#"{"object":"chat.completion"}"#),
            line("odd-usage", r#"{"usage":"lots"}"#),
            line("not-an-object", r#""fine""#),
        ]
        .join("\n"),
        "
            1 r responses ok 200 req=x usage=9/9/18 cached=2 reasoning=4
            2 r embeddings ok 200 req=x usage=5/0/5
            3 r no-total ok 200 req=x usage=3/4/7
            4 r no-usage ok 200 req=x usage=-
            5 r odd-usage ok 200 req=x usage=-
            6 r not-an-object ok 200 req=x usage=-
            ",
    );
    let mut total = Usage::default();
    total += Usage {
        input_tokens: 1,
        output_tokens: 2,
        total_tokens: 3,
        cached_tokens: Some(1),
        reasoning_tokens: None,
    };
    total += Usage {
        input_tokens: 10,
        output_tokens: 20,
        total_tokens: 30,
        cached_tokens: Some(5),
        reasoning_tokens: Some(7),
    };
    assert_eq!(
        total,
        Usage {
            input_tokens: 11,
            output_tokens: 22,
            total_tokens: 33,
            cached_tokens: Some(6),
            reasoning_tokens: Some(7),
        }
    );
}

#[test]
fn http_errors_are_read_liberally() {
    let line = |id: &str, status: &str, body: &str| {
        format!(r#"{{"custom_id":"{id}","response":{{"status_code":{status},"body":{body}}}}}"#)
    };
    check(
        &[
            line(
                "too-big",
                "400",
                r#"{"error":{"message":"max_tokens is too large: 1000000.","type":"invalid_request_error","param":"max_tokens","code":"invalid_value"}}"#,
            ),
            line("numeric-code", "500", r#"{"error":{"message":"oops","code":500}}"#),
            line("plain-text", "502", r#""Bad gateway""#),
            line("no-body", "503", "null"),
            line("redirect", "302", "{}"),
        ]
        .join("\n"),
        "
            1 - too-big http_error 400 type=invalid_request_error code=invalid_value param=max_tokens: max_tokens is too large: 1000000.
            2 - numeric-code http_error 500 type=- code=500 param=-: oops
            3 - plain-text http_error 502 type=- code=- param=-: -
            4 - no-body http_error 503 type=- code=- param=-: -
            5 - redirect http_error 302 type=- code=- param=-: -
            ",
    );
    // The raw body survives even when nothing in it could be read.
    let (lines, _) = read_output(line("x", "502", r#""Bad gateway""#).as_bytes()).unwrap();
    let Outcome::HttpError { body, .. } = &lines[0].outcome else {
        panic!("{:?}", lines[0]);
    };
    assert_eq!(body.get(), r#""Bad gateway""#);
}

#[test]
fn unknown_fields_are_ignored() {
    check(
        r#"{"id":"r1","custom_id":"a","extra":{"deep":[1,2]},"response":{"status_code":200,"request_id":"q","headers":{},"body":{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"new_field":true}}},"error":null,"trace":"t"}"#,
        "1 r1 a ok 200 req=q usage=1/1/2",
    );
}

#[test]
fn bad_lines_are_problems_and_reading_goes_on() {
    let input = [
        "not json",
        r#"{"id":"r","response":{"status_code":200,"body":{}},"error":null}"#,
        r#"{"custom_id":7,"response":null,"error":{"code":"x","message":"y"}}"#,
        r#"{"custom_id":"n","response":null,"error":null}"#,
        r#"{"custom_id":"s","response":{"body":{}}}"#,
        r#"{"custom_id":"s2","response":{"status_code":"200"}}"#,
        r#"{"custom_id":"s3","response":[1]}"#,
        r#"{"custom_id":"e","response":null,"error":"boom"}"#,
        "[1,2]",
        r#"{"custom_id":"t""#,
        // Repeated keys: the last wins, as in Python's json module.
        r#"{"custom_id":"a","custom_id":"b","response":null}"#,
        EXPIRED,
    ]
    .join("\n");
    check(
        &input,
        "
            1 problem invalid_json id=-: The line is not valid JSON: expected a value at column 1.
            2 problem missing_custom_id id=-: The line has no string 'custom_id'.
            3 problem missing_custom_id id=-: The line has no string 'custom_id'.
            4 problem no_outcome id=n: The line has neither a 'response' nor an 'error'.
            5 problem invalid_response id=s: 'response.status_code' is missing or not an HTTP status.
            6 problem invalid_response id=s2: 'response.status_code' is missing or not an HTTP status.
            7 problem invalid_response id=s3: 'response' is not an object.
            8 problem invalid_error id=e: 'error' is not an object.
            9 problem invalid_json id=-: The line is not a JSON object.
            10 problem invalid_json id=-: The line is not valid JSON: EOF while parsing an object at column 17.
            11 problem no_outcome id=b: The line has neither a 'response' nor an 'error'.
            12 batch_req_123 request-3 failed batch_expired: This request could not be executed before the completion window expired.
            ",
    );
    let (_, problems) = read_output(input.as_bytes()).unwrap();
    assert_eq!(problems[0].raw, "not json");
    assert_eq!(
        problems[3].to_string(),
        "line 4: The line has neither a 'response' nor an 'error'. (custom_id 'n')"
    );
}

#[test]
fn crlf_blank_lines_and_no_final_newline() {
    let input = format!("\r\n{SUCCESS}\r\n\n  \n{EXPIRED}");
    let got: Vec<u64> = OutputReader::new(input.as_bytes())
        .map(|item| item.unwrap().unwrap().line)
        .collect();
    assert_eq!(got, [2, 5]);
    let mut bad = b"{\"custom_id\":\"\xff\"}\n".to_vec();
    bad.extend_from_slice(EXPIRED.as_bytes());
    let (lines, problems) = read_output(&bad[..]).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(problems[0].kind, LineProblemKind::InvalidJson);
    assert_eq!(problems[0].raw, "{\"custom_id\":\"\u{fffd}\"}");
}

#[test]
fn io_errors_end_the_iteration() {
    /// Yields one good line, then fails.
    struct Flaky(usize);
    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let line = format!("{EXPIRED}\n");
            if self.0 >= line.len() {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(line.len() - self.0);
            buf[..n].copy_from_slice(&line.as_bytes()[self.0..self.0 + n]);
            self.0 += n;
            Ok(n)
        }
    }
    let mut reader = OutputReader::new(BufReader::new(Flaky(0)));
    assert!(reader.next().unwrap().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err();
    assert!(matches!(err, crate::Error::Io(_)), "{err}");
    assert!(reader.next().is_none());
    assert_eq!(reader.lines_read(), 1);
    assert!(read_output(BufReader::new(Flaky(0))).is_err());
}

#[test]
fn manifest_matching() {
    let ids = ["a", "b", "c", "d", "b"].map(String::from);
    let mut m = ResultMatcher::new(ids);
    assert_eq!(m.expected(), 4);
    let firsts: Vec<bool> = ["c", "a", "x", "a", "a", "x", "y"]
        .into_iter()
        .map(|id| m.record_id(id))
        .collect();
    assert_eq!(firsts, [true, true, false, false, false, false, false]);
    let (lines, _) = read_output(EXPIRED.as_bytes()).unwrap();
    assert!(!m.record(&lines[0]), "request-3 was never sent");
    let result = m.finish();
    assert_eq!(
        result,
        ManifestMatch {
            missing: vec!["b".into(), "d".into()],
            duplicates: vec!["a".into(), "x".into()],
            unknown: vec!["x".into(), "y".into(), "request-3".into()],
        }
    );
    assert!(!result.is_complete());

    let mut m = ResultMatcher::new(["0".to_owned(), "sou_2003_115".to_owned()]);
    let (lines, problems) = read_output(format!("{SUCCESS}\n{QUOTA_429}\n").as_bytes()).unwrap();
    assert!(problems.is_empty());
    assert!(lines.iter().all(|l| m.record(l)));
    assert!(m.finish().is_complete());
}

#[test]
fn usage_read_in_place_is_what_serde_reads() {
    let usages = [
        r#"{"prompt_tokens":1,"completion_tokens":2}"#,
        r#"{ "prompt_tokens" : 5 , "total_tokens" : 7 }"#,
        "{}",
        r#"{"input_tokens":18446744073709551615,"output_tokens":0}"#,
        r#"{"input_tokens":18446744073709551616}"#,
        r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
        r#"{"x":1,"x":[2],"prompt_tokens":3}"#,
        r#"{"prompt_tokens":1.0}"#,
        r#"{"prompt_tokens":1e2}"#,
        r#"{"prompt_tokens":-1}"#,
        r#"{"prompt_tokens":-0}"#,
        r#"{"prompt_tokens":0,"completion_tokens":10}"#,
        r#"{"prompt_tokens":null,"total_tokens":null}"#,
        r#"{"prompt_tokens":"5"}"#,
        r#"{"prompt_tokens":true}"#,
        r#"{"prompt_tokens":{}}"#,
        r#"{"prompt_tokens_details":null,"prompt_tokens":4}"#,
        r#"{"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0}}"#,
        r#"{"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":3}}"#,
        r#"{"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":{}}"#,
        r#"{"prompt_tokens_details":[1,2]}"#,
        r#"{"prompt_tokens_details":[1]}"#,
        r#"{"prompt_tokens_details":[]}"#,
        r#"{"prompt_tokens_details":[1,2,3]}"#,
        r#"{"prompt_tokens_details":"x"}"#,
        r#"{"completion_tokens_details":{"reasoning_tokens":null,"x":{"y":[1]}}}"#,
        r#"{"output_tokens_details":{"reasoning_tokens":9},"completion_tokens_details":{"reasoning_tokens":8}}"#,
        r#"{"prompt\u005ftokens":4,"cached_tokens":1}"#,
        r#"{"input_tokens_details":{"cached\u005ftokens":6}}"#,
        "[1,2]",
        "\"usage\"",
        "null",
        "12",
    ];
    for usage in usages {
        let line = format!(
            r#"{{"custom_id":"a","response":{{"status_code":200,"body":{{"usage":{usage}}}}}}}"#
        );
        let (lines, problems) = read_output(line.as_bytes()).unwrap();
        assert!(problems.is_empty(), "{usage}: {problems:?}");
        assert_eq!(
            lines[0].outcome.usage(),
            read_usage(usage).as_ref(),
            "{usage}"
        );
    }
    // Broken JSON inside `usage` is reported where it is, as before.
    check(
        r#"{"custom_id":"a","response":{"status_code":200,"body":{"usage":{"prompt_tokens":1,}}}}"#,
        "1 problem invalid_json id=-: The line is not valid JSON: expected a key at column 83.",
    );
}

#[test]
fn borrowed_lines_are_the_owned_ones() {
    let mut rng = Rng(7);
    let file = sample_file(&mut rng, 300);
    let mut owned = Vec::new();
    let lines = read_output_parallel(&file[..], 2, |item| owned.push(format!("{item:?}"))).unwrap();
    for threads in [0, 1, 3] {
        let mut borrowed = Vec::new();
        let read = read_output_parallel_ref(&file[..], threads, |item| {
            if let Ok(line) = &item {
                assert_eq!(
                    line.outcome.is_success(),
                    line.to_line().outcome.is_success()
                );
            }
            borrowed.push(format!("{:?}", item.map(|line| line.to_line())));
        })
        .unwrap();
        assert_eq!(read, lines);
        assert!(borrowed == owned, "{threads} threads");
    }
}

#[test]
fn matching_many_ids_agrees_with_a_plain_model() {
    let mut rng = Rng(99);
    for round in 0..20 {
        let sent: Vec<String> = (0..rng.below(3000))
            .map(|_| format!("id-{}", rng.below(4000)))
            .collect();
        let mut m = ResultMatcher::new(sent.clone());
        // The model: first place of each id sent, and the lines seen per id.
        let mut place: HashMap<&str, usize> = HashMap::new();
        let mut order = Vec::new();
        for id in &sent {
            place.entry(id).or_insert_with(|| {
                order.push(id.clone());
                order.len() - 1
            });
        }
        assert_eq!(m.expected(), order.len());
        let mut seen: HashMap<String, u32> = HashMap::new();
        let (mut duplicates, mut unknown) = (Vec::new(), Vec::new());
        let results: Vec<String> = (0..rng.below(5000))
            .map(|_| match rng.below(3) {
                0 => format!("other-{}", rng.below(100 + round)),
                _ => format!("id-{}", rng.below(4000)),
            })
            .collect();
        for id in &results {
            let count = seen.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count == 2 {
                duplicates.push(id.clone());
            }
            if *count == 1 && !place.contains_key(id.as_str()) {
                unknown.push(id.clone());
            }
            let first = *count == 1 && place.contains_key(id.as_str());
            assert_eq!(m.record_id(id), first, "{id}");
        }
        let missing: Vec<String> = order
            .iter()
            .filter(|id| !seen.contains_key(id.as_str()))
            .cloned()
            .collect();
        assert_eq!(
            m.finish(),
            ManifestMatch {
                missing,
                duplicates,
                unknown
            }
        );
    }
    // No ids expected, and the empty id.
    let mut m = ResultMatcher::default();
    assert!(!m.record_id(""));
    assert!(!m.record_id(""));
    assert_eq!(m.finish().unknown, [""]);
    let mut m = ResultMatcher::new([String::new()]);
    assert!(m.record_id(""));
    assert!(m.finish().is_complete());
}

#[test]
fn body_members_are_found_at_the_top_level_only() {
    let line = |body: &str| {
        format!(r#"{{"custom_id":"a","response":{{"status_code":200,"body":{body}}}}}"#)
    };
    check(
        &[
            line(r#"{"choices":[{"usage":{"prompt_tokens":99}}],"usage":{"prompt_tokens":1}}"#),
            line(r#"{"meta":{"usage":{"prompt_tokens":99}}}"#),
            line(r#"{"text":"\"usage\": {\"prompt_tokens\": 99}"}"#),
            line(r#"{"us\u0061ge":{"prompt_tokens":5}}"#),
        ]
        .join("\n"),
        "
            1 - a ok 200 req=- usage=1/0/1
            2 - a ok 200 req=- usage=-
            3 - a ok 200 req=- usage=-
            4 - a ok 200 req=- usage=5/0/5
            ",
    );
}

#[test]
fn long_lines_straddling_buffer_refills() {
    let text = "x".repeat(10_000);
    let line = |id: usize| {
        format!(
            r#"{{"custom_id":"c{id}","response":{{"status_code":200,"body":{{"choices":[{{"message":{{"content":"{text}"}}}}],"usage":{{"prompt_tokens":{id},"completion_tokens":1,"total_tokens":{}}}}}}},"error":null}}"#,
            id + 1
        )
    };
    let input = (0..20).map(line).collect::<Vec<_>>().join("\r\n");
    for capacity in [1, 7, 4096, 1 << 20] {
        let reader = BufReader::with_capacity(capacity, input.as_bytes());
        let (lines, problems) = read_output(reader).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(lines.len(), 20);
        for (n, l) in lines.iter().enumerate() {
            assert_eq!(l.line, n as u64 + 1);
            assert_eq!(l.custom_id, format!("c{n}"));
            assert_eq!(l.outcome.usage().unwrap().input_tokens, n as u64);
        }
    }
}

/// A small deterministic generator (xorshift), so that failures can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Lines of every kind the tests above use, good and bad, short and long.
fn sample_lines() -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = [
        SUCCESS,
        QUOTA_429,
        EXPIRED,
        "not json",
        r#"{"id":"r","response":{"status_code":200,"body":{}},"error":null}"#,
        r#"{"custom_id":7,"response":null,"error":{"code":"x","message":"y"}}"#,
        r#"{"custom_id":"n","response":null,"error":null}"#,
        r#"{"custom_id":"s","response":{"body":{}}}"#,
        r#"{"custom_id":"s3","response":[1]}"#,
        r#"{"custom_id":"e","response":null,"error":"boom"}"#,
        "[1,2]",
        r#"{"custom_id":"t""#,
        r#"{"custom_id":"a","custom_id":"b","response":null}"#,
        r#"{"custom_id":"u","response":{"status_code":200,"body":{"us\u0061ge":{"prompt_tokens":5}}}}"#,
        // Escaped strings, and no body at all (kept as `null`).
        r#"{"id":"r\/1","custom_id":"esc\"aped \u00e9","response":{"status_code":200,"request_id":"q\n"}}"#,
        r#"{"custom_id":"caf\u00e9","response":{"status_code":503}}"#,
        // Quotes and backslashes, escaped, at every place a block or read might cut them.
        r#"{"custom_id":"q\"uo\\te\\","response":{"status_code":200,"body":{"text":"a\\\"b\\\\\"","usage":{"prompt_tokens":1}}}}"#,
        // Multi-byte UTF-8, raw and escaped (a pair, and a lone surrogate kept as written).
        r#"{"custom_id":"日本語-🦊","response":{"status_code":200,"body":{"content":"café ☕ — 🦊 ünïcödé"}}}"#,
        r#"{"custom_id":"\ud83e\udd8a","response":{"status_code":201}}"#,
        r#"{"custom_id":"\ud800","response":null,"error":{"code":"x\u00e9","message":"\"m\""}}"#,
        // Whitespace around and inside, a carriage return inside, trailing characters.
        "  {\"custom_id\" : \"ws\" ,\r\"response\":null , \"error\":{\"code\":\"c\"} }  \t",
        r#"{"custom_id":"a","response":null,"error":{}} x"#,
        r#"{"custom_id":"a"}{}"#,
        "{\"custom_id\":\"t\tab\",\"response\":null}",
        // Usage that only serde can settle: a repeated key, details as a list, a fraction.
        r#"{"custom_id":"u2","response":{"status_code":200,"body":{"usage":{"prompt_tokens":1,"prompt_tokens":2}}}}"#,
        r#"{"custom_id":"u3","response":{"status_code":200,"body":{"usage":{"prompt_tokens_details":[3,4],"prompt_tokens":1}}}}"#,
        r#"{"custom_id":"u4","response":{"status_code":200,"body":{"usage":{"total_tokens":1.0,"x":[{"y":null}]}}}}"#,
        r#"{"custom_id":"u5","response":{"status_code":200,"body":{"usage":{"prompt_tokens":12,"completion_tokens":018}}}}"#,
        "",
        "  \t",
        "\u{c}",
        "\r",
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    lines.push(b"{\"custom_id\":\"\xff\"}".to_vec());
    lines.push(
        b"{\"custom_id\":\"ok\",\"response\":null,\"error\":{\"message\":\"\xc3\"}}".to_vec(),
    );
    lines.push(format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes());
    lines.push(
        format!(
            r#"{{"custom_id":"deep","response":{{"status_code":200,"body":{}1{}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        )
        .into_bytes(),
    );
    lines.push(
        format!(
            r#"{{"custom_id":"long é","response":{{"status_code":200,"body":{{"content":"{}"}}}}}}"#,
            "é\\\"🦊".repeat(2_000)
        )
        .into_bytes(),
    );
    let text = "x".repeat(10_000);
    lines.push(
        format!(
            r#"{{"custom_id":"long","response":{{"status_code":200,"body":{{"choices":[{{"message":{{"content":"{text}"}}}}]}}}}}}"#
        )
        .into_bytes(),
    );
    lines
}

/// A file of `n` random sample lines with random line endings, ending with or without one.
fn sample_file(rng: &mut Rng, n: usize) -> Vec<u8> {
    let lines = sample_lines();
    let mut file = Vec::new();
    for i in 0..n {
        file.extend_from_slice(&lines[rng.below(lines.len())]);
        if i + 1 < n || rng.below(2) == 0 {
            file.extend_from_slice(if rng.below(3) == 0 { b"\r\n" } else { b"\n" });
        }
    }
    file
}

/// Everything an item says (`OutcomeLine` has no `PartialEq`; its `Debug` shows all).
type Items = Vec<String>;

/// What `OutputReader` yields: the items, then the lines read or the I/O error.
fn sequential(reader: impl BufRead) -> (Items, std::result::Result<u64, String>) {
    let mut reader = OutputReader::new(reader);
    let mut items = Vec::new();
    for item in &mut reader {
        match item {
            Ok(item) => items.push(format!("{item:?}")),
            Err(e) => return (items, Err(e.to_string())),
        }
    }
    (items, Ok(reader.lines_read()))
}

fn parallel(
    reader: impl BufRead + Send,
    threads: usize,
    block_bytes: usize,
) -> (Items, std::result::Result<u64, String>) {
    let mut items = Vec::new();
    let read = read_output_blocks(reader, threads, block_bytes, |item| {
        items.push(format!("{:?}", item.map(|line| line.to_line())));
    });
    (items, read.map_err(|e| e.to_string()))
}

#[test]
fn parallel_reading_matches_the_sequential_reader() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        b"\r\n\r\n".to_vec(),
        EXPIRED.as_bytes().to_vec(),
        format!("\r\n{SUCCESS}\r\n\n  \n{EXPIRED}").into_bytes(),
        format!("{SUCCESS}\n{QUOTA_429}\n{EXPIRED}\n").into_bytes(),
    ];
    for n in [1, 2, 10, 100, 400] {
        inputs.push(sample_file(&mut rng, n));
    }
    for input in &inputs {
        let expect = sequential(BufReader::with_capacity(64, &input[..]));
        assert!(expect.1.is_ok());
        for _ in 0..6 {
            let threads = 1 + rng.below(4);
            let block_bytes = [1, 64, 1000, 20_000, 1 << 20][rng.below(5)] + rng.below(100);
            let capacity = 1 + rng.below(5000);
            let got = parallel(
                BufReader::with_capacity(capacity, &input[..]),
                threads,
                block_bytes,
            );
            assert!(
                got == expect,
                "{threads} threads, blocks of {block_bytes}, buffer of {capacity}: {} items, {:?}, expected {} items, {:?}",
                got.0.len(),
                got.1,
                expect.0.len(),
                expect.1
            );
        }
        // The public entry point, on every core and on one.
        for threads in [0, 1, 2] {
            let mut items = Vec::new();
            let lines =
                read_output_parallel(&input[..], threads, |item| items.push(format!("{item:?}")))
                    .unwrap();
            assert_eq!((items, Ok(lines)), expect);
        }
    }
    // Line numbers run on across blocks.
    let (items, lines) = parallel(&inputs[inputs.len() - 1][..], 3, 500);
    assert_eq!(lines, Ok(400));
    assert!(items.len() > 300, "{}", items.len());
}

#[test]
fn parallel_reading_stops_at_an_io_error_like_the_sequential_reader() {
    /// Hands out `data` in chunks of random size, then fails.
    struct Flaky {
        data: Vec<u8>,
        at: usize,
        rng: Rng,
    }
    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.data.len() {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf
                .len()
                .min(self.data.len() - self.at)
                .min(1 + self.rng.below(3000));
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let mut rng = Rng(42);
    let file = sample_file(&mut rng, 300);
    for round in 0..12 {
        // Cut anywhere: mid-line, right after a newline, or at the very start.
        let cut = match round {
            0 => 0,
            1 => file.iter().position(|&b| b == b'\n').unwrap() + 1,
            _ => rng.below(file.len()),
        };
        let flaky = |seed| Flaky {
            data: file[..cut].to_vec(),
            at: 0,
            rng: Rng(seed),
        };
        let expect = sequential(BufReader::with_capacity(777, flaky(round + 1)));
        assert_eq!(expect.1, Err("I/O error: connection reset".to_owned()));
        for threads in [1, 2, 4] {
            let block_bytes = 1 + rng.below(30_000);
            let got = parallel(BufReader::new(flaky(round + 7)), threads, block_bytes);
            assert!(
                got == expect,
                "cut at {cut}, {threads} threads, blocks of {block_bytes}: {} items, expected {}",
                got.0.len(),
                expect.0.len()
            );
        }
        let got = read_output_parallel(BufReader::new(flaky(round)), 0, |_| ());
        assert!(matches!(got, Err(crate::Error::Io(_))), "{got:?}");
    }
}
