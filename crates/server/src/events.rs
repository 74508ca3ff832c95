//! Job events: numbered per job, stored (so that a WebSocket replays them on connect), then
//! broadcast to the live subscribers. A message is
//! `{"seq":N,"at":"<RFC 3339>","jobId":"j_…","type":"<snake_case>", ...fields}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use orchestrator::ProgressEvent;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::Error;
use crate::store::JobStore;

/// One message as sent: its number and its JSON text.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its number in the job.
    pub seq: i64,
    /// The JSON text.
    pub text: String,
    /// Whether it ends the job's stream (finished, failed, cancelled).
    pub last: bool,
}

/// Types after which nothing more is said about a job.
pub const FINAL_TYPES: &[&str] = &["job_finished", "job_failed", "job_cancelled"];

/// Numbers, stores and broadcasts job events.
#[derive(Debug)]
pub struct EventHub {
    store: Arc<dyn JobStore>,
    /// Held while an event is numbered and stored, so that numbers follow storage order.
    order: tokio::sync::Mutex<()>,
    live: Mutex<HashMap<String, broadcast::Sender<Message>>>,
}

impl EventHub {
    /// A hub storing into `store`.
    pub fn new(store: Arc<dyn JobStore>) -> EventHub {
        EventHub {
            store,
            order: tokio::sync::Mutex::new(()),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn sender(&self, job: &str) -> broadcast::Sender<Message> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(job.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    /// Live messages of `job` from now on (subscribe before reading the stored ones).
    pub fn subscribe(&self, job: &str) -> broadcast::Receiver<Message> {
        self.sender(job).subscribe()
    }

    /// Stores and broadcasts an event of `kind` with `fields`.
    pub async fn publish(
        &self,
        job: &str,
        kind: &str,
        fields: Map<String, Value>,
    ) -> Result<i64, Error> {
        let _order = self.order.lock().await;
        let mut body = Map::new();
        for (k, v) in fields {
            if !["seq", "at", "jobId", "type"].contains(&k.as_str()) {
                body.insert(k, v);
            }
        }
        // Another instance on the same database may number an event of this job at the same
        // time: the store keeps the first of a number, and the other is numbered again.
        let mut attempts = 0;
        let (seq, text) = loop {
            let last = self.store.last_event(job).await?;
            if let Some(e) = &last
                && is_final(&e.body)
            {
                // Nothing is said about a job after its end (a run that has not yet seen its
                // cancel, on another instance, says nothing more).
                return Ok(e.seq);
            }
            let seq = last.map_or(0, |e| e.seq) + 1;
            let at = rfc3339(providers::now_ms());
            let mut message = Map::new();
            message.insert("seq".into(), Value::from(seq));
            message.insert("at".into(), Value::from(at.clone()));
            message.insert("jobId".into(), Value::from(job));
            message.insert("type".into(), Value::from(kind));
            message.extend(body.clone());
            let text = Value::Object(message).to_string();
            if self.store.append_event(job, seq, &at, &text).await? {
                break (seq, text);
            }
            attempts += 1;
            if attempts >= 100 {
                return Err(Error::Store(format!(
                    "job {job}: no free event number after {attempts} tries"
                )));
            }
        };
        let last = FINAL_TYPES.contains(&kind);
        let _ = self.sender(job).send(Message { seq, text, last });
        if last {
            // Nobody new will subscribe for live events of a finished job.
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.remove(job);
        }
        Ok(seq)
    }

    /// Stores and broadcasts one of the orchestrator's progress events (its `event` tag becomes
    /// the message's `type`).
    pub async fn progress(&self, job: &str, event: &ProgressEvent) -> Result<i64, Error> {
        let mut fields = match serde_json::to_value(event) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let kind = match fields.remove("event") {
            Some(Value::String(s)) => s,
            _ => "progress".to_owned(),
        };
        self.publish(job, &kind, fields).await
    }
}

/// Whether a stored message ends its job's stream.
pub fn is_final(body: &str) -> bool {
    FINAL_TYPES
        .iter()
        .any(|t| body.contains(&format!("\"type\":\"{t}\"")))
}

/// `ms` since the epoch as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_720_000_123), "2025-12-03T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
