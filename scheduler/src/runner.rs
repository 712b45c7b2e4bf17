//! The scheduler process: standby until it holds the lease, then the work loop.
//!
//! ```text
//!            lease taken                       lease lost / shutdown
//!  standby ──────────────▶ leading (work loop) ─────────────────────▶ standby / exit
//! ```
//!
//! The work loop is one task that owns all leader state (apps and jobs, timers, the
//! running instances), so nothing needs a lock; it waits on whichever comes first: a
//! shutdown, a leadership change, an edit of an app or job, the next fire time, a batch
//! of results, or a trigger.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use antares_nats::connect::Buckets;
use antares_nats::kv::{self, Expect, Write};
use antares_nats::queue::{self, ConsumerSpec};
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::Timestamp;
use antares_schemas::instance::{NewInstance, TriggerKind};
use antares_schemas::messages::{Event, EventKind};
use async_nats::jetstream::stream::Stream as JsStream;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::error::SchedulerError;
use crate::events;
use crate::firing::{self, Timers};
use crate::jobs::{self, Catalog, Change};
use crate::leader::{self, Leadership, LeaseSettings};
use crate::store::{InstanceStore, Stored};

/// How a scheduler runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Unique id; `<host>-<pid>-<random>` when `None`.
    pub id: Option<String>,
    /// Lease time to live (use >= 10 s on an R3 cluster).
    pub lease_ttl: Duration,
    /// How often the lease is renewed (or a standby retries).
    pub lease_renew: Duration,
    /// Number of job partitions (one lease each); 1 for now.
    pub partitions: u32,
    /// How often the scheduler's heartbeat is written.
    pub heartbeat: Duration,
    /// Most results folded in one batch.
    pub results_batch: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            id: None,
            lease_ttl: Duration::from_secs(3),
            lease_renew: Duration::from_secs(1),
            partitions: 1,
            heartbeat: Duration::from_secs(1),
            results_batch: 1000,
        }
    }
}

/// A unique id for this process.
pub fn default_id() -> String {
    let host = antares_schemas::names::sanitize_token(&leader::hostname());
    let suffix: u32 = rand::random::<u32>() % 0x100_0000;
    format!("{host}-{}-{suffix:06x}", std::process::id())
}

/// Runs a scheduler until `shutdown` resolves.
pub async fn run(
    nats: Nats,
    opts: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SchedulerError> {
    if opts.partitions != 1 {
        return Err(SchedulerError::Invalid(
            "partitions: only 1 partition is supported in this version".into(),
        ));
    }
    if opts.lease_renew >= opts.lease_ttl {
        return Err(SchedulerError::Invalid(format!(
            "--lease-renew ({:?}) must be shorter than --lease-ttl ({:?})",
            opts.lease_renew, opts.lease_ttl
        )));
    }
    let id = opts.id.clone().unwrap_or_else(default_id);
    antares_schemas::names::check_worker_id(&id)?;
    let buckets = nats.buckets().await?;
    let store = InstanceStore::open(&nats).await?;
    let shards_stream = nats.stream(&nats.topo.shards_stream()).await?;

    let (lead_tx, mut lead_rx) = watch::channel(Leadership::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let lease_task = tokio::spawn(leader::keep_lease(
        nats.clone(),
        LeaseSettings {
            id: id.clone(),
            ttl: opts.lease_ttl,
            renew: opts.lease_renew,
            heartbeat: opts.heartbeat,
        },
        lead_tx,
        stop_rx,
    ));
    tracing::info!(%id, "scheduler started; standing by until it holds the lease");

    let mut shutdown = Box::pin(shutdown);
    let result = loop {
        // Standby.
        let leading = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = lead_rx.wait_for(Leadership::is_leading) => r.is_ok(),
        };
        if !leading {
            break Ok(());
        }
        let mut state = Leading {
            nats: nats.clone(),
            buckets: buckets.clone(),
            store: store.clone(),
            shards_stream: shards_stream.clone(),
            catalog: Catalog::default(),
            timers: Timers::default(),
            live: HashMap::new(),
            leadership: lead_rx.clone(),
            lost: false,
            results_batch: opts.results_batch.max(1),
        };
        match state.lead(&mut shutdown).await {
            Ok(Exit::Shutdown) => break Ok(()),
            Ok(Exit::Lost) => {
                // Either the lease is gone (we wait for it again), or another scheduler
                // wrote while we held it: start over from what is stored.
                tracing::warn!(%id, "stopped leading; starting over from the stored state");
                tokio::select! {
                    _ = &mut shutdown => break Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "leading failed; standing by and retrying");
                tokio::select! {
                    _ = &mut shutdown => break Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    let _ = lease_task.await;
    let _ = nats.flush().await;
    tracing::info!(%id, "scheduler stopped");
    result
}

/// Why the work loop ended.
pub(crate) enum Exit {
    Shutdown,
    Lost,
}

/// Everything the leader owns.
pub(crate) struct Leading {
    pub(crate) nats: Nats,
    pub(crate) buckets: Buckets,
    pub(crate) store: InstanceStore,
    pub(crate) shards_stream: JsStream,
    pub(crate) catalog: Catalog,
    pub(crate) timers: Timers,
    pub(crate) live: HashMap<InstanceId, Stored>,
    pub(crate) leadership: watch::Receiver<Leadership>,
    /// Set when this round of leading must end: another scheduler wrote, or work failed
    /// that a fresh start from the stored state will redo.
    pub(crate) lost: bool,
    pub(crate) results_batch: usize,
}

impl Leading {
    /// Whether we may still act as leader.
    pub(crate) fn leading(&self) -> bool {
        !self.lost && self.leadership.borrow().is_leading()
    }

    async fn lead<S: Future<Output = ()> + Unpin>(
        &mut self,
        shutdown: &mut S,
    ) -> Result<Exit, SchedulerError> {
        let topo = self.nats.topo.clone();
        // What the jobs are, then follow every change.
        let (catalog, marks) =
            jobs::snapshot(&self.nats, &self.buckets.apps, &self.buckets.jobs).await?;
        self.catalog = catalog;
        let (change_tx, mut changes) = mpsc::channel::<Change>(1024);
        let watcher = tokio::spawn(jobs::watch(
            self.buckets.apps.clone(),
            self.buckets.jobs.clone(),
            marks,
            change_tx,
        ));
        let _watcher = AbortOnDrop(watcher);

        // Finish what a previous leader left, then plan every schedule.
        self.recover().await?;
        self.plan_all().await;
        if self.lost {
            return Ok(Exit::Lost);
        }

        let triggers = queue::durable(
            &self.nats,
            &ConsumerSpec {
                stream: topo.triggers_stream(),
                durable: topo.triggers_consumer(),
                filter: None,
                ack_wait: Duration::from_secs(5),
                max_ack_pending: 1000,
            },
        )
        .await?;
        let results = queue::durable(
            &self.nats,
            &ConsumerSpec {
                stream: topo.results_stream(),
                durable: topo.results_consumer(),
                filter: None,
                ack_wait: Duration::from_secs(5),
                max_ack_pending: 50_000,
            },
        )
        .await?;
        let mut triggers = triggers
            .stream()
            .max_messages_per_batch(100)
            .messages()
            .await
            .map_err(|e| NatsError::op("pull triggers", e))?;
        let mut results = results
            .stream()
            .max_messages_per_batch(self.results_batch)
            .messages()
            .await
            .map_err(|e| NatsError::op("pull results", e))?
            .ready_chunks(self.results_batch);
        tracing::info!("leading: schedules planned, consuming triggers and results");

        // Reports wait up to RESULTS_LINGER (or until a full batch) so that one round of
        // KV writes covers many of them.
        let mut pending: Vec<async_nats::jetstream::Message> = Vec::new();
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            let next_fire = self.timers.earliest();
            let wait = next_fire.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(u64::try_from(t.since(now())).unwrap_or(0))
            });
            tokio::select! {
                biased;
                _ = &mut *shutdown => break Exit::Shutdown,
                r = self.leadership.changed() => {
                    if r.is_err() || !self.leading() {
                        break Exit::Lost;
                    }
                }
                Some(change) = changes.recv() => {
                    for (app, job) in self.catalog.apply(change) {
                        self.replan(&app, &job).await;
                    }
                }
                _ = tokio::time::sleep(wait), if next_fire.is_some() => {
                    self.fire_due().await;
                }
                Some(batch) = results.next() => {
                    for m in batch {
                        match m {
                            Ok(m) => pending.push(m),
                            Err(e) => tracing::debug!(error = %e, "results pull hiccup"),
                        }
                    }
                    if pending.len() >= self.results_batch {
                        flush_at = None;
                        if self.on_results(std::mem::take(&mut pending)).await.is_err() {
                            break Exit::Lost;
                        }
                    } else if !pending.is_empty() && flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + RESULTS_LINGER);
                    }
                }
                _ = sleep_until_opt(flush_at), if flush_at.is_some() => {
                    flush_at = None;
                    if self.on_results(std::mem::take(&mut pending)).await.is_err() {
                        break Exit::Lost;
                    }
                }
                _ = upkeep.tick() => self.upkeep().await,
                Some(msg) = triggers.next() => {
                    match msg {
                        Ok(m) => self.on_trigger(m).await,
                        Err(e) => tracing::debug!(error = %e, "triggers pull hiccup"),
                    }
                }
            }
            if self.lost {
                break Exit::Lost;
            }
        };
        // Reports held for the next batch go back at once, for whoever leads next.
        for msg in pending {
            let _ = queue::settle(&msg, queue::Settle::Nak(None)).await;
        }
        Ok(exit)
    }

    /// Retries what an earlier step could not finish: ended instances whose move to
    /// history failed.
    async fn upkeep(&mut self) {
        let ended: Vec<InstanceId> = self
            .live
            .iter()
            .filter(|(_, s)| s.instance.summary.status.is_final())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            self.run_effects(id, vec![antares_schemas::machine::Effect::Finished])
                .await;
        }
    }

    async fn cursor(&self, app: &str, job: &str) -> Option<Timestamp> {
        match kv::get::<Timestamp>(
            &self.buckets.cursors,
            &self.nats.topo.job_key(app, job),
            "cursor",
        )
        .await
        {
            Ok(v) => v.map(|v| v.value),
            Err(e) => {
                tracing::warn!(app, job, error = %e, "cursor unreadable; planning from now");
                None
            }
        }
    }

    /// Plans every job after a takeover, from its cursor and misfire policy.
    async fn plan_all(&mut self) {
        self.timers.clear();
        let at = now();
        for (app, job) in self.catalog.job_names() {
            if !self.catalog.schedule_active(&app, &job) {
                continue;
            }
            let Some(entry) = self.catalog.job(&app, &job) else {
                continue;
            };
            let Some(schedule) = entry.schedule.clone() else {
                continue;
            };
            let misfire = entry.spec.misfire;
            let cursor = self.cursor(&app, &job).await;
            let plan = firing::plan(&schedule, misfire, cursor, at);
            for slot in &plan.missed {
                let mut e = Event::new(EventKind::Misfired, &app, &job, None, at);
                e.reason = Some(format!(
                    "fire due at {slot} was missed while no scheduler ran"
                ));
                events::emit(&self.nats, &e).await;
            }
            for (slot, kind) in plan.fire {
                self.fire(&app, &job, slot, kind).await;
            }
            self.timers.set(&app, &job, plan.next);
        }
    }

    /// Re-plans one job after its spec or its app changed: from now on, no catching up.
    async fn replan(&mut self, app: &str, job: &str) {
        let next = if self.catalog.schedule_active(app, job) {
            self.catalog
                .job(app, job)
                .and_then(|e| e.schedule.as_ref())
                .and_then(|s| s.next_after(Timestamp(now().0 - 1)))
        } else {
            None
        };
        self.timers.set(app, job, next);
    }

    async fn fire_due(&mut self) {
        for (slot, app, job) in self.timers.take_due(now()) {
            let Some(entry) = self.catalog.job(&app, &job) else {
                continue;
            };
            let Some(schedule) = entry.schedule.clone() else {
                continue;
            };
            if self.catalog.schedule_active(&app, &job) {
                self.fire(&app, &job, slot, schedule.trigger_kind()).await;
            }
            self.timers.set(&app, &job, schedule.next_after(slot));
        }
    }

    /// Creates the instance of one scheduled slot (once, whoever tries) and moves the cursor.
    async fn fire(&mut self, app: &str, job: &str, slot: Timestamp, kind: TriggerKind) {
        if !self.leading() {
            return;
        }
        let Some(entry) = self.catalog.job(app, job) else {
            return;
        };
        let items = match entry.spec.shard_items(&Default::default()) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(app, job, error = %e, "job cannot fire");
                return;
            }
        };
        let new = NewInstance {
            id: InstanceId::for_fire(app, job, slot),
            app: app.to_string(),
            job: job.to_string(),
            trigger: kind,
            scheduled_at: slot,
            params: entry.spec.params.clone(),
            exec: entry.spec.execution(),
            timeout_ms: entry.spec.timeout_ms(),
            shard_params: items,
            retry: entry.spec.retry_policy(),
            parent: None,
            depth: 0,
            key: None,
        };
        match self.launch(new).await {
            Ok(Some(id)) => tracing::debug!(app, job, %id, %slot, "fired"),
            Ok(None) => tracing::debug!(app, job, %slot, "already fired"),
            Err(e) => {
                // Start leading over: the cursor still points before this slot, so the
                // fresh plan fires it again (its id is the same, so never twice).
                tracing::error!(app, job, %slot, error = %e, "fire failed; will retry");
                self.lost = true;
                return;
            }
        }
        let key = self.nats.topo.job_key(app, job);
        let cursors = self.buckets.cursors.name.clone();
        match codec::encode("cursor", &slot) {
            Ok(v) => {
                if let Err(e) =
                    kv::write(&self.nats, Write::put(&cursors, key, v, Expect::Any)).await
                {
                    tracing::warn!(app, job, error = %e, "cursor not saved");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cursor not encoded"),
        }
    }
}

/// How often [`Leading::upkeep`] runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long the first report of a batch may wait for others before they are folded.
const RESULTS_LINGER: Duration = Duration::from_millis(3);

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
