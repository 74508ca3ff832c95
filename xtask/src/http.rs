//! A small HTTP/1.1 client for loopback services (the simulator, `batchbeam serve`), with no
//! library: one request per connection (`Connection: close`), a timeout on every read and
//! write, and chunked bodies decoded. xtask builds from a few small crates; this is all it
//! needs to talk to the processes it starts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// An answer: the status code and the body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the answer ({}) is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }
}

/// The `host:port` of a base URL such as `http://127.0.0.1:4000/v1`.
pub(crate) fn host_of(base_url: &str) -> anyhow::Result<&str> {
    base_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .filter(|h| !h.is_empty())
        .with_context(|| format!("{base_url} is not an http://host:port URL"))
}

/// Sends one request to `host` (`127.0.0.1:PORT`); `body` is sent as JSON when given.
pub(crate) fn request(
    host: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let addr = host
        .parse()
        .with_context(|| format!("{host} is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path} from {host}"))?;
    parse(&raw).with_context(|| format!("{method} {path} on {host}"))
}

/// `GET path`, failing unless the status is 2xx.
pub(crate) fn get_json(
    host: &str,
    path: &str,
    bearer: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let reply = request(host, "GET", path, bearer, None, Duration::from_secs(60))?;
    if !(200..300).contains(&reply.status) {
        bail!(
            "GET {path} on {host} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    reply.json()
}

fn parse(raw: &[u8]) -> anyhow::Result<Reply> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no complete HTTP head in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("a chunk size {size_text:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size {
            bail!("a chunk of {size} bytes cut short");
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies_are_read() {
        let plain = parse(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            (plain.status, plain.body.as_slice()),
            (202, b"{}".as_slice())
        );
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.json().unwrap()["a"], 1);
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert_eq!(host_of("http://127.0.0.1:9/v1").unwrap(), "127.0.0.1:9");
        assert!(host_of("https://x").is_err());
    }
}
