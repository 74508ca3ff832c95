//! The checks of a chaos run and its one table: what the database holds (read by
//! `xtask-worker chaos-facts`) against what the simulator counted, and against what the run
//! did. Pure functions of those facts, so they are tested on made-up runs below.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

/// What the run itself did.
#[derive(Debug, Default)]
pub(crate) struct RunFacts {
    /// Jobs posted and accepted (202).
    pub(crate) posted: usize,
    /// SIGKILLs sent, and the kills the plan had.
    pub(crate) kills: usize,
    pub(crate) planned_kills: usize,
    /// Instances started again after a kill.
    pub(crate) restarts: usize,
    /// Whether the run stopped at its deadline with jobs not final.
    pub(crate) deadline_hit: bool,
    /// The instance ids that were ever SIGKILLed.
    pub(crate) killed: BTreeSet<String>,
    /// Instances that exited without being killed (a crash): which, when, how.
    pub(crate) crashes: Vec<String>,
    /// When each instance was SIGKILLed (ms since the epoch), in order.
    pub(crate) kill_times: BTreeMap<String, Vec<u64>>,
    /// The job lease the instances ran with.
    pub(crate) lease_ms: u64,
}

/// What the simulator counted.
#[derive(Debug, Default)]
pub(crate) struct SimFacts {
    /// `GET /sim/stats`.
    pub(crate) stats: Value,
    /// `GET /sim/stats/requests`: `{"requests": {custom_id: {executed, billed, batches}}}`.
    pub(crate) requests: Value,
    /// Every batch object (`GET /v1/batches`, all pages).
    pub(crate) batches: Vec<Value>,
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) check: &'static str,
    pub(crate) figures: String,
    /// `None` for a row that only reports.
    pub(crate) ok: Option<bool>,
    /// What went wrong, at most a few examples.
    pub(crate) problem: Option<String>,
}

impl Row {
    fn check(check: &'static str, figures: String, problems: Vec<String>) -> Row {
        Row {
            check,
            figures,
            ok: Some(problems.is_empty()),
            problem: (!problems.is_empty()).then(|| {
                let more = problems.len().saturating_sub(3);
                let mut p = problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
                if more > 0 {
                    let _ = write!(p, "; and {more} more");
                }
                p
            }),
        }
    }

    fn report(check: &'static str, figures: String) -> Row {
        Row {
            check,
            figures,
            ok: None,
            problem: None,
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Every check, in the table's order.
pub(crate) fn rows(run: &RunFacts, db: &Value, sim: &SimFacts) -> Vec<Row> {
    vec![
        jobs(run, db),
        batches(db, sim),
        shards(db),
        billing(db, sim),
        outcomes(db),
        fallbacks(db, sim),
        takeovers(run, db),
        kills(run),
        faults(sim),
    ]
}

fn jobs(run: &RunFacts, db: &Value) -> Row {
    let by_status = db["jobs_by_status"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let total = u(&db["jobs"]) as usize;
    let completed = u(&by_status.get("completed").cloned().unwrap_or_default()) as usize;
    let others: Vec<String> = by_status
        .iter()
        .filter(|(k, _)| k.as_str() != "completed")
        .map(|(k, v)| format!("{} {k}", u(v)))
        .collect();
    let mut problems = Vec::new();
    if run.deadline_hit {
        problems.push("the deadline passed with jobs not final".to_owned());
    }
    if total != run.posted {
        problems.push(format!(
            "{} jobs posted, {total} in the database",
            run.posted
        ));
    }
    if completed != total {
        problems.push(format!("not completed: {}", others.join(", ")));
    }
    let rest = if others.is_empty() {
        String::new()
    } else {
        format!(" ({})", others.join(", "))
    };
    Row::check(
        "jobs",
        format!("{} started, {completed} completed{rest}", run.posted),
        problems,
    )
}

/// Every batch the simulator made belongs to one attempt of one shard (a batch-client record,
/// named in the batch's metadata), and no attempt of a shard has two batches.
fn batches(db: &Value, sim: &SimFacts) -> Row {
    let records = db["records"].as_array().cloned().unwrap_or_default();
    let known: HashMap<String, String> = records
        .iter()
        .map(|r| (s(&r[1]).to_owned(), s(&r[0]).to_owned()))
        .collect();
    let recorded: HashMap<&str, (&str, u64)> = db["record_batches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (s(&r[0]), (s(&r[1]), u(&r[2]))))
        .collect();
    let done: HashMap<&str, bool> = records
        .iter()
        .map(|r| (s(&r[0]), s(&r[2]) == "done"))
        .collect();
    let mut per_attempt: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for b in &sim.batches {
        let id = s(&b["id"]).to_owned();
        let key = s(&b["metadata"]["batchbeam_key"]).to_owned();
        let attempt = s(&b["metadata"]["batchbeam_attempt"]).to_owned();
        if key.is_empty() {
            problems.push(format!("{id} has no batchbeam_key"));
            continue;
        }
        if !known.contains_key(&key) {
            problems.push(format!(
                "{id} names a shard the database does not hold ({key})"
            ));
        }
        // A batch created by a process killed before it recorded it is adopted (found by its
        // key) by whoever steps its shard next: only a finished shard must have recorded it.
        let finished = known.get(&key).and_then(|r| done.get(r.as_str())).copied();
        if !recorded.contains_key(id.as_str()) && finished == Some(true) {
            problems.push(format!("{id} is not recorded on its finished shard"));
        }
        per_attempt.entry((key, attempt)).or_default().push(id);
    }
    for ((key, attempt), ids) in &per_attempt {
        if ids.len() > 1 {
            problems.push(format!(
                "shard {key} attempt {attempt} has {} batches: {}",
                ids.len(),
                ids.join(", ")
            ));
        }
    }
    let created = u(&sim.stats["batches_created"]) as usize;
    if created != sim.batches.len() {
        problems.push(format!(
            "the simulator counted {created} batches and listed {}",
            sim.batches.len()
        ));
    }
    let retried = per_attempt.keys().filter(|(_, a)| a != "1").count();
    Row::check(
        "batches vs shards",
        format!(
            "{} batches for {} shards ({retried} attempts after the first); {} twice",
            sim.batches.len(),
            records.len(),
            per_attempt.values().filter(|v| v.len() > 1).count()
        ),
        problems,
    )
}

/// Every shard (batch-client record) finished: `done`. One left in another state says where
/// it stopped and who holds its lease, for how much longer.
fn shards(db: &Value) -> Row {
    let now = u(&db["now_ms"]) as i64;
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for r in db["records"].as_array().into_iter().flatten() {
        let state = s(&r[2]);
        *states.entry(state).or_default() += 1;
        if state == "done" {
            continue;
        }
        let lease = match (r[4].as_str(), r[5].as_i64()) {
            (Some(owner), Some(until)) if until > now => {
                format!(
                    ", lease held by {owner} for {:.0}s more",
                    (until - now) as f64 / 1000.0
                )
            }
            _ => String::new(),
        };
        let error = r[6].as_str().map(|e| format!(": {e}")).unwrap_or_default();
        problems.push(format!("{} is {state}{lease}{error}", s(&r[0])));
    }
    let states: Vec<String> = states.iter().map(|(k, v)| format!("{v} {k}")).collect();
    Row::check("shards", states.join(", "), problems)
}

/// Nothing billed twice: per custom id (a queue request's id), at most one billed line over
/// every batch; a request answered by batch was billed once, one that fell back never.
fn billing(db: &Value, sim: &SimFacts) -> Row {
    let by_id = sim.requests["requests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let queue = db["queue"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut twice = 0;
    let mut billed_total = 0;
    for (id, counts) in &by_id {
        let billed = u(&counts["billed"]);
        billed_total += billed;
        if billed > 1 {
            twice += 1;
            problems.push(format!("{id} billed {billed} times"));
        }
    }
    let ids: BTreeSet<&str> = queue.iter().map(|q| s(&q[0])).collect();
    for id in by_id.keys() {
        if !ids.contains(id.as_str()) {
            problems.push(format!(
                "{id} was run in a batch but no queue request has that id"
            ));
        }
    }
    let mut fallbacks = 0;
    for q in &queue {
        let (id, state, tier) = (s(&q[0]), s(&q[1]), s(&q[2]));
        let billed = by_id.get(id).map_or(0, |c| u(&c["billed"]));
        match (state, tier) {
            ("done", "batch") if billed != 1 => {
                problems.push(format!("{id} answered by batch, billed {billed} times"))
            }
            ("done", "standard") => {
                fallbacks += 1;
                if billed != 0 {
                    problems.push(format!(
                        "{id} fell back to the standard API after a batch billed it"
                    ));
                }
            }
            _ => {}
        }
    }
    Row::check(
        "requests billed",
        format!(
            "{billed_total} billed in batches + {fallbacks} by the standard API, for {} requests; {twice} billed twice",
            queue.len()
        ),
        problems,
    )
}

/// Exactly one outcome per request: every queue request final (done, with the tier that
/// carried it), and exactly one checkpoint for it in its session.
fn outcomes(db: &Value) -> Row {
    let queue = db["queue"].as_array().cloned().unwrap_or_default();
    let mut checkpoints: HashMap<&str, usize> = HashMap::new();
    for c in db["checkpoints"].as_array().into_iter().flatten() {
        *checkpoints.entry(s(&c[0])).or_default() += 1;
    }
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for q in &queue {
        let (id, state) = (s(&q[0]), s(&q[1]));
        *states.entry(state).or_default() += 1;
        if state != "done" {
            problems.push(format!("{id} is {state}"));
        }
        match checkpoints.get(id).copied().unwrap_or(0) {
            1 => {}
            n => problems.push(format!("{id} has {n} checkpoints")),
        }
    }
    let ids: BTreeSet<&str> = queue.iter().map(|q| s(&q[0])).collect();
    let batch_calls = db["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| s(&c[1]) == "batch")
        .collect::<Vec<_>>();
    for c in &batch_calls {
        if !ids.contains(s(&c[0])) {
            problems.push(format!(
                "a batch call's checkpoint ({}) has no queue request",
                s(&c[0])
            ));
        }
    }
    let states: Vec<String> = states.iter().map(|(k, v)| format!("{v} {k}")).collect();
    Row::check(
        "outcomes",
        format!(
            "{} requests: {}; {} checkpoints ({} by batch)",
            queue.len(),
            if states.is_empty() {
                "none".to_owned()
            } else {
                states.join(", ")
            },
            checkpoints.values().sum::<usize>(),
            batch_calls.len()
        ),
        problems,
    )
}

fn fallbacks(db: &Value, sim: &SimFacts) -> Row {
    let n = db["queue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| s(&q[2]) == "standard")
        .count();
    let sync = u(&sim.stats["sync_requests"]);
    let mut problems = Vec::new();
    if (sync as usize) < n {
        problems.push(format!(
            "{n} requests answered by the standard API, the simulator ran only {sync}"
        ));
    }
    Row::check(
        "fallbacks",
        format!("{n} requests by the standard API (the simulator ran {sync} synchronous requests)"),
        problems,
    )
}

/// A job is taken over only from an instance that was killed (its lease expired): never from
/// one that stayed alive.
fn takeovers(run: &RunFacts, db: &Value) -> Row {
    let events = db["takeovers"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut from: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let ev = &e["event"];
        let prev = ["previousOwner", "from", "previous", "formerOwner"]
            .iter()
            .find_map(|k| ev[*k].as_str())
            .unwrap_or("");
        *from.entry(prev.to_owned()).or_default() += 1;
        if !prev.is_empty() && !run.killed.contains(prev) {
            problems.push(format!(
                "job {} taken over from {prev}, which was never killed",
                s(&e["job"])
            ));
            continue;
        }
        // Its lease was last renewed at most a third of a lease before the kill, so it
        // cannot have expired sooner than two thirds of a lease after it (half, for slack).
        let at = ev["at"].as_str().and_then(rfc3339_ms);
        let last_kill = at.and_then(|at| {
            run.kill_times
                .get(prev)
                .and_then(|ks| ks.iter().rev().find(|k| **k <= at).copied())
        });
        match (at, last_kill) {
            (Some(at), Some(kill)) if at < kill + run.lease_ms / 2 => problems.push(format!(
                "job {} taken over from {prev} {:.1}s after its kill, before its {}s lease could expire",
                s(&e["job"]),
                (at - kill) as f64 / 1000.0,
                run.lease_ms / 1000
            )),
            (Some(_), None) if !run.kill_times.is_empty() => problems.push(format!(
                "job {} taken over from {prev} before {prev} was ever killed",
                s(&e["job"])
            )),
            _ => {}
        }
    }
    let from: Vec<String> = from
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| format!("{v} from {k}"))
        .collect();
    let jobs: BTreeSet<&str> = events.iter().map(|e| s(&e["job"])).collect();
    Row::check(
        "takeovers",
        format!(
            "{} job_taken_over events on {} jobs{}",
            events.len(),
            jobs.len(),
            if from.is_empty() {
                String::new()
            } else {
                format!(" ({})", from.join(", "))
            }
        ),
        problems,
    )
}

fn kills(run: &RunFacts) -> Row {
    let mut problems = Vec::new();
    if run.kills < run.planned_kills && !run.deadline_hit {
        problems.push(format!(
            "{} of {} planned kills sent",
            run.kills, run.planned_kills
        ));
    }
    for crash in &run.crashes {
        problems.push(format!("exited by itself: {crash}"));
    }
    Row::check(
        "kills",
        format!(
            "{} SIGKILLs of {} planned, {} restarts",
            run.kills, run.planned_kills, run.restarts
        ),
        problems,
    )
}

fn faults(sim: &SimFacts) -> Row {
    let list: Vec<String> = sim.stats["faults"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {}", u(v)))
        .collect();
    Row::report(
        "faults injected",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        },
    )
}

/// `2026-12-03T03:41:12.345Z` (UTC, as the server stamps events) in ms since the epoch.
fn rfc3339_ms(text: &str) -> Option<u64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = (days * 86_400 + h * 3600 + min * 60) as f64 * 1000.0 + secs * 1000.0;
    (ms >= 0.0).then_some(ms.round() as u64)
}

/// The table, one line per row, problems under their row.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{:<18} {:<7} figures", "check", "verdict");
    for r in rows {
        let verdict = match r.ok {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "-",
        };
        let _ = writeln!(t, "{:<18} {:<7} {}", r.check, verdict, r.figures);
        if let Some(p) = &r.problem {
            let _ = writeln!(t, "{:<18} {:<7}   ! {p}", "", "");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn good() -> (RunFacts, Value, SimFacts) {
        let run = RunFacts {
            posted: 2,
            kills: 3,
            planned_kills: 3,
            restarts: 3,
            deadline_hit: false,
            killed: ["i1".to_owned()].into(),
            crashes: Vec::new(),
            kill_times: [("i1".to_owned(), vec![1_764_732_000_000])].into(),
            lease_ms: 8000,
        };
        let db = json!({
            "jobs": 2, "jobs_by_status": {"completed": 2},
            "takeovers": [{"job": "j_1", "event": {"type": "job_taken_over", "from": "i1", "at": "2025-12-03T03:20:10.000Z"}}],
            "queue": [["rq_a", "done", "batch"], ["rq_b", "done", "batch"], ["rq_c", "done", "standard"]],
            "now_ms": 1000,
            "records": [["rec_1", "bbk_1", "done", 2, null, 0, null]],
            "record_batches": [["batch_1", "rec_1", 1], ["batch_2", "rec_1", 2]],
            "checkpoints": [["rq_a", "batch"], ["rq_b", "batch"], ["rq_c", "standard"], ["rq_x", "standard"]],
        });
        let sim = SimFacts {
            stats: json!({"batches_created": 2, "sync_requests": 4, "faults": {"batch_fail": 1}}),
            requests: json!({"requests": {
                "rq_a": {"executed": 1, "billed": 1, "batches": ["batch_1"]},
                "rq_b": {"executed": 2, "billed": 1, "batches": ["batch_1", "batch_2"]},
            }}),
            batches: vec![
                json!({"id": "batch_1", "metadata": {"batchbeam_key": "bbk_1", "batchbeam_attempt": "1"}}),
                json!({"id": "batch_2", "metadata": {"batchbeam_key": "bbk_1", "batchbeam_attempt": "2"}}),
            ],
        };
        (run, db, sim)
    }

    fn failed(rows: &[Row]) -> Vec<&'static str> {
        rows.iter()
            .filter(|r| r.ok == Some(false))
            .map(|r| r.check)
            .collect()
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let (run, db, sim) = good();
        let rows = rows(&run, &db, &sim);
        assert_eq!(failed(&rows), Vec::<&str>::new(), "{}", table(&rows));
        let t = table(&rows);
        assert!(
            t.contains("2 batches for 1 shards (1 attempts after the first); 0 twice"),
            "{t}"
        );
        assert!(
            t.contains("2 billed in batches + 1 by the standard API, for 3 requests"),
            "{t}"
        );
    }

    #[test]
    fn each_broken_promise_fails_its_own_check() {
        let (run, mut db, mut sim) = good();
        // A second batch for one attempt of a shard, and a line billed twice.
        sim.batches.push(json!({"id": "batch_3", "metadata": {"batchbeam_key": "bbk_1", "batchbeam_attempt": "2"}}));
        sim.stats["batches_created"] = json!(3);
        sim.requests["requests"]["rq_b"]["billed"] = json!(2);
        // A request with two checkpoints, a job not finished, a takeover from a live instance.
        db["checkpoints"]
            .as_array_mut()
            .unwrap()
            .push(json!(["rq_a", "batch"]));
        db["jobs_by_status"] = json!({"completed": 1, "waiting": 1});
        db["takeovers"][0]["event"]["from"] = json!("i2");
        // A shard left half-submitted under a lease of a dead process.
        db["records"].as_array_mut().unwrap().push(json!([
            "rec_2", "bbk_2", "uploaded", 1, "mgr_x", 600_000, null
        ]));
        let rows = rows(&run, &db, &sim);
        assert_eq!(
            failed(&rows),
            [
                "jobs",
                "batches vs shards",
                "shards",
                "requests billed",
                "outcomes",
                "takeovers"
            ],
            "{}",
            table(&rows)
        );
        let t = table(&rows);
        assert!(t.contains("shard bbk_1 attempt 2 has 2 batches"), "{t}");
        assert!(t.contains("rq_b billed 2 times"), "{t}");
        assert!(t.contains("rq_a has 2 checkpoints"), "{t}");
        assert!(
            t.contains("taken over from i2, which was never killed"),
            "{t}"
        );
        assert!(
            t.contains("rec_2 is uploaded, lease held by mgr_x for 599s more"),
            "{t}"
        );
    }

    #[test]
    fn a_takeover_before_the_lease_could_expire_fails() {
        let (run, mut db, sim) = good();
        // 1 s after the kill, with an 8 s lease.
        db["takeovers"][0]["event"]["at"] = json!("2025-12-03T03:20:01.000Z");
        let rows = rows(&run, &db, &sim);
        assert_eq!(failed(&rows), ["takeovers"]);
        assert!(table(&rows).contains("1.0s after its kill, before its 8s lease"));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(rfc3339_ms("2025-12-03T03:20:00Z"), Some(1_764_732_000_000));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn a_fallback_after_a_billed_line_is_billed_twice() {
        let (run, db, mut sim) = good();
        sim.requests["requests"]["rq_c"] =
            json!({"executed": 1, "billed": 1, "batches": ["batch_2"]});
        assert_eq!(failed(&rows(&run, &db, &sim)), ["requests billed"]);
    }
}
