//! `SimConfig`: keys, time scale, seed, batch timings, token limits, size limits and faults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::FaultConfig;
use crate::limits::Limits;

/// How the simulator behaves. Start from [`SimConfig::default`] and change what you need.
///
/// ```
/// let config = openai_sim::SimConfig::default().with_time_scale(1000.0).with_seed(7);
/// assert_eq!(config.time_scale, 1000.0);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Where [`crate::spawn`] listens; port 0 picks a free port.
    pub addr: SocketAddr,
    /// API keys accepted in `Authorization: Bearer`; `None` accepts any non-empty key.
    pub api_keys: Option<Vec<String>>,
    /// Simulated time runs this many times faster than real time (>= 0). `0` freezes the clock:
    /// simulated time then moves only with [`crate::SimHandle::advance_clock`] (or
    /// `POST /sim/clock/advance`), so a test that steps time by hand never races the wall clock.
    pub time_scale: f64,
    /// Seed for everything random: models, output order, faults.
    pub seed: u64,
    /// How long each batch phase takes, in simulated seconds.
    pub timing: BatchTiming,
    /// Enqueued-token limit per model name as written in the input (e.g. `gpt-4o-mini`).
    pub token_limits: BTreeMap<String, u64>,
    /// Enqueued-token limit for models not in `token_limits`; `None` means unlimited.
    pub default_token_limit: Option<u64>,
    /// Models a batch may name (others fail validation with `model_not_found`); `None` accepts any.
    pub known_models: Option<Vec<String>>,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Where uploaded and produced files live; `None` uses a temporary directory removed on drop.
    pub data_dir: Option<PathBuf>,
    /// The organization id shown in messages (`org-…`).
    pub organization: String,
    /// Most request lines a batch input file may hold.
    pub max_batch_lines: usize,
    /// Largest `purpose=batch` upload, in bytes.
    pub max_batch_file_bytes: u64,
    /// Largest upload of any purpose, in bytes.
    pub max_file_bytes: u64,
    /// How often (real time) the background task advances batches.
    pub tick: Duration,
    /// Extra simulated seconds a `service_tier: "flex"` synchronous request takes.
    pub flex_delay_secs: f64,
    /// How big a request and how slow a client may be (real time, not simulated).
    pub limits: Limits,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: None,
            time_scale: 1.0,
            seed: 0,
            timing: BatchTiming::default(),
            token_limits: BTreeMap::new(),
            default_token_limit: None,
            known_models: None,
            faults: FaultConfig::default(),
            data_dir: None,
            organization: "org-openaisim0000000000000".to_owned(),
            max_batch_lines: 50_000,
            max_batch_file_bytes: 200 * 1024 * 1024,
            max_file_bytes: 512 * 1024 * 1024,
            tick: Duration::from_millis(50),
            flex_delay_secs: 5.0,
            limits: Limits::default(),
        }
    }
}

impl SimConfig {
    /// Sets [`SimConfig::time_scale`].
    pub fn with_time_scale(mut self, scale: f64) -> SimConfig {
        self.time_scale = scale;
        self
    }

    /// Freezes the clock ([`SimConfig::time_scale`] 0): simulated time moves only when advanced
    /// by hand, whatever the machine's speed. Every test that steps the clock should use this.
    ///
    /// ```
    /// let config = openai_sim::SimConfig::default().with_frozen_clock();
    /// assert_eq!(config.time_scale, 0.0);
    /// ```
    pub fn with_frozen_clock(self) -> SimConfig {
        self.with_time_scale(0.0)
    }

    /// Sets [`SimConfig::addr`].
    pub fn with_addr(mut self, addr: SocketAddr) -> SimConfig {
        self.addr = addr;
        self
    }

    /// Sets [`SimConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> SimConfig {
        self.seed = seed;
        self
    }

    /// Accepts only these API keys.
    pub fn with_api_keys<I, S>(mut self, keys: I) -> SimConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`SimConfig::timing`].
    pub fn with_timing(mut self, timing: BatchTiming) -> SimConfig {
        self.timing = timing;
        self
    }

    /// Sets the enqueued-token limit of one model.
    pub fn with_token_limit(mut self, model: impl Into<String>, limit: u64) -> SimConfig {
        self.token_limits.insert(model.into(), limit);
        self
    }

    /// Sets [`SimConfig::faults`].
    pub fn with_faults(mut self, faults: FaultConfig) -> SimConfig {
        self.faults = faults;
        self
    }

    /// Request size and client speed limits (see [`Limits`]).
    pub fn with_limits(mut self, limits: Limits) -> SimConfig {
        self.limits = limits;
        self
    }

    /// Sets [`SimConfig::data_dir`].
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> SimConfig {
        self.data_dir = Some(dir.into());
        self
    }

    pub(crate) fn token_limit(&self, model: &str) -> Option<u64> {
        self.token_limits
            .get(model)
            .copied()
            .or(self.default_token_limit)
    }

    pub(crate) fn check(&self) -> crate::Result<()> {
        if !(self.time_scale.is_finite() && self.time_scale >= 0.0) {
            return Err(crate::Error::Config(format!(
                "time_scale must be a number >= 0 (0 freezes the clock), got {}",
                self.time_scale
            )));
        }
        self.timing.check()
    }
}

/// Simulated durations of a batch's phases. The defaults are what small real batches take
/// (tens of seconds to a few minutes in all): see observed-behaviour §9.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BatchTiming {
    /// From create to the end of validation (a failed batch fails then).
    pub validating_secs: f64,
    /// From the end of validation to `in_progress`.
    pub queue_secs: f64,
    /// From `in_progress` to the first request finishing.
    pub work_base_secs: f64,
    /// Each further request adds this much (requests finish one after another).
    pub per_request_secs: f64,
    /// `request_counts` move only at multiples of this since `in_progress_at` (coarse steps).
    pub progress_step_secs: f64,
    /// From `finalizing` to `completed`.
    pub finalizing_secs: f64,
    /// From `cancelling` to `cancelled`.
    pub cancelling_secs: f64,
}

impl Default for BatchTiming {
    fn default() -> BatchTiming {
        BatchTiming {
            validating_secs: 2.0,
            queue_secs: 10.0,
            work_base_secs: 20.0,
            per_request_secs: 0.5,
            progress_step_secs: 10.0,
            finalizing_secs: 3.0,
            cancelling_secs: 30.0,
        }
    }
}

impl BatchTiming {
    fn check(&self) -> crate::Result<()> {
        let all = [
            ("validating_secs", self.validating_secs),
            ("queue_secs", self.queue_secs),
            ("work_base_secs", self.work_base_secs),
            ("per_request_secs", self.per_request_secs),
            ("progress_step_secs", self.progress_step_secs),
            ("finalizing_secs", self.finalizing_secs),
            ("cancelling_secs", self.cancelling_secs),
        ];
        for (name, v) in all {
            if !(v.is_finite() && v >= 0.0) {
                return Err(crate::Error::Config(format!(
                    "timing.{name} must be a non-negative number, got {v}"
                )));
            }
        }
        Ok(())
    }
}
