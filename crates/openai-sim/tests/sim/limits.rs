//! Transport limits over a raw socket: oversized request lines, header blocks and bodies, broken
//! chunked bodies and slow clients are refused in OpenAI's JSON envelope (or, for a client that
//! never finishes its headers, cut off).

use std::time::Duration;

use openai_sim::{Limits, SimConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Ctx, KEY, Reply};

/// Generous bound for a refusal to arrive: a liveness bound, not a timing assertion.
const LIVENESS: Duration = Duration::from_secs(60);

fn small_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_uri_bytes = 2_000;
    limits.max_header_bytes = 4_000;
    limits.max_headers = 20;
    limits.max_json_body_bytes = 10_000;
    limits.header_read_timeout = Duration::from_millis(300);
    limits.body_read_timeout = Duration::from_millis(600);
    limits.body_idle_timeout = Duration::from_millis(300);
    limits
}

async fn sim() -> Ctx {
    Ctx::with(
        SimConfig::default()
            .with_frozen_clock()
            .with_limits(small_limits()),
    )
    .await
}

fn head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n{extra}"
    )
}

/// Sends `parts` (pausing `pause` between them) and reads the answer until the server closes.
async fn exchange(ctx: &Ctx, parts: &[Vec<u8>], pause: Duration) -> Option<Reply> {
    let mut stream = TcpStream::connect(ctx.sim.addr()).await.expect("connect");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        // The server may answer and close before it has read everything: that is the point.
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let read = tokio::time::timeout(LIVENESS, stream.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code: u16 = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status: StatusCode::from_u16(code).ok()?,
        headers: HeaderMap::new(),
        text: body.to_owned(),
    })
}

async fn refused(ctx: &Ctx, parts: &[Vec<u8>], pause: Duration) -> (StatusCode, serde_json::Value) {
    let reply = exchange(ctx, parts, pause).await.expect("an HTTP answer");
    (reply.status, reply.error())
}

#[tokio::test]
async fn a_request_line_over_the_limit_is_414_in_the_envelope() {
    let ctx = sim().await;
    let target = format!("/v1/files?after={}", "a".repeat(2_100));
    let (status, error) = refused(
        &ctx,
        &[head("GET", &target, "\r\n").into_bytes()],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(error["code"], "uri_too_long");
    assert!(
        error["message"].as_str().unwrap().contains("2000 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431_in_the_envelope() {
    let ctx = sim().await;
    let many: String = (0..25).map(|i| format!("X-Extra-{i}: 1\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "b".repeat(5_000));
    for extra in [many, big] {
        let request = head("GET", "/v1/files", &format!("{extra}\r\n"));
        let (status, error) = refused(&ctx, &[request.into_bytes()], Duration::ZERO).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(error["code"], "headers_too_large");
        assert_eq!(error["type"], "invalid_request_error");
    }
    // Under the limits the same route answers.
    let ok = head("GET", "/v1/files", "X-Extra: 1\r\n\r\n");
    let reply = exchange(&ctx, &[ok.into_bytes()], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn an_oversized_body_is_413_before_or_while_it_is_read() {
    let ctx = sim().await;
    // Declared too large: refused on the head, the body never sent.
    let declared = head(
        "POST",
        "/v1/chat/completions",
        "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n",
    );
    let (status, error) = refused(&ctx, &[declared.into_bytes()], Duration::ZERO).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "request_too_large");
    // Chunked with no length: refused once the limit is crossed, in the same envelope.
    let mut chunked = head(
        "POST",
        "/v1/chat/completions",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .into_bytes();
    let piece = "x".repeat(4_000);
    for _ in 0..4 {
        chunked.extend(format!("{:x}\r\n{piece}\r\n", piece.len()).into_bytes());
    }
    chunked.extend(b"0\r\n\r\n");
    let (status, error) = refused(&ctx, &[chunked], Duration::ZERO).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error["message"].as_str().unwrap().contains("10000 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn a_broken_chunked_body_is_400_in_the_envelope() {
    let ctx = sim().await;
    let broken = head(
        "POST",
        "/v1/chat/completions",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nZZ\r\n",
    );
    let (status, error) = refused(&ctx, &[broken.into_bytes()], Duration::ZERO).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off_with_408() {
    let ctx = sim().await;
    let start = head(
        "POST",
        "/v1/chat/completions",
        "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{",
    );
    // Pauses longer than the idle limit: refused after the first one.
    let parts = vec![start.into_bytes(), b"\"model\"".to_vec(), b":".to_vec()];
    let (status, error) = refused(&ctx, &parts, Duration::from_millis(900)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(error["code"], "request_timeout");
    // Steady drips inside the idle limit still run into the total limit.
    let start = head(
        "POST",
        "/v1/chat/completions",
        "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n",
    );
    let mut parts = vec![start.into_bytes()];
    parts.extend((0..200).map(|_| b" ".to_vec()));
    let (status, _) = refused(&ctx, &parts, Duration::from_millis(50)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let ctx = sim().await;
    let partial = b"GET /v1/files HTTP/1.1\r\nHost: sim\r\n".to_vec();
    let mut stream = TcpStream::connect(ctx.sim.addr()).await.unwrap();
    stream.write_all(&partial).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(LIVENESS, stream.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server kept waiting for the headers");
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(" 200 "), "{text}");
}
