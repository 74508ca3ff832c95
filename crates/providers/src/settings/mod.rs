//! Configuration from figment: defaults < `batchbeam.toml` < environment, every value checked,
//! and a bad one named by the variable or key it came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::{Figment, Provider as _};

use crate::{Operation, Role, RoleModels, Tier};

/// The configuration file read by [`ProvidersConfig::load`] unless `BATCHBEAM_CONFIG` names
/// another.
pub const CONFIG_FILE: &str = "batchbeam.toml";

/// Every setting: its key in `batchbeam.toml` and its environment variable.
pub const SETTINGS: &[(&str, &str)] = &[
    ("batch.enabled", "BATCH_API_ENABLED"),
    ("batch.mode", "BATCH_API_MODE"),
    ("batch.max_wait_hours", "BATCH_MAX_WAIT_HOURS"),
    ("batch.poll_interval_ms", "BATCH_POLL_INTERVAL_MS"),
    ("batch.vision_enabled", "BATCH_VISION_ENABLED"),
    ("batch.llm_enabled", "BATCH_LLM_ENABLED"),
    ("batch.fallback_to_standard", "BATCH_FALLBACK_TO_STANDARD"),
    ("batch.cost_tracking", "BATCH_COST_TRACKING"),
    ("batch.hybrid_mode", "BATCH_HYBRID_MODE"),
    ("tiers.expand", "BATCHBEAM_TIER_EXPAND"),
    ("tiers.combine", "BATCHBEAM_TIER_COMBINE"),
    ("tiers.critique", "BATCHBEAM_TIER_CRITIQUE"),
    ("tiers.refine", "BATCHBEAM_TIER_REFINE"),
    ("tiers.render", "BATCHBEAM_TIER_RENDER"),
    ("tiers.judge", "BATCHBEAM_TIER_JUDGE"),
    ("models.llm", "BATCHBEAM_LLM_MODEL"),
    ("models.vision", "BATCHBEAM_VISION_MODEL"),
    ("models.image", "BATCHBEAM_IMAGE_MODEL"),
    ("flex.timeout_secs", "BATCHBEAM_FLEX_TIMEOUT_SECS"),
    ("simulated.seed", "BATCHBEAM_SIM_SEED"),
];

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is not allowed. `name` is the environment variable, or the key and its file.
    #[error("{name} = '{value}' is not allowed: expected {allowed}")]
    Invalid {
        /// `BATCH_API_MODE`, or `` `batch.mode` in batchbeam.toml ``.
        name: String,
        /// The value found.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A key the configuration does not have (most likely a typo).
    #[error("unknown key {name}: expected one of {allowed}")]
    UnknownKey {
        /// The key and its file.
        name: String,
        /// The keys of that table.
        allowed: String,
    },
    /// The file cannot be read or is not TOML.
    #[error("configuration: {0}")]
    Unreadable(String),
    /// A tier was configured without what it needs (an API client, a batch queue).
    #[error("the {tier} tier for {operation} needs {what}")]
    Missing {
        /// The operation.
        operation: Operation,
        /// Its tier.
        tier: Tier,
        /// What is missing.
        what: &'static str,
    },
}

/// When queued batch requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// Wait for a stage barrier (or a full group, or the delay) and send one batch per stage.
    Deferred,
    /// Send each group as soon as requests arrive.
    Immediate,
}

/// The Batch API settings of the guide, with its defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchSettings {
    /// `BATCH_API_ENABLED` (false): the safety switch; when off, no call goes to batch.
    pub enabled: bool,
    /// `BATCH_API_MODE` (deferred).
    pub mode: BatchMode,
    /// `BATCH_MAX_WAIT_HOURS` (24): cancel a batch still running after this long.
    pub max_wait_hours: u32,
    /// `BATCH_POLL_INTERVAL_MS` (30000).
    pub poll_interval_ms: u64,
    /// `BATCH_VISION_ENABLED` (true): judging may go to batch.
    pub vision_enabled: bool,
    /// `BATCH_LLM_ENABLED` (true): expand, combine, critique and refine may go to batch.
    pub llm_enabled: bool,
    /// `BATCH_FALLBACK_TO_STANDARD` (true): a failed batch request (and a busy or slow flex
    /// one) is sent to the standard tier instead of failing.
    pub fallback_to_standard: bool,
    /// `BATCH_COST_TRACKING` (true).
    pub cost_tracking: bool,
    /// `BATCH_HYBRID_MODE` (false): pick tiers by latency budget.
    pub hybrid_mode: bool,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            enabled: false,
            mode: BatchMode::Deferred,
            max_wait_hours: 24,
            poll_interval_ms: 30_000,
            vision_enabled: true,
            llm_enabled: true,
            fallback_to_standard: true,
            cost_tracking: true,
            hybrid_mode: false,
        }
    }
}

/// Everything the factory needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProvidersConfig {
    /// Batch API settings.
    pub batch: BatchSettings,
    /// Tiers set explicitly per operation (`tiers.<op>` / `BATCHBEAM_TIER_<OP>`); see
    /// [`ProvidersConfig::tier_for`] for the rest.
    pub tiers: Vec<(Operation, Tier)>,
    /// Models per role (`models.llm`/`vision`/`image`).
    pub models: RoleModels,
    /// How long a flex call may take before it falls back (`flex.timeout_secs`, 900).
    pub flex_timeout: Duration,
    /// Seed of the simulated models (`simulated.seed`, 0).
    pub simulated_seed: u64,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            batch: BatchSettings::default(),
            tiers: Vec::new(),
            models: RoleModels::default(),
            flex_timeout: Duration::from_secs(900),
            simulated_seed: 0,
        }
    }
}

impl ProvidersConfig {
    /// Reads `batchbeam.toml` in the working directory when there is one (or the file
    /// `BATCHBEAM_CONFIG` names, which must exist) and the environment.
    pub fn load() -> Result<ProvidersConfig, ConfigError> {
        let path = match std::env::var_os("BATCHBEAM_CONFIG") {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_file() {
                    return Err(ConfigError::Invalid {
                        name: "BATCHBEAM_CONFIG".to_owned(),
                        value: p.display().to_string(),
                        allowed: "the path of a TOML file".to_owned(),
                    });
                }
                p
            }
            None => PathBuf::from(CONFIG_FILE),
        };
        ProvidersConfig::from_figment(&ProvidersConfig::figment(Some(&path)))
    }

    /// The layers: the TOML file at `path` when given and present, then the environment
    /// variables of [`SETTINGS`] on top. Defaults are applied by
    /// [`ProvidersConfig::from_figment`] for whatever no layer sets.
    pub fn figment(path: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(path) = path.filter(|p| p.is_file()) {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::raw().filter_map(|key| {
            SETTINGS
                .iter()
                .find(|(_, var)| key.as_str().eq_ignore_ascii_case(var))
                .map(|(dotted, _)| (*dotted).into())
        }))
    }

    /// Reads and checks every setting of `figment`.
    pub fn from_figment(figment: &Figment) -> Result<ProvidersConfig, ConfigError> {
        let r = Reader { figment };
        r.reject_unknown_keys()?;
        let mut c = ProvidersConfig::default();
        let b = &mut c.batch;
        r.bool("batch.enabled", &mut b.enabled)?;
        if let Some((v, raw)) = r.string("batch.mode")? {
            b.mode = match v.trim().to_ascii_lowercase().as_str() {
                "deferred" => BatchMode::Deferred,
                "immediate" => BatchMode::Immediate,
                _ => return Err(r.invalid("batch.mode", &raw, "deferred or immediate")),
            };
        }
        if let Some(h) = r.integer(
            "batch.max_wait_hours",
            1,
            24,
            "a whole number of hours from 1 to 24",
        )? {
            b.max_wait_hours = h as u32;
        }
        if let Some(ms) = r.integer(
            "batch.poll_interval_ms",
            1,
            86_400_000,
            "a whole number of milliseconds from 1 to 86400000",
        )? {
            b.poll_interval_ms = ms;
        }
        r.bool("batch.vision_enabled", &mut b.vision_enabled)?;
        r.bool("batch.llm_enabled", &mut b.llm_enabled)?;
        r.bool("batch.fallback_to_standard", &mut b.fallback_to_standard)?;
        r.bool("batch.cost_tracking", &mut b.cost_tracking)?;
        r.bool("batch.hybrid_mode", &mut b.hybrid_mode)?;
        for op in Operation::ALL {
            let key = format!("tiers.{op}");
            if let Some((v, raw)) = r.string(&key)? {
                let tier = v
                    .parse::<Tier>()
                    .map_err(|()| r.invalid(&key, &raw, "standard, flex, batch or simulated"))?;
                c.tiers.push((op, tier));
            }
        }
        for (key, slot) in [
            ("models.llm", &mut c.models.llm),
            ("models.vision", &mut c.models.vision),
            ("models.image", &mut c.models.image),
        ] {
            if let Some((v, raw)) = r.string(key)? {
                let v = v.trim();
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(r.invalid(key, &raw, "a model name without spaces"));
                }
                *slot = v.to_owned();
            }
        }
        if let Some((v, raw)) = r.string("flex.timeout_secs")? {
            match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s <= 86_400.0 => c.flex_timeout = Duration::from_secs_f64(s),
                _ => {
                    return Err(r.invalid(
                        "flex.timeout_secs",
                        &raw,
                        "a number of seconds above 0 and at most 86400",
                    ));
                }
            }
        }
        if let Some(seed) = r.integer(
            "simulated.seed",
            0,
            u64::MAX,
            "a whole number from 0 to 18446744073709551615",
        )? {
            c.simulated_seed = seed;
        }
        Ok(c)
    }

    /// The tier an operation's calls use.
    ///
    /// An explicit `tiers.<op>` wins, except that `batch` needs batching to be allowed for the
    /// operation's role (`BATCH_API_ENABLED`, and `BATCH_LLM_ENABLED` for expand, combine,
    /// critique and refine, `BATCH_VISION_ENABLED` for judge); otherwise it is `standard`.
    /// Without an explicit tier, an operation goes to `batch` when batching is allowed for it,
    /// and to `standard` when not.
    pub fn tier_for(&self, operation: Operation) -> Tier {
        let b = &self.batch;
        let batch_allowed = b.enabled
            && match operation.role() {
                Role::Llm => b.llm_enabled,
                Role::Vision => b.vision_enabled,
                Role::Image => true,
            };
        let explicit = self.tiers.iter().rev().find(|(op, _)| *op == operation);
        match explicit.map(|(_, t)| *t) {
            Some(Tier::Batch) | None if batch_allowed => Tier::Batch,
            Some(Tier::Batch) | None => Tier::Standard,
            Some(t) => t,
        }
    }

    /// The batch queue's configuration for these settings (`BATCH_FALLBACK_TO_STANDARD`; the
    /// rest are the queue's defaults).
    pub fn queue_config(&self) -> batch_queue::QueueConfig {
        batch_queue::QueueConfig {
            fallback_to_standard: self.batch.fallback_to_standard,
            ..batch_queue::QueueConfig::default()
        }
    }

    /// The job manager's configuration for these settings: `BATCH_POLL_INTERVAL_MS` and
    /// `BATCH_MAX_WAIT_HOURS`, files under `data_dir`.
    pub fn manager_config(&self, data_dir: impl Into<PathBuf>) -> batch_client::ManagerConfig {
        let mut config = batch_client::ManagerConfig::new(data_dir);
        config.poll_interval = Duration::from_millis(self.batch.poll_interval_ms);
        config.poll_ceiling = config.poll_ceiling.max(config.poll_interval);
        config.max_wait = Duration::from_secs(u64::from(self.batch.max_wait_hours) * 3600);
        config
    }

    /// Sets an operation's tier, replacing any earlier setting.
    pub fn with_tier(mut self, operation: Operation, tier: Tier) -> ProvidersConfig {
        self.tiers.retain(|(op, _)| *op != operation);
        self.tiers.push((operation, tier));
        self
    }
}

/// A figment error, with the file it is about (the only file a figment of ours reads).
fn unreadable(figment: &Figment, e: figment::Error) -> ConfigError {
    let file = figment
        .metadata()
        .chain(e.metadata.as_ref())
        .find_map(|m| match &m.source {
            Some(figment::Source::File(path)) => Some(format!("{}: ", path.display())),
            _ => None,
        })
        .unwrap_or_default();
    ConfigError::Unreadable(format!("{file}{}", e.to_string().trim_end()))
}

/// Reads values from a figment and names their source in errors.
struct Reader<'a> {
    figment: &'a Figment,
}

impl Reader<'_> {
    /// The environment variable, or `` `key` in <file> ``, that set `key`.
    fn name(&self, key: &str) -> String {
        let var = SETTINGS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        match self.figment.find_metadata(key) {
            Some(md) => match &md.source {
                Some(figment::Source::File(path)) => format!("`{key}` in {}", path.display()),
                _ if md.name.contains("environment") => var.unwrap_or(key).to_owned(),
                _ => format!("`{key}` ({})", md.name),
            },
            None => var.map_or_else(|| format!("`{key}`"), str::to_owned),
        }
    }

    fn invalid(&self, key: &str, value: &str, allowed: &str) -> ConfigError {
        ConfigError::Invalid {
            name: self.name(key),
            value: value.to_owned(),
            allowed: allowed.to_owned(),
        }
    }

    fn value(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        match self.figment.find_value(key) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.missing() => Ok(None),
            Err(e) => Err(unreadable(self.figment, e)),
        }
    }

    /// A scalar as text, with how it was written: `(text, shown)`.
    fn string(&self, key: &str) -> Result<Option<(String, String)>, ConfigError> {
        let Some(v) = self.value(key)? else {
            return Ok(None);
        };
        let text = match &v {
            Value::String(_, s) => s.clone(),
            Value::Char(_, c) => c.to_string(),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(..) => match (v.to_u128(), v.to_i128(), v.to_f64()) {
                (Some(u), _, _) => u.to_string(),
                (None, Some(i), _) => i.to_string(),
                (None, None, Some(f)) => f.to_string(),
                _ => String::new(),
            },
            Value::Empty(..) => String::new(),
            Value::Dict(..) => {
                return Err(self.invalid(key, "a table", "a single value"));
            }
            Value::Array(..) => {
                return Err(self.invalid(key, "an array", "a single value"));
            }
        };
        Ok(Some((text.clone(), text)))
    }

    fn bool(&self, key: &str, slot: &mut bool) -> Result<(), ConfigError> {
        if let Some((v, raw)) = self.string(key)? {
            *slot = match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(self.invalid(key, &raw, "true or false")),
            };
        }
        Ok(())
    }

    fn integer(
        &self,
        key: &str,
        min: u64,
        max: u64,
        allowed: &str,
    ) -> Result<Option<u64>, ConfigError> {
        let Some((v, raw)) = self.string(key)? else {
            return Ok(None);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid(key, &raw, allowed)),
        }
    }

    /// Keys nobody reads are typos: say so rather than ignore them.
    fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        let data = match self.figment.data() {
            Ok(d) => d,
            Err(e) => return Err(unreadable(self.figment, e)),
        };
        let tables: Vec<&str> = {
            let mut t: Vec<&str> = SETTINGS
                .iter()
                .filter_map(|(k, _)| k.split_once('.').map(|(t, _)| t))
                .collect();
            t.dedup();
            t
        };
        for dict in data.values() {
            for (table, value) in dict {
                if !tables.contains(&table.as_str()) {
                    return Err(ConfigError::UnknownKey {
                        name: self.name(table),
                        allowed: tables.join(", "),
                    });
                }
                let Value::Dict(_, inner) = value else {
                    return Err(self.invalid(table, "a single value", "a table"));
                };
                let keys: Vec<&str> = SETTINGS
                    .iter()
                    .filter_map(|(k, _)| k.strip_prefix(table.as_str())?.strip_prefix('.'))
                    .collect();
                if let Some(bad) = inner.keys().find(|k| !keys.contains(&k.as_str())) {
                    return Err(ConfigError::UnknownKey {
                        name: self.name(&format!("{table}.{bad}")),
                        allowed: keys.join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;

    /// Loads with `toml` as batchbeam.toml (when given) and `env` set, nothing else.
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn load(toml: Option<&str>, env: &[(&str, &str)]) -> Result<ProvidersConfig, ConfigError> {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.clear_env();
            if let Some(toml) = toml {
                jail.create_file(CONFIG_FILE, toml)?;
            }
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = Some(ProvidersConfig::from_figment(&ProvidersConfig::figment(
                Some(Path::new(CONFIG_FILE)),
            )));
            Ok(())
        });
        out.expect("the jail ran")
    }

    fn check_invalid(
        toml: Option<&str>,
        env: &[(&str, &str)],
        name: &str,
        value: &str,
        allowed: &str,
    ) {
        match load(toml, env) {
            Err(ConfigError::Invalid {
                name: n,
                value: v,
                allowed: a,
            }) => {
                assert!(n.contains(name), "name {n:?} should mention {name:?}");
                assert_eq!(v, value);
                assert!(
                    a.contains(allowed),
                    "allowed {a:?} should mention {allowed:?}"
                );
            }
            other => panic!("expected an invalid {name}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_guides() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c, ProvidersConfig::default());
        let b = &c.batch;
        assert!(!b.enabled && b.vision_enabled && b.llm_enabled && b.fallback_to_standard);
        assert!(b.cost_tracking && !b.hybrid_mode);
        assert_eq!(
            (b.mode, b.max_wait_hours, b.poll_interval_ms),
            (BatchMode::Deferred, 24, 30_000)
        );
        assert!(c.queue_config().fallback_to_standard);
        assert_eq!(
            c.manager_config("files").max_wait,
            Duration::from_secs(24 * 3600)
        );
        for op in Operation::ALL {
            assert_eq!(c.tier_for(op), Tier::Standard, "{op}");
        }
    }

    #[test]
    fn environment_beats_the_file_which_beats_defaults() {
        let toml = r#"
            [batch]
            enabled = true
            mode = "immediate"
            max_wait_hours = 12
            poll_interval_ms = 500
            [tiers]
            expand = "flex"
            judge = "simulated"
            [models]
            llm = "gpt-5-mini"
            [flex]
            timeout_secs = 30
            [simulated]
            seed = 7
        "#;
        let c = load(Some(toml), &[]).unwrap();
        assert!(c.batch.enabled);
        assert_eq!(c.batch.mode, BatchMode::Immediate);
        assert_eq!(
            (c.batch.max_wait_hours, c.batch.poll_interval_ms),
            (12, 500)
        );
        assert_eq!(c.tier_for(Operation::Expand), Tier::Flex);
        assert_eq!(c.tier_for(Operation::Judge), Tier::Simulated);
        assert_eq!(c.tier_for(Operation::Refine), Tier::Batch);
        assert_eq!(c.models.llm, "gpt-5-mini");
        assert_eq!(c.models.image, "gpt-image-1");
        assert_eq!(c.flex_timeout, Duration::from_secs(30));
        assert_eq!(c.simulated_seed, 7);
        let manager = c.manager_config("files");
        assert_eq!(manager.poll_interval, Duration::from_millis(500));
        assert_eq!(manager.max_wait, Duration::from_secs(12 * 3600));

        let env = [
            ("BATCH_API_MODE", "deferred"),
            ("BATCH_MAX_WAIT_HOURS", "3"),
            ("BATCHBEAM_TIER_EXPAND", "batch"),
            ("BATCH_LLM_ENABLED", "FALSE"),
            ("BATCHBEAM_LLM_MODEL", "gpt-4.1-mini"),
            ("BATCHBEAM_SIM_SEED", "11"),
        ];
        let c = load(Some(toml), &env).unwrap();
        assert_eq!(c.batch.mode, BatchMode::Deferred);
        assert_eq!(c.batch.max_wait_hours, 3);
        assert_eq!(c.batch.poll_interval_ms, 500, "the file still counts");
        // Batching LLM calls is off, so the explicit batch tier becomes standard.
        assert_eq!(c.tier_for(Operation::Expand), Tier::Standard);
        assert_eq!(c.tier_for(Operation::Critique), Tier::Standard);
        assert_eq!(c.tier_for(Operation::Render), Tier::Batch);
        assert_eq!(c.models.llm, "gpt-4.1-mini");
        assert_eq!(c.simulated_seed, 11);
    }

    #[test]
    fn the_safety_switch_keeps_everything_off_batch() {
        let c = load(Some("[tiers]\njudge = \"batch\"\nrender = \"flex\"\n"), &[]).unwrap();
        assert_eq!(c.tier_for(Operation::Judge), Tier::Standard);
        assert_eq!(c.tier_for(Operation::Render), Tier::Flex);
        let c = load(
            None,
            &[
                ("BATCH_API_ENABLED", "true"),
                ("BATCH_VISION_ENABLED", "false"),
            ],
        )
        .unwrap();
        assert_eq!(c.tier_for(Operation::Judge), Tier::Standard);
        assert_eq!(c.tier_for(Operation::Expand), Tier::Batch);
    }

    #[test]
    fn every_bad_environment_value_names_its_variable() {
        let bools = [
            "BATCH_API_ENABLED",
            "BATCH_VISION_ENABLED",
            "BATCH_LLM_ENABLED",
            "BATCH_FALLBACK_TO_STANDARD",
            "BATCH_COST_TRACKING",
            "BATCH_HYBRID_MODE",
        ];
        for var in bools {
            check_invalid(
                None,
                &[(var, "yes please")],
                var,
                "yes please",
                "true or false",
            );
        }
        check_invalid(
            None,
            &[("BATCH_API_MODE", "eager")],
            "BATCH_API_MODE",
            "eager",
            "deferred or immediate",
        );
        check_invalid(
            None,
            &[("BATCH_MAX_WAIT_HOURS", "48")],
            "BATCH_MAX_WAIT_HOURS",
            "48",
            "1 to 24",
        );
        check_invalid(
            None,
            &[("BATCH_MAX_WAIT_HOURS", "0")],
            "BATCH_MAX_WAIT_HOURS",
            "0",
            "1 to 24",
        );
        check_invalid(
            None,
            &[("BATCH_POLL_INTERVAL_MS", "soon")],
            "BATCH_POLL_INTERVAL_MS",
            "soon",
            "milliseconds",
        );
        check_invalid(
            None,
            &[("BATCH_POLL_INTERVAL_MS", "-5")],
            "BATCH_POLL_INTERVAL_MS",
            "-5",
            "milliseconds",
        );
        for op in Operation::ALL {
            let var = format!("BATCHBEAM_TIER_{}", op.as_str().to_ascii_uppercase());
            check_invalid(
                None,
                &[(&var, "priority")],
                &var,
                "priority",
                "standard, flex, batch or simulated",
            );
        }
        for var in [
            "BATCHBEAM_LLM_MODEL",
            "BATCHBEAM_VISION_MODEL",
            "BATCHBEAM_IMAGE_MODEL",
        ] {
            check_invalid(None, &[(var, "gpt 4o")], var, "gpt 4o", "model name");
        }
        check_invalid(
            None,
            &[("BATCHBEAM_FLEX_TIMEOUT_SECS", "0")],
            "BATCHBEAM_FLEX_TIMEOUT_SECS",
            "0",
            "seconds",
        );
        check_invalid(
            None,
            &[("BATCHBEAM_SIM_SEED", "1.5")],
            "BATCHBEAM_SIM_SEED",
            "1.5",
            "whole number",
        );
    }

    #[test]
    fn every_bad_file_value_names_its_key_and_file() {
        let cases = [
            (
                "[batch]\nenabled = \"sometimes\"",
                "`batch.enabled` in",
                "sometimes",
                "true or false",
            ),
            (
                "[batch]\nhybrid_mode = 1",
                "`batch.hybrid_mode` in",
                "1",
                "true or false",
            ),
            (
                "[batch]\nmode = \"later\"",
                "`batch.mode` in",
                "later",
                "deferred or immediate",
            ),
            (
                "[batch]\nmax_wait_hours = 25",
                "`batch.max_wait_hours` in",
                "25",
                "1 to 24",
            ),
            (
                "[batch]\npoll_interval_ms = 0",
                "`batch.poll_interval_ms` in",
                "0",
                "milliseconds",
            ),
            (
                "[tiers]\nrender = \"cheap\"",
                "`tiers.render` in",
                "cheap",
                "standard, flex, batch or simulated",
            ),
            (
                "[models]\nimage = \"\"",
                "`models.image` in",
                "",
                "model name",
            ),
            (
                "[flex]\ntimeout_secs = \"long\"",
                "`flex.timeout_secs` in",
                "long",
                "seconds",
            ),
            (
                "[simulated]\nseed = -1",
                "`simulated.seed` in",
                "-1",
                "whole number",
            ),
        ];
        for (toml, name, value, allowed) in cases {
            check_invalid(Some(toml), &[], name, value, allowed);
            check_invalid(Some(toml), &[], CONFIG_FILE, value, allowed);
        }
    }

    #[test]
    fn unknown_keys_and_broken_files_are_errors() {
        match load(Some("[tiers]\nexpnad = \"batch\""), &[]) {
            Err(ConfigError::UnknownKey { name, allowed }) => {
                assert!(
                    name.contains("tiers.expnad") && name.contains(CONFIG_FILE),
                    "{name}"
                );
                assert!(allowed.contains("expand"), "{allowed}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load(Some("[cache]\nx = 1"), &[]),
            Err(ConfigError::UnknownKey { .. })
        ));
        match load(Some("[batch\nenabled = true"), &[]) {
            Err(ConfigError::Unreadable(m)) => assert!(m.contains(CONFIG_FILE), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
