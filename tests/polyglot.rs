//! Workers in any language: the Python example worker (examples/python-worker, written
//! from docs/worker-protocol.md alone) serves an app beside a Rust worker, and the
//! scheduler cannot tell them apart.
//!
//! It needs `python3` and the packages `scripts/install-tools` puts in `.tools/python`;
//! without them the tests fail saying so.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::messages::{LogLine, TriggerRequest};
use antares_worker::{Job, JobContext, JobResult};
use futures::StreamExt;
use support::{Env, WAIT};
use tokio::process::{Child, Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python_path() -> PathBuf {
    root().join(".tools").join("python")
}

/// Fails, saying what to run, when `python3` or the worker's packages are missing.
async fn python_ready() -> anyhow::Result<()> {
    let checked = Command::new("python3")
        .args(["-c", "import nats.js, msgpack"])
        .env("PYTHONPATH", python_path())
        .current_dir(root().join("examples/python-worker"))
        .output()
        .await;
    match checked {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => anyhow::bail!(
            "the Python worker's packages (nats-py, msgpack) are not in {}: run scripts/install-tools ({})",
            python_path().display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => anyhow::bail!(
            "python3 cannot be run ({e}): install Python 3, then run scripts/install-tools"
        ),
    }
}

/// The Python example worker as a child process (killed when dropped).
async fn python_worker(env: &Env, app: &str, id: &str, concurrency: u32) -> anyhow::Result<Child> {
    python_ready().await?;
    let script: &Path = &root().join("examples/python-worker/worker.py");
    Ok(Command::new("python3")
        .arg(script)
        .args(["--app", app, "--id", id, "--nats-url", &env.server.url()])
        .args(["--concurrency", &concurrency.to_string()])
        .env("PYTHONPATH", python_path())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

/// Stops the Python worker with SIGTERM and waits for it to exit; killed if it hangs.
async fn stop(mut child: Child) -> anyhow::Result<()> {
    support::signal(&child, "TERM").await?;
    match tokio::time::timeout(WAIT, child.wait()).await {
        Ok(status) => {
            let status = status?;
            anyhow::ensure!(status.success(), "the Python worker exited with {status}");
            Ok(())
        }
        Err(_) => {
            child.kill().await?;
            anyhow::bail!("the Python worker did not exit within {WAIT:?} of SIGTERM")
        }
    }
}

/// The Rust side of `py-echo`: records the items it ran and pauses `params` seconds, like
/// the Python handler, so that both workers get a share.
#[derive(Clone, Default)]
struct Echo {
    ran: Arc<Mutex<Vec<(InstanceId, u32)>>>,
}

impl Job for Echo {
    fn name(&self) -> &str {
        "py-echo"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        if let Ok(mut ran) = self.ran.lock() {
            ran.push((ctx.instance_id(), ctx.shard_item()));
        }
        let pause = ctx.params().parse::<f64>().unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        JobResult::Success
    }
}

async fn logs(env: &Env, id: &InstanceId) -> anyhow::Result<Vec<LogLine>> {
    let lines = env.admin.logs(id, None, false).await?;
    Ok(lines.filter_map(|l| async move { l.ok() }).collect().await)
}

#[tokio::test]
async fn a_python_and_a_rust_worker_share_one_instance() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"echo\"\nhandler = \"py-echo\"\nshards = 20\nparams = \"0.2\"\n",
    )
    .await?;
    let echo = Echo::default();
    let rust = env
        .run_worker(env.worker("shop").concurrency(2).register(echo.clone()))
        .await?;
    let python = python_worker(&env, "shop", "py1", 2).await?;
    env.workers_alive("shop", &["py1", &rust]).await?;
    let beat = env.admin.cluster().await?;
    let py = beat.workers.iter().find(|w| w.id == "py1");
    assert!(
        py.is_some_and(|w| w.plugins.contains(&"py-echo".to_string()) && !w.http),
        "{py:?}"
    );
    env.scheduler("s1").await?;

    let id = env
        .trigger("shop", "echo", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success, "{inst:?}");
    let mut by_worker: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for s in &inst.shards {
        assert_eq!((s.status, s.attempts), (ShardStatus::Success, 1), "{s:?}");
        by_worker
            .entry(s.worker.clone().unwrap_or_default())
            .or_default()
            .push(s.item);
    }
    assert_eq!(
        by_worker.keys().cloned().collect::<Vec<_>>(),
        {
            let mut both = vec!["py1".to_string(), rust.clone()];
            both.sort();
            both
        },
        "both workers ran shards: {by_worker:?}"
    );

    // Every item ran exactly once, on the worker its record names.
    let python_ran: Vec<u32> = logs(&env, &id)
        .await?
        .iter()
        .filter(|l| l.worker == "py1" && l.line.starts_with("py-echo: item "))
        .map(|l| l.item)
        .collect();
    let rust_ran: Vec<u32> = echo
        .ran
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, item)| *item)
        .collect();
    let mut all: Vec<u32> = python_ran.iter().chain(&rust_ran).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..20).collect::<Vec<_>>(),
        "python {python_ran:?}, rust {rust_ran:?}"
    );
    let mut from_records = by_worker.get("py1").cloned().unwrap_or_default();
    let mut python_sorted = python_ran.clone();
    from_records.sort_unstable();
    python_sorted.sort_unstable();
    assert_eq!(python_sorted, from_records);

    // A clean stop removes its heartbeat at once.
    stop(python).await?;
    let admin = &env.admin;
    wait_for("the Python worker's heartbeat to go", WAIT, || async move {
        let view = admin.cluster().await.ok()?;
        (!view.workers.iter().any(|w| w.id == "py1")).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_python_worker_answers_later_times_out_and_hears_a_cancel() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        r#"
[[job]]
app = "shop"
name = "later"
handler = "py-later-once"

[[job]]
app = "shop"
name = "slow"
handler = "py-echo"
params = "30"
timeout = "1s"

[[job]]
app = "shop"
name = "long"
handler = "py-echo"
params = "30"
"#,
    )
    .await?;
    let python = python_worker(&env, "shop", "py1", 4).await?;
    env.workers_alive("shop", &["py1"]).await?;
    env.scheduler("s1").await?;

    let later = env
        .trigger("shop", "later", &TriggerRequest::default())
        .await?;
    let slow = env
        .trigger("shop", "slow", &TriggerRequest::default())
        .await?;
    let long = env
        .trigger("shop", "long", &TriggerRequest::default())
        .await?;

    let admin = &env.admin;
    wait_for("the long shard to run", WAIT, || async move {
        let i = admin.get_instance(&long).await.ok()?;
        (i.shards[0].status == ShardStatus::Running).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.admin.cancel_instance(&long).await?;

    let inst = env.finished(&later).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success, "{inst:?}");
    assert_eq!(inst.shards[0].attempts, 2, "later, then done");
    let lines: Vec<String> = logs(&env, &later)
        .await?
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert!(
        lines.contains(&"py-later-once: done on attempt 2".to_string()),
        "{lines:?}"
    );

    let inst = env.finished(&slow).await?;
    assert_eq!(inst.summary.status, InstanceStatus::TimedOut, "{inst:?}");
    assert!(
        inst.shards[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out after 1s")),
        "{inst:?}"
    );

    let inst = env.finished(&long).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Cancelled, "{inst:?}");
    assert_eq!(inst.shards[0].status, ShardStatus::Cancelled);

    stop(python).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn items_sent_to_the_python_worker_by_name_run_there() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        r#"
[[job]]
app = "shop"
name = "pinned"
handler = "py-echo"
shards = 4
workers = ["py1"]

[[job]]
app = "shop"
name = "failover"
handler = "py-echo"
shards = 4
routing = "failover"
"#,
    )
    .await?;
    // Both run `py-echo`; `py1` sorts first, so `failover` picks it once it answers a ping.
    let echo = Echo::default();
    env.run_worker(env.worker("shop").id("zz-rust").register(echo.clone()))
        .await?;
    let python = python_worker(&env, "shop", "py1", 2).await?;
    env.workers_alive("shop", &["py1", "zz-rust"]).await?;
    env.scheduler("s1").await?;

    for job in ["pinned", "failover"] {
        let id = env.trigger("shop", job, &TriggerRequest::default()).await?;
        let inst = env.finished(&id).await?;
        assert_eq!(inst.summary.status, InstanceStatus::Success, "{inst:?}");
        for s in &inst.shards {
            assert_eq!(s.worker.as_deref(), Some("py1"), "{job}: {s:?}");
            assert_eq!(s.attempts, 1, "{job}: {s:?}");
        }
    }
    let rust_ran = echo.ran.lock().map(|r| r.len()).unwrap_or(usize::MAX);
    assert_eq!(rust_ran, 0, "the Rust worker ran none of them");

    stop(python).await?;
    env.stop().await;
    Ok(())
}

/// The Python worker says it holds a task until its `not_before`, so an app it serves
/// gets its scheduled fires ahead of their slot; it holds each until the slot.
#[tokio::test]
async fn the_python_worker_holds_fires_made_ahead_until_their_slot() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "clock",
        "app = \"clock\"\nname = \"tick\"\nhandler = \"py-echo\"\nschedule = { every = \"1s\" }\n",
    )
    .await?;
    let python = python_worker(&env, "clock", "py1", 2).await?;
    env.workers_alive("clock", &["py1"]).await?;
    let view = env.admin.cluster().await?;
    let beat = view
        .workers
        .iter()
        .find(|w| w.app == "clock" && w.id == "py1")
        .ok_or_else(|| anyhow::anyhow!("no heartbeat of py1: {view:?}"))?;
    assert!(
        beat.holds,
        "the Python worker says it holds tasks: {beat:?}"
    );
    env.scheduler("s1").await?;

    // Its items went out up to 100 ms before their slots: each began at or after it.
    let env_ref = &env;
    let done = wait_for("three ticks to succeed", WAIT, || async move {
        let list = env_ref.all_instances("clock", "tick").await.ok()?;
        let done: Vec<InstanceId> = list
            .iter()
            .filter(|s| s.status == InstanceStatus::Success)
            .map(|s| s.id)
            .collect();
        (done.len() >= 3).then_some(done)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    for id in done {
        let inst = env.admin.get_instance(&id).await?;
        let shard = inst
            .shards
            .first()
            .ok_or_else(|| anyhow::anyhow!("no shard: {inst:?}"))?;
        assert_eq!(shard.worker.as_deref(), Some("py1"), "{inst:?}");
        assert_eq!(shard.attempts, 1, "{inst:?}");
        let began = shard.started_at;
        assert!(
            began.is_some_and(|b| b >= inst.summary.scheduled_at),
            "the Python worker began {id} at {began:?}, before its slot {}",
            inst.summary.scheduled_at
        );
    }

    stop(python).await?;
    env.stop().await;
    Ok(())
}

/// A task the Python worker holds for its slot, stopped meanwhile, ends as the stop says
/// without running, and its log says so.
#[tokio::test]
async fn the_python_worker_drops_a_held_task_it_is_told_to_stop() -> anyhow::Result<()> {
    use antares_nats::{codec, now};
    use antares_schemas::Timestamp;
    use antares_schemas::messages::{
        Execution, ReportKind, ShardOutcome, ShardReport, ShardTask, StopOutcome, StopShards,
    };

    let mut env = Env::start().await?;
    let python = python_worker(&env, "clock", "py1", 2).await?;
    env.workers_alive("clock", &["py1"]).await?;

    let slot = Timestamp(now().0 + 8_000);
    let task = ShardTask {
        instance: InstanceId::for_manual(slot, rand::random()),
        app: "clock".into(),
        job: "tick".into(),
        item: 0,
        total: 1,
        param: String::new(),
        params: String::new(),
        exec: Execution::Plugin {
            handler: "py-echo".into(),
        },
        timeout_ms: 0,
        scheduled_at: slot,
        run: 1,
        attempt_base: 0,
        urgent: false,
        not_before: Some(slot),
    };
    let topo = &env.nats.topo;
    let (app, job, id) = (&task.app, &task.job, &task.instance);
    let mut reports = env
        .nats
        .client
        .subscribe(topo.result_subject(app, job, id, 0))
        .await?;
    let mut lines = env
        .nats
        .client
        .subscribe(topo.log_subject(app, job, id, 0))
        .await?;
    env.nats.client.flush().await?;
    env.nats
        .js
        .publish(
            topo.shard_subject(app, job, id, 0),
            codec::encode("shard task", &task)?,
        )
        .await?
        .await?;

    // Stops are core NATS and reach only a task the worker has taken: said until heard.
    let told = StopShards {
        instance: task.instance,
        item: None,
        run: None,
        reason: "cancelled by alice".into(),
        outcome: StopOutcome::Cancelled,
    };
    let (subject, body) = (
        topo.stop_subject(app, job, id),
        codec::encode("stop", &told)?,
    );
    let client = env.nats.client.clone();
    let saying = tokio::spawn(async move {
        loop {
            let _ = client.publish(subject.clone(), body.clone()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let report = tokio::time::timeout(WAIT, reports.next()).await;
    saying.abort();
    let report = report
        .map_err(|_| anyhow::anyhow!("no report within {WAIT:?}"))?
        .ok_or_else(|| anyhow::anyhow!("the report subscription ended"))?;
    let report: ShardReport = codec::decode("shard report", &report.payload)?;
    let ReportKind::Finished { outcome, .. } = &report.kind else {
        anyhow::bail!("the held task began (a started report came first): {report:?}");
    };
    assert_eq!(*outcome, ShardOutcome::Cancelled, "{report:?}");
    assert!(report.at < slot, "it waited for its slot: {report:?}");
    let line = tokio::time::timeout(WAIT, lines.next())
        .await
        .map_err(|_| anyhow::anyhow!("no line in the shard's log"))?
        .ok_or_else(|| anyhow::anyhow!("the log subscription ended"))?;
    let line: LogLine = codec::decode("log line", &line.payload)?;
    assert!(
        line.line.contains("cancelled by alice before it began"),
        "{line:?}"
    );

    stop(python).await?;
    env.stop().await;
    Ok(())
}
