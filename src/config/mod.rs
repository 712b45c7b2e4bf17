//! Settings: flags, their environment variables and the `--config` file, in layers.
//!
//! Every setting is a flag, an environment variable (`ANTARES_` + the flag in upper
//! snake case) and a key of the TOML file given with `--config` (the flag in snake
//! case). Precedence: flag > environment > config file > built-in default.
//!
//! Each group of settings is one serde struct, a [`Section`]: the global connection
//! settings ([`Connection`]) and those of each long-running command (`scheduler`,
//! `worker`, `provision`, `dev`). A section is extracted from a [`Figment`] of four
//! layers, each overriding the ones before it:
//!
//! 1. the section's [`Default`] (the built-in defaults, also shown in `--help`);
//! 2. the config file, if `--config` (or `ANTARES_CONFIG`) names one;
//! 3. the `ANTARES_*` variables of the section's keys, taken as text;
//! 4. the flags given on the command line.
//!
//! The clap structs that declare the flags have no defaults and read no environment
//! (only `--config` does), so a flag has a value only when it was typed. They hold
//! flags as text where the section has a richer type (durations, numbers): every
//! value, whichever layer it comes from, is parsed once, by the section's serde
//! implementation, and a bad one is reported with the flag, variable or file and key
//! it came from.
//!
//! The file may hold the keys of every section (one file serves a scheduler and a
//! worker alike); any other key is an error naming it. Relative paths in the file are
//! relative to the file's folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use antares_nats::ConnectOptions;
use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

mod layers;
mod values;

use layers::*;
pub use values::*;

/// The default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The prefix of every environment variable.
pub const ENV_PREFIX: &str = "ANTARES_";

/// Flags every command takes.
#[derive(clap::Args, Clone, Debug, Serialize)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// NATS server URL; several separated by commas for a cluster
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,

    /// Antares namespace: the prefix of every subject, stream and bucket
    #[arg(long, global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// NATS credentials file (JWT and nkey seed)
    #[arg(long, global = true, value_name = "FILE")]
    pub creds: Option<PathBuf>,

    /// NATS user name (with --password)
    #[arg(long, global = true, value_name = "USER")]
    pub user: Option<String>,

    /// NATS password (with --user)
    #[arg(long, global = true, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// CA certificate (PEM) to trust for TLS to NATS; makes TLS required
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// How log lines are written on stderr: `text` (colour only on a terminal) or
    /// `json` (one object per line, for log collectors)
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// TOML file with settings: any global flag, and the flags of scheduler, worker,
    /// console, dev and provision, in snake case (e.g. `nats_url = "nats://host:4222"`)
    #[arg(long, global = true, env = "ANTARES_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// A group of settings: the keys of one command (or the global ones), their types and
/// their built-in defaults. Its field names are the keys; every field is serialized
/// (also when `None`), so the serialized default lists every key.
pub trait Section: Serialize + DeserializeOwned + Default {
    /// The command whose flags these are; `None` for the global flags.
    const COMMAND: Option<&'static str>;
    /// Keys set by the environment or the file only, never by a flag (secrets: a flag
    /// shows in the process list and the shell history).
    const NO_FLAG: &'static [&'static str] = &[];
}

/// A section's command ([`Section::COMMAND`]), its defaults ([`defaults`]) and its
/// keys without a flag ([`Section::NO_FLAG`]).
type SectionEntry = (Option<&'static str>, fn() -> Dict, &'static [&'static str]);

/// Every section, for the keys the file may hold and for `--help`.
const SECTIONS: &[SectionEntry] = &[
    (
        Connection::COMMAND,
        defaults::<Connection>,
        Connection::NO_FLAG,
    ),
    (
        crate::cli::run::SchedulerSettings::COMMAND,
        defaults::<crate::cli::run::SchedulerSettings>,
        crate::cli::run::SchedulerSettings::NO_FLAG,
    ),
    (
        crate::cli::run::WorkerSettings::COMMAND,
        defaults::<crate::cli::run::WorkerSettings>,
        crate::cli::run::WorkerSettings::NO_FLAG,
    ),
    (
        crate::cli::provision::ProvisionSettings::COMMAND,
        defaults::<crate::cli::provision::ProvisionSettings>,
        crate::cli::provision::ProvisionSettings::NO_FLAG,
    ),
    (
        crate::dev::DevSettings::COMMAND,
        defaults::<crate::dev::DevSettings>,
        crate::dev::DevSettings::NO_FLAG,
    ),
    (
        crate::cli::console::ConsoleSettings::COMMAND,
        defaults::<crate::cli::console::ConsoleSettings>,
        crate::cli::console::ConsoleSettings::NO_FLAG,
    ),
];

/// A section's built-in defaults, one entry per key.
fn defaults<S: Section>() -> Dict {
    Value::serialize(S::default())
        .ok()
        .and_then(Value::into_dict)
        .unwrap_or_default()
}

/// The global settings: how to reach NATS, and the namespace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Connection {
    /// `--nats-url`.
    pub nats_url: String,
    /// `--namespace`.
    pub namespace: String,
    /// `--creds`.
    #[serde(deserialize_with = "optional_path")]
    pub creds: Option<PathBuf>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--tls-ca`.
    #[serde(deserialize_with = "optional_path")]
    pub tls_ca: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, with the fields of each event.
    Json,
}

impl Default for Connection {
    fn default() -> Self {
        Self {
            nats_url: DEFAULT_NATS_URL.to_string(),
            namespace: antares_schemas::topology::DEFAULT_NAMESPACE.to_string(),
            creds: None,
            user: None,
            password: None,
            tls_ca: None,
            log_format: LogFormat::Text,
        }
    }
}

impl Section for Connection {
    const COMMAND: Option<&'static str> = None;
}

/// The layers below the flags: the config file (if any) under the environment.
#[derive(Clone, Debug)]
pub struct Layers {
    /// The config file, read and checked; empty when none was given.
    file: Figment,
    /// Where the environment is read from.
    env: Environment,
}

/// Where environment variables come from: the process, or (in tests) a list.
#[derive(Clone, Debug)]
enum Environment {
    Process,
    #[cfg(test)]
    Given(Vec<(String, String)>),
}

impl Layers {
    /// Reads the config file, if any, and checks that every key in it is a setting.
    pub fn load(config: Option<&Path>) -> anyhow::Result<Self> {
        let file = match config {
            None => Figment::new(),
            Some(path) => {
                // `Toml::file_exact` would take a missing file for an empty one.
                if let Err(e) = std::fs::metadata(path) {
                    anyhow::bail!("cannot read config file `{}`: {e}", path.display());
                }
                let file = Figment::from(Toml::file_exact(path));
                check_keys(path, &file)?;
                file
            }
        };
        Ok(Self {
            file,
            env: Environment::Process,
        })
    }

    /// The layers of one section: defaults, file, environment, then `flags`.
    pub fn figment<S: Section>(&self, flags: &impl Serialize) -> Figment {
        let keys: Vec<String> = defaults::<S>().into_keys().collect();
        Figment::from(Layer::defaults(S::default()))
            .merge(self.file.clone())
            .merge(EnvVars::read(&keys, &self.env))
            .merge(Layer::flags(flags))
    }

    /// One section, resolved.
    pub fn section<S: Section>(&self, flags: &impl Serialize) -> anyhow::Result<S> {
        extract(&self.figment::<S>(flags))
    }
}

/// Extracts a section; numbers and booleans may be given as text (as they are in the
/// environment).
fn extract<S: Section>(figment: &Figment) -> anyhow::Result<S> {
    figment.extract_lossy().map_err(explain)
}

/// Every key in the file must be a key of some section.
fn check_keys(path: &Path, file: &Figment) -> anyhow::Result<()> {
    let data = file.data().map_err(|e| {
        anyhow::anyhow!(
            "config file `{}`: {}",
            path.display(),
            e.kind.to_string().trim_end()
        )
    })?;
    let known: BTreeSet<String> = SECTIONS
        .iter()
        .flat_map(|(_, defaults, _)| defaults().into_keys())
        .collect();
    for key in data.values().flat_map(|dict| dict.keys()) {
        if !known.contains(key) {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            anyhow::bail!(
                "config file `{}`: unknown key `{key}`; the keys are `{}`",
                path.display(),
                known.join("`, `")
            );
        }
    }
    Ok(())
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
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The layers under the flags, for the commands' own sections.
    pub layers: Layers,
}

impl Settings {
    /// Resolves the global flags against the environment and the config file.
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Self> {
        let config = args.config.as_ref().filter(|p| !p.as_os_str().is_empty());
        let layers = Layers::load(config.map(PathBuf::as_path))?;
        Self::with_layers(args, layers)
    }

    fn with_layers(args: &GlobalArgs, layers: Layers) -> anyhow::Result<Self> {
        let figment = layers.figment::<Connection>(args);
        let conn: Connection = extract(&figment)?;
        let nats_url_given = figment
            .find_metadata("nats_url")
            .is_some_and(|md| md.name != DEFAULTS);
        Ok(Self {
            connect: ConnectOptions {
                urls: conn.nats_url,
                creds: conn.creds,
                user: conn.user,
                password: conn.password,
                tls_ca: conn.tls_ca,
                name: "antares".to_string(),
            },
            namespace: conn.namespace,
            nats_url_given,
            log_format: conn.log_format,
            layers,
        })
    }

    /// A command's own settings, with its flags on top.
    pub fn section<S: Section>(&self, flags: &impl Serialize) -> anyhow::Result<S> {
        self.layers.section(flags)
    }
}

/// Says in `--help` which environment variable each setting's flag is, and its
/// built-in default (taken from the sections, so it cannot drift).
pub fn document(mut cmd: clap::Command) -> clap::Command {
    for (command, defaults, _) in SECTIONS {
        let defaults = defaults();
        let each_key = |c: clap::Command| {
            c.mut_args(|arg| match defaults.get(arg.get_id().as_str()) {
                Some(default) => annotate(arg, default),
                None => arg,
            })
        };
        cmd = match command {
            None => each_key(cmd),
            Some(name) => cmd.mut_subcommand(name, each_key),
        };
    }
    // `--config` is read by clap (flag, then `ANTARES_CONFIG`); said the same way.
    cmd.mut_arg("config", |arg| {
        annotate(
            arg.hide_env(true),
            &Value::from(figment::value::Empty::None),
        )
    })
}

/// `help [env: ANTARES_X] [default: D]`, as clap writes its own.
fn annotate(arg: clap::Arg, default: &Value) -> clap::Arg {
    let mut extra = format!("[env: {}]", env_name(arg.get_id().as_str()));
    match default {
        Value::String(_, s) => extra.push_str(&format!(" [default: {s}]")),
        Value::Num(_, n) => {
            if let Some(n) = n.to_u128() {
                extra.push_str(&format!(" [default: {n}]"));
            }
        }
        _ => {}
    }
    // A default the help states in words (`[default: <host>-<pid>-<random>]`) stays last.
    let join = |help: Option<&clap::builder::StyledStr>| match help.map(|h| h.to_string()) {
        Some(h) => match h.find(" [default: ") {
            Some(at) => format!("{} {extra}{}", &h[..at], &h[at..]),
            None => format!("{h} {extra}"),
        },
        None => extra.clone(),
    };
    let long = arg.get_long_help().map(|h| join(Some(h)));
    let short = join(arg.get_help());
    let arg = arg.help(short);
    match long {
        Some(long) => arg.long_help(long),
        None => arg,
    }
}

#[cfg(test)]
mod tests;
