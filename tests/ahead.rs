//! Fires made ahead of their slot: stored `armed` before it, started at it (never
//! before), once; an edit, a pause or a new schedule made before the slot applies to
//! it; a scheduler killed while one is armed leaves it to the next leader, which starts
//! it once.

mod support;

use std::time::Duration;

use antares_nats::now;
use antares_nats::wait::wait_for;
use antares_schemas::instance::{Instance, InstanceStatus, InstanceSummary};
use antares_schemas::messages::ShardTask;
use futures::StreamExt;
use support::{Env, Recorder, scheduler_process_with};

/// A job of `shop` firing every 4 s with these params.
fn every_4s(name: &str, params: &str) -> String {
    format!(
        "app = \"shop\"\nname = \"{name}\"\nhandler = \"record\"\nparams = \"{params}\"\nschedule = {{ every = \"4s\" }}\n"
    )
}

/// Waits for an instance of a job made ahead of its slot and not started yet.
async fn armed(env: &Env, job: &str) -> anyhow::Result<InstanceSummary> {
    let found = env
        .instances_where("shop", job, 1, |s| {
            s.armed && s.status == InstanceStatus::Pending
        })
        .await?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no armed instance of {job}"))
}

/// Checks that an instance made ahead ran once, from its slot on (its worker began it
/// then, whenever its item arrived).
fn ran_once_at_its_slot(rec: &Recorder, done: &Instance) {
    let began = done.shards.first().and_then(|s| s.started_at);
    let done = &done.summary;
    assert!(
        began.is_some_and(|b| b >= done.scheduled_at),
        "its worker began it at {began:?}, before its slot {}",
        done.scheduled_at
    );
    assert_eq!(done.status, InstanceStatus::Success, "{done:?}");
    assert!(!done.armed, "{done:?}");
    let started = done.started_at.unwrap_or_default();
    assert!(
        started >= done.scheduled_at,
        "started at {started} before its slot {}",
        done.scheduled_at
    );
    assert_eq!(rec.seen_for(&done.id).len(), 1, "it ran once");
}

/// A server with these jobs of `shop` (every 4 s, `record`), a worker recording what
/// it runs, and a scheduler making fires 3 s ahead.
async fn made_ahead(jobs: &[(&str, &str)]) -> anyhow::Result<(Env, Recorder)> {
    let mut env = Env::start().await?;
    for (job, params) in jobs {
        env.apply("shop", &every_4s(job, params)).await?;
    }
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(4))
        .await?;
    env.scheduler_with("s1", |o| antares_scheduler::SchedulerOptions {
        fire_ahead: Duration::from_secs(3),
        ..o
    })
    .await?;
    Ok((env, rec))
}

#[tokio::test]
async fn a_fire_made_ahead_starts_at_its_slot_once() -> anyhow::Result<()> {
    let (mut env, rec) = made_ahead(&[("tick", "p")]).await?;

    let first = armed(&env, "tick").await?;
    // Stored with its claim: found by id alone while it waits for its slot.
    assert_eq!(
        env.admin.get_instance(&first.id).await?.summary.id,
        first.id
    );
    assert!(
        rec.seen_for(&first.id).is_empty(),
        "no item of it runs before its slot"
    );
    let done = env.finished(&first.id).await?;
    ran_once_at_its_slot(&rec, &done);
    let done = done.summary;
    // The next slot is made ahead as well, and runs once.
    let next = env
        .instances_where("shop", "tick", 1, |s| {
            s.scheduled_at > done.scheduled_at && s.armed
        })
        .await?;
    let next_id = next.first().map(|s| s.id).unwrap_or(done.id);
    ran_once_at_its_slot(&rec, &env.finished(&next_id).await?);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_edit_a_pause_or_a_new_schedule_before_the_slot_applies_to_the_fire_made_ahead()
-> anyhow::Result<()> {
    let (mut env, rec) = made_ahead(&[("edited", "old"), ("paused", "p"), ("moved", "p")]).await?;

    let (edited, paused) = (armed(&env, "edited").await?, armed(&env, "paused").await?);
    let moved = armed(&env, "moved").await?;
    env.apply("shop", &every_4s("edited", "new")).await?;
    env.admin.set_job_enabled("shop", "paused", false).await?;
    // Rescheduled to a time its armed slot is not.
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"moved\"\nhandler = \"record\"\nschedule = { cron = \"0 0 1 1 *\" }\n",
    )
    .await?;

    // The edited job's armed instance runs as the job is now, once.
    let done = env.finished(&edited.id).await?;
    ran_once_at_its_slot(&rec, &done);
    let done = done.summary;
    assert_eq!(done.params, "new");
    assert!(rec.seen_for(&done.id).iter().all(|s| s.params == "new"));

    // The paused job's and the rescheduled job's are taken out at their slot: never
    // run, not listed.
    for (job, made) in [("paused", &paused), ("moved", &moved)] {
        let admin = &env.admin;
        let id = made.id;
        wait_for(
            &format!("the {job} job's armed instance to be taken out"),
            Duration::from_secs(20),
            || async move { admin.get_instance(&id).await.is_err().then_some(()) },
        )
        .await
        .map_err(anyhow::Error::msg)?;
        assert!(rec.seen_for(&id).is_empty(), "{job}: its slot ran");
        let listed = env.all_instances("shop", job).await?;
        assert!(
            listed.iter().all(|s| s.scheduled_at < made.scheduled_at),
            "{job}: {}",
            support::describe(&listed)
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_fire_made_ahead_by_a_killed_scheduler_starts_once_under_the_next() -> anyhow::Result<()>
{
    let mut env = Env::start().await?;
    env.apply("shop", &every_4s("tick", "p")).await?;
    let rec = Recorder::succeeding("record");
    env.run_worker(env.worker("shop").register(rec.clone()).concurrency(4))
        .await?;
    let url = env.server.url();
    let ahead = ["--fire-ahead", "3s"];
    let mut first = scheduler_process_with(&url, "sched-a", &ahead)?;
    env.wait_lease("sched-a").await?;
    let _second = scheduler_process_with(&url, "sched-b", &ahead)?;

    // SIGKILL the leader while an instance waits for its slot.
    let made = armed(&env, "tick").await?;
    first.kill().await?;
    let killed_at = now();
    env.wait_lease("sched-b").await?;
    ran_once_at_its_slot(&rec, &env.finished(&made.id).await?);
    // The slots after it fire once each under the new leader.
    let later = env
        .instances_where("shop", "tick", 2, |s| {
            s.status == InstanceStatus::Success && s.scheduled_at > killed_at
        })
        .await?;
    for s in later {
        ran_once_at_its_slot(&rec, &env.finished(&s.id).await?);
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_overlap_of_a_fire_made_ahead_is_decided_at_its_slot() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    for (job, overlap) in [("discarding", "discard"), ("serial", "serial")] {
        env.apply(
            "shop",
            &format!(
                "app = \"shop\"\nname = \"{job}\"\nhandler = \"sleep\"\nparams = \"1500ms\"\n\
                 overlap = \"{overlap}\"\nschedule = {{ every = \"1s\" }}\n"
            ),
        )
        .await?;
    }
    env.run_worker(env.worker("shop").concurrency(4)).await?;
    env.scheduler_with("s1", |o| antares_scheduler::SchedulerOptions {
        fire_ahead: Duration::from_secs(3),
        ..o
    })
    .await?;

    // Made while the one before it was not running yet, skipped at its slot because it
    // was: never run, with the reason.
    let skipped = env
        .instances_where("shop", "discarding", 1, |s| {
            s.status == InstanceStatus::Skipped
        })
        .await?;
    for s in &skipped {
        let reason = s.reason.clone().unwrap_or_default();
        assert!(reason.contains("still running"), "{reason}");
        assert_eq!(s.shard_counts.cancelled, s.shard_total, "{s:?}");
    }
    // Serial: each waits at its slot for the one before it, and they never overlap.
    let done = env
        .instances_where("shop", "serial", 3, |s| s.status == InstanceStatus::Success)
        .await?;
    let mut spans: Vec<(i64, i64)> = done
        .iter()
        .map(|s| {
            (
                s.started_at.map_or(0, |t| t.millis()),
                s.finished_at.map_or(i64::MAX, |t| t.millis()),
            )
        })
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "serial instances overlapped: {spans:?}"
        );
    }
    assert!(
        done.iter()
            .any(|s| s.started_at.is_some_and(|t| t.since(s.scheduled_at) >= 400)),
        "one waited for the one before it: {}",
        support::describe(&done)
    );
    env.stop().await;
    Ok(())
}

/// A fire's items go out ahead of its slot, carrying it as their `not_before`, only when
/// every live worker of the app holds tasks until then; with one that does not (an older
/// worker), they go out at the slot, as plain tasks. Either way the instance is marked
/// running from its slot on. (Nobody takes the items here: the workers are played by
/// hand-written heartbeats, and the queued task is read from the work queue.)
#[tokio::test]
async fn items_go_out_ahead_only_to_workers_that_hold_them_until_the_slot() -> anyhow::Result<()> {
    for holds in [true, false] {
        let mut env = Env::start().await?;
        env.apply(
            "shop",
            "app = \"shop\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"4s\" }\n",
        )
        .await?;
        env.hand_worker_beat("shop", "w1", (0, 4), Duration::from_secs(120), holds)
            .await?;
        env.scheduler_with("s1", |o| antares_scheduler::SchedulerOptions {
            fire_ahead: Duration::from_secs(3),
            ..o
        })
        .await?;
        let made = armed(&env, "tick").await?;
        let slot = made.scheduled_at;
        let topo = &env.nats.topo;
        let filters = [
            topo.instance_shards_filter("shop", "tick", &made.id),
            topo.instance_direct_filter("shop", "tick", &made.id),
        ];
        let stream = env.nats.stream(&topo.shards_stream()).await?;
        let (stream, filters) = (&stream, &filters);
        let msg = wait_for("its item to be queued", support::WAIT, || async move {
            for filter in filters {
                let mut subjects = stream.clone().info_with_subjects(filter).await.ok()?;
                if let Some(Ok((subject, _))) = subjects.next().await {
                    return stream.get_last_raw_message_by_subject(&subject).await.ok();
                }
            }
            None
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let task: ShardTask = antares_nats::codec::decode("shard task", &msg.payload)?;
        let queued_at = msg.time.timestamp_millis();
        if holds {
            assert_eq!(task.not_before, Some(slot), "held until its slot");
        } else {
            assert_eq!(task.not_before, None, "a plain task");
            assert!(
                queued_at >= slot.0,
                "queued at {queued_at}, before its slot {slot}, for a worker that runs it at once"
            );
        }
        let running = env
            .instances_where("shop", "tick", 1, |s| {
                s.id == made.id && s.status == InstanceStatus::Running
            })
            .await?;
        let started = running.first().and_then(|s| s.started_at);
        assert!(
            started.is_some_and(|t| t >= slot),
            "marked running at {started:?}, before its slot {slot}"
        );
        env.stop().await;
    }
    Ok(())
}
