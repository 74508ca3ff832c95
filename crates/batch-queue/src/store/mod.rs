//! The queue's tables: one row per request, one per batch record the queue submitted, one per
//! flush in flight. [`QueueStore`] is what the queue asks of them; [`QueueDb`] keeps them in the
//! process's database beside batch-client's records: [`SqliteQueueStore`] (migrations in
//! `crates/batch-queue/migrations/`) or [`PgQueueStore`] (`migrations-postgres/`, the same
//! versions), both recorded in their own history table ([`MIGRATIONS_TABLE`]) so that they
//! never meet batch-client's in `_sqlx_migrations`. All of the SQL is in `sql`, written once.

use std::collections::HashMap;
use std::future::Future;

use batch_format::{Endpoint, Usage};
use serde_json::Value;

use crate::{Completed, Error, RequestId, Result, Tier};

mod either;
mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use either::QueueDb;
pub(crate) use postgres::PgQueueStore;
pub(crate) use sqlite::SqliteQueueStore;

/// The history table of batch-queue's migrations (batch-client's is `_sqlx_migrations`): two
/// migration sets in one database, each checked only against its own history.
pub(crate) const MIGRATIONS_TABLE: &str = "_batch_queue_migrations";

/// Request states. `queued` is a request as enqueued: it waits for a flush, or rides in the
/// span (`queue_spans`) covering its `seq` in its group, `dispatching` while the span has no
/// record and `submitted` in the span's record once it has one (a flush writes one span row per
/// shard, never the request rows). The other states are the row's own: `pending` waits for a
/// flush (a retry, or a request put back by a flush that died before submitting); `dispatching`
/// is claimed by flush `dispatch_id` whose submit has not been recorded yet; `submitted` rides
/// in the batch record `record_id`; `standard` waits for the standard API; `done` and `failed`
/// are final (the only two read back by name; the SQL spells the others out).
pub(crate) mod state {
    pub(crate) const DONE: &str = "done";
    pub(crate) const FAILED: &str = "failed";
}

/// A group of requests: endpoint and model (`''` when the endpoint takes none).
pub(crate) type GroupKey = (Endpoint, String);

/// A request's id and result, to hand its waiter.
pub(crate) type Settled = (RequestId, Result<Completed>);

/// A request checked at enqueue, to store as pending.
#[derive(Debug)]
pub(crate) struct NewRequest {
    pub(crate) id: RequestId,
    pub(crate) operation: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) model: String,
    pub(crate) body: String,
}

/// Where a request must still be for a verdict to apply to it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Carrier<'a> {
    /// Riding in this batch-client record.
    Record(&'a str),
    /// Claimed by this flush, which has not recorded a submit.
    Dispatch(&'a str),
}

/// How one request of a settled record (or of a failed submit) ends up.
#[derive(Debug)]
pub(crate) enum Verdict {
    Done {
        body: String,
        usage: Option<Usage>,
    },
    /// It did not run (expired, cancelled, a failed batch) or failed in a way worth another
    /// try: retry in a later batch, else the standard API, else the error.
    Again(StoredError),
    /// OpenAI refused the request itself (a 4xx other than 408/409/429): the same request
    /// would be refused again on any tier.
    Final(StoredError),
}

/// One verdict to write: the request, what happened, and its batch ids when known (else the
/// stored ones are kept).
#[derive(Debug)]
pub(crate) struct VerdictFor {
    pub(crate) id: String,
    pub(crate) verdict: Verdict,
    pub(crate) batch_ids: Option<Vec<String>>,
}

/// How many retries a request gets and whether the standard API follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) max_retries: u32,
    pub(crate) fallback_to_standard: bool,
}

/// How [`QueueStore::apply_verdicts`] writes its verdicts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Apply<'a> {
    pub(crate) carrier: Carrier<'a>,
    pub(crate) policy: Policy,
    /// Count a batch attempt first (a submit that failed before any record carried them).
    pub(crate) count_attempt: bool,
    /// Mark the carrier's record settled in the same transaction.
    pub(crate) close_record: bool,
}

/// A request's final failure as stored in `error`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredError {
    pub(crate) tier: Tier,
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
}

impl StoredError {
    pub(crate) fn into_error(self, id: RequestId, attempts: u32) -> Error {
        Error::Request {
            id,
            tier: self.tier,
            attempts,
            status: self.status,
            code: self.code,
            message: self.message,
        }
    }
}

/// Who holds a lease (a flush in flight, a standard-API call) and until when; `now_ms` is the
/// time an expired lease is judged against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease<'a> {
    pub(crate) owner: &'a str,
    pub(crate) now_ms: i64,
    pub(crate) until_ms: i64,
}

/// What `result_for` finds.
pub(crate) enum Lookup {
    Unknown,
    Waiting,
    Done(Completed),
    Failed(Error),
}

/// What the queue asks of its tables. Every write that reads a row's state first writes only if
/// the row is still as found (holding the row's lock on PostgreSQL), so two queues on one
/// database never both act on a request.
pub(crate) trait QueueStore: Send + Sync + 'static {
    /// Stores checked requests as pending, all or none.
    fn insert_pending(&self, rows: &[NewRequest]) -> impl Future<Output = Result<()>> + Send;
    /// The body stored for `id`, if the database holds it.
    fn stored_body(&self, id: &RequestId) -> impl Future<Output = Result<Option<String>>> + Send;
    /// How many of `ids` the database holds.
    fn count_known(&self, ids: &[RequestId]) -> impl Future<Output = Result<usize>> + Send;
    /// Those of `ids` that are done or failed.
    fn settled_among(
        &self,
        ids: &[RequestId],
    ) -> impl Future<Output = Result<Vec<RequestId>>> + Send;
    /// Those of `ids` the database holds that are neither done nor failed (one indexed read
    /// per 500 ids, no join).
    fn open_among(&self, ids: &[RequestId]) -> impl Future<Output = Result<Vec<RequestId>>> + Send;
    /// A request's state and, when final, its result.
    fn lookup(&self, id: &RequestId) -> impl Future<Output = Result<Lookup>> + Send;
    /// Pending requests per group.
    fn pending_counts(&self) -> impl Future<Output = Result<Vec<(GroupKey, usize)>>> + Send;
    /// Pending requests in one group.
    fn pending_count(&self, key: &GroupKey) -> impl Future<Output = Result<usize>> + Send;
    /// Groups with pending requests (only those holding a retry when `retries_only`).
    fn pending_groups(
        &self,
        retries_only: bool,
    ) -> impl Future<Output = Result<Vec<GroupKey>>> + Send;
    /// Claims up to `limit` of a group's pending requests, oldest first, for flush `dispatch`
    /// leased to `lease.owner`; how many. The requests as enqueued are claimed as one span (one
    /// row written, whatever their number); retries and requests put back, one row each. No
    /// enqueue into the group is in flight meanwhile.
    fn claim(
        &self,
        dispatch: &str,
        lease: Lease<'_>,
        key: &GroupKey,
        limit: usize,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// The requests flush `dispatch` claimed, in order: id and body.
    fn claimed(&self, dispatch: &str)
    -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Records that batch-client's `record_id` carries `ids` of flush `dispatch` (the lines of
    /// one shard, in the order `claimed` gave them). Adopting the same shard again changes
    /// nothing.
    fn adopt(
        &self,
        dispatch: &str,
        record_id: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Flushes that hold requests claimed and whose lease has expired at `now_ms` (their
    /// process died mid-submit, or stopped renewing).
    fn interrupted_dispatches(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Takes (when expired or already `lease.owner`'s) or renews flush `dispatch`'s lease;
    /// whether `lease.owner` holds it now.
    fn lease_dispatch(
        &self,
        dispatch: &str,
        lease: Lease<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Puts the requests flush `dispatch` still holds (claimed, no submit recorded) back to
    /// pending, and ends its lease.
    fn release_dispatch(&self, dispatch: &str) -> impl Future<Output = Result<()>> + Send;
    /// Requests neither done nor failed.
    fn unfinished(&self) -> impl Future<Output = Result<usize>> + Send;
    /// Those of `ids` neither done nor failed, with the record carrying each (if any).
    fn in_flight(
        &self,
        ids: &[RequestId],
    ) -> impl Future<Output = Result<Vec<(RequestId, Option<String>)>>> + Send;
    /// The records the queue submitted and has not settled.
    fn open_records(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The requests riding in `record_id`, with the batch ids that carried them before.
    fn carried(
        &self,
        record_id: &str,
    ) -> impl Future<Output = Result<HashMap<String, Vec<String>>>> + Send;
    /// Writes verdicts in one transaction; the results to hand out (final verdicts only).
    fn apply_verdicts(
        &self,
        verdicts: Vec<VerdictFor>,
        how: Apply<'_>,
    ) -> impl Future<Output = Result<Vec<Settled>>> + Send;
    /// Claims for `lease.owner` up to `limit` requests waiting for the standard API that no
    /// unexpired claim holds: id, endpoint and body.
    fn standard_waiting(
        &self,
        lease: Lease<'_>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, String, String)>>> + Send;
    /// Writes a standard-API answer (or its error) for `id` if it still waits for one.
    fn finish_standard(
        &self,
        id: &str,
        outcome: std::result::Result<Value, StoredError>,
    ) -> impl Future<Output = Result<Option<Settled>>> + Send;
}

pub(crate) fn usage_to_json(u: &Usage) -> String {
    serde_json::to_string(u).unwrap_or_else(|_| "null".into())
}

pub(crate) fn usage_from_json(s: &str) -> Option<Usage> {
    let v: Value = serde_json::from_str(s).ok()?;
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    Some(Usage {
        input_tokens: n("input_tokens")?,
        output_tokens: n("output_tokens").unwrap_or(0),
        total_tokens: n("total_tokens").unwrap_or(0),
        cached_tokens: n("cached_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
    })
}

/// Usage from a standard response body, under either naming.
pub(crate) fn usage_from_body(body: &Value) -> Option<Usage> {
    let u = body.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = n("prompt_tokens").or_else(|| n("input_tokens"))?;
    let output = n("completion_tokens")
        .or_else(|| n("output_tokens"))
        .unwrap_or(0);
    let detail = |outer: &str, inner: &str| {
        u.get(outer)
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
    };
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: n("total_tokens").unwrap_or(input + output),
        cached_tokens: detail("prompt_tokens_details", "cached_tokens")
            .or_else(|| detail("input_tokens_details", "cached_tokens")),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens")
            .or_else(|| detail("output_tokens_details", "reasoning_tokens")),
    })
}
