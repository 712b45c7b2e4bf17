//! The core loop end to end on a real nats-server: schedules and triggers become
//! instances, shards run on workers, results become history.

mod support;

use std::collections::{BTreeMap, HashSet};

use antares_schemas::instance::{InstanceStatus, ShardStatus, TriggerKind};
use antares_schemas::messages::{Event, EventKind, TriggerRequest};
use antares_worker::JobResult;
use futures::StreamExt;
use support::{Env, Recorder, WAIT};

#[tokio::test]
async fn cron_job_of_three_shards_runs_each_param_once_over_two_workers() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        r#"
app = "shop"
name = "sweep"
schedule = { cron = "* * * * * ?" }
handler = "record"
shard_params = "a;b;c"
"#,
    )
    .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(2))
        .await?;
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(2))
        .await?;
    env.scheduler("s1").await?;

    let done = env
        .instances_where("shop", "sweep", 1, |s| s.status == InstanceStatus::Success)
        .await?;
    let first = &done[0];
    assert_eq!(first.trigger, TriggerKind::Cron);
    assert_eq!(
        first.scheduled_at.millis() % 1000,
        0,
        "cron fires on whole seconds"
    );
    let inst = env.admin.get_instance(&first.id).await?;
    assert_eq!(inst.shards.len(), 3);
    for (i, shard) in inst.shards.iter().enumerate() {
        assert_eq!(shard.status, ShardStatus::Success);
        assert_eq!(shard.attempts, 1);
        assert!(shard.worker.is_some());
        assert!(shard.started_at.is_some() && shard.finished_at.is_some());
        assert_eq!(shard.param, ["a", "b", "c"][i]);
    }
    let mut params: Vec<String> = rec
        .seen_for(&first.id)
        .into_iter()
        .map(|s| s.param)
        .collect();
    params.sort();
    assert_eq!(params, vec!["a", "b", "c"], "each param exactly once");
    env.admin.set_job_enabled("shop", "sweep", false).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn later_puts_the_shard_back_and_it_then_succeeds() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"retry\"\nhandler = \"record\"\n",
    )
    .await?;
    let rec = Recorder::new("record", |ctx| {
        if ctx.attempt() == 1 {
            JobResult::Later
        } else {
            JobResult::Success
        }
    });
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;

    let id = env
        .trigger("shop", "retry", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(inst.summary.trigger, TriggerKind::Manual);
    assert_eq!(inst.shards[0].attempts, 2);
    let attempts: Vec<u32> = rec.seen_for(&id).into_iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, vec![1, 2]);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn fail_marks_the_shard_and_the_instance_failed_with_the_error() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"broken\"\nhandler = \"fail\"\nparams = \"disk full\"\nshards = 2\n",
    )
    .await?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;

    let id = env
        .trigger("shop", "broken", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    for shard in &inst.shards {
        assert_eq!(shard.status, ShardStatus::Failed);
        assert_eq!(shard.error.as_deref(), Some("disk full"));
    }
    assert_eq!(inst.summary.shard_counts.failed, 2);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn script_job_sees_its_env_and_exit_codes_steer_it() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let command = r#"echo "app=$ANTARES_APP job=$ANTARES_JOB item=$ANTARES_SHARD_ITEM total=$ANTARES_SHARD_TOTAL param=$ANTARES_SHARD_PARAM params=$ANTARES_PARAMS attempt=$ANTARES_ATTEMPT id=$ANTARES_INSTANCE_ID"
if [ "$ANTARES_SHARD_PARAM" = later ] && [ "$ANTARES_ATTEMPT" = 1 ]; then exit 75; fi
if [ "$ANTARES_SHARD_PARAM" = bad ]; then echo "the disk is on fire" >&2; exit 3; fi
echo done"#;
    let toml = format!(
        "app = \"ops\"\nname = \"sh\"\nkind = \"script\"\nparams = \"P\"\nshard_params = \"ok;later;bad\"\ncommand = '''\n{command}\n'''\n"
    );
    env.apply("ops", &toml).await?;
    env.run_worker(env.worker("ops").allow_scripts(true))
        .await?;
    env.scheduler("s1").await?;

    let id = env.trigger("ops", "sh", &TriggerRequest::default()).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    let [ok, later, bad] = &inst.shards[..] else {
        anyhow::bail!("expected 3 shards, got {}", inst.shards.len())
    };
    assert_eq!((ok.status, ok.attempts), (ShardStatus::Success, 1));
    assert_eq!(
        (later.status, later.attempts),
        (ShardStatus::Success, 2),
        "exit 75 = later, then ran again"
    );
    assert_eq!(bad.status, ShardStatus::Failed);
    assert!(
        bad.error
            .as_deref()
            .is_some_and(|e| e.contains("the disk is on fire")),
        "stderr is the error: {:?}",
        bad.error
    );

    let logs = env.admin.logs(&id, None, false).await?;
    let lines: Vec<String> = logs
        .filter_map(|l| async move { l.ok().map(|l| l.line) })
        .collect()
        .await;
    let expect = format!("app=ops job=sh item=0 total=3 param=ok params=P attempt=1 id={id}");
    assert!(lines.contains(&expect), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("param=later") && l.contains("attempt=2"))
    );
    assert!(
        lines.contains(&"the disk is on fire".to_string()),
        "stderr lines are log lines too"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_raw_nats_publish_on_the_trigger_subject_runs_the_job() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"echo\"\nhandler = \"record\"\nparams = \"default\"\n",
    )
    .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;

    // As `nats pub ats.trigger.shop.echo '{"params":"x"}'` does: a plain core publish.
    env.nats
        .client
        .publish(
            env.nats.topo.trigger_subject("shop", "echo"),
            r#"{"params":"x"}"#.into(),
        )
        .await?;
    env.nats.flush().await?;
    let found = env
        .instances_where("shop", "echo", 1, |s| s.status == InstanceStatus::Success)
        .await?;
    assert_eq!(found[0].trigger, TriggerKind::Event);
    assert_eq!(found[0].params, "x");
    let seen = rec.seen_for(&found[0].id);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].params, "x");
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn garbage_triggers_are_rejected_and_the_scheduler_keeps_working() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"echo\"\nhandler = \"record\"\n",
    )
    .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let mut events = env
        .nats
        .client
        .subscribe(env.nats.topo.events_filter())
        .await?;

    let topo = env.nats.topo.clone();
    for (subject, body) in [
        (topo.trigger_subject("shop", "echo"), "garbage".to_string()),
        (
            topo.trigger_subject("shop", "echo"),
            r#"{"params": 42}"#.to_string(),
        ),
        (
            topo.trigger_subject("shop", "echo"),
            r#"{"shards": 2, "shard_params": "a;b;c"}"#.to_string(),
        ),
        (topo.trigger_subject("shop", "nope"), String::new()),
        (topo.trigger_subject("nope", "echo"), String::new()),
    ] {
        env.nats.client.publish(subject, body.into()).await?;
    }
    env.nats.flush().await?;
    let mut reasons = Vec::new();
    while reasons.len() < 5 {
        let msg = tokio::time::timeout(WAIT, events.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("event subscription ended"))?;
        let event: Event = serde_json::from_slice(&msg.payload)?;
        if event.kind == EventKind::TriggerRejected {
            assert!(event.instance.is_none());
            reasons.push(event.reason.unwrap_or_default());
        }
    }
    assert!(reasons[0].contains("not a valid trigger"), "{reasons:?}");
    assert!(reasons[1].contains("params"), "{reasons:?}");
    assert!(reasons[2].contains("shard"), "{reasons:?}");
    assert!(reasons[3].contains("unknown job"), "{reasons:?}");
    assert!(reasons[4].contains("unknown app"), "{reasons:?}");

    // Still working.
    let id = env
        .trigger("shop", "echo", &TriggerRequest::default())
        .await?;
    assert_eq!(
        env.finished(&id).await?.summary.status,
        InstanceStatus::Success
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn two_schedulers_fire_each_slot_exactly_once() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"tick\"\nhandler = \"record\"\nshards = 2\nschedule = { every = \"1s\" }\n",
    )
    .await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(4))
        .await?;
    env.scheduler("s1").await?;
    env.scheduler("s2").await?;

    let done = env
        .instances_where("shop", "tick", 4, |s| s.status == InstanceStatus::Success)
        .await?;
    env.admin.set_job_enabled("shop", "tick", false).await?;
    let mut slots = HashSet::new();
    for s in &done {
        assert!(
            slots.insert(s.scheduled_at),
            "slot {} fired twice",
            s.scheduled_at
        );
        assert_eq!(s.trigger, TriggerKind::Every);
    }
    let mut runs: BTreeMap<(String, u32), u32> = BTreeMap::new();
    for s in rec.seen() {
        *runs.entry((s.instance.to_string(), s.item)).or_default() += 1;
    }
    for s in &done {
        for item in 0..2 {
            assert_eq!(
                runs.get(&(s.id.to_string(), item)),
                Some(&1),
                "shard {item} of {} ran once",
                s.id
            );
        }
    }
    let cluster = env.admin.cluster().await?;
    let leaders = cluster.schedulers.iter().filter(|s| s.leader).count();
    assert_eq!(leaders, 1, "{:?}", cluster.schedulers);
    env.stop().await;
    Ok(())
}
