//! The figment layers (file, environment, flags) and the reader that checks each value by its
//! rule and names where a bad one came from.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::ConfigError;
use super::table::{Rule, SETTINGS, by_key};

/// Where a value came from when it was not a file: shown as `name` in errors.
const ENVIRONMENT: &str = "environment";
const FLAGS: &str = "command line";

/// One value set by the environment or a flag, under its dotted key.
struct One {
    key: &'static str,
    value: String,
    /// The variable or flag, as errors name it.
    name: String,
    layer: &'static str,
}

impl Provider for One {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone()).source(Source::Custom(self.layer.to_owned()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let value = figment::util::nest(self.key, Value::from(self.value.clone()));
        let dict = value.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// The layers: the TOML file at `file` when given, then every variable `vars` has a value for,
/// then `flags` (`(key, value)` pairs, e.g. `("data.db", "x.db")`). An empty variable counts as
/// unset.
pub(super) fn figment(
    file: Option<&Path>,
    vars: &dyn Fn(&str) -> Option<String>,
    flags: &[(&str, String)],
) -> Figment {
    let mut figment = Figment::new();
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    for s in SETTINGS {
        let Some(key) = s.key else { continue };
        if let Some(value) = vars(s.var).filter(|v| !v.trim().is_empty()) {
            figment = figment.merge(One {
                key,
                value,
                name: s.var.to_owned(),
                layer: ENVIRONMENT,
            });
        }
    }
    for (key, value) in flags {
        let Some(s) = by_key(key) else { continue };
        let Some(key) = s.key else { continue };
        figment = figment.merge(One {
            key,
            value: value.clone(),
            name: s.flag.unwrap_or(key).to_owned(),
            layer: FLAGS,
        });
    }
    figment
}

/// A figment error, with the file it is about (the only file a figment of ours reads).
pub(super) fn unreadable(figment: &Figment, e: figment::Error) -> ConfigError {
    let file = figment
        .metadata()
        .chain(e.metadata.as_ref())
        .find_map(|m| match &m.source {
            Some(Source::File(path)) => Some(format!("{}: ", path.display())),
            _ => None,
        })
        .unwrap_or_default();
    let why = super::scrub_urls(e.to_string().trim_end());
    ConfigError::Unreadable(format!("{file}{why}"))
}

/// Reads values from a figment by their rules and names their source in errors.
pub(super) struct Reader<'a> {
    pub(super) figment: &'a Figment,
}

impl Reader<'_> {
    /// The variable or flag, or `` `key` in <file> ``, that set `key`.
    fn name(&self, key: &str) -> String {
        let var = by_key(key).map(|s| s.var);
        match self.figment.find_metadata(key) {
            Some(md) => match &md.source {
                Some(Source::File(path)) => format!("`{key}` in {}", path.display()),
                Some(Source::Custom(_)) => md.name.to_string(),
                _ => format!("`{key}` ({})", md.name),
            },
            None => var.map_or_else(|| format!("`{key}`"), str::to_owned),
        }
    }

    /// The error for `value` of `key`, saying what its rule allows.
    pub(super) fn invalid(&self, key: &str, value: &str) -> ConfigError {
        let allowed = by_key(key).map_or_else(|| "a known key".to_owned(), |s| s.rule.allowed());
        self.invalid_as(key, value, &allowed)
    }

    fn invalid_as(&self, key: &str, value: &str, allowed: &str) -> ConfigError {
        ConfigError::Invalid {
            name: self.name(key),
            // A URL's password is never shown, whatever setting it was given to.
            value: super::scrub_urls(value),
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

    /// A scalar as text.
    pub(super) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
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
            Value::Dict(..) => return Err(self.invalid_as(key, "a table", "a single value")),
            Value::Array(..) => return Err(self.invalid_as(key, "an array", "a single value")),
        };
        Ok(Some(text))
    }

    /// The value of `key` when set, checked by its rule: `f` gets the trimmed text and returns
    /// `None` when the rule refuses it.
    fn checked<T>(
        &self,
        key: &str,
        f: impl FnOnce(&str, &Rule) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.string(key)? else {
            return Ok(None);
        };
        let rule = by_key(key).map_or(Rule::Text, |s| s.rule);
        match f(raw.trim(), &rule) {
            Some(v) => Ok(Some(v)),
            None => Err(self.invalid(key, &raw)),
        }
    }

    pub(super) fn bool(&self, key: &str, slot: &mut bool) -> Result<(), ConfigError> {
        if let Some(b) = self.checked(key, |v, _| match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })? {
            *slot = b;
        }
        Ok(())
    }

    /// One of a [`Rule::OneOf`]'s words, lowercased.
    pub(super) fn word(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.checked(key, |v, rule| {
            let v = v.to_ascii_lowercase();
            match rule {
                Rule::OneOf(words) => words.contains(&v.as_str()).then_some(v),
                _ => Some(v),
            }
        })
    }

    /// A [`Rule::Whole`] number.
    pub(super) fn whole(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.checked(key, |v, rule| {
            let n = v.parse::<u64>().ok()?;
            match rule {
                Rule::Whole { min, max, .. } => (*min..=*max).contains(&n).then_some(n),
                _ => Some(n),
            }
        })
    }

    /// A [`Rule::Positive`] number.
    pub(super) fn positive(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.checked(key, |v, rule| {
            let n = v.parse::<f64>().ok()?;
            let max = match rule {
                Rule::Positive { max, .. } => *max,
                _ => f64::MAX,
            };
            (n.is_finite() && n > 0.0 && n <= max).then_some(n)
        })
    }

    /// Text allowed by a [`Rule::Model`], [`Rule::HttpUrl`], [`Rule::Path`] or [`Rule::Text`].
    pub(super) fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.checked(key, |v, rule| {
            let ok = match rule {
                Rule::Model => !v.is_empty() && !v.contains(char::is_whitespace),
                Rule::HttpUrl => v.starts_with("http://") || v.starts_with("https://"),
                Rule::Addr => v.parse::<std::net::SocketAddr>().is_ok(),
                Rule::InstanceId => {
                    (1..=64).contains(&v.len())
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                }
                _ => !v.is_empty(),
            };
            ok.then(|| v.to_owned())
        })
    }

    /// Text that may be a secret (a database URL with a password): a value that is not a single
    /// piece of text is refused without being shown.
    pub(super) fn secret_text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.value(key)? else {
            return Ok(None);
        };
        match v {
            Value::String(_, s) if !s.trim().is_empty() => Ok(Some(s)),
            _ => Err(self.invalid_as(
                key,
                "[REDACTED]",
                &by_key(key).map_or_else(|| "text".to_owned(), |s| s.rule.allowed()),
            )),
        }
    }

    /// Which layer set `key`: 0 unset or a default, 1 a file, 2 the environment, 3 a flag.
    pub(super) fn layer(&self, key: &str) -> u8 {
        match self.figment.find_metadata(key) {
            Some(md) => match &md.source {
                Some(Source::File(_)) => 1,
                Some(Source::Custom(layer)) if layer == FLAGS => 3,
                Some(Source::Custom(_)) => 2,
                _ => 0,
            },
            None => 0,
        }
    }

    /// Keys nobody reads are typos: say so rather than ignore them.
    pub(super) fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        let data = match self.figment.data() {
            Ok(d) => d,
            Err(e) => return Err(unreadable(self.figment, e)),
        };
        let keys = || SETTINGS.iter().filter_map(|s| s.key);
        let mut tables: Vec<&str> = keys().filter_map(|k| Some(k.split_once('.')?.0)).collect();
        tables.dedup();
        for dict in data.values() {
            for (table, value) in dict {
                if !tables.contains(&table.as_str()) {
                    return Err(ConfigError::UnknownKey {
                        name: self.name(table),
                        allowed: tables.join(", "),
                    });
                }
                let Value::Dict(_, inner) = value else {
                    return Err(self.invalid_as(table, "a single value", "a table"));
                };
                let known: Vec<&str> = keys()
                    .filter_map(|k| k.strip_prefix(table.as_str())?.strip_prefix('.'))
                    .collect();
                if let Some(bad) = inner.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(ConfigError::UnknownKey {
                        name: self.name(&format!("{table}.{bad}")),
                        allowed: known.join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}
