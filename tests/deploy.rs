//! The deployment files in `deploy/`: the systemd units pass `systemd-analyze verify`
//! and their command lines parse with this binary; the compose file is YAML with the
//! services a 3-node deployment needs, each Antares command line parses, and the NATS
//! nodes form one cluster routing to each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_antares");
const INSTALLED: &str = "/usr/local/bin/antares";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Runs this binary with `args` and `--help`: every argument before it must parse.
fn parses(args: &[String]) -> anyhow::Result<()> {
    let out = Command::new(BIN).args(args).arg("--help").output()?;
    anyhow::ensure!(
        out.status.success(),
        "`antares {}` does not parse: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn systemd_units_verify() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut units = Vec::new();
    for entry in std::fs::read_dir(deploy().join("systemd"))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".service") {
            continue;
        }
        // A template is verified as one of its instances.
        let name = name.replace("@.service", "@demo.service");
        let text = std::fs::read_to_string(&path)?;
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .ok_or_else(|| anyhow::anyhow!("{name}: no ExecStart"))?;
        let args: Vec<String> = exec
            .split_whitespace()
            .skip(1)
            .map(|a| a.replace("%i", "demo"))
            .collect();
        parses(&args).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        // Verified with this binary in place of the installed one.
        std::fs::write(dir.path().join(&name), text.replace(INSTALLED, BIN))?;
        units.push(dir.path().join(&name));
    }
    assert_eq!(
        units.len(),
        3,
        "scheduler, worker and console units: {units:?}"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "systemd-analyze (package systemd, installed by scripts/install-tools): {e}"
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and other mistakes are warnings on stderr with a success status.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            units.iter().any(|u| l.contains(&*u.to_string_lossy())) || l.contains(".service")
        })
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(serde::Deserialize)]
struct Service {
    image: String,
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

#[test]
fn compose_file_describes_a_cluster() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(deploy().join("compose/compose.yaml"))?;
    // Anchors and merge keys resolved, as compose does.
    let mut value: serde_norway::Value = serde_norway::from_str(&text)?;
    value.apply_merge()?;
    let compose: Compose = serde_norway::from_value(value)?;
    let names: Vec<&str> = compose.services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "console",
            "nats1",
            "nats2",
            "nats3",
            "provision",
            "scheduler-a",
            "scheduler-b",
            "worker"
        ]
    );
    let mut routes = Vec::new();
    for (name, service) in &compose.services {
        if name.starts_with("nats") {
            let flag = |f: &str| {
                service
                    .command
                    .iter()
                    .position(|a| a == f)
                    .and_then(|i| service.command.get(i + 1))
                    .cloned()
            };
            assert_eq!(flag("--cluster_name").as_deref(), Some("ats"), "{name}");
            assert!(
                service.command.iter().any(|a| a == "--js"),
                "{name}: JetStream"
            );
            routes.push(flag("--routes").unwrap_or_default());
            continue;
        }
        assert_eq!(service.image, "antares", "{name}");
        let urls = service
            .environment
            .get("ANTARES_NATS_URL")
            .ok_or_else(|| anyhow::anyhow!("{name}: no ANTARES_NATS_URL"))?;
        assert_eq!(urls.split(',').count(), 3, "{name}: every node");
        parses(&service.command).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    assert_eq!(routes.len(), 3);
    for r in &routes {
        assert_eq!(r, &routes[0], "every node routes to the same three");
        for n in ["nats1", "nats2", "nats3"] {
            assert!(r.contains(&format!("nats://{n}:6222")), "{r}");
        }
    }
    let provision = &compose.services["provision"].command;
    assert_eq!(
        provision,
        &["provision", "--replicas", "3", "--partitions", "4"]
    );
    for s in ["scheduler-a", "scheduler-b"] {
        let c = &compose.services[s].command;
        assert!(
            c.windows(2).any(|w| w == ["--lease-ttl", "10s"]),
            "{s}: {c:?}"
        );
    }
    Ok(())
}
