//! The layers settings are read from, and errors that say which one a bad value came from.

use super::*;

/// Where a layer's values come from, as messages name it.
pub(super) const DEFAULTS: &str = "built-in default";
pub(super) const ENVIRONMENT: &str = "environment variable";
pub(super) const FLAG: &str = "flag";

/// A serialized layer under a name of ours (which errors and [`Settings`] use).
pub(super) struct Layer<T> {
    value: T,
    metadata: Metadata,
    /// Drop flags that were not given (none, false or an empty list).
    given_only: bool,
}

impl<T: Serialize> Layer<T> {
    pub(super) fn defaults(value: T) -> Self {
        Self {
            value,
            metadata: Metadata::named(DEFAULTS),
            given_only: false,
        }
    }

    /// The flags typed on the command line. Flags that were left out are `None`,
    /// `false` or empty (their clap structs have no defaults and read no environment),
    /// and leave the layers below them alone.
    pub(super) fn flags(value: T) -> Self {
        Self {
            value,
            metadata: Metadata::named(FLAG)
                .interpolater(|_: &Profile, keys: &[&str]| format!("--{}", flag_name(keys))),
            given_only: true,
        }
    }
}

impl<T: Serialize> Provider for Layer<T> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut data = Serialized::defaults(&self.value).data()?;
        if self.given_only {
            for dict in data.values_mut() {
                dict.retain(|_, v| !not_given(v));
            }
        }
        Ok(data)
    }
}

/// A flag's value when the flag was not on the command line.
pub(super) fn not_given(value: &Value) -> bool {
    match value {
        Value::Empty(..) => true,
        Value::Bool(_, b) => !b,
        Value::Array(_, items) => items.is_empty(),
        _ => false,
    }
}

/// `lease_ttl` → `lease-ttl`.
pub(super) fn flag_name(keys: &[&str]) -> String {
    keys.first().copied().unwrap_or_default().replace('_', "-")
}

/// `lease_ttl` → `ANTARES_LEASE_TTL`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The environment variables of a section's keys, each as text: a value like `123`,
/// `true` or `[x` is a string to a string setting (a password, a user name), and a
/// number or a boolean where the section wants one.
pub(super) struct EnvVars {
    vars: Dict,
    error: Option<String>,
}

impl EnvVars {
    pub(super) fn read(keys: &[String], env: &Environment) -> Self {
        let mut vars = Dict::new();
        let mut error = None;
        for key in keys {
            let name = env_name(key);
            let value = match env {
                Environment::Process => match std::env::var(&name) {
                    Ok(v) => Some(v),
                    Err(std::env::VarError::NotPresent) => None,
                    Err(std::env::VarError::NotUnicode(_)) => {
                        error.get_or_insert(format!(
                            "{ENVIRONMENT} `{name}`: the value is not valid UTF-8"
                        ));
                        None
                    }
                },
                #[cfg(test)]
                Environment::Given(given) => given
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone()),
            };
            if let Some(v) = value {
                vars.insert(key.clone(), Value::from(v));
            }
        }
        Self { vars, error }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT).interpolater(|_: &Profile, keys: &[&str]| {
            env_name(keys.first().copied().unwrap_or_default())
        })
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        if let Some(e) = &self.error {
            return Err(e.clone().into());
        }
        Ok(Profile::Default.collect(self.vars.clone()))
    }
}

/// A settings error as a person reads it: where the value came from (the file and the
/// key, the environment variable, or the flag), then what is wrong with it.
pub(super) fn explain(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let what = describe(&e.kind);
            let Some(md) = &e.metadata else {
                return if key.is_empty() {
                    what
                } else {
                    format!("setting `{key}`: {what}")
                };
            };
            match md.source.as_ref().and_then(|s| s.file_path()) {
                Some(path) if key.is_empty() => {
                    format!("config file `{}`: {what}", path.display())
                }
                Some(path) => format!("config file `{}`, key `{key}`: {what}", path.display()),
                None if key.is_empty() => what,
                None => format!(
                    "{} `{}`: {what}",
                    md.name,
                    md.interpolate(&Profile::Default, &e.path)
                ),
            }
        })
        .collect();
    anyhow::anyhow!(lines.join("\n"))
}

/// What is wrong with a value, in words.
pub(super) fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::{Actual, Kind};
    let whole = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64",
    ];
    match kind {
        Kind::InvalidType(Actual::Str(s), expected) if whole.contains(&expected.as_str()) => {
            format!("`{s}` is not a whole number")
        }
        Kind::InvalidType(Actual::Str(s), expected) if expected == "a boolean" => {
            format!("`{s}` is not true or false")
        }
        Kind::InvalidType(Actual::Signed(n), expected)
        | Kind::InvalidValue(Actual::Signed(n), expected)
            if n.is_negative() && whole.contains(&expected.as_str()) =>
        {
            format!("`{n}` is negative; give a whole number, 0 or more")
        }
        Kind::InvalidType(Actual::Float(n), expected) if whole.contains(&expected.as_str()) => {
            format!("`{n}` is not a whole number")
        }
        other => other.to_string().trim_end().to_string(),
    }
}
