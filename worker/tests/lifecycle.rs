//! A worker's life against a real nats-server: its heartbeat, and shutdown handing
//! running shards back to the queue.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use antares_nats::kv;
use antares_nats::server::{LocalServer, ServerOptions};
use antares_nats::wait::wait_for;
use antares_schemas::cluster::WorkerInfo;
use antares_schemas::messages::{ReportKind, ShardOutcome};
use antares_worker::{Job, JobContext, JobResult};
use anyhow::anyhow;
use common::{Bench, WAIT, plugin, spawn, task};
use tokio::sync::Notify;

#[tokio::test]
async fn heartbeat_registers_the_worker_until_it_stops() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .concurrency(7)
            .with_builtins()
            .heartbeat(Duration::from_millis(200)),
    )
    .await?;
    let store = bench.nats.bucket(&bench.nats.topo.workers_bucket()).await?;
    let key = bench.nats.topo.worker_key("billing", "w1");
    let first = wait_for("the first heartbeat", WAIT, || {
        let store = store.clone();
        let key = key.clone();
        async move {
            kv::get::<WorkerInfo>(&store, &key, "worker info")
                .await
                .ok()
                .flatten()
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let info = &first.value;
    assert_eq!((info.id.as_str(), info.app.as_str()), ("w1", "billing"));
    assert_eq!(
        (info.capacity, info.running, info.allow_scripts),
        (7, 0, false)
    );
    assert_eq!(info.plugins, ["fail", "noop", "sleep"]);
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    // It keeps beating.
    wait_for("a later heartbeat", WAIT, || {
        let store = store.clone();
        let key = key.clone();
        async move {
            let now = kv::get::<WorkerInfo>(&store, &key, "worker info")
                .await
                .ok()
                .flatten()?;
            (now.revision > first.revision).then_some(())
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;

    worker.stop().await?;
    assert!(
        kv::get::<WorkerInfo>(&store, &key, "worker info")
            .await?
            .is_none(),
        "a stopped worker's heartbeat is removed"
    );
    Ok(())
}

/// Runs until cancelled, announcing that it started; on `finisher` workers it succeeds
/// at once.
#[derive(Clone)]
struct Hold {
    started: Arc<Notify>,
    finisher: bool,
}

impl Job for Hold {
    fn name(&self) -> &str {
        "hold"
    }
    async fn execute(&self, ctx: JobContext) -> JobResult {
        if self.finisher {
            return JobResult::Success;
        }
        self.started.notify_one();
        ctx.cancelled().await;
        JobResult::Success
    }
}

#[tokio::test]
async fn shutdown_hands_a_running_shard_to_another_worker() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let started = Arc::new(Notify::new());
    let first = spawn(
        bench
            .worker("billing", "w1")
            .grace(Duration::from_millis(100))
            .register(Hold {
                started: started.clone(),
                finisher: false,
            }),
    )
    .await?;
    let t = task("billing", "long", plugin("hold"));
    bench.publish(&t).await?;
    tokio::time::timeout(WAIT, started.notified()).await?;
    let r = bench.next_report().await?;
    assert_eq!(
        (r.kind, r.worker.as_str(), r.attempt),
        (ReportKind::Started, "w1", 1)
    );

    // The grace period passes, the job is cancelled and its item handed back: the
    // queue gives it to the next worker right away (not after ack_wait), and w1 reports
    // no outcome for it.
    first.stop().await?;
    let second = spawn(bench.worker("billing", "w2").register(Hold {
        started: started.clone(),
        finisher: true,
    }))
    .await?;
    let seen = bench.until_finished(t.instance, 0).await?;
    assert!(
        seen.iter().all(|r| r.worker == "w2" && r.attempt == 2),
        "{seen:?}"
    );
    let ReportKind::Finished { outcome, .. } = &seen[seen.len() - 1].kind else {
        return Err(anyhow!("not finished"));
    };
    assert_eq!(outcome, &ShardOutcome::Success);
    second.stop().await
}

#[tokio::test]
async fn shutdown_waits_for_running_shards_within_the_grace() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = bench
        .worker("billing", "w1")
        .with_builtins()
        .build()
        .await?;
    let stop = Arc::new(Notify::new());
    let running = tokio::spawn({
        let stop = stop.clone();
        worker.run_until(async move { stop.notified().await })
    });
    let mut t = task("billing", "nap", plugin("sleep"));
    t.params = "300ms".into();
    bench.publish(&t).await?;
    let r = bench.next_report().await?;
    assert_eq!(r.kind, ReportKind::Started);
    stop.notify_one();
    // The shard finishes (well within the 30 s grace), then the worker stops.
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    tokio::time::timeout(WAIT, running).await???;
    Ok(())
}

#[tokio::test]
async fn bad_settings_are_refused_naming_them() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let err = |r: Result<antares_worker::Worker, antares_worker::WorkerError>| match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let e = err(antares_worker::Worker::builder().build().await);
    assert!(e.contains("--app"), "{e}");
    let e = err(bench.worker("Billing", "w1").build().await);
    assert!(e.contains("app `Billing` is invalid"), "{e}");
    let e = err(bench.worker("billing", "w.1").build().await);
    assert!(e.contains("worker id `w.1`"), "{e}");
    let e = err(bench.worker("billing", "w1").concurrency(0).build().await);
    assert!(e.contains("--concurrency 0"), "{e}");
    let e = err(bench
        .worker("billing", "w1")
        .with_builtins()
        .register(antares_worker::builtins::Noop)
        .build()
        .await);
    assert!(e.contains("`noop`"), "{e}");
    let e = err(antares_worker::Worker::builder()
        .app("billing")
        .nats_url("nats://127.0.0.1:1")
        .build()
        .await);
    assert!(e.contains("cannot connect"), "{e}");

    let w = antares_worker::Worker::builder()
        .app("billing")
        .nats_url(bench.server.url())
        .build()
        .await?;
    let host = w
        .id()
        .rsplitn(3, '-')
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert!(
        !host.is_empty() && w.id().contains(&format!("-{}-", std::process::id())),
        "{}",
        w.id()
    );
    Ok(())
}

#[tokio::test]
async fn pulling_resumes_after_the_server_crashes_and_restarts() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").with_builtins()).await?;
    let t = task("billing", "before", plugin("noop"));
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);

    let stats = bench.nats.client.statistics();
    let connects = stats.connects.load(Ordering::Relaxed);
    // SIGKILL: the server cannot tell the worker its pull requests are gone.
    bench.server.kill();
    let _restarted = LocalServer::start(&ServerOptions {
        port: Some(bench.server.port()),
        store_dir: bench.server.store_dir().to_path_buf(),
        ..ServerOptions::default()
    })?;
    wait_for("the test's connection to come back", WAIT, || {
        let back = stats.connects.load(Ordering::Relaxed) > connects;
        async move { back.then_some(()) }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let t = task("billing", "after", plugin("noop"));
    let published = wait_for("publishing after the restart", WAIT, || {
        let bench = &bench;
        let t = &t;
        async move { bench.publish(t).await.ok() }
    })
    .await;
    published.map_err(anyhow::Error::msg)?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    worker.stop().await
}

#[tokio::test]
async fn progress_acks_keep_a_long_shard_past_ack_wait() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .ack_wait(Duration::from_millis(600))
            .with_builtins(),
    )
    .await?;
    let mut t = task("billing", "long", plugin("sleep"));
    t.params = "2s".into();
    bench.publish(&t).await?;
    let seen = bench.until_finished(t.instance, 0).await?;
    assert_eq!(
        seen.len(),
        2,
        "one start, one finish, no redelivery: {seen:?}"
    );
    assert!(seen.iter().all(|r| r.attempt == 1), "{seen:?}");
    assert!(matches!(
        &seen[1].kind,
        ReportKind::Finished {
            outcome: ShardOutcome::Success,
            ..
        }
    ));
    worker.stop().await
}
