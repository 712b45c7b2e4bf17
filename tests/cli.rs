//! The `antares` binary against a real nats-server (one per test): provisioning, apps,
//! jobs as files, JSON output, cron previews, errors, and settings from the environment
//! and a config file. Nothing here needs a running scheduler.

use std::path::Path;
use std::process::{Command, Output};

use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats};
use antares_schemas::{Timestamp, Topology};
use async_nats::HeaderMap;
use serde_json::Value;

/// Every environment variable the binary reads, cleared so the caller's shell cannot
/// change what a test sees.
const ENV: &[&str] = &[
    "ANTARES_NATS_URL",
    "ANTARES_NAMESPACE",
    "ANTARES_CREDS",
    "ANTARES_USER",
    "ANTARES_PASSWORD",
    "ANTARES_TLS_CA",
    "ANTARES_CONFIG",
    "ANTARES_ID",
    "ANTARES_APP",
    "ANTARES_CONCURRENCY",
    "ANTARES_ALLOW_SCRIPTS",
    "ANTARES_SCRIPT_ENV",
    "ANTARES_LEASE_TTL",
    "ANTARES_LEASE_RENEW",
    "ANTARES_REPLICAS",
    "ANTARES_HISTORY_RETENTION",
    "ANTARES_LOG_RETENTION",
    "ANTARES_DATA",
    "ANTARES_CONSOLE_LISTEN",
    "RUST_LOG",
];

struct Run {
    out: Output,
}

impl Run {
    fn ok(&self) -> bool {
        self.out.status.success()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.out.stdout).map_err(|e| {
            anyhow::anyhow!("stdout is not one JSON document ({e}):\n{}", self.stdout())
        })
    }
    /// Asserts success and returns itself.
    fn expect_ok(self, what: &str) -> Self {
        assert!(
            self.ok(),
            "{what} failed: {}\nstdout:\n{}\nstderr:\n{}",
            self.out.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Asserts failure with a message on stderr and returns it.
    fn expect_err(self, what: &str) -> String {
        assert!(
            !self.ok(),
            "{what} should have failed; stdout:\n{}",
            self.stdout()
        );
        let err = self.stderr();
        assert!(err.contains("error"), "{what}: no error on stderr: {err}");
        err
    }
}

/// Runs the binary in `dir` with a clean environment plus `env`.
fn antares_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_antares"));
    cmd.current_dir(dir).args(args);
    for name in ENV {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the antares binary runs");
    Run { out }
}

/// A nats-server and a scratch folder for one test.
struct Setup {
    server: LocalServer,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            server: LocalServer::start_temp()?,
            dir: tempfile::tempdir()?,
        })
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Runs the binary against this test's server.
    fn antares(&self, args: &[&str]) -> Run {
        let url = self.url();
        let mut all = vec!["--nats-url", url.as_str()];
        all.extend_from_slice(args);
        antares_in(self.dir.path(), &[], &all)
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

const JOBS: &str = r#"
[[job]]
app = "billing"
name = "report"
description = "nightly report"
schedule = { cron = "0 0 2 * * ?", tz = "Asia/Shanghai" }
kind = "script"
command = "echo $ANTARES_SHARD_PARAM"
shard_params = "a;b;c"

[[job]]
app = "billing"
name = "tick"
kind = "plugin"
handler = "sleep"
params = "300ms"
schedule = { every = "10s" }
"#;

fn actions(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    format!(
                        "{}/{} {}",
                        o["app"].as_str().unwrap_or("?"),
                        o["job"].as_str().unwrap_or("?"),
                        o["action"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn apps_and_jobs_as_files_round_trip() -> anyhow::Result<()> {
    let s = Setup::new()?;
    let before = s
        .antares(&["app", "list"])
        .expect_err("app list before provision");
    assert!(before.contains("antares provision"), "{before}");
    let out = s.antares(&["provision"]).expect_ok("provision").stdout();
    assert!(
        out.contains("ATS_TRIGGERS") && out.contains("ats-jobs"),
        "{out}"
    );
    s.antares(&["provision"]).expect_ok("provision again");
    let kept = s
        .antares(&["provision", "--events-retention", "1d"])
        .expect_ok("provision with events")
        .stdout();
    assert!(
        kept.contains("events: kept 1d in stream ATS_EVENTS"),
        "{kept}"
    );
    let bad = s
        .antares(&["provision", "--events-retention", "soon"])
        .expect_err("bad events retention");
    assert!(bad.contains("events") && bad.contains("soon"), "{bad}");
    let gone = s
        .antares(&["provision", "--events-retention", "0s"])
        .expect_ok("provision without events")
        .stdout();
    assert!(gone.contains("deleted"), "{gone}");

    s.antares(&["app", "create", "billing", "--description", "money"])
        .expect_ok("app create");
    let bad = s
        .antares(&["app", "create", "Bad_Name"])
        .expect_err("bad app name");
    assert!(bad.contains("Bad_Name") && bad.contains("a-z"), "{bad}");
    let dup = s
        .antares(&["app", "create", "billing"])
        .expect_err("duplicate app");
    assert!(dup.contains("already exists"), "{dup}");
    let apps = s
        .antares(&["app", "list", "--json"])
        .expect_ok("app list")
        .json()?;
    assert_eq!(apps[0]["name"], "billing");
    assert_eq!(apps[0]["description"], "money");

    let bad = s.write(
        "bad.toml",
        "[[job]]\napp = \"billing\"\nname = \"x\"\nschedule = { cron = \"0 0 25 * * ?\" }\n",
    )?;
    let err = s
        .antares(&["job", "apply", "-f", &bad])
        .expect_err("bad job file");
    assert!(
        err.contains("bad.toml") && err.contains("schedule.cron"),
        "{err}"
    );
    let file = s.write("jobs.toml", JOBS)?;
    let applied = s
        .antares(&["job", "apply", "-f", &file, "--json"])
        .expect_ok("apply")
        .json()?;
    assert_eq!(
        actions(&applied),
        vec!["billing/report created", "billing/tick created"]
    );
    let human = s
        .antares(&["job", "apply", "-f", &file])
        .expect_ok("apply again")
        .stdout();
    assert!(
        human.contains("unchanged") && human.contains("billing/report"),
        "{human}"
    );

    let list = s
        .antares(&["job", "list", "--json"])
        .expect_ok("job list")
        .json()?;
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["report", "tick"]);
    let table = s
        .antares(&["job", "list", "--app", "billing"])
        .expect_ok("job list table")
        .stdout();
    assert!(
        table.starts_with("JOB") && table.contains("billing/tick"),
        "{table}"
    );

    let job = s
        .antares(&["job", "get", "billing/report", "--json"])
        .expect_ok("job get")
        .json()?;
    assert_eq!(job["app"], "billing");
    assert_eq!(job["kind"], "script");
    assert_eq!(job["schedule"]["tz"], "Asia/Shanghai");
    assert_eq!(job["enabled"], true);
    let missing = s
        .antares(&["job", "get", "billing/nope"])
        .expect_err("missing job");
    assert!(missing.contains("billing/nope"), "{missing}");
    let no_slash = s
        .antares(&["job", "get", "billing"])
        .expect_err("not APP/JOB");
    assert!(no_slash.contains("APP/JOB"), "{no_slash}");

    let exported = s.antares(&["job", "export"]).expect_ok("export").stdout();
    let back = s.write("exported.toml", &exported)?;
    let again = s
        .antares(&["job", "apply", "-f", &back, "--json"])
        .expect_ok("apply export")
        .json()?;
    assert_eq!(
        actions(&again),
        vec!["billing/report unchanged", "billing/tick unchanged"]
    );

    s.antares(&["job", "pause", "billing/tick"])
        .expect_ok("pause");
    let job = s
        .antares(&["job", "get", "billing/tick", "--json"])
        .expect_ok("get paused")
        .json()?;
    assert_eq!(job["enabled"], false);
    s.antares(&["job", "resume", "billing/tick"])
        .expect_ok("resume");

    let refused = s
        .antares(&["app", "delete", "billing"])
        .expect_err("app with jobs");
    assert!(refused.contains("delete them first"), "{refused}");

    // A trigger is accepted (durably) even with no scheduler running.
    let t = s
        .antares(&["job", "trigger", "billing/tick", "--params", "1s", "--json"])
        .expect_ok("trigger")
        .json()?;
    let id = t["instance"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 26, "{t}");
    let listed = s
        .antares(&["instance", "list", "--json"])
        .expect_ok("instance list")
        .json()?;
    assert!(listed.is_array(), "{listed}");
    let unknown = s
        .antares(&["instance", "get", &id])
        .expect_err("not made yet");
    assert!(unknown.contains(&id), "{unknown}");
    let cancel = s
        .antares(&["instance", "cancel", "01JD0Z8N6Y3K4B7R2T9QWXYZAB"])
        .expect_err("cancel unknown");
    assert!(cancel.contains("does not exist"), "{cancel}");
    Ok(())
}

/// Runs async NATS work from these synchronous tests.
fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// The last trigger stored for `app/job`: its headers and body.
fn last_trigger(url: &str, app: &str, job: &str) -> anyhow::Result<(HeaderMap, Value)> {
    block_on(async {
        let nats = Nats::connect(&ConnectOptions::url(url), Topology::new("ats")?).await?;
        let stream = nats.stream(&nats.topo.triggers_stream()).await?;
        let msg = stream
            .get_last_raw_message_by_subject(&nats.topo.stored_trigger_subject(app, job))
            .await?;
        let body = if msg.payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&msg.payload)?
        };
        Ok((msg.headers, body))
    })
}

impl Setup {
    /// Provisions, creates app `billing` and applies [`JOBS`].
    fn with_jobs() -> anyhow::Result<Self> {
        let s = Self::new()?;
        s.antares(&["provision"]).expect_ok("provision");
        s.antares(&["app", "create", "billing"])
            .expect_ok("app create");
        let file = s.write("jobs.toml", JOBS)?;
        s.antares(&["job", "apply", "-f", &file]).expect_ok("apply");
        Ok(s)
    }
}

#[test]
fn trigger_overrides_and_keys() -> anyhow::Result<()> {
    let s = Setup::with_jobs()?;

    // Every override reaches the trigger's body.
    s.antares(&[
        "job",
        "trigger",
        "billing/report",
        "--params",
        "p",
        "--shard-params",
        "[\"x\",\"y\"]",
        "--shards",
        "2",
        "--key",
        "order-1",
    ])
    .expect_ok("trigger with overrides");
    let (headers, body) = last_trigger(&s.url(), "billing", "report")?;
    assert_eq!(
        body,
        serde_json::json!({"params": "p", "shard_params": ["x", "y"], "shards": 2, "key": "order-1"})
    );
    assert_eq!(
        headers.get("Antares-Trigger").map(|v| v.as_str()),
        Some("manual")
    );
    let err = s
        .antares(&["job", "trigger", "billing/report", "--key", ""])
        .expect_err("empty key");
    assert!(err.contains("field `key`"), "{err}");
    let err = s
        .antares(&["job", "trigger", "billing/report", "--shards", "two"])
        .expect_err("shards not a number");
    assert!(err.contains("--shards"), "{err}");

    // A key used within 24 h (as the scheduler records it) starts nothing: the first
    // instance's id is printed, and stderr says why.
    let first = "01JD0Z8N6Y3K4B7R2T9QWXYZAB";
    block_on(async {
        let nats = Nats::connect(&ConnectOptions::url(s.url()), Topology::new("ats")?).await?;
        let claims = nats.buckets().await?.claims.clone();
        let key = nats.topo.trigger_key_claim("billing", "report", "order-1");
        claims.create(key, first.into()).await?;
        Ok(())
    })?;
    let run = s
        .antares(&["job", "trigger", "billing/report", "--key", "order-1"])
        .expect_ok("trigger with a used key");
    assert_eq!(run.stdout().trim(), first);
    assert!(
        run.stderr()
            .contains("key `order-1` was already used within 24 h")
            && run.stderr().contains("nothing new was started"),
        "{}",
        run.stderr()
    );
    let json = s
        .antares(&[
            "job",
            "trigger",
            "billing/report",
            "--key",
            "order-1",
            "--json",
        ])
        .expect_ok("trigger with a used key, JSON")
        .json()?;
    assert_eq!(
        json,
        serde_json::json!({"instance": first, "existing": true})
    );
    let json = s
        .antares(&[
            "job",
            "trigger",
            "billing/report",
            "--key",
            "order-2",
            "--json",
        ])
        .expect_ok("trigger with a new key, JSON")
        .json()?;
    assert_eq!(json["existing"], false);
    assert_ne!(json["instance"], first);
    Ok(())
}

#[test]
fn backfill_from_the_command_line() -> anyhow::Result<()> {
    let s = Setup::with_jobs()?;
    // Backfill: `tick` fires every 10 s; four slots from an aligned time an hour ago.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let from = Timestamp((now_ms - 3_600_000) / 10_000 * 10_000);
    let to = Timestamp(from.millis() + 30_000);
    let (from_text, to_text) = (from.to_rfc3339(), to.to_rfc3339());
    let slots = s
        .antares(&[
            "job",
            "backfill",
            "billing/tick",
            "--from",
            &from_text,
            "--to",
            &to_text,
            "--json",
        ])
        .expect_ok("backfill")
        .json()?;
    let items = slots.as_array().map(Vec::as_slice).unwrap_or_default();
    assert_eq!(items.len(), 4, "{slots}");
    assert_eq!(items[0]["slot"], from_text.as_str());
    assert!(items.iter().all(|i| i["action"] == "queued"), "{slots}");
    let (headers, body) = last_trigger(&s.url(), "billing", "tick")?;
    assert_eq!(body, Value::Null);
    assert_eq!(
        headers.get("Antares-Trigger").map(|v| v.as_str()),
        Some("backfill")
    );
    let human = s
        .antares(&[
            "job",
            "backfill",
            "billing/tick",
            "--from",
            &from_text,
            "--to",
            &to_text,
        ])
        .expect_ok("backfill as a table")
        .stdout();
    assert!(human.starts_with("SLOT"), "{human}");
    assert!(
        human.contains("4 slot(s): 4 queued, 0 already had an instance"),
        "{human}"
    );

    let err = s
        .antares(&[
            "job",
            "backfill",
            "billing/tick",
            "--from",
            &to_text,
            "--to",
            &from_text,
        ])
        .expect_err("reversed");
    assert!(err.contains("is after --to"), "{err}");
    let err = s
        .antares(&[
            "job",
            "backfill",
            "billing/tick",
            "--from",
            "yesterday",
            "--to",
            &to_text,
        ])
        .expect_err("not a time");
    assert!(
        err.contains("yesterday") && err.contains("RFC 3339"),
        "{err}"
    );
    let err = s
        .antares(&["job", "backfill", "billing/tick", "--from", &from_text])
        .expect_err("no --to");
    assert!(err.contains("--to"), "{err}");
    let help = s
        .antares(&["job", "backfill", "--help"])
        .expect_ok("help")
        .stdout();
    assert!(
        help.contains("already has an instance") && help.contains("not run again"),
        "{help}"
    );
    Ok(())
}

#[test]
fn cron_preview() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = antares_in(
        dir.path(),
        &[],
        &["cron", "next", "0 0 12 ? * MON#2", "-n", "3", "--json"],
    )
    .expect_ok("cron next");
    let times = run.json()?;
    assert_eq!(times.as_array().map(Vec::len), Some(3), "{times}");
    let run = antares_in(
        dir.path(),
        &[],
        &[
            "cron",
            "next",
            "0 0 12 ? * MON#2",
            "-n",
            "2",
            "--after",
            "2026-01-01T00:00:00Z",
            "--json",
        ],
    )
    .expect_ok("cron next after");
    assert_eq!(
        run.json()?,
        serde_json::json!(["2026-01-12T12:00:00.000Z", "2026-02-09T12:00:00.000Z"])
    );
    let human = antares_in(
        dir.path(),
        &[],
        &["cron", "next", "0 9 * * MON", "--tz", "Europe/Berlin"],
    )
    .expect_ok("cron next in a zone")
    .stdout();
    assert_eq!(human.lines().count(), 5, "{human}");
    assert!(human.contains("CET") || human.contains("CEST"), "{human}");

    let err = antares_in(dir.path(), &[], &["cron", "next", "0 0 25 * * ?"]).expect_err("bad cron");
    assert!(err.contains("25"), "{err}");
    let err = antares_in(dir.path(), &[], &["cron", "next", "* * *"]).expect_err("too few fields");
    assert!(err.contains("field"), "{err}");
    let err = antares_in(
        dir.path(),
        &[],
        &["cron", "next", "* * * * *", "--tz", "Mars/Base"],
    )
    .expect_err("bad tz");
    assert!(err.contains("Mars/Base"), "{err}");
    Ok(())
}

#[test]
fn settings_from_flags_env_and_config_file() -> anyhow::Result<()> {
    let s = Setup::new()?;
    let url = s.url();
    let dir = s.dir.path();

    // Namespace from the environment.
    let env = [
        ("ANTARES_NATS_URL", url.as_str()),
        ("ANTARES_NAMESPACE", "envns"),
    ];
    antares_in(dir, &env, &["provision"]).expect_ok("provision envns");
    antares_in(dir, &env, &["app", "create", "fromenv"]).expect_ok("create in envns");
    let apps = antares_in(dir, &env, &["app", "list", "--json"])
        .expect_ok("list envns")
        .json()?;
    assert_eq!(apps[0]["name"], "fromenv");
    // The default namespace was never provisioned.
    let other = antares_in(dir, &[("ANTARES_NATS_URL", url.as_str())], &["app", "list"])
        .expect_err("default ns");
    assert!(other.contains("antares provision"), "{other}");

    // Everything from a config file.
    let cfg = s.write(
        "antares.toml",
        &format!("nats_url = \"{url}\"\nnamespace = \"envns\"\n"),
    )?;
    let apps = antares_in(dir, &[], &["--config", &cfg, "app", "list", "--json"])
        .expect_ok("config")
        .json()?;
    assert_eq!(apps[0]["name"], "fromenv");
    let apps = antares_in(
        dir,
        &[("ANTARES_CONFIG", cfg.as_str())],
        &["app", "list", "--json"],
    )
    .expect_ok("config from env")
    .json()?;
    assert_eq!(apps[0]["name"], "fromenv");

    // Flag beats environment beats file.
    let bogus = s.write(
        "bogus.toml",
        &format!("nats_url = \"{url}\"\nnamespace = \"nothere\"\n"),
    )?;
    let apps = antares_in(
        dir,
        &[("ANTARES_NAMESPACE", "envns")],
        &["--config", &bogus, "app", "list", "--json"],
    )
    .expect_ok("env over file")
    .json()?;
    assert_eq!(apps[0]["name"], "fromenv");
    let apps = antares_in(
        dir,
        &[("ANTARES_NAMESPACE", "nothere")],
        &[
            "--config",
            &bogus,
            "app",
            "list",
            "--json",
            "--namespace",
            "envns",
        ],
    )
    .expect_ok("flag over env")
    .json()?;
    assert_eq!(apps[0]["name"], "fromenv");
    let apps = antares_in(
        dir,
        &[],
        &[
            "--config",
            &bogus,
            "app",
            "list",
            "--json",
            "--namespace",
            "envns",
        ],
    )
    .expect_ok("flag after the command over file")
    .json()?;
    assert_eq!(apps[0]["name"], "fromenv");
    let err = antares_in(dir, &[], &["--config", &bogus, "app", "list"])
        .expect_err("file namespace used");
    assert!(err.contains("nothere"), "{err}");

    // Unknown keys and missing files are errors that say which.
    let typo = s.write("typo.toml", "nats_ulr = \"x\"\n")?;
    let err = antares_in(dir, &[], &["--config", &typo, "app", "list"]).expect_err("unknown key");
    assert!(err.contains("nats_ulr"), "{err}");
    let err = antares_in(dir, &[], &["--config", "missing.toml", "app", "list"])
        .expect_err("missing file");
    assert!(err.contains("missing.toml"), "{err}");
    Ok(())
}

/// A command's own settings (here `provision`'s retentions, which it prints) and a
/// global one (the NATS URL) through every layer: file < environment < flag.
#[test]
fn command_settings_from_file_env_and_flags() -> anyhow::Result<()> {
    let s = Setup::new()?;
    let url = s.url();
    let dir = s.dir.path();
    let cfg = s.write(
        "antares.toml",
        "nats_url = \"nats://127.0.0.1:1\"\nhistory_retention = \"1d\"\nlog_retention = \"36h\"\n",
    )?;
    let kept = |run: Run| {
        let out = run.expect_ok("provision").stdout();
        let line = out.lines().next().unwrap_or_default().to_string();
        line.split_once(": ")
            .map(|(_, kept)| kept.to_string())
            .unwrap_or(line)
    };
    let env_url = ("ANTARES_NATS_URL", url.as_str());

    // The file's retentions; the environment's URL over the file's.
    let run = antares_in(dir, &[env_url], &["--config", &cfg, "provision"]);
    assert_eq!(kept(run), "history kept 1d, logs kept 36h");
    // The environment over the file.
    let env = [env_url, ("ANTARES_HISTORY_RETENTION", "3d")];
    let run = antares_in(dir, &env, &["--config", &cfg, "provision"]);
    assert_eq!(kept(run), "history kept 3d, logs kept 36h");
    // A flag over the environment (and a global flag over a bad environment URL).
    let env = [
        ("ANTARES_NATS_URL", "nats://127.0.0.1:1"),
        ("ANTARES_HISTORY_RETENTION", "3d"),
    ];
    let args = [
        "--config",
        &cfg,
        "provision",
        "--history-retention",
        "4d",
        "--nats-url",
        &url,
    ];
    assert_eq!(
        kept(antares_in(dir, &env, &args)),
        "history kept 4d, logs kept 36h"
    );
    // Without any of them: the built-in defaults.
    assert_eq!(
        kept(s.antares(&["provision"])),
        "history kept 7d, logs kept 7d"
    );
    // The file's URL is used when nothing beats it.
    let err = antares_in(dir, &[], &["--config", &cfg, "app", "list"]).expect_err("file url");
    assert!(err.contains("nats://127.0.0.1:1"), "{err}");
    Ok(())
}

/// Bad settings are errors that say where the value came from.
#[test]
fn settings_errors_name_the_source_and_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let cfg = dir.join("antares.toml");
    let cfg_text = cfg.display().to_string();
    let cfg = cfg_text.as_str();

    std::fs::write(cfg, "namespace = \"x\"\nlease_tll = \"10s\"\n")?;
    let err = antares_in(dir, &[], &["--config", cfg, "cron", "next", "* * * * * ?"])
        .expect_err("unknown key");
    assert!(err.contains("`lease_tll`") && err.contains(cfg), "{err}");
    assert!(err.contains("lease_ttl"), "lists the keys: {err}");

    std::fs::write(cfg, "history_retention = \"soon\"\n")?;
    let err = antares_in(dir, &[], &["--config", cfg, "provision"]).expect_err("bad file value");
    assert!(
        err.contains(&format!("config file `{cfg}`, key `history_retention`")),
        "{err}"
    );
    assert!(err.contains("`soon` is not a duration"), "{err}");

    let err = antares_in(dir, &[("ANTARES_LOG_RETENTION", "10")], &["provision"])
        .expect_err("bad env value");
    assert!(err.contains("`ANTARES_LOG_RETENTION`"), "{err}");
    assert!(err.contains("`10` is not a duration"), "{err}");

    let err = antares_in(dir, &[], &["provision", "--replicas", "three"]).expect_err("bad flag");
    assert!(err.contains("`--replicas`"), "{err}");
    assert!(err.contains("`three` is not a whole number"), "{err}");

    std::fs::write(cfg, "concurrency = \"many\"\n")?;
    let err = antares_in(dir, &[], &["--config", cfg, "worker", "--app", "a"])
        .expect_err("bad number in the file");
    assert!(
        err.contains("key `concurrency`") && err.contains(cfg),
        "{err}"
    );
    Ok(())
}

/// Paths in the config file are relative to its folder; on the command line or in the
/// environment, to the working directory.
#[test]
fn relative_paths_in_the_config_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    std::fs::create_dir(dir.join("conf"))?;
    std::fs::write(dir.join("conf/antares.toml"), "creds = \"app.creds\"\n")?;
    let list = ["--nats-url", "nats://127.0.0.1:1", "app", "list"];

    let mut args = vec!["--config", "conf/antares.toml"];
    args.extend_from_slice(&list);
    let err = antares_in(dir, &[], &args).expect_err("no creds file");
    let expected = Path::new("conf").join("app.creds").display().to_string();
    assert!(err.contains(&format!("`{expected}`")), "{err}");

    let abs = dir.join("conf/antares.toml").display().to_string();
    let mut args = vec!["--config", abs.as_str()];
    args.extend_from_slice(&list);
    let err = antares_in(dir, &[], &args).expect_err("no creds file");
    let expected = dir.join("conf").join("app.creds").display().to_string();
    assert!(err.contains(&format!("`{expected}`")), "{err}");

    let err = antares_in(dir, &[("ANTARES_CREDS", "env.creds")], &args).expect_err("env creds");
    assert!(err.contains("`env.creds`"), "{err}");
    Ok(())
}

/// `--help` names each setting's variable and default.
#[test]
fn help_names_variables_and_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let help = antares_in(dir.path(), &[], &["worker", "--help"])
        .expect_ok("help")
        .stdout();
    for text in [
        "[env: ANTARES_SCRIPT_ENV]",
        "[env: ANTARES_CONCURRENCY] [default: 32]",
        "[env: ANTARES_NATS_URL] [default: nats://127.0.0.1:4222]",
        "[env: ANTARES_CONFIG]",
    ] {
        assert!(help.contains(text), "{text}: {help}");
    }
}

#[test]
fn unreachable_nats_says_what_to_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let err = antares_in(
        dir.path(),
        &[],
        &["--nats-url", "nats://127.0.0.1:1", "app", "list"],
    )
    .expect_err("no server");
    assert!(err.contains("nats://127.0.0.1:1"), "{err}");
    assert!(err.contains("--nats-url"), "{err}");
    let err = antares_in(dir.path(), &[], &["worker"]).expect_err("worker without app");
    assert!(err.contains("--app"), "{err}");
    Ok(())
}
