//! Execution control end to end: overlap policies, retries with backoff, bounded
//! `Later`, and children fired on success.

mod support;

use std::time::Duration;

use antares_schemas::instance::{Instance, InstanceStatus, ShardStatus, TriggerKind};
use antares_schemas::messages::TriggerRequest;
use antares_worker::JobResult;
use support::{Env, Recorder};

fn span(i: &Instance) -> (i64, i64) {
    let start = i.shards[0].started_at.map_or(0, |t| t.millis());
    let end = i.shards[0].finished_at.map_or(i64::MAX, |t| t.millis());
    (start, end)
}

/// Three runs of a 600 ms job, triggered at once; returns them in trigger order.
async fn three_runs(overlap: &str) -> anyhow::Result<(Env, Vec<Instance>)> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"slow\"\nhandler = \"sleep\"\nparams = \"600ms\"\n{overlap}\n"
        ),
    )
    .await?;
    env.run_worker(env.worker("shop").concurrency(4)).await?;
    env.scheduler("s1").await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            env.trigger("shop", "slow", &TriggerRequest::default())
                .await?,
        );
    }
    let mut out = Vec::new();
    for id in &ids {
        out.push(env.finished(id).await?);
    }
    Ok((env, out))
}

#[tokio::test]
async fn serial_runs_one_after_the_other() -> anyhow::Result<()> {
    let (mut env, runs) = three_runs("overlap = \"serial\"").await?;
    for r in &runs {
        assert_eq!(r.summary.status, InstanceStatus::Success, "{r:?}");
    }
    for pair in runs.windows(2) {
        let (_, end) = span(&pair[0]);
        let (start, _) = span(&pair[1]);
        assert!(
            start >= end,
            "serial instances overlapped: {:?} then {:?}",
            span(&pair[0]),
            span(&pair[1])
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn discard_records_a_skipped_instance_with_the_reason() -> anyhow::Result<()> {
    let (mut env, runs) = three_runs("overlap = \"discard\"").await?;
    assert_eq!(runs[0].summary.status, InstanceStatus::Success);
    for r in &runs[1..] {
        assert_eq!(r.summary.status, InstanceStatus::Skipped, "{r:?}");
        let reason = r.summary.reason.clone().unwrap_or_default();
        assert!(reason.contains("still running"), "{reason}");
        assert!(
            r.shards.iter().all(|s| s.attempts == 0),
            "a skipped instance never ran"
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn cover_cancels_the_running_instance_and_starts_the_new() -> anyhow::Result<()> {
    let (mut env, runs) = three_runs("overlap = \"cover\"").await?;
    for r in &runs[..2] {
        assert_eq!(r.summary.status, InstanceStatus::Cancelled, "{r:?}");
        let reason = r.summary.reason.clone().unwrap_or_default();
        assert!(reason.contains("covered by"), "{reason}");
    }
    assert_eq!(runs[2].summary.status, InstanceStatus::Success);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn parallel_runs_at_most_max_parallel_at_once() -> anyhow::Result<()> {
    let (mut env, runs) = three_runs("overlap = \"parallel\"\nmax_parallel = 2").await?;
    for r in &runs {
        assert_eq!(r.summary.status, InstanceStatus::Success);
    }
    let spans: Vec<_> = runs.iter().map(span).collect();
    // At any instant at most two ran: the third started after one of the first two ended.
    let (s3, _) = spans[2];
    assert!(
        s3 >= spans[0].1.min(spans[1].1),
        "three instances ran at once: {spans:?}"
    );
    // The first two did run side by side.
    assert!(
        spans[1].0 < spans[0].1,
        "the first two did not overlap: {spans:?}"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn failed_shards_are_retried_with_backoff_and_only_they() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"flaky\"\nhandler = \"flaky\"\nshard_params = \"ok;flaky\"\n\
         retry = { max = 2, backoff = \"300ms\", multiplier = 2.0, max_backoff = \"10s\" }\n",
    )
    .await?;
    let rec = Recorder::new("flaky", |ctx| {
        if ctx.shard_param() == "flaky" && ctx.attempt() < 3 {
            JobResult::failed(format!("boom {}", ctx.attempt()))
        } else {
            JobResult::Success
        }
    });
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("shop", "flaky", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    let flaky = &inst.shards[1];
    assert_eq!((flaky.attempts, flaky.retries), (3, 2), "{flaky:?}");
    assert_eq!(
        inst.shards[0].attempts, 1,
        "a shard that succeeded is not rerun"
    );
    let seen: Vec<_> = rec
        .seen_for(&id)
        .into_iter()
        .filter(|s| s.item == 1)
        .collect();
    assert_eq!(
        seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let first_wait = seen[1].at - seen[0].at;
    let second_wait = seen[2].at - seen[1].at;
    println!("retry waits: {first_wait:?}, {second_wait:?} (backoff 300ms x2)");
    assert!(first_wait >= Duration::from_millis(300), "{first_wait:?}");
    assert!(second_wait >= Duration::from_millis(600), "{second_wait:?}");

    // Out of retries: the shard fails with its last error, and so does the instance.
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"flaky\"\nhandler = \"flaky\"\nshard_params = \"flaky\"\n\
         retry = { max = 1, backoff = \"100ms\" }\n",
    )
    .await?;
    let rec2 = Recorder::new("doomed", |_| JobResult::failed("always"));
    env.run_worker(env.worker("shop").register(rec2)).await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"doomed\"\nhandler = \"doomed\"\nretry = { max = 1, backoff = \"100ms\" }\n",
    )
    .await?;
    let id = env
        .trigger("shop", "doomed", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    assert_eq!((inst.shards[0].attempts, inst.shards[0].retries), (2, 1));
    assert_eq!(inst.shards[0].error.as_deref(), Some("always"));
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn later_is_bounded_and_nothing_stays_queued() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"never\"\nhandler = \"never\"\n",
    )
    .await?;
    let rec = Recorder::new("never", |_| JobResult::Later);
    env.run_worker(
        env.worker("shop")
            .register(rec.clone())
            .later_delay(Duration::from_millis(5)),
    )
    .await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("shop", "never", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    let shard = &inst.shards[0];
    assert_eq!(shard.status, ShardStatus::Failed);
    assert_eq!(shard.laters, antares_schemas::limits::MAX_LATER);
    assert!(
        shard.error.as_deref().unwrap_or("").contains("Later"),
        "{shard:?}"
    );
    let env_ref = &env;
    antares_nats::wait::wait_for(
        "the shard queue to be empty",
        support::WAIT,
        || async move { env_ref.queued_shards().await.ok().filter(|n| *n == 0) },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn children_fire_after_success_only() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "[[job]]\napp = \"shop\"\nname = \"parent\"\nhandler = \"parent\"\nchildren = [\"shop/child\"]\n\
         [[job]]\napp = \"shop\"\nname = \"child\"\nhandler = \"noop\"\nparams = \"from the child spec\"\n",
    )
    .await?;
    let rec = Recorder::new("parent", |ctx| {
        if ctx.params() == "fail" {
            JobResult::failed("parent failed")
        } else {
            JobResult::Success
        }
    });
    env.run_worker(env.worker("shop").register(rec)).await?;
    env.scheduler("s1").await?;
    let failing = TriggerRequest {
        params: Some("fail".into()),
        ..TriggerRequest::default()
    };
    let failed = env.trigger("shop", "parent", &failing).await?;
    assert_eq!(
        env.finished(&failed).await?.summary.status,
        InstanceStatus::Failed
    );
    let ok = env
        .trigger("shop", "parent", &TriggerRequest::default())
        .await?;
    assert_eq!(
        env.finished(&ok).await?.summary.status,
        InstanceStatus::Success
    );
    let children = env
        .instances_where("shop", "child", 1, |s| s.status == InstanceStatus::Success)
        .await?;
    assert_eq!(
        children.len(),
        1,
        "one child, of the successful parent: {children:?}"
    );
    let child = &children[0];
    assert_eq!(child.trigger, TriggerKind::Child);
    assert_eq!(child.parent, Some(ok));
    assert_eq!(child.depth, 1);
    assert_eq!(child.params, "from the child spec");
    env.stop().await;
    Ok(())
}

/// A cycle of children that got past `job apply` (written to the store directly, as an
/// older version might have) is cut at the depth limit, saying so.
#[tokio::test]
async fn a_cycle_of_children_is_cut_at_the_depth_limit() -> anyhow::Result<()> {
    use antares_nats::kv::{self, Expect};
    use antares_schemas::messages::EventKind;
    use antares_schemas::spec::{SpecFormat, parse_jobs};

    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"ping\"\nhandler = \"noop\"\n",
    )
    .await?;
    let jobs = parse_jobs(
        "[[job]]\napp = \"shop\"\nname = \"ping\"\nhandler = \"noop\"\nchildren = [\"shop/pong\"]\n\
         [[job]]\napp = \"shop\"\nname = \"pong\"\nhandler = \"noop\"\nchildren = [\"shop/ping\"]\n",
        SpecFormat::Toml,
    )?;
    for spec in &jobs {
        let key = env.nats.topo.job_key(&spec.app, &spec.name);
        kv::put(
            &env.nats,
            &env.nats.topo.jobs_bucket(),
            key,
            "job",
            spec,
            Expect::Any,
        )
        .await?;
    }
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    let mut events = env.events("shop", "*").await?;
    let first = env
        .trigger("shop", "ping", &TriggerRequest::default())
        .await?;
    let cut = Env::event_where(&mut events, "the chain to be cut", |e| {
        e.kind == EventKind::TriggerRejected
    })
    .await?;
    let reason = cut.reason.unwrap_or_default();
    assert!(reason.contains("parents up the chain"), "{reason}");
    let limit = antares_schemas::limits::MAX_CHILD_DEPTH as usize;
    let pings = env.instances_where("shop", "ping", 1, |_| true).await?;
    let pongs = env.instances_where("shop", "pong", 1, |_| true).await?;
    assert_eq!(
        pings.len() + pongs.len(),
        limit + 1,
        "the first and {limit} children"
    );
    assert!(pings.iter().any(|s| s.id == first));
    assert!(
        pings
            .iter()
            .chain(&pongs)
            .all(|s| s.depth as usize <= limit)
    );
    env.stop().await;
    Ok(())
}
