//! One bad job, record or write never stops the rest: corrupt records, a summary written
//! apart from its chunks, a job whose fires can never be queued, and an instance of many
//! shards with large params.

mod support;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, ShardStatus, TriggerKind};
use antares_schemas::machine::{self, Input};
use antares_schemas::messages::{Execution, TriggerRequest};
use support::Env;

fn instance(id: InstanceId, items: usize) -> Instance {
    Instance::create(NewInstance {
        id,
        app: "shop".into(),
        job: "manual".into(),
        trigger: TriggerKind::Manual,
        scheduled_at: id.time(),
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        shard_params: vec![String::new(); items],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

/// Writes instance records as a scheduler that stopped half-way would have left them.
async fn put(env: &Env, key: String, value: bytes::Bytes) -> anyhow::Result<()> {
    kv::write(
        &env.nats,
        Write::put(&env.nats.topo.instances_bucket(), key, value, Expect::Any),
    )
    .await?;
    Ok(())
}

async fn put_summary(env: &Env, inst: &Instance) -> anyhow::Result<()> {
    let s = &inst.summary;
    put(
        env,
        env.nats.topo.instance_key(&s.app, &s.job, &s.id),
        codec::encode("i", s)?,
    )
    .await
}

async fn put_chunks(env: &Env, inst: &Instance) -> anyhow::Result<()> {
    let s = &inst.summary;
    for c in 0..s.chunk_count() {
        let items = s.chunk_items(c);
        let (start, end) = (items.start, items.end.min(inst.shards.len()));
        let key = env.nats.topo.shard_chunk_key(&s.app, &s.job, &s.id, c);
        put(
            env,
            key,
            codec::encode("s", &inst.shards[start..end].to_vec())?,
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn corrupt_and_half_written_records_never_stop_the_leader() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "[[job]]\napp = \"shop\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n\
         [[job]]\napp = \"shop\"\nname = \"manual\"\nhandler = \"noop\"\n",
    )
    .await?;
    let at = now();
    // 1. Running, with a chunk that is not a shard record at all.
    let corrupt = InstanceId::for_manual(at, 1);
    let mut c = instance(corrupt, 2);
    machine::step(&mut c, &Input::Queued, at);
    put_summary(&env, &c).await?;
    let key = env.nats.topo.shard_chunk_key("shop", "manual", &corrupt, 0);
    put(&env, key, bytes::Bytes::from_static(b"\xc1 not msgpack")).await?;
    // 2. A summary that is not a summary.
    let garbage = InstanceId::for_manual(at, 2);
    put(
        &env,
        env.nats.topo.instance_key("shop", "manual", &garbage),
        "{".into(),
    )
    .await?;
    // 3. Chunks written (both shards done), summary not: still `running` with stale counts.
    let lagging = InstanceId::for_manual(at, 3);
    let mut l = instance(lagging, 2);
    machine::step(&mut l, &Input::Queued, at);
    put_summary(&env, &l).await?;
    for sh in &mut l.shards {
        sh.status = ShardStatus::Success;
        sh.attempts = 1;
    }
    put_chunks(&env, &l).await?;
    // 4. Claimed and summarised, chunks never written (pending, params in the summary).
    let unwritten = InstanceId::for_manual(at, 4);
    let u = instance(unwritten, 3);
    put_summary(&env, &u).await?;

    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    // The leader leads: the schedule fires.
    env.instances_where("shop", "tick", 2, |s| s.status == InstanceStatus::Success)
        .await?;
    let c = env.finished(&corrupt).await?;
    assert_eq!(c.summary.status, InstanceStatus::Failed);
    assert!(c.summary.reason.unwrap_or_default().contains("corrupt"));
    let l = env.finished(&lagging).await?;
    assert_eq!(
        l.summary.status,
        InstanceStatus::Success,
        "finality follows the shard records"
    );
    assert_eq!(l.summary.shard_counts.success, 2);
    let u = env.finished(&unwritten).await?;
    assert_eq!(
        u.summary.status,
        InstanceStatus::Success,
        "a cut-short launch completes"
    );
    assert!(u.shards.iter().all(|s| s.attempts == 1));
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_job_whose_fires_cannot_be_queued_fails_alone() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    // The work queue takes messages of at most 64 KiB here: every item of `big` is refused.
    let mut cfg = env
        .nats
        .stream(&env.nats.topo.shards_stream())
        .await?
        .info()
        .await?
        .config
        .clone();
    cfg.max_message_size = 64 * 1024;
    env.nats.js.update_stream(cfg).await?;
    let big = "x".repeat(100 * 1024);
    env.apply(
        "shop",
        &format!(
            "[[job]]\napp = \"shop\"\nname = \"big\"\nhandler = \"noop\"\nparams = \"{big}\"\nschedule = {{ every = \"1s\" }}\n\
             [[job]]\napp = \"shop\"\nname = \"small\"\nhandler = \"noop\"\nschedule = {{ every = \"1s\" }}\n"
        ),
    )
    .await?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    let failed = env
        .instances_where("shop", "big", 2, |s| s.status == InstanceStatus::Failed)
        .await?;
    let reason = failed[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("could not be queued"), "{reason}");
    // Meanwhile the other job fires every second.
    let since = now();
    env.instances_where("shop", "small", 2, |s| {
        s.status == InstanceStatus::Success && s.scheduled_at > since
    })
    .await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn many_shards_with_large_params_launch_fully() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let params = "p".repeat(200 * 1024);
    env.apply(
        "shop",
        &format!("app = \"shop\"\nname = \"wide\"\nhandler = \"noop\"\nparams = \"{params}\"\nshards = 1000\n"),
    )
    .await?;
    env.run_worker(env.worker("shop").concurrency(64)).await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("shop", "wide", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(inst.summary.shard_counts.success, 1000);
    env.stop().await;
    Ok(())
}

/// A launch cut short after some items went out (and past the de-duplication window):
/// the takeover publishes only the missing ones, so each item runs once.
#[tokio::test]
async fn a_half_published_launch_completes_without_running_an_item_twice() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"manual\"\nhandler = \"count\"\n",
    )
    .await?;
    let id = InstanceId::for_manual(now(), 7);
    let mut inst = instance(id, 3);
    inst.summary.exec = Execution::Plugin {
        handler: "count".into(),
    };
    put_summary(&env, &inst).await?;
    put_chunks(&env, &inst).await?;
    // Item 0 went out (without the scheduler's message id, so nothing de-duplicates it).
    let topo = &env.nats.topo;
    let s = &inst.summary;
    let task = antares_schemas::messages::ShardTask {
        instance: id,
        app: s.app.clone(),
        job: s.job.clone(),
        item: 0,
        total: 3,
        param: String::new(),
        params: String::new(),
        exec: Execution::Plugin {
            handler: "count".into(),
        },
        timeout_ms: 0,
        scheduled_at: s.scheduled_at,
        run: 1,
        attempt_base: 0,
        urgent: false,
        not_before: None,
    };
    env.nats
        .js
        .publish(
            topo.shard_subject("shop", "manual", &id, 0),
            codec::encode("t", &task)?,
        )
        .await?
        .await?;
    let rec = support::Recorder::succeeding("count");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let done = env.finished(&id).await?;
    assert_eq!(done.summary.status, InstanceStatus::Success);
    let mut items: Vec<u32> = rec.seen_for(&id).iter().map(|s| s.item).collect();
    items.sort_unstable();
    assert_eq!(items, vec![0, 1, 2], "each item ran once: {done:?}");
    env.stop().await;
    Ok(())
}

/// An instance whose summary was written while its id's claim was lost (a write cut
/// short by a NATS leader election): the takeover writes the claim, so the instance is
/// found by its id while it waits, not only once it ends.
#[tokio::test]
async fn a_pending_instance_whose_claim_was_lost_is_found_by_its_id() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"manual\"\nhandler = \"noop\"\n",
    )
    .await?;
    let id = InstanceId::for_manual(now(), 9);
    let inst = instance(id, 2);
    put_summary(&env, &inst).await?;
    put_chunks(&env, &inst).await?;
    // No worker: it stays open for as long as the test looks.
    env.scheduler_with("s1", |o| antares_scheduler::SchedulerOptions {
        no_worker_wait: std::time::Duration::from_secs(3600),
        ..o
    })
    .await?;
    let admin = &env.admin;
    let found = antares_nats::wait::wait_for(
        &format!("instance {id} to be found by its id"),
        std::time::Duration::from_secs(20),
        || async move { admin.get_instance(&id).await.ok() },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(
        !found.summary.status.is_final(),
        "found only once it ended: {:?}",
        found.summary
    );
    env.stop().await;
    Ok(())
}

/// The leader's consumers are deleted under it (an operator's mistake, a server that
/// lost them): it notices, starts over, and triggers and results flow again.
#[tokio::test]
async fn deleted_consumers_do_not_stall_the_leader() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"manual\"\nhandler = \"noop\"\n",
    )
    .await?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("shop", "manual", &TriggerRequest::default())
        .await?;
    env.finished(&id).await?;
    let topo = env.nats.topo.clone();
    for (stream, consumer) in [
        (topo.triggers_stream(), topo.triggers_consumer(0)),
        (topo.results_stream(), topo.results_consumer(0)),
    ] {
        env.nats
            .stream(&stream)
            .await?
            .delete_consumer(&consumer)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let id = env
        .trigger("shop", "manual", &TriggerRequest::default())
        .await?;
    let done = env.finished(&id).await?;
    assert_eq!(done.summary.status, InstanceStatus::Success);
    env.stop().await;
    Ok(())
}
