//! The request cache: which requests it keys, what it answers, what it never answers.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use serde_json::{Value, json};

use super::{CacheEntry, CacheKey, CacheStore, DbCacheStore, IMAGES, RequestCache};
use crate::db::testing;
use crate::transport::SimulatedTransport;
use crate::{
    ChatRequest, Delivered, ImageProvider, ImageRequest, JudgeRequest, LlmProvider, OpenAiProvider,
    Operation, ProviderError, Result, RoleModels, Tier, Transport, VisionProvider,
};

/// The simulated models, counting what is sent and naming the snapshot it is told to.
#[derive(Debug)]
struct Counting {
    inner: SimulatedTransport,
    sent: AtomicUsize,
    /// When set, every answer names this model (an alias that moved to a new snapshot).
    snapshot: Mutex<Option<String>>,
    /// When set, every call fails.
    refuse: Mutex<bool>,
}

impl Counting {
    fn new() -> Arc<Counting> {
        Arc::new(Counting {
            inner: SimulatedTransport::new(3),
            sent: AtomicUsize::new(0),
            snapshot: Mutex::new(None),
            refuse: Mutex::new(false),
        })
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    fn answer(&self, d: Result<Delivered>) -> Result<Delivered> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if *self.refuse.lock().unwrap() {
            return Err(ProviderError::Refused {
                tier: Tier::Simulated,
                status: 500,
                code: None,
                message: "down".into(),
            });
        }
        let mut d = d?;
        if let Some(s) = self.snapshot.lock().unwrap().clone() {
            d.body["model"] = json!(s);
        }
        Ok(d)
    }
}

#[async_trait]
impl Transport for Counting {
    fn tier(&self) -> Tier {
        Tier::Simulated
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        self.answer(self.inner.chat(op, key, body).await)
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.answer(self.inner.image(op, key, body).await)
    }
}

struct Rig {
    transport: Arc<Counting>,
    provider: OpenAiProvider,
    cache: RequestCache,
    dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let db = testing::open(&dir.path().join("cache.db").to_string_lossy()).await;
    rig_in(db, dir).await
}

async fn rig_on(db: crate::Database) -> Rig {
    rig_in(db, tempfile::tempdir().unwrap()).await
}

async fn rig_in(db: crate::Database, dir: tempfile::TempDir) -> Rig {
    let cache = RequestCache::on(db, dir.path().join("request-cache"))
        .await
        .unwrap();
    let transport = Counting::new();
    let provider =
        OpenAiProvider::new(transport.clone(), RoleModels::default()).with_cache(cache.clone());
    Rig {
        transport,
        provider,
        cache,
        dir,
    }
}

fn writer(seed: Option<i64>, temperature: f64) -> ChatRequest {
    let mut r = ChatRequest::new(Operation::Expand, "Idea: a lighthouse in a storm")
        .with_temperature(temperature);
    r.seed = seed;
    r
}

#[test]
fn only_deterministic_requests_have_a_key() {
    let body = json!({"model": "gpt-4o-mini", "messages": [], "temperature": 0.9});
    let key = |seed, t| CacheKey::of(super::CHAT, &body, seed, t);
    assert_eq!(key(None, Some(0.9)), None, "no seed, sampled: never cached");
    assert_eq!(
        key(None, None),
        None,
        "no seed, default temperature: never cached"
    );
    assert!(key(None, Some(0.0)).is_some(), "temperature 0");
    assert!(key(Some(4), Some(0.9)).is_some(), "a seed");
    assert_ne!(
        key(Some(4), None),
        key(Some(5), None),
        "seeds tell calls apart"
    );
    assert_ne!(
        CacheKey::of(super::CHAT, &body, Some(4), None),
        CacheKey::of(IMAGES, &body, Some(4), None),
        "endpoints tell calls apart"
    );
}

#[test]
fn the_key_is_the_body_not_how_it_was_written() {
    let a =
        json!({"model": "gpt-4o-mini", "seed": 1, "messages": [{"role": "user", "content": "x"}]});
    let b: Value = serde_json::from_str(
        r#"{"messages":[{"content":"x","role":"user"}],"seed":1,"service_tier":"flex","model":"gpt-4o-mini"}"#,
    )
    .unwrap();
    let key = |v: &Value| CacheKey::of(super::CHAT, v, Some(1), None).unwrap();
    assert_eq!(key(&a), key(&b), "key order and the tier do not matter");
    let mut other_model = a.clone();
    other_model["model"] = json!("gpt-4o-mini-2024-07-18");
    assert_ne!(
        key(&a),
        key(&other_model),
        "the model as asked is part of it"
    );
    let mut other_text = a.clone();
    other_text["messages"][0]["content"] = json!("y");
    assert_ne!(key(&a), key(&other_text));
    assert_eq!(key(&a).as_str().len(), 64);
}

#[tokio::test]
async fn a_repeated_seeded_call_is_answered_from_the_store_and_not_sent() {
    let r = rig().await;
    let first = r.provider.chat(writer(Some(11), 0.9)).await.unwrap();
    assert!(!first.meta.cached);
    assert_eq!(r.transport.sent(), 1);
    let again = r.provider.chat(writer(Some(11), 0.9)).await.unwrap();
    assert_eq!(r.transport.sent(), 1, "answered from the cache");
    assert!(again.meta.cached);
    assert_eq!(again.text, first.text);
    assert_eq!(again.meta.model, first.meta.model);
    assert_eq!(
        again.meta.usage, first.meta.usage,
        "what the first call was billed"
    );
    assert_eq!(
        again.meta.tier,
        Tier::Simulated,
        "the tier that carried it first"
    );
    // Another seed is another request.
    r.provider.chat(writer(Some(12), 0.9)).await.unwrap();
    assert_eq!(r.transport.sent(), 2);
    assert_eq!(r.cache.len().await.unwrap(), 2);
    // A provider without the cache sends everything (`--no-cache`).
    let uncached = OpenAiProvider::new(r.transport.clone(), RoleModels::default());
    let sent = uncached.chat(writer(Some(11), 0.9)).await.unwrap();
    assert!(!sent.meta.cached);
    assert_eq!(r.transport.sent(), 3);
}

#[tokio::test]
async fn a_sampled_call_without_a_seed_is_never_cached() {
    let r = rig().await;
    for _ in 0..2 {
        let reply = r.provider.chat(writer(None, 0.9)).await.unwrap();
        assert!(!reply.meta.cached);
    }
    assert_eq!(r.transport.sent(), 2);
    assert!(r.cache.is_empty().await.unwrap(), "nothing stored");
    // At temperature 0 the same call is deterministic without a seed.
    r.provider.chat(writer(None, 0.0)).await.unwrap();
    assert!(
        r.provider
            .chat(writer(None, 0.0))
            .await
            .unwrap()
            .meta
            .cached
    );
    assert_eq!(r.transport.sent(), 3);
}

#[tokio::test]
async fn an_answer_never_crosses_model_snapshots() {
    let r = rig().await;
    let first = r.provider.chat(writer(Some(1), 0.9)).await.unwrap();
    assert!(
        first.meta.model.starts_with("gpt-4o-mini-"),
        "{}",
        first.meta.model
    );
    assert!(
        r.provider
            .chat(writer(Some(1), 0.9))
            .await
            .unwrap()
            .meta
            .cached
    );
    // The alias now resolves to a new snapshot: the next fresh answer says so...
    *r.transport.snapshot.lock().unwrap() = Some("gpt-4o-mini-2030-01-01".into());
    let moved = r.provider.chat(writer(Some(2), 0.9)).await.unwrap();
    assert_eq!(moved.meta.model, "gpt-4o-mini-2030-01-01");
    // ...and the old snapshot's answer is not served again: the call is sent.
    let sent = r.transport.sent();
    let again = r.provider.chat(writer(Some(1), 0.9)).await.unwrap();
    assert!(!again.meta.cached);
    assert_eq!(r.transport.sent(), sent + 1);
    assert_eq!(again.meta.model, "gpt-4o-mini-2030-01-01");
    // A pinned snapshot is its own key: the alias's answers never answer it.
    let pinned = OpenAiProvider::new(
        r.transport.clone(),
        RoleModels {
            llm: "gpt-4o-mini-2024-07-18".into(),
            ..RoleModels::default()
        },
    )
    .with_cache(r.cache.clone());
    let p = pinned.chat(writer(Some(1), 0.9)).await.unwrap();
    assert!(!p.meta.cached);
}

#[tokio::test]
async fn failures_are_not_stored() {
    let r = rig().await;
    *r.transport.refuse.lock().unwrap() = true;
    assert!(r.provider.chat(writer(Some(1), 0.9)).await.is_err());
    assert!(r.cache.is_empty().await.unwrap());
    *r.transport.refuse.lock().unwrap() = false;
    let reply = r.provider.chat(writer(Some(1), 0.9)).await.unwrap();
    assert!(!reply.meta.cached, "sent once it works");
    assert_eq!(r.transport.sent(), 2);
}

#[tokio::test]
async fn an_image_is_kept_in_a_content_addressed_file_and_comes_back_whole() {
    let r = rig().await;
    let request = || ImageRequest::new("a lighthouse in a storm, oil on canvas").with_seed(5);
    let first = r.provider.generate(request()).await.unwrap();
    assert!(!first.meta.cached);
    let files: Vec<_> = std::fs::read_dir(r.dir.path().join("request-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".png") && files[0].len() == 64 + 4);
    let again = r.provider.generate(request()).await.unwrap();
    assert!(again.meta.cached);
    assert_eq!(again.png, first.png, "the same bytes");
    assert_eq!(r.transport.sent(), 1);
    // An image call without a seed is not deterministic: sent each time.
    r.provider
        .generate(ImageRequest::new("a lighthouse in a storm, oil on canvas"))
        .await
        .unwrap();
    assert_eq!(r.transport.sent(), 2);
    // A file gone missing is a miss, and the entry is dropped, not an error.
    std::fs::remove_file(r.dir.path().join("request-cache").join(&files[0])).unwrap();
    let resent = r.provider.generate(request()).await.unwrap();
    assert!(!resent.meta.cached);
    assert_eq!(r.transport.sent(), 3);
    assert_eq!(resent.png, first.png);
    assert!(r.provider.generate(request()).await.unwrap().meta.cached);
}

#[tokio::test]
async fn a_judge_vote_with_a_seed_is_cached_and_the_image_is_part_of_the_key() {
    let r = rig().await;
    let png = r
        .provider
        .generate(ImageRequest::new("a red fox in snow"))
        .await
        .unwrap()
        .png;
    let other = r
        .provider
        .generate(ImageRequest::new("a blue whale at dusk"))
        .await
        .unwrap()
        .png;
    let judge = |image: Vec<u8>| JudgeRequest {
        idea: "a red fox in snow".into(),
        image,
        detail: None,
        alpha: 0.7,
        vote: 0,
        seed: Some(9),
        key: None,
    };
    let sent = r.transport.sent();
    let a = r.provider.judge(judge(png.clone())).await.unwrap();
    let b = r.provider.judge(judge(png)).await.unwrap();
    assert!(b.meta.cached);
    assert_eq!((a.alignment, a.aesthetic), (b.alignment, b.aesthetic));
    assert!(!r.provider.judge(judge(other)).await.unwrap().meta.cached);
    assert_eq!(r.transport.sent(), sent + 2);
}

/// Runs `body` on a fresh database of every backend (SQLite; PostgreSQL when
/// `BATCHBEAM_TEST_POSTGRES` is set), with what opens the same database again.
macro_rules! on_every_backend {
    (|$db:ident, $location:ident| $body:block) => {{
        let dir = tempfile::tempdir().unwrap();
        let admin = std::env::var(testing::VAR).ok();
        for (name, $db, $location) in testing::every_backend(dir.path(), admin).await {
            eprintln!("backend: {name}");
            $body
        }
    }};
}

fn entry(key: &str, model: &str, snapshot: &str) -> CacheEntry {
    CacheEntry {
        key: key.into(),
        endpoint: super::CHAT.into(),
        model: model.into(),
        snapshot: snapshot.into(),
        tier: "batch".into(),
        body: format!("{{\"k\":\"{key}\"}}"),
        file: None,
        created_at_ms: 7,
    }
}

#[tokio::test]
async fn the_store_keeps_one_entry_per_key_and_drops_other_snapshots() {
    on_every_backend!(|db, _location| {
        let store = DbCacheStore::new(db).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0);
        assert!(store.get("k1").await.unwrap().is_none());
        store.put(&entry("k1", "m", "m-1")).await.unwrap();
        store.put(&entry("k2", "m", "m-1")).await.unwrap();
        store.put(&entry("k9", "other", "o-1")).await.unwrap();
        let mut again = entry("k2", "m", "m-1");
        again.body = "{}".into();
        store.put(&again).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3, "a repeat replaces");
        assert_eq!(store.get("k2").await.unwrap().unwrap(), again);
        // The alias moved to a new snapshot: its older answers go, other models' stay.
        store.put(&entry("k3", "m", "m-2")).await.unwrap();
        assert!(store.get("k1").await.unwrap().is_none());
        assert!(store.get("k9").await.unwrap().is_some());
        store.remove("k3").await.unwrap();
        assert_eq!(store.count().await.unwrap(), 1);
    });
}

#[tokio::test]
async fn the_store_keeps_its_answers_across_openings() {
    on_every_backend!(|db, location| {
        let r = rig_on(db).await;
        r.provider.chat(writer(Some(1), 0.9)).await.unwrap();
        // Another process: its own pool on the same database.
        let db = testing::open(&location).await;
        let store = DbCacheStore::new(db.clone()).await.unwrap();
        let reopened = RequestCache::new(Arc::new(store), r.cache.folder());
        let provider =
            OpenAiProvider::new(r.transport.clone(), RoleModels::default()).with_cache(reopened);
        assert!(
            provider
                .chat(writer(Some(1), 0.9))
                .await
                .unwrap()
                .meta
                .cached
        );
        assert_eq!(r.transport.sent(), 1);
        let hits: i64 = crate::on_pool!(&db, |pool| {
            sqlx::query_scalar("SELECT hits FROM request_cache")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(hits, 1);
    });
}
