//! Partitions: the jobs split into 4, led by one `antares scheduler` process, then by
//! two that share them (each leads some, none both); one is SIGKILLed and its partitions move to
//! the other; every 1-second slot of jobs spread over all partitions fires exactly once
//! throughout, and triggers and reports of every partition's jobs are taken. A lone
//! scheduler leads every partition, and a child in another partition than its parent is
//! made by that partition's leader.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use antares_nats::now;
use antares_nats::wait::wait_for;
use antares_schemas::instance::{InstanceStatus, TriggerKind};
use antares_schemas::messages::TriggerRequest;
use antares_schemas::{InstanceId, Timestamp};
use support::{Env, WAIT, describe, scheduler_process};

const APP: &str = "parts";
const PARTITIONS: u32 = 4;
/// Enough jobs that every partition has some (checked).
const JOBS: usize = 12;

fn job_names() -> Vec<String> {
    (0..JOBS).map(|i| format!("tick-{i:02}")).collect()
}

fn jobs_toml() -> String {
    job_names()
        .iter()
        .map(|job| {
            format!(
                "[[job]]\napp = \"{APP}\"\nname = \"{job}\"\nhandler = \"noop\"\n\
                 schedule = {{ every = \"1s\" }}\nmisfire = \"catch_up\"\n\
                 overlap = \"parallel\"\nmax_parallel = 10\n\n"
            )
        })
        .collect()
}

/// Which partitions each scheduler leads, once the leases say exactly `want` schedulers
/// lead and between them every partition, none twice.
async fn split_among(env: &Env, want: &[&str]) -> anyhow::Result<BTreeMap<String, Vec<u32>>> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let want = &want;
    wait_for(
        &format!("schedulers {want:?} to share all {PARTITIONS} partitions"),
        WAIT,
        || async move {
            let led = env.partition_leaders().await?;
            let mut all: Vec<u32> = led.values().flatten().copied().collect();
            all.sort_unstable();
            let each_leads = led.keys().cloned().collect::<BTreeSet<_>>() == *want;
            (each_leads && all == (0..PARTITIONS).collect::<Vec<_>>()).then_some(led)
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}

/// Triggers every job once and waits until each instance succeeded.
async fn trigger_all(env: &Env) -> anyhow::Result<()> {
    let mut ids: Vec<InstanceId> = Vec::new();
    for job in job_names() {
        ids.push(env.trigger(APP, &job, &TriggerRequest::default()).await?);
    }
    for id in ids {
        let done = env.finished(&id).await?;
        assert_eq!(done.summary.status, InstanceStatus::Success, "{id}");
        assert_eq!(done.summary.trigger, TriggerKind::Manual);
    }
    Ok(())
}

/// Waits until every job has `n` successful scheduled instances after `after`.
async fn each_job_fires(env: &Env, n: usize, after: Timestamp) -> anyhow::Result<()> {
    for job in job_names() {
        env.instances_where(APP, &job, n, |s| {
            s.status == InstanceStatus::Success
                && s.scheduled_at > after
                && s.trigger != TriggerKind::Manual
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn two_schedulers_split_the_partitions_and_a_killed_ones_move() -> anyhow::Result<()> {
    let mut env = Env::start_partitioned(PARTITIONS).await?;
    let topo = env.nats.topo.clone();
    assert_eq!(topo.partitions(), PARTITIONS);
    let covered: BTreeSet<u32> = job_names()
        .iter()
        .map(|j| topo.partition_of(APP, j))
        .collect();
    assert_eq!(
        covered.len(),
        PARTITIONS as usize,
        "jobs in every partition"
    );
    env.apply(APP, &jobs_toml()).await?;
    env.run_worker(env.worker(APP)).await?;

    // Alone, the first leads every partition; when the second comes, it gives half up.
    let url = env.server.url();
    let mut a = scheduler_process(&url, "sched-a")?;
    split_among(&env, &["sched-a"]).await?;
    each_job_fires(&env, 2, Timestamp(0)).await?;
    let b = scheduler_process(&url, "sched-b")?;
    let split = split_among(&env, &["sched-a", "sched-b"]).await?;
    println!("split: {split:?}");
    for (id, led) in &split {
        assert!(
            led.len() == 2,
            "{id} leads its fair share, 2 of {PARTITIONS}: {split:?}"
        );
    }
    let joined = now();
    each_job_fires(&env, 3, joined).await?;
    trigger_all(&env).await?;

    a.start_kill()?;
    let killed_at = now();
    a.wait().await?;
    let moved = split_among(&env, &["sched-b"]).await?;
    println!(
        "sched-a SIGKILLed: sched-b leads {:?} {} ms later",
        moved.get("sched-b"),
        now().since(killed_at)
    );
    each_job_fires(&env, 3, killed_at.plus(std::time::Duration::from_secs(1))).await?;
    trigger_all(&env).await?;

    // Pause, let everything in flight end, and count the slots.
    let admin = &env.admin;
    for job in job_names() {
        admin.set_job_enabled(APP, &job, false).await?;
    }
    let paused_at = now();
    let env_ref = &env;
    let lists = wait_for(
        "every instance to end after the pause",
        WAIT,
        || async move {
            // A slot that fell due as the pause was applied shows up within a second.
            if now().since(paused_at) < 1000 {
                return None;
            }
            let mut all = Vec::new();
            for job in job_names() {
                let list = env_ref.all_instances(APP, &job).await.ok()?;
                if list.iter().any(|s| !s.status.is_final()) {
                    return None;
                }
                all.push((job, list));
            }
            Some(all)
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    for (job, list) in lists {
        let listing = describe(&list);
        assert!(
            list.iter().all(|s| s.status == InstanceStatus::Success),
            "{job}: every instance succeeded:\n{listing}"
        );
        let mut slots: Vec<i64> = list
            .iter()
            .filter(|s| s.trigger != TriggerKind::Manual)
            .map(|s| s.scheduled_at.millis())
            .collect();
        slots.sort_unstable();
        let n = slots.len();
        slots.dedup();
        assert_eq!(n, slots.len(), "{job}: a slot fired twice:\n{listing}");
        for pair in slots.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1000,
                "{job}: slots {} and {} are not 1 s apart (missing or extra fires):\n{listing}",
                Timestamp(pair[0]),
                Timestamp(pair[1])
            );
        }
        assert!(
            slots.first().is_some_and(|f| *f < killed_at.millis())
                && slots.last().is_some_and(|l| *l > killed_at.millis() + 1000),
            "{job}: the slots span the kill:\n{listing}"
        );
        println!(
            "{job} (partition {}): {n} slots, each exactly once",
            topo.partition_of(APP, &job)
        );
    }
    drop(b);
    Ok(())
}

#[tokio::test]
async fn a_lone_scheduler_leads_every_partition_and_children_cross_them() -> anyhow::Result<()> {
    let mut env = Env::start_partitioned(PARTITIONS).await?;
    let topo = env.nats.topo.clone();
    // A parent and a child in different partitions.
    let parent = "parent";
    let child = (0..100)
        .map(|i| format!("child-{i}"))
        .find(|c| topo.partition_of(APP, c) != topo.partition_of(APP, parent))
        .ok_or_else(|| anyhow::anyhow!("no job name in another partition"))?;
    env.apply(
        APP,
        &format!(
            "[[job]]\napp = \"{APP}\"\nname = \"{parent}\"\nhandler = \"noop\"\nchildren = [\"{APP}/{child}\"]\n\n\
             [[job]]\napp = \"{APP}\"\nname = \"{child}\"\nhandler = \"noop\"\n\n{}",
            jobs_toml()
        ),
    )
    .await?;
    env.run_worker(env.worker(APP)).await?;
    env.scheduler("solo").await?;
    let split = split_among(&env, &["solo"]).await?;
    assert_eq!(
        split.get("solo"),
        Some(&(0..PARTITIONS).collect::<Vec<_>>())
    );
    trigger_all(&env).await?;

    let id = env.trigger(APP, parent, &TriggerRequest::default()).await?;
    assert_eq!(
        env.finished(&id).await?.summary.status,
        InstanceStatus::Success
    );
    let kids = env
        .instances_where(APP, &child, 1, |s| s.parent == Some(id))
        .await?;
    let kid = env.finished(&kids[0].id).await?;
    assert_eq!(kid.summary.trigger, TriggerKind::Child);
    assert_eq!(kid.summary.depth, 1);
    assert_eq!(kid.summary.status, InstanceStatus::Success);
    env.stop().await;
    Ok(())
}
