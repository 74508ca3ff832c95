//! Progress events for the CLI and the server: stages started and finished, batches
//! submitted, calls done within a stage, the best candidate and its rating so far.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::rating::RatingScale;

/// What a running search reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The session started (or resumed at `next_stage`).
    SessionStarted {
        /// The session.
        session: String,
        /// Stages in the plan.
        stages: usize,
        /// The first stage to run (0 unless resumed).
        next_stage: usize,
    },
    /// A stage began.
    StageStarted {
        /// The session.
        session: String,
        /// Its place in the plan.
        index: usize,
        /// Its iteration.
        iteration: u32,
        /// What it does.
        stage: String,
        /// The tier its calls go to.
        tier: String,
        /// Calls it needs.
        calls: usize,
        /// Of which answered from checkpoints.
        reused: usize,
    },
    /// A batch stage's requests were all queued and the queue was flushed.
    BatchSubmitted {
        /// The session.
        session: String,
        /// The stage.
        index: usize,
        /// Requests sent in the stage's batches.
        requests: usize,
    },
    /// Calls of a running stage finished (answered, failed for good, or taken from
    /// checkpoints): sent after every call of a stage of at most 20 calls, else each time
    /// another 5% of its calls are done, and when the last one is.
    CallsDone {
        /// The session.
        session: String,
        /// The stage's place in the plan.
        index: usize,
        /// Calls done so far.
        done: usize,
        /// Calls the stage has.
        total: usize,
    },
    /// A stage ended.
    StageFinished {
        /// The session.
        session: String,
        /// Its place in the plan.
        index: usize,
        /// What it did.
        stage: String,
        /// Calls that succeeded.
        succeeded: usize,
        /// Calls that failed for good.
        failed: usize,
        /// Batches that carried its calls.
        batch_ids: Vec<String>,
        /// Seconds it took.
        seconds: f64,
    },
    /// An iteration was judged.
    IterationJudged {
        /// The session.
        session: String,
        /// The iteration.
        iteration: u32,
        /// The best candidate so far (the highest-rated of the session).
        best_id: String,
        /// Its score (0-10; in comparative mode 10 x the share of its comparisons it won).
        best_score: f64,
        /// In comparative mode: the comparisons it won and took part in.
        #[serde(skip_serializing_if = "Option::is_none")]
        wins: Option<(u32, u32)>,
        /// Its rating across the session, on `scale`.
        best_rating: Option<f64>,
        /// The scale of `best_rating`.
        scale: RatingScale,
    },
    /// The session finished.
    SessionFinished {
        /// The session.
        session: String,
        /// The best candidate.
        best_id: String,
        /// Its score.
        best_score: f64,
        /// Its rating across the session, on `scale`.
        best_rating: Option<f64>,
        /// The scale of `best_rating`.
        scale: RatingScale,
        /// What it cost (USD).
        cost: f64,
    },
}

/// Where a search sends its events: any number of subscribers, none needed.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: broadcast::Sender<ProgressEvent>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A channel keeping the last 1,024 events for slow subscribers.
    pub fn new() -> Progress {
        Progress {
            tx: broadcast::channel(1_024).0,
        }
    }

    /// A new subscriber, receiving events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    pub(crate) fn send(&self, event: ProgressEvent) {
        tracing::debug!(?event, "progress");
        // No subscriber is fine: events are advisory.
        let _ = self.tx.send(event);
    }
}
