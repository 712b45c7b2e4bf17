//! Exactly once beyond a window: trigger keys, backfill of slots, ids claimed for as long
//! as history is kept, and misfire planning after a long outage.

mod support;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{codec, now};
use antares_schemas::instance::{InstanceStatus, TriggerKind};
use antares_schemas::messages::{EventKind, TriggerRequest};
use antares_schemas::topology::{HEADER_MSG_ID, HEADER_SLOT, HEADER_TRIGGER};
use antares_schemas::{InstanceId, Timestamp};
use support::{Env, Recorder};

async fn publish_trigger(env: &Env, app: &str, job: &str, body: &str) -> anyhow::Result<()> {
    env.nats
        .js
        .publish(
            env.nats.topo.trigger_subject(app, job),
            body.to_string().into(),
        )
        .await?
        .await?;
    Ok(())
}

async fn backfill(env: &Env, app: &str, job: &str, slot: Timestamp) -> anyhow::Result<()> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(HEADER_TRIGGER, "backfill");
    h.insert(HEADER_SLOT, slot.millis().to_string().as_str());
    h.insert(
        HEADER_MSG_ID,
        format!("backfill.{}.{}", slot.millis(), rand::random::<u64>()).as_str(),
    );
    env.nats
        .js
        .publish_with_headers(env.nats.topo.trigger_subject(app, job), h, "".into())
        .await?
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_trigger_key_starts_one_instance() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"pay\"\nhandler = \"pay\"\n",
    )
    .await?;
    let rec = Recorder::succeeding("pay");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let mut events = env.events("shop", "pay").await?;
    publish_trigger(
        &env,
        "shop",
        "pay",
        r#"{"key": "order-42", "params": "first"}"#,
    )
    .await?;
    let first = env
        .instances_where("shop", "pay", 1, |s| s.status == InstanceStatus::Success)
        .await?;
    publish_trigger(
        &env,
        "shop",
        "pay",
        r#"{"key": "order-42", "params": "second"}"#,
    )
    .await?;
    let rejected = Env::event_where(&mut events, "the repeat's rejection", |e| {
        e.kind == EventKind::TriggerRejected
    })
    .await?;
    let reason = rejected.reason.unwrap_or_default();
    assert!(reason.contains(&first[0].id.to_string()), "{reason}");
    // Another key runs.
    publish_trigger(&env, "shop", "pay", r#"{"key": "order-43"}"#).await?;
    let all = env
        .instances_where("shop", "pay", 2, |s| s.status == InstanceStatus::Success)
        .await?;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        rec.seen().iter().filter(|s| s.params == "second").count(),
        0
    );
    assert_eq!(
        all.iter()
            .filter(|s| s.key.as_deref() == Some("order-42"))
            .count(),
        1
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn backfill_makes_the_slots_instances_once_even_after_they_left_the_live_bucket()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"daily\"\nhandler = \"daily\"\nschedule = { cron = \"0 2 * * *\" }\nenabled = false\n",
    )
    .await?;
    let rec = Recorder::succeeding("daily");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let day = 86_400_000;
    let base = (now().millis() / day - 3) * day + 2 * 3_600_000;
    let slots: Vec<Timestamp> = (0..3).map(|d| Timestamp(base + d * day)).collect();
    for s in &slots {
        backfill(&env, "shop", "daily", *s).await?;
    }
    let done = env
        .instances_where("shop", "daily", 3, |s| s.status == InstanceStatus::Success)
        .await?;
    for s in &slots {
        let id = InstanceId::for_fire("shop", "daily", *s);
        let inst = done.iter().find(|i| i.id == id);
        assert!(inst.is_some_and(|i| i.trigger == TriggerKind::Backfill && i.scheduled_at == *s));
    }
    // Forget the first slot's live keys entirely, as an expired purge marker would.
    let first = InstanceId::for_fire("shop", "daily", slots[0]);
    let key = env.nats.topo.instance_key("shop", "daily", &first);
    let buckets = env.nats.buckets().await?;
    let (store, k) = (&buckets.instances, &key);
    antares_nats::wait::wait_for(
        "the first slot to move to history",
        support::WAIT,
        || async move {
            kv::get::<antares_schemas::instance::InstanceSummary>(store, k, "instance")
                .await
                .ok()
                .and_then(|v| v.is_none().then_some(()))
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    buckets
        .instances
        .stream
        .purge()
        .filter(
            env.nats
                .topo
                .kv_subject(&env.nats.topo.instances_bucket(), &key),
        )
        .await?;
    // Backfilling the same slots again runs none of them; a new slot still runs.
    for s in &slots {
        backfill(&env, "shop", "daily", *s).await?;
    }
    let fourth = Timestamp(base + 3 * day);
    backfill(&env, "shop", "daily", fourth).await?;
    env.instances_where("shop", "daily", 4, |s| s.status == InstanceStatus::Success)
        .await?;
    let runs = rec.seen();
    assert_eq!(runs.len(), 4, "each slot ran once: {runs:?}");
    env.stop().await;
    Ok(())
}

/// Writes a job's cursor as a scheduler that fired long ago would have left it.
async fn set_cursor(env: &Env, app: &str, job: &str, at: Timestamp) -> anyhow::Result<()> {
    let value = codec::encode("cursor", &at)?;
    kv::write(
        &env.nats,
        Write::put(
            &env.nats.topo.cursors_bucket(),
            env.nats.topo.job_key(app, job),
            value,
            Expect::Any,
        ),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn after_a_day_long_outage_fire_once_runs_the_latest_slot_and_reports_the_rest()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "[[job]]\napp = \"shop\"\nname = \"once\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n\
         [[job]]\napp = \"shop\"\nname = \"all\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n\
         misfire = \"catch_up\"\noverlap = \"parallel\"\nmax_parallel = 50\n\
         [[job]]\napp = \"shop\"\nname = \"none\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\nmisfire = \"skip\"\n",
    )
    .await?;
    let day_ago = Timestamp(now().millis() / 1000 * 1000 - 86_400_000);
    for job in ["once", "all", "none"] {
        set_cursor(&env, "shop", job, day_ago).await?;
    }
    env.run_worker(env.worker("shop")).await?;
    let mut events = env.events("shop", "once").await?;
    let mut skipped = env.events("shop", "none").await?;
    let started = now();
    env.scheduler("s1").await?;
    let misfired = Env::event_where(&mut events, "a misfired summary", |e| {
        e.kind == EventKind::Misfired
    })
    .await?;
    let reason = misfired.reason.unwrap_or_default();
    println!("misfired: {reason}");
    assert!(reason.contains("at least"), "{reason}");
    let once = env
        .instances_where("shop", "once", 1, |s| s.trigger == TriggerKind::Misfire)
        .await?;
    assert_eq!(once.len(), 1, "fire_once runs one missed slot");
    let late_by = started.millis() - once[0].scheduled_at.millis();
    assert!(
        (9_000..13_000).contains(&late_by),
        "the latest late slot, not an old one: {late_by} ms"
    );

    // skip: the missed slots are reported, none runs; the schedule goes on.
    Env::event_where(&mut skipped, "skip's misfired summary", |e| {
        e.kind == EventKind::Misfired
    })
    .await?;
    let none = env
        .instances_where("shop", "none", 2, |s| s.status.is_final())
        .await?;
    assert!(
        none.iter().all(|s| s.trigger == TriggerKind::Every),
        "{none:?}"
    );
    let all = env
        .instances_where("shop", "all", 100, |s| {
            s.trigger == TriggerKind::Misfire && s.status.is_final()
        })
        .await?;
    assert_eq!(
        all.len(),
        antares_scheduler::firing::CATCH_UP_LIMIT,
        "catch_up runs its bound of missed slots"
    );
    let oldest = all
        .iter()
        .map(|s| s.scheduled_at.millis())
        .min()
        .unwrap_or(0);
    assert!(
        started.millis() - oldest < 120_000,
        "catch_up takes the latest missed slots: the oldest is {} s old",
        (started.millis() - oldest) / 1000
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_garbage_cursor_fires_nothing_from_1970() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\nmisfire = \"catch_up\"\n",
    )
    .await?;
    set_cursor(&env, "shop", "tick", Timestamp(0)).await?;
    env.run_worker(env.worker("shop")).await?;
    let since = now();
    env.scheduler("s1").await?;
    env.instances_where("shop", "tick", 2, |s| s.status == InstanceStatus::Success)
        .await?;
    let all = env.instances_where("shop", "tick", 1, |_| true).await?;
    for s in &all {
        assert!(
            s.scheduled_at.millis() > since.millis() - 2000,
            "an instance from the garbage cursor: {s:?}"
        );
        assert_ne!(s.trigger, TriggerKind::Misfire);
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn trigger_overrides_reach_the_shards() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"fan\"\nhandler = \"fan\"\nparams = \"job\"\n",
    )
    .await?;
    let rec = Recorder::succeeding("fan");
    env.run_worker(env.worker("shop").register(rec.clone()))
        .await?;
    env.scheduler("s1").await?;
    let req = TriggerRequest {
        params: Some("over".into()),
        shard_params: Some(antares_schemas::messages::ShardParams::Text("a;b;c".into())),
        ..TriggerRequest::default()
    };
    let id = env.trigger("shop", "fan", &req).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.shard_total, 3);
    let mut seen = rec.seen_for(&id);
    seen.sort_by_key(|s| s.item);
    assert_eq!(
        seen.iter()
            .map(|s| (s.param.as_str(), s.params.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "over"), ("b", "over"), ("c", "over")]
    );
    let req = TriggerRequest {
        shards: Some(4),
        ..TriggerRequest::default()
    };
    let id = env.trigger("shop", "fan", &req).await?;
    assert_eq!(env.finished(&id).await?.summary.shard_total, 4);
    env.stop().await;
    Ok(())
}

/// A job that never fired is due from when it was written: an `at` job whose time
/// passes while no scheduler leads fires once one does (before, a job without a cursor
/// was planned from the moment a scheduler first saw it, and that slot was lost).
#[tokio::test]
async fn a_slot_due_before_any_scheduler_led_still_fires() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let at = Timestamp(now().0 + 1500);
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"once\"\nhandler = \"noop\"\nschedule = {{ at = \"{}\" }}\n",
            at.to_rfc3339()
        ),
    )
    .await?;
    antares_nats::wait::wait_for(
        "the slot to pass",
        std::time::Duration::from_secs(10),
        || async move { (now().0 > at.0 + 500).then_some(()) },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    let made = env
        .instances_where("shop", "once", 1, |s| s.status.is_final())
        .await?;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].scheduled_at, at);
    assert_eq!(made[0].status, InstanceStatus::Success);
    env.stop().await;
    Ok(())
}

/// A fire that fails after its instance was written (here: the claims bucket is gone for
/// a while, so the instance is stored but not its claim) leaves that instance in the
/// store. Once its slot is past the misfire threshold the job's policy (`fire_once`)
/// fires only the latest slot: the instance left behind must still be taken up and run,
/// not stay `pending` until some later takeover.
#[tokio::test]
async fn an_instance_written_by_a_failed_fire_is_still_run() -> anyhow::Result<()> {
    let mut env = Env::ticking().await?;
    env.instances_where("shop", "tick", 1, |s| s.status.is_final())
        .await?;
    let nats = env.connect().await?;
    nats.js
        .delete_stream(format!("KV_{}", nats.topo.claims_bucket()))
        .await?;
    // Fires now write their instance and fail on its claim, again and again, until the
    // first slot tried is past the misfire threshold.
    let threshold = antares_scheduler::firing::MISFIRE_THRESHOLD_MS + 2000;
    let left = env
        .instances_where("shop", "tick", 1, |s| {
            s.status == InstanceStatus::Pending && now().0 - s.scheduled_at.0 > threshold
        })
        .await?;
    antares_nats::provision::provision(&nats, &Default::default()).await?;
    for s in left {
        let ended = env.finished(&s.id).await?;
        assert_eq!(ended.summary.status, InstanceStatus::Success, "{s:?}");
    }
    env.stop().await;
    Ok(())
}
