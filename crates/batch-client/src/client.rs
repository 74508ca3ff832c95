//! `OpenAiClient`: the Files, Batches, chat completions and image generation endpoints over
//! reqwest with rustls, with retries on 429, 5xx, timeouts and connection errors.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::Retryable;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, OpenAiErrorBody};
use crate::types::{
    Batch, BatchListQuery, CreateBatchRequest, DeletedFile, FileListQuery, FileObject, List,
};
use crate::{ClientConfig, Error, Result};

/// The most of a body kept in an error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An OpenAI (or OpenAI-compatible) API client. Cheap to clone.
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<OpenAiClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("batchbeam/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OpenAiClient {
            http,
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> RequestBuilder {
        let url = format!("{}{path}", self.config.base_url);
        let mut headers = HeaderMap::new();
        if let Ok(mut auth) =
            HeaderValue::from_str(&format!("Bearer {}", self.config.api_key.expose()))
        {
            auth.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(org) = &self.config.organization
            && let Ok(v) = HeaderValue::from_str(org)
        {
            headers.insert("OpenAI-Organization", v);
        }
        if let Some(project) = &self.config.project
            && let Ok(v) = HeaderValue::from_str(project)
        {
            headers.insert("OpenAI-Project", v);
        }
        self.http
            .request(method, url)
            .headers(headers)
            .timeout(timeout)
    }

    /// Sends one request and turns a non-2xx answer into [`Error::Api`].
    async fn send(&self, method: Method, path: &str, req: RequestBuilder) -> Result<Response> {
        self.check_key()?;
        let started = std::time::Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| transport(method.as_str(), path, &e))?;
        let status = resp.status();
        tracing::debug!(
            method = method.as_str(),
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "openai request"
        );
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.unwrap_or_default();
        let body = truncate_body(&bytes);
        Err(Error::Api(Box::new(ApiError {
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            status: status.as_u16(),
            error: OpenAiErrorBody::parse(&body),
            body,
            retry_after,
        })))
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        req: RequestBuilder,
    ) -> Result<T> {
        let resp = self.send(method.clone(), path, req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(method.as_str(), path, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            message: e.to_string(),
            body: truncate_body(&bytes),
        })
    }

    /// Refuses to send anything without a key: it could only be answered with a 401.
    fn check_key(&self) -> Result<()> {
        if self.config.api_key.is_empty() {
            return Err(Error::Config(
                "no API key (OPENAI_API_KEY is not set)".to_owned(),
            ));
        }
        Ok(())
    }

    /// Tells the configured [`crate::RetryHook`] (and tracing) that attempt `attempt` failed
    /// with `e` and the next one follows in `delay`.
    pub(crate) fn notify_retry(&self, e: &Error, attempt: usize, delay: Duration) {
        tracing::warn!(error = %e, attempt, delay_ms = delay.as_millis() as u64, "retrying");
        if let Some(hook) = &self.config.on_retry {
            hook.call(&crate::RetryNotice {
                error: e.to_string(),
                attempt,
                attempts: self.config.retry.max_retries + 1,
                delay,
            });
        }
    }

    /// Runs `op` with the configured retry policy: retried on retryable errors
    /// ([`Error::is_retryable`]), waiting as long as `Retry-After` asks (capped) or else a
    /// jittered exponential backoff.
    pub async fn retrying<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = self.config.retry;
        let mut attempt = 0;
        op.retry(policy.backoff())
            .sleep(tokio::time::sleep)
            .when(Error::is_retryable)
            .adjust(move |e, delay| {
                let delay = delay?;
                Some(match e.retry_after() {
                    Some(asked) => asked.min(policy.max_retry_after),
                    None => delay,
                })
            })
            .notify(|e, delay| {
                attempt += 1;
                self.notify_retry(e, attempt, delay);
            })
            .await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.retrying(|| {
            let req = self
                .request(Method::GET, path, self.config.timeout)
                .query(query);
            self.send_json(Method::GET, path, req)
        })
        .await
    }

    // ---- Files ----

    /// Uploads a file from disk, streamed, as multipart fields `purpose` and `file` (with
    /// `filename`). Retried; see [`OpenAiClient::upload_file_once`] for one attempt.
    pub async fn upload_file(
        &self,
        path: &Path,
        filename: &str,
        purpose: &str,
    ) -> Result<FileObject> {
        self.retrying(|| self.upload_file_once(path, filename, purpose))
            .await
    }

    /// One upload attempt, no retry: for callers that look the file up before trying again.
    pub async fn upload_file_once(
        &self,
        path: &Path,
        filename: &str,
        purpose: &str,
    ) -> Result<FileObject> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().await.map_err(|e| Error::io(path, e))?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(filename.to_owned())
            .mime_str("application/jsonl")
            .map_err(|e| Error::Config(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_owned())
            .part("file", part);
        let req = self
            .request(Method::POST, "/files", self.config.transfer_timeout)
            .multipart(form);
        self.send_json(Method::POST, "/files", req).await
    }

    /// `GET /files/{id}`.
    pub async fn retrieve_file(&self, file_id: &str) -> Result<FileObject> {
        self.get_json(&format!("/files/{file_id}"), &[]).await
    }

    /// `GET /files` with `purpose`, `limit`, `order` and `after`: one page.
    pub async fn list_files(&self, query: &FileListQuery) -> Result<List<FileObject>> {
        let mut q = Vec::new();
        if let Some(p) = &query.purpose {
            q.push(("purpose", p.clone()));
        }
        if let Some(l) = query.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(o) = &query.order {
            q.push(("order", o.clone()));
        }
        if let Some(a) = &query.after {
            q.push(("after", a.clone()));
        }
        self.get_json("/files", &q).await
    }

    /// `DELETE /files/{id}`.
    pub async fn delete_file(&self, file_id: &str) -> Result<DeletedFile> {
        let path = format!("/files/{file_id}");
        self.retrying(|| {
            let req = self.request(Method::DELETE, &path, self.config.timeout);
            self.send_json(Method::DELETE, &path, req)
        })
        .await
    }

    /// Streams `GET /files/{id}/content` to `dest` (through a `.part` file beside it, renamed when
    /// complete).
    /// A download shorter than its `Content-Length` is an error and is retried. Returns the bytes
    /// written.
    pub async fn download_file(&self, file_id: &str, dest: &Path) -> Result<u64> {
        self.retrying(|| self.download_file_once(file_id, dest))
            .await
    }

    async fn download_file_once(&self, file_id: &str, dest: &Path) -> Result<u64> {
        let path = format!("/files/{file_id}/content");
        let req = self.request(Method::GET, &path, self.config.transfer_timeout);
        let resp = self.send(Method::GET, &path, req).await?;
        let expected = resp.content_length();
        // A name of its own, so that two downloads of one file never write the same bytes.
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(format!(".{}.part", ulid::Ulid::new()));
        let tmp = std::path::PathBuf::from(tmp);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io(&tmp, e))?;
        let mut received = 0u64;
        let mut stream = resp.bytes_stream();
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    out.write_all(&bytes)
                        .await
                        .map_err(|e| Error::io(&tmp, e))?;
                    received += bytes.len() as u64;
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        out.flush().await.map_err(|e| Error::io(&tmp, e))?;
        out.sync_all().await.map_err(|e| Error::io(&tmp, e))?;
        drop(out);
        match (expected, broken) {
            (Some(expected), _) if received != expected => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(Error::Truncated {
                    file_id: file_id.to_owned(),
                    received,
                    expected,
                });
            }
            (_, Some(e)) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(transport("GET", &path, &e));
            }
            _ => {}
        }
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(|e| Error::io(dest, e))?;
        Ok(received)
    }

    // ---- Batches ----

    /// `POST /batches`, retried on retryable errors.
    ///
    /// A retried create may create a second batch when the first answer was lost; the
    /// [`crate::BatchJobManager`] uses [`OpenAiClient::create_batch_once`] and looks the batch up
    /// by its metadata before trying again.
    pub async fn create_batch(&self, request: &CreateBatchRequest) -> Result<Batch> {
        self.retrying(|| self.create_batch_once(request)).await
    }

    /// One `POST /batches` attempt, no retry.
    pub async fn create_batch_once(&self, request: &CreateBatchRequest) -> Result<Batch> {
        let req = self
            .request(Method::POST, "/batches", self.config.timeout)
            .json(request);
        self.send_json(Method::POST, "/batches", req).await
    }

    /// `GET /batches/{id}`.
    pub async fn retrieve_batch(&self, batch_id: &str) -> Result<Batch> {
        self.get_json(&format!("/batches/{batch_id}"), &[]).await
    }

    /// `POST /batches/{id}/cancel` (cancelling twice is harmless).
    pub async fn cancel_batch(&self, batch_id: &str) -> Result<Batch> {
        let path = format!("/batches/{batch_id}/cancel");
        self.retrying(|| {
            let req = self.request(Method::POST, &path, self.config.timeout);
            self.send_json(Method::POST, &path, req)
        })
        .await
    }

    /// `GET /batches` with `limit` and `after`: one page, newest first.
    pub async fn list_batches(&self, query: &BatchListQuery) -> Result<List<Batch>> {
        let mut q = Vec::new();
        if let Some(l) = query.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(a) = &query.after {
            q.push(("after", a.clone()));
        }
        self.get_json("/batches", &q).await
    }

    // ---- Synchronous endpoints ----

    /// `POST /chat/completions`; the response body as JSON.
    pub async fn chat_completion(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<serde_json::Value> {
        self.post_json("/chat/completions", request).await
    }

    /// `POST /images/generations`; the response body as JSON.
    pub async fn image_generation(
        &self,
        request: &ImageGenerationRequest,
    ) -> Result<serde_json::Value> {
        self.post_json("/images/generations", request).await
    }

    async fn post_json<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value> {
        self.retrying(|| {
            let req = self
                .request(Method::POST, path, self.config.timeout)
                .json(body);
            self.send_json(Method::POST, path, req)
        })
        .await
    }
}

/// A reqwest error as text: its message and its sources (URLs, never headers).
fn transport(method: &str, path: &str, e: &reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport {
        method: method.to_owned(),
        path: path.to_owned(),
        kind,
        message,
    }
}

fn truncate_body(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_ERROR_BODY)];
    String::from_utf8_lossy(cut).into_owned()
}

/// `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_reads_ms_seconds_and_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&headers(&[("retry-after", &later)])).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
