//! Tests of the settings reader: layers, rules, error names, the secret, and the documented
//! table.

use std::path::Path;
use std::time::Duration;

use super::*;

/// Loads with `toml` as the configuration file (empty when `None`), `env` as the environment
/// and `flags` on top.
fn load_all(
    toml: Option<&str>,
    env: &[(&str, &str)],
    flags: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, toml.unwrap_or("")).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let vars = |name: &str| {
        if name == "BATCHBEAM_CONFIG" {
            return Some(file.clone());
        }
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    Settings::from_lookup(&vars, flags)
}

fn load(toml: Option<&str>, env: &[(&str, &str)]) -> Result<ProvidersConfig, ConfigError> {
    load_all(toml, env, &[]).map(|s| s.providers)
}

fn check_invalid(toml: Option<&str>, env: &[(&str, &str)], name: &str, value: &str, allowed: &str) {
    match load_all(toml, env, &[]) {
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
        (BatchMode::Deferred, 24.0, 30_000)
    );
    assert!(c.queue_config().fallback_to_standard);
    // The manager's defaults are the same as the settings' defaults.
    assert_eq!(c.manager_config("files"), ManagerConfig::new("files"));
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
        (12.0, 500)
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
        ("BATCH_HYBRID_MODE", ""),
    ];
    let c = load(Some(toml), &env).unwrap();
    assert_eq!(c.batch.mode, BatchMode::Deferred);
    assert_eq!(c.batch.max_wait_hours, 3.0);
    assert_eq!(c.batch.poll_interval_ms, 500, "the file still counts");
    assert!(!c.batch.hybrid_mode, "an empty variable counts as unset");
    // Batching LLM calls is off, so the explicit batch tier becomes standard.
    assert_eq!(c.tier_for(Operation::Expand), Tier::Standard);
    assert_eq!(c.tier_for(Operation::Critique), Tier::Standard);
    assert_eq!(c.tier_for(Operation::Render), Tier::Batch);
    assert_eq!(c.models.llm, "gpt-4.1-mini");
    assert_eq!(c.simulated_seed, 11);
}

#[test]
fn flags_beat_the_environment_and_name_themselves() {
    let toml = "[data]\ndb = \"file.db\"\nsessions = \"s-file\"\n";
    let s = load_all(Some(toml), &[], &[]).unwrap();
    assert_eq!(s.data.db, Path::new("file.db"));
    assert_eq!(s.data.sessions, Path::new("s-file"));
    let env = [("BATCHBEAM_DB", "env.db"), ("BATCHBEAM_SESSIONS", "s-env")];
    let s = load_all(Some(toml), &env, &[]).unwrap();
    assert_eq!(s.data.db, Path::new("env.db"));
    assert_eq!(s.data.sessions, Path::new("s-env"));
    let flags = [("data.db", "dir/flag.db".to_owned())];
    let s = load_all(Some(toml), &env, &flags).unwrap();
    assert_eq!(s.data.db, Path::new("dir/flag.db"));
    assert!(s.data.files.is_absolute());
    assert!(
        s.data.files.ends_with("dir/batchbeam-files"),
        "{:?}",
        s.data.files
    );
    assert_eq!(s.data.sessions, Path::new("s-env"));
    let flags = [("batch.poll_interval_ms", "0".to_owned())];
    match load_all(None, &[("BATCH_POLL_INTERVAL_MS", "5")], &flags) {
        Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, "batch.poll_interval_ms"),
        other => panic!("{other:?}"),
    }
    let flags = [("data.db", String::new())];
    match load_all(None, &[], &flags) {
        Err(ConfigError::Invalid { name, allowed, .. }) => {
            assert_eq!(name, "--db");
            assert_eq!(allowed, "a path");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_database_comes_from_the_flag_then_a_sqlite_url() {
    let db = |env: &[(&str, &str)], flags: &[(&str, String)]| {
        load_all(None, env, flags).map(|s| s.data.db)
    };
    assert_eq!(db(&[], &[]).unwrap(), Path::new("batchbeam.db"));
    let flag = [("data.db", "x.db".to_owned())];
    let url = [("DATABASE_URL", "sqlite:///tmp/a.db?mode=rwc")];
    assert_eq!(db(&url, &flag).unwrap(), Path::new("x.db"));
    assert_eq!(db(&url, &[]).unwrap(), Path::new("/tmp/a.db"));
    let both = [url[0], ("BATCHBEAM_DB", "b.db")];
    assert_eq!(db(&both, &[]).unwrap(), Path::new("b.db"));
    let pg = [("DATABASE_URL", "postgres://h/db")];
    assert_eq!(db(&pg, &[]).unwrap(), Path::new("batchbeam.db"));
    check_invalid(
        None,
        &[("DATABASE_URL", "sqlite::memory:")],
        "DATABASE_URL",
        "sqlite::memory:",
        "naming a file",
    );
    let s = load_all(None, &[], &[]).unwrap();
    assert_eq!(s.data, DataSettings::at("batchbeam.db"));
    assert!(s.data.postgres.is_none());
    assert_eq!(s.manager_config().data_dir, s.data.files);
}

#[test]
fn a_postgres_url_selects_postgresql_and_its_password_is_never_shown() {
    let url = "postgres://bb:pw-9f1c@db.internal:5432/bb?sslmode=require&password=pw-9f1c";
    let pg = |env: &[(&str, &str)], flags: &[(&str, String)]| {
        load_all(None, env, flags).unwrap().data.postgres
    };
    let env = [("DATABASE_URL", url)];
    let found = pg(&env, &[]).unwrap();
    assert_eq!(found.expose(), url);
    assert_eq!(
        found.redacted(),
        "postgres://bb:[REDACTED]@db.internal:5432/bb?[REDACTED]"
    );
    let s = load_all(None, &env, &[]).unwrap();
    for shown in [format!("{s:?}"), s.data.database_shown()] {
        assert!(!shown.contains("pw-9f1c"), "{shown}");
    }
    // The flag wins over everything; `--db` over the environment; in one layer, the file path.
    let flag = [("data.database_url", "postgresql://h/x".to_owned())];
    assert_eq!(
        pg(&[("BATCHBEAM_DB", "b.db")], &flag).unwrap().expose(),
        "postgresql://h/x"
    );
    assert!(pg(&env, &[("data.db", "x.db".to_owned())]).is_none());
    assert!(pg(&[env[0], ("BATCHBEAM_DB", "b.db")], &[]).is_none());
    // The file's URL, below the environment's path.
    let text = format!("[data]\ndatabase_url = \"{url}\"\n");
    let from_file = load_all(Some(&text), &[], &[]).unwrap();
    assert_eq!(from_file.data.postgres.unwrap().expose(), url);
    let below = load_all(Some(&text), &[("BATCHBEAM_DB", "b.db")], &[]).unwrap();
    assert!(below.data.postgres.is_none());
    // Broken TOML quoting the line: the error does not quote the password.
    let broken = format!("[data]\ndatabase_url = {url}\n");
    let err = load_all(Some(&broken), &[], &[]).unwrap_err().to_string();
    assert!(!err.contains("pw-9f1c"), "{err}");
    // Not a single piece of text: refused without showing it.
    let err = load_all(Some("[data]\ndatabase_url = 5\n"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("database_url"), "{err}");
}

#[test]
fn the_client_is_configured_from_the_openai_variables() {
    let env = [
        ("OPENAI_API_KEY", " sk-a "),
        ("OPENAI_ORGANIZATION", "org-1"),
        ("OPENAI_PROJECT", "proj_1"),
        ("OPENAI_MAX_RETRIES", "1"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
    ];
    let config = load_all(None, &env, &[]).unwrap().client_config().unwrap();
    assert_eq!(config.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(config.organization.as_deref(), Some("org-1"));
    assert_eq!(config.project.as_deref(), Some("proj_1"));
    assert_eq!(config.retry.max_retries, 1);
    let config = load_all(None, &env[..1], &[])
        .unwrap()
        .client_config()
        .unwrap();
    assert_eq!(config.base_url, batch_client::DEFAULT_BASE_URL);
    assert_eq!(config.retry, batch_client::RetryPolicy::default());
    assert!(config.organization.is_none() && config.project.is_none());
    let no_key = load_all(None, &[("OPENAI_API_KEY", "  ")], &[]).unwrap();
    let err = no_key.client_config().unwrap_err();
    assert_eq!(err.to_string(), "OPENAI_API_KEY is not set");
    check_invalid(
        None,
        &[("OPENAI_MAX_RETRIES", "many")],
        "OPENAI_MAX_RETRIES",
        "many",
        "whole number of retries",
    );
    check_invalid(
        None,
        &[("OPENAI_BASE_URL", "api.openai.com")],
        "OPENAI_BASE_URL",
        "api.openai.com",
        "http:// or https://",
    );
}

#[test]
fn the_key_never_shows() {
    let key = "sk-proj-SETTINGS-0123456789";
    // A bad value elsewhere: the error does not carry the key either.
    let env = [("OPENAI_API_KEY", key), ("BATCH_API_MODE", "eager")];
    let err = load_all(None, &env, &[]).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(key));
    let s = load_all(None, &env[..1], &[]).unwrap();
    let shown = format!("{s:?} {:?}", s.client_config().unwrap());
    assert!(!shown.contains(key), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    // The key is not a file setting: a key in batchbeam.toml is refused as unknown.
    assert!(matches!(
        load_all(Some("[openai]\napi_key = \"sk-x\""), &[], &[]),
        Err(ConfigError::UnknownKey { .. })
    ));
}

#[test]
fn the_manager_is_configured_from_the_batch_variables() {
    let env = [
        ("BATCH_POLL_INTERVAL_MS", "1500"),
        ("BATCH_MAX_WAIT_HOURS", "0.5"),
        ("BATCH_RESUBMIT_DELAY_MS", "10"),
    ];
    let c = load(None, &env).unwrap().manager_config("d");
    assert_eq!(c.poll_interval, Duration::from_millis(1500));
    assert_eq!(c.max_wait, Duration::from_secs(1800));
    assert_eq!(c.resubmit_delay, Duration::from_millis(10));
    assert_eq!(c.poll_ceiling, Duration::from_secs(600));
    // Tests cancel a stalled batch after a fraction of a second.
    let c = load(None, &[("BATCH_MAX_WAIT_HOURS", "0.0001")]).unwrap();
    assert_eq!(c.manager_config("d").max_wait, Duration::from_millis(360));
    // A ceiling below the first interval is raised to it.
    let env = [
        ("BATCH_POLL_INTERVAL_MS", "50"),
        ("BATCH_POLL_MAX_INTERVAL_MS", "5"),
    ];
    let c = load(None, &env).unwrap().manager_config("d");
    assert_eq!(c.poll_ceiling, Duration::from_millis(50));
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
    let cases = [
        ("BATCH_API_MODE", "eager", "deferred or immediate"),
        ("BATCH_MAX_WAIT_HOURS", "48", "above 0 and at most 24"),
        ("BATCH_MAX_WAIT_HOURS", "0", "above 0 and at most 24"),
        ("BATCH_MAX_WAIT_HOURS", "-1", "hours"),
        ("BATCH_MAX_WAIT_HOURS", "NaN", "hours"),
        ("BATCH_POLL_INTERVAL_MS", "soon", "milliseconds"),
        ("BATCH_POLL_INTERVAL_MS", "-5", "milliseconds"),
        ("BATCH_POLL_MAX_INTERVAL_MS", "0", "milliseconds"),
        ("BATCH_RESUBMIT_DELAY_MS", "1.5", "milliseconds"),
        ("BATCHBEAM_FLEX_TIMEOUT_SECS", "0", "seconds"),
        ("BATCHBEAM_SIM_SEED", "1.5", "whole number"),
    ];
    for (var, value, allowed) in cases {
        check_invalid(None, &[(var, value)], var, value, allowed);
    }
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
}

#[test]
fn a_missing_named_file_is_an_error() {
    let vars = |n: &str| (n == "BATCHBEAM_CONFIG").then(|| "/nonexistent/b.toml".to_owned());
    match Settings::from_lookup(&vars, &[]) {
        Err(ConfigError::Invalid { name, value, .. }) => {
            assert_eq!(
                (name.as_str(), value.as_str()),
                ("BATCHBEAM_CONFIG", "/nonexistent/b.toml")
            );
        }
        other => panic!("{other:?}"),
    }
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
            "at most 24",
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
        (
            "[openai]\nmax_retries = 101",
            "`openai.max_retries` in",
            "101",
            "from 0 to 100",
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

#[test]
fn every_setting_has_one_row_and_a_rule_the_reader_uses() {
    let mut vars: Vec<&str> = SETTINGS.iter().map(|s| s.var).collect();
    vars.sort_unstable();
    vars.dedup();
    assert_eq!(vars.len(), SETTINGS.len(), "a variable listed twice");
    // Every keyed setting is read: a bad value of each is refused, naming the variable.
    for s in SETTINGS.iter().filter(|s| s.key.is_some()) {
        if matches!(s.rule, Rule::Text | Rule::Path | Rule::DatabaseUrl) {
            continue; // any text is allowed (a URL of another scheme is ignored)
        }
        match load_all(None, &[(s.var, "x y")], &[]) {
            Err(ConfigError::Invalid { name, allowed, .. }) => {
                assert_eq!(name, s.var);
                assert_eq!(allowed, s.rule.allowed());
            }
            other => panic!("{} = 'x y' was accepted: {other:?}", s.var),
        }
    }
}

/// `docs/configuration.md` holds the table [`markdown_table`] makes from [`SETTINGS`]: a
/// variable in one and not the other, or a rule or default that differs, fails here.
#[test]
fn the_documented_table_is_the_codes() {
    let doc = include_str!("../../../../docs/configuration.md");
    let table = markdown_table();
    assert!(
        doc.contains(&table),
        "docs/configuration.md does not hold the settings table of \
         crates/providers/src/settings/table.rs; replace its table with:\n\n{table}"
    );
    let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, SETTINGS.len(), "docs/configuration.md has extra rows");
}

#[test]
fn the_server_settings_read_their_variables_and_the_token_never_shows() {
    let s = load_all(None, &[], &[]).unwrap();
    assert_eq!(s.server.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.workers, 4);
    assert!(s.server.api_token.is_none());
    let token = "tok-SERVER-0123456789abcdef";
    let env = [
        ("BATCHBEAM_API_TOKEN", token),
        ("BATCHBEAM_ADDR", "0.0.0.0:9000"),
        ("BATCHBEAM_WORKERS", "16"),
        ("BATCHBEAM_BODY_LIMIT_BYTES", "2048"),
        ("BATCHBEAM_REQUEST_TIMEOUT_SECS", "2.5"),
    ];
    let s = load_all(None, &env, &[("server.workers", "2".to_owned())]).unwrap();
    assert_eq!(s.server.addr.to_string(), "0.0.0.0:9000");
    assert_eq!(s.server.workers, 2, "the flag wins");
    assert_eq!(s.server.body_limit_bytes, 2048);
    assert_eq!(s.server.request_timeout, Duration::from_millis(2500));
    let t = s.server.api_token.clone().unwrap();
    assert!(t.matches(token));
    assert!(!t.matches("tok-SERVER-0123456789abcdeX"));
    assert!(!t.matches(""));
    assert!(!t.matches(&format!("{token}x")));
    assert!(!format!("{s:?}").contains(token));
    // A short token is refused without showing it; a bad address names its variable.
    let err = load_all(None, &[("BATCHBEAM_API_TOKEN", "short-secret")], &[]).unwrap_err();
    assert!(!err.to_string().contains("short-secret"), "{err}");
    assert!(err.to_string().contains("BATCHBEAM_API_TOKEN"));
    let err = load_all(None, &[("BATCHBEAM_ADDR", "localhost")], &[]).unwrap_err();
    assert!(err.to_string().contains("BATCHBEAM_ADDR"), "{err}");
    let err = load_all(None, &[("BATCHBEAM_WORKERS", "0")], &[]).unwrap_err();
    assert!(err.to_string().contains("BATCHBEAM_WORKERS"), "{err}");
}

#[test]
fn the_database_pool_size_is_read_and_bounded() {
    assert_eq!(load_all(None, &[], &[]).unwrap().data.connections, 16);
    let env = [("BATCHBEAM_DB_CONNECTIONS", "4")];
    assert_eq!(load_all(None, &env, &[]).unwrap().data.connections, 4);
    let file = "[data]\nconnections = 40\n";
    assert_eq!(load_all(Some(file), &[], &[]).unwrap().data.connections, 40);
    for bad in ["0", "1025", "many"] {
        let err = load_all(None, &[("BATCHBEAM_DB_CONNECTIONS", bad)], &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("BATCHBEAM_DB_CONNECTIONS") && text.contains(bad),
            "{text}"
        );
    }
}
