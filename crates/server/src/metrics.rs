//! `GET /metrics`: Prometheus' text format (version 0.0.4), every name prefixed `batchbeam_`,
//! read fresh from the stores at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::jobs::App;
use crate::store::JobStatus;

/// A label value escaped as the format wants (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP batchbeam_{name} {help}");
        let _ = writeln!(self.0, "# TYPE batchbeam_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.0, "batchbeam_{name}{labels} {value}");
    }
}

/// The metrics text.
pub(crate) async fn render(app: &App) -> Result<String, crate::Error> {
    let mut out = Out(String::new());
    let counts = app.jobs.counts().await?;
    out.family("jobs", "gauge", "Jobs by status.");
    for s in JobStatus::ALL {
        let n = counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
        out.sample("jobs", &[("status", s.as_str())], n as f64);
    }
    let mut batches: BTreeMap<String, u64> = BTreeMap::new();
    for b in app.stack.batches().await? {
        *batches.entry(b.state).or_default() += 1;
    }
    out.family("batches", "gauge", "Batches by batchbeam's record state.");
    for state in [
        "intent",
        "uploaded",
        "submitted",
        "waiting_resubmit",
        "ended",
        "done",
        "error",
    ] {
        let n = batches.get(state).copied().unwrap_or(0);
        out.sample("batches", &[("state", state)], n as f64);
    }
    let costs = crate::api::costs_of(app).await?;
    let mut by_tier: BTreeMap<String, u64> = BTreeMap::new();
    for line in &costs.by_operation {
        *by_tier.entry(line.tier.clone()).or_default() += line.calls;
    }
    out.family(
        "requests_total",
        "counter",
        "Model calls made by every session, by the tier that carried them.",
    );
    for tier in ["standard", "flex", "batch", "simulated"] {
        let n = by_tier.get(tier).copied().unwrap_or(0);
        out.sample("requests_total", &[("tier", tier)], n as f64);
    }
    out.family(
        "dollars_spent_total",
        "counter",
        "USD the sessions' calls cost at list prices.",
    );
    out.sample("dollars_spent_total", &[], costs.total);
    out.family(
        "dollars_saved_total",
        "counter",
        "USD saved against the same calls all on the standard tier.",
    );
    out.sample("dollars_saved_total", &[], costs.saved);
    out.family(
        "batch_polls_total",
        "counter",
        "Times the waiter looked at the waiting jobs' batches.",
    );
    out.sample(
        "batch_polls_total",
        &[],
        app.counters.polls.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "batch_poll_errors_total",
        "counter",
        "Errors met while looking at batches.",
    );
    out.sample(
        "batch_poll_errors_total",
        &[],
        app.counters.poll_errors.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "api_errors_total",
        "counter",
        "Error responses (4xx and 5xx) the API gave.",
    );
    out.sample(
        "api_errors_total",
        &[],
        app.counters.api_errors.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "instance_info",
        "gauge",
        "This server instance (its id as a job owner): always 1.",
    );
    out.sample("instance_info", &[("instance", &app.owner)], 1.0);
    out.family(
        "jobs_owned",
        "gauge",
        "Running jobs by the instance that holds them (every instance on the database).",
    );
    let mut owned: BTreeMap<String, u64> = BTreeMap::new();
    for row in app.jobs.with_status(&[JobStatus::Running]).await? {
        if let Some(owner) = row.owner {
            *owned.entry(owner).or_default() += 1;
        }
    }
    for (owner, n) in &owned {
        out.sample("jobs_owned", &[("instance", owner)], *n as f64);
    }
    out.family(
        "job_takeovers_total",
        "counter",
        "Jobs this instance took over after their owner's lease expired.",
    );
    out.sample(
        "job_takeovers_total",
        &[],
        app.counters.takeovers.load(Ordering::Relaxed) as f64,
    );
    out.family("workers_up", "gauge", "Workers running.");
    out.sample(
        "workers_up",
        &[],
        app.counters.workers_up.load(Ordering::SeqCst) as f64,
    );
    Ok(out.0)
}
