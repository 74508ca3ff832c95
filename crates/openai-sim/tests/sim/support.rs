//! Shared helpers: an in-process simulator on port 0 and a small HTTP client for it.

use openai_sim::{SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

pub(crate) const KEY: &str = "sk-test-0123456789abcdef";

/// One simulator and a client for it. `Ctx::new` freezes the clock: simulated time moves only with
/// `advance`, so what a test sees never depends on how fast the machine runs it.
pub(crate) struct Ctx {
    pub(crate) sim: SimHandle,
    pub(crate) http: Client,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error` object of an error reply, checked to have exactly OpenAI's four keys, in
    /// OpenAI's order.
    pub(crate) fn error(&self) -> Value {
        assert!(
            self.text.starts_with("{\"error\":{\"message\":"),
            "{}",
            self.text
        );
        let inner = &self.text["{\"error\":".len()..];
        let (t, p, c) = (
            inner.find(",\"type\":"),
            inner.find(",\"param\":"),
            inner.find(",\"code\":"),
        );
        assert!(t < p && p < c && t.is_some(), "key order: {}", self.text);
        let v = self.json();
        let e = v["error"].clone();
        let keys: Vec<&str> = e
            .as_object()
            .expect("error object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["code", "message", "param", "type"],
            "{}",
            self.text
        );
        e
    }
}

impl Ctx {
    pub(crate) async fn new() -> Ctx {
        Ctx::with(SimConfig::default().with_frozen_clock()).await
    }

    pub(crate) async fn with(config: SimConfig) -> Ctx {
        let sim = openai_sim::spawn(config).await.expect("spawn sim");
        Ctx {
            sim,
            http: Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.root_url(), path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(KEY))
            .await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path)).bearer_auth(KEY))
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).bearer_auth(KEY).json(body))
            .await
    }

    pub(crate) async fn post_raw(&self, path: &str, body: impl Into<String>) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body.into()),
        )
        .await
    }

    pub(crate) async fn upload_raw(
        &self,
        purpose: Option<&str>,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Reply {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
        );
        if let Some(p) = purpose {
            form = form.text("purpose", p.to_owned());
        }
        self.send(
            self.http
                .post(self.url("/v1/files"))
                .bearer_auth(KEY)
                .multipart(form),
        )
        .await
    }

    /// Uploads `lines` as a batch input file; returns the file id.
    pub(crate) async fn upload_lines(&self, lines: &[Value]) -> String {
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(serde_json::to_string(l).unwrap().as_bytes());
            bytes.push(b'\n');
        }
        let r = self.upload_raw(Some("batch"), "input.jsonl", bytes).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn create_batch(&self, file_id: &str) -> Value {
        let r = self
            .post(
                "/v1/batches",
                &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// Uploads `lines` and creates a chat batch on them; returns the batch id.
    pub(crate) async fn batch_of(&self, lines: &[Value]) -> String {
        let file = self.upload_lines(lines).await;
        self.create_batch(&file).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn batch(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/batches/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// Jumps simulated time through the admin route.
    pub(crate) async fn advance(&self, seconds: f64) {
        let r = self
            .http
            .post(self.url(&format!("/sim/clock/advance?seconds={seconds}")))
            .send()
            .await
            .expect("advance");
        assert_eq!(r.status(), 200);
    }

    /// Downloads a file's content as text.
    pub(crate) async fn content(&self, file_id: &str) -> Reply {
        self.get(&format!("/v1/files/{file_id}/content")).await
    }

    pub(crate) async fn stats(&self) -> Value {
        let r = self
            .http
            .get(self.url("/sim/stats"))
            .send()
            .await
            .expect("stats");
        assert_eq!(r.status(), 200);
        r.json().await.expect("stats json")
    }
}

/// A chat request line for `model`.
pub(crate) fn chat_line(custom_id: &str, model: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    })
}

/// A chat line the models refuse (a reasoning model given a non-default temperature).
pub(crate) fn refused_line(custom_id: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-5-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "hi"}]},
    })
}

/// Parses a JSONL file body, checking that every line ends with `\n`.
pub(crate) fn jsonl(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "last line lacks a newline"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Keys of a JSON object text in the order they appear (top level only).
pub(crate) fn key_order(text: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Keys, A::Error> {
                    let mut k = Vec::new();
                    while let Some((key, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        k.push(key);
                    }
                    Ok(Keys(k))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(text).expect("object").0
}
