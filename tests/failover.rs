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
