//! The one reader of batchbeam's settings: defaults < `batchbeam.toml` < environment <
//! command-line flags, every value checked by its rule in [`SETTINGS`], a bad one named by the
//! variable, flag, or key and file it came from. Nothing else in the workspace reads the
//! environment; every other crate takes the typed configurations built here.

mod reader;
mod table;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use batch_client::{ApiKey, ClientConfig, ManagerConfig};
use figment::Figment;

pub use table::{Rule, SETTINGS, Setting, markdown_table};

use crate::{Operation, Role, RoleModels, Tier};
use reader::Reader;

/// The configuration file read unless `BATCHBEAM_CONFIG` names another.
pub const CONFIG_FILE: &str = "batchbeam.toml";

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is not allowed. `name` is the environment variable, the flag, or the key and its
    /// file.
    #[error("{name} = '{value}' is not allowed: expected {allowed}")]
    Invalid {
        /// `BATCH_API_MODE`, `--db`, or `` `batch.mode` in batchbeam.toml ``.
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
    /// A setting that is needed is not set (`OPENAI_API_KEY`).
    #[error("{0} is not set")]
    NotSet(&'static str),
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
    /// `BATCH_MAX_WAIT_HOURS` (24): cancel a batch still running after this long; above 0
    /// and at most 24, fractions allowed.
    pub max_wait_hours: f64,
    /// `BATCH_POLL_INTERVAL_MS` (30000).
    pub poll_interval_ms: u64,
    /// `BATCH_POLL_MAX_INTERVAL_MS` (600000): the polling ceiling.
    pub poll_max_interval_ms: u64,
    /// `BATCH_RESUBMIT_DELAY_MS` (300000): wait before resubmitting after
    /// `token_limit_exceeded`.
    pub resubmit_delay_ms: u64,
    /// `BATCH_COALESCE_MS` (2000): how long a stage barrier's flush may wait for other
    /// sessions' requests to join its batches; 0 sends at once.
    pub coalesce_ms: u64,
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
            max_wait_hours: 24.0,
            poll_interval_ms: 30_000,
            poll_max_interval_ms: 600_000,
            resubmit_delay_ms: 300_000,
            coalesce_ms: 2_000,
            vision_enabled: true,
            llm_enabled: true,
            fallback_to_standard: true,
            cost_tracking: true,
            hybrid_mode: false,
        }
    }
}

impl BatchSettings {
    /// `BATCH_MAX_WAIT_HOURS` as a duration.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.max_wait_hours * 3600.0)
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
    /// Answer deterministic requests from the request cache (`cache.enabled`, true; `--no-cache`
    /// turns it off for a run).
    pub cache: bool,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            batch: BatchSettings::default(),
            tiers: Vec::new(),
            models: RoleModels::default(),
            flex_timeout: Duration::from_secs(900),
            simulated_seed: 0,
            cache: true,
        }
    }
}

impl ProvidersConfig {
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

    /// The batch queue's configuration for these settings (`BATCH_FALLBACK_TO_STANDARD`,
    /// `BATCH_COALESCE_MS`; the rest are the queue's defaults).
    pub fn queue_config(&self) -> batch_queue::QueueConfig {
        batch_queue::QueueConfig {
            fallback_to_standard: self.batch.fallback_to_standard,
            coalesce: (self.batch.coalesce_ms > 0)
                .then(|| Duration::from_millis(self.batch.coalesce_ms)),
            ..batch_queue::QueueConfig::default()
        }
    }

    /// The job manager's configuration for these settings (`BATCH_POLL_INTERVAL_MS`,
    /// `BATCH_POLL_MAX_INTERVAL_MS`, `BATCH_MAX_WAIT_HOURS`, `BATCH_RESUBMIT_DELAY_MS`), files
    /// under `data_dir`.
    pub fn manager_config(&self, data_dir: impl Into<PathBuf>) -> ManagerConfig {
        let b = &self.batch;
        let mut config = ManagerConfig::new(data_dir);
        config.poll_interval = Duration::from_millis(b.poll_interval_ms);
        config.poll_ceiling =
            Duration::from_millis(b.poll_max_interval_ms).max(config.poll_interval);
        config.max_wait = b.max_wait();
        config.resubmit_delay = Duration::from_millis(b.resubmit_delay_ms);
        config
    }

    /// Sets an operation's tier, replacing any earlier setting.
    pub fn with_tier(mut self, operation: Operation, tier: Tier) -> ProvidersConfig {
        self.tiers.retain(|(op, _)| *op != operation);
        self.tiers.push((operation, tier));
        self
    }
}

/// How to reach the OpenAI API (`OPENAI_*`).
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// `OPENAI_API_KEY`, from the environment only; a secret whose `Debug` is redacted.
    pub api_key: Option<ApiKey>,
    /// `OPENAI_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// `OPENAI_ORGANIZATION`.
    pub organization: Option<String>,
    /// `OPENAI_PROJECT`.
    pub project: Option<String>,
    /// `OPENAI_MAX_RETRIES`.
    pub max_retries: usize,
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        OpenAiSettings {
            api_key: None,
            base_url: batch_client::DEFAULT_BASE_URL.to_owned(),
            organization: None,
            project: None,
            max_retries: batch_client::RetryPolicy::default().max_retries,
        }
    }
}

/// A `postgres://` URL: a secret, since it may hold a password. `Debug` and
/// [`DatabaseUrl::redacted`] show it with the password (and any query) replaced; only
/// [`DatabaseUrl::expose`] gives it whole, to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A URL as given.
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The URL, to connect with. Never log or show it: use [`DatabaseUrl::redacted`].
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password or query (`postgres://bb:[REDACTED]@db:5432/bb`).
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// `url` with the password of its user info and its query string replaced by `[REDACTED]`.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, "?[REDACTED]"),
        None => (rest, ""),
    };
    // The user info ends at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:[REDACTED]@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

/// Where batchbeam keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSettings {
    /// The SQLite database: `--db`, else `BATCHBEAM_DB`, else `data.db`, else a `sqlite:`
    /// `DATABASE_URL`, else `batchbeam.db`. Unused when [`DataSettings::postgres`] is set.
    pub db: PathBuf,
    /// The PostgreSQL database every store is in instead of [`DataSettings::db`], when a
    /// `postgres://` `DATABASE_URL` (`--database-url`, `data.database_url`) is chosen.
    pub postgres: Option<DatabaseUrl>,
    /// Batch input and result files and the request cache's images: `BATCHBEAM_FILES` /
    /// `data.files`, else `batchbeam-files/` beside the SQLite database
    /// (in the working directory with PostgreSQL), as an absolute path.
    pub files: PathBuf,
    /// `--sessions` / `BATCHBEAM_SESSIONS` / `data.sessions` (`batchbeam-sessions`).
    pub sessions: PathBuf,
    /// Connections the process keeps to its database, at most: `BATCHBEAM_DB_CONNECTIONS` /
    /// `data.connections` (16).
    pub connections: u32,
}

impl DataSettings {
    /// The database at `db`, its files beside it, sessions in `batchbeam-sessions`.
    pub fn at(db: impl Into<PathBuf>) -> DataSettings {
        let db = db.into();
        let parent = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let parent = std::path::absolute(parent).unwrap_or_else(|_| parent.to_owned());
        DataSettings {
            files: parent.join("batchbeam-files"),
            db,
            postgres: None,
            sessions: PathBuf::from("batchbeam-sessions"),
            connections: batch_client::db::DEFAULT_CONNECTIONS,
        }
    }

    /// The database, as shown to people: the SQLite file's path, or the PostgreSQL URL
    /// without its password.
    pub fn database_shown(&self) -> String {
        match &self.postgres {
            Some(url) => url.redacted(),
            None => self.db.display().to_string(),
        }
    }
}

/// The bearer token of `batchbeam serve` (`BATCHBEAM_API_TOKEN`): a secret whose `Debug` is
/// redacted; compare it with [`ApiToken::matches`] (constant time).
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token.
    pub fn new(token: impl Into<String>) -> ApiToken {
        ApiToken(token.into())
    }

    /// Whether `given` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            // Compare against the given bytes cycled, so that the work is the token's length.
            let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

/// `batchbeam serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `--addr` / `BATCHBEAM_ADDR` / `server.addr` (127.0.0.1:8080).
    pub addr: std::net::SocketAddr,
    /// `BATCHBEAM_API_TOKEN` (environment only): without it the server binds loopback only.
    pub api_token: Option<ApiToken>,
    /// `--workers` / `BATCHBEAM_WORKERS` / `server.workers` (4).
    pub workers: usize,
    /// `BATCHBEAM_BODY_LIMIT_BYTES` / `server.body_limit_bytes` (65536).
    pub body_limit_bytes: usize,
    /// `BATCHBEAM_REQUEST_TIMEOUT_SECS` / `server.request_timeout_secs` (30).
    pub request_timeout: Duration,
    /// `--instance-id` / `BATCHBEAM_INSTANCE_ID` / `server.instance_id`: this instance's name
    /// as a job owner; `None`: a new one at each start.
    pub instance_id: Option<String>,
    /// `BATCHBEAM_LEASE_SECS` / `server.lease_secs` (30): a job's lease, and a batch record's
    /// ([`ManagerConfig::lease`]), each renewed every third while held.
    pub lease: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_token: None,
            workers: 4,
            body_limit_bytes: 65_536,
            request_timeout: Duration::from_secs(30),
            instance_id: None,
            lease: Duration::from_secs(30),
        }
    }
}

/// Every setting, read once: the providers' configuration, the API's and the data folders.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tiers, models and the Batch API settings.
    pub providers: ProvidersConfig,
    /// The API.
    pub openai: OpenAiSettings,
    /// Where data goes.
    pub data: DataSettings,
    /// `batchbeam serve`.
    pub server: ServerSettings,
}

impl Settings {
    /// Reads the process environment, `batchbeam.toml` in the working directory when there is
    /// one (or the file `BATCHBEAM_CONFIG` names, which must exist) and `flags`: `(key,
    /// value)` pairs, keys as in `batchbeam.toml` (`("data.db", "x.db")`), which win over
    /// everything else.
    pub fn load(flags: &[(&str, String)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(&|name| std::env::var(name).ok(), flags)
    }

    /// Like [`Settings::load`], with environment variables looked up through `vars`.
    pub fn from_lookup(
        vars: &dyn Fn(&str) -> Option<String>,
        flags: &[(&str, String)],
    ) -> Result<Settings, ConfigError> {
        let file = match vars("BATCHBEAM_CONFIG").filter(|v| !v.trim().is_empty()) {
            Some(p) => {
                let path = PathBuf::from(&p);
                if !path.is_file() {
                    return Err(ConfigError::Invalid {
                        name: "BATCHBEAM_CONFIG".to_owned(),
                        value: p,
                        allowed: "the path of a TOML file".to_owned(),
                    });
                }
                Some(path)
            }
            None => Some(PathBuf::from(CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let figment = reader::figment(file.as_deref(), vars, flags);
        Settings::from_figment(&figment, vars)
    }

    /// Reads and checks every setting of `figment`; `vars` supplies what only the environment
    /// sets (`OPENAI_API_KEY`, `DATABASE_URL`).
    fn from_figment(
        figment: &Figment,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let r = Reader { figment };
        r.reject_unknown_keys()?;
        let providers = read_providers(&r)?;
        let mut openai = OpenAiSettings {
            api_key: vars("OPENAI_API_KEY")
                .filter(|k| !k.trim().is_empty())
                .map(|k| ApiKey::new(k.trim())),
            ..OpenAiSettings::default()
        };
        if let Some(url) = r.text("openai.base_url")? {
            openai.base_url = url.trim_end_matches('/').to_owned();
        }
        openai.organization = r.text("openai.organization")?;
        openai.project = r.text("openai.project")?;
        if let Some(n) = r.whole("openai.max_retries")? {
            openai.max_retries = n as usize;
        }
        let mut data = read_database(&r)?;
        if let Some(sessions) = r.text("data.sessions")? {
            data.sessions = PathBuf::from(sessions);
        }
        if let Some(files) = r.text("data.files")? {
            let files = PathBuf::from(files);
            data.files = std::path::absolute(&files).unwrap_or(files);
        }
        if let Some(n) = r.whole("data.connections")? {
            data.connections = u32::try_from(n).unwrap_or(u32::MAX);
        }
        let api_token = match vars("BATCHBEAM_API_TOKEN").filter(|t| !t.trim().is_empty()) {
            Some(t) if t.trim().chars().count() < 16 => {
                return Err(ConfigError::Invalid {
                    name: "BATCHBEAM_API_TOKEN".to_owned(),
                    // Never shown, even when refused.
                    value: "[REDACTED]".to_owned(),
                    allowed: table::Rule::Token.allowed(),
                });
            }
            Some(t) => Some(ApiToken::new(t.trim())),
            None => None,
        };
        let mut server = ServerSettings {
            api_token,
            ..ServerSettings::default()
        };
        if let Some(addr) = r.text("server.addr")? {
            server.addr = addr
                .trim()
                .parse()
                .map_err(|_| r.invalid("server.addr", &addr))?;
        }
        if let Some(n) = r.whole("server.workers")? {
            server.workers = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = r.whole("server.body_limit_bytes")? {
            server.body_limit_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(s) = r.positive("server.request_timeout_secs")? {
            server.request_timeout = Duration::from_secs_f64(s);
        }
        server.instance_id = r.text("server.instance_id")?;
        if let Some(s) = r.positive("server.lease_secs")? {
            server.lease = Duration::from_secs_f64(s);
        }
        Ok(Settings {
            providers,
            openai,
            data,
            server,
        })
    }

    /// The API client's configuration, or [`ConfigError::NotSet`] without a key.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let key = self
            .openai
            .api_key
            .clone()
            .ok_or(ConfigError::NotSet("OPENAI_API_KEY"))?;
        let mut config = ClientConfig::new(&self.openai.base_url, key);
        config.organization = self.openai.organization.clone();
        config.project = self.openai.project.clone();
        config.retry.max_retries = self.openai.max_retries;
        Ok(config)
    }

    /// The job manager's configuration, its files in [`DataSettings::files`], its record
    /// leases [`ServerSettings::lease`] long.
    pub fn manager_config(&self) -> ManagerConfig {
        let mut config = self.providers.manager_config(&self.data.files);
        config.lease = self.server.lease;
        config
    }
}

/// `text` with the password (and query) of every URL in it redacted: for an error that quotes
/// a line of a file, which may be a database URL's.
pub(crate) fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last separator before `://`.
        let start = rest[..at]
            .rfind(|c: char| c.is_whitespace() || "\"'`=([{<,".contains(c))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'`)]}>,".contains(c))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where the database is: `data.database_url` (`--database-url`, `DATABASE_URL`) when it is
/// set in a later layer than `data.db` (`--db`, `BATCHBEAM_DB`), else `data.db`, else
/// `batchbeam.db`. A `postgres://` URL selects PostgreSQL; a `sqlite:` URL names a file; a
/// URL of another scheme is ignored (the variable is common to many tools).
fn read_database(r: &Reader<'_>) -> Result<DataSettings, ConfigError> {
    let db = r.text("data.db")?;
    let Some(url) = r.secret_text("data.database_url")? else {
        return Ok(DataSettings::at(
            db.unwrap_or_else(|| "batchbeam.db".to_owned()),
        ));
    };
    if db.is_some() && r.layer("data.db") >= r.layer("data.database_url") {
        return Ok(DataSettings::at(db.unwrap_or_default()));
    }
    let fallback = || DataSettings::at(db.clone().unwrap_or_else(|| "batchbeam.db".to_owned()));
    if batch_client::db::is_postgres_url(&url) {
        let mut data = fallback();
        data.postgres = Some(DatabaseUrl(url.trim().to_owned()));
        return Ok(data);
    }
    let Some(rest) = url.trim().strip_prefix("sqlite:") else {
        return Ok(fallback());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(r.invalid("data.database_url", &url));
    }
    Ok(DataSettings::at(path))
}

/// The providers' settings of `r`.
fn read_providers(r: &Reader<'_>) -> Result<ProvidersConfig, ConfigError> {
    let mut c = ProvidersConfig::default();
    let b = &mut c.batch;
    r.bool("batch.enabled", &mut b.enabled)?;
    if let Some(mode) = r.word("batch.mode")? {
        b.mode = if mode == "immediate" {
            BatchMode::Immediate
        } else {
            BatchMode::Deferred
        };
    }
    if let Some(h) = r.positive("batch.max_wait_hours")? {
        b.max_wait_hours = h;
    }
    for (key, slot) in [
        ("batch.poll_interval_ms", &mut b.poll_interval_ms),
        ("batch.poll_max_interval_ms", &mut b.poll_max_interval_ms),
        ("batch.resubmit_delay_ms", &mut b.resubmit_delay_ms),
        ("batch.coalesce_ms", &mut b.coalesce_ms),
    ] {
        if let Some(ms) = r.whole(key)? {
            *slot = ms;
        }
    }
    r.bool("batch.vision_enabled", &mut b.vision_enabled)?;
    r.bool("batch.llm_enabled", &mut b.llm_enabled)?;
    r.bool("batch.fallback_to_standard", &mut b.fallback_to_standard)?;
    r.bool("batch.cost_tracking", &mut b.cost_tracking)?;
    r.bool("batch.hybrid_mode", &mut b.hybrid_mode)?;
    for op in Operation::ALL {
        let key = format!("tiers.{op}");
        if let Some(word) = r.word(&key)? {
            let tier = word.parse::<Tier>().map_err(|_| r.invalid(&key, &word))?;
            c.tiers.push((op, tier));
        }
    }
    for (key, slot) in [
        ("models.llm", &mut c.models.llm),
        ("models.vision", &mut c.models.vision),
        ("models.image", &mut c.models.image),
    ] {
        if let Some(model) = r.text(key)? {
            *slot = model;
        }
    }
    if let Some(s) = r.positive("flex.timeout_secs")? {
        c.flex_timeout = Duration::from_secs_f64(s);
    }
    if let Some(seed) = r.whole("simulated.seed")? {
        c.simulated_seed = seed;
    }
    r.bool("cache.enabled", &mut c.cache)?;
    Ok(c)
}
