//! What the SQL stores share: the statements (written once, with SQLite's numbered `?N`
//! placeholders, turned into PostgreSQL's `$N` by [`Dialect::sql`]), the binding of a record
//! and the reading of a row, for any sqlx backend; and the one implementation of [`JobStore`]
//! (a macro, instantiated per backend, since sqlx's executors have no common trait a generic
//! impl could name without a page of bounds).
//!
//! [`JobStore`]: super::JobStore

use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use super::{JobRecord, Submission};
pub(super) use crate::db::Dialect;
use crate::types::{BatchStatus, RequestCounts};
use crate::{Error, Result};

/// Every column of `batch_jobs`, in the order [`bind_record`] binds them.
pub(super) const COLUMNS: &str = "id, shard_name, manifest, idempotency_key, endpoint, input_path, input_bytes, metadata, input_file_id, batch_id, state, remote_status, request_total, request_completed, request_failed, attempts, output_file_id, error_file_id, output_path, error_path, batch_errors, last_error, cancel_requested, created_at_ms, updated_at_ms, submitted_at_ms, next_poll_at_ms, poll_interval_ms, submission_id";

/// The `INSERT` of a whole record, one placeholder per column.
pub(super) fn insert_sql() -> String {
    let marks = vec!["?"; COLUMNS.split(',').count()].join(", ");
    format!("INSERT INTO batch_jobs ({COLUMNS}) VALUES ({marks})")
}

/// The `UPDATE` of a whole record, in [`COLUMNS`]' order; `id` is bound first and matched last.
pub(super) const UPDATE_SQL: &str = "UPDATE batch_jobs SET id = ?1, shard_name = ?2, manifest = ?3, idempotency_key = ?4, endpoint = ?5, input_path = ?6, input_bytes = ?7, metadata = ?8, input_file_id = ?9, batch_id = ?10, state = ?11, remote_status = ?12, request_total = ?13, request_completed = ?14, request_failed = ?15, attempts = ?16, output_file_id = ?17, error_file_id = ?18, output_path = ?19, error_path = ?20, batch_errors = ?21, last_error = ?22, cancel_requested = ?23, created_at_ms = ?24, updated_at_ms = ?25, submitted_at_ms = ?26, next_poll_at_ms = ?27, poll_interval_ms = ?28, submission_id = ?29 WHERE id = ?1";

pub(super) const INSERT_EVENT_SQL: &str = "INSERT INTO batch_job_events (job_id, at_ms, state, remote_status, detail) VALUES (?, ?, ?, ?, ?)";

pub(super) const INSERT_BATCH_SQL: &str = "INSERT INTO batch_job_batches (batch_id, job_id, attempt, created_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING";

pub(super) const TRY_LEASE_SQL: &str = "UPDATE batch_jobs SET lease_owner = ?2, lease_until_ms = ?3 WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_ms < ?4)";

/// A new record's lease, written with it.
pub(super) const LEASE_NEW_SQL: &str =
    "UPDATE batch_jobs SET lease_owner = ?2, lease_until_ms = ?3 WHERE id = ?1";

pub(super) const RELEASE_LEASE_SQL: &str = "UPDATE batch_jobs SET lease_owner = NULL, lease_until_ms = 0 WHERE id = ?1 AND lease_owner = ?2";

pub(super) const INSERT_SUBMISSION_SQL: &str = "INSERT INTO batch_submissions (id, content_key, seq, source_path, endpoint, sha256, lines, bytes, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const LEASE_SUBMISSION_SQL: &str =
    "UPDATE batch_jobs SET lease_owner = ?2, lease_until_ms = ?3 WHERE submission_id = ?1";

pub(super) const FIND_SUBMISSION_SQL: &str = "SELECT id, content_key, seq, source_path, endpoint, sha256, lines, bytes, created_at_ms FROM batch_submissions WHERE content_key = ?1 ORDER BY seq DESC LIMIT 1";

/// The unfinished records due for a poll, by the partial index `batch_jobs_due`.
pub(super) const DUE_SQL: &str = "SELECT id FROM batch_jobs WHERE state NOT IN ('done', 'error') AND next_poll_at_ms <= ?1 ORDER BY created_at_ms, id";

/// Every unfinished record's id.
pub(super) const UNFINISHED_IDS_SQL: &str =
    "SELECT id FROM batch_jobs WHERE state NOT IN ('done', 'error') ORDER BY created_at_ms, id";

/// How many records are unfinished, and the first due time among them.
pub(super) const UNFINISHED_SUMMARY_SQL: &str =
    "SELECT COUNT(*), MIN(next_poll_at_ms) FROM batch_jobs WHERE state NOT IN ('done', 'error')";

/// Ids per `IN (…)` list of [`statuses_sql`].
pub(super) const IN_CHUNK: usize = 500;

/// The state and counts of `n` records, by id or current batch id (each id bound twice).
pub(super) fn statuses_sql(n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    format!(
        "SELECT id, batch_id, state, remote_status, request_total, request_completed, request_failed FROM batch_jobs WHERE id IN ({marks}) OR batch_id IN ({marks})"
    )
}

/// A row of [`statuses_sql`].
pub(super) type StatusRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    i64,
    i64,
);

/// A row of [`statuses_sql`] as a [`super::RecordStatus`].
pub(super) fn status_of(row: StatusRow) -> Result<super::RecordStatus> {
    let (id, batch_id, state, remote_status, total, completed, failed) = row;
    Ok(super::RecordStatus {
        id,
        batch_id,
        state: state.parse()?,
        remote_status: remote_status.map(|s| BatchStatus::parse(&s)),
        request_counts: RequestCounts {
            total: total.max(0) as u64,
            completed: completed.max(0) as u64,
            failed: failed.max(0) as u64,
        },
    })
}

pub(super) const HISTORY_SQL: &str = "SELECT at_ms, state, remote_status, detail FROM batch_job_events WHERE job_id = ?1 ORDER BY seq";

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::store)
}

/// Binds every column of `r` in [`COLUMNS`]' order.
pub(super) fn bind_record<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    r: &JobRecord,
) -> Result<sqlx::query::Query<'q, DB, DB::Arguments>>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
{
    Ok(query
        .bind(r.id.clone())
        .bind(r.shard_name.clone())
        .bind(to_json(&r.manifest)?)
        .bind(r.idempotency_key.clone())
        .bind(r.manifest.endpoint.as_str().to_owned())
        .bind(r.input_path.clone())
        .bind(r.input_bytes as i64)
        .bind(to_json(&r.metadata)?)
        .bind(r.input_file_id.clone())
        .bind(r.batch_id.clone())
        .bind(r.state.as_str().to_owned())
        .bind(r.remote_status.as_ref().map(|s| s.as_str().to_owned()))
        .bind(r.request_counts.total as i64)
        .bind(r.request_counts.completed as i64)
        .bind(r.request_counts.failed as i64)
        .bind(i64::from(r.attempts))
        .bind(r.output_file_id.clone())
        .bind(r.error_file_id.clone())
        .bind(r.output_path.clone())
        .bind(r.error_path.clone())
        .bind(to_json(&r.batch_errors)?)
        .bind(r.last_error.clone())
        .bind(r.cancel_requested)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(r.submitted_at_ms)
        .bind(r.next_poll_at_ms)
        .bind(r.poll_interval_ms)
        .bind(r.submission_id.clone()))
}

/// A `batch_jobs` row (all of [`COLUMNS`]) as a record.
pub(super) fn from_row<R>(row: &R) -> Result<JobRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |col: &str| row.try_get::<String, _>(col).map_err(Error::store);
    let opt = |col: &str| row.try_get::<Option<String>, _>(col).map_err(Error::store);
    let int = |col: &str| row.try_get::<i64, _>(col).map_err(Error::store);
    let json_err =
        |col: &'static str| move |e: serde_json::Error| Error::store(format!("{col}: {e}"));
    Ok(JobRecord {
        id: text("id")?,
        shard_name: text("shard_name")?,
        manifest: serde_json::from_str(&text("manifest")?).map_err(json_err("manifest"))?,
        idempotency_key: text("idempotency_key")?,
        input_path: text("input_path")?,
        input_bytes: int("input_bytes")?.max(0) as u64,
        metadata: serde_json::from_str(&text("metadata")?).map_err(json_err("metadata"))?,
        input_file_id: opt("input_file_id")?,
        batch_id: opt("batch_id")?,
        state: text("state")?.parse()?,
        remote_status: opt("remote_status")?.map(|s| BatchStatus::parse(&s)),
        request_counts: RequestCounts {
            total: int("request_total")?.max(0) as u64,
            completed: int("request_completed")?.max(0) as u64,
            failed: int("request_failed")?.max(0) as u64,
        },
        attempts: int("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        output_file_id: opt("output_file_id")?,
        error_file_id: opt("error_file_id")?,
        output_path: opt("output_path")?,
        error_path: opt("error_path")?,
        batch_errors: serde_json::from_str(&text("batch_errors")?)
            .map_err(json_err("batch_errors"))?,
        last_error: opt("last_error")?,
        cancel_requested: row
            .try_get::<bool, _>("cancel_requested")
            .map_err(Error::store)?,
        created_at_ms: int("created_at_ms")?,
        updated_at_ms: int("updated_at_ms")?,
        submitted_at_ms: row
            .try_get::<Option<i64>, _>("submitted_at_ms")
            .map_err(Error::store)?,
        next_poll_at_ms: int("next_poll_at_ms")?,
        poll_interval_ms: int("poll_interval_ms")?,
        submission_id: opt("submission_id")?,
    })
}

/// A `batch_submissions` row.
pub(super) fn submission_from_row<R>(row: &R) -> Result<Submission>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |col: &str| row.try_get::<String, _>(col).map_err(Error::store);
    let int = |col: &str| row.try_get::<i64, _>(col).map_err(Error::store);
    Ok(Submission {
        id: text("id")?,
        content_key: text("content_key")?,
        seq: int("seq")?.clamp(0, i64::from(u32::MAX)) as u32,
        source_path: text("source_path")?,
        endpoint: text("endpoint")?,
        sha256: text("sha256")?,
        lines: int("lines")?.max(0) as u64,
        bytes: int("bytes")?.max(0) as u64,
        created_at_ms: int("created_at_ms")?,
    })
}

/// A status history row.
pub(super) fn change_from_row<R>(row: &R) -> Result<super::StatusChange>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(super::StatusChange {
        at_ms: row.try_get("at_ms").map_err(Error::store)?,
        state: row
            .try_get::<String, _>("state")
            .map_err(Error::store)?
            .parse()?,
        remote_status: row.try_get("remote_status").map_err(Error::store)?,
        detail: row.try_get("detail").map_err(Error::store)?,
    })
}

/// `impl JobStore for $store`, whose `pool` field is a `sqlx::Pool<$db>` speaking `$dialect`:
/// the one implementation, instantiated for SQLite and for PostgreSQL.
macro_rules! impl_job_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $store {
            fn sql(text: &str) -> ::sqlx::AssertSqlSafe<String> {
                ::sqlx::AssertSqlSafe($dialect.sql(text))
            }

            async fn insert_event(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                id: &str,
                change: &$crate::store::StatusChange,
            ) -> $crate::Result<()> {
                ::sqlx::query(Self::sql($crate::store::sql::INSERT_EVENT_SQL))
                    .bind(id.to_owned())
                    .bind(change.at_ms)
                    .bind(change.state.as_str().to_owned())
                    .bind(change.remote_status.clone())
                    .bind(change.detail.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err($crate::Error::store)?;
                Ok(())
            }

            async fn records(
                &self,
                filter: &str,
                bind: Option<&str>,
            ) -> $crate::Result<Vec<$crate::store::JobRecord>> {
                let sql = format!(
                    "SELECT {} FROM batch_jobs {filter}",
                    $crate::store::sql::COLUMNS
                );
                let mut query = ::sqlx::query(Self::sql(&sql));
                if let Some(value) = bind {
                    query = query.bind(value.to_owned());
                }
                let rows = query.fetch_all(&self.pool).await.map_err($crate::Error::store)?;
                rows.iter().map($crate::store::sql::from_row).collect()
            }
        }

        impl $crate::store::JobStore for $store {
            async fn insert(
                &self,
                record: &$crate::store::JobRecord,
                change: &$crate::store::StatusChange,
                (owner, until_ms): (&str, i64),
            ) -> $crate::Result<()> {
                let mut tx = self.pool.begin().await.map_err($crate::Error::store)?;
                $crate::store::sql::bind_record(
                    ::sqlx::query(Self::sql(&$crate::store::sql::insert_sql())),
                    record,
                )?
                .execute(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                ::sqlx::query(Self::sql($crate::store::sql::LEASE_NEW_SQL))
                    .bind(record.id.clone())
                    .bind(owner.to_owned())
                    .bind(until_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                Self::insert_event(&mut tx, &record.id, change).await?;
                tx.commit().await.map_err($crate::Error::store)
            }

            async fn update(
                &self,
                record: &$crate::store::JobRecord,
                change: Option<&$crate::store::StatusChange>,
            ) -> $crate::Result<()> {
                let mut tx = self.pool.begin().await.map_err($crate::Error::store)?;
                let done = $crate::store::sql::bind_record(
                    ::sqlx::query(Self::sql($crate::store::sql::UPDATE_SQL)),
                    record,
                )?
                .execute(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                if done.rows_affected() != 1 {
                    return Err($crate::Error::NotFound(record.id.clone()));
                }
                if let Some(batch_id) = &record.batch_id {
                    ::sqlx::query(Self::sql($crate::store::sql::INSERT_BATCH_SQL))
                        .bind(batch_id.clone())
                        .bind(record.id.clone())
                        .bind(i64::from(record.attempts))
                        .bind(record.updated_at_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::Error::store)?;
                }
                if let Some(change) = change {
                    Self::insert_event(&mut tx, &record.id, change).await?;
                    // A change of state or status: waiters in other processes look it up.
                    Self::announce(&mut tx, &record.id).await?;
                }
                tx.commit().await.map_err($crate::Error::store)
            }

            async fn get(&self, id: &str) -> $crate::Result<Option<$crate::store::JobRecord>> {
                Ok(self.records("WHERE id = ?1", Some(id)).await?.pop())
            }

            async fn find_by_batch_id(
                &self,
                batch_id: &str,
            ) -> $crate::Result<Option<$crate::store::JobRecord>> {
                let filter = "WHERE batch_id = ?1 OR id = (SELECT job_id FROM batch_job_batches WHERE batch_id = ?1) LIMIT 1";
                Ok(self.records(filter, Some(batch_id)).await?.pop())
            }

            async fn list(&self) -> $crate::Result<Vec<$crate::store::JobRecord>> {
                self.records("ORDER BY created_at_ms DESC, id DESC", None).await
            }

            async fn unfinished(&self) -> $crate::Result<Vec<$crate::store::JobRecord>> {
                self.records(
                    "WHERE state NOT IN ('done', 'error') ORDER BY created_at_ms, id",
                    None,
                )
                .await
            }

            async fn due(&self, now_ms: Option<i64>) -> $crate::Result<Vec<String>> {
                let query = match now_ms {
                    Some(now) => ::sqlx::query_scalar(Self::sql($crate::store::sql::DUE_SQL))
                        .bind(now),
                    None => ::sqlx::query_scalar(Self::sql(
                        $crate::store::sql::UNFINISHED_IDS_SQL,
                    )),
                };
                query.fetch_all(&self.pool).await.map_err($crate::Error::store)
            }

            async fn unfinished_summary(
                &self,
            ) -> $crate::Result<$crate::store::UnfinishedSummary> {
                let (count, next): (i64, Option<i64>) = ::sqlx::query_as(Self::sql(
                    $crate::store::sql::UNFINISHED_SUMMARY_SQL,
                ))
                .fetch_one(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                Ok($crate::store::UnfinishedSummary {
                    count: usize::try_from(count).unwrap_or(0),
                    next_due_ms: next,
                })
            }

            async fn statuses(
                &self,
                ids: &[String],
            ) -> $crate::Result<Vec<$crate::store::RecordStatus>> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let sql = $crate::store::sql::statuses_sql(chunk.len());
                    let mut query =
                        ::sqlx::query_as::<_, $crate::store::sql::StatusRow>(Self::sql(&sql));
                    for id in chunk.iter().chain(chunk) {
                        query = query.bind(id.clone());
                    }
                    for row in query.fetch_all(&self.pool).await.map_err($crate::Error::store)? {
                        out.push($crate::store::sql::status_of(row)?);
                    }
                }
                Ok(out)
            }

            async fn try_lease(
                &self,
                id: &str,
                owner: &str,
                now_ms: i64,
                until_ms: i64,
            ) -> $crate::Result<bool> {
                let done = ::sqlx::query(Self::sql($crate::store::sql::TRY_LEASE_SQL))
                    .bind(id.to_owned())
                    .bind(owner.to_owned())
                    .bind(until_ms)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::Error::store)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_lease(&self, id: &str, owner: &str) -> $crate::Result<()> {
                ::sqlx::query(Self::sql($crate::store::sql::RELEASE_LEASE_SQL))
                    .bind(id.to_owned())
                    .bind(owner.to_owned())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::Error::store)?;
                Ok(())
            }

            async fn insert_submission(
                &self,
                submission: &$crate::store::Submission,
                records: &[($crate::store::JobRecord, $crate::store::StatusChange)],
                (owner, until_ms): (&str, i64),
            ) -> $crate::Result<bool> {
                let mut tx = self.pool.begin().await.map_err($crate::Error::store)?;
                let inserted = ::sqlx::query(Self::sql($crate::store::sql::INSERT_SUBMISSION_SQL))
                    .bind(submission.id.clone())
                    .bind(submission.content_key.clone())
                    .bind(i64::from(submission.seq))
                    .bind(submission.source_path.clone())
                    .bind(submission.endpoint.clone())
                    .bind(submission.sha256.clone())
                    .bind(submission.lines as i64)
                    .bind(submission.bytes as i64)
                    .bind(submission.created_at_ms)
                    .execute(&mut *tx)
                    .await;
                match inserted {
                    Ok(_) => {}
                    Err(::sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        return Ok(false);
                    }
                    Err(e) => return Err($crate::Error::store(e)),
                }
                for (record, change) in records {
                    $crate::store::sql::bind_record(
                        ::sqlx::query(Self::sql(&$crate::store::sql::insert_sql())),
                        record,
                    )?
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                    Self::insert_event(&mut tx, &record.id, change).await?;
                }
                ::sqlx::query(Self::sql($crate::store::sql::LEASE_SUBMISSION_SQL))
                    .bind(submission.id.clone())
                    .bind(owner.to_owned())
                    .bind(until_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                tx.commit().await.map_err($crate::Error::store)?;
                Ok(true)
            }

            async fn find_submission(
                &self,
                content_key: &str,
            ) -> $crate::Result<Option<$crate::store::Submission>> {
                let row = ::sqlx::query(Self::sql($crate::store::sql::FIND_SUBMISSION_SQL))
                    .bind(content_key.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::Error::store)?;
                row.as_ref()
                    .map($crate::store::sql::submission_from_row)
                    .transpose()
            }

            async fn submission_records(
                &self,
                submission_id: &str,
            ) -> $crate::Result<Vec<$crate::store::JobRecord>> {
                let mut records = self
                    .records("WHERE submission_id = ?1", Some(submission_id))
                    .await?;
                records.sort_by_key(|r| r.manifest.index);
                Ok(records)
            }

            async fn history(
                &self,
                id: &str,
            ) -> $crate::Result<Vec<$crate::store::StatusChange>> {
                let rows = ::sqlx::query(Self::sql($crate::store::sql::HISTORY_SQL))
                    .bind(id.to_owned())
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::Error::store)?;
                rows.iter().map($crate::store::sql::change_from_row).collect()
            }
        }
    };
}

pub(super) use impl_job_store;
