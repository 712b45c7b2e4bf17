//! The CLI against a running scheduler and worker: `--json` documents parse and have the
//! contract's shape, `job trigger --wait` exits by the outcome, logs are readable.

mod support;

use std::process::Output;

use serde_json::Value;
use support::Env;

async fn antares(env: &Env, args: &[&str]) -> anyhow::Result<Output> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .arg("--nats-url")
        .arg(env.server.url())
        .args(args)
        .output()
        .await?;
    Ok(out)
}

fn json(out: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn json_outputs_of_a_live_system_parse_and_follow_the_contract() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "ops",
        "[[job]]\napp = \"ops\"\nname = \"greet\"\nkind = \"script\"\nshard_params = \"x;y\"\ncommand = \"echo hello $ANTARES_SHARD_PARAM\"\n\n[[job]]\napp = \"ops\"\nname = \"boom\"\nhandler = \"fail\"\nparams = \"no luck\"\n",
    )
    .await?;
    env.run_worker(env.worker("ops").allow_scripts(true))
        .await?;
    env.scheduler("s1").await?;

    // --wait exits 0 on success and prints the ended instance with --json.
    let out = antares(&env, &["job", "trigger", "ops/greet", "--wait", "--json"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = json(&out)?;
    assert_eq!(ended["status"], "success");
    let id = ended["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 26);

    // ... and non-zero on anything else.
    let out = antares(&env, &["job", "trigger", "ops/boom", "--wait"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));

    // A listing is a top-level array of summaries: no shards, shard_counts instead.
    let out = antares(&env, &["instance", "list", "--app", "ops", "--json"]).await?;
    let list = json(&out)?;
    let items = list
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("not an array: {list}"))?;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["job"], "boom", "newest first");
    assert_eq!(items[1]["id"], id.as_str());
    for item in items {
        assert!(item.get("shards").is_none());
        assert!(item["shard_counts"].is_object());
        assert!(
            item["scheduled_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
        );
    }
    let out = antares(&env, &["instance", "list", "--status", "failed", "--json"]).await?;
    assert_eq!(json(&out)?.as_array().map(Vec::len), Some(1));

    // `get` is the whole instance, shards included.
    let out = antares(&env, &["instance", "get", &id, "--json"]).await?;
    let inst = json(&out)?;
    assert_eq!(inst["trigger"], "manual");
    let shards = inst["shards"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no shards: {inst}"))?;
    assert_eq!(shards.len(), 2);
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard["item"], i);
        assert_eq!(shard["status"], "success");
        assert_eq!(shard["attempts"], 1);
        assert!(shard["worker"].is_string());
        assert!(shard["error"].is_null());
    }

    // Logs, all shards and one.
    let out = antares(&env, &["instance", "logs", &id]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hello x") && text.contains("hello y"),
        "{text}"
    );
    let out = antares(&env, &["instance", "logs", &id, "--shard", "1"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hello y") && !text.contains("hello x"),
        "{text}"
    );

    // The cluster: one leading scheduler, the worker with its capacity.
    let out = antares(&env, &["cluster", "--json"]).await?;
    let cluster = json(&out)?;
    let schedulers = cluster["schedulers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(schedulers.len(), 1);
    assert_eq!(schedulers[0]["id"], "s1");
    assert_eq!(schedulers[0]["leader"], true);
    let workers = cluster["workers"].as_array().cloned().unwrap_or_default();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["app"], "ops");
    assert!(workers[0]["capacity"].as_u64().is_some_and(|c| c > 0));
    assert!(workers[0]["last_seen"].is_string());

    // Unknown ids are a clear error, not a crash.
    let out = antares(&env, &["instance", "get", "01JD0Z8N6Y3K4B7R2T9QWXYZAB"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("01JD0Z8N6Y3K4B7R2T9QWXYZAB"));
    env.stop().await;
    Ok(())
}
