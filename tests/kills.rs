//! Workers that die or freeze in the middle of a shard, with real processes: an
//! `antares scheduler` and two `antares worker`s (one shard at a time each).
//!
//! - SIGKILL: the dead worker's heartbeat runs out, the leader reruns its shard as a new
//!   run on the other worker within seconds (whatever the ack wait), without using up
//!   `retry.max`.
//! - SIGSTOP: a frozen worker loses its shard the same way; when it is resumed and
//!   reports, its report names the old run and is ignored, whether the instance has
//!   ended by then or the newer attempt is still running.

mod support;

use antares_nats::wait::wait_for;
use antares_nats::{codec, now};
use antares_schemas::instance::{Instance, InstanceStatus, ShardStatus};
use antares_schemas::messages::{ReportKind, ShardReport, TriggerRequest};
use antares_schemas::{InstanceId, Timestamp};
use futures::StreamExt;
use std::collections::HashMap;
use support::{Env, WAIT, scheduler_process, signal, worker_process};
use tokio::process::Child;

const APP: &str = "kills";
const WORKERS: [&str; 2] = ["w-a", "w-b"];

/// A server, one scheduler process and two worker processes of [`APP`], with `job`
/// running the stock `sleep` plugin for `pause`.
struct Cluster {
    env: Env,
    _scheduler: Child,
    workers: HashMap<String, Child>,
}

impl Cluster {
    async fn start(job: &str, pause: &str) -> anyhow::Result<Self> {
        let env = Env::start().await?;
        env.apply(
            APP,
            &format!(
                "app = \"{APP}\"\nname = \"{job}\"\nhandler = \"sleep\"\nparams = \"{pause}\"\n"
            ),
        )
        .await?;
        let url = env.server.url();
        let scheduler = scheduler_process(&url, "sched-a")?;
        let mut workers = HashMap::new();
        for id in WORKERS {
            workers.insert(id.to_string(), worker_process(&url, APP, id, 1, false)?);
        }
        let env_ref = &env;
        wait_for("the scheduler to lead", WAIT, || async move {
            env_ref.lease_holder().await.filter(|h| h == "sched-a")
        })
        .await
        .map_err(anyhow::Error::msg)?;
        env.workers_alive(APP, &WORKERS).await?;
        Ok(Self {
            env,
            _scheduler: scheduler,
            workers,
        })
    }

    async fn trigger(&self, job: &str) -> anyhow::Result<InstanceId> {
        self.env.trigger(APP, job, &TriggerRequest::default()).await
    }

    /// Waits until the instance satisfies `pred`; on a timeout the error shows it.
    async fn wait_instance(
        &self,
        id: &InstanceId,
        what: &str,
        pred: impl Fn(&Instance) -> bool,
    ) -> anyhow::Result<Instance> {
        let admin = &self.env.admin;
        let pred = &pred;
        let found = wait_for(what, WAIT, || async move {
            admin.get_instance(id).await.ok().filter(|i| pred(i))
        })
        .await;
        match found {
            Ok(i) => Ok(i),
            Err(e) => {
                let now_seen = match admin.get_instance(id).await {
                    Ok(i) => serde_json::to_string_pretty(&i)?,
                    Err(e) => format!("unreadable: {e}"),
                };
                anyhow::bail!("{e}; instance {id} is now:\n{now_seen}")
            }
        }
    }

    /// Waits until the instance's only shard runs (its start reported) and returns the
    /// worker running it.
    async fn running_worker(&self, id: &InstanceId) -> anyhow::Result<String> {
        let inst = self
            .wait_instance(id, "the shard to run on a worker", |i| {
                i.shards
                    .first()
                    .is_some_and(|s| s.status == ShardStatus::Running && s.worker.is_some())
            })
            .await?;
        inst.shards
            .first()
            .and_then(|s| s.worker.clone())
            .ok_or_else(|| anyhow::anyhow!("no worker on a running shard"))
    }

    /// Waits until the shard runs again, as run 2, on `worker`.
    async fn rerun_on(&self, id: &InstanceId, worker: &str) -> anyhow::Result<Instance> {
        self.wait_instance(
            id,
            &format!("the shard to run again (run 2) on {worker}"),
            |i| {
                i.shards.first().is_some_and(|s| {
                    s.run >= 2
                        && s.worker.as_deref() == Some(worker)
                        && s.status != ShardStatus::Pending
                })
            },
        )
        .await
    }

    async fn ended(&self, id: &InstanceId) -> anyhow::Result<Instance> {
        self.wait_instance(id, "the instance to end", |i| i.summary.status.is_final())
            .await
    }

    fn worker(&self, id: &str) -> anyhow::Result<&Child> {
        self.workers
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("worker {id} is not ours"))
    }
}

fn other(worker: &str) -> &'static str {
    if worker == WORKERS[0] {
        WORKERS[1]
    } else {
        WORKERS[0]
    }
}

/// Asserts what a shard that ran once, lost its worker and ran again on `survivor` to
/// success looks like.
fn assert_one_rerun(inst: &Instance, survivor: &str) {
    let json = serde_json::to_string_pretty(inst).unwrap_or_default();
    assert_eq!(
        inst.summary.status,
        InstanceStatus::Success,
        "the instance ends success after the rerun: {json}"
    );
    let shard = &inst.shards[0];
    assert_eq!(shard.status, ShardStatus::Success, "{json}");
    assert_eq!(
        shard.worker.as_deref(),
        Some(survivor),
        "the rerun ran on the other worker: {json}"
    );
    assert_eq!(shard.run, 2, "one rerun makes run 2: {json}");
    assert_eq!(shard.reruns, 1, "one rerun recorded: {json}");
    assert_eq!(shard.retries, 0, "a rerun uses up no retry: {json}");
    assert_eq!(shard.attempts, 2, "the rerun is attempt 2: {json}");
    assert_eq!(shard.error, None, "a success carries no error: {json}");
}

/// A subscription to the reports on one instance, to see a resumed worker's report go by.
async fn watch_reports(
    env: &Env,
    id: &InstanceId,
    job: &str,
) -> anyhow::Result<async_nats::Subscriber> {
    let filter = env.nats.topo.instance_results_filter(APP, job, id);
    Ok(env.nats.client.subscribe(filter).await?)
}

/// Waits for `worker` to report the end of run 1 of item 0.
async fn stale_report(
    sub: &mut async_nats::Subscriber,
    worker: &str,
) -> anyhow::Result<ShardReport> {
    let wait = async {
        while let Some(msg) = sub.next().await {
            let Ok(report) = codec::decode::<ShardReport>("shard report", &msg.payload) else {
                continue;
            };
            if report.worker == worker && matches!(report.kind, ReportKind::Finished { .. }) {
                return Some(report);
            }
        }
        None
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the resumed worker {worker} did not report its old attempt within {WAIT:?}"
            )
        })
}

fn ms_since(t: Option<Timestamp>, since: Timestamp) -> i64 {
    t.map_or(i64::MAX, |t| t.since(since))
}

#[tokio::test]
async fn a_shard_of_a_killed_worker_runs_again_on_the_other_one() -> anyhow::Result<()> {
    let mut c = Cluster::start("long", "4s").await?;
    let id = c.trigger("long").await?;
    let victim = c.running_worker(&id).await?;
    let survivor = other(&victim);

    let mut child = c
        .workers
        .remove(&victim)
        .ok_or_else(|| anyhow::anyhow!("worker {victim} is not ours"))?;
    child.kill().await?;
    let killed_at = now();

    let admin = &c.env.admin;
    let victim_ref = victim.as_str();
    wait_for(
        "the killed worker's heartbeat to vanish",
        WAIT,
        || async move {
            let view = admin.cluster().await.ok()?;
            (!view.workers.iter().any(|w| w.id == victim_ref)).then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let gone_ms = now().since(killed_at);

    let rerun = c.rerun_on(&id, survivor).await?;
    let end = c.ended(&id).await?;
    assert_one_rerun(&end, survivor);
    let rerun_ms = ms_since(rerun.shards[0].started_at, killed_at);
    println!(
        "SIGKILL {victim}: heartbeat gone after {gone_ms} ms; the shard ran again on {survivor} \
         {rerun_ms} ms after the kill (run {}, reruns {}, attempts {}, retries {})",
        end.shards[0].run, end.shards[0].reruns, end.shards[0].attempts, end.shards[0].retries
    );
    assert!(
        (0..15_000).contains(&rerun_ms),
        "the rerun starts within 15 s of the kill; it started {rerun_ms} ms after"
    );
    Ok(())
}

#[tokio::test]
async fn a_frozen_worker_that_wakes_after_the_rerun_ended_changes_nothing() -> anyhow::Result<()> {
    let c = Cluster::start("frozen", "6s").await?;
    let id = c.trigger("frozen").await?;
    let frozen = c.running_worker(&id).await?;
    let survivor = other(&frozen);
    signal(c.worker(&frozen)?, "STOP").await?;
    let stopped_at = now();

    let rerun = c.rerun_on(&id, survivor).await?;
    let end = c.ended(&id).await?;
    assert_one_rerun(&end, survivor);

    // Wake it: its sleep is long over, so it reports the end of its (run 1) attempt.
    let mut reports = watch_reports(&c.env, &id, "frozen").await?;
    let before = c.env.results_last_seq().await?;
    signal(c.worker(&frozen)?, "CONT").await?;
    let stale = stale_report(&mut reports, &frozen).await?;
    assert_eq!(
        stale.run, 1,
        "the resumed worker reports its old run: {stale:?}"
    );
    c.env.results_settled_after(before).await?;
    c.env.workers_alive(APP, &[frozen.as_str()]).await?;

    let after = c.env.admin.get_instance(&id).await?;
    assert_eq!(
        after, end,
        "the stale report of {frozen} changed the ended instance"
    );
    println!(
        "SIGSTOP {frozen}: the shard ran again on {survivor} {} ms after the freeze; \
         after SIGCONT its report (run {}, attempt {}) was ignored and the instance stayed \
         success on {survivor}",
        ms_since(rerun.shards[0].started_at, stopped_at),
        stale.run,
        stale.attempt
    );
    Ok(())
}

#[tokio::test]
async fn a_frozen_worker_that_wakes_during_the_rerun_is_fenced_off() -> anyhow::Result<()> {
    let c = Cluster::start("fenced", "6s").await?;
    let id = c.trigger("fenced").await?;
    let frozen = c.running_worker(&id).await?;
    let survivor = other(&frozen);
    signal(c.worker(&frozen)?, "STOP").await?;
    let stopped_at = now();

    let rerun = c.rerun_on(&id, survivor).await?;
    // Wake it while the rerun still runs: its own sleep ends first and it reports.
    let mut reports = watch_reports(&c.env, &id, "fenced").await?;
    let before = c.env.results_last_seq().await?;
    signal(c.worker(&frozen)?, "CONT").await?;
    let stale = stale_report(&mut reports, &frozen).await?;
    assert_eq!(
        stale.run, 1,
        "the resumed worker reports its old run: {stale:?}"
    );
    c.env.results_settled_after(before).await?;

    let during = c.env.admin.get_instance(&id).await?;
    let json = serde_json::to_string_pretty(&during).unwrap_or_default();
    assert_eq!(
        during.summary.status,
        InstanceStatus::Running,
        "the stale report must not end the instance while the rerun runs: {json}"
    );
    let shard = &during.shards[0];
    assert_eq!(shard.status, ShardStatus::Running, "{json}");
    assert_eq!(shard.worker.as_deref(), Some(survivor), "{json}");
    assert_eq!((shard.run, shard.attempts), (2, 2), "{json}");

    let end = c.ended(&id).await?;
    assert_one_rerun(&end, survivor);
    assert!(
        end.shards[0].finished_at.is_some_and(|f| f >= stale.at),
        "the recorded end is the rerun's, after the stale report"
    );
    println!(
        "SIGSTOP {frozen}: the shard ran again on {survivor} {} ms after the freeze; its \
         report of run 1 arrived while run 2 ran and was ignored; run 2 ended it success",
        ms_since(rerun.shards[0].started_at, stopped_at),
    );
    Ok(())
}
