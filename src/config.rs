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

    /// TOML file with settings: any global flag, and the flags of scheduler, worker,
    /// dev and provision, in snake case (e.g. `nats_url = "nats://host:4222"`)
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
}

/// A section's command ([`Section::COMMAND`]) and its defaults ([`defaults`]).
type SectionEntry = (Option<&'static str>, fn() -> Dict);

/// Every section, for the keys the file may hold and for `--help`.
const SECTIONS: &[SectionEntry] = &[
    (Connection::COMMAND, defaults::<Connection>),
    (
        crate::cli::run::SchedulerSettings::COMMAND,
        defaults::<crate::cli::run::SchedulerSettings>,
    ),
    (
        crate::cli::run::WorkerSettings::COMMAND,
        defaults::<crate::cli::run::WorkerSettings>,
    ),
    (
        crate::cli::provision::ProvisionSettings::COMMAND,
        defaults::<crate::cli::provision::ProvisionSettings>,
    ),
    (
        crate::dev::DevSettings::COMMAND,
        defaults::<crate::dev::DevSettings>,
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
        .flat_map(|(_, defaults)| defaults().into_keys())
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

/// Where a layer's values come from, as messages name it.
const DEFAULTS: &str = "built-in default";
const ENVIRONMENT: &str = "environment variable";
const FLAG: &str = "flag";

/// A serialized layer under a name of ours (which errors and [`Settings`] use).
struct Layer<T> {
    value: T,
    metadata: Metadata,
    /// Drop flags that were not given (none, false or an empty list).
    given_only: bool,
}

impl<T: Serialize> Layer<T> {
    fn defaults(value: T) -> Self {
        Self {
            value,
            metadata: Metadata::named(DEFAULTS),
            given_only: false,
        }
    }

    /// The flags typed on the command line. Flags that were left out are `None`,
    /// `false` or empty (their clap structs have no defaults and read no environment),
    /// and leave the layers below them alone.
    fn flags(value: T) -> Self {
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
fn not_given(value: &Value) -> bool {
    match value {
        Value::Empty(..) => true,
        Value::Bool(_, b) => !b,
        Value::Array(_, items) => items.is_empty(),
        _ => false,
    }
}

/// `lease_ttl` → `lease-ttl`.
fn flag_name(keys: &[&str]) -> String {
    keys.first().copied().unwrap_or_default().replace('_', "-")
}

/// `lease_ttl` → `ANTARES_LEASE_TTL`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The environment variables of a section's keys, each as text: a value like `123`,
/// `true` or `[x` is a string to a string setting (a password, a user name), and a
/// number or a boolean where the section wants one.
struct EnvVars {
    vars: Dict,
    error: Option<String>,
}

impl EnvVars {
    fn read(keys: &[String], env: &Environment) -> Self {
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
fn explain(error: figment::Error) -> anyhow::Error {
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
fn describe(kind: &figment::error::Kind) -> String {
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

/// The global settings, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How to reach NATS.
    pub connect: ConnectOptions,
    /// The namespace.
    pub namespace: String,
    /// Whether the NATS URL was chosen by the user (flag, environment or file).
    pub nats_url_given: bool,
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
    for (command, defaults) in SECTIONS {
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

/// Parses a humantime duration (`500ms`, `3s`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like 500ms, 3s, 10m or 7d")
    })
}

/// `7d`, `36h`, `90m`, `45s`: the largest unit that divides it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        humantime::format_duration(d).to_string()
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Serde for durations as humantime text (`with = "crate::config::duration"`).
pub mod duration {
    use super::*;

    /// Writes `3s`, `7d`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Reads `500ms`, `3s`, `7d`; a bare number is refused (with the reason).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like 500ms, 3s, 10m or 7d")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(Text)
    }
}

/// Serde for lists: an array in the file, comma-separated text in the environment.
pub mod list {
    use super::*;

    /// Reads `["A", "B"]` or `"A,B"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        struct Items;
        impl<'de> de::Visitor<'de> for Items {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of names, or names separated by commas")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
                Ok(v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        d.deserialize_any(Items)
    }
}

/// A path from any layer; one from the config file is taken relative to the file's
/// folder (figment's `RelativePathBuf` knows which file a value came from).
pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    figment::value::magic::RelativePathBuf::deserialize(d).map(|p| p.relative())
}

/// [`path`], optional.
pub fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Option::<figment::value::magic::RelativePathBuf>::deserialize(d)
        .map(|p| p.map(|p| p.relative()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser as _;

    /// A config file in a scratch folder.
    struct File {
        dir: tempfile::TempDir,
    }

    impl File {
        fn new(text: &str) -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("antares.toml"), text).expect("write config");
            Self { dir }
        }
        fn path(&self) -> PathBuf {
            self.dir.path().join("antares.toml")
        }
    }

    /// The layers of a file (or none) and a given environment.
    fn layers(file: Option<&File>, env: &[(&str, &str)]) -> anyhow::Result<Layers> {
        let path = file.map(File::path);
        let mut layers = Layers::load(path.as_deref())?;
        layers.env = Environment::Given(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Ok(layers)
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("antares").chain(args.iter().copied()))
            .expect("command line parses")
    }

    fn settings(
        file: Option<&File>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Settings> {
        Settings::with_layers(&cli(args).global, layers(file, env)?)
    }

    fn scheduler(
        file: Option<&File>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<crate::cli::run::SchedulerSettings> {
        let mut all = vec!["scheduler"];
        all.extend_from_slice(args);
        let crate::cli::Command::Scheduler(flags) = cli(&all).command else {
            panic!("not the scheduler");
        };
        layers(file, env)?.section(&flags)
    }

    fn worker(
        file: Option<&File>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<crate::cli::run::WorkerSettings> {
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        let crate::cli::Command::Worker(flags) = cli(&all).command else {
            panic!("not the worker");
        };
        layers(file, env)?.section(&flags)
    }

    #[test]
    fn defaults_when_nothing_is_given() -> anyhow::Result<()> {
        let s = settings(None, &[], &["cluster"])?;
        assert_eq!(s.connect.urls, DEFAULT_NATS_URL);
        assert_eq!(s.namespace, "ats");
        assert!(!s.nats_url_given);
        assert_eq!(s.connect.creds, None);
        let sched = scheduler(None, &[], &[])?;
        let d = antares_scheduler::SchedulerOptions::default();
        assert_eq!(
            (sched.lease_ttl, sched.lease_renew),
            (d.lease_ttl, d.lease_renew)
        );
        assert_eq!(sched.id, None);
        let w = worker(None, &[], &[])?;
        assert_eq!(w.concurrency, antares_worker::DEFAULT_CONCURRENCY);
        assert!(!w.allow_scripts);
        assert!(w.script_env.is_empty());
        Ok(())
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_default() -> anyhow::Result<()> {
        let file = File::new("namespace = \"file\"\nlease_ttl = \"10s\"\nconcurrency = 4\n");
        // Global: namespace.
        assert_eq!(settings(Some(&file), &[], &["cluster"])?.namespace, "file");
        let env = [("ANTARES_NAMESPACE", "env"), ("ANTARES_LEASE_TTL", "20s")];
        assert_eq!(settings(Some(&file), &env, &["cluster"])?.namespace, "env");
        let flag = ["--namespace", "flag", "cluster"];
        assert_eq!(settings(Some(&file), &env, &flag)?.namespace, "flag");
        // After the command name too.
        let flag = ["cluster", "--namespace", "flag"];
        assert_eq!(settings(Some(&file), &env, &flag)?.namespace, "flag");
        // A command's: lease_ttl.
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(scheduler(None, &[], &[])?.lease_ttl, secs(3));
        assert_eq!(scheduler(Some(&file), &[], &[])?.lease_ttl, secs(10));
        assert_eq!(scheduler(Some(&file), &env, &[])?.lease_ttl, secs(20));
        let flag = ["--lease-ttl", "30s"];
        assert_eq!(scheduler(Some(&file), &env, &flag)?.lease_ttl, secs(30));
        // The environment alone over the default, and untouched settings stay.
        assert_eq!(scheduler(None, &env, &[])?.lease_ttl, secs(20));
        assert_eq!(scheduler(Some(&file), &env, &flag)?.lease_renew, secs(1));
        // A number.
        assert_eq!(worker(Some(&file), &[], &[])?.concurrency, 4);
        let env = [("ANTARES_CONCURRENCY", "8")];
        assert_eq!(worker(Some(&file), &env, &[])?.concurrency, 8);
        let flag = ["--concurrency", "16"];
        assert_eq!(worker(Some(&file), &env, &flag)?.concurrency, 16);
        Ok(())
    }

    #[test]
    fn the_url_is_given_by_any_layer_but_the_default() -> anyhow::Result<()> {
        let file = File::new("nats_url = \"nats://file:4222\"\n");
        let s = settings(Some(&file), &[], &["cluster"])?;
        assert!(s.nats_url_given);
        assert_eq!(s.connect.urls, "nats://file:4222");
        let env = [("ANTARES_NATS_URL", "nats://env:4222")];
        assert!(settings(None, &env, &["cluster"])?.nats_url_given);
        let flag = ["--nats-url", "nats://flag:4222", "cluster"];
        assert!(settings(None, &[], &flag)?.nats_url_given);
        Ok(())
    }

    #[test]
    fn booleans_and_lists() -> anyhow::Result<()> {
        let file = File::new("allow_scripts = true\nscript_env = [\"A\", \"B\"]\n");
        let w = worker(Some(&file), &[], &[])?;
        assert!(w.allow_scripts);
        assert_eq!(w.script_env, ["A", "B"]);
        // An absent flag does not turn the file's `true` off.
        let w = worker(Some(&file), &[("ANTARES_SCRIPT_ENV", "C, D")], &[])?;
        assert!(w.allow_scripts);
        assert_eq!(w.script_env, ["C", "D"]);
        let flag = ["--script-env", "E,F", "--script-env", "G"];
        assert_eq!(worker(Some(&file), &[], &flag)?.script_env, ["E", "F", "G"]);
        for yes in ["true", "1", "yes", "on"] {
            let env = [("ANTARES_ALLOW_SCRIPTS", yes)];
            assert!(worker(None, &env, &[])?.allow_scripts, "{yes}");
        }
        let env = [("ANTARES_ALLOW_SCRIPTS", "false")];
        assert!(!worker(Some(&file), &env, &[])?.allow_scripts);
        assert!(worker(Some(&file), &env, &["--allow-scripts"])?.allow_scripts);
        Ok(())
    }

    #[test]
    fn environment_values_are_text() -> anyhow::Result<()> {
        // A password that looks like a number, a list or a quoted string stays as is.
        for pw in ["123456", "[x", "\"quoted\"", "true"] {
            let s = settings(None, &[("ANTARES_PASSWORD", pw)], &["cluster"])?;
            assert_eq!(s.connect.password.as_deref(), Some(pw));
        }
        Ok(())
    }

    #[test]
    fn relative_paths_in_the_file_are_relative_to_its_folder() -> anyhow::Result<()> {
        let file = File::new("creds = \"sub/app.creds\"\ntls_ca = \"/etc/ca.pem\"\n");
        let s = settings(Some(&file), &[], &["cluster"])?;
        assert_eq!(s.connect.creds, Some(file.dir.path().join("sub/app.creds")));
        assert_eq!(s.connect.tls_ca, Some(PathBuf::from("/etc/ca.pem")));
        // From the environment or a flag, relative to where antares runs.
        let env = [("ANTARES_CREDS", "env.creds")];
        let s = settings(Some(&file), &env, &["cluster"])?;
        assert_eq!(s.connect.creds, Some(PathBuf::from("env.creds")));
        let s = settings(Some(&file), &[], &["--creds", "flag.creds", "cluster"])?;
        assert_eq!(s.connect.creds, Some(PathBuf::from("flag.creds")));
        Ok(())
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let file = File::new("nats_url = \"x\"\nnats_ulr = \"y\"\n");
        let err = layers(Some(&file), &[])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("`nats_ulr`"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
        assert!(err.contains("nats_url"), "lists the keys: {err}");
        // Keys of every command are welcome in one file.
        let file = File::new("app = \"a\"\nlease_ttl = \"10s\"\nreplicas = 3\ndata = \"d\"\n");
        assert!(layers(Some(&file), &[]).is_ok());
        // Sections are not tables.
        let file = File::new("[scheduler]\nlease_ttl = \"10s\"\n");
        let err = layers(Some(&file), &[]).expect_err("a table").to_string();
        assert!(err.contains("`scheduler`"), "{err}");
    }

    #[test]
    fn bad_values_name_where_they_came_from() -> anyhow::Result<()> {
        let file = File::new("lease_ttl = \"soon\"\nconcurrency = \"many\"\n");
        let path = file.path().display().to_string();
        let err = scheduler(Some(&file), &[], &[])
            .expect_err("bad duration")
            .to_string();
        assert!(
            err.contains(&format!("config file `{path}`, key `lease_ttl`")),
            "{err}"
        );
        assert!(err.contains("`soon` is not a duration"), "{err}");
        let err = worker(Some(&file), &[], &[])
            .expect_err("bad number")
            .to_string();
        assert!(err.contains("key `concurrency`"), "{err}");
        assert!(err.contains("`many` is not a whole number"), "{err}");
        // A good flag or variable over a bad file value is fine.
        assert!(scheduler(Some(&file), &[("ANTARES_LEASE_TTL", "5s")], &[]).is_ok());

        let err = scheduler(None, &[("ANTARES_LEASE_TTL", "10")], &[])
            .expect_err("no unit")
            .to_string();
        assert!(
            err.contains("environment variable `ANTARES_LEASE_TTL`"),
            "{err}"
        );
        assert!(err.contains("`10` is not a duration"), "{err}");
        let err = scheduler(None, &[], &["--lease-renew", "x"])
            .expect_err("bad flag")
            .to_string();
        assert!(err.contains("flag `--lease-renew`"), "{err}");
        let err = worker(None, &[("ANTARES_ALLOW_SCRIPTS", "maybe")], &[])
            .expect_err("bad bool")
            .to_string();
        assert!(
            err.contains("`ANTARES_ALLOW_SCRIPTS`") && err.contains("`maybe` is not true or false"),
            "{err}"
        );
        let err = worker(None, &[], &["--concurrency=-1"])
            .expect_err("negative")
            .to_string();
        assert!(err.contains("flag `--concurrency`"), "{err}");
        Ok(())
    }

    #[test]
    fn bad_files_are_named() {
        let file = File::new("nats_url = \n");
        let err = layers(Some(&file), &[]).expect_err("syntax").to_string();
        assert!(err.contains(&file.path().display().to_string()), "{err}");
        let file = File::new("namespace = 7\n");
        let err = settings(Some(&file), &[], &["cluster"])
            .expect_err("a number for a string")
            .to_string();
        assert!(err.contains("key `namespace`"), "{err}");
        let missing = Path::new("/nonexistent/antares.toml");
        let err = Layers::load(Some(missing))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("/nonexistent/antares.toml"), "{err}");
    }

    /// Flags read no environment and have no defaults of clap's: a value in the flag
    /// layer is always one typed on the command line.
    #[test]
    fn setting_flags_come_from_the_command_line_only() {
        use clap::CommandFactory as _;
        let root = Cli::command();
        for (command, defaults) in SECTIONS {
            let cmd = match command {
                None => &root,
                Some(name) => root.find_subcommand(name).expect("a section's command"),
            };
            let keys = defaults();
            let args: Vec<_> = cmd
                .get_arguments()
                .filter(|arg| keys.contains_key(arg.get_id().as_str()))
                .collect();
            assert_eq!(
                args.len(),
                keys.len(),
                "a flag for every key of {command:?}"
            );
            for arg in args {
                assert!(arg.get_env().is_none(), "--{} reads env", arg.get_id());
                assert!(
                    arg.get_default_values().is_empty(),
                    "--{} has a clap default",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn help_names_the_variable_and_the_default() {
        use clap::CommandFactory as _;
        let mut cmd = document(Cli::command());
        let help = cmd.render_help().to_string();
        assert!(help.contains("[env: ANTARES_NATS_URL]"), "{help}");
        assert!(
            help.contains(&format!("[default: {DEFAULT_NATS_URL}]")),
            "{help}"
        );
        assert!(help.contains("[env: ANTARES_CONFIG]"), "{help}");
        let scheduler = cmd
            .find_subcommand_mut("scheduler")
            .expect("scheduler")
            .render_help()
            .to_string();
        assert!(
            scheduler.contains("[env: ANTARES_LEASE_TTL] [default: 3s]"),
            "{scheduler}"
        );
        assert!(
            scheduler.contains("[env: ANTARES_NAMESPACE]"),
            "{scheduler}"
        );
        assert!(
            scheduler.contains("[env: ANTARES_ID] [default: <host>-<pid>-<random>]"),
            "{scheduler}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s").expect("3s"), Duration::from_secs(3));
        assert!(parse_duration("three").is_err());
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
    }
}
