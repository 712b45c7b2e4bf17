//! Applying one input to one instance outside a batch of results, and carrying out what
//! the state machine asks for once its changes are stored.

use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::machine::{self, Effect, Input};
use antares_schemas::messages::StopShards;
use futures::future::BoxFuture;

/// When a stop is said again after the first time (a worker ignores a stop for a shard
/// it no longer runs, so repeats are harmless).
const STOP_REPEATS: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(4),
];

use super::{Leading, Stop};
use crate::events;
use crate::store::{Dirty, Stored};
use std::collections::HashMap;

impl Leading {
    /// Steps one instance, stores the change and carries out its effects. A write that
    /// fails ends this round of leading (the in-memory instance is ahead of the stored
    /// one; the next round starts from the stored state).
    /// (Boxed: finishing an instance can create children, whose overlap policy can apply
    /// inputs to other instances.)
    pub(super) fn apply(&mut self, id: InstanceId, input: Input) -> BoxFuture<'_, ()> {
        Box::pin(self.apply_now(id, input))
    }

    async fn apply_now(&mut self, id: InstanceId, input: Input) {
        if !self.leading() {
            return;
        }
        let Some(stored) = self.live.get_mut(&id) else {
            return;
        };
        let step = machine::step(&mut stored.instance, &input, now());
        if let Some(why) = step.ignored {
            tracing::trace!(instance = %id, why, "input ignored");
            return;
        }
        let mut dirty = Dirty {
            summary: step.summary_changed,
            ..Dirty::default()
        };
        dirty.items(&step.changed_items);
        match self.store.save(stored, dirty).await {
            Ok(()) => self.run_effects(id, step.effects).await,
            Err(NatsError::WrongRevision { .. }) => {
                tracing::warn!(instance = %id, "instance written by another scheduler");
                self.stop(Stop::Conflict);
            }
            Err(e) => {
                self.live.remove(&id);
                self.stop(Stop::Broken(format!("instance {id} not saved: {e}")));
            }
        }
    }

    /// [`Leading::apply`] for many inputs at once (a burst of instances queued or
    /// skipped): each instance is stepped, every change written in one pipelined round,
    /// then the effects carried out. Failures end leading as with `apply`.
    pub(super) async fn apply_many(&mut self, inputs: Vec<(InstanceId, Input)>) {
        self.apply_many_on(inputs, false).await;
    }

    /// [`Leading::apply_many`], written on the lane when `lane` (urgent fires' changes,
    /// which must not wait behind a burst's writes).
    pub(super) async fn apply_many_on(&mut self, inputs: Vec<(InstanceId, Input)>, lane: bool) {
        if !self.leading() || inputs.is_empty() {
            return;
        }
        let at = now();
        let mut order: Vec<InstanceId> = Vec::new();
        let mut work: HashMap<InstanceId, (Stored, Dirty, Vec<machine::Effect>)> = HashMap::new();
        for (id, input) in inputs {
            let (stored, dirty, effects) = match work.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let Some(stored) = self.live.remove(&id) else {
                        continue;
                    };
                    order.push(id);
                    e.insert((stored, Dirty::default(), Vec::new()))
                }
            };
            let step = machine::step(&mut stored.instance, &input, at);
            if let Some(why) = step.ignored {
                tracing::trace!(instance = %id, why, "input ignored");
                continue;
            }
            dirty.summary |= step.summary_changed;
            dirty.items(&step.changed_items);
            effects.extend(step.effects);
        }
        let mut taken: Vec<(InstanceId, Stored, Dirty, Vec<machine::Effect>)> = order
            .into_iter()
            .filter_map(|id| work.remove(&id).map(|(s, d, e)| (id, s, d, e)))
            .collect();
        // Only instances with something to write take a place in the batch.
        let wrote: Vec<bool> = taken.iter().map(|t| !t.2.is_empty()).collect();
        let outcomes = {
            let mut batch: Vec<(&mut Stored, Dirty)> = taken
                .iter_mut()
                .filter(|t| !t.2.is_empty())
                .map(|t| (&mut t.1, std::mem::take(&mut t.2)))
                .collect();
            let store = if lane { &self.lane_store } else { &self.store };
            store.save_many(&mut batch).await
        };
        let mut outcomes = outcomes.into_iter();
        let mut done = Vec::new();
        for ((id, stored, _, effects), wrote) in taken.into_iter().zip(wrote) {
            let res = if wrote {
                outcomes.next().unwrap_or(Ok(()))
            } else {
                Ok(())
            };
            match res {
                Ok(()) => {
                    self.live.insert(id, stored);
                    done.push((id, effects));
                }
                Err(NatsError::WrongRevision { .. }) => {
                    tracing::warn!(instance = %id, "instance written by another scheduler");
                    self.live.insert(id, stored);
                    self.stop(Stop::Conflict);
                }
                Err(e) => self.stop(Stop::Broken(format!("instance {id} not saved: {e}"))),
            }
        }
        for (id, effects) in done {
            self.run_effects(id, effects).await;
        }
    }

    /// Carries out a step's effects, in order, after its state was stored.
    pub(super) async fn run_effects(&mut self, id: InstanceId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Emit(event) => {
                    self.observe(id, &event);
                    events::emit(&self.nats, &event).await;
                }
                Effect::PurgeQueued => {
                    if let Some(s) = self.live.get(&id) {
                        let s = &s.instance.summary;
                        self.purge_instance(&s.app, &s.job, &s.id).await;
                    }
                }
                Effect::Purge { item } => self.purge_item(id, item).await,
                Effect::Publish { items } => self.publish(id, items, 0),
                Effect::RetryAt { item, at } => {
                    self.retries.insert((at, id, item));
                }
                Effect::Stop {
                    item,
                    run,
                    outcome,
                    reason,
                } => {
                    let Some(s) = self.live.get(&id) else {
                        continue;
                    };
                    let s = &s.instance.summary;
                    let stop = StopShards {
                        instance: id,
                        item,
                        run,
                        reason,
                        outcome,
                    };
                    let subject = self.nats.topo.stop_subject(&s.app, &s.job, &id);
                    match codec::encode("stop", &stop) {
                        Ok(body) => {
                            self.send_stop(&subject, body.clone()).await;
                            // Said again a little later, for a worker that was
                            // reconnecting at that moment (stops are core NATS).
                            let now = tokio::time::Instant::now();
                            for after in STOP_REPEATS {
                                self.stops_again
                                    .push((now + after, subject.clone(), body.clone()));
                            }
                        }
                        Err(e) => tracing::warn!(instance = %id, error = %e, "stop not encoded"),
                    }
                }
                Effect::Finished => self.finish(id).await,
            }
        }
    }

    async fn send_stop(&self, subject: &str, body: bytes::Bytes) {
        if let Err(e) = self.nats.client.publish(subject.to_string(), body).await {
            tracing::warn!(%subject, error = %e, "stop not published");
        }
    }

    /// Sends the stops whose repeat is due.
    pub(super) async fn repeat_stops(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stops_again)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.stops_again = later;
        for (_, subject, body) in due {
            self.send_stop(&subject, body).await;
        }
    }

    /// Drops the queued message of one shard item (its publication is void).
    async fn purge_item(&self, id: InstanceId, item: u32) {
        let Some(s) = self.live.get(&id) else {
            return;
        };
        let s = &s.instance.summary;
        let topo = &self.nats.topo;
        // In the app's queue, or on a worker's own subject (whichever worker).
        let mut filters = vec![topo.shard_subject(&s.app, &s.job, &id, item)];
        if s.routing != antares_schemas::spec::Routing::Pull
            || !s.workers.is_empty()
            || self.targets.contains_key(&id)
        {
            filters.push(topo.item_direct_filter(&s.app, &s.job, &id, item));
        }
        for filter in filters {
            if let Err(e) = self.shards_stream.purge().filter(filter).await {
                tracing::warn!(instance = %id, item, error = %e, "queued shard item not purged");
            }
        }
    }
}
