//! [`QueueDb`]: the queue's store on whichever backend the manager's database is, so that the
//! queue is written once for both.

use std::collections::HashMap;

use batch_client::Database;
use serde_json::Value;

use super::{
    Apply, GroupKey, Lease, Lookup, NewRequest, PgQueueStore, QueueStore, Settled,
    SqliteQueueStore, StoredError, VerdictFor,
};
use crate::{RequestId, Result};

/// The queue's tables in the process's database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) enum QueueDb {
    Sqlite(SqliteQueueStore),
    Postgres(PgQueueStore),
}

impl QueueDb {
    /// The queue's tables in `db` (a clone shares its pool), migrated.
    pub(crate) async fn open(db: Database) -> Result<QueueDb> {
        Ok(match db {
            Database::Sqlite(pool) => QueueDb::Sqlite(SqliteQueueStore::open(pool).await?),
            Database::Postgres(pool) => QueueDb::Postgres(PgQueueStore::open(pool).await?),
        })
    }
}

/// Forwards a [`QueueStore`] method to the backend's store.
macro_rules! forward {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self {
            QueueDb::Sqlite(s) => s.$method($($arg),*).await,
            QueueDb::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl QueueStore for QueueDb {
    async fn insert_pending(&self, rows: &[NewRequest]) -> Result<()> {
        forward!(self, insert_pending(rows))
    }

    async fn stored_body(&self, id: &RequestId) -> Result<Option<String>> {
        forward!(self, stored_body(id))
    }

    async fn count_known(&self, ids: &[RequestId]) -> Result<usize> {
        forward!(self, count_known(ids))
    }

    async fn settled_among(&self, ids: &[RequestId]) -> Result<Vec<RequestId>> {
        forward!(self, settled_among(ids))
    }

    async fn open_among(&self, ids: &[RequestId]) -> Result<Vec<RequestId>> {
        forward!(self, open_among(ids))
    }

    async fn lookup(&self, id: &RequestId) -> Result<Lookup> {
        forward!(self, lookup(id))
    }

    async fn pending_counts(&self) -> Result<Vec<(GroupKey, usize)>> {
        forward!(self, pending_counts())
    }

    async fn pending_count(&self, key: &GroupKey) -> Result<usize> {
        forward!(self, pending_count(key))
    }

    async fn pending_groups(&self, retries_only: bool) -> Result<Vec<GroupKey>> {
        forward!(self, pending_groups(retries_only))
    }

    async fn claim(
        &self,
        dispatch: &str,
        lease: Lease<'_>,
        key: &GroupKey,
        limit: usize,
    ) -> Result<u64> {
        forward!(self, claim(dispatch, lease, key, limit))
    }

    async fn claimed(&self, dispatch: &str) -> Result<Vec<(String, String)>> {
        forward!(self, claimed(dispatch))
    }

    async fn adopt(&self, dispatch: &str, record_id: &str, ids: &[String]) -> Result<()> {
        forward!(self, adopt(dispatch, record_id, ids))
    }

    async fn interrupted_dispatches(&self, now_ms: i64) -> Result<Vec<String>> {
        forward!(self, interrupted_dispatches(now_ms))
    }

    async fn lease_dispatch(&self, dispatch: &str, lease: Lease<'_>) -> Result<bool> {
        forward!(self, lease_dispatch(dispatch, lease))
    }

    async fn release_dispatch(&self, dispatch: &str) -> Result<()> {
        forward!(self, release_dispatch(dispatch))
    }

    async fn unfinished(&self) -> Result<usize> {
        forward!(self, unfinished())
    }

    async fn in_flight(&self, ids: &[RequestId]) -> Result<Vec<(RequestId, Option<String>)>> {
        forward!(self, in_flight(ids))
    }

    async fn open_records(&self) -> Result<Vec<String>> {
        forward!(self, open_records())
    }

    async fn carried(&self, record_id: &str) -> Result<HashMap<String, Vec<String>>> {
        forward!(self, carried(record_id))
    }

    async fn apply_verdicts(
        &self,
        verdicts: Vec<VerdictFor>,
        how: Apply<'_>,
    ) -> Result<Vec<Settled>> {
        forward!(self, apply_verdicts(verdicts, how))
    }

    async fn standard_waiting(
        &self,
        lease: Lease<'_>,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>> {
        forward!(self, standard_waiting(lease, limit))
    }

    async fn finish_standard(
        &self,
        id: &str,
        outcome: std::result::Result<Value, StoredError>,
    ) -> Result<Option<Settled>> {
        forward!(self, finish_standard(id, outcome))
    }
}
