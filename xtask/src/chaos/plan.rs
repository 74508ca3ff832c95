//! What a chaos run does, all drawn from its seed: the jobs and when they are posted, the
//! simulator's faults, and when which instance is SIGKILLed and for how long it stays down.
//! The schedule is in seconds since the run started; where the kills land in the jobs' lives
//! depends on how fast the machine is, which is why a run's counts vary and its verdict not.

use serde_json::{Value, json};

/// The job lease the instances run with (`BATCHBEAM_LEASE_SECS`), in seconds: short, so that
/// an instance down for longer has its running jobs taken over by another within the run.
pub(crate) const LEASE_SECS: u64 = 8;
const LEASE: f64 = LEASE_SECS as f64;

/// SplitMix64: a tiny seeded generator (xtask takes no `rand`), the same numbers on every
/// machine for a seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6368_616f_735f_7631)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// CI's: a few jobs and kills, 2-4 minutes on 2 cores.
    Short,
    /// The default.
    Normal,
    /// The documented one: 50 jobs, at least 20 kills.
    Long,
}

/// One SIGKILL: when (seconds after the start), which instance (an index, moved on to the
/// next one up if that one is down then), and how long it stays down.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kill {
    pub(crate) at: f64,
    pub(crate) instance: usize,
    pub(crate) down_for: f64,
}

/// A run's plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) size: Size,
    /// `POST /api/beam-search` bodies, and when each is posted (seconds after the start).
    pub(crate) jobs: Vec<(f64, Value)>,
    pub(crate) kills: Vec<Kill>,
    /// The simulator's faults document (`batchbeam sim --faults`).
    pub(crate) faults: Value,
    /// Past this many seconds the run stops and fails.
    pub(crate) deadline_secs: u64,
}

const IDEAS: [&str; 10] = [
    "a lighthouse on a basalt cliff in a winter storm",
    "a fox reading a map in an autumn forest",
    "a glass greenhouse on the moon at dawn",
    "an old tram crossing a flooded city square",
    "a paper boat race in a rainy alley",
    "a clockmaker's workshop full of brass birds",
    "a desert observatory under a meteor shower",
    "a tea house on stilts above a misty river",
    "a violin made of ice in a concert hall",
    "a night market on a frozen lake",
];

impl Plan {
    /// The plan for `seed` at `size` with `instances` serve processes.
    pub(crate) fn new(seed: u64, size: Size, instances: usize) -> Plan {
        let mut rng = Rng::new(seed);
        let (jobs, kills, post_gap, kill_gap, down, deadline_secs) = match size {
            // An instance stays down from a second to twice the job lease
            // (`LEASE_SECS`): its jobs are either resumed by it or taken over by another.
            Size::Short => (12, 5, (0.5, 2.0), (5.0, 12.0), (1.0, 2.0 * LEASE), 8 * 60),
            Size::Normal => (24, 10, (0.5, 2.5), (4.0, 10.0), (1.0, 2.0 * LEASE), 15 * 60),
            Size::Long => (50, 24, (0.5, 2.5), (3.0, 9.0), (1.0, 2.0 * LEASE), 40 * 60),
        };
        let mut at = 1.0;
        let jobs = (0..jobs)
            .map(|i| {
                at += rng.between(post_gap.0, post_gap.1);
                let body = json!({
                    "prompt": IDEAS[i % IDEAS.len()],
                    "n": 4,
                    "m": 2,
                    "iterations": 2,
                    "plan": "fused",
                    "judging": "comparative",
                    "ensemble": 1,
                    "seed": seed.wrapping_mul(1000).wrapping_add(i as u64) % 1_000_000_007,
                    "useBatch": true,
                    "batchWaitMode": "deferred",
                });
                (at, body)
            })
            .collect();
        let mut at = 2.0;
        let kills = (0..kills)
            .map(|_| {
                at += rng.between(kill_gap.0, kill_gap.1);
                Kill {
                    at,
                    instance: rng.below(instances),
                    down_for: rng.between(down.0, down.1),
                }
            })
            .collect();
        Plan {
            seed,
            size,
            jobs,
            kills,
            faults: faults(&mut rng, seed),
            deadline_secs,
        }
    }
}

/// The simulator's faults for a run: 429 storms (a run of consecutive 429s with
/// `Retry-After`) at seeded points, 5xx and connection resets at random, truncated downloads,
/// and forced batch outcomes (failed, expired, cancelled, stalled, `token_limit_exceeded`).
/// Every fault is one a client must survive: none of them may cost a request its answer.
fn faults(rng: &mut Rng, seed: u64) -> Value {
    let mut rules = Vec::new();
    let mut skip = 0u64;
    for _ in 0..4 {
        skip += 20 + rng.below(200) as u64;
        let next = 3 + rng.below(10) as u64;
        rules.push(
            json!({"path": "/v1/**", "fault": "rate_limit", "skip": skip,
                          "next": next, "retry_after_secs": 1}),
        );
        skip += next;
    }
    let p = |rng: &mut Rng, lo: f64, hi: f64| (rng.between(lo, hi) * 1000.0).round() / 1000.0;
    rules.push(
        json!({"path": "/v1/files/*/content", "fault": "truncated_download",
                      "probability": p(rng, 0.05, 0.2)}),
    );
    for fault in [
        "server_error",
        "bad_gateway",
        "service_unavailable",
        "connection_reset",
    ] {
        rules.push(json!({"path": "/v1/**", "fault": fault, "probability": p(rng, 0.003, 0.015)}));
    }
    let mut batches = Vec::new();
    for outcome in ["fail", "expire", "cancel", "stall", "token_limit"] {
        batches.push(json!({"outcome": outcome, "probability": p(rng, 0.02, 0.06)}));
    }
    json!({"seed": seed, "rules": rules, "batches": batches})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_plan() {
        let (a, b) = (Plan::new(7, Size::Long, 3), Plan::new(7, Size::Long, 3));
        assert_eq!(a.kills, b.kills);
        assert_eq!(a.faults, b.faults);
        assert_eq!(a.jobs.len(), 50);
        assert!(a.kills.len() >= 20);
        assert!(a.kills.iter().all(|k| k.instance < 3 && k.down_for > 0.0));
        assert!(a.kills.windows(2).all(|w| w[0].at < w[1].at));
        assert_ne!(Plan::new(8, Size::Long, 3).kills, a.kills);
        let short = Plan::new(7, Size::Short, 3);
        assert!(short.jobs.len() < a.jobs.len() && short.kills.len() < a.kills.len());
    }
}
