//! Work that must stop really stops: a cancel reaches running shards, a timeout kills
//! the script's process group, and the scheduler ends an attempt past its timeout that no
//! worker reports on.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use antares_nats::queue;
use antares_nats::wait::wait_for;
use antares_nats::{codec, now};
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::messages::{
    ReportKind, ShardReport, ShardTask, StopOutcome, StopShards, TriggerRequest,
};
use futures::StreamExt;
use support::{Env, WAIT};

/// A script that writes its pid (it `exec`s into `sleep`, keeping the pid) to the file
/// named by the trigger's params.
const SLEEPER: &str = "command = \"echo $$ > \\\"$ANTARES_PARAMS\\\"; exec sleep 30\"";

async fn pid_in(file: &Path) -> anyhow::Result<u32> {
    wait_for("the script to write its pid", WAIT, || async move {
        std::fs::read_to_string(file)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    })
    .await
    .map_err(anyhow::Error::msg)
}

async fn gone(pid: u32) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let proc_dir = format!("/proc/{pid}");
    let dir = proc_dir.as_str();
    wait_for("the script's process to be gone", WAIT, || async move {
        (!Path::new(dir).exists()).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(t.elapsed())
}

async fn scripts_env(job: &str, extra: &str) -> anyhow::Result<Env> {
    let mut env = Env::start().await?;
    env.apply(
        "ops",
        &format!("app = \"ops\"\nname = \"{job}\"\nkind = \"script\"\n{SLEEPER}\n{extra}\n"),
    )
    .await?;
    env.run_worker(env.worker("ops").allow_scripts(true))
        .await?;
    env.scheduler("s1").await?;
    Ok(env)
}

#[tokio::test]
async fn cancel_kills_a_running_script() -> anyhow::Result<()> {
    let mut env = scripts_env("sleepy", "").await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pid");
    let req = TriggerRequest {
        params: Some(file.display().to_string()),
        ..TriggerRequest::default()
    };
    let id = env.trigger("ops", "sleepy", &req).await?;
    let pid = pid_in(&file).await?;
    let admin = &env.admin;
    wait_for("the shard to show as running", WAIT, || async move {
        let i = admin.get_instance(&id).await.ok()?;
        (i.shards[0].status == ShardStatus::Running).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.admin.cancel_instance(&id).await?;
    let took = gone(pid).await?;
    println!("cancel -> script process gone: {took:?}");
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Cancelled);
    assert_eq!(inst.shards[0].status, ShardStatus::Cancelled);
    // Nothing of it is queued to run again.
    let env_ref = &env;
    wait_for("the shard queue to be empty", WAIT, || async move {
        env_ref.queued_shards().await.ok().filter(|n| *n == 0)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_timed_out_script_is_killed_and_its_instance_times_out() -> anyhow::Result<()> {
    let mut env = scripts_env("slow", "timeout = \"1s\"").await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pid");
    let req = TriggerRequest {
        params: Some(file.display().to_string()),
        ..TriggerRequest::default()
    };
    let id = env.trigger("ops", "slow", &req).await?;
    let pid = pid_in(&file).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::TimedOut);
    let shard = &inst.shards[0];
    assert_eq!(shard.status, ShardStatus::TimedOut);
    assert!(
        shard.error.as_deref().unwrap_or("").contains("timed out"),
        "{shard:?}"
    );
    gone(pid).await?;
    env.stop().await;
    Ok(())
}

/// A worker that takes a shard, says it started, keeps it (progress acks, heartbeats) and
/// never reports its end.
#[tokio::test]
async fn the_scheduler_ends_an_attempt_nobody_reports_past_its_timeout() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"hung\"\nhandler = \"noop\"\ntimeout = \"1s\"\n",
    )
    .await?;
    env.scheduler("s1").await?;
    let topo = env.nats.topo.clone();
    let consumer = env.app_queue("shop", Duration::from_secs(5)).await?;
    let mut stops = env
        .nats
        .client
        .subscribe(topo.app_stop_filter("shop"))
        .await?;
    // Its first beat, before the trigger: pull items wait in the scheduler until a live
    // worker that can run them is known.
    let put_beat = || env.hand_worker_beat("shop", "rogue", (1, 1), Duration::from_secs(3), false);
    put_beat().await?;
    let id = env
        .trigger("shop", "hung", &TriggerRequest::default())
        .await?;
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(WAIT)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let msg = batch
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no shard delivered"))?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let task: ShardTask = codec::decode("task", &msg.payload)?;
    assert_eq!(task.instance, id);
    let started = ShardReport {
        instance: id,
        item: 0,
        worker: "rogue".into(),
        attempt: 1,
        run: task.run,
        at: now(),
        kind: ReportKind::Started,
    };
    env.nats
        .client
        .publish(
            topo.result_subject("shop", "hung", &id, 0),
            codec::encode("r", &started)?,
        )
        .await?;
    let t0 = Instant::now();
    let mut stops_seen = 0;
    let ended = loop {
        // Alive and holding it, never reporting its end.
        put_beat().await?;
        let _ = queue::settle(&msg, queue::Settle::Progress).await;
        let inst = env.admin.get_instance(&id).await?;
        if inst.summary.status.is_final() {
            break inst;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "never ended: {inst:?}"
        );
        tokio::select! {
            m = stops.next() => {
                let m = m.ok_or_else(|| anyhow::anyhow!("stops ended"))?;
                let stop: StopShards = codec::decode("stop", &m.payload)?;
                assert_eq!((stop.instance, stop.item, stop.outcome), (id, Some(0), StopOutcome::TimedOut));
                stops_seen += 1;
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    println!("ended by the scheduler after {:?}", t0.elapsed());
    assert_eq!(ended.summary.status, InstanceStatus::TimedOut);
    // Told to stop, and told again twice (1 s and 4 s later) for a worker that might
    // have missed it.
    while stops_seen < 3 {
        let m = tokio::time::timeout(WAIT, stops.next()).await?;
        let m = m.ok_or_else(|| anyhow::anyhow!("stops ended"))?;
        let stop: StopShards = codec::decode("stop", &m.payload)?;
        assert_eq!(
            (stop.instance, stop.item, stop.run),
            (id, Some(0), Some(task.run)),
            "the worker is told to stop that attempt"
        );
        stops_seen += 1;
    }
    assert!(
        ended.shards[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("stopped by the scheduler")
    );
    // Its queued message is gone: nothing runs it again.
    assert_eq!(env.queued_shards().await?, 0);
    env.stop().await;
    Ok(())
}
