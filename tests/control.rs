//! Operator control in its simple form: a paused job does not fire (explicit triggers
//! still run), and a cancelled instance's pending shards never start.

mod support;

use std::sync::Arc;
use std::time::Duration;

use antares_schemas::instance::{InstanceStatus, ShardStatus, TriggerKind};
use antares_schemas::messages::{Event, EventKind, TriggerRequest};
use antares_worker::{Job, JobContext, JobResult};
use futures::StreamExt;
use support::{Env, Recorder, WAIT};
use tokio::sync::Notify;

/// Holds its shard until released (or cancelled), telling the test when it started.
#[derive(Clone)]
struct Gate {
    started: Arc<Notify>,
    release: Arc<Notify>,
}

impl Job for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        self.started.notify_one();
        tokio::select! {
            () = self.release.notified() => JobResult::Success,
            () = ctx.cancelled() => JobResult::Later,
        }
    }
}

#[tokio::test]
async fn a_cancelled_instance_never_starts_its_pending_shards() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"slow\"\nhandler = \"gate\"\nshards = 3\n",
    )
    .await?;
    let gate = Gate {
        started: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
    };
    let rec = Recorder::succeeding("unused");
    // One slot: shard 0 runs, shards 1 and 2 wait in the queue.
    env.run_worker(
        env.worker("shop")
            .register(gate.clone())
            .register(rec)
            .concurrency(1),
    )
    .await?;
    env.scheduler("s1").await?;

    let id = env
        .trigger("shop", "slow", &TriggerRequest::default())
        .await?;
    tokio::time::timeout(WAIT, gate.started.notified()).await?;
    // Its start is reported once it has run a moment.
    let admin = &env.admin;
    antares_nats::wait::wait_for("shard 0 to show as running", WAIT, || async move {
        let inst = admin.get_instance(&id).await.ok()?;
        (inst.shards[0].status == ShardStatus::Running).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.admin.cancel_instance(&id).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Cancelled);
    assert!(
        inst.shards
            .iter()
            .all(|s| s.status == ShardStatus::Cancelled)
    );
    assert_eq!(
        inst.shards.iter().filter(|s| s.attempts > 0).count(),
        1,
        "only the running shard ever started"
    );

    // Let the running shard end: the worker moves on, and nothing else of the cancelled
    // instance is left in the queue for it.
    gate.release.notify_one();
    let topo = env.nats.topo.clone();
    let shards = env.nats.stream(&topo.shards_stream()).await?;
    let leftover = antares_nats::wait::wait_for("the shard queue to be empty", WAIT, || {
        let mut s = shards.clone();
        async move {
            s.info()
                .await
                .ok()
                .map(|i| i.state.messages)
                .filter(|n| *n == 0)
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(leftover, 0);
    let again = env.admin.get_instance(&id).await?;
    assert_eq!(again.shards.iter().filter(|s| s.attempts > 0).count(), 1);
    assert!(
        env.admin.cancel_instance(&id).await.is_err(),
        "cancelling twice is refused"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_paused_job_does_not_fire_but_explicit_triggers_run() -> anyhow::Result<()> {
    let (mut env, mut events) = ticking().await?;
    env.admin.set_job_enabled("shop", "tick", false).await?;
    let paused_at = antares_nats::now();
    // A manual trigger on the paused job still runs.
    let id = env
        .trigger("shop", "tick", &TriggerRequest::default())
        .await?;
    assert_eq!(
        env.finished(&id).await?.summary.status,
        InstanceStatus::Success
    );

    assert_no_scheduled_start(&mut events, paused_at).await;

    // Resumed: it fires again.
    let resumed_at = antares_nats::now();
    env.admin.set_job_enabled("shop", "tick", true).await?;
    fires_after(&env, resumed_at).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_paused_app_does_not_fire() -> anyhow::Result<()> {
    let (mut env, mut events) = ticking().await?;
    env.admin.set_app_enabled("shop", false).await?;
    let paused_at = antares_nats::now();
    assert_no_scheduled_start(&mut events, paused_at).await;

    let resumed_at = antares_nats::now();
    env.admin.set_app_enabled("shop", true).await?;
    fires_after(&env, resumed_at).await?;
    env.stop().await;
    Ok(())
}

/// For the next 2.5 s no scheduled slot after `since` may start (a slot already due when
/// the pause was written may still have been in flight).
async fn assert_no_scheduled_start(
    events: &mut async_nats::Subscriber,
    since: antares_schemas::Timestamp,
) {
    // A slot the scheduler started (its items queued ahead) before the pause reached it
    // still runs: it is due within the queue-ahead time.
    let since = since.plus(support::QUEUE_AHEAD);
    let quiet = tokio::time::timeout(Duration::from_millis(2500), async {
        while let Some(msg) = events.next().await {
            if let Ok(e) = serde_json::from_slice::<Event>(&msg.payload)
                && e.kind == EventKind::InstanceStarted
                && e.trigger == Some(TriggerKind::Every)
                && e.instance.is_some_and(|i| i.time() > since)
            {
                return e;
            }
        }
        futures::future::pending().await
    })
    .await;
    assert!(quiet.is_err(), "a paused job fired: {quiet:?}");
}

/// A job `shop/tick` firing every second, seen firing once, and its events.
async fn ticking() -> anyhow::Result<(Env, async_nats::Subscriber)> {
    let env = Env::ticking().await?;
    let events = env
        .nats
        .client
        .subscribe(env.nats.topo.event_subject("shop", "tick"))
        .await?;
    Ok((env, events))
}

/// Waits for a scheduled fire of `shop/tick` after `since`.
async fn fires_after(env: &Env, since: antares_schemas::Timestamp) -> anyhow::Result<()> {
    env.instances_where("shop", "tick", 1, |s| {
        s.trigger == TriggerKind::Every && s.scheduled_at > since
    })
    .await?;
    Ok(())
}
