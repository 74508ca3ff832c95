//! Does OpenAI's prompt caching pay for the guide's session? OpenAI caches a prompt's prefix
//! once it is 1,024 tokens long, in steps of 128, when an earlier request began the same way;
//! the schema of Structured Outputs comes first, then the messages in order. This runs the
//! guide's session (n 9, m 3, 3 iterations, ensemble 3, fused, comparative, low detail) on the
//! simulated models, records every body, and measures for each operation how long a prefix
//! each call shares with an earlier call of its kind, in the layout the codec writes and with
//! the images moved before the text (the only reordering that could reach 1,024 tokens: the
//! static part is far shorter). `cargo test -p orchestrator --test prompt_prefix -- --nocapture`
//! prints the table docs/cost.md quotes; the assertions hold the facts its decision rests on.

// A failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest, TokenEstimator};
use orchestrator::{Backend, BeamSearch, Engines, SearchParams, SessionStore};
use providers::transport::SimulatedTransport;
use providers::{Delivered, OpenAiProvider, Operation, Result, RoleModels, Tier, Transport};
use serde_json::Value;

/// The simulated models, keeping every chat body they are sent.
#[derive(Debug)]
struct Recording {
    inner: SimulatedTransport,
    bodies: Mutex<Vec<(Operation, Value)>>,
}

#[async_trait]
impl Transport for Recording {
    fn tier(&self) -> Tier {
        Tier::Simulated
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        let value = serde_json::to_value(&body).unwrap();
        self.bodies.lock().unwrap().push((op, value));
        self.inner.chat(op, key, body).await
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.inner.image(op, key, body).await
    }
}

/// A piece of a prompt as the prefix cache sees it.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// An image (its data URL), counted at a fixed number of tokens.
    Image(String),
}

/// Where a message's images go among its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// As the codec wrote the body.
    AsSent,
    /// The text parts, then the images.
    TextFirst,
    /// The images, then the text parts.
    ImagesFirst,
}

/// The pieces of a chat body in order: the schema, then each message's parts in `layout`.
fn pieces(body: &Value, layout: Layout) -> Vec<Piece> {
    let mut out = Vec::new();
    if let Some(schema) = body.pointer("/response_format/json_schema") {
        out.push(Piece::Text(schema.to_string()));
    }
    for m in body["messages"].as_array().unwrap() {
        let role = m["role"].as_str().unwrap_or_default().to_owned();
        out.push(Piece::Text(format!("<{role}>")));
        match &m["content"] {
            Value::String(s) => out.push(Piece::Text(s.clone())),
            Value::Array(parts) => {
                let (mut all, mut text, mut images) = (Vec::new(), Vec::new(), Vec::new());
                for p in parts {
                    let piece = match p["type"].as_str() {
                        Some("text") => Piece::Text(p["text"].as_str().unwrap().into()),
                        _ => Piece::Image(p["image_url"]["url"].to_string()),
                    };
                    all.push(piece.clone());
                    match piece {
                        Piece::Text(_) => text.push(piece),
                        Piece::Image(_) => images.push(piece),
                    }
                }
                match layout {
                    Layout::AsSent => out.extend(all),
                    Layout::TextFirst => out.extend(text.into_iter().chain(images)),
                    Layout::ImagesFirst => out.extend(images.into_iter().chain(text)),
                }
            }
            _ => {}
        }
    }
    out
}

struct Counter {
    est: TokenEstimator,
    image_tokens: u64,
}

impl Counter {
    fn tokens(&self, p: &Piece) -> u64 {
        match p {
            Piece::Text(t) => self.est.count_text(t),
            Piece::Image(_) => self.image_tokens,
        }
    }

    /// A prompt's pieces with their tokens.
    fn counted(&self, ps: Vec<Piece>) -> Vec<(Piece, u64)> {
        ps.into_iter()
            .map(|p| {
                let n = self.tokens(&p);
                (p, n)
            })
            .collect()
    }

    /// Tokens of the longest common prefix of two prompts.
    fn shared(&self, a: &[(Piece, u64)], b: &[(Piece, u64)]) -> u64 {
        let mut n = 0;
        for ((x, tokens), (y, _)) in a.iter().zip(b) {
            if x == y {
                n += tokens;
                continue;
            }
            if let (Piece::Text(x), Piece::Text(y)) = (x, y) {
                let common: String = x
                    .chars()
                    .zip(y.chars())
                    .take_while(|(c, d)| c == d)
                    .map(|(c, _)| c)
                    .collect();
                // The last token of the common text may be split differently: not counted.
                n += self.est.count_text(&common).saturating_sub(1);
            }
            break;
        }
        n
    }
}

/// What OpenAI would serve from its cache for a prefix of `shared` tokens.
fn cached(shared: u64) -> u64 {
    if shared < 1024 {
        0
    } else {
        1024 + (shared - 1024) / 128 * 128
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Row {
    calls: u64,
    input: u64,
    /// The shortest prefix a call shares with an earlier one of its kind.
    min_shared: u64,
    max_shared: u64,
    cached: u64,
}

fn measure(
    bodies: &[(Operation, Value)],
    layout: Layout,
    image_tokens: u64,
) -> BTreeMap<&'static str, Row> {
    let counter = Counter {
        est: TokenEstimator::for_model("gpt-4o-mini"),
        image_tokens,
    };
    let mut seen: BTreeMap<&'static str, Vec<Vec<(Piece, u64)>>> = BTreeMap::new();
    let mut rows: BTreeMap<&'static str, Row> = BTreeMap::new();
    for (op, body) in bodies {
        let ps = counter.counted(pieces(body, layout));
        let earlier = seen.entry(op.as_str()).or_default();
        let row = rows.entry(op.as_str()).or_insert(Row {
            min_shared: u64::MAX,
            ..Row::default()
        });
        row.calls += 1;
        row.input += ps.iter().map(|(_, n)| n).sum::<u64>();
        if !earlier.is_empty() {
            let shared = earlier
                .iter()
                .map(|e| counter.shared(e, &ps))
                .max()
                .unwrap_or(0);
            row.min_shared = row.min_shared.min(shared);
            row.max_shared = row.max_shared.max(shared);
            row.cached += cached(shared);
        }
        earlier.push(ps);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judges_images_come_first_where_the_prompt_cache_can_reuse_them() {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording {
        inner: SimulatedTransport::new(3),
        bodies: Mutex::new(Vec::new()),
    });
    let provider = OpenAiProvider::new(recording.clone(), RoleModels::default());
    let backend = Backend {
        llm: Arc::new(provider.clone()),
        image: Arc::new(provider.clone()),
        vision: Arc::new(provider),
    };
    let mut params = SearchParams::new("a lighthouse in a storm");
    params.seed = 3;
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let engines = Engines::single(Tier::Simulated, backend);
    let search = BeamSearch::start(params, engines, store, dir.path())
        .await
        .unwrap();
    search.run().await.unwrap();
    let bodies = recording.bodies.lock().unwrap().clone();

    // 85 tokens: a low-detail image for gpt-4o, gpt-4.1 and the GPT-5 family; gpt-4o-mini
    // bills the same image as 2,833.
    let mut tables = Vec::new();
    for image_tokens in [85, 2833] {
        for layout in [Layout::TextFirst, Layout::ImagesFirst, Layout::AsSent] {
            let rows = measure(&bodies, layout, image_tokens);
            println!("image = {image_tokens} tokens, {layout:?}:");
            println!("  operation  calls      input  shared min-max   cached  cached %");
            for (op, r) in &rows {
                println!(
                    "  {op:<9} {:>6} {:>10} {:>7}-{:<7} {:>8} {:>8.1}%",
                    r.calls,
                    r.input,
                    if r.min_shared == u64::MAX {
                        0
                    } else {
                        r.min_shared
                    },
                    r.max_shared,
                    r.cached,
                    100.0 * r.cached as f64 / r.input.max(1) as f64
                );
            }
            tables.push(((image_tokens, layout), rows));
        }
    }
    let row = |image_tokens, layout, op: &str| {
        tables
            .iter()
            .find(|(k, _)| *k == (image_tokens, layout))
            .map(|(_, rows)| rows[op])
            .unwrap()
    };

    // The writer's calls (text only) share well under 1,024 tokens: nothing can be cached,
    // whatever the order of their static part.
    for op in ["expand", "refine"] {
        let r = row(85, Layout::AsSent, op);
        assert!(r.calls > 0, "{op}");
        assert!(r.max_shared < 1024, "{op}: {r:?}");
        assert_eq!(r.cached, 0, "{op}");
    }
    // With 85-token images the judge's calls share too little in any layout.
    for layout in [Layout::TextFirst, Layout::ImagesFirst] {
        assert_eq!(row(85, layout, "judge").cached, 0);
    }
    // With gpt-4o-mini's 2,833-token images, comparisons that show the same image first share
    // it; the per-call text (the vote) before the images cuts that short. The codec sends the
    // images first: the layout that caches the most.
    let (text_first, images_first, as_sent) = (
        row(2833, Layout::TextFirst, "judge"),
        row(2833, Layout::ImagesFirst, "judge"),
        row(2833, Layout::AsSent, "judge"),
    );
    assert!(
        images_first.cached > text_first.cached,
        "{images_first:?} vs {text_first:?}"
    );
    assert_eq!(
        as_sent.cached, images_first.cached,
        "the judge's bodies put the images first"
    );
}
