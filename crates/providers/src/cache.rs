//! The request cache: a request whose exact body (endpoint, model as asked, every parameter,
//! seed) already has a stored successful answer is answered from the store instead of being
//! sent, whatever tier it would have gone to, across sessions and processes.
//!
//! Only deterministic requests are cached: a chat call with a seed or at temperature 0, an
//! image or judge call with a seed (the replay seed the pipeline gives each call; the Images
//! API has no seed, so it is part of the key and not of the body). A request without one is
//! never looked up nor stored.
//!
//! An entry carries the snapshot its answer named (`gpt-4o-mini-2024-07-18`). The key holds
//! the model as asked, so a pinned snapshot never meets another's answers; for an alias, a
//! fresh answer naming a new snapshot drops every entry of that alias with another one
//! ([`CacheStore::put`]), so an answer never crosses versions once a call has seen the move.
//! Pin dated snapshots in `models.*` to be sure before any call is sent (docs/cost.md).
//!
//! Entries live in the `request_cache` table ([`DbCacheStore`], SQLite or PostgreSQL); an image's bytes live in
//! a content-addressed file (`<sha-256>.png`) in the cache folder, written to a temporary file
//! and renamed, and read back only when its entry answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Delivered, ProviderError, Result, Tier};

mod store;

pub use store::{CacheEntry, CacheStore, DbCacheStore, MIGRATIONS_TABLE};

/// The endpoint of chat completions, as keys and entries name it.
pub const CHAT: &str = "/v1/chat/completions";
/// The endpoint of image generation.
pub const IMAGES: &str = "/v1/images/generations";

/// The key of one cacheable request: SHA-256 of its endpoint, replay seed and canonical body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    hex: String,
    endpoint: &'static str,
    model: String,
}

impl CacheKey {
    /// The key of a request to `endpoint` with `body`, or `None` when the request is not
    /// deterministic: no `seed` (the call's replay seed, also when the body carries none) and
    /// a `temperature` other than 0.
    pub fn of(
        endpoint: &'static str,
        body: &Value,
        seed: Option<i64>,
        temperature: Option<f64>,
    ) -> Option<CacheKey> {
        if seed.is_none() && temperature != Some(0.0) {
            return None;
        }
        let mut text = Vec::with_capacity(256);
        text.extend_from_slice(endpoint.as_bytes());
        text.push(b'\n');
        if let Some(seed) = seed {
            text.extend_from_slice(seed.to_string().as_bytes());
        }
        text.push(b'\n');
        canonical(body, &mut text);
        let digest = Sha256::digest(&text);
        Some(CacheKey {
            hex: hex(&digest),
            endpoint,
            model: body["model"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// The key as stored (64 hex digits).
    pub fn as_str(&self) -> &str {
        &self.hex
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` as compact JSON with every object's keys in sorted order, so that the key does not
/// depend on how a body was built. `service_tier` is left out: it says which tier carries a
/// request, not what it asks.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| *k != "service_tier").collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// A stored answer, as the provider reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// The answer's body, as it came (an image's base64 restored).
    pub body: Value,
    /// The tier that carried it the first time.
    pub tier: Tier,
}

/// The request cache over a [`CacheStore`] and a folder for image bytes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestCache {
    store: Arc<dyn CacheStore>,
    folder: PathBuf,
}

impl RequestCache {
    /// A cache over `store`, keeping image bytes in `folder` (created when first needed).
    pub fn new(store: Arc<dyn CacheStore>, folder: impl Into<PathBuf>) -> RequestCache {
        RequestCache {
            store,
            folder: folder.into(),
        }
    }

    /// The cache in the SQLite database of `pool`, image bytes in `folder` ([`RequestCache::on`]
    /// with `Database::Sqlite`).
    pub async fn sqlite(pool: sqlx::SqlitePool, folder: impl Into<PathBuf>) -> Result<Self> {
        RequestCache::on(crate::Database::Sqlite(pool), folder).await
    }

    /// The cache in the process's database `db`, image bytes in `folder`.
    pub async fn on(db: crate::Database, folder: impl Into<PathBuf>) -> Result<Self> {
        let store = DbCacheStore::new(db).await?;
        Ok(RequestCache::new(Arc::new(store), folder))
    }

    /// The folder of image bytes.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// How many answers are stored.
    pub async fn len(&self) -> Result<u64> {
        self.store.count().await
    }

    /// Whether no answer is stored.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// The stored answer for `key`, if there is one whose image (if any) is still there. An
    /// entry whose file went missing, or whose body no longer parses, is dropped.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>> {
        let Some(entry) = self.store.get(key.as_str()).await? else {
            return Ok(None);
        };
        match self.restore(&entry).await {
            Some(answer) => Ok(Some(answer)),
            None => {
                self.store.remove(key.as_str()).await?;
                Ok(None)
            }
        }
    }

    async fn restore(&self, entry: &CacheEntry) -> Option<CachedAnswer> {
        let mut body: Value = serde_json::from_str(&entry.body).ok()?;
        let tier = entry.tier.parse::<Tier>().ok()?;
        if let Some(file) = &entry.file {
            let bytes = tokio::fs::read(self.folder.join(file)).await.ok()?;
            *body.pointer_mut("/data/0/b64_json")? = Value::String(B64.encode(bytes));
        }
        Some(CachedAnswer { body, tier })
    }

    /// Stores a successful answer under `key`, with the snapshot it names (the asked model
    /// when it names none). An image answer's base64 goes to its own file, named by the
    /// SHA-256 of its bytes.
    pub async fn put(&self, key: &CacheKey, delivered: &Delivered) -> Result<()> {
        let snapshot = crate::codec::model_of(&delivered.body, &key.model);
        let mut body = delivered.body.clone();
        let mut file = None;
        if let Some(Value::String(b64)) = body.pointer_mut("/data/0/b64_json") {
            let bytes = B64
                .decode(b64.trim())
                .map_err(|e| ProviderError::Cache(format!("an image answer's base64: {e}")))?;
            let name = format!("{}.png", hex(&Sha256::digest(&bytes)));
            self.write_file(&name, &bytes).await?;
            b64.clear();
            file = Some(name);
        }
        let entry = CacheEntry {
            key: key.hex.clone(),
            endpoint: key.endpoint.to_owned(),
            model: key.model.clone(),
            snapshot,
            tier: delivered.tier.as_str().to_owned(),
            body: body.to_string(),
            file,
            created_at_ms: crate::now_ms(),
        };
        self.store.put(&entry).await
    }

    /// Writes `bytes` as `name` in the folder unless it is there (names are content hashes):
    /// a temporary file renamed into place, so that a reader never sees half an image.
    async fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.folder.join(name);
        if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let io = |e: std::io::Error| {
            ProviderError::Cache(format!("writing {}: {e}", self.folder.join(name).display()))
        };
        tokio::fs::create_dir_all(&self.folder).await.map_err(io)?;
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = (self.folder).join(format!("{name}.{}-{n}.part", std::process::id()));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
}

#[cfg(test)]
mod tests;
