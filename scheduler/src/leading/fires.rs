//! The fire pipeline: slots that are due become instances in pipelined batches.
//!
//! Every slot due at once (the top of the hour, a takeover's late slots) joins the
//! backlog; the loop cuts it into batches of up to [`FIRE_BATCH`] slots and, for each,
//! decides admission (overlap) in memory, then a task beside the loop claims and creates
//! all of the batch's instances in one pipelined round of writes. When the round is
//! back the loop queues the new instances' items (in the background, see
//! [`super::launch`]) and writes the batch's cursors in one more round beside the loop.
//! At most [`BATCHES_IN_FLIGHT`] batches are in flight, so a burst of 100,000 slots is
//! bounded in memory and never keeps the loop from its other inputs (results,
//! triggers, the lease). Slots enter the pipeline up to the fire-ahead time before
//! they are due: an instance whose slot has not come yet is stored `armed`, and its
//! admission and items wait for the slot ([`super::armed`]).
//!
//! The backlog is served earliest deadline first: a job's fire is due before its next
//! slot, so a job firing every second goes ahead of a burst of jobs firing every
//! minute, even one that came first. Fires whose deadline is near ([`URGENT`]) go in a
//! batch of their own, which starts before any other and may be in flight beside the
//! others. It goes by the scheduler's second connection, the lane, and so do the items
//! of its (small) instances: a burst pipelines thousands of writes on the first one,
//! and a write sent behind them waits for all of them, in the client and in the
//! server's reading of the socket.
//!
//! Exactly once holds as for one fire: a slot's id is claimed and its instance created
//! ("must not exist") before its cursor moves, and a job's cursor moves only past slots
//! whose instance exists, so a crash anywhere leaves either a slot whose instance is
//! there (a new leader finds it taken) or a cursor behind it (the slot fires again, and
//! its claim makes that the same instance). A fire that fails without a crash may still
//! have stored its instance, and its slot may never fire again (once late, the misfire
//! policy can skip it): its id is looked for until the instance is found and taken up,
//! or found not to be there ([`Unsettled`]).

use std::collections::{BTreeMap, HashMap};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::instance::TriggerKind;
use antares_schemas::machine::Input;
use antares_schemas::messages::Event;
use antares_schemas::{InstanceId, Timestamp};

use super::{Leading, Stop};
use crate::events;
use crate::overlap::Admission;
use crate::store::{CreateError, Place, Stored};

/// Most slots in one batch.
const FIRE_BATCH: usize = 1024;
/// Most batches being created at once (besides one urgent batch).
const BATCHES_IN_FLIGHT: usize = 4;
/// A fire whose deadline (its job's next slot) is this close is urgent.
const URGENT: i64 = 10_000;

/// The slots of one job to fire now, and what follows once they are made.
#[derive(Debug)]
pub(super) struct JobFires {
    pub(super) app: String,
    pub(super) job: String,
    /// Oldest first, with how each is labelled.
    pub(super) fires: Vec<(Timestamp, TriggerKind)>,
    /// The `misfired` event to send once they are made.
    pub(super) missed: Option<Event>,
    /// The job's next slot after these.
    pub(super) next: Option<Timestamp>,
}

/// Slots due, earliest deadline first, and the batches in flight.
#[derive(Default)]
pub(super) struct Backlog {
    /// By deadline (the job's next slot; none: last), then by arrival.
    queue: BTreeMap<(Timestamp, u64), JobFires>,
    arrivals: u64,
    /// Batches being created.
    creating: usize,
    /// Whether the urgent batch is being created.
    urgent: bool,
}

impl Backlog {
    /// Adds a job's fires.
    pub(super) fn push(&mut self, fires: JobFires) {
        let deadline = fires.next.unwrap_or(Timestamp(i64::MAX));
        self.arrivals += 1;
        self.queue.insert((deadline, self.arrivals), fires);
    }

    /// Forgets every fire waiting (a round that ends; the next plans from cursors).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Whether a batch may start now and whether it is the urgent one (of fires due
    /// before `urgent_by` only, first whenever there are some).
    fn room(&self, urgent_by: Timestamp) -> Option<bool> {
        let (&(deadline, _), _) = self.queue.first_key_value()?;
        if !self.urgent && deadline <= urgent_by {
            Some(true)
        } else if self.creating < BATCHES_IN_FLIGHT {
            Some(false)
        } else {
            None
        }
    }

    /// The most urgent job's fires, if due before `by`.
    fn pop_before(&mut self, by: Timestamp) -> Option<JobFires> {
        match self.queue.first_key_value() {
            Some((&(deadline, _), _)) if deadline <= by => self.queue.pop_first().map(|(_, g)| g),
            _ => None,
        }
    }
}

/// One slot of a batch.
pub(super) struct Slot {
    slot: Timestamp,
    id: InstanceId,
    /// `None`: nothing to create (it exists, or the job cannot make it).
    admission: Option<Admit>,
}

/// When a new instance of a batch is admitted.
enum Admit {
    /// Now, as decided (its slot has come).
    Now(Admission),
    /// At its slot, which has not come yet (see [`super::armed`]).
    AtSlot,
}

/// Work of the pipeline that ran beside the loop.
pub(super) enum FireWork {
    /// A batch was created: its jobs and slots, and the outcome of each create (in the
    /// order of the slots that had one).
    Created {
        groups: Vec<(JobFires, Vec<Slot>)>,
        outcomes: Vec<Result<Stored, CreateError>>,
        /// Whether it was the urgent batch.
        urgent: bool,
    },
    /// Cursors were written.
    Cursors(Vec<(String, String, Timestamp, bool)>),
}

/// An instance whose fire failed after it may have been written (a create whose reply
/// was lost, a take-up that failed): looked for again until it is found and taken up, or
/// found not to be there. Its slot may never fire again (a misfire policy can skip it
/// once it is late), so nothing else would take it up before the next takeover.
pub(super) struct Unsettled {
    app: String,
    job: String,
    tries: u32,
    due: tokio::time::Instant,
}

impl Unsettled {
    fn new(app: &str, job: &str) -> Self {
        Self {
            app: app.to_string(),
            job: job.to_string(),
            tries: 0,
            due: tokio::time::Instant::now() + UNSETTLED_FIRST,
        }
    }
}

/// When an unsettled instance is first looked for.
const UNSETTLED_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest pause between two looks (the pause doubles from the first).
const UNSETTLED_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);
/// Looks before an unsettled instance is left to the next takeover (about half an hour).
const UNSETTLED_TRIES: u32 = 360;
/// Most unsettled instances looked for in one turn of maintenance.
const UNSETTLED_PER_TICK: usize = 64;

/// Logs and sends a `misfired` event.
pub(super) async fn report_missed(nats: &Nats, e: &Event) {
    tracing::warn!(app = %e.app, job = %e.job, "{}", e.reason.as_deref().unwrap_or_default());
    events::emit(nats, e).await;
}

impl Leading {
    /// Starts batches from the backlog while there is room for them.
    pub(super) fn start_fires(&mut self) {
        let urgent_by = Timestamp(now().0.saturating_add(URGENT));
        while let Some(urgent) = self.backlog.room(urgent_by) {
            if !self.leading() {
                self.backlog.clear();
                return;
            }
            let by = if urgent {
                urgent_by
            } else {
                Timestamp(i64::MAX)
            };
            let mut groups = Vec::new();
            let mut instances = Vec::new();
            let mut n = 0;
            while n < FIRE_BATCH {
                let Some(g) = self.backlog.pop_before(by) else {
                    break;
                };
                n += g.fires.len();
                if let Some(slots) = self.prepare_fires(&g, &mut instances) {
                    groups.push((g, slots));
                }
            }
            let store = if urgent {
                self.lane_store.clone()
            } else {
                self.store.clone()
            };
            if urgent {
                self.backlog.urgent = true;
            } else {
                self.backlog.creating += 1;
            }
            self.firing.spawn(async move {
                let outcomes = store.create_many(instances).await;
                FireWork::Created {
                    groups,
                    outcomes,
                    urgent,
                }
            });
        }
    }

    /// The slots of one job, their instances added to `instances`; `None` when the job
    /// no longer fires (deleted, paused: its timer was set by the edit).
    fn prepare_fires(
        &mut self,
        g: &JobFires,
        instances: &mut Vec<antares_schemas::instance::Instance>,
    ) -> Option<Vec<Slot>> {
        if !self.catalog.schedule_active(&g.app, &g.job) {
            return None;
        }
        let mut slots = Vec::with_capacity(g.fires.len());
        let at = now();
        for &(slot, kind) in &g.fires {
            let id = InstanceId::for_fire(&g.app, &g.job, slot);
            let entry = self.catalog.job(&g.app, &g.job)?;
            let written = entry.written;
            let new = match entry.spec.shard_items(&Default::default()) {
                Ok(_) if self.live.contains_key(&id) => None,
                Ok(items) => Some(entry.spec.new_instance(id, kind, slot, items)),
                Err(e) => {
                    tracing::error!(app = %g.app, job = %g.job, error = %e, "job cannot fire");
                    None
                }
            };
            let admission = new.map(|new| {
                if slot > at {
                    self.armed_from.insert(id, written);
                    let mut instance = self.build(new);
                    instance.summary.armed = true;
                    instances.push(instance);
                    Admit::AtSlot
                } else {
                    let prepared = self.prepare(new);
                    instances.push(prepared.instance);
                    Admit::Now(prepared.admission)
                }
            });
            slots.push(Slot {
                slot,
                id,
                admission,
            });
        }
        Some(slots)
    }

    /// A task of the pipeline ended: what it did, or the end of this round if it
    /// failed.
    pub(super) async fn on_fire_joined(&mut self, done: Result<FireWork, tokio::task::JoinError>) {
        match done {
            Ok(work) => self.on_fire_work(work).await,
            Err(e) => self.stop(Stop::Broken(format!("a fire task failed: {e}"))),
        }
    }

    /// What the pipeline did beside the loop.
    async fn on_fire_work(&mut self, work: FireWork) {
        match work {
            FireWork::Created {
                groups,
                outcomes,
                urgent,
            } => {
                if urgent {
                    self.backlog.urgent = false;
                } else {
                    self.backlog.creating = self.backlog.creating.saturating_sub(1);
                }
                if urgent {
                    // Their items go by the lane too (those that are made, when their
                    // turn comes).
                    for (_, slots) in &groups {
                        self.lane_ids
                            .extend(slots.iter().filter(|s| s.admission.is_some()).map(|s| s.id));
                    }
                }
                self.on_created(groups, outcomes).await;
                self.start_fires();
            }
            FireWork::Cursors(written) => {
                for (app, job, slot, ok) in written {
                    let key = (app, job);
                    // Written again by the tick, unless a later one was saved since.
                    if !ok && self.cursors.get(&key) == Some(&slot) {
                        self.cursors_unsaved.insert(key, slot);
                    }
                }
            }
        }
    }

    async fn on_created(
        &mut self,
        groups: Vec<(JobFires, Vec<Slot>)>,
        outcomes: Vec<Result<Stored, CreateError>>,
    ) {
        let mut outcomes = outcomes.into_iter();
        let mut skips = Vec::new();
        let mut cursors = Vec::new();
        let mut missed = Vec::new();
        for (g, slots) in groups {
            let mut failed: Option<NatsError> = None;
            let mut cursor = None;
            for s in slots {
                let made = s.admission.is_some();
                let res = match s.admission {
                    None => Ok(()),
                    Some(admission) => {
                        let created = outcomes.next().unwrap_or_else(|| {
                            Err(NatsError::Config("instance not created".into()).into())
                        });
                        match (admission, created) {
                            (Admit::AtSlot, created) => {
                                self.armed_created(&g.app, &g.job, s.slot, s.id, created)
                                    .await
                            }
                            (Admit::Now(Admission::Skip(reason)), Ok(stored)) => {
                                self.live.insert(s.id, stored);
                                skips.push((s.id, Input::Skip { reason }));
                                Ok(())
                            }
                            (Admit::Now(admission), created) => self
                                .created(g.app.clone(), g.job.clone(), s.id, admission, created)
                                .await
                                .map(|_| ()),
                        }
                    }
                };
                match res {
                    // The cursor moves past a slot only when every slot before it is made.
                    Ok(()) if failed.is_none() => cursor = Some(s.slot),
                    Ok(()) => {}
                    Err(e) => {
                        // Its instance may be stored all the same: it is looked for later,
                        // whatever the misfire policy makes of its slot.
                        if made {
                            self.unsettled
                                .entry(s.id)
                                .or_insert_with(|| Unsettled::new(&g.app, &g.job));
                        }
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(c) = cursor {
                cursors.push((g.app.clone(), g.job.clone(), c));
            }
            match failed {
                None => {
                    let key = (g.app, g.job);
                    self.replan.remove(&key);
                    let next = g
                        .next
                        .filter(|_| self.catalog.schedule_active(&key.0, &key.1));
                    self.timers.set(&key.0, &key.1, next);
                    missed.extend(g.missed);
                }
                Some(e) => self.fire_failed(&g.app, &g.job, &e),
            }
        }
        self.apply_many(skips).await;
        self.write_cursors(cursors);
        // Made after their slot came (a slow round): started now.
        self.start_armed().await;
        for e in missed {
            report_missed(&self.nats, &e).await;
            self.alarm_misfire(&e.app, &e.job, e.reason.clone()).await;
        }
    }

    /// Writes jobs' cursors in one round beside the loop (after their instances exist).
    fn write_cursors(&mut self, cursors: Vec<(String, String, Timestamp)>) {
        let mut last: HashMap<(String, String), Timestamp> = HashMap::new();
        for (app, job, slot) in cursors {
            let key = (app, job);
            if self.cursors.get(&key).is_some_and(|c| *c >= slot) {
                continue;
            }
            let e = last.entry(key).or_insert(slot);
            *e = (*e).max(slot);
        }
        if last.is_empty() {
            return;
        }
        let bucket = self.buckets.cursors.name.clone();
        let mut writes = Vec::with_capacity(last.len());
        let mut names = Vec::with_capacity(last.len());
        for ((app, job), slot) in last {
            match codec::encode("cursor", &slot) {
                Ok(value) => {
                    let key = self.nats.topo.job_key(&app, &job);
                    writes.push(Write::put(&bucket, key, value, Expect::Any));
                    self.cursors.insert((app.clone(), job.clone()), slot);
                    names.push((app, job, slot));
                }
                Err(e) => tracing::error!(%app, %job, error = %e, "cursor not encoded"),
            }
        }
        let nats = self.nats.clone();
        self.firing.spawn(async move {
            let results = kv::write_all(&nats, writes).await;
            let written = names
                .into_iter()
                .zip(results)
                .map(|((app, job, slot), r)| {
                    if let Err(e) = &r {
                        tracing::warn!(%app, %job, error = %e, "cursor not saved yet; retrying");
                    }
                    (app, job, slot, r.is_ok())
                })
                .collect();
            FireWork::Cursors(written)
        });
    }

    async fn write_cursor(&self, app: &str, job: &str, slot: Timestamp) -> Result<(), NatsError> {
        let value = codec::encode("cursor", &slot)?;
        let key = self.nats.topo.job_key(app, job);
        kv::write(
            &self.nats,
            Write::put(&self.buckets.cursors.name, key, value, Expect::Any),
        )
        .await
        .map(|_| ())
    }

    /// Writes the cursors whose write failed.
    pub(super) async fn save_unsaved_cursors(&mut self) {
        for ((app, job), slot) in std::mem::take(&mut self.cursors_unsaved) {
            if self.cursors.get(&(app.clone(), job.clone())) != Some(&slot) {
                continue;
            }
            if self.write_cursor(&app, &job, slot).await.is_err() {
                self.cursors_unsaved.insert((app, job), slot);
            }
        }
    }

    /// Looks for the unsettled instances that are due: one found in the store is taken
    /// up (as a create whose reply was lost is), one not there is forgotten.
    pub(super) async fn settle_unsettled(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<InstanceId> = self
            .unsettled
            .iter()
            .filter(|(_, u)| u.due <= now)
            .map(|(id, _)| *id)
            .take(UNSETTLED_PER_TICK)
            .collect();
        let looks: Vec<(InstanceId, Unsettled)> = due
            .into_iter()
            .filter_map(|id| self.unsettled.remove(&id).map(|u| (id, u)))
            .filter(|(id, _)| !self.live.contains_key(id))
            .collect();
        // Looked for together, taken up one after the other.
        let store = &self.store;
        let found = futures::future::join_all(
            looks
                .iter()
                .map(|(id, u)| store.load(Place::Live, &u.app, &u.job, id)),
        )
        .await;
        for ((id, u), found) in looks.into_iter().zip(found) {
            if !self.leading() {
                return;
            }
            let res = match found {
                Ok(None) => Ok(()),
                Ok(Some(_)) => {
                    tracing::info!(instance = %id, "an instance whose fire failed is there after all: taking it up");
                    self.adopt(&u.app, &u.job, id).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                let tries = u.tries + 1;
                if tries >= UNSETTLED_TRIES {
                    tracing::error!(instance = %id, error = %e, "an instance whose fire failed cannot be looked for; the next takeover takes it up");
                    continue;
                }
                let pause = UNSETTLED_FIRST
                    .saturating_mul(1 << tries.min(8))
                    .min(UNSETTLED_MAX_PAUSE);
                self.unsettled.insert(
                    id,
                    Unsettled {
                        tries,
                        due: now + pause,
                        ..u
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(job: &str, next: i64) -> JobFires {
        JobFires {
            app: "a".into(),
            job: job.into(),
            fires: vec![(Timestamp(0), TriggerKind::Every)],
            missed: None,
            next: Some(Timestamp(next)),
        }
    }

    /// The jobs of the next batch `room` allows, as `start_fires` takes them.
    fn take(b: &mut Backlog, urgent_by: Timestamp) -> Option<(bool, Vec<String>)> {
        let urgent = b.room(urgent_by)?;
        let by = if urgent {
            urgent_by
        } else {
            Timestamp(i64::MAX)
        };
        let mut jobs = Vec::new();
        while jobs.len() < FIRE_BATCH {
            let Some(g) = b.pop_before(by) else { break };
            jobs.push(g.job);
        }
        if urgent {
            b.urgent = true;
        } else {
            b.creating += 1;
        }
        Some((urgent, jobs))
    }

    #[test]
    fn urgent_fires_go_first_and_alone() {
        let mut b = Backlog::default();
        for i in 0..3 {
            b.push(fires(&format!("minutely-{i}"), 60_000));
        }
        b.push(fires("secondly", 1_000));
        // The job due again within the urgent time goes in a batch of its own, first.
        let by = Timestamp(URGENT);
        assert_eq!(take(&mut b, by), Some((true, vec!["secondly".to_string()])));
        // The others follow in an ordinary batch, in arrival order.
        let (urgent, jobs) = take(&mut b, by).unwrap_or_default();
        assert!(!urgent);
        assert_eq!(jobs, ["minutely-0", "minutely-1", "minutely-2"]);
        assert_eq!(take(&mut b, by), None);
    }

    #[test]
    fn one_urgent_batch_at_a_time_and_the_ordinary_ones_bounded() {
        let mut b = Backlog::default();
        b.push(fires("secondly-0", 1_000));
        let by = Timestamp(URGENT);
        assert_eq!(take(&mut b, by).map(|t| t.0), Some(true));
        // While it is in flight, the next urgent fire goes in an ordinary batch.
        b.push(fires("secondly-1", 1_000));
        assert_eq!(
            take(&mut b, by),
            Some((false, vec!["secondly-1".to_string()]))
        );
        // At most BATCHES_IN_FLIGHT ordinary batches.
        for i in 1..BATCHES_IN_FLIGHT {
            b.push(fires(&format!("minutely-{i}"), 60_000));
            assert_eq!(take(&mut b, by).map(|t| t.0), Some(false));
        }
        b.push(fires("minutely-last", 60_000));
        assert_eq!(take(&mut b, by), None);
        // A batch that comes back makes room.
        b.creating -= 1;
        assert_eq!(
            take(&mut b, by),
            Some((false, vec!["minutely-last".to_string()]))
        );
    }
}
