//! The HTTP surface: the guide's job API under `/api`, the WebSocket of a job's events,
//! `/health`, `/ready`, `/metrics` and `/api/openapi.json`; bearer-token auth; every error
//! as OpenAI's error body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use providers::ApiToken;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jobs::{App, BeamSearchRequest};
use crate::store::{JobRow, JobStatus};
use crate::view::{ImageUrls, SessionTree};

/// JSON in, with every rejection as an [`ApiError`]: a body that is not JSON is a 400 saying
/// where it breaks; one of the wrong shape is a 400 whose `param` is the field at fault (an
/// unknown field, a missing one, or the one holding a value of the wrong type), never a value;
/// another content type is a 415; a body over the limit is a 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// `application/json`, or another `application/…+json`, with or without parameters.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|s| s.ends_with("+json"))
}

/// `bytes`, a JSON object, as a `T`, or the 400 that names what is wrong and where. (serde
/// would also read a struct from an array of its fields in order: not a form this API takes.)
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let e = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            return de.end().map(|()| v).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("The request body is not valid JSON: {e}"),
                )
            });
        }
        Err(e) => e,
    };
    let inner = e.inner();
    if !inner.is_data() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The request body is not valid JSON: {inner}"),
        ));
    }
    let message = inner.to_string();
    // The field: the first step of the path to the fault, else the one serde names
    // ("unknown field `x`", "missing field `x`").
    let field = e
        .path()
        .iter()
        .next()
        .and_then(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .or_else(|| {
            ["unknown field `", "missing field `"]
                .iter()
                .find_map(|lead| {
                    let rest = message.strip_prefix(lead)?;
                    Some(rest[..rest.find('`')?].to_owned())
                })
        });
    let path = e.path().to_string();
    let text = if path == "." {
        message
    } else {
        format!("{path}: {message}")
    };
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, text);
    error.body.error.param = field;
    Err(error)
}

/// `202` answer of `POST /api/beam-search`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The job.
    pub job_id: String,
    /// The batch of the stage now waiting (null until one is out).
    pub batch_id: Option<String>,
    /// Every batch of the job so far.
    pub batch_ids: Vec<String>,
    /// How long its batches may take.
    pub estimated_wait_hours: f64,
    /// What it is expected to cost (USD, list prices).
    pub estimated_cost: f64,
    /// The forecast behind `estimatedCost`: per operation and tier, and wall time per tier.
    pub forecast: ForecastView,
}

/// What a job is expected to make and cost before it sends anything.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastView {
    /// USD in all (list prices, on the tiers it runs on).
    pub cost: f64,
    /// Calls in all.
    pub calls: u64,
    /// Images in all.
    pub images: u64,
    /// Expected wall time in hours (stages one after another).
    pub hours: f64,
    /// Per operation and tier.
    pub by_operation: Vec<ForecastLine>,
    /// Stages and expected hours per tier.
    pub by_tier: Vec<ForecastWait>,
}

/// One operation on one tier of a forecast.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastLine {
    /// The operation.
    pub operation: String,
    /// The tier.
    pub tier: String,
    /// Calls.
    pub calls: u64,
    /// Input tokens (typical figures).
    pub input_tokens: u64,
    /// Output tokens (typical figures).
    pub output_tokens: u64,
    /// Images.
    pub images: u64,
    /// USD.
    pub cost: f64,
}

/// The stages a forecast puts on one tier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastWait {
    /// The tier.
    pub tier: String,
    /// Stages on it.
    pub stages: usize,
    /// Expected hours.
    pub hours: f64,
}

impl ForecastView {
    fn of(f: &orchestrator::estimate::Forecast) -> ForecastView {
        ForecastView {
            cost: f.cost,
            calls: f.calls,
            images: f.images,
            hours: f.seconds / 3600.0,
            by_operation: (f.rows.iter())
                .map(|r| ForecastLine {
                    operation: r.operation.as_str().to_owned(),
                    tier: r.tier.as_str().to_owned(),
                    calls: r.calls,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    images: r.images,
                    cost: r.cost,
                })
                .collect(),
            by_tier: (f.wait.iter())
                .map(|w| ForecastWait {
                    tier: w.tier.as_str().to_owned(),
                    stages: w.stages,
                    hours: w.seconds / 3600.0,
                })
                .collect(),
        }
    }
}

/// The best candidate of a job.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestView {
    /// Candidate id.
    pub id: String,
    /// Its combined prompt.
    pub prompt: String,
    /// Its rating.
    pub rating: Option<f64>,
    /// Its image.
    pub image_url: Option<String>,
}

/// A job's cost.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostView {
    /// USD spent.
    pub total: f64,
    /// USD all on standard.
    pub all_standard: f64,
    /// The difference.
    pub saved: f64,
    /// What it was forecast to cost before it sent anything.
    #[serde(default)]
    pub forecast: Option<f64>,
    /// Why it ended before its last stage (its budget), when it did.
    #[serde(default)]
    pub stopped: Option<String>,
}

/// `GET /api/job/{jobId}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    pub job_id: String,
    /// The idea it searches a prompt for, as it was submitted.
    pub prompt: String,
    /// `queued`, `running`, `waiting`, `completed`, `failed`, `cancelled`.
    pub status: JobStatus,
    /// The session, once started.
    pub session_id: Option<String>,
    /// Stages finished.
    pub stage: i64,
    /// Stages in the plan.
    pub stages: i64,
    /// The iteration it is in.
    pub iteration: i64,
    /// 0..1.
    pub progress: f64,
    /// The batch it waits on now.
    pub batch_id: Option<String>,
    /// Every batch so far.
    pub batch_ids: Vec<String>,
    /// When it should be done (RFC 3339).
    pub estimated_completion_time: Option<String>,
    /// The best candidate so far.
    pub best: Option<BestView>,
    /// What it cost so far (once finished).
    pub cost: Option<CostView>,
    /// What it is expected to make and cost, from its request.
    pub forecast: Option<ForecastView>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// The server instance running it now (`--instance-id`), while one holds it.
    pub owner: Option<String>,
    /// Until when that instance holds it unless it renews (RFC 3339).
    pub lease_until: Option<String>,
    /// Times another instance took it over after its owner's lease expired.
    pub takeovers: i64,
}

/// `GET /api/jobs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    /// Jobs, newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only jobs of this status.
    pub status: Option<String>,
    /// At most this many (1-500, 50).
    pub limit: Option<String>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

fn job_view(app: &App, r: &JobRow) -> JobView {
    let request = serde_json::from_str::<BeamSearchRequest>(&r.request).ok();
    let progress = match (r.status, r.stages) {
        (JobStatus::Completed, _) => 1.0,
        (_, 0) => 0.0,
        (_, n) => (r.stage as f64 / n as f64).clamp(0.0, 1.0),
    };
    let eta = if r.status.is_final() {
        r.finished_at_ms
    } else {
        let left = (r.stages - r.stage).max(0);
        let per_stage_ms = match (r.started_at_ms, r.stage) {
            (Some(start), done) if done > 0 => (providers::now_ms() - start) / done,
            _ => {
                let batch = request.as_ref().and_then(|q| q.use_batch).unwrap_or(false);
                if batch { 3_600_000 } else { 60_000 }
            }
        };
        let stages_left = if r.stages == 0 { 9 } else { left };
        Some(providers::now_ms() + stages_left * per_stage_ms)
    };
    let forecast = request
        .as_ref()
        .and_then(|q| q.check(q.use_batch.unwrap_or(false)).ok())
        .map(|checked| ForecastView::of(&app.forecast(&checked)));
    JobView {
        job_id: r.id.clone(),
        prompt: request.map(|q| q.prompt).unwrap_or_default(),
        status: r.status,
        session_id: r.session_id.clone(),
        stage: r.stage,
        stages: r.stages,
        iteration: r.iteration,
        progress,
        batch_id: r.batch_id.clone(),
        batch_ids: r.batch_ids.clone(),
        estimated_completion_time: eta.map(crate::events::rfc3339),
        best: r.best.clone().and_then(|b| serde_json::from_value(b).ok()),
        cost: r.cost.clone().and_then(|c| serde_json::from_value(c).ok()),
        forecast,
        error: r.error.clone(),
        created_at: crate::events::rfc3339(r.created_at_ms),
        owner: r.owner.clone(),
        lease_until: r.lease_until.map(crate::events::rfc3339),
        takeovers: r.takeovers,
    }
}

/// Job ids are `j_` and 26 lowercase letters and digits.
fn valid_job_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with("j_")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

async fn job_or_404(app: &App, id: &str) -> Result<JobRow, ApiError> {
    if !valid_job_id(id) {
        return Err(ApiError::not_found("job", id));
    }
    app.jobs
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("job", id))
}

impl From<crate::Error> for Box<ApiError> {
    fn from(e: crate::Error) -> Self {
        Box::new(ApiError::from(e))
    }
}

#[utoipa::path(post, path = "/api/beam-search", request_body = BeamSearchRequest,
    responses((status = 202, body = Accepted), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn beam_search(
    State(app): State<Arc<App>>,
    ApiJson(mut req): ApiJson<BeamSearchRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let checked = req.check(app.stack.factory.config().batch.enabled)?;
    req.use_batch = Some(checked.use_batch);
    let forecast = app.forecast(&checked);
    let estimated_cost = forecast.cost;
    let id = format!("j_{}", ulid::Ulid::new().to_string().to_lowercase());
    let text = serde_json::to_string(&req)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let row = JobRow::new(id.clone(), text, estimated_cost, providers::now_ms());
    app.jobs.save(&row).await?;
    app.events
        .publish(
            &id,
            "job_queued",
            match json!({"prompt": req.prompt, "useBatch": checked.use_batch,
                "estimatedCost": estimated_cost})
            {
                Value::Object(m) => m,
                _ => Default::default(),
            },
        )
        .await?;
    app.enqueue(&id);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: id,
            batch_id: None,
            batch_ids: Vec::new(),
            estimated_wait_hours: app.wait_hours(checked.use_batch),
            estimated_cost,
            forecast: ForecastView::of(&forecast),
        }),
    ))
}

#[utoipa::path(get, path = "/api/job/{jobId}", params(("jobId" = String, Path, description = "The job")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let row = job_or_404(&app, &id).await?;
    Ok(Json(job_view(&app, &row)))
}

#[utoipa::path(get, path = "/api/jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_jobs(
    State(app): State<Arc<App>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::bad_param(
                "status",
                format!(
                    "'{s}' is not one of queued, running, waiting, completed, failed, cancelled"
                ),
            )
        })?),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => return Err(ApiError::bad_param("limit", format!("'{l}' is not 1-500"))),
        },
    };
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let bad =
                || ApiError::bad_param("cursor", format!("'{c}' is not a cursor this server gave"));
            let (ms, id) = c.split_once('.').ok_or_else(bad)?;
            let ms = ms.parse::<i64>().map_err(|_| bad())?;
            if !valid_job_id(id) {
                return Err(bad());
            }
            Some((ms, id.to_owned()))
        }
    };
    let rows = app.jobs.list(status, limit + 1, after).await?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let next_cursor = if more {
        rows.last().map(|r| format!("{}.{}", r.created_at_ms, r.id))
    } else {
        None
    };
    Ok(Json(JobList {
        jobs: rows.iter().map(|r| job_view(&app, r)).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/job/{jobId}/cancel", params(("jobId" = String, Path, description = "The job")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn cancel_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let row = job_or_404(&app, &id).await?;
    if row.status.is_final() {
        return Ok(Json(job_view(&app, &row)));
    }
    // The flag in the database first: the instance running the job (this one or another)
    // stops it at its next lease renewal; here, at once.
    let Some((row, changed)) = app.jobs.cancel(&id, providers::now_ms()).await? else {
        return Err(ApiError::not_found("job", &id));
    };
    app.cancel_running(&id);
    if !changed {
        return Ok(Json(job_view(&app, &row)));
    }
    let mut cancelled = Vec::new();
    for b in &row.batch_ids {
        if let Ok(Some(info)) = app.stack.batch(b).await
            && !info.settled
            && app.stack.cancel_batch(b).await.is_ok()
        {
            cancelled.push(b.clone());
        }
    }
    app.events
        .publish(
            &id,
            "job_cancelled",
            match json!({"cancelledBatchIds": cancelled}) {
                Value::Object(m) => m,
                _ => Default::default(),
            },
        )
        .await?;
    Ok(Json(job_view(&app, &row)))
}

/// An image file name as the sessions write them: letters, digits, `_`, `-`, one `.` and a
/// known extension. Anything else (`..`, a slash, a `%` left after decoding) is refused.
fn valid_image_name(file: &str) -> bool {
    let Some((stem, ext)) = file.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && stem.len() <= 128
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && ["png", "jpg", "jpeg", "webp"].contains(&ext)
}

#[utoipa::path(get, path = "/api/job/{jobId}/images/{file}",
    params(("jobId" = String, Path, description = "The job"), ("file" = String, Path, description = "The image file, e.g. i0c3.png")),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn image(
    State(app): State<Arc<App>>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !valid_image_name(&file) {
        return Err(ApiError::bad_param("file", "not an image file name").with_code("invalid_path"));
    }
    let row = job_or_404(&app, &id).await?;
    let Some(session) = row.session_id else {
        return Err(ApiError::not_found("image", &file));
    };
    let Some(srow) = app.sessions.session(&session).await? else {
        return Err(ApiError::not_found("image", &file));
    };
    let folder = srow.folder_path()?.join("images");
    let path = folder.join(&file);
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) => return Err(ApiError::not_found("image", &file)),
    };
    let mime = if file.ends_with(".png") {
        "image/png"
    } else if file.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    };
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

#[utoipa::path(get, path = "/api/job/{jobId}/tree", params(("jobId" = String, Path, description = "The job")),
    responses((status = 200, body = SessionTree), (status = 404, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tree(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<SessionTree>, ApiError> {
    let row = job_or_404(&app, &id).await?;
    let Some(session) = &row.session_id else {
        return Err(ApiError::not_found("session of job", &id).with_code("not_started"));
    };
    let Some(srow) = app.sessions.session(session).await? else {
        return Err(ApiError::not_found("session", session));
    };
    let tree = SessionTree::of_session(&srow, ImageUrls::Job(id.clone()))?
        .for_job(row.status.as_str(), app.simulated());
    Ok(Json(tree))
}

/// `GET /api/batch/{batchId}/results`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResultsView {
    /// OpenAI's status of the batch (or batchbeam's state before it has one).
    pub status: String,
    /// Whether its requests are all answered or failed.
    pub settled: bool,
    /// Requests in it, answered, failed.
    pub total: u64,
    /// Requests answered with a 2xx.
    pub completed: u64,
    /// Requests answered with an error.
    pub failed: u64,
    /// One line per request once settled (bodies left out).
    pub results: Vec<BatchLineView>,
}

/// One request's result in a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchLineView {
    /// The request's custom id.
    pub custom_id: String,
    /// Its HTTP status, when it ran.
    pub status_code: Option<u16>,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Its error.
    pub error: Option<String>,
}

fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[utoipa::path(get, path = "/api/batch/{batchId}/results", params(("batchId" = String, Path, description = "OpenAI's batch id or batchbeam's record id")),
    responses((status = 200, body = BatchResultsView), (status = 404, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn batch_results(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<BatchResultsView>, ApiError> {
    if !valid_batch_id(&id) {
        return Err(ApiError::not_found("batch", &id));
    }
    let info = app
        .stack
        .batch(&id)
        .await
        .map_err(crate::Error::from)?
        .ok_or_else(|| ApiError::not_found("batch", &id))?;
    let lines = if info.settled {
        app.stack
            .batch_lines(&id)
            .await
            .map_err(crate::Error::from)?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Json(BatchResultsView {
        status: info.remote_status.clone().unwrap_or(info.state.clone()),
        settled: info.settled,
        total: info.total,
        completed: info.completed,
        failed: info.failed,
        results: lines
            .into_iter()
            .map(|l| BatchLineView {
                custom_id: l.custom_id,
                status_code: l.status_code,
                succeeded: l.succeeded,
                error: l.error,
            })
            .collect(),
    }))
}

/// `GET /api/costs`: every session's calls, per operation and tier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostsView {
    /// USD spent.
    pub total: f64,
    /// USD the same calls cost all on standard.
    pub all_standard: f64,
    /// The difference.
    pub saved: f64,
    /// The models were simulated (nothing billed; list prices).
    pub simulated: bool,
    /// Sessions counted.
    pub sessions: u64,
    /// Per operation and tier.
    pub by_operation: Vec<crate::view::CostLine>,
}

/// Every session's cost, summed per operation and tier.
pub(crate) async fn costs_of(app: &App) -> Result<CostsView, crate::Error> {
    let mut lines: BTreeMap<(String, String), crate::view::CostLine> = BTreeMap::new();
    let (mut total, mut standard, mut sessions) = (0.0, 0.0, 0);
    for row in app.sessions.sessions().await? {
        let Ok(state) = row.search_state() else {
            continue;
        };
        sessions += 1;
        let report = state.costs.report();
        total += report.total.cost;
        standard += report.total.standard_cost;
        for r in &report.rows {
            let key = (r.operation.as_str().to_owned(), r.tier.as_str().to_owned());
            let line = lines.entry(key.clone()).or_insert(crate::view::CostLine {
                operation: key.0,
                tier: key.1,
                calls: 0,
                cost: 0.0,
                standard_cost: 0.0,
            });
            line.calls += r.totals.calls;
            line.cost += r.totals.cost;
            line.standard_cost += r.totals.standard_cost;
        }
    }
    Ok(CostsView {
        total,
        all_standard: standard,
        saved: standard - total,
        simulated: app.simulated(),
        sessions,
        by_operation: lines.into_values().collect(),
    })
}

#[utoipa::path(get, path = "/api/costs",
    responses((status = 200, body = CostsView), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn costs(State(app): State<Arc<App>>) -> Result<Json<CostsView>, ApiError> {
    Ok(Json(costs_of(&app).await?))
}

/// `GET /health`, `GET /ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Workers running (ready only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        workers: None,
    })
}

#[utoipa::path(get, path = "/ready", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn ready(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    let workers = app.counters.workers_up.load(Ordering::SeqCst);
    let ok = app.jobs.ping().await.is_ok() && workers == app.workers;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ok { "ready" } else { "not_ready" }.to_owned(),
            workers: Some(workers),
        }),
    )
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text = crate::metrics::render(&app).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// Query of the WebSocket: browsers cannot set headers on one, so the token may come here.
#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

#[utoipa::path(get, path = "/api/job/{jobId}/events", params(("jobId" = String, Path, description = "The job")),
    responses((status = 101, description = "WebSocket: every stored event of the job, then live ones"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let row = job_or_404(&app, &id).await?;
    let ws = ws.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    Ok(ws.on_upgrade(move |socket| follow(app, row.id, socket)))
}

/// Replays the job's stored events, then forwards new ones, live when the job runs on this
/// instance and read from the database otherwise (another instance runs it: its events reach
/// this one only through the store); closes after the last.
async fn follow(app: Arc<App>, job: String, mut socket: WebSocket) {
    let mut live = app.events.subscribe(&job);
    let mut last = 0;
    // Sends the stored events after `last`; whether the job's stream ended.
    async fn catch_up(
        app: &App,
        job: &str,
        last: &mut i64,
        socket: &mut WebSocket,
    ) -> Option<bool> {
        let stored = app.jobs.events(job, *last).await.ok()?;
        let mut ended = false;
        for e in stored {
            *last = e.seq;
            ended |= crate::events::is_final(&e.body);
            socket.send(WsMessage::Text(e.body.into())).await.ok()?;
        }
        Some(ended)
    }
    match catch_up(&app, &job, &mut last, &mut socket).await {
        Some(false) => {}
        Some(true) => {
            let _ = socket.send(WsMessage::Close(None)).await;
            return;
        }
        None => return,
    }
    let mut poll = tokio::time::interval(app.wait_poll.max(Duration::from_millis(50)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live_open = true;
    loop {
        tokio::select! {
            msg = live.recv(), if live_open => match msg {
                Ok(m) => {
                    if m.seq <= last {
                        continue;
                    }
                    if m.seq > last + 1 {
                        // One came from elsewhere in between: read it from the store first.
                        match catch_up(&app, &job, &mut last, &mut socket).await {
                            Some(true) => {
                                let _ = socket.send(WsMessage::Close(None)).await;
                                return;
                            }
                            Some(false) => {}
                            None => return,
                        }
                        if m.seq <= last {
                            continue;
                        }
                    }
                    last = m.seq;
                    if socket.send(WsMessage::Text(m.text.into())).await.is_err() {
                        return;
                    }
                    if m.last {
                        let _ = socket.send(WsMessage::Close(None)).await;
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                // The job ended here (its channel is gone): the store has the rest.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => live_open = false,
            },
            _ = poll.tick() => match catch_up(&app, &job, &mut last, &mut socket).await {
                Some(true) => {
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
                Some(false) => {}
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Bearer-token auth (constant-time compare); the WebSocket may carry it as `?token=`.
async fn auth(
    State(token): State<Option<ApiToken>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = token else {
        return Ok(next.run(req).await);
    };
    let bearer: Option<String> = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let from_query: Option<String> = if req.uri().path().ends_with("/events") {
        req.uri().query().and_then(serde_urlencoded_token)
    } else {
        None
    };
    let given = bearer.or(from_query);
    match given {
        Some(g) if token.matches(&g) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not this server's",
        )
        .with_code("invalid_api_key")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs `Authorization: Bearer <BATCHBEAM_API_TOKEN>`",
        )
        .with_code("missing_api_key")),
    }
}

/// The `token` of a query string.
fn serde_urlencoded_token(q: &str) -> Option<String> {
    axum::extract::Query::<WsQuery>::try_from_uri(&format!("/?{q}").parse().ok()?)
        .ok()
        .and_then(|Query(w)| w.token)
}

/// Every error response becomes OpenAI's error body (axum's own 404, 405, 413, 408... are
/// text), and is counted.
async fn openai_errors(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    app.counters.api_errors.fetch_add(1, Ordering::Relaxed);
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut e = ApiError::new(status, message);
    e.body.error.code = Some(
        match status.as_u16() {
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            413 => "request_too_large",
            415 => "unsupported_media_type",
            _ => "error",
        }
        .to_owned(),
    );
    let mut out = e.into_response();
    // Keep `Allow` on a 405.
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route").with_code("not_found")
}

/// The router: `/api/*` behind the token, `/health`, `/ready`, `/metrics` open.
pub fn router(app: Arc<App>, config: &crate::ServerConfig) -> Router {
    let api = Router::new()
        .route("/api/beam-search", post(beam_search))
        .route("/api/jobs", get(list_jobs))
        .route("/api/job/{jobId}", get(get_job))
        .route("/api/job/{jobId}/cancel", post(cancel_job))
        .route("/api/job/{jobId}/images/{file}", get(image))
        .route("/api/job/{jobId}/tree", get(tree))
        .route("/api/job/{jobId}/events", get(events))
        .route("/api/batch/{batchId}/results", get(batch_results))
        .route("/api/costs", get(costs))
        .route("/api/openapi.json", get(crate::openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            config.token.clone(),
            auth,
        ));
    let open = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    // The dashboard: GET / and /assets/{file}, open (the page asks for the token itself).
    Router::new()
        .merge(api)
        .merge(open)
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .with_state(app.clone())
        .layer(axum::extract::DefaultBodyLimit::max(config.body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(app, openai_errors))
}
