//! The configuration reader, given anything: arbitrary values for every environment variable
//! and arbitrary `batchbeam.toml` files, either reads settings that hold their rules or refuses
//! with an error naming what it refused; it never panics, and no secret ever shows in an error.
//! Cases come from proptest with a fixed seed (the same on every machine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use providers::{ConfigError, SETTINGS, Settings};

const SECRET: &str = "sk-secret-d41d8cd98f00";
const TOKEN: &str = "tok-secret-8f00b204e980";
/// The password of a database URL some cases set.
const PASSWORD: &str = "pw-secret-7c3a9b";

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]))
}

/// Values that sit on or just off the rules' edges, beside arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1".to_owned()),
        Just("24".to_owned()),
        Just("24.0001".to_owned()),
        Just("0.5".to_owned()),
        Just("1e400".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("TRUE".to_owned()),
        Just("batch".to_owned()),
        Just("Flex".to_owned()),
        Just("gpt-4o mini".to_owned()),
        Just("http://127.0.0.1:1".to_owned()),
        Just("ftp://x".to_owned()),
        Just("sqlite://".to_owned()),
        Just("postgres://u@h/db".to_owned()),
        Just(format!("postgres://u:{PASSWORD}@h:5432/db")),
        Just(format!(
            "postgresql://u:{PASSWORD}@h/db?password={PASSWORD}"
        )),
        Just("127.0.0.1:99999".to_owned()),
        Just("[::1]:8080".to_owned()),
        Just("é\u{0}\u{202e}".to_owned()),
        "\\PC{0,40}",
        "[0-9.eE+-]{1,30}",
    ]
}

/// A `batchbeam.toml`: valid keys with arbitrary values, unknown keys, broken syntax.
fn toml_file() -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = SETTINGS.iter().filter_map(|s| s.key).collect();
    let entry = (
        prop::sample::select(keys),
        value(),
        prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
    )
        .prop_map(|(key, value, shape)| match shape {
            // As a string, as a bare value (a number, a bool, or broken TOML), as a table.
            0 => format!("{key} = {:?}\n", value),
            1 => format!("{key} = {value}\n"),
            2 => match key.split_once('.') {
                Some((table, rest)) => format!("[{table}]\n{rest} = {value:?}\n"),
                None => format!("[{key}]\nx = 1\n"),
            },
            _ => format!("{key}x = {value:?}\n"),
        });
    prop_oneof![
        4 => prop::collection::vec(entry, 0..6).prop_map(|e| e.concat()),
        1 => "\\PC{0,200}",
    ]
}

/// Checks one case; returns whether the settings were read (for the tally that shows the
/// cases reach both answers).
fn check(env: &HashMap<&'static str, String>, file: Option<&str>) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchbeam.toml");
    let mut env = env.clone();
    env.insert("OPENAI_API_KEY", SECRET.to_owned());
    env.insert("BATCHBEAM_API_TOKEN", TOKEN.to_owned());
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
        env.insert("BATCHBEAM_CONFIG", path.to_string_lossy().into_owned());
    }
    let lookup = |name: &str| env.get(name).cloned();
    match Settings::from_lookup(&lookup, &[]) {
        Ok(settings) => {
            let p = &settings.providers;
            prop_assert!(p.batch.max_wait_hours > 0.0 && p.batch.max_wait_hours <= 24.0);
            prop_assert!(!settings.openai.base_url.ends_with('/'));
            let shown = format!("{settings:?}");
            prop_assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
            // The database URL's password shows nowhere (another setting given such a URL is
            // that setting's value, and shown as such).
            let database = format!(
                "{:?} {}",
                settings.data.postgres,
                settings.data.database_shown()
            );
            prop_assert!(!database.contains(PASSWORD), "{database}");
            Ok(true)
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                !message.contains(SECRET)
                    && !message.contains(TOKEN)
                    && !message.contains(PASSWORD),
                "{message}"
            );
            match &e {
                ConfigError::Invalid { name, .. } | ConfigError::UnknownKey { name, .. } => {
                    // Names the variable or the key (and its file) it refused.
                    let known = SETTINGS
                        .iter()
                        .any(|s| name.contains(s.var) || s.key.is_some_and(|k| name.contains(k)));
                    prop_assert!(known || name.contains("batchbeam.toml"), "{message}");
                }
                ConfigError::Unreadable(why) => prop_assert!(!why.is_empty()),
                _ => {}
            }
            Ok(false)
        }
    }
}

/// Runs `cases` and asserts that some were read and some refused.
fn run_both<S: Strategy>(
    cases: u32,
    strategy: &S,
    case: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) {
    let read = std::cell::Cell::new(0u32);
    let refused = std::cell::Cell::new(0u32);
    runner(cases)
        .run(strategy, |v| {
            if case(v)? {
                read.set(read.get() + 1);
            } else {
                refused.set(refused.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    assert!(
        read.get() > 0 && refused.get() > 0,
        "read {}, refused {}",
        read.get(),
        refused.get()
    );
}

#[test]
fn any_environment_is_read_or_refused_by_name() {
    let vars: Vec<&'static str> = SETTINGS
        .iter()
        .map(|s| s.var)
        .filter(|v| !["OPENAI_API_KEY", "BATCHBEAM_API_TOKEN", "BATCHBEAM_CONFIG"].contains(v))
        .collect();
    let env = prop::collection::hash_map(prop::sample::select(vars), value(), 0..8);
    run_both(600, &env, |env| check(&env, None));
}

#[test]
fn any_configuration_file_is_read_or_refused_by_name() {
    run_both(400, &toml_file(), |text| {
        check(&HashMap::new(), Some(&text))
    });
}
