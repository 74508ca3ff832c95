//! The API key never leaves the Authorization header: not in tracing output (captured by a test
//! subscriber at TRACE), not in error `Display`/`Debug`, not in the SQLite files.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use batch_client::{ApiKey, ClientConfig, OpenAiClient, RetryPolicy};
use openai_sim::{FaultConfig, FaultKind, FaultRule, SimConfig};

use crate::support::{KEY, drive, manager, no_metadata, shards, sim_with};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every test of this binary logs into one buffer, whatever thread it runs on.
fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        capture
    })
}

#[tokio::test]
async fn the_key_is_never_logged_shown_or_stored() {
    let capture = captured();
    let faults = FaultConfig::default()
        .with_rule(
            FaultRule::new(FaultKind::RateLimit)
                .on("POST", "/v1/batches")
                .next(1),
        )
        .with_rule(
            FaultRule::new(FaultKind::ServerError)
                .on("GET", "/v1/batches/*")
                .next(1),
        );
    let sim = sim_with(
        SimConfig::default()
            .with_frozen_clock()
            .with_api_keys([KEY])
            .with_faults(faults),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let id = manager
        .submit_batch(&shards("secret", 1, 2)[0], no_metadata())
        .await
        .unwrap();
    drive(&sim, &manager, 50).await;
    manager.retrieve_results(&id).await.unwrap();

    // Errors: a wrong key (OpenAI echoes a masked form), a 404, a transport failure.
    let mut shown = Vec::new();
    let wrong = format!("{KEY}-but-wrong");
    let bad = OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new(wrong.clone())).with_retry(RetryPolicy::NONE),
    )
    .unwrap();
    let e = bad.list_batches(&Default::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    shown.push(format!("{e} {e:?}"));
    let e = manager
        .client()
        .retrieve_batch("batch_missing")
        .await
        .unwrap_err();
    shown.push(format!("{e} {e:?}"));
    let dead = OpenAiClient::new(
        ClientConfig::new("http://127.0.0.1:9/v1", ApiKey::new(KEY)).with_retry(RetryPolicy::NONE),
    )
    .unwrap();
    let e = dead.retrieve_batch("batch_1").await.unwrap_err();
    shown.push(format!("{e} {e:?}"));
    shown.push(format!(
        "{manager:?} {:?} {:?}",
        manager.client(),
        manager.client().config()
    ));
    shown.push(format!("{:?}", manager.list().await.unwrap()));
    for text in &shown {
        assert!(!text.contains(KEY), "key shown in: {text}");
        assert!(!text.contains(&wrong), "key shown in: {text}");
    }

    // The database: the main file and its WAL, as bytes.
    drop(manager);
    let mut db_files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("batchbeam.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, KEY.as_bytes()),
                "key in {}",
                path.display()
            );
            db_files += 1;
        }
    }
    assert!(db_files >= 1);

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.contains("openai request"), "the capture works: {logs}");
    assert!(logs.contains("retrying"), "retries are logged: {logs}");
    assert!(!logs.contains(KEY), "key in the logs");
    assert!(
        !logs.contains(&KEY[KEY.len() - 12..]),
        "part of the key in the logs"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
