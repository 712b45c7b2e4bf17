//! The leader's work loop: one task that owns all leader state, so nothing needs a lock.
//!
//! It waits on whichever comes first: a shutdown, a leadership change, an edit of an app
//! or job, the next fire time, a batch of results, a trigger, a publication finishing in
//! the background, or the maintenance tick. Work that takes long (publishing the shard
//! items of a large instance) runs as futures the loop holds ([`Leading::publishes`]), so
//! the loop stays responsive while it is in flight. Inputs are served fairly, in no set
//! order, except fires: after every turn a slot that fell due, a batch of fires that
//! came back, or an urgent fire's publication that ended, is handled before the next
//! input, so a flood of reports never holds up a fire by more than one turn.
//!
//! The leader's state is private to this module; each step of its work is a file of it:
//! `schedules` (planning from cursors), `fires` (the pipeline that
//! turns due slots into instances in batches), `armed` (instances made ahead of their
//! slot, started at it), `triggers`, `launch` (creating instances and
//! publishing shard items), `routing` (which worker gets each item, and moving items
//! off workers that are gone), `results` (folding reports), `effects` (carrying out what
//! the state machine asks), and the maintenance steps `recover` (taking over what a
//! previous leader left), `rescue` (retries due, attempts past their timeout, shards of
//! lost workers, publications to retry) and `finish` (children, moving ended instances
//! to history in batches beside the loop, admitting the next waiting instance); `quiet`
//! keeps the moments before a slot clear of the steps that can wait (folds, the tick).
//!
//! A round leads one partition of the jobs: it plans only their schedules, loads only
//! their instances, and consumes only their triggers and reports (consumers filtered by
//! the partition token the streams insert). Everything it keeps is keyed by app and job,
//! so rounds of different partitions, in one scheduler or in several, never hold the
//! same instance. A child of a job in another partition is started by a trigger to that
//! job, which its own leader takes.
//!
//! Leading ends with a [`Stop`]: the one way to say why. It ends as soon as the loop sees
//! that its lease lapsed, even for a moment or only by the lease's term: whatever it
//! skipped while not leading (a slot, an input) is redone from the stored state (cursors,
//! shard records) by the next round, never by this one.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use antares_nats::connect::Buckets;
use antares_nats::queue::{self, ConsumerSpec};
use antares_nats::{Nats, NatsError, now};
use antares_schemas::{InstanceId, Timestamp};
use async_nats::jetstream::stream::Stream as JsStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::firing::Timers;
use crate::jobs::Catalog;
use crate::leader::Leadership;
use crate::overlap::Runs;
use crate::store::{InstanceStore, Progress, Stored};
use finish::Archived;
use launch::{Published, Republish};

mod alarms;
mod armed;
mod effects;
mod finish;
mod fires;
mod launch;
mod observe;
mod quiet;
mod recover;
mod rescue;
mod results;
mod routing;
mod schedules;
mod triggers;

/// Why a round of leading ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The process is shutting down.
    Shutdown,
    /// The lease is gone (or its task ended).
    LeaseLost,
    /// Another scheduler wrote an instance we hold: start over from the stored state.
    Conflict,
    /// Something this round relies on broke (a consumer ended, a write failed): start
    /// over from the stored state.
    Broken(String),
}

/// How often the maintenance tick runs.
const TICK: Duration = Duration::from_millis(250);
/// Most ended publications handled in one turn of the loop.
const PUBLISHED_BATCH: usize = 1024;
/// Most urgent reports folded at once (they are few: one per urgent fire's item).
const URGENT_BATCH: usize = 64;

/// Everything the leader owns.
pub(crate) struct Leading {
    nats: Nats,
    /// The partition this round leads.
    partition: u32,
    buckets: std::sync::Arc<Buckets>,
    store: InstanceStore,
    /// The scheduler's second connection, for urgent fires (see `fires`).
    lane: Nats,
    /// The instance store on the lane.
    lane_store: InstanceStore,
    /// Instances of urgent fires whose items have not been published yet: they go by
    /// the lane too.
    lane_ids: std::collections::HashSet<InstanceId>,
    /// Whether urgent fires' tasks ask for urgent reports (the results stream takes
    /// them, and this round reads them first).
    urgent_reports: bool,
    shards_stream: JsStream,
    results_stream: JsStream,
    catalog: Catalog,
    /// Next fire of every scheduled job.
    timers: Timers,
    /// How long before its slot a scheduled fire is made (ms; see `armed`).
    fire_ahead: i64,
    /// Instances made ahead of their slot, by slot: started a little before it (see
    /// `armed`).
    armed: BTreeSet<(Timestamp, InstanceId)>,
    /// Armed instances that start only at their slot (their app has a worker that does
    /// not hold tasks, or their job covers the running ones).
    armed_at_slot: BTreeSet<(Timestamp, InstanceId)>,
    /// Instances whose items went out ahead of their slot (held by the workers until
    /// then), marked running at it; `true` for those of urgent fires (the lane).
    held: BTreeSet<(Timestamp, InstanceId, bool)>,
    /// When the job spec each instance armed by this round was made from was written
    /// (one made from the spec in force at its slot need not be compared with it).
    armed_from: HashMap<InstanceId, Timestamp>,
    /// The last slot fired per job, as stored in the cursors bucket.
    cursors: HashMap<(String, String), Timestamp>,
    /// Slots due, waiting for a batch of the fire pipeline.
    backlog: fires::Backlog,
    /// The fire pipeline's work beside the loop (creating batches, writing cursors).
    firing: JoinSet<fires::FireWork>,
    /// Cursors whose write failed, written again by the tick.
    cursors_unsaved: HashMap<(String, String), Timestamp>,
    /// Jobs whose fire failed: re-planned from their cursor when their timer comes.
    replan: HashMap<(String, String), u32>,
    /// Instances of failed fires that may be stored all the same (see `fires`).
    unsettled: HashMap<InstanceId, fires::Unsettled>,
    /// Every instance that has not moved to history.
    live: HashMap<InstanceId, Stored>,
    /// What this scheduler counts (see `observe`).
    metrics: std::sync::Arc<crate::metrics::SchedulerMetrics>,
    /// Which instances of each job run and which wait (overlap).
    runs: Runs,
    /// Shard retries by due time.
    retries: BTreeSet<(Timestamp, InstanceId, u32)>,
    /// Shard item publications in flight.
    publishes: JoinSet<Published>,
    /// Those of urgent fires (on the lane): handled after every turn, like fires.
    lane_publishes: JoinSet<Published>,
    /// Publications that failed and wait for their backoff.
    republish: Vec<Republish>,
    /// Stops to say again, when.
    stops_again: Vec<(tokio::time::Instant, String, bytes::Bytes)>,
    /// Ended instances whose finish failed: tries so far and when to try again.
    unfinished: HashMap<InstanceId, (u32, tokio::time::Instant)>,
    /// Ended instances whose children fired, waiting for their move to history, with
    /// how far an earlier try got.
    ending: HashMap<InstanceId, Progress>,
    /// The batch of moves to history running (one at a time).
    archiving: JoinSet<Archived>,
    leadership: watch::Receiver<Leadership>,
    /// The lease term this round leads in.
    term: u64,
    /// Set when this round must end.
    stop: Option<Stop>,
    results_batch: usize,
    /// How long an instance waits for a capable worker.
    no_worker_wait: Duration,
    ticks: u64,
    /// Live workers by app, from the last scan of their heartbeats.
    workers: routing::Registry,
    /// Where each item sent to one worker's subject was sent (while it may wait there).
    targets: HashMap<InstanceId, HashMap<u32, String>>,
    /// Items no live worker can take yet, published when one can.
    unrouted: HashMap<InstanceId, BTreeSet<u32>>,
    /// Alarms raised: rate limits, each job's last end, stuck instances.
    alarms: crate::alarm::raise::Alarms,
}

impl Leading {
    /// A leader with nothing loaded yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        [nats, lane]: [&Nats; 2],
        catalog: Catalog,
        partition: u32,
        leadership: watch::Receiver<Leadership>,
        results_batch: usize,
        no_worker_wait: Duration,
        fire_ahead: Duration,
        alarms: &crate::alarm::AlarmOptions,
        metrics: std::sync::Arc<crate::metrics::SchedulerMetrics>,
    ) -> Result<Self, NatsError> {
        let term = leadership.borrow().term;
        Ok(Self {
            lane: lane.clone(),
            lane_store: InstanceStore::open(lane).await?,
            lane_ids: Default::default(),
            urgent_reports: false,
            nats: nats.clone(),
            partition,
            buckets: nats.buckets().await?,
            store: InstanceStore::open(nats).await?,
            shards_stream: nats.stream(&nats.topo.shards_stream()).await?,
            results_stream: nats.stream(&nats.topo.results_stream()).await?,
            catalog,
            timers: Timers::default(),
            fire_ahead: i64::try_from(fire_ahead.as_millis()).unwrap_or(i64::MAX),
            armed: BTreeSet::new(),
            armed_at_slot: BTreeSet::new(),
            held: BTreeSet::new(),
            armed_from: HashMap::new(),
            cursors: HashMap::new(),
            cursors_unsaved: HashMap::new(),
            backlog: fires::Backlog::default(),
            firing: JoinSet::new(),
            replan: HashMap::new(),
            unsettled: HashMap::new(),
            live: HashMap::new(),
            metrics,
            runs: Runs::default(),
            retries: BTreeSet::new(),
            publishes: JoinSet::new(),
            lane_publishes: JoinSet::new(),
            republish: Vec::new(),
            unfinished: HashMap::new(),
            ending: HashMap::new(),
            archiving: JoinSet::new(),
            stops_again: Vec::new(),
            leadership,
            term,
            stop: None,
            results_batch: results_batch.max(1),
            no_worker_wait,
            ticks: 0,
            workers: routing::Registry::default(),
            targets: HashMap::new(),
            unrouted: HashMap::new(),
            alarms: crate::alarm::raise::Alarms::new(nats, alarms.repeat_window),
        })
    }

    /// Whether a job belongs to the partition this round leads.
    fn mine(&self, app: &str, job: &str) -> bool {
        self.nats.topo.partition_of(app, job) == self.partition
    }

    /// When the loop must wake next for fires: a job's next slot less the fire-ahead
    /// time, an armed instance's slot less the queue-ahead time (or its slot), or a held
    /// instance's slot.
    fn next_wake(&self) -> Option<Timestamp> {
        let ahead = self
            .timers
            .earliest()
            .map(|t| Timestamp(t.0.saturating_sub(self.fire_ahead)));
        let armed = self
            .armed
            .first()
            .map(|(t, _)| Timestamp(t.0.saturating_sub(self.queue_ahead())));
        let at_slot = self.armed_at_slot.first().map(|(t, _)| *t);
        let held = self.held.first().map(|(t, _, _)| *t);
        [ahead, armed, at_slot, held].into_iter().flatten().min()
    }

    /// Whether we may still act as leader.
    fn leading(&self) -> bool {
        self.stop.is_none() && self.lease_held()
    }

    /// Whether the lease this round started with is still held, without a lapse.
    fn lease_held(&self) -> bool {
        let l = *self.leadership.borrow();
        l.term == self.term && l.is_leading()
    }

    /// Ends this round of leading (the first reason given wins).
    fn stop(&mut self, why: Stop) {
        if self.stop.is_none() {
            self.stop = Some(why);
        }
    }

    /// Leads until shutdown or until leading must stop.
    pub(crate) async fn lead<S: Future<Output = ()> + Unpin>(&mut self, shutdown: &mut S) -> Stop {
        match self.run(shutdown).await {
            Ok(stop) => stop,
            Err(e) => Stop::Broken(e.to_string()),
        }
    }

    async fn run<S: Future<Output = ()> + Unpin>(
        &mut self,
        shutdown: &mut S,
    ) -> Result<Stop, NatsError> {
        let topo = self.nats.topo.clone();
        // The process keeps the catalog current; learn which of our jobs change from
        // now on (before planning, so no change falls between).
        let mut changes = self.catalog.follow(self.partition);

        // Know the workers before anything is routed; finish what a previous leader
        // left, then plan every schedule.
        self.scan_workers().await;
        self.recover().await?;
        self.plan_all().await?;
        self.start_fires();
        if let Some(stop) = self.stop.take() {
            return Ok(stop);
        }
        if !self.lease_held() {
            return Ok(Stop::LeaseLost);
        }

        let consumer = |stream: String, durable: String, max_ack_pending| ConsumerSpec {
            stream,
            durable,
            filter: None,
            ack_wait: Duration::from_secs(5),
            max_ack_pending,
        };
        let p = self.partition;
        let triggers = queue::durable_filtered(
            &self.nats,
            &consumer(topo.triggers_stream(), topo.triggers_consumer(p), 1000),
            vec![topo.partition_triggers_filter(p)],
        )
        .await?;
        let results = queue::durable_filtered(
            &self.nats,
            &consumer(topo.results_stream(), topo.results_consumer(p), 50_000),
            topo.partition_results_filters(p),
        )
        .await?;
        let urgent_spec = consumer(
            topo.results_stream(),
            topo.urgent_results_consumer(p),
            10_000,
        );
        let mut urgent_results = match self.urgent_results(urgent_spec).await? {
            Some(consumer) => Some(
                consumer
                    .stream()
                    .max_messages_per_batch(URGENT_BATCH)
                    .messages()
                    .await
                    .map_err(|e| NatsError::op("pull urgent results", e))?
                    .ready_chunks(URGENT_BATCH),
            ),
            None => None,
        };
        self.urgent_reports = urgent_results.is_some();
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
        tracing::info!(
            partition = p,
            "leading: schedules planned, consuming triggers and results"
        );
        self.start_archive();

        // Reports wait a little (or until a full batch) so that one round of KV writes
        // covers many of them, and are not folded just before a slot (see `results`).
        let mut folds = results::Folds::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut put_off = false;
        let mut maintain_took = quiet::Took::default();
        let stop = loop {
            let next_fire = self.next_wake();
            let wait = next_fire.map_or(Duration::from_secs(3600), antares_nats::until);
            // Not biased: every input that is ready gets its turn (a flood of reports
            // never starves triggers or fires); leadership is checked after each turn.
            tokio::select! {
                _ = &mut *shutdown => break Stop::Shutdown,
                r = self.leadership.changed() => {
                    if r.is_err() || !self.lease_held() {
                        break Stop::LeaseLost;
                    }
                }
                () = changes.changed() => {
                    for (app, job) in changes.take() {
                        if self.mine(&app, &job) {
                            self.replan_after_edit(&app, &job);
                        }
                    }
                }
                _ = tokio::time::sleep(wait), if next_fire.is_some() => {
                    self.fire_due().await;
                }
                Some(done) = self.publishes.join_next(), if !self.publishes.is_empty() => {
                    self.on_publications(done, false).await;
                }
                Some(done) = self.lane_publishes.join_next(), if !self.lane_publishes.is_empty() => {
                    self.on_publications(done, true).await;
                }
                batch = results.next() => {
                    let Some(batch) = batch else {
                        break Stop::Broken("the results consumer ended".into());
                    };
                    let msgs = batch.into_iter().filter_map(|m| {
                        m.map_err(|e| tracing::debug!(error = %e, "results pull hiccup")).ok()
                    });
                    folds.add(msgs, self.results_batch);
                }
                batch = next_of(&mut urgent_results) => {
                    let Some(batch) = batch else {
                        break Stop::Broken("the urgent results consumer ended".into());
                    };
                    let msgs = batch
                        .into_iter()
                        .filter_map(|m| m.map_err(|e| tracing::debug!(error = %e, "urgent results pull hiccup")).ok())
                        .collect();
                    self.on_results(msgs, true).await;
                }
                _ = sleep_until_opt(folds.at), if folds.at.is_some() => {
                    self.fold(&mut folds).await;
                }
                Some(done) = self.firing.join_next(), if !self.firing.is_empty() => {
                    self.on_fire_joined(done).await;
                }
                Some(done) = self.archiving.join_next(), if !self.archiving.is_empty() => {
                    match done {
                        Ok(done) => self.on_archived(done),
                        Err(e) => break Stop::Broken(format!("a move to history failed: {e}")),
                    }
                }
                _ = tick.tick() => {
                    // Not in the last moments before a slot: it would start late behind
                    // the tick's rounds. Put off once, until just after it.
                    let slot = self.next_slot().filter(|slot| {
                        !put_off && maintain_took.would_run_at(*slot)
                    });
                    match slot {
                        Some(slot) => {
                            put_off = true;
                            tick.reset_after(antares_nats::until(slot) + quiet::AFTER_SLOT);
                        }
                        None => {
                            put_off = false;
                            let started = tokio::time::Instant::now();
                            self.maintain().await;
                            maintain_took.note(started.elapsed());
                        }
                    }
                }
                msg = triggers.next() => match msg {
                    Some(Ok(m)) => self.on_trigger(m).await,
                    Some(Err(e)) => tracing::debug!(error = %e, "triggers pull hiccup"),
                    None => break Stop::Broken("the triggers consumer ended".into()),
                },
            }
            // Fires are due at a time: whichever input this turn served, a slot that fell
            // due or a batch of fires that came back is handled before the next one.
            if self.next_wake().is_some_and(|t| t <= now()) {
                self.fire_due().await;
            }
            while self.stop.is_none()
                && let Some(done) = self.firing.try_join_next()
            {
                self.on_fire_joined(done).await;
            }
            if self.stop.is_none()
                && let Some(done) = self.lane_publishes.try_join_next()
            {
                self.on_publications(done, true).await;
            }
            if let Some(stop) = self.stop.take() {
                break stop;
            }
            // What was skipped while the lease had lapsed (a slot not fired, an input not
            // applied) is redone only from the stored state: a lapse ends the round, also
            // one seen only now, or only by its term (the lease was taken again meanwhile).
            if !self.lease_held() {
                break Stop::LeaseLost;
            }
            // What ended in this turn moves to history in one batch.
            self.start_archive();
        };
        // Reports held for the next batch go back at once, for whoever leads next.
        for msg in folds.msgs {
            let _ = queue::settle(&msg, queue::Settle::Nak(None)).await;
        }
        self.publishes.abort_all();
        self.lane_publishes.abort_all();
        // Fires cut short are made again from the cursors by the next round.
        self.firing.abort_all();
        // A batch cut short leaves its instances in the instances bucket: the next round
        // loads them and moves them again.
        self.archiving.abort_all();
        Ok(stop)
    }
}

/// The next batch of a stream that may be absent (never, then).
async fn next_of<S: futures::Stream + Unpin>(stream: &mut Option<S>) -> Option<S::Item> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
