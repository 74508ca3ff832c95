//! Tests of the validator: problems, limits, the streaming drivers and the token estimates.

use std::io::{BufReader, Read};

use serde_json::json;

use super::stream::{validate_blocks, validate_lines};
use super::tally::CountCache;
use super::*;
use crate::endpoint::Endpoint;
use crate::tokens::TokenEstimator;

/// A valid chat line with the given id.
fn ok(id: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}]}}}}"#
    )
}

/// Renders problems one per line as `<line> <code> <param>: <message>`.
fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let line = p.line.map_or("-".to_owned(), |l| l.to_string());
            let param = p.param.as_deref().unwrap_or("-");
            format!("{line} {} {param}: {}\n", p.code, p.message)
        })
        .collect()
}

fn run(input: &str, opts: &ValidationOptions) -> (String, ValidationSummary) {
    let mut problems = Vec::new();
    let summary = validate_jsonl(input.as_bytes(), opts, |p| problems.push(p)).unwrap();
    assert_eq!(summary.problems, problems.len() as u64);
    assert_eq!(summary.bytes, input.len() as u64);
    // The same input through a tiny buffer (lines straddle refills) and through the
    // parallel path must give the same answer.
    let mut small = Vec::new();
    let reader = BufReader::with_capacity(7, input.as_bytes());
    let s = validate_jsonl(reader, opts, |p| small.push(p)).unwrap();
    assert_eq!((&s, &small), (&summary, &problems), "small buffer");
    let mut par = Vec::new();
    let s = validate_jsonl_parallel(input.as_bytes(), opts, 3, |p| par.push(p)).unwrap();
    assert_eq!((&s, &par), (&summary, &problems), "parallel");
    // With and without token estimates, lines are read by different parsers (serde probes,
    // the scanner): they must find the same problems.
    let flipped = ValidationOptions {
        estimate_tokens: !opts.estimate_tokens,
        ..opts.clone()
    };
    let mut other = Vec::new();
    let s = validate_jsonl(input.as_bytes(), &flipped, |p| other.push(p)).unwrap();
    assert_eq!(other, problems, "estimate_tokens flipped");
    assert_eq!(s.model, summary.model);
    (render(&problems), summary)
}

fn check_with(opts: &ValidationOptions, input: &str, expect: &str) {
    let (got, _) = run(input, opts);
    let expect: String = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, expect, "input:\n{input}");
}

fn check(input: &str, expect: &str) {
    check_with(&ValidationOptions::default(), input, expect);
}

#[test]
fn valid_files_have_no_problems() {
    let two = format!("{}\n{}\n", ok("a"), ok("b"));
    let (problems, summary) = run(&two, &ValidationOptions::default());
    assert_eq!(problems, "");
    assert_eq!(
        summary,
        ValidationSummary {
            lines: 2,
            bytes: two.len() as u64,
            endpoint: Some(Endpoint::ChatCompletions),
            model: Some("gpt-4o-mini".into()),
            estimated_tokens: 0,
            problems: 0,
        }
    );
    assert!(summary.is_valid());
    // No final newline, CRLF endings, trailing blank lines: all fine.
    check(&format!("{}\n{}", ok("a"), ok("b")), "");
    check(&format!("{}\r\n{}\r\n", ok("a"), ok("b")), "");
    check(&format!("{}\n{}\n\n\r\n  \n", ok("a"), ok("b")), "");
    // Unknown fields anywhere are accepted.
    check(
        r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","extra":[1,{"x":null}],"body":{"model":"m","messages":[],"temperature":0.5,"metadata":{"k":"v"}}}"#,
        "",
    );
}

#[test]
fn crlf_bytes_are_counted_exactly() {
    let input = format!("{}\r\n{}\r\n", ok("a"), ok("b"));
    let (_, summary) = run(&input, &ValidationOptions::default());
    assert_eq!(summary.bytes, input.len() as u64);
    assert_eq!(summary.lines, 2);
}

#[test]
fn empty_file() {
    check("", "- empty_file -: The input file has no requests.");
    check("\n\n", "- empty_file -: The input file has no requests.");
    check("\r\n", "- empty_file -: The input file has no requests.");
}

#[test]
fn invalid_json_line() {
    let a = ok("a");
    check(
        &format!("{a}\n{{\"custom_id\": \n{a}x\n"),
        "
        2 invalid_json_line -: This line is not parseable as valid JSON.
        3 invalid_json_line -: This line is not parseable as valid JSON.
        ",
    );
    // A blank line in the middle is a bad line; only trailing ones are forgiven.
    check(
        &format!("{}\n\n \r\n{}\n\n", ok("a"), ok("b")),
        "
        2 invalid_json_line -: This line is not parseable as valid JSON.
        3 invalid_json_line -: This line is not parseable as valid JSON.
        ",
    );
    // Two values on one line; a raw control character inside a string.
    check(
        &format!("{{}} {{}}\n{}\n", ok("a\tb")),
        "
        1 invalid_json_line -: This line is not parseable as valid JSON.
        2 invalid_json_line -: This line is not parseable as valid JSON.
        ",
    );
    // Not UTF-8 (inside the custom_id).
    let mut invalid_utf8 = ok("a").into_bytes();
    invalid_utf8[14] = 0xff;
    let mut problems = Vec::new();
    validate_jsonl(&invalid_utf8[..], &ValidationOptions::default(), |p| {
        problems.push(p)
    })
    .unwrap();
    assert_eq!(
        render(&problems),
        "1 invalid_json_line -: This line is not parseable as valid JSON.\n"
    );
}

#[test]
fn not_an_object() {
    check(
        "[1, 2]\n\"x\"\nnull\n",
        "
        1 invalid_request -: This line is not a JSON object.
        2 invalid_request -: This line is not a JSON object.
        3 invalid_request -: This line is not a JSON object.
        ",
    );
}

#[test]
fn missing_required_parameter() {
    let body = r#""body":{"model":"m","messages":[]}"#;
    let url = r#""url":"/v1/chat/completions""#;
    check(
        &[
            format!(r#"{{"method":"POST",{url},{body}}}"#),
            format!(r#"{{"custom_id":"b",{url},{body}}}"#),
            format!(r#"{{"custom_id":"c","method":"POST",{body}}}"#),
            format!(r#"{{"custom_id":"d","method":"POST",{url}}}"#),
            format!(r#"{{"custom_id":null,"method":"POST",{url},"body":null}}"#),
        ]
        .join("\n"),
        "
        1 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
        2 missing_required_parameter method: Missing required parameter: 'method'.
        3 missing_required_parameter url: Missing required parameter: 'url'.
        4 missing_required_parameter body: Missing required parameter: 'body'.
        5 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
        5 missing_required_parameter body: Missing required parameter: 'body'.
        ",
    );
}

#[test]
fn several_problems_on_one_line_in_field_order() {
    check(
        "{}\n",
        "
        1 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
        1 missing_required_parameter method: Missing required parameter: 'method'.
        1 missing_required_parameter url: Missing required parameter: 'url'.
        1 missing_required_parameter body: Missing required parameter: 'body'.
        ",
    );
    check(
        &format!(
            "{}\n{}\n",
            ok("a"),
            r#"{"custom_id":"a","method":"GET","url":"/v1/embeddings","body":{"stream":true}}"#
        ),
        "
        2 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
        2 invalid_method method: Invalid method 'GET'. Only 'POST' is supported.
        2 invalid_url url: The URL provided for this request does not match the batch endpoint.
        2 invalid_request body.model: Model parameter is required.
        2 invalid_request body.messages: Messages parameter is required.
        2 streaming_unsupported body.stream: Chat Completions: Streaming is not supported in the Batch API.
        ",
    );
}

#[test]
fn invalid_method() {
    check(
        &[
            r#"{"custom_id":"a","method":"post","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#,
            r#"{"custom_id":"b","method":1,"url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#,
        ]
        .join("\n"),
        "
        1 invalid_method method: Invalid method 'post'. Only 'POST' is supported.
        2 invalid_method method: Invalid type for 'method': expected the string 'POST'.
        ",
    );
}

#[test]
fn invalid_url() {
    let line = |id: &str, url: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":{url},"body":{{"model":"m","input":"x"}}}}"#
        )
    };
    let msg =
        "invalid_url url: The URL provided for this request does not match the batch endpoint.";
    // Not an endpoint at all; then the first valid url fixes the endpoint, and a
    // different one after it is wrong.
    check(
        &[
            line("a", r#""/v1/nope""#),
            line("b", r#""/v1/embeddings""#),
            line("c", r#""/v1/responses""#),
            line("d", "42"),
            line("e", r#""/v1/embeddings""#),
        ]
        .join("\n"),
        &format!("1 {msg}\n3 {msg}\n4 {msg}"),
    );
    // With an expected endpoint, the first line is held to it too.
    let opts = ValidationOptions {
        expected_endpoint: Some(Endpoint::Responses),
        ..ValidationOptions::default()
    };
    check_with(
        &opts,
        &[
            line("a", r#""/v1/embeddings""#),
            line("b", r#""/v1/responses""#),
        ]
        .join("\n"),
        &format!("1 {msg}"),
    );
}

#[test]
fn endpoint_comes_from_the_first_valid_line() {
    let input = format!(
        "{}\n{}\n",
        r#"{"custom_id":"a","method":"POST","url":"/v1/x","body":{"model":"m"}}"#,
        r#"{"custom_id":"b","method":"POST","url":"/v1/moderations","body":{"input":"x"}}"#
    );
    let (problems, summary) = run(&input, &ValidationOptions::default());
    assert_eq!(summary.endpoint, Some(Endpoint::Moderations));
    // Moderations needs no model; line 1's `model` still fixes the batch model.
    assert_eq!(
        problems,
        "1 invalid_url url: The URL provided for this request does not match the batch endpoint.\n"
    );
    assert_eq!(summary.model.as_deref(), Some("m"));
}

#[test]
fn invalid_request_in_body() {
    let line = |id: &str, body: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#
        )
    };
    check(
        &[
            line("a", r#"{"messages":[]}"#),
            line("b", r#"{"model":"m"}"#),
            line("c", r#"{"model":"m","messages":null}"#),
            line("d", r#"{"model":7,"messages":[]}"#),
            line("e", r#""not an object""#),
            line("f", "[]"),
        ]
        .join("\n"),
        "
        1 invalid_request body.model: Model parameter is required.
        2 invalid_request body.messages: Messages parameter is required.
        3 invalid_request body.messages: Messages parameter is required.
        4 invalid_request body.model: Invalid type for 'body.model': expected a string.
        5 invalid_request body: Invalid type for 'body': expected an object.
        6 invalid_request body: Invalid type for 'body': expected an object.
        ",
    );
    // `messages` is only required for chat completions.
    check(
        r#"{"custom_id":"a","method":"POST","url":"/v1/responses","body":{"model":"m","input":"x"}}"#,
        "",
    );
}

#[test]
fn custom_id_must_be_a_non_empty_string() {
    let line = |id: &str| {
        format!(
            r#"{{"custom_id":{id},"method":"POST","url":"/v1/chat/completions","body":{{"model":"m","messages":[]}}}}"#
        )
    };
    check(
        &[line(r#""""#), line("7"), line(r#"{"a":1}"#)].join("\n"),
        "
        1 invalid_request custom_id: Invalid 'custom_id': empty string. Expected a non-empty string.
        2 invalid_request custom_id: Invalid type for 'custom_id': expected a string.
        3 invalid_request custom_id: Invalid type for 'custom_id': expected a string.
        ",
    );
}

#[test]
fn duplicate_custom_id() {
    check(
        &[ok("a"), ok("b"), ok("a"), ok("c"), ok("b"), ok("a")].join("\n"),
        "
        3 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
        5 duplicate_custom_id custom_id: The custom_id 'b' is used by an earlier request; each request in a batch needs a unique custom_id.
        6 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
        ",
    );
    // Ids compare after JSON unescaping: "\u0061" is "a".
    check(
        &[ok("a"), ok(r"\u0061"), ok(r#"q\"q"#), ok(r#"q\u0022q"#)].join("\n"),
        r#"
        2 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
        4 duplicate_custom_id custom_id: The custom_id 'q"q' is used by an earlier request; each request in a batch needs a unique custom_id.
        "#,
    );
}

#[test]
fn mismatched_model() {
    let line = |id: &str, model: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[]}}}}"#
        )
    };
    let input = [
        line("a", "gpt-4o-mini"),
        line("b", "gpt-4o"),
        line("c", "gpt-4o-mini"),
    ]
    .join("\n");
    check(
        &input,
        "2 mismatched_model body.model: The model 'gpt-4o' does not match the batch's model 'gpt-4o-mini'. All requests in a batch must use the same model.",
    );
    let (_, summary) = run(&input, &ValidationOptions::default());
    assert_eq!(summary.model.as_deref(), Some("gpt-4o-mini"));
}

#[test]
fn model_not_found() {
    let opts = ValidationOptions {
        known_models: Some(["gpt-4o-mini".to_owned()].into()),
        ..ValidationOptions::default()
    };
    let line = |id: &str, model: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[]}}}}"#
        )
    };
    check_with(
        &opts,
        &[
            line("a", "nonexistent-model-xyz"),
            line("b", "nonexistent-model-xyz"),
            line("c", "gpt-4o-mini"),
        ]
        .join("\n"),
        "
        1 model_not_found body.model: The provided model 'nonexistent-model-xyz' is not supported by the Batch API.
        2 model_not_found body.model: The provided model 'nonexistent-model-xyz' is not supported by the Batch API.
        3 mismatched_model body.model: The model 'gpt-4o-mini' does not match the batch's model 'nonexistent-model-xyz'. All requests in a batch must use the same model.
        ",
    );
}

#[test]
fn streaming_unsupported() {
    let line = |id: &str, url: &str, stream: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"{url}","body":{{"model":"m","messages":[],"stream":{stream}}}}}"#
        )
    };
    check(
        &[
            line("a", "/v1/chat/completions", "true"),
            line("b", "/v1/chat/completions", "false"),
            line("c", "/v1/chat/completions", "null"),
            line("d", "/v1/chat/completions", "\"true\""),
        ]
        .join("\n"),
        "1 streaming_unsupported body.stream: Chat Completions: Streaming is not supported in the Batch API.",
    );
    check(
        &line("a", "/v1/responses", "true"),
        "1 streaming_unsupported body.stream: Responses: Streaming is not supported in the Batch API.",
    );
}

#[test]
fn file_limits_are_reported_once_after_the_lines() {
    let opts = ValidationOptions {
        max_lines: 2,
        max_bytes: 100,
        ..ValidationOptions::default()
    };
    let input = [ok("a"), "{".into(), ok("b"), "[]".into()].join("\n") + "\n";
    check_with(
        &opts,
        &input,
        &format!(
            "
            2 invalid_json_line -: This line is not parseable as valid JSON.
            4 invalid_request -: This line is not a JSON object.
            - too_many_lines -: The input file has 4 lines; a batch may have at most 2 requests.
            - file_too_large -: File is too large: {} bytes; a batch input file may be at most 100 bytes.
            ",
            input.len()
        ),
    );
    // Exactly at the limits is fine.
    let input = format!("{}\n{}\n", ok("a"), ok("b"));
    let opts = ValidationOptions {
        max_lines: 2,
        max_bytes: input.len() as u64,
        ..ValidationOptions::default()
    };
    check_with(&opts, &input, "");
}

#[test]
fn problems_on_many_lines_are_all_reported_in_order() {
    let mut input = String::new();
    let mut expect = String::new();
    for n in 1..=200u64 {
        if n % 3 == 0 {
            input.push_str("not json\n");
            expect.push_str(&format!(
                "{n} invalid_json_line -: This line is not parseable as valid JSON.\n"
            ));
        } else if n % 7 == 0 {
            input.push_str(&ok("dup"));
            input.push('\n');
            if n > 7 {
                expect.push_str(&format!("{n} duplicate_custom_id custom_id: The custom_id 'dup' is used by an earlier request; each request in a batch needs a unique custom_id.\n"));
            }
        } else {
            input.push_str(&ok(&format!("id-{n}")));
            input.push('\n');
        }
    }
    let (got, summary) = run(&input, &ValidationOptions::default());
    assert_eq!(got, expect);
    assert_eq!(summary.lines, 200);
}

#[test]
fn parallel_matches_sequential_across_block_boundaries() {
    // About 3 MiB: several blocks, with lines straddling the block size.
    let image = "A".repeat(4000);
    let mut input = String::new();
    for n in 0..800 {
        match n % 97 {
            0 => input.push_str("{bad\n"),
            1 => input.push('\n'),
            _ => input.push_str(&format!(
                r#"{{"custom_id":"c{}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o","messages":[{{"role":"user","content":[{{"type":"text","text":"fox {n}"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]}}}}{}"#,
                n % 400,
                if n % 5 == 0 { "\r\n" } else { "\n" }
            )),
        }
    }
    for estimate_tokens in [false, true] {
        let opts = ValidationOptions {
            estimate_tokens,
            ..ValidationOptions::default()
        };
        let mut seq = Vec::new();
        let s1 = validate_jsonl(input.as_bytes(), &opts, |p| seq.push(p)).unwrap();
        for threads in [2, 4] {
            let mut par = Vec::new();
            let s2 =
                validate_jsonl_parallel(BufReader::new(input.as_bytes()), &opts, threads, |p| {
                    par.push(p)
                })
                .unwrap();
            assert_eq!(s1, s2);
            assert_eq!(seq, par);
        }
        assert_eq!(s1.bytes, input.len() as u64);
        assert!(seq.len() > 100, "{}", seq.len());
        assert_eq!(s1.estimated_tokens > 0, estimate_tokens);
    }
}

#[test]
fn io_errors_are_errors() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let opts = ValidationOptions::default();
    let err = validate_jsonl(BufReader::new(Failing), &opts, |_| ()).unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    let err = validate_jsonl_parallel(BufReader::new(Failing), &opts, 2, |_| ()).unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn push_based_validator() {
    let mut v = Validator::new(ValidationOptions::default());
    let mut problems = Vec::new();
    v.push_line(ok("a").as_bytes(), |p| problems.push(p));
    v.push_line(b"\n", |p| problems.push(p));
    v.push_line(b"", |p| problems.push(p));
    assert!(
        problems.is_empty(),
        "blank lines wait to see whether more follow"
    );
    v.push_line(b"nope\r\n", |p| problems.push(p));
    assert_eq!(
        problems.iter().map(|p| p.line).collect::<Vec<_>>(),
        [Some(2), Some(3), Some(4)]
    );
    let summary = v.finish(|p| problems.push(p));
    assert_eq!(summary.lines, 4);
    assert_eq!(summary.problems, 3);
}

#[test]
fn problems_serialise_like_openai_errors() {
    let p = Problem::at(2, ProblemCode::InvalidUrl, Some("url"), "m");
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"code": "invalid_url", "message": "m", "param": "url", "line": 2})
    );
    assert_eq!(p.to_string(), "line 2: invalid_url: m");
    for code in [
        ProblemCode::InvalidJsonLine,
        ProblemCode::MissingRequiredParameter,
        ProblemCode::InvalidMethod,
        ProblemCode::InvalidUrl,
        ProblemCode::MismatchedModel,
        ProblemCode::DuplicateCustomId,
        ProblemCode::StreamingUnsupported,
        ProblemCode::TooManyLines,
        ProblemCode::FileTooLarge,
        ProblemCode::EmptyFile,
        ProblemCode::InvalidRequest,
        ProblemCode::ModelNotFound,
        ProblemCode::LineTooLarge,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn token_estimates_match_the_json_body_estimate() {
    let bodies = [
        json!({"model": "gpt-4o", "max_completion_tokens": 100, "messages": [
            {"role": "system", "content": "You judge images. Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Prompt: a red fox in snow. Score 1-10."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                {"type": "image_url", "image_url": "https://x/z.png"},
                {"type": "text", "text": "caf\u{e9} \"quoted\" \n newline"}
            ]},
            {"role": "assistant", "content": null},
            "not a message"
        ]}),
        json!({"model": "gpt-4", "max_tokens": 7, "messages": []}),
        json!({"model": "gpt-5", "max_output_tokens": 10, "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "hello world"},
                {"type": "input_image", "image_url": "data:,", "detail": "low"},
                {"type": "input_image", "image_url": "data:,", "detail": null}
            ]},
            {"type": "input_text", "text": "loose part"},
            "loose string",
            {"role": "user", "content": null}
        ]}),
        json!({"model": "text-embedding-3-small", "input": ["a b c", "d e"]}),
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": -1}),
        json!({"model": "gpt-4o", "messages": "nope", "input": 3, "max_tokens": 1.5}),
    ];
    let opts = ValidationOptions {
        estimate_tokens: true,
        ..ValidationOptions::default()
    };
    for body in bodies {
        let model = body["model"].as_str().unwrap();
        let expect = TokenEstimator::for_model(model).estimate_json_body(&body);
        let line =
            json!({"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": body});
        let (_, summary) = run(&line.to_string(), &opts);
        assert_eq!(summary.estimated_tokens, expect, "{body}");
        assert!(expect > 0 || body["messages"] == "nope");
    }
}

#[test]
fn repeated_long_texts_are_counted_once_but_add_up() {
    let system = "You judge how well an image matches its prompt. ".repeat(4);
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "hello world"}
    ]});
    let per_line = TokenEstimator::for_model("gpt-4o").estimate_json_body(&body);
    let lines: Vec<String> = (0..3)
        .map(|i| {
            json!({"custom_id": format!("c{i}"), "method": "POST",
                   "url": "/v1/chat/completions", "body": body})
            .to_string()
        })
        .collect();
    let opts = ValidationOptions {
        estimate_tokens: true,
        ..ValidationOptions::default()
    };
    let (problems, summary) = run(&lines.join("\n"), &opts);
    assert_eq!(problems, "");
    assert_eq!(summary.estimated_tokens, 3 * per_line);
    // Another model on the same text uses another BPE, not the cached count.
    let mut cache = CountCache::default();
    let o200k = TokenEstimator::for_model("gpt-4o");
    let cl100k = TokenEstimator::for_model("gpt-4");
    let text = "नमस्ते दुनिया ".repeat(20);
    assert_eq!(cache.count(&o200k, &text), o200k.count_text(&text));
    assert_eq!(cache.count(&cl100k, &text), cl100k.count_text(&text));
    assert_ne!(o200k.count_text(&text), cl100k.count_text(&text));
}

#[test]
fn parsers_agree_on_corrupted_lines() {
    // Every one-byte corruption and every prefix of a realistic line: the scanner (used
    // without token estimates) and the serde probes (with) must report the same problems.
    let line = r#"{"custom_id":"judge-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":[{"type":"text","text":"Score \"this\" 1-10"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]}],"max_tokens":300,"temperature":0.3}}"#;
    let agree = |text: &str| {
        let problems = |estimate_tokens| {
            let opts = ValidationOptions {
                estimate_tokens,
                ..ValidationOptions::default()
            };
            let mut problems = Vec::new();
            validate_jsonl(text.as_bytes(), &opts, |p| problems.push(p)).unwrap();
            problems
        };
        assert_eq!(problems(false), problems(true), "{text}");
    };
    for end in 1..line.len() {
        agree(&line[..end]);
    }
    for at in 0..line.len() {
        for c in [
            b'"', b'\\', b'{', b']', b',', b':', b'n', b'1', b'-', b' ', 0x01,
        ] {
            let mut bytes = line.as_bytes().to_vec();
            bytes[at] = c;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text);
            }
        }
    }
}

#[test]
fn buffer_scanning_matches_line_by_line() {
    // Reference: split on `\n` by hand and push each line.
    let reference = |input: &[u8]| {
        let mut v = Validator::new(ValidationOptions::default());
        let mut problems = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            v.push_line(&rest[..end], |p| problems.push(p));
            rest = &rest[end..];
        }
        (v.finish(|p| problems.push(p)), problems)
    };
    let mut bad_utf8 = format!("{}\n", ok("a")).into_bytes();
    bad_utf8.extend_from_slice(b"{\"custom_id\":\"\xff\"}\n");
    bad_utf8.extend_from_slice(format!("{}\n", ok("b")).as_bytes());
    bad_utf8.extend_from_slice(b"\xc3");
    let inputs: Vec<Vec<u8>> = vec![
        // A pretty-printed object: every physical line is a bad line.
        format!("{{\n  \"custom_id\": \"a\"\n}}\n{}\n", ok("b")).into_bytes(),
        // Multi-byte characters that refills will split.
        format!(
            "{}\n{}\n",
            ok("caf\u{e9}-\u{1F98A}"),
            ok("\u{65e5}\u{672c}")
        )
        .into_bytes(),
        // Garbage after a value, a form feed line, a lone value, spaces around.
        format!("{} x\n\u{c}\n  {}  \r\n42\n", ok("a"), ok("b")).into_bytes(),
        // A line break inside a string is a line break.
        format!("{{\"custom_id\":\"a\nb\"}}\n{}", ok("c")).into_bytes(),
        bad_utf8,
        format!("{}\n\n\n", ok("a")).into_bytes(),
        b"\n\n{}".to_vec(),
    ];
    for input in &inputs {
        let expect = reference(input);
        for capacity in [1, 2, 3, 5, 16, 64, 100, 1 << 16] {
            let mut problems = Vec::new();
            let reader = BufReader::with_capacity(capacity, &input[..]);
            let summary =
                validate_jsonl(reader, &ValidationOptions::default(), |p| problems.push(p))
                    .unwrap();
            assert_eq!(
                (summary, problems),
                expect,
                "capacity {capacity}: {}",
                String::from_utf8_lossy(input)
            );
        }
        let mut par = Vec::new();
        let s = validate_jsonl_parallel(&input[..], &ValidationOptions::default(), 2, |p| {
            par.push(p)
        })
        .unwrap();
        assert_eq!((s, par), expect);
    }
    // The pretty-printed object, spelled out.
    assert_eq!(
        render(&reference(&inputs[0]).1),
        "1 invalid_json_line -: This line is not parseable as valid JSON.\n\
         2 invalid_json_line -: This line is not parseable as valid JSON.\n\
         3 invalid_json_line -: This line is not parseable as valid JSON.\n"
    );
}

/// A file of four lines made as it is read, so that no test holds it: a valid line, one
/// request line with `fill` bytes of text in it, a repeat of the first line's id, and a line
/// that is not JSON. Returns the reader, the huge line's length and the file's.
fn file_with_a_huge_line(fill: u64) -> (impl Read + Send, u64, u64) {
    let head = format!("{}\n", ok("a"));
    let open = r#"{"custom_id":"big","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let close = "\"}]}}\n";
    let tail = format!("{}\n{{\"custom_id\": \n", ok("a"));
    let huge = open.len() as u64 + fill + close.len() as u64;
    let total = head.len() as u64 + huge + tail.len() as u64;
    let reader = std::io::Cursor::new(head)
        .chain(open.as_bytes())
        .chain(std::io::repeat(b'A').take(fill))
        .chain(close.as_bytes())
        .chain(std::io::Cursor::new(tail));
    (reader, huge, total)
}

#[test]
fn a_huge_line_is_a_problem_read_past_and_the_lines_after_it_are_checked() {
    let fill = 100 << 20;
    for estimate_tokens in [false, true] {
        let opts = ValidationOptions {
            estimate_tokens,
            ..ValidationOptions::default()
        };
        for threads in [1, 2] {
            let (reader, huge, total) = file_with_a_huge_line(fill);
            let mut problems = Vec::new();
            let reader = BufReader::with_capacity(64 << 10, reader);
            let summary =
                validate_jsonl_parallel(reader, &opts, threads, |p| problems.push(p)).unwrap();
            assert_eq!(
                render(&problems),
                format!(
                    "2 line_too_large -: This line is {huge} bytes, over the limit of 4194304 \
                     bytes on one line; it was read past, not checked.\n\
                     3 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier \
                     request; each request in a batch needs a unique custom_id.\n\
                     4 invalid_json_line -: This line is not parseable as valid JSON.\n"
                ),
                "{threads} threads, estimate_tokens {estimate_tokens}"
            );
            assert_eq!((summary.lines, summary.bytes), (4, total));
        }
    }
}

#[test]
fn lines_over_the_cap_are_problems_whatever_the_buffering() {
    const MAX: usize = 200;
    // A line of exactly `len` bytes, newline included, with id `id`.
    let line = |id: &str, len: usize| {
        let short = ok(id);
        let pad = "p".repeat(len - short.len() - 1 - r#","p":"""#.len());
        format!("{},\"p\":\"{pad}\"}}\n", &short[..short.len() - 1])
    };
    let mut head = String::new();
    for (id, len) in [
        ("a", MAX),
        ("b", MAX + 1),
        ("c", 150),
        ("d", 5000),
        ("e", MAX),
    ] {
        head.push_str(&line(id, len));
    }
    let problems_before_the_last = "2 line_too_large -: This line is 201 bytes, over the limit \
         of 200 bytes on one line; it was read past, not checked.\n\
         4 line_too_large -: This line is 5000 bytes, over the limit of 200 bytes on one line; \
         it was read past, not checked.\n";
    let too_long = |n: usize| {
        format!(
            "6 line_too_large -: This line is {n} bytes, over the limit of 200 bytes on one \
             line; it was read past, not checked.\n"
        )
    };
    // The last line with its newline or without, at the cap or just over it.
    for (last, problem) in [
        (line("f", 999), too_long(999)),
        (line("f", 999).trim_end().to_owned(), too_long(998)),
        (line("f", MAX + 1).trim_end().to_owned(), String::new()),
        (line("f", MAX + 2).trim_end().to_owned(), too_long(MAX + 1)),
    ] {
        let input = format!("{head}{last}");
        let expect = format!("{problems_before_the_last}{problem}");
        for estimate_tokens in [false, true] {
            let opts = ValidationOptions {
                estimate_tokens,
                ..ValidationOptions::default()
            };
            for capacity in [1, 7, 64, 199, 200, 201, 1 << 16] {
                let reader = BufReader::with_capacity(capacity, input.as_bytes());
                let mut problems = Vec::new();
                let summary = validate_lines(reader, &opts, MAX, |p| problems.push(p)).unwrap();
                assert_eq!(render(&problems), expect, "capacity {capacity}");
                assert_eq!(summary.bytes, input.len() as u64);
            }
            let mut problems = Vec::new();
            validate_blocks(input.as_bytes(), &opts, 3, MAX, |p| problems.push(p)).unwrap();
            assert_eq!(render(&problems), expect, "parallel");
        }
    }
}

#[test]
fn a_file_size_over_the_limit_is_the_problem_validation_reports() {
    let opts = ValidationOptions {
        max_bytes: 100,
        ..ValidationOptions::default()
    };
    assert_eq!(opts.file_size_problem(100), None);
    let input = format!("{}\n", ok("a"));
    let mut problems = Vec::new();
    validate_jsonl(input.as_bytes(), &opts, |p| problems.push(p)).unwrap();
    assert_eq!(
        opts.file_size_problem(input.len() as u64).as_ref(),
        problems.last()
    );
    assert_eq!(problems.len(), 1);
}

#[test]
fn pushed_lines_over_the_cap_are_problems_too() {
    let mut v = Validator::new(ValidationOptions::default());
    let mut problems = Vec::new();
    v.push_line(format!("{}\n", ok("a")).as_bytes(), |p| problems.push(p));
    let mut huge = br#"{"custom_id":"b","x":""#.to_vec();
    huge.resize((4 << 20) + 10, b'A');
    huge.extend_from_slice(b"\"}\n");
    v.push_line(&huge, |p| problems.push(p));
    let summary = v.finish(|p| problems.push(p));
    assert_eq!(
        render(&problems),
        format!(
            "2 line_too_large -: This line is {} bytes, over the limit of 4194304 bytes on one \
             line; it was read past, not checked.\n",
            huge.len()
        )
    );
    assert_eq!(summary.lines, 2);
}

/// Deterministic text of several kinds, for the token estimate's accuracy.
fn generated_text(kind: usize, seed: &mut u64, len: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "lighthouse",
        "storm",
        "waves",
        "against",
        "rocks",
        "painted",
        "in",
        "cinematic",
        "light,",
        "a",
        "lonely",
        "keeper",
        "watches.",
        "Oil",
        "on",
        "canvas;",
        "dramatic",
        "sky",
        "with",
        "gulls",
        "and",
        "spray",
        "(wide-angle)",
    ];
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut out = String::new();
    while out.len() < len {
        let r = next();
        match kind {
            0 => {
                out.push_str(WORDS[(r % 24) as usize]);
                out.push(' ');
            }
            1 => out.push_str(&format!(
                "fn step_{}(x: u32) -> Result<(), Error> {{ let y = x * {}; Ok(()) }}\\n",
                r % 97,
                r % 1000
            )),
            2 => {
                let c = char::from_u32(0x4e00 + (r % 2000) as u32).unwrap_or('中');
                out.push(c);
                if r % 7 == 0 {
                    out.push('，');
                }
            }
            _ => {
                let c = char::from_u32(0x0915 + (r % 30) as u32).unwrap_or('क');
                out.push(c);
                out.push_str(if r % 3 == 0 { " " } else { "" });
            }
        }
    }
    out
}

#[test]
fn the_token_estimate_of_a_large_mixed_file_is_within_two_percent_of_exact() {
    // Prose, then code, then CJK, then Devanagari, then all four interleaved: ~4.5 MB of text,
    // far over the exactly counted start of each kind, so most texts are estimated.
    let system = "You are a careful art critic. Judge the image against the idea. ".repeat(4);
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut lines = Vec::new();
    let mut exact = 0;
    for i in 0..3_000usize {
        let kind = if i < 2_400 { i / 600 } else { i % 4 };
        let text = generated_text(kind, &mut seed, 1_200 + i % 500);
        let body = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
        ]});
        exact += TokenEstimator::for_model("gpt-4o-mini").estimate_json_body(&body);
        let line = json!({"custom_id": format!("r{i}"), "method": "POST",
                          "url": "/v1/chat/completions", "body": body});
        lines.push(line.to_string());
    }
    let input = lines.join("\n");
    let opts = ValidationOptions {
        estimate_tokens: true,
        ..ValidationOptions::default()
    };
    let sequential = validate_jsonl(input.as_bytes(), &opts, |_| {}).unwrap();
    let parallel = validate_jsonl_parallel(input.as_bytes(), &opts, 2, |_| {}).unwrap();
    for (how, summary) in [("sequential", sequential), ("parallel", parallel)] {
        assert_eq!(summary.problems, 0);
        let error = summary.estimated_tokens.abs_diff(exact) as f64 / exact as f64;
        assert!(
            error <= 0.02,
            "{how}: estimate {} vs exact {exact} ({:.2}%)",
            summary.estimated_tokens,
            error * 100.0
        );
    }
}
