//! An instance whose shards no live worker can run says so at once (`no_worker` event
//! and a visible reason), runs when a capable worker comes, and fails with the reason
//! when none comes within `no_worker_wait`.

mod support;

use std::time::Duration;

use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::{EventKind, TriggerRequest};
use support::{Env, Recorder, WAIT};

#[tokio::test]
async fn no_capable_worker_is_said_at_once_and_a_capable_one_runs_it() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"report\"\nhandler = \"report\"\n",
    )
    .await?;
    // No worker of the app yet.
    env.scheduler("s1").await?;
    let mut events = env.events("shop", "report").await?;
    let id = env
        .trigger("shop", "report", &TriggerRequest::default())
        .await?;
    let said = Env::event_where(&mut events, "a no_worker event", |e| {
        e.kind == EventKind::NoWorker && e.instance == Some(id)
    })
    .await?;
    let reason = said.reason.unwrap_or_default();
    assert!(reason.contains("no live worker of app `shop`"), "{reason}");
    let inst = env.admin.get_instance(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Running);
    assert_eq!(inst.summary.reason.as_deref(), Some(reason.as_str()));

    // A worker that has it: the instance runs and the reason goes.
    let rec = Recorder::succeeding("report");
    env.run_worker(env.worker("shop").register(rec)).await?;
    let admin = &env.admin;
    let done = antares_nats::wait::wait_for("a capable worker to run it", WAIT, || async move {
        let i = admin.get_instance(&id).await.ok()?;
        i.summary.status.is_final().then_some(i)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(done.summary.status, InstanceStatus::Success);
    assert_eq!(done.summary.no_worker_since, None);
    assert_eq!(done.summary.reason, None);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_any_worker_the_instance_fails_after_the_wait() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"lonely\"\nhandler = \"noop\"\n",
    )
    .await?;
    env.scheduler_with("s1", |o| antares_scheduler::SchedulerOptions {
        no_worker_wait: Duration::from_secs(2),
        ..o
    })
    .await?;
    let id = env
        .trigger("shop", "lonely", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    let reason = inst.summary.reason.unwrap_or_default();
    assert!(
        reason.contains("no live worker of app `shop`") && reason.contains("it fails"),
        "{reason}"
    );
    // Nothing of it is left queued.
    assert_eq!(env.queued_shards().await?, 0);
    env.stop().await;
    Ok(())
}
