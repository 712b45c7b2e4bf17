//! Scheduler failover with real processes: SIGKILL the leader, the standby takes over,
//! and every scheduled slot still fires exactly once.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use antares_nats::now;
use antares_nats::wait::wait_for;
use antares_schemas::instance::InstanceStatus;
use support::{Env, Recorder, scheduler_process};
use tokio::process::Child;

#[tokio::test]
async fn killing_the_leader_hands_over_without_losing_or_doubling_a_fire() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"tick\"\nhandler = \"record\"\nschedule = { every = \"1s\" }\n",
    )
    .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(4))
        .await?;

    let url = env.server.url();
    let mut procs: HashMap<String, Child> = HashMap::new();
    procs.insert("sched-a".into(), scheduler_process(&url, "sched-a")?);
    procs.insert("sched-b".into(), scheduler_process(&url, "sched-b")?);

    let env_ref = &env;
    let leader = wait_for(
        "a scheduler to lead",
        Duration::from_secs(20),
        || async move { env_ref.lease_holder().await },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.instances_where("shop", "tick", 3, |s| s.status == InstanceStatus::Success)
        .await?;

    // SIGKILL the leader: no clean release, the lease has to expire.
    let mut victim = procs
        .remove(&leader)
        .ok_or_else(|| anyhow::anyhow!("leader `{leader}` is not one of ours"))?;
    victim.kill().await?;
    let killed_at = now();
    let standby = if leader == "sched-a" {
        "sched-b"
    } else {
        "sched-a"
    };
    wait_for(
        "the standby to take the lease",
        Duration::from_secs(20),
        || async move { env_ref.lease_holder().await.filter(|h| h == standby) },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.instances_where("shop", "tick", 3, |s| {
        s.status == InstanceStatus::Success
            && s.scheduled_at > killed_at.plus(Duration::from_secs(1))
    })
    .await?;
    env.admin.set_job_enabled("shop", "tick", false).await?;

    // Every slot from the first to the last fired exactly once, across the handover.
    let all = env.instances_where("shop", "tick", 1, |_| true).await?;
    let mut slots: Vec<i64> = all.iter().map(|s| s.scheduled_at.millis()).collect();
    slots.sort_unstable();
    let before = slots.len();
    slots.dedup();
    assert_eq!(before, slots.len(), "a slot fired twice: {slots:?}");
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "a slot was lost around the handover: {slots:?}"
        );
    }
    assert!(slots.first().is_some_and(|f| *f < killed_at.millis()));
    assert!(slots.last().is_some_and(|l| *l > killed_at.millis() + 1000));
    // And each instance's shard ran once.
    let mut runs: HashMap<String, u32> = HashMap::new();
    for s in rec.seen() {
        *runs.entry(s.instance.to_string()).or_default() += 1;
    }
    for s in all.iter().filter(|s| s.status == InstanceStatus::Success) {
        assert_eq!(
            runs.get(&s.id.to_string()),
            Some(&1),
            "instance {} ran its shard once",
            s.id
        );
    }
    for (_, mut p) in procs {
        let _ = p.kill().await;
    }
    env.stop().await;
    Ok(())
}

/// A standby keeps the job catalog current while it waits: what was edited, created,
/// paused or deleted while it stood by is what it fires once it takes over.
#[tokio::test]
async fn a_standby_takes_over_with_the_edits_made_while_it_waited() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let every = |name: &str, schedule: &str| {
        format!("app = \"shop\"\nname = \"{name}\"\nhandler = \"record\"\nschedule = {schedule}\n")
    };
    env.apply("shop", &every("paused", "{ every = \"1s\" }"))
        .await?;
    env.apply("shop", &every("gone", "{ every = \"1s\" }"))
        .await?;
    env.apply("shop", &every("edited", "{ cron = \"0 0 1 1 *\" }"))
        .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(4))
        .await?;

    let url = env.server.url();
    let mut first = scheduler_process(&url, "sched-a")?;
    let env_ref = &env;
    wait_for("sched-a to lead", Duration::from_secs(20), || async move {
        env_ref.lease_holder().await.filter(|h| h == "sched-a")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let mut second = scheduler_process(&url, "sched-b")?;
    // Its heartbeat: it has read the catalog and stands by.
    wait_for(
        "sched-b to stand by",
        Duration::from_secs(20),
        || async move {
            let view = env_ref.admin.cluster().await.ok()?;
            view.schedulers
                .iter()
                .any(|s| s.id == "sched-b")
                .then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;

    env.admin.set_job_enabled("shop", "paused", false).await?;
    env.admin.delete_job("shop", "gone").await?;
    env.apply("shop", &every("edited", "{ every = \"1s\" }"))
        .await?;
    env.apply("shop", &every("fresh", "{ every = \"1s\" }"))
        .await?;
    env.instances_where("shop", "fresh", 1, |_| true).await?;

    first.kill().await?;
    let killed_at = now();
    wait_for("sched-b to lead", Duration::from_secs(20), || async move {
        env_ref.lease_holder().await.filter(|h| h == "sched-b")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let after = killed_at.plus(Duration::from_secs(1));
    for job in ["edited", "fresh"] {
        env.instances_where("shop", job, 2, |s| {
            s.status == InstanceStatus::Success && s.scheduled_at > after
        })
        .await?;
    }
    // A slot the killed leader started (its items queued, 100 ms ahead) before it saw
    // the pause runs all the same, under the next leader; none after it.
    let started_by_the_first = killed_at.plus(support::QUEUE_AHEAD);
    for job in ["paused", "gone"] {
        let late: Vec<_> = env
            .all_instances("shop", job)
            .await?
            .into_iter()
            .filter(|s| s.scheduled_at > started_by_the_first)
            .collect();
        assert!(
            late.is_empty(),
            "{job} fired after the takeover: {}",
            support::describe(&late)
        );
    }
    let _ = second.kill().await;
    env.stop().await;
    Ok(())
}
