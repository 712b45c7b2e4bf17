//! Bursts: thousands of jobs due in the same second go through the fire pipeline in
//! batches, and every slot still makes exactly one instance, which starts and ends,
//! also when the leader is SIGKILLed in the middle of the burst. A job firing every
//! second beside the burst (its fires go ahead of the burst's) still makes every one
//! of its slots exactly once.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_scheduler::store::ListQuery;
use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use antares_schemas::limits::MAX_LIST_LIMIT;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::spec::{Dur, JobKind, JobSpec, ScheduleSpec};
use antares_schemas::{InstanceId, Timestamp};
use futures::StreamExt;
use support::{Env, scheduler_process, signal};
use tokio::process::Child;

const APP: &str = "burst";
/// The app of the job firing every second beside the burst.
const TICK_APP: &str = "burst-tick";
/// Jobs due at once.
const JOBS: u32 = 2_000;
/// Their period: every job is due at each multiple of it.
const PERIOD_S: u64 = 30;
/// How long a whole burst may take to start and end (a bound, not a speed figure).
const BURST_WAIT: Duration = Duration::from_secs(180);

fn job_name(i: u32) -> String {
    format!("j{i:04}")
}

async fn apply_burst_jobs(env: &Env) -> anyhow::Result<()> {
    env.admin.create_app(APP, "").await?;
    let specs: Vec<JobSpec> = (0..JOBS)
        .map(|i| JobSpec {
            app: APP.into(),
            name: job_name(i),
            kind: JobKind::Plugin,
            handler: Some("noop".into()),
            schedule: Some(ScheduleSpec {
                every: Some(Dur::from_secs(PERIOD_S)),
                ..ScheduleSpec::default()
            }),
            ..JobSpec::default()
        })
        .collect();
    for chunk in specs.chunks(500) {
        env.admin.apply_jobs(chunk.to_vec()).await?;
    }
    let stored = env.admin.list_jobs(Some(APP)).await?.len();
    anyhow::ensure!(stored == JOBS as usize, "{stored} of {JOBS} jobs stored");
    Ok(())
}

/// `instance_started` events of the app by id, as they arrive.
#[derive(Clone, Default)]
struct Seen {
    started: Arc<Mutex<HashMap<InstanceId, u32>>>,
}

impl Seen {
    async fn follow(env: &Env) -> anyhow::Result<Self> {
        let seen = Self::default();
        let mut sub = env
            .nats
            .client
            .subscribe(env.nats.topo.event_subject(APP, "*"))
            .await?;
        env.nats.flush().await?;
        let s = seen.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Ok(e) = serde_json::from_slice::<Event>(&msg.payload) else {
                    continue;
                };
                let Some(id) = e.instance else { continue };
                if e.kind == EventKind::InstanceStarted
                    && let Ok(mut m) = s.started.lock()
                {
                    *m.entry(id).or_default() += 1;
                }
            }
        });
        Ok(seen)
    }

    /// Slots with their count of started instances.
    fn started_slots(&self) -> BTreeMap<Timestamp, usize> {
        let mut out = BTreeMap::new();
        if let Ok(m) = self.started.lock() {
            for id in m.keys() {
                *out.entry(id.time()).or_default() += 1;
            }
        }
        out
    }

    /// Waits until every job's instance of `slot` is stored as ended, then checks each
    /// one succeeded and started at most once (exactly once with `every_event`: events
    /// are not the record, and a leader killed before sending one loses it).
    async fn slot_done_once(
        &self,
        env: &Env,
        slot: Timestamp,
        every_event: bool,
    ) -> anyhow::Result<()> {
        let ids: Vec<InstanceId> = (0..JOBS)
            .map(|i| InstanceId::for_fire(APP, &job_name(i), slot))
            .collect();
        let ids_ref = &ids;
        let stored = wait_for(
            &format!("all {JOBS} instances of slot {slot} to end"),
            BURST_WAIT,
            || async move {
                let found = stored_at(env, slot).await.ok()?;
                ids_ref
                    .iter()
                    .all(|id| found.get(id).is_some_and(|s| s.status.is_final()))
                    .then_some(found)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e} (started by slot: {:?})", self.started_slots()))?;
        let started = self.started.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
        for id in &ids {
            let s = stored
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("{id} not stored"))?;
            assert_eq!(
                s.status,
                InstanceStatus::Success,
                "instance {id} of slot {slot}"
            );
            let n = started.get(id).copied().unwrap_or(0);
            assert!(n <= 1, "instance {id} started {n} times");
            if every_event {
                assert_eq!(n, 1, "instance {id} has no instance_started event");
            }
        }
        // Nothing else is stored at this slot: each job made one instance of it.
        assert_eq!(stored.len(), ids.len(), "instances stored at slot {slot}");
        Ok(())
    }
}

/// The instances of the app stored at `slot`, by id (running or ended).
async fn stored_at(
    env: &Env,
    slot: Timestamp,
) -> anyhow::Result<HashMap<InstanceId, InstanceSummary>> {
    let mut out = HashMap::new();
    // Ids sort by their time: start just after the slot, newest first.
    let mut before = Some(InstanceId::derive(Timestamp(slot.0 + 1), "after"));
    loop {
        let q = ListQuery {
            app: Some(APP.to_string()),
            limit: MAX_LIST_LIMIT,
            before,
            ..ListQuery::default()
        };
        let page = env.admin.list_instances(&q).await?;
        let done = page.len() < q.limit || page.last().is_some_and(|s| s.id.time() < slot);
        before = page.last().map(|s| s.id);
        out.extend(
            page.into_iter()
                .filter(|s| s.id.time() == slot)
                .map(|s| (s.id, s)),
        );
        if done {
            return Ok(out);
        }
    }
}

/// The first slot every job is surely planned for: one period after the first slot seen.
async fn first_full_slot(seen: &Seen) -> anyhow::Result<Timestamp> {
    let first = wait_for("a first fire", BURST_WAIT, || async move {
        seen.started_slots().keys().next().copied()
    })
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(first.plus(Duration::from_secs(PERIOD_S)))
}

/// A job of its own app firing every second, catching up every slot it misses.
async fn apply_tick_job(env: &Env) -> anyhow::Result<()> {
    env.admin.create_app(TICK_APP, "").await?;
    let spec = JobSpec {
        app: TICK_APP.into(),
        name: "tick".into(),
        kind: JobKind::Plugin,
        handler: Some("noop".into()),
        schedule: Some(ScheduleSpec {
            every: Some(Dur::from_secs(1)),
            ..ScheduleSpec::default()
        }),
        misfire: antares_schemas::spec::Misfire::CatchUp,
        overlap: antares_schemas::spec::Overlap::Parallel,
        max_parallel: 100,
        ..JobSpec::default()
    };
    env.admin.apply_jobs(vec![spec]).await?;
    Ok(())
}

/// Waits until the tick job's instances of every second from `from` to `to` ended, and
/// checks there is exactly one of each, which succeeded.
async fn ticks_done_once(env: &Env, from: Timestamp, to: Timestamp) -> anyhow::Result<()> {
    let want: Vec<Timestamp> = (0..)
        .map(|s| from.plus(Duration::from_secs(s)))
        .take_while(|t| *t <= to)
        .collect();
    let want_ref = &want;
    let found = wait_for(
        &format!("the tick job's instances of {from} to {to} to end"),
        BURST_WAIT,
        || async move {
            let q = ListQuery {
                app: Some(TICK_APP.to_string()),
                limit: MAX_LIST_LIMIT,
                ..ListQuery::default()
            };
            let page = env.admin.list_instances(&q).await.ok()?;
            let mut by_slot: BTreeMap<Timestamp, Vec<InstanceSummary>> = BTreeMap::new();
            for s in page {
                if s.scheduled_at >= from && s.scheduled_at <= to {
                    by_slot.entry(s.scheduled_at).or_default().push(s);
                }
            }
            want_ref
                .iter()
                .all(|t| {
                    by_slot
                        .get(t)
                        .is_some_and(|v| v.iter().all(|s| s.status.is_final()))
                })
                .then_some(by_slot)
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    for t in &want {
        let made = found.get(t).map_or(0, Vec::len);
        assert_eq!(made, 1, "tick instances of slot {t}");
        for s in found.get(t).into_iter().flatten() {
            assert_eq!(s.status, InstanceStatus::Success, "tick instance {}", s.id);
        }
    }
    assert_eq!(
        found.len(),
        want.len(),
        "tick slots made from {from} to {to}"
    );
    Ok(())
}

#[tokio::test]
async fn a_burst_fires_every_slot_once_and_every_instance_starts() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    apply_burst_jobs(&env).await?;
    apply_tick_job(&env).await?;
    let seen = Seen::follow(&env).await?;
    env.run_worker(env.worker(APP).concurrency(512)).await?;
    env.run_worker(env.worker(TICK_APP).concurrency(64)).await?;
    env.scheduler("sched-a").await?;

    let slot = first_full_slot(&seen).await?;
    seen.slot_done_once(&env, slot, true).await?;
    // The seconds around the burst: each made once, none lost behind the burst.
    ticks_done_once(
        &env,
        Timestamp(slot.0 - 3000),
        slot.plus(Duration::from_secs(5)),
    )
    .await?;
    env.admin.set_app_enabled(APP, false).await?;
    env.admin.set_app_enabled(TICK_APP, false).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_leader_killed_mid_burst_loses_and_doubles_no_slot() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    apply_burst_jobs(&env).await?;
    let seen = Seen::follow(&env).await?;
    env.run_worker(env.worker(APP).concurrency(512)).await?;

    let url = env.server.url();
    let mut procs: HashMap<String, Child> = HashMap::new();
    procs.insert("sched-a".into(), scheduler_process(&url, "sched-a")?);
    let env_ref = &env;
    wait_for("sched-a to lead", BURST_WAIT, || async move {
        env_ref.lease_holder().await.filter(|h| h == "sched-a")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    procs.insert("sched-b".into(), scheduler_process(&url, "sched-b")?);

    // The burst: kill the leader as soon as its first instance starts.
    let slot = first_full_slot(&seen).await?;
    let seen_ref = &seen;
    wait_for("the burst to begin", BURST_WAIT, || async move {
        seen_ref
            .started_slots()
            .get(&slot)
            .copied()
            .filter(|n| *n > 0)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let victim = procs
        .get("sched-a")
        .ok_or_else(|| anyhow::anyhow!("sched-a is not running"))?;
    signal(victim, "KILL").await?;
    let at_kill = seen.started_slots().get(&slot).copied().unwrap_or(0);
    eprintln!("sched-a killed with {at_kill} of {JOBS} instances of slot {slot} started");

    wait_for("sched-b to take over", BURST_WAIT, || async move {
        env_ref.lease_holder().await.filter(|h| h == "sched-b")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    // The slot of the kill, and the next one (fired by the new leader alone).
    seen.slot_done_once(&env, slot, false).await?;
    seen.slot_done_once(&env, slot.plus(Duration::from_secs(PERIOD_S)), true)
        .await?;
    env.admin.set_app_enabled(APP, false).await?;
    drop(procs);
    env.stop().await;
    Ok(())
}
