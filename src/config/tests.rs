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

fn settings(file: Option<&File>, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Settings> {
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
    for (command, defaults, no_flag) in SECTIONS {
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
            keys.len() - no_flag.len(),
            "a flag for every key of {command:?} but {no_flag:?}"
        );
        for key in *no_flag {
            assert!(keys.contains_key(*key), "{key} is a key of {command:?}");
            assert!(
                cmd.get_arguments().all(|a| a.get_id().as_str() != *key),
                "{key} has a flag"
            );
        }
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

fn console(
    file: Option<&File>,
    env: &[(&str, &str)],
    args: &[&str],
) -> anyhow::Result<crate::cli::console::ConsoleSettings> {
    let mut all = vec!["console"];
    all.extend_from_slice(args);
    let crate::cli::Command::Console(flags) = cli(&all).command else {
        panic!("not the console");
    };
    layers(file, env)?.section(&flags)
}

#[test]
fn console_settings_and_its_password_from_env_or_file_only() -> anyhow::Result<()> {
    let d = console(None, &[], &[])?;
    assert_eq!(d.listen, "127.0.0.1:22111");
    assert_eq!(d.session_ttl, Duration::from_secs(12 * 3600));
    assert_eq!(d.console_user, "admin");
    assert_eq!(d.console_password, None);
    assert!(!d.secure_cookie);

    let file = File::new("console_password = \"from-the-file\"\nsession_ttl = \"1h\"\n");
    let s = console(
        Some(&file),
        &[
            ("ANTARES_CONSOLE_USER", "root"),
            ("ANTARES_LISTEN", "0.0.0.0:8080"),
        ],
        &["--secure-cookie", "--assets", "dist"],
    )?;
    assert_eq!(s.console_password.as_deref(), Some("from-the-file"));
    assert_eq!(s.console_user, "root");
    assert_eq!(s.listen, "0.0.0.0:8080");
    assert_eq!(s.session_ttl, Duration::from_secs(3600));
    assert!(s.secure_cookie);
    assert_eq!(s.assets, Some(PathBuf::from("dist")));
    let s = console(
        Some(&file),
        &[("ANTARES_CONSOLE_PASSWORD", "from-the-env")],
        &[],
    )?;
    assert_eq!(s.console_password.as_deref(), Some("from-the-env"));
    // Not a flag: it would show in the process list.
    let all = ["antares", "console", "--console-password", "x"];
    assert!(Cli::try_parse_from(all).is_err());
    Ok(())
}

#[test]
fn durations() {
    assert_eq!(parse_duration("3s").expect("3s"), Duration::from_secs(3));
    assert!(parse_duration("three").is_err());
    assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
}

/// The configuration shipped with the systemd units is read by every process kind.
#[test]
fn shipped_deploy_config_is_valid() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/antares.toml"),
    )?;
    let file = File::new(&text);
    let s = settings(Some(&file), &[], &["scheduler"])?;
    assert_eq!(s.connect.urls.split(',').count(), 3);
    assert!(s.connect.creds.is_some() && s.connect.tls_ca.is_some());
    let sched = scheduler(Some(&file), &[], &[])?;
    assert_eq!(sched.lease_ttl, Duration::from_secs(10));
    worker(Some(&file), &[], &["--app", "billing"])?;
    Ok(())
}

#[test]
fn scheduler_alarm_settings_and_the_secret_from_env_or_file_only() -> anyhow::Result<()> {
    let d = scheduler(None, &[], &[])?;
    assert_eq!(
        (d.smtp_url.as_deref(), d.smtp_from.as_deref()),
        (None, None)
    );
    assert_eq!(d.alarm_webhook_secret, None);
    let file =
        File::new("alarm_webhook_secret = \"from-the-file\"\nsmtp_from = \"ops@example.com\"\n");
    let s = scheduler(
        Some(&file),
        &[("ANTARES_SMTP_URL", "smtps://me:pa55@mail.example.com:465")],
        &["--smtp-from", "antares@example.com"],
    )?;
    assert_eq!(s.alarm_webhook_secret.as_deref(), Some("from-the-file"));
    assert_eq!(s.smtp_from.as_deref(), Some("antares@example.com"));
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("from-the-file") && !shown.contains("pa55"),
        "{shown}"
    );
    let opts = s.options();
    assert_eq!(opts.alarms.webhook_secret.as_deref(), Some("from-the-file"));
    assert_eq!(
        opts.alarms.smtp_url.as_deref(),
        Some("smtps://me:pa55@mail.example.com:465")
    );
    let s = scheduler(None, &[("ANTARES_ALARM_WEBHOOK_SECRET", "env")], &[])?;
    assert_eq!(s.alarm_webhook_secret.as_deref(), Some("env"));
    // Not a flag: it would show in the process list.
    let all = ["antares", "scheduler", "--alarm-webhook-secret", "x"];
    assert!(Cli::try_parse_from(all).is_err());
    Ok(())
}
