//! Fires made ahead of their slot, started at it.
//!
//! A fire takes rounds of writes one after the other: its id claimed and its instance
//! stored, its items queued, the instance marked running. Made when the slot comes, all
//! of them fall after it. So a scheduled slot is claimed and its instance stored
//! `pending` and `armed` up to the scheduler's fire-ahead time (250 ms by default)
//! before it, with its cursor moved past it. 100 ms before the slot (at most the
//! fire-ahead time) its admission is decided (overlap policy, as it stands then) and its
//! items are queued with the slot as their `not_before`: the workers hold them until
//! then, so the jobs begin at the slot whatever the rounds cost. At the slot the
//! instance is marked running. Items go out ahead only to an app whose live workers all
//! say they hold tasks (older workers would run them early), and not for a job that
//! covers its running instance (which would be cancelled early); such instances start
//! at their slot.
//!
//! An armed instance is live like any other: a scheduler that takes over finds it and
//! starts it at its slot (at once when that has passed), unless some of its items are
//! out already, which means it was started. At its slot, an instance whose job was
//! paused or deleted meanwhile, or whose schedule no longer has the slot, is taken out
//! of the store (the job did not fire then, and its cursor is past the slot, so nothing
//! makes it again); one whose job was edited otherwise is made again from the job as it
//! is now (same id, same slot) before it starts.

use antares_nats::{NatsError, now};
use antares_schemas::instance::{Instance, InstanceStatus};
use antares_schemas::machine::Input;
use antares_schemas::{InstanceId, Timestamp};

use super::{Leading, Stop};
use crate::overlap::Admission;
use crate::store::{CreateError, Dirty, Stored};

/// Most armed instances of ordinary fires started in one turn of the loop.
const STARTS_PER_TURN: usize = 512;
/// How long before its slot an armed instance is admitted and its items queued, when
/// every live worker of its app holds a task until its `not_before` (at most the
/// fire-ahead time).
const QUEUE_AHEAD: i64 = 100;
/// Most instances of ordinary fires held for their slot marked running in one turn.
const RELEASES_PER_TURN: usize = 1024;
/// When taking out an armed instance whose job no longer fires is tried again.
const REMOVE_AGAIN: i64 = 1000;

impl Leading {
    /// What storing an armed instance came to: a new one waits for its slot; one that
    /// exists is taken up (and armed again if nothing of it went out).
    pub(super) async fn armed_created(
        &mut self,
        app: &str,
        job: &str,
        slot: Timestamp,
        id: InstanceId,
        created: Result<Stored, CreateError>,
    ) -> Result<(), NatsError> {
        if created.is_err() {
            self.armed_from.remove(&id);
        }
        match created {
            Ok(stored) => {
                self.live.insert(id, stored);
                self.armed.insert((slot, id));
                Ok(())
            }
            Err(CreateError::Exists) => self.adopt(app, job, id).await,
            // A scheduled fire has no trigger key.
            Err(CreateError::KeyUsed(_)) => Ok(()),
            Err(CreateError::Nats(e)) => Err(e),
        }
    }

    /// Waits for a live armed instance's slot (a takeover's, or an adopted one's).
    pub(super) fn arm(&mut self, id: InstanceId) {
        if let Some(stored) = self.live.get(&id) {
            self.armed
                .insert((stored.instance.summary.scheduled_at, id));
        }
    }

    /// How long before its slot an armed instance of an app whose workers hold tasks
    /// is started (ms).
    pub(super) fn queue_ahead(&self) -> i64 {
        self.fire_ahead.min(QUEUE_AHEAD)
    }

    /// Whether an armed instance may start ahead of its slot: every live worker of its
    /// app holds a task until its slot, and its job does not cover the running ones
    /// (which would be cancelled before their time).
    fn starts_ahead(&self, id: &InstanceId) -> bool {
        let Some(stored) = self.live.get(id) else {
            return true;
        };
        let s = &stored.instance.summary;
        let covers = self
            .catalog
            .job(&s.app, &s.job)
            .is_some_and(|e| e.spec.overlap == antares_schemas::spec::Overlap::Cover);
        !covers && self.workers.all_hold(&s.app)
    }

    /// The next slot of an instance made ahead (armed or held) if it falls within `ms`
    /// from now.
    pub(super) fn slot_within(&self, ms: i64) -> Option<Timestamp> {
        let soon = now().0.saturating_add(ms);
        self.next_slot().filter(|slot| slot.0 <= soon)
    }

    /// The earliest slot of an instance made ahead (armed or held), passed or not.
    pub(super) fn next_slot(&self) -> Option<Timestamp> {
        let held = self.held.first().map(|(slot, _, _)| *slot);
        let armed = self.armed.first().map(|(slot, _)| *slot);
        let at_slot = self.armed_at_slot.first().map(|(slot, _)| *slot);
        [held, armed, at_slot].into_iter().flatten().min()
    }

    /// Marks running, in one round (one per lane), the instances whose items went out
    /// ahead of their slot and whose slot has come: those of urgent fires first, and at
    /// most [`RELEASES_PER_TURN`] others in one turn of the loop.
    pub(super) async fn release_held(&mut self) {
        let at = now();
        let mut ordinary = Vec::new();
        let mut urgent = Vec::new();
        let mut later = Vec::new();
        while let Some(&(slot, id, lane)) = self.held.first() {
            if slot > at {
                break;
            }
            self.held.pop_first();
            if !lane && ordinary.len() >= RELEASES_PER_TURN {
                later.push((slot, id, lane));
                continue;
            }
            let pending = self
                .live
                .get(&id)
                .is_some_and(|s| s.instance.summary.status == InstanceStatus::Pending);
            if pending {
                let to = if lane { &mut urgent } else { &mut ordinary };
                to.push((id, Input::Queued));
            }
        }
        self.held.extend(later);
        if !urgent.is_empty() {
            self.apply_many_on(urgent, true).await;
        }
        if !ordinary.is_empty() {
            self.apply_many_on(ordinary, false).await;
        }
    }

    /// Starts the armed instances whose time has come: each is admitted by its job's
    /// overlap policy as it stands then, and its items are queued. That time is the
    /// queue-ahead time before the slot when the instance [starts
    /// ahead](Self::starts_ahead) (its items then carry the slot as their `not_before`,
    /// and the instance is marked running at the slot), its slot otherwise. Those of
    /// urgent fires go first; of the others at most [`STARTS_PER_TURN`] start in one
    /// turn of the loop (the rest in the next turns), so a burst's slot does not hold up
    /// the loop.
    pub(super) async fn start_armed(&mut self) {
        if !self.leading() {
            return;
        }
        let at = now();
        let by = Timestamp(at.0.saturating_add(self.queue_ahead()));
        let mut urgent = Vec::new();
        let mut others = Vec::new();
        while let Some(&(slot, id)) = self.armed.first() {
            if slot > by {
                break;
            }
            self.armed.pop_first();
            if slot > at && !self.starts_ahead(&id) {
                self.armed_at_slot.insert((slot, id));
            } else if self.lane_ids.contains(&id) {
                urgent.push(id);
            } else {
                others.push((slot, id));
            }
        }
        while let Some(&(slot, id)) = self.armed_at_slot.first() {
            if slot > at {
                break;
            }
            self.armed_at_slot.pop_first();
            if self.lane_ids.contains(&id) {
                urgent.push(id);
            } else {
                others.push((slot, id));
            }
        }
        others.sort_unstable();
        if others.len() > STARTS_PER_TURN {
            self.armed.extend(others.drain(STARTS_PER_TURN..));
        }
        let due = urgent
            .into_iter()
            .chain(others.into_iter().map(|(_, id)| id));
        // Which still fire, and which were made from a spec edited since: the latter
        // are made again, all in one round, before any is admitted.
        let mut gone = Vec::new();
        let mut ready = Vec::new();
        let mut remade = Vec::new();
        for id in due {
            let made_from = self.armed_from.remove(&id);
            let Some(stored) = self.live.get(&id) else {
                continue;
            };
            let s = &stored.instance.summary;
            // Cancelled meanwhile, or started by an earlier turn.
            if s.status != InstanceStatus::Pending || !s.armed {
                continue;
            }
            let (app, job, slot) = (s.app.clone(), s.job.clone(), s.scheduled_at);
            if !self.catalog.schedule_active(&app, &job) {
                gone.push(id);
                continue;
            }
            let entry = self.catalog.job(&app, &job);
            let edited = entry.as_ref().is_none_or(|e| Some(e.written) != made_from);
            let still_a_slot = entry
                .as_ref()
                .and_then(|e| e.schedule.as_ref())
                .is_some_and(|sch| {
                    sch.next_after(Timestamp(slot.0.saturating_sub(1))) == Some(slot)
                });
            if edited && !still_a_slot {
                gone.push(id);
                continue;
            }
            if edited && let Some(fresh) = self.remade(id) {
                remade.push((id, fresh));
            }
            ready.push((id, app, job));
        }
        self.remove_armed(gone).await;
        if let Err(e) = self.replace_armed(remade).await {
            self.stop(Stop::Broken(format!(
                "armed instances not made again after an edit of their job: {e}"
            )));
            return;
        }
        let mut skips = Vec::new();
        let mut waits = Vec::new();
        for (id, app, job) in ready {
            if !self.leading() {
                return;
            }
            let admission = self.admit(&app, &job, id);
            let Some(stored) = self.live.get_mut(&id) else {
                continue;
            };
            let s = &mut stored.instance.summary;
            // Written with its next change (`running`, skipped, or the wait below).
            s.armed = false;
            let items: Vec<u32> = stored.instance.shards.iter().map(|sh| sh.item).collect();
            match admission {
                Admission::Skip(reason) => skips.push((id, Input::Skip { reason })),
                Admission::Wait(reason) => {
                    s.waiting = true;
                    s.reason = Some(reason);
                    waits.push((id, app, job));
                }
                admission => self.carry_out(&app, &job, id, admission, items).await,
            }
        }
        self.apply_many(skips).await;
        self.save_waiting(waits).await;
    }

    /// Saves armed instances left waiting their turn at their slot, in one round, then
    /// admits whichever may start by then.
    async fn save_waiting(&mut self, waits: Vec<(InstanceId, String, String)>) {
        if waits.is_empty() {
            return;
        }
        let mut taken: Vec<Stored> = waits
            .iter()
            .filter_map(|(id, _, _)| self.live.remove(id))
            .collect();
        let outcomes = {
            let mut batch: Vec<(&mut Stored, Dirty)> = taken
                .iter_mut()
                .map(|s| {
                    let dirty = Dirty {
                        summary: true,
                        ..Dirty::default()
                    };
                    (s, dirty)
                })
                .collect();
            self.store.save_many(&mut batch).await
        };
        for (stored, outcome) in taken.into_iter().zip(outcomes) {
            let id = stored.instance.summary.id;
            self.live.insert(id, stored);
            match outcome {
                Ok(()) => {}
                Err(NatsError::WrongRevision { .. }) => {
                    tracing::warn!(instance = %id, "instance written by another scheduler");
                    self.stop(Stop::Conflict);
                }
                Err(e) => self.stop(Stop::Broken(format!("instance {id} not saved: {e}"))),
            }
        }
        for (_, app, job) in waits {
            if !self.leading() {
                return;
            }
            self.admit_waiting(&app, &job);
        }
    }

    /// Takes out of the store the armed instances whose job no longer fires at their
    /// slot (paused, deleted, or rescheduled before it), in one round; one that fails is
    /// tried again later.
    async fn remove_armed(&mut self, ids: Vec<InstanceId>) {
        if ids.is_empty() {
            return;
        }
        let taken: Vec<Stored> = ids.iter().filter_map(|id| self.live.remove(id)).collect();
        let refs: Vec<&Stored> = taken.iter().collect();
        let outcomes = self.store.remove_live_many(&refs).await;
        let again = Timestamp(now().0.saturating_add(REMOVE_AGAIN));
        for (stored, outcome) in taken.into_iter().zip(outcomes) {
            let id = stored.instance.summary.id;
            match outcome {
                Ok(()) => {
                    tracing::info!(instance = %id, "its job no longer fires at its slot (paused, deleted or rescheduled): the instance made ahead of it is taken out");
                }
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "an instance made ahead of its slot, whose job no longer fires then, not taken out yet; trying again");
                    self.live.insert(id, stored);
                    self.armed.insert((again, id));
                }
            }
        }
    }

    /// An armed instance made again from its job as it is now (same id, slot and
    /// trigger), if that makes different work.
    fn remade(&self, id: InstanceId) -> Option<Instance> {
        let stored = self.live.get(&id)?;
        let s = &stored.instance.summary;
        let entry = self.catalog.job(&s.app, &s.job)?;
        let items = match entry.spec.shard_items(&Default::default()) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "job cannot fire as edited; its armed instance runs as it was made");
                return None;
            }
        };
        let new = entry
            .spec
            .new_instance(id, s.trigger, s.scheduled_at, items);
        let mut fresh = self.build(new);
        if same_work(&stored.instance, &fresh) {
            return None;
        }
        fresh.summary.armed = true;
        tracing::info!(instance = %id, "its job was edited after it was made ahead of its slot: made again as the job is now");
        Some(fresh)
    }

    /// Stores armed instances made again in place of the ones they replace, in one
    /// round.
    async fn replace_armed(
        &mut self,
        remade: Vec<(InstanceId, Instance)>,
    ) -> Result<(), NatsError> {
        if remade.is_empty() {
            return Ok(());
        }
        let mut pairs: Vec<(Stored, Instance)> = remade
            .into_iter()
            .filter_map(|(id, fresh)| self.live.remove(&id).map(|s| (s, fresh)))
            .collect();
        let outcome = self.store.replace_many(&mut pairs).await;
        for (stored, _) in pairs {
            self.live.insert(stored.instance.summary.id, stored);
        }
        outcome
    }
}

/// Whether two instances of the same slot would run the same work (for `broadcast`,
/// the number of shards follows the live workers and is not compared).
fn same_work(a: &Instance, b: &Instance) -> bool {
    let (x, y) = (&a.summary, &b.summary);
    let shards_alike = x.routing == antares_schemas::spec::Routing::Broadcast
        || (x.shard_total == y.shard_total
            && a.shards
                .iter()
                .zip(&b.shards)
                .all(|(p, q)| p.param == q.param));
    x.exec == y.exec
        && x.params == y.params
        && x.timeout_ms == y.timeout_ms
        && x.retry == y.retry
        && x.routing == y.routing
        && x.workers == y.workers
        && shards_alike
}
