//! The table of every setting: its environment variable, its key in `batchbeam.toml`, its
//! command-line flag, its default and its rule. The reader checks values by these rules and
//! `docs/configuration.md` shows this table (a test keeps the two equal).

/// What a setting's value may be. Errors and the documentation both say it with
/// [`Rule::allowed`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// `true` or `false` (any case).
    Bool,
    /// One of these words (any case).
    OneOf(&'static [&'static str]),
    /// A whole number from `min` to `max`, in `unit` when there is one.
    Whole {
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
        /// `milliseconds`, `retries`, or empty.
        unit: &'static str,
    },
    /// A number above 0 and at most `max`, in `unit` (fractions allowed).
    Positive {
        /// The largest allowed.
        max: f64,
        /// `hours`, `seconds`.
        unit: &'static str,
    },
    /// A model name: not empty, no spaces.
    Model,
    /// Any text.
    Text,
    /// A file or folder path.
    Path,
    /// A URL starting with `http://` or `https://`.
    HttpUrl,
    /// A `postgres://` (or `postgresql://`) URL, whose password is never shown, or a `sqlite:`
    /// URL naming a file; a URL of another scheme is ignored.
    DatabaseUrl,
    /// A secret: read from the environment only, never shown.
    Secret,
    /// A bearer token clients must send: read from the environment only, never shown.
    Token,
    /// A socket address, `host:port`.
    Addr,
    /// A server instance's name: 1 to 64 letters, digits, `-`, `_` or `.`.
    InstanceId,
}

impl Rule {
    /// What the rule allows, in words.
    pub fn allowed(&self) -> String {
        match self {
            Rule::Bool => "true or false".to_owned(),
            Rule::OneOf(words) => match words.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            },
            Rule::Whole { min, max, unit } => {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" of {unit}")
                };
                format!("a whole number{unit} from {min} to {max}")
            }
            Rule::Positive { max, unit } => {
                format!("a number of {unit} above 0 and at most {max}")
            }
            Rule::Model => "a model name without spaces".to_owned(),
            Rule::Text => "any text".to_owned(),
            Rule::Path => "a path".to_owned(),
            Rule::HttpUrl => "a URL starting with http:// or https://".to_owned(),
            Rule::DatabaseUrl => "a postgres:// URL (its password never shown) or a sqlite: URL \
                 naming a file (a URL of another scheme is ignored)"
                .to_owned(),
            Rule::Secret => "the API key (environment only, never shown)".to_owned(),
            Rule::Token => {
                "a token of 16 or more characters (environment only, never shown)".to_owned()
            }
            Rule::Addr => "an address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080".to_owned(),
            Rule::InstanceId => "1 to 64 letters, digits, -, _ or .".to_owned(),
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// Its environment variable.
    pub var: &'static str,
    /// Its key in `batchbeam.toml`; `None` for what only the environment sets.
    pub key: Option<&'static str>,
    /// The command-line flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// Its default, in words.
    pub default: &'static str,
    /// What it may be.
    pub rule: Rule,
    /// What it does.
    pub about: &'static str,
}

const TIERS: Rule = Rule::OneOf(&["standard", "flex", "batch", "simulated"]);
const MS: Rule = Rule::Whole {
    min: 1,
    max: 86_400_000,
    unit: "milliseconds",
};

/// `(var, key, default, rule, about)` without a flag: most settings.
const fn s(
    var: &'static str,
    key: &'static str,
    default: &'static str,
    rule: Rule,
    about: &'static str,
) -> Setting {
    Setting {
        var,
        key: Some(key),
        flag: None,
        default,
        rule,
        about,
    }
}

/// Every setting batchbeam reads, in the order `docs/configuration.md` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        var: "BATCHBEAM_CONFIG",
        key: None,
        flag: None,
        default: "`batchbeam.toml` when present",
        rule: Rule::Path,
        about: "the configuration file; when set, the file must exist",
    },
    Setting {
        var: "OPENAI_API_KEY",
        key: None,
        flag: None,
        default: "unset (`run` uses the simulator)",
        rule: Rule::Secret,
        about: "sent only as `Authorization: Bearer …`",
    },
    s(
        "OPENAI_BASE_URL",
        "openai.base_url",
        "`https://api.openai.com/v1`",
        Rule::HttpUrl,
        "any OpenAI-compatible API, e.g. `http://127.0.0.1:8787/v1` for `batchbeam sim`",
    ),
    s(
        "OPENAI_ORGANIZATION",
        "openai.organization",
        "unset",
        Rule::Text,
        "sent as `OpenAI-Organization`",
    ),
    s(
        "OPENAI_PROJECT",
        "openai.project",
        "unset",
        Rule::Text,
        "sent as `OpenAI-Project`",
    ),
    s(
        "OPENAI_MAX_RETRIES",
        "openai.max_retries",
        "`6`",
        Rule::Whole {
            min: 0,
            max: 100,
            unit: "retries",
        },
        "retries after a failed request (429, 5xx, timeouts); `0` fails at the first error",
    ),
    Setting {
        var: "BATCHBEAM_DB",
        key: Some("data.db"),
        flag: Some("--db"),
        default: "`./batchbeam.db`",
        rule: Rule::Path,
        about: "the SQLite database of batches and sessions; files go in `batchbeam-files/` beside it",
    },
    Setting {
        var: "DATABASE_URL",
        key: Some("data.database_url"),
        flag: Some("--database-url"),
        default: "unset",
        rule: Rule::DatabaseUrl,
        about: "the database, when set in a later layer than `BATCHBEAM_DB` (a tie goes to `BATCHBEAM_DB`): PostgreSQL, which several `serve` instances share, or an SQLite file",
    },
    Setting {
        var: "BATCHBEAM_DB_CONNECTIONS",
        key: Some("data.connections"),
        flag: None,
        default: "`16`",
        rule: Rule::Whole {
            min: 1,
            max: 1024,
            unit: "",
        },
        about: "connections each process keeps to its database at most (with PostgreSQL, instances times this must stay under the server's `max_connections`)",
    },
    Setting {
        var: "BATCHBEAM_SESSIONS",
        key: Some("data.sessions"),
        flag: Some("--sessions"),
        default: "`batchbeam-sessions`",
        rule: Rule::Path,
        about: "the folder sessions write their images and `session.json` to",
    },
    s(
        "BATCHBEAM_FILES",
        "data.files",
        "`batchbeam-files/` beside the SQLite database (in the working directory with PostgreSQL)",
        Rule::Path,
        "batch input and result files and the request cache's images; instances sharing a PostgreSQL database must share it (and `BATCHBEAM_SESSIONS`) at the same path",
    ),
    s(
        "BATCH_API_ENABLED",
        "batch.enabled",
        "`false`",
        Rule::Bool,
        "the safety switch: when off, no call goes to batch",
    ),
    s(
        "BATCH_API_MODE",
        "batch.mode",
        "`deferred`",
        Rule::OneOf(&["deferred", "immediate"]),
        "send a stage's batch at its barrier, or each group at once",
    ),
    s(
        "BATCH_MAX_WAIT_HOURS",
        "batch.max_wait_hours",
        "`24`",
        Rule::Positive {
            max: 24.0,
            unit: "hours",
        },
        "a batch still running this long is cancelled and its partial results collected; hybrid mode's deadline",
    ),
    s(
        "BATCH_POLL_INTERVAL_MS",
        "batch.poll_interval_ms",
        "`30000`",
        MS,
        "first polling interval; it grows ×1.5 while nothing changes",
    ),
    s(
        "BATCH_POLL_MAX_INTERVAL_MS",
        "batch.poll_max_interval_ms",
        "`600000`",
        MS,
        "the polling ceiling (raised to the first interval when below it)",
    ),
    s(
        "BATCH_RESUBMIT_DELAY_MS",
        "batch.resubmit_delay_ms",
        "`300000`",
        Rule::Whole {
            min: 0,
            max: 86_400_000,
            unit: "milliseconds",
        },
        "wait before resubmitting a batch that failed with `token_limit_exceeded`",
    ),
    s(
        "BATCH_COALESCE_MS",
        "batch.coalesce_ms",
        "`2000`",
        Rule::Whole {
            min: 0,
            max: 600_000,
            unit: "milliseconds",
        },
        "how long a stage barrier may hold its batch for other sessions' requests to join (sent after a tenth of it without new requests, or after all of it); `0` sends at once",
    ),
    s(
        "BATCH_VISION_ENABLED",
        "batch.vision_enabled",
        "`true`",
        Rule::Bool,
        "judging may go to batch",
    ),
    s(
        "BATCH_LLM_ENABLED",
        "batch.llm_enabled",
        "`true`",
        Rule::Bool,
        "expand, combine, critique and refine may go to batch",
    ),
    s(
        "BATCH_FALLBACK_TO_STANDARD",
        "batch.fallback_to_standard",
        "`true`",
        Rule::Bool,
        "a failed batch request (or a busy or slow flex one) goes to the standard tier",
    ),
    s(
        "BATCH_COST_TRACKING",
        "batch.cost_tracking",
        "`true`",
        Rule::Bool,
        "`run` prints the cost report",
    ),
    s(
        "BATCH_HYBRID_MODE",
        "batch.hybrid_mode",
        "`false`",
        Rule::Bool,
        "pick each stage's tier by the deadline",
    ),
    s(
        "BATCHBEAM_TIER_EXPAND",
        "tiers.expand",
        "see docs/providers.md",
        TIERS,
        "the tier of expand calls",
    ),
    s(
        "BATCHBEAM_TIER_COMBINE",
        "tiers.combine",
        "see docs/providers.md",
        TIERS,
        "the tier of combine calls",
    ),
    s(
        "BATCHBEAM_TIER_CRITIQUE",
        "tiers.critique",
        "see docs/providers.md",
        TIERS,
        "the tier of critique calls",
    ),
    s(
        "BATCHBEAM_TIER_REFINE",
        "tiers.refine",
        "see docs/providers.md",
        TIERS,
        "the tier of refine calls",
    ),
    s(
        "BATCHBEAM_TIER_RENDER",
        "tiers.render",
        "see docs/providers.md",
        TIERS,
        "the tier of image generation",
    ),
    s(
        "BATCHBEAM_TIER_JUDGE",
        "tiers.judge",
        "see docs/providers.md",
        TIERS,
        "the tier of judging",
    ),
    s(
        "BATCHBEAM_LLM_MODEL",
        "models.llm",
        "`gpt-4o-mini`",
        Rule::Model,
        "the prompt writer",
    ),
    s(
        "BATCHBEAM_VISION_MODEL",
        "models.vision",
        "`gpt-4o-mini`",
        Rule::Model,
        "the judge",
    ),
    s(
        "BATCHBEAM_IMAGE_MODEL",
        "models.image",
        "`gpt-image-1`",
        Rule::Model,
        "the image model",
    ),
    s(
        "BATCHBEAM_FLEX_TIMEOUT_SECS",
        "flex.timeout_secs",
        "`900`",
        Rule::Positive {
            max: 86_400.0,
            unit: "seconds",
        },
        "how long a flex call may take before it falls back",
    ),
    s(
        "BATCHBEAM_SIM_SEED",
        "simulated.seed",
        "`0`",
        Rule::Whole {
            min: 0,
            max: u64::MAX,
            unit: "",
        },
        "seed of the simulated models",
    ),
    Setting {
        var: "BATCHBEAM_CACHE",
        key: Some("cache.enabled"),
        flag: Some("--no-cache"),
        default: "`true`",
        rule: Rule::Bool,
        about: "answer a deterministic request (a seed, or temperature 0) from the request cache when its exact body was answered before; see docs/cost.md",
    },
    Setting {
        var: "BATCHBEAM_ADDR",
        key: Some("server.addr"),
        flag: Some("--addr"),
        default: "`127.0.0.1:8080`",
        rule: Rule::Addr,
        about: "where `batchbeam serve` listens; without `BATCHBEAM_API_TOKEN` only a loopback address is allowed",
    },
    Setting {
        var: "BATCHBEAM_API_TOKEN",
        key: None,
        flag: None,
        default: "unset (loopback only, no auth)",
        rule: Rule::Token,
        about: "the bearer token every `/api` request to `batchbeam serve` must send",
    },
    Setting {
        var: "BATCHBEAM_WORKERS",
        key: Some("server.workers"),
        flag: Some("--workers"),
        default: "`4`",
        rule: Rule::Whole {
            min: 1,
            max: 1024,
            unit: "",
        },
        about: "jobs `batchbeam serve` runs at once (a job waiting on its batches holds none)",
    },
    s(
        "BATCHBEAM_BODY_LIMIT_BYTES",
        "server.body_limit_bytes",
        "`65536`",
        Rule::Whole {
            min: 1024,
            max: 16_777_216,
            unit: "bytes",
        },
        "the largest request body the server reads (413 above)",
    ),
    s(
        "BATCHBEAM_REQUEST_TIMEOUT_SECS",
        "server.request_timeout_secs",
        "`30`",
        Rule::Positive {
            max: 3600.0,
            unit: "seconds",
        },
        "a request head slower than this closes the connection; a slower body or handler is answered 408",
    ),
    Setting {
        var: "BATCHBEAM_INSTANCE_ID",
        key: Some("server.instance_id"),
        flag: Some("--instance-id"),
        default: "`srv_` + a new ULID at each start",
        rule: Rule::InstanceId,
        about: "this `serve` instance's name as the owner of the jobs it runs (shown at start, in `/metrics` and in each job)",
    },
    s(
        "BATCHBEAM_LEASE_SECS",
        "server.lease_secs",
        "`30`",
        Rule::Positive {
            max: 3600.0,
            unit: "seconds",
        },
        "how long a job, or a batch record being stepped, stays an instance's (or a `batch` command's) without a renewal (renewed every third of it); then another takes it over",
    ),
];

/// The setting with this `batchbeam.toml` key.
pub(crate) fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == Some(key))
}

/// [`SETTINGS`] as the Markdown table `docs/configuration.md` holds.
pub fn markdown_table() -> String {
    let code = |s: Option<&str>| s.map_or_else(|| "–".to_owned(), |s| format!("`{s}`"));
    let mut out = String::from(
        "| variable | `batchbeam.toml` key | flag | default | allowed | what it does |\n\
         |---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            s.var,
            code(s.key),
            code(s.flag),
            s.default,
            s.rule.allowed(),
            s.about
        ));
    }
    out
}
