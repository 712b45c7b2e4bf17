//! How `antares` processes log: `--log-format json` writes one JSON object per line
//! (collectors parse every line), and text written to a file or pipe has no colour codes.

mod support;

use antares_nats::wait::wait_for;
use support::{Env, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An `antares scheduler` logging at `info` with these extra global flags, and its
/// stderr read line by line.
fn scheduler(
    env: &Env,
    flags: &[&str],
) -> anyhow::Result<(
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
)> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .arg("--nats-url")
        .arg(env.server.url())
        .args(flags)
        .args(["scheduler", "--id", "logger", "--lease-ttl", "2s"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("stderr not captured"))?;
    Ok((child, BufReader::new(stderr).lines()))
}

/// Starts `antares scheduler` with these extra global flags and returns the first
/// lines it logs, up to and including the one saying it leads.
async fn scheduler_lines(env: &Env, flags: &[&str]) -> anyhow::Result<Vec<String>> {
    let (mut child, mut reader) = scheduler(env, flags)?;
    let mut lines = Vec::new();
    let read = async {
        while let Some(line) = reader.next_line().await? {
            let leads = line.contains("leading");
            lines.push(line);
            if leads {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the scheduler ended: {lines:?}")
    };
    tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| anyhow::anyhow!("no line saying it leads within {WAIT:?}"))??;
    let _ = child.start_kill();
    Ok(lines)
}

#[tokio::test]
async fn json_log_lines_parse_and_text_has_no_colour() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let lines = scheduler_lines(&env, &["--log-format", "json"]).await?;
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not a JSON line ({e}): {line}"))?;
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
    }

    // The next scheduler waits for the lease to lapse, then logs the same way in text.
    let env_ref = &env;
    wait_for(
        "the first scheduler's lease to lapse",
        WAIT,
        || async move { env_ref.lease_holder().await.is_none().then_some(()) },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let lines = scheduler_lines(&env, &[]).await?;
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "a colour code in a piped line: {line:?}"
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "{line}"
        );
    }
    Ok(())
}

/// A line about an instance names it in the field `instance`.
#[tokio::test]
async fn lines_about_an_instance_name_it() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.apply(
        "lonely",
        "[[job]]\napp = \"lonely\"\nname = \"nobody\"\nhandler = \"noop\"\n",
    )
    .await?;
    let (_child, mut reader) = scheduler(&env, &["--log-format", "json"])?;
    // No worker of the app is alive, so the scheduler says so about the instance.
    let id = env
        .trigger("lonely", "nobody", &Default::default())
        .await?
        .to_string();
    let found = async {
        while let Some(line) = reader.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            if v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no live worker"))
            {
                return anyhow::Ok(v);
            }
        }
        anyhow::bail!("the scheduler ended")
    };
    let line = tokio::time::timeout(WAIT, found)
        .await
        .map_err(|_| anyhow::anyhow!("no line about the waiting instance within {WAIT:?}"))??;
    assert_eq!(
        line["fields"]["instance"].as_str(),
        Some(id.as_str()),
        "{line}"
    );
    Ok(())
}
