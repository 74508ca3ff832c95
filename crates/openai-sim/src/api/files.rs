//! `/v1/files`: upload (streamed to disk), list, retrieve, download (streamed from disk), delete.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{TruncateDownload, bad_query, int_param, json_value};
use crate::clock::secs;
use crate::error::ApiError;
use crate::files::{DOWNLOADABLE, FileObject, THIRTY_DAYS, UPLOAD_PURPOSES};
use crate::state::{Sim, blocking, lock};

#[derive(Serialize)]
struct FileList<'a> {
    object: &'static str,
    data: Vec<FileObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
    object: &'static str,
    deleted: bool,
}

fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Could not parse multipart form: {e}"))
}

fn too_large() -> ApiError {
    ApiError::invalid("File is too large.")
}

fn bad_batch_format() -> ApiError {
    ApiError::invalid("Invalid file format for Batch API. Must be .jsonl").with_detail()
}

/// The anchor and seconds of an `expires_after` part sent as JSON, as text like the form fields.
fn expires_after_json(text: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ApiError::bad_json_body().param("expires_after"))?;
    let serde_json::Value::Object(obj) = &value else {
        return Err(ApiError::invalid_type("expires_after", "an object", &value));
    };
    let anchor = match obj.get("anchor") {
        None => None,
        Some(serde_json::Value::String(a)) => Some(a.clone()),
        Some(other) => {
            return Err(ApiError::invalid_type(
                "expires_after.anchor",
                "a string",
                other,
            ));
        }
    };
    let seconds = match obj.get("seconds") {
        None => None,
        Some(v) if v.is_i64() => Some(v.to_string()),
        Some(other) => {
            return Err(ApiError::invalid_type(
                "expires_after.seconds",
                "an integer",
                other,
            ));
        }
    };
    Ok((anchor, seconds))
}

/// `POST /v1/files`.
pub(super) async fn upload(
    State(sim): State<Arc<Sim>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(multipart_error)?;
    let mut purpose: Option<String> = None;
    let mut anchor: Option<String> = None;
    let mut seconds: Option<String> = None;
    let mut stored: Option<(tempfile::NamedTempFile, String, u64)> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "purpose" => purpose = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[anchor]" => anchor = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[seconds]" => {
                seconds = Some(field.text().await.map_err(multipart_error)?)
            }
            // The spec's own encoding of the object: one JSON part.
            "expires_after" => {
                let text = field.text().await.map_err(multipart_error)?;
                (anchor, seconds) = expires_after_json(&text)?;
            }
            "file" => {
                let filename = field.file_name().unwrap_or("upload").to_owned();
                let tmp =
                    tempfile::NamedTempFile::new_in(&sim.data_dir).map_err(ApiError::internal)?;
                let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(ApiError::internal)?);
                let mut bytes = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    bytes += chunk.len() as u64;
                    if bytes > sim.config.max_file_bytes {
                        return Err(too_large());
                    }
                    out.write_all(&chunk).await.map_err(ApiError::internal)?;
                }
                out.flush().await.map_err(ApiError::internal)?;
                stored = Some((tmp, filename, bytes));
            }
            _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
        }
    }
    let purpose = purpose.ok_or_else(|| ApiError::missing("purpose"))?;
    if !UPLOAD_PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(format!(
            "'{purpose}' is not one of [{}] - 'purpose'",
            UPLOAD_PURPOSES.map(|p| format!("'{p}'")).join(", ")
        ))
        .param("purpose"));
    }
    let (tmp, filename, bytes) = stored.ok_or_else(|| ApiError::missing("file"))?;
    let now = sim.now();
    let created_at = secs(now);
    let expires_at = match (anchor, seconds) {
        (None, None) => (purpose == "batch").then_some(created_at + THIRTY_DAYS),
        (anchor, seconds) => {
            let anchor = anchor.unwrap_or_else(|| "created_at".to_owned());
            if anchor != "created_at" {
                return Err(ApiError::invalid_value(
                    "expires_after.anchor",
                    &anchor,
                    &["created_at"],
                ));
            }
            let raw = seconds.ok_or_else(|| ApiError::missing("expires_after.seconds"))?;
            let s = int_param("expires_after.seconds", Some(&raw), 0, 3600, THIRTY_DAYS)?;
            Some(created_at + s)
        }
    };
    if purpose == "batch" {
        let has_ext = filename
            .rsplit_once('.')
            .is_some_and(|(stem, _)| !stem.is_empty());
        if has_ext && !filename.to_ascii_lowercase().ends_with(".jsonl") {
            return Err(bad_batch_format());
        }
        if bytes > sim.config.max_batch_file_bytes {
            return Err(too_large());
        }
        let path = tmp.path().to_owned();
        let first_line_ok = tokio::task::spawn_blocking(move || first_line_is_json(&path))
            .await
            .map_err(ApiError::internal)?;
        if !first_line_ok {
            return Err(bad_batch_format());
        }
    }
    let id = lock(&sim.ids).file();
    let meta = {
        let mut files = lock(&sim.files);
        tmp.persist(files.path_of(&id))
            .map_err(|e| ApiError::internal(e.error))?;
        files.insert(id, &purpose, &filename, bytes, created_at, expires_at)
    };
    lock(&sim.counters).files_uploaded += 1;
    Ok(json_value(&meta.object(), true))
}

/// Whether the file's first non-blank line is JSON: LS reports that empty or malformed JSONL is
/// refused at upload, while bad lines further down only fail the batch.
fn first_line_is_json(path: &std::path::Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut r = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(_) if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(_) => return serde_json::from_slice::<serde_json::Value>(&buf).is_ok(),
        }
    }
}

/// `GET /v1/files`.
pub(super) async fn list(
    State(sim): State<Arc<Sim>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = int_param("limit", q.get("limit"), 10_000, 1, 10_000)? as usize;
    let ascending = match q.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(ApiError::invalid_value("order", other, &["asc", "desc"])),
    };
    let now = secs(sim.now());
    let (page, has_more) = lock(&sim.files).list(
        q.get("purpose").map(String::as_str),
        ascending,
        q.get("after").map(String::as_str),
        limit,
        now,
    );
    let list = FileList {
        object: "list",
        data: page.iter().map(|f| f.object()).collect(),
        first_id: page.first().map(|f| f.id.as_str()),
        last_id: page.last().map(|f| f.id.as_str()),
        has_more,
    };
    Ok(json_value(&list, true))
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::invalid(format!("Invalid path: {e}")))
}

/// `GET /v1/files/{id}`.
pub(super) async fn retrieve(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let now = secs(sim.now());
    let files = lock(&sim.files);
    let meta = files
        .get(&id, now)
        .ok_or_else(|| ApiError::not_found_file(&id))?;
    Ok(json_value(&meta.object(), true))
}

/// `DELETE /v1/files/{id}`.
pub(super) async fn delete(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let now = secs(sim.now());
    {
        let mut files = lock(&sim.files);
        if files.get(&id, now).is_none() {
            return Err(ApiError::not_found_file(&id));
        }
        files.remove(&id);
    }
    lock(&sim.counters).files_deleted += 1;
    Ok(json_value(
        &Deleted {
            id: &id,
            object: "file",
            deleted: true,
        },
        true,
    ))
}

/// `GET /v1/files/{id}/content`: streamed from disk; cut short under the truncation fault.
pub(super) async fn content(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
    truncate: Option<Extension<TruncateDownload>>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    // Outputs of batches that ended a moment ago appear once the engine has caught up.
    blocking(&sim, |s| s.advance()).await?;
    let now = secs(sim.now());
    let (path, meta) = {
        let files = lock(&sim.files);
        let meta = files
            .get(&id, now)
            .ok_or_else(|| ApiError::not_found_file(&id))?
            .clone();
        (files.path_of(&id), meta)
    };
    if !DOWNLOADABLE.contains(&meta.purpose.as_str()) {
        return Err(ApiError::invalid(format!(
            "Not allowed to download files of purpose: {}",
            meta.purpose
        )));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found_file(&id))?;
    let len = meta.bytes;
    let body = if truncate.is_some() && len > 0 {
        lock(&sim.faults).count(crate::faults::FaultKind::TruncatedDownload.as_str());
        let half = tokio_util::io::ReaderStream::new(file.take(len / 2));
        // Wait so hyper flushes the headers and the first half, then fail the body: hyper drops
        // the connection short of its Content-Length.
        let abort = futures_util::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Err(std::io::Error::other("truncated by the simulator"))
        });
        Body::from_stream(futures_util::StreamExt::chain(half, abort))
    } else {
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        meta.filename.replace('"', "")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}
