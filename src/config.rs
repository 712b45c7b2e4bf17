//! Global settings: flags, their environment variables and the `--config` file.
//!
//! Every global flag is also an environment variable (`ANTARES_` + the flag in upper
//! snake case) and a key of the TOML file given with `--config` (the flag in snake
//! case). Precedence: flag > environment > config file > built-in default. The file may
//! also hold the settings of the long-running commands (`scheduler`, `worker`, `dev`,
//! `provision`), again under their flags' snake-case names; any other key is an error.
//! Relative paths in the file are relative to the file's folder.

use std::path::{Path, PathBuf};

use antares_nats::ConnectOptions;
use anyhow::Context as _;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

/// The default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Flags every command takes.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// NATS server URL; several separated by commas for a cluster
    #[arg(long, global = true, env = "ANTARES_NATS_URL", value_name = "URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,

    /// Antares namespace: the prefix of every subject, stream and bucket
    #[arg(
        long,
        global = true,
        env = "ANTARES_NAMESPACE",
        value_name = "NS",
        default_value = "ats"
    )]
    pub namespace: String,

    /// NATS credentials file (JWT and nkey seed)
    #[arg(long, global = true, env = "ANTARES_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,

    /// NATS user name (with --password)
    #[arg(long, global = true, env = "ANTARES_USER", value_name = "USER")]
    pub user: Option<String>,

    /// NATS password (with --user)
    #[arg(
        long,
        global = true,
        env = "ANTARES_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// CA certificate (PEM) to trust for TLS to NATS; makes TLS required
    #[arg(long, global = true, env = "ANTARES_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// TOML file with settings: any global flag, and the flags of scheduler, worker,
    /// dev and provision, in snake case (e.g. `nats_url = "nats://host:4222"`)
    #[arg(long, global = true, env = "ANTARES_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The `--config` file. Keys are flags in snake case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--nats-url`.
    pub nats_url: Option<String>,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--creds`.
    pub creds: Option<PathBuf>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// `scheduler --id` / `worker --id`.
    pub id: Option<String>,
    /// `scheduler --lease-ttl`.
    pub lease_ttl: Option<String>,
    /// `scheduler --lease-renew`.
    pub lease_renew: Option<String>,
    /// `worker --app`.
    pub app: Option<String>,
    /// `worker --concurrency`.
    pub concurrency: Option<usize>,
    /// `worker --allow-scripts`.
    pub allow_scripts: Option<bool>,
    /// `worker --script-env`.
    pub script_env: Option<Vec<String>>,
    /// `provision --replicas`.
    pub replicas: Option<usize>,
    /// `provision --history-retention`.
    pub history_retention: Option<String>,
    /// `provision --log-retention`.
    pub log_retention: Option<String>,
    /// `dev --data`.
    pub data: Option<PathBuf>,
    /// `dev --console-listen`.
    pub console_listen: Option<String>,
}

impl FileConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file `{}`: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.creds, &mut cfg.tls_ca, &mut cfg.data]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }
}

/// Whether a flag was given on the command line or in the environment (at any level of
/// subcommands), as opposed to left at its default.
pub fn explicit(matches: &ArgMatches, id: &str) -> bool {
    let mut m = Some(matches);
    while let Some(cur) = m {
        if let Ok(Some(src)) = cur.try_get_raw(id).map(|_| cur.value_source(id))
            && matches!(src, ValueSource::CommandLine | ValueSource::EnvVariable)
        {
            return true;
        }
        m = cur.subcommand().map(|(_, sub)| sub);
    }
    false
}

/// The global settings, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How to reach NATS.
    pub connect: ConnectOptions,
    /// The namespace.
    pub namespace: String,
    /// Whether the NATS URL was chosen by the user (flag, environment or file).
    pub nats_url_given: bool,
    /// The config file (empty when none was given).
    pub file: FileConfig,
}

impl Settings {
    /// Resolves the global flags against the config file.
    pub fn resolve(args: &GlobalArgs, matches: &ArgMatches) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let pick = |id: &str, flag: &String, from_file: &Option<String>| -> String {
            if explicit(matches, id) {
                flag.clone()
            } else {
                from_file.clone().unwrap_or_else(|| flag.clone())
            }
        };
        let nats_url = pick("nats_url", &args.nats_url, &file.nats_url);
        let namespace = pick("namespace", &args.namespace, &file.namespace);
        let nats_url_given = explicit(matches, "nats_url") || file.nats_url.is_some();
        let connect = ConnectOptions {
            urls: nats_url,
            creds: args.creds.clone().or_else(|| file.creds.clone()),
            user: args.user.clone().or_else(|| file.user.clone()),
            password: args.password.clone().or_else(|| file.password.clone()),
            tls_ca: args.tls_ca.clone().or_else(|| file.tls_ca.clone()),
            name: "antares".to_string(),
        };
        Ok(Self {
            connect,
            namespace,
            nats_url_given,
            file,
        })
    }
}

/// Parses a humantime duration flag (`500ms`, `3s`, `7d`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like 500ms, 3s, 10m or 7d")
    })
}

/// A duration from the config file, or the default.
pub fn file_duration(
    key: &str,
    value: Option<&String>,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    match value {
        Some(v) => parse_duration(v).map_err(|e| anyhow::anyhow!("config key `{key}`: {e}")),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("nats_url = \"x\"\nnats_ulr = \"y\"\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("nats_ulr"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("3s").expect("3s"),
            std::time::Duration::from_secs(3)
        );
        assert!(parse_duration("three").is_err());
    }
}
