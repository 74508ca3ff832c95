//! Fault injection: seeded, countable HTTP faults per route and forced outcomes per batch.
//!
//! A faults file is TOML (or JSON when its name ends in `.json`):
//!
//! ```toml
//! seed = 42                      # optional; defaults to the simulator's seed
//!
//! [[rules]]                      # HTTP faults, tried in order; the first that fires wins
//! method = "POST"                # optional; any method when absent
//! path = "/v1/batches"           # optional; `*` matches one segment, a trailing `**` the rest
//! fault = "rate_limit"           # rate_limit | server_error | bad_gateway | service_unavailable
//!                                # | connection_reset | slow | truncated_download
//! next = 2                       # fire on the next N matching requests ...
//! skip = 0                       # ... after letting this many through
//! # probability = 0.1            # or fire at random (with `next`, both must agree)
//! retry_after_secs = 1           # rate_limit: the Retry-After header
//! # delay_ms = 1500              # slow: real delay before the request is served
//!
//! [[batches]]                    # forced outcomes for batches, in creation order
//! outcome = "expire"             # fail | expire | stall | cancel | token_limit
//! next = 1                       # or probability = 0.5
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use axum::http::{HeaderName, Method, StatusCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Every fault the simulator can inject, from a file or built in code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Seed of the fault dice; `None` uses the simulator's seed.
    pub seed: Option<u64>,
    /// HTTP faults, tried in order for each request under `/v1`.
    #[serde(alias = "rule")]
    pub rules: Vec<FaultRule>,
    /// Forced outcomes for newly created batches, tried in order.
    #[serde(alias = "batch")]
    pub batches: Vec<BatchOutcomeRule>,
}

impl FaultConfig {
    /// Reads a faults file: JSON when the name ends in `.json`, TOML otherwise.
    pub fn from_file(path: &Path) -> crate::Result<FaultConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::FaultsRead {
            path: path.to_owned(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            FaultConfig::from_json_str(&text)
        } else {
            FaultConfig::from_toml_str(&text)
        };
        parsed.map_err(|e| match e {
            crate::Error::FaultsParse { message, .. } => crate::Error::FaultsParse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses the TOML form.
    pub fn from_toml_str(text: &str) -> crate::Result<FaultConfig> {
        let config: FaultConfig = toml::from_str(text).map_err(|e| crate::Error::FaultsParse {
            path: Default::default(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Parses the JSON form.
    pub fn from_json_str(text: &str) -> crate::Result<FaultConfig> {
        let config: FaultConfig =
            serde_json::from_str(text).map_err(|e| crate::Error::FaultsParse {
                path: Default::default(),
                message: e.to_string(),
            })?;
        config.check()?;
        Ok(config)
    }

    /// Adds an HTTP fault rule.
    pub fn with_rule(mut self, rule: FaultRule) -> FaultConfig {
        self.rules.push(rule);
        self
    }

    /// Adds a forced batch outcome rule.
    pub fn with_batch_outcome(mut self, rule: BatchOutcomeRule) -> FaultConfig {
        self.batches.push(rule);
        self
    }

    fn check(&self) -> crate::Result<()> {
        let bad_p = |p: Option<f64>| p.is_some_and(|p| !(0.0..=1.0).contains(&p));
        for r in &self.rules {
            if bad_p(r.probability) {
                return Err(parse_err("probability must be between 0 and 1"));
            }
            if let Some(m) = &r.method
                && Method::from_bytes(m.as_bytes()).is_err()
            {
                return Err(parse_err(&format!("invalid method {m:?}")));
            }
        }
        for b in &self.batches {
            if bad_p(b.probability) {
                return Err(parse_err("probability must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

fn parse_err(message: &str) -> crate::Error {
    crate::Error::FaultsParse {
        path: Default::default(),
        message: message.to_owned(),
    }
}

/// One HTTP fault: which requests it hits, how often, and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultRule {
    /// HTTP method to match (any when `None`).
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern: `*` matches one segment, a trailing `**` any rest; any path when `None`.
    #[serde(default)]
    pub path: Option<String>,
    /// What to do.
    pub fault: FaultKind,
    /// Fire on at most this many matching requests (after `skip`).
    #[serde(default)]
    pub next: Option<u64>,
    /// Let this many matching requests through first.
    #[serde(default)]
    pub skip: u64,
    /// Chance of firing on each matching request (1.0 when absent).
    #[serde(default)]
    pub probability: Option<f64>,
    /// `Retry-After` seconds sent with a `rate_limit` fault.
    #[serde(default = "one")]
    pub retry_after_secs: u64,
    /// Real milliseconds a `slow` fault waits before serving the request.
    #[serde(default = "thousand")]
    pub delay_ms: u64,
}

fn one() -> u64 {
    1
}

fn thousand() -> u64 {
    1000
}

impl FaultRule {
    /// A rule that fires `fault` on every request (narrow it with the other builders).
    pub fn new(fault: FaultKind) -> FaultRule {
        FaultRule {
            method: None,
            path: None,
            fault,
            next: None,
            skip: 0,
            probability: None,
            retry_after_secs: 1,
            delay_ms: 1000,
        }
    }

    /// Only requests with this method and path pattern.
    pub fn on(mut self, method: &str, path: &str) -> FaultRule {
        self.method = Some(method.to_owned());
        self.path = Some(path.to_owned());
        self
    }

    /// Fire on the next `n` matching requests only.
    pub fn next(mut self, n: u64) -> FaultRule {
        self.next = Some(n);
        self
    }

    /// Let `n` matching requests through first.
    pub fn skip(mut self, n: u64) -> FaultRule {
        self.skip = n;
        self
    }

    /// Fire with probability `p`.
    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = Some(p);
        self
    }

    /// `Retry-After` for `rate_limit`.
    pub fn retry_after_secs(mut self, secs: u64) -> FaultRule {
        self.retry_after_secs = secs;
        self
    }

    /// Real delay for `slow`.
    pub fn delay_ms(mut self, ms: u64) -> FaultRule {
        self.delay_ms = ms;
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method.as_str())
        {
            return false;
        }
        match &self.path {
            None => true,
            Some(p) => path_matches(p, path),
        }
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    if pattern == "*" || pattern == "**" {
        return true;
    }
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" && i == pat.len() - 1 {
            return got.len() >= i;
        }
        match got.get(i) {
            Some(g) if *p == "*" || p == g => {}
            _ => return false,
        }
    }
    pat.len() == got.len()
}

/// The HTTP faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FaultKind {
    /// 429 `rate_limit_exceeded` with `Retry-After`.
    RateLimit,
    /// 500 `server_error`.
    ServerError,
    /// 502.
    BadGateway,
    /// 503.
    ServiceUnavailable,
    /// The connection is dropped (TCP reset) without an answer.
    ConnectionReset,
    /// The request is served after a delay.
    Slow,
    /// A file download promises its full `Content-Length` and sends only half the bytes.
    TruncatedDownload,
}

impl FaultKind {
    /// The name used in faults files and in `/sim/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::RateLimit => "rate_limit",
            FaultKind::ServerError => "server_error",
            FaultKind::BadGateway => "bad_gateway",
            FaultKind::ServiceUnavailable => "service_unavailable",
            FaultKind::ConnectionReset => "connection_reset",
            FaultKind::Slow => "slow",
            FaultKind::TruncatedDownload => "truncated_download",
        }
    }
}

/// A forced end for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchOutcome {
    /// Validation fails with a `server_error` entry in `errors`.
    Fail,
    /// Half the requests finish, the rest never do: the batch expires at `expires_at`.
    Expire,
    /// No request ever finishes: the batch stays `in_progress` until it expires.
    Stall,
    /// Half the requests finish, then the batch is cancelled on OpenAI's side (as an
    /// organisation's owner can): `cancelling`, then `cancelled` with the rest unrun.
    Cancel,
    /// Validation fails with `token_limit_exceeded`, whatever the limits say.
    TokenLimit,
}

impl BatchOutcome {
    /// The name used in faults files and in `/sim/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchOutcome::Fail => "batch_fail",
            BatchOutcome::Expire => "batch_expire",
            BatchOutcome::Stall => "batch_stall",
            BatchOutcome::Cancel => "batch_cancel",
            BatchOutcome::TokenLimit => "batch_token_limit",
        }
    }
}

/// Which newly created batches get a forced outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BatchOutcomeRule {
    /// The outcome.
    pub outcome: BatchOutcome,
    /// Apply to at most this many batches (after `skip`).
    #[serde(default)]
    pub next: Option<u64>,
    /// Let this many batches through first.
    #[serde(default)]
    pub skip: u64,
    /// Chance for each batch (1.0 when absent).
    #[serde(default)]
    pub probability: Option<f64>,
}

impl BatchOutcomeRule {
    /// Forces `outcome` on every batch (narrow it with `next`/`probability`).
    pub fn new(outcome: BatchOutcome) -> BatchOutcomeRule {
        BatchOutcomeRule {
            outcome,
            next: None,
            skip: 0,
            probability: None,
        }
    }

    /// Only the next `n` batches.
    pub fn next(mut self, n: u64) -> BatchOutcomeRule {
        self.next = Some(n);
        self
    }

    /// Each batch with probability `p`.
    pub fn probability(mut self, p: f64) -> BatchOutcomeRule {
        self.probability = Some(p);
        self
    }
}

/// What the injector decided for one request.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// Answer with this error instead of serving.
    Reject(ApiError),
    /// Drop the connection.
    Reset,
    /// Wait, then serve.
    Slow(Duration),
    /// Serve, but cut the download short.
    Truncate,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    matched: u64,
    fired: u64,
}

/// The live fault state: config, dice and counters.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    config: FaultConfig,
    rng: ChaCha8Rng,
    rules: Vec<Seen>,
    batches: Vec<Seen>,
    counters: BTreeMap<String, u64>,
}

impl FaultInjector {
    pub(crate) fn new(config: FaultConfig, sim_seed: u64) -> FaultInjector {
        let seed = config.seed.unwrap_or(sim_seed ^ 0xfa17_5eed);
        FaultInjector {
            rules: vec![Seen::default(); config.rules.len()],
            batches: vec![Seen::default(); config.batches.len()],
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            counters: BTreeMap::new(),
        }
    }

    /// Replaces the rules (counters of injected faults are kept).
    pub(crate) fn replace(&mut self, config: FaultConfig, sim_seed: u64) {
        let counters = std::mem::take(&mut self.counters);
        *self = FaultInjector::new(config, sim_seed);
        self.counters = counters;
    }

    pub(crate) fn count(&mut self, name: &str) {
        *self.counters.entry(name.to_owned()).or_default() += 1;
    }

    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.clone()
    }

    fn fires(
        rng: &mut ChaCha8Rng,
        seen: &mut Seen,
        skip: u64,
        next: Option<u64>,
        p: Option<f64>,
    ) -> bool {
        seen.matched += 1;
        if seen.matched <= skip || next.is_some_and(|n| seen.fired >= n) {
            return false;
        }
        let hit = match p {
            Some(p) => rng.random::<f64>() < p,
            None => true,
        };
        if hit {
            seen.fired += 1;
        }
        hit
    }

    /// Decides the fate of one request; counts the fault unless it is a truncation
    /// (counted when the download is actually cut).
    pub(crate) fn decide(&mut self, method: &Method, path: &str, org: &str) -> Option<Decision> {
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !rule.matches(method, path) {
                continue;
            }
            if !Self::fires(
                &mut self.rng,
                &mut self.rules[i],
                rule.skip,
                rule.next,
                rule.probability,
            ) {
                continue;
            }
            let kind = rule.fault;
            if kind != FaultKind::TruncatedDownload {
                *self.counters.entry(kind.as_str().to_owned()).or_default() += 1;
            }
            return Some(match kind {
                FaultKind::RateLimit => Decision::Reject(
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "requests",
                        format!(
                            "Rate limit reached for requests in organization {org} on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in {}s. Visit https://platform.openai.com/account/rate-limits to learn more.",
                            rule.retry_after_secs
                        ),
                    )
                    .code("rate_limit_exceeded")
                    .header(
                        HeaderName::from_static("retry-after"),
                        &rule.retry_after_secs.to_string(),
                    ),
                ),
                FaultKind::ServerError => Decision::Reject(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "The server had an error while processing your request. Sorry about that!",
                )),
                FaultKind::BadGateway => Decision::Reject(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "Bad gateway.",
                )),
                FaultKind::ServiceUnavailable => Decision::Reject(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "The engine is currently overloaded, please try again later.",
                )),
                FaultKind::ConnectionReset => Decision::Reset,
                FaultKind::Slow => Decision::Slow(Duration::from_millis(rule.delay_ms)),
                FaultKind::TruncatedDownload => Decision::Truncate,
            });
        }
        None
    }

    /// The forced outcome for a batch being created, if any (counted).
    pub(crate) fn batch_outcome(&mut self) -> Option<BatchOutcome> {
        for (i, rule) in self.config.batches.iter().enumerate() {
            if Self::fires(
                &mut self.rng,
                &mut self.batches[i],
                rule.skip,
                rule.next,
                rule.probability,
            ) {
                *self
                    .counters
                    .entry(rule.outcome.as_str().to_owned())
                    .or_default() += 1;
                return Some(rule.outcome);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        assert!(path_matches(
            "/v1/files/*/content",
            "/v1/files/file-abc/content"
        ));
        assert!(!path_matches("/v1/files/*/content", "/v1/files/file-abc"));
        assert!(path_matches("/v1/**", "/v1/batches/x/cancel"));
        assert!(path_matches("/v1/batches", "/v1/batches"));
        assert!(!path_matches("/v1/batches", "/v1/batches/x"));
        assert!(path_matches("*", "/anything"));
    }

    #[test]
    fn next_and_skip_count_matching_requests() {
        let cfg = FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::ServerError)
                .on("GET", "/v1/files")
                .skip(1)
                .next(2),
        );
        let mut inj = FaultInjector::new(cfg, 0);
        let get = Method::GET;
        let fired: Vec<bool> = (0..5)
            .map(|_| inj.decide(&get, "/v1/files", "org-x").is_some())
            .collect();
        assert_eq!(fired, [false, true, true, false, false]);
        assert!(inj.decide(&Method::POST, "/v1/files", "org-x").is_none());
        assert_eq!(inj.counters()["server_error"], 2);
    }

    #[test]
    fn toml_and_json_forms_parse() {
        let t = FaultConfig::from_toml_str(
            "seed = 3\n[[rules]]\npath = \"/v1/batches\"\nfault = \"rate_limit\"\nnext = 1\n[[batches]]\noutcome = \"stall\"\nprobability = 0.5\n",
        )
        .unwrap();
        assert_eq!(t.rules[0].fault, FaultKind::RateLimit);
        assert_eq!(t.batches[0].outcome, BatchOutcome::Stall);
        let j = FaultConfig::from_json_str(r#"{"rules":[{"fault":"slow","delay_ms":5}]}"#).unwrap();
        assert_eq!(j.rules[0].delay_ms, 5);
        assert!(FaultConfig::from_toml_str("[[rules]]\nfault = \"nope\"\n").is_err());
        assert!(
            FaultConfig::from_json_str(r#"{"rules":[{"fault":"slow","probability":2}]}"#).is_err()
        );
    }
}
