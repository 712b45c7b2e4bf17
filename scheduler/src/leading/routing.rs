//! Where shard items go: the app's queue, or one worker's own subject.
//!
//! The leader keeps every app's live workers in memory ([`Registry`]), read from the
//! workers bucket by the rescue scan (every second) — never a round trip per item. Each
//! publication is planned from it ([`Leading::plan`]):
//! - `pull`, no pinning, and every live worker of the app can run the job: the
//!   app's queue (`<ns>.shard.<app>...`), where any free worker pulls the next item;
//!   except the first publication of an urgent fire's small instance (its job fires
//!   again within seconds, see [`super::fires`]): the app's queue is first in, first
//!   out, and a 1 s cron queued behind a burst or a 100,000-item launch of the same app
//!   would wait for all of it. Those items go to the worker with the most free slots
//!   (the least loaded when all are full), on its own subject, which a worker serves
//!   before the app's queue;
//! - otherwise one worker per item, chosen by [`crate::routing::choose`] among the live
//!   workers that can run it (and are pinned, if the job pins), and sent to its own
//!   subject (`<ns>.direct.<app>.<worker>...`); `failover` is confirmed at publication
//!   by a ping each candidate must answer (off the leader's loop), in id order;
//! - no live worker can take it: the item waits here ([`Leading::unrouted`]) and goes
//!   out when the scan sees one that can (the rescue tick says `no_worker` meanwhile).
//!
//! A worker that stops beating leaves its items on its own subject, which nobody else
//! reads. The scan finds them ([`Leading::targets`], rebuilt from the stream at a
//! takeover), purges that worker's subject and publishes each waiting item again as a
//! new run for another worker (the old run's reports, should the worker wake up, are
//! stale); a shard it was running is rerun by the lost-worker rule.

use std::collections::{BTreeSet, HashMap, HashSet};

use antares_nats::{NatsError, now};
use antares_schemas::InstanceId;
use antares_schemas::cluster::WorkerInfo;
use antares_schemas::instance::{InstanceSummary, ShardStatus};
use antares_schemas::machine::{self, Effect, Input};
use antares_schemas::messages::Execution;
use antares_schemas::spec::Routing;
use futures::StreamExt;

use super::{Leading, Stop};
use crate::routing::{Candidate, Usage, choose};
use crate::store::Dirty;

/// The live workers the leader routes to, by app, sorted by id.
#[derive(Debug, Default)]
pub(super) struct Registry {
    by_app: HashMap<String, Vec<WorkerInfo>>,
    /// Items sent to a worker since its beat was read (its free slots are that fewer).
    sent: HashMap<(String, String), u32>,
    /// Shards the leader knows a worker holds (running there, or waiting on its own
    /// subject), as of the last scan: a beat may not show them yet.
    busy: HashMap<(String, String), u32>,
    /// Per job: turns and use counts of its routing.
    usage: HashMap<(String, String), Usage>,
}

impl Registry {
    /// Takes a fresh read of the workers bucket.
    pub(super) fn refresh(&mut self, workers: Vec<WorkerInfo>) {
        let mut by_app: HashMap<String, Vec<WorkerInfo>> = HashMap::new();
        for w in workers {
            by_app.entry(w.app.clone()).or_default().push(w);
        }
        for list in by_app.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        self.by_app = by_app;
        self.sent.clear();
        for ((app, _), usage) in &mut self.usage {
            let live: HashSet<&str> = self
                .by_app
                .get(app)
                .map(|l| l.iter().map(|w| w.id.as_str()).collect())
                .unwrap_or_default();
            usage.retain(&live);
        }
    }

    /// The live workers of an app.
    pub(super) fn of_app(&self, app: &str) -> &[WorkerInfo] {
        self.by_app.get(app).map_or(&[], Vec::as_slice)
    }

    /// Whether an app has live workers and every one of them holds a task until its
    /// `not_before` (so its fires may be queued ahead of their slot).
    pub(super) fn all_hold(&self, app: &str) -> bool {
        let workers = self.of_app(app);
        !workers.is_empty() && workers.iter().all(|w| w.holds)
    }

    /// Whether a worker of an app is live.
    pub(super) fn is_live(&self, app: &str, worker: &str) -> bool {
        self.of_app(app).iter().any(|w| w.id == worker)
    }

    /// The live workers that can take an instance's shards, sorted by id.
    pub(super) fn capable<'a>(&'a self, s: &'a InstanceSummary) -> Vec<&'a WorkerInfo> {
        self.capable_for(&s.app, &s.exec, &s.workers)
    }

    /// The live workers of `app` that run `exec` (and are among `pinned`, unless empty).
    pub(super) fn capable_for<'a>(
        &'a self,
        app: &str,
        exec: &'a Execution,
        pinned: &'a [String],
    ) -> Vec<&'a WorkerInfo> {
        self.of_app(app)
            .iter()
            .filter(|w| w.can_run(exec) && (pinned.is_empty() || pinned.contains(&w.id)))
            .collect()
    }
}

/// How one publication reaches workers.
#[derive(Debug)]
pub(super) enum Plan {
    /// The app's queue.
    Queue,
    /// These items to these workers; the rest wait for a worker.
    Targeted { to: HashMap<u32, String> },
    /// All items to the first of these workers that answers a ping.
    Failover { order: Vec<String> },
}

/// Most workers a failover publication pings before it tries again later.
pub(super) const FAILOVER_CANDIDATES: usize = 8;

impl Leading {
    /// Where the items of a live instance go now; `urgent`: the first items of an
    /// urgent fire's small instance, which skip the app's queue.
    pub(super) fn plan(&mut self, id: &InstanceId, items: &[u32], urgent: bool) -> Plan {
        let Some(stored) = self.live.get(id) else {
            return Plan::Queue;
        };
        let s = &stored.instance.summary;
        let of_app = self.workers.of_app(&s.app);
        let capable = self.workers.capable(s);
        // Pull items go to the app's queue only while every live worker can run them;
        // with no live worker at all they wait here, so the first worker to come takes
        // them only if it can run them (the scan sees its first beat within a second).
        if s.routing == Routing::Pull
            && s.workers.is_empty()
            && !of_app.is_empty()
            && capable.len() == of_app.len()
            && !urgent
        {
            return Plan::Queue;
        }
        if capable.is_empty() {
            return Plan::Targeted { to: HashMap::new() };
        }
        if s.routing == Routing::Failover {
            let order = capable
                .iter()
                .take(FAILOVER_CANDIDATES)
                .map(|w| w.id.clone())
                .collect();
            return Plan::Failover { order };
        }
        let mut candidates: Vec<Candidate> = capable
            .iter()
            .map(|w| {
                let key = (w.app.clone(), w.id.clone());
                let sent = self.workers.sent.get(&key).copied().unwrap_or(0);
                let held = w
                    .running
                    .max(self.workers.busy.get(&key).copied().unwrap_or(0))
                    .saturating_add(sent);
                Candidate {
                    id: w.id.clone(),
                    free: w.capacity.saturating_sub(held),
                    over: held.saturating_sub(w.capacity),
                }
            })
            .collect();
        let key = format!("{}/{}", s.app, s.job);
        let (app, job, routing) = (s.app.clone(), s.job.clone(), s.routing);
        let usage = self.workers.usage.entry((app.clone(), job)).or_default();
        let mut to = HashMap::new();
        for &item in items {
            if let Some(k) = choose(routing, &key, item, &mut candidates, usage, rand::random()) {
                let worker = candidates[k].id.clone();
                *self
                    .workers
                    .sent
                    .entry((app.clone(), worker.clone()))
                    .or_default() += 1;
                to.insert(item, worker);
            }
        }
        Plan::Targeted { to }
    }

    /// How many shards a broadcast instance gets now: one per live worker of `app` that
    /// can run it (at least one, which waits for a worker).
    pub(super) fn broadcast_width(&self, app: &str, exec: &Execution, pinned: &[String]) -> usize {
        self.workers.capable_for(app, exec, pinned).len().max(1)
    }

    /// Counts what each worker holds by the leader's own records (running shards, and
    /// items waiting on its subject), after a scan.
    pub(super) fn count_busy(&mut self) {
        let mut busy: HashMap<(String, String), u32> = HashMap::new();
        for (id, stored) in &self.live {
            let s = &stored.instance.summary;
            if s.status.is_final() {
                continue;
            }
            let targets = self.targets.get(id);
            for sh in &stored.instance.shards {
                let holder = match sh.status {
                    ShardStatus::Running => sh.worker.as_ref(),
                    ShardStatus::Pending | ShardStatus::Later => {
                        targets.and_then(|t| t.get(&sh.item))
                    }
                    _ => None,
                };
                if let Some(w) = holder {
                    *busy.entry((s.app.clone(), w.clone())).or_default() += 1;
                }
            }
        }
        self.workers.busy = busy;
    }

    /// Notes where items went.
    pub(super) fn record_targets(&mut self, id: InstanceId, to: Vec<(u32, String)>) {
        if to.is_empty() {
            return;
        }
        let entry = self.targets.entry(id).or_default();
        for (item, worker) in to {
            entry.insert(item, worker);
        }
    }

    /// After a scan of the heartbeats: items waiting on a worker that is gone move to
    /// another, and items that waited for any worker go out when one can take them.
    pub(super) async fn route_again(&mut self) {
        self.reroute_gone().await;
        let waiting: Vec<(InstanceId, Vec<u32>)> = self
            .unrouted
            .iter()
            .map(|(id, items)| (*id, items.iter().copied().collect()))
            .collect();
        for (id, items) in waiting {
            let Some(stored) = self.live.get(&id) else {
                self.unrouted.remove(&id);
                continue;
            };
            if stored.instance.summary.status.is_final() {
                self.unrouted.remove(&id);
                continue;
            }
            if self.workers.capable(&stored.instance.summary).is_empty() {
                continue;
            }
            let items: Vec<u32> = items
                .into_iter()
                .filter(|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| stored.instance.shards.get(i))
                        .is_some_and(|s| s.status == ShardStatus::Pending && s.retry_at.is_none())
                })
                .collect();
            self.unrouted.remove(&id);
            if !items.is_empty() {
                self.publish(id, items, 0);
            }
        }
    }

    /// Items waiting (queued, or `later`) on the subject of a worker that is gone are
    /// published again, as a new run, for another worker: the gone worker's subject is
    /// purged once, the instances are saved in one round, then published by instance.
    async fn reroute_gone(&mut self) {
        let mut gone: BTreeSet<(String, String)> = BTreeSet::new();
        let mut moves: HashMap<InstanceId, Vec<u32>> = HashMap::new();
        let mut ended = Vec::new();
        for (id, items) in &mut self.targets {
            let Some(stored) = self.live.get(id) else {
                ended.push(*id);
                continue;
            };
            let s = &stored.instance.summary;
            if s.status.is_final() {
                ended.push(*id);
                continue;
            }
            items.retain(|item, worker| {
                let Some(shard) = usize::try_from(*item)
                    .ok()
                    .and_then(|i| stored.instance.shards.get(i))
                else {
                    return false;
                };
                if shard.status.is_final() {
                    return false;
                }
                if self.workers.is_live(&s.app, worker) {
                    return true;
                }
                gone.insert((s.app.clone(), worker.clone()));
                let waiting = match shard.status {
                    ShardStatus::Pending => shard.retry_at.is_none(),
                    ShardStatus::Later => true,
                    _ => false,
                };
                if waiting {
                    moves.entry(*id).or_default().push(*item);
                }
                false
            });
        }
        for id in ended {
            self.targets.remove(&id);
        }
        if gone.is_empty() {
            return;
        }
        for (app, worker) in &gone {
            tracing::warn!(%app, %worker, "worker gone (no heartbeat): its waiting shard items go to another worker");
            let filter = self.nats.topo.worker_direct_filter(app, worker);
            if let Err(e) = self.shards_stream.purge().filter(filter).await {
                tracing::warn!(%worker, error = %e, "items of a gone worker not purged; their new runs fence them");
            }
        }
        let inputs = moves
            .into_iter()
            .map(|(id, items)| {
                let inputs = items
                    .into_iter()
                    .map(|item| Input::Reroute { item })
                    .collect();
                (id, inputs)
            })
            .collect();
        for (id, items) in self.apply_batch(inputs).await {
            self.publish(id, items, 0);
        }
    }

    /// Steps several instances with several inputs each and saves them in one round;
    /// returns, per saved instance, the items to publish. (Purges are left to the
    /// caller, who purges a whole subject at once.)
    async fn apply_batch(
        &mut self,
        inputs: Vec<(InstanceId, Vec<Input>)>,
    ) -> Vec<(InstanceId, Vec<u32>)> {
        if !self.leading() || inputs.is_empty() {
            return Vec::new();
        }
        let at = now();
        let mut taken = Vec::new();
        let mut publish: HashMap<InstanceId, Vec<u32>> = HashMap::new();
        let mut other_effects: HashMap<InstanceId, Vec<Effect>> = HashMap::new();
        for (id, inputs) in inputs {
            let Some(mut stored) = self.live.remove(&id) else {
                continue;
            };
            let mut dirty = Dirty::default();
            for input in inputs {
                let step = machine::step(&mut stored.instance, &input, at);
                dirty.summary |= step.summary_changed;
                dirty.items(&step.changed_items);
                for effect in step.effects {
                    match effect {
                        Effect::Publish { items } => {
                            publish.entry(id).or_default().extend(items);
                        }
                        Effect::Purge { .. } => {}
                        other => other_effects.entry(id).or_default().push(other),
                    }
                }
            }
            taken.push((id, stored, dirty));
        }
        let outcomes = {
            let mut batch: Vec<(&mut crate::store::Stored, Dirty)> = taken
                .iter_mut()
                .map(|(_, s, d)| (s, std::mem::take(d)))
                .collect();
            self.store.save_many(&mut batch).await
        };
        let mut saved = Vec::new();
        for ((id, stored, _), outcome) in taken.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.live.insert(id, stored);
                    saved.push(id);
                }
                Err(NatsError::WrongRevision { .. }) => {
                    tracing::warn!(instance = %id, "instance written by another scheduler");
                    self.stop(Stop::Conflict);
                }
                Err(e) => {
                    self.stop(Stop::Broken(format!("instance {id} not saved: {e}")));
                }
            }
        }
        let mut out = Vec::new();
        for id in saved {
            if let Some(effects) = other_effects.remove(&id) {
                self.run_effects(id, effects).await;
            }
            if let Some(items) = publish.remove(&id) {
                out.push((id, items));
            }
        }
        out
    }

    /// At a takeover: which queued items wait on which worker's subject, from one read
    /// of the stream's subjects.
    pub(super) async fn load_targets(&mut self) -> Result<(), NatsError> {
        self.targets.clear();
        let topo = self.nats.topo.clone();
        let mut subjects = self
            .shards_stream
            .info_with_subjects(topo.direct_filter())
            .await
            .map_err(|e| NatsError::op("read queued per-worker items", e))?;
        while let Some(entry) = subjects.next().await {
            let (subject, _) =
                entry.map_err(|e| NatsError::op("read queued per-worker items", e))?;
            if let Some((_, worker, _, id, item)) = topo.parse_direct_subject(&subject)
                && self.live.contains_key(&id)
            {
                self.targets
                    .entry(id)
                    .or_default()
                    .insert(item, worker.to_string());
            }
        }
        Ok(())
    }
}
