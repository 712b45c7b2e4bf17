//! `antares job versions`, `job rollback` and `audit` against a real nats-server: the
//! table and the JSON of the contract, an old spec as a file `job apply` takes, who made
//! each change, and clear errors for versions that are not there.

use std::process::{Command, Output};

use antares_nats::server::LocalServer;
use serde_json::Value;

/// Variables of the binary cleared for each run, so the caller's shell changes nothing.
const ENV: &[&str] = &[
    "ANTARES_NATS_URL",
    "ANTARES_NAMESPACE",
    "ANTARES_CREDS",
    "ANTARES_USER",
    "ANTARES_PASSWORD",
    "ANTARES_TLS_CA",
    "ANTARES_CONFIG",
    "RUST_LOG",
];

struct Setup {
    server: LocalServer,
    dir: tempfile::TempDir,
}

struct Run(Output);

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn ok(self, what: &str) -> Self {
        assert!(
            self.0.status.success(),
            "{what} failed:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    fn fails(self, what: &str) -> String {
        assert!(
            !self.0.status.success(),
            "{what} should fail:\n{}",
            self.stdout()
        );
        self.stderr()
    }
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.0.stdout)
            .map_err(|e| anyhow::anyhow!("not one JSON document ({e}):\n{}", self.stdout()))
    }
}

impl Setup {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            server: LocalServer::start_temp()?,
            dir: tempfile::tempdir()?,
        })
    }

    /// Runs the binary as OS user `dave`, with extra arguments before the command's.
    fn run_as(&self, global: &[&str], args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_antares"));
        cmd.current_dir(self.dir.path())
            .arg("--nats-url")
            .arg(self.server.url())
            .args(global)
            .args(args)
            .env("USER", "dave");
        for name in ENV {
            cmd.env_remove(name);
        }
        Run(cmd.output().expect("the antares binary runs"))
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_as(&[], args)
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

fn job(params: &str) -> String {
    format!(
        "app = \"billing\"\nname = \"report\"\nhandler = \"noop\"\nparams = \"{params}\"\nschedule = {{ every = \"1h\" }}\n"
    )
}

/// The data rows of a table (the header dropped), split on runs of spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn versions_rollback_and_audit_from_the_command_line() -> anyhow::Result<()> {
    let s = Setup::new()?;
    s.run(&["provision"]).ok("provision");
    s.run(&["app", "create", "billing"]).ok("app create");
    let v1 = s.write("v1.toml", &job("a"))?;
    let v2 = s.write("v2.toml", &job("b"))?;
    s.run(&["job", "apply", "-f", &v1]).ok("apply v1");
    s.run(&["job", "apply", "-f", &v2]).ok("apply v2");
    s.run(&["job", "pause", "billing/report"]).ok("pause");

    // The table: newest first, who, what changed.
    let out = s
        .run(&["job", "versions", "billing/report"])
        .ok("versions")
        .stdout();
    assert!(out.starts_with("VERSION"), "{out}");
    let table = rows(&out);
    let numbers: Vec<&str> = table.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(numbers, ["3", "2", "1"], "{out}");
    for row in &table {
        assert!(
            row[2].starts_with("dave@") && row[2].ends_with("(cli)"),
            "{out}"
        );
    }
    assert_eq!(table[0][3..], ["pause", "enabled"], "{out}");
    assert_eq!(table[1][3..], ["apply", "params"], "{out}");
    assert_eq!(table[2][3..], ["apply", "(created)"], "{out}");

    // JSON: a top-level array of versions.
    let list = s
        .run(&["job", "versions", "billing/report", "--json"])
        .ok("versions --json")
        .json()?;
    let items = list
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("not an array: {list}"))?;
    assert_eq!(items.len(), 3);
    for (item, n) in items.iter().zip([3, 2, 1]) {
        assert_eq!(item["version"], n);
        assert!(
            item["at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "{item}"
        );
        assert_eq!(item["actor"]["name"], "dave");
        assert_eq!(item["actor"]["via"], "cli");
        assert!(item["actor"]["host"].is_string());
        assert!(item.get("from_version").is_none());
        assert_eq!(item["spec"]["name"], "report");
    }
    assert_eq!(items[0]["action"], "pause");
    assert_eq!(items[0]["spec"]["enabled"], false);

    // One version's spec is a file `job apply` takes.
    let old = s
        .run(&["job", "versions", "billing/report", "--version", "1"])
        .ok("--version 1")
        .stdout();
    assert!(
        old.starts_with("# billing/report, version 1: apply by dave@"),
        "{old}"
    );
    assert!(old.contains("params = \"a\""), "{old}");
    let file = s.write("old.toml", &old)?;
    let applied = s
        .run(&["job", "apply", "-f", &file, "--json"])
        .ok("apply the old version")
        .json()?;
    assert_eq!(applied[0]["action"], "updated");
    let one = s
        .run(&[
            "job",
            "versions",
            "billing/report",
            "--version",
            "1",
            "--json",
        ])
        .ok("--version 1 --json")
        .json()?;
    assert_eq!(one["version"], 1);
    assert_eq!(one["spec"]["params"], "a");

    // A rollback by a NATS user is recorded as that user's.
    let rolled = s
        .run_as(
            &["--user", "carol", "--password", "secret"],
            &[
                "job",
                "rollback",
                "billing/report",
                "--version",
                "2",
                "--json",
            ],
        )
        .ok("rollback")
        .json()?;
    assert_eq!(rolled["version"], 5);
    assert_eq!(rolled["action"], "rollback");
    assert_eq!(rolled["from_version"], 2);
    assert_eq!(rolled["actor"]["name"], "carol");
    let now = s
        .run(&["job", "get", "billing/report", "--json"])
        .ok("get")
        .json()?;
    assert_eq!(now["params"], "b");
    assert_eq!(now["enabled"], true);
    let text = s
        .run(&["job", "rollback", "billing/report", "--version", "1"])
        .ok("rollback as text")
        .stdout();
    assert!(text.contains("it is now version 6"), "{text}");

    // Versions that are not there, and a deletion, say so.
    let err = s
        .run(&["job", "versions", "billing/report", "--version", "99"])
        .fails("no version 99");
    assert!(
        err.contains("no version 99") && err.contains("versions 1 to 6 are kept"),
        "{err}"
    );
    let err = s
        .run(&["job", "rollback", "billing/report", "--version", "99"])
        .fails("rollback to 99");
    assert!(err.contains("no version 99"), "{err}");
    let err = s
        .run(&["job", "rollback", "billing/report", "--version", "x"])
        .fails("not a number");
    assert!(err.contains("--version"), "{err}");
    let err = s
        .run(&["job", "versions", "billing/nope"])
        .fails("no versions");
    assert!(
        err.contains("billing/nope") && err.contains("no versions"),
        "{err}"
    );
    s.run(&["job", "delete", "billing/report"]).ok("delete");
    let err = s
        .run(&["job", "versions", "billing/report", "--version", "7"])
        .fails("a deletion has no spec");
    assert!(err.contains("deletion"), "{err}");
    let err = s
        .run(&["job", "rollback", "billing/report", "--version", "7"])
        .fails("a deletion cannot be put back");
    assert!(err.contains("deletion"), "{err}");
    let out = s
        .run(&["job", "versions", "billing/report"])
        .ok("versions")
        .stdout();
    assert_eq!(rows(&out)[0][3..], ["delete", "(deleted)"], "{out}");

    // The audit log, newest first, filtered by app, paged.
    let log = s.run(&["audit", "--json"]).ok("audit --json").json()?;
    let entries = log
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("not an array: {log}"))?;
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "job.delete",
            "job.rollback",
            "job.rollback",
            "job.apply",
            "job.pause",
            "job.apply",
            "job.apply",
            "app.create"
        ]
    );
    assert_eq!(entries[2]["actor"]["name"], "carol");
    assert_eq!(entries[0]["target"], "billing/report");
    let page = s
        .run(&["audit", "--app", "billing", "--limit", "2"])
        .ok("audit table")
        .stdout();
    assert!(page.starts_with("ID"), "{page}");
    assert!(
        page.contains("job.delete")
            && page.contains("older entries: antares audit --app billing --limit 2 --before"),
        "{page}"
    );
    let err = s.run(&["audit", "--limit", "0"]).fails("limit 0");
    assert!(err.contains("from 1 to 1000"), "{err}");
    Ok(())
}
