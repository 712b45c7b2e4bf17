//! Turning a fire or a trigger into an instance, and publishing shard items.
//!
//! Creating is claim-first ([`crate::store::InstanceStore::create`]): an id or a trigger
//! key is used once for as long as history keeps instances. The job's overlap policy
//! ([`crate::overlap`]) then says whether the instance starts now, waits its turn, is
//! skipped, or covers the running ones.
//!
//! Publishing runs in the background ([`Leading::publishes`]): windows of messages, each
//! with a `Nats-Msg-Id` naming the instance, item and run, bounded in count and bytes so
//! acks in flight never stall; then the acks. A publication that fails for a passing
//! reason (NATS unreachable, too many requests) is tried again after a backoff, first
//! checking which items are already in the work queue (or already reported on), so an
//! item is queued once even after the de-duplication window; one that can never work
//! (a message larger than NATS allows, a permission refused) fails the instance with
//! the reason. Either way the instance never stays `pending` or `running` for nothing.

use std::collections::HashSet;
use std::time::Duration;

use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, ShardStatus};
use antares_schemas::machine::Input;
use antares_schemas::messages::ShardTask;
use antares_schemas::spec::Routing;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use super::routing::Plan;
use super::{Leading, Stop};
use crate::overlap::Admission;
use crate::store::{CreateError, Place, Stored};

/// Most messages of one publication window.
const WINDOW_MESSAGES: usize = 1024;
/// Most bytes of one publication window.
const WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// Most items of an urgent fire's instance that go by the lane (a larger one would hold
/// up the others there).
const LANE_ITEMS: usize = 64;
/// Tries of a publication before the instance fails (backoff 0.5 s doubling to 30 s:
/// about ten minutes in all).
const PUBLISH_TRIES: u32 = 24;

/// What creating an instance led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Created {
    /// A new instance.
    New(InstanceId),
    /// It existed already (the same fire or trigger, handled before).
    Exists,
    /// Its trigger key already made this instance.
    KeyUsed(Option<InstanceId>),
}

/// A new instance not stored yet, with its admission (its room already taken).
pub(super) struct Prepared {
    pub(super) instance: Instance,
    pub(super) admission: Admission,
}

impl Prepared {
    /// Its app, job and id.
    pub(super) fn names(&self) -> (String, String, InstanceId) {
        let s = &self.instance.summary;
        (s.app.clone(), s.job.clone(), s.id)
    }
}

/// A publication that ended.
#[derive(Debug)]
pub(super) struct Published {
    id: InstanceId,
    app: String,
    job: String,
    items: Vec<u32>,
    tries: u32,
    result: Result<(), PublishError>,
    /// Items sent to one worker's own subject, and to whom.
    to: Vec<(u32, String)>,
    /// Items no live worker could take: they wait for one.
    unrouted: Vec<u32>,
}

/// A publication waiting for its next try.
#[derive(Debug)]
pub(super) struct Republish {
    due: Instant,
    id: InstanceId,
    items: Vec<u32>,
    tries: u32,
}

#[derive(Debug)]
enum PublishError {
    /// Worth trying again.
    Passing(String),
    /// Will never work.
    Lasting(String),
}

impl PublishError {
    fn of(e: &dyn std::fmt::Display) -> Self {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        if antares_nats::queue::is_full(&text) {
            Self::Passing(format!(
                "the shard queue is full ({text}): waiting for room"
            ))
        } else if lower.contains("payload")
            || lower.contains("exceeds")
            || lower.contains("permission")
        {
            Self::Lasting(text)
        } else {
            Self::Passing(text)
        }
    }
}

impl Leading {
    /// Creates an instance and admits it by its job's overlap policy.
    pub(super) async fn create_instance(&mut self, new: NewInstance) -> Result<Created, NatsError> {
        if self.live.contains_key(&new.id) {
            return Ok(Created::Exists);
        }
        let prepared = self.prepare(new);
        let (app, job, id) = prepared.names();
        let created = self.store.create(prepared.instance).await;
        self.created(app, job, id, prepared.admission, created)
            .await
    }

    /// Builds a new instance and decides its admission by its job's overlap policy,
    /// taking its room at once (so the next instance of the job decided before this one
    /// is stored sees it); [`Leading::created`] gives the room back if it is not made.
    pub(super) fn prepare(&mut self, new: NewInstance) -> Prepared {
        let mut instance = self.build(new);
        let s = &mut instance.summary;
        let admission = self.admit(&s.app, &s.job, s.id);
        if let Admission::Wait(reason) = &admission {
            s.waiting = true;
            s.reason = Some(reason.clone());
        }
        Prepared {
            instance,
            admission,
        }
    }

    /// A new instance as its job makes it now: with the job's routing and pinned
    /// workers, and for `broadcast` one shard per live worker that can run it.
    pub(super) fn build(&self, new: NewInstance) -> Instance {
        let (routing, pinned) = self
            .catalog
            .job(&new.app, &new.job)
            .map_or((Routing::Pull, Vec::new()), |e| {
                (e.spec.routing, e.spec.workers.clone())
            });
        let mut new = new;
        if routing == Routing::Broadcast {
            let n = self.broadcast_width(&new.app, &new.exec, &pinned);
            new.shard_params = vec![String::new(); n];
        }
        let mut instance = Instance::create(new);
        instance.summary.routing = routing;
        instance.summary.workers = pinned;
        instance
    }

    /// Decides a pending instance's admission by its job's overlap policy and takes its
    /// room (or its place among the waiting) at once.
    pub(super) fn admit(&mut self, app: &str, job: &str, id: InstanceId) -> Admission {
        let (overlap, max_parallel) = self
            .catalog
            .job(app, job)
            .map_or((Default::default(), 1), |e| {
                (e.spec.overlap, e.spec.max_parallel)
            });
        let admission = self.runs.decide(app, job, overlap, max_parallel);
        match &admission {
            Admission::Wait(_) => self.runs.wait(app, job, id),
            Admission::Start | Admission::Cover(_) => self.runs.start(app, job, id),
            Admission::Skip(_) => {}
        }
        admission
    }

    /// What storing a prepared instance came to: a new one is admitted (queued, left
    /// waiting, skipped, or covering the running ones); one that exists is taken up.
    pub(super) async fn created(
        &mut self,
        app: String,
        job: String,
        id: InstanceId,
        admission: Admission,
        created: Result<Stored, CreateError>,
    ) -> Result<Created, NatsError> {
        let stored = match created {
            Ok(s) => s,
            Err(e) => {
                self.runs.end(&app, &job, &id);
                return match e {
                    CreateError::Exists => {
                        self.adopt(&app, &job, id).await?;
                        Ok(Created::Exists)
                    }
                    CreateError::KeyUsed(first) => Ok(Created::KeyUsed(first)),
                    CreateError::Nats(e) => Err(e),
                };
            }
        };
        let items: Vec<u32> = stored.instance.shards.iter().map(|s| s.item).collect();
        self.live.insert(id, stored);
        self.carry_out(&app, &job, id, admission, items).await;
        Ok(Created::New(id))
    }

    /// Carries out a live instance's admission: its items are queued, or it waits (its
    /// turn may have come meanwhile), or it is skipped, or the instances it covers are
    /// cancelled and its items queued.
    pub(super) async fn carry_out(
        &mut self,
        app: &str,
        job: &str,
        id: InstanceId,
        admission: Admission,
        items: Vec<u32>,
    ) {
        match admission {
            Admission::Start => self.publish(id, items, 0),
            // Its turn may have come while it was being created.
            Admission::Wait(_) => self.admit_waiting(app, job),
            Admission::Skip(reason) => self.apply(id, Input::Skip { reason }).await,
            Admission::Cover(old) => {
                for o in old {
                    let reason = format!("covered by instance {id} (overlap = \"cover\")");
                    self.apply(
                        o,
                        Input::Cancel {
                            reason: Some(reason),
                        },
                    )
                    .await;
                }
                self.publish(id, items, 0);
            }
        }
    }

    /// An instance that exists in the store but not in memory (a create whose reply was
    /// lost, though the write went through) is taken up as a takeover would.
    pub(super) async fn adopt(
        &mut self,
        app: &str,
        job: &str,
        id: InstanceId,
    ) -> Result<(), NatsError> {
        if self.live.contains_key(&id) {
            return Ok(());
        }
        let Some(mut stored) = self.store.load(Place::Live, app, job, &id).await? else {
            return Ok(());
        };
        if stored.instance.summary.status.is_final() {
            return Ok(());
        }
        tracing::warn!(instance = %id, "taking up an instance whose creation was not confirmed");
        // Its claim may be what failed: direct reads find an instance by it.
        self.store.confirm_claims(&[&stored]).await?;
        self.store.write_missing_chunks(&mut stored).await?;
        self.live.insert(id, stored);
        // Kept in memory only once its items are on their way: a failed look at the
        // queues leaves it to be taken up again by the fire's next try.
        let resumed = self.resume(id).await;
        if resumed.is_err() {
            self.live.remove(&id);
            self.runs.end(app, job, &id);
        } else {
            // Waiting its turn, which may have come meanwhile.
            self.admit_waiting(app, job);
        }
        resumed
    }

    /// Publishes shard items of a live instance in the background (their current run),
    /// where its routing sends them ([`Leading::plan`]).
    pub(super) fn publish(&mut self, id: InstanceId, items: Vec<u32>, tries: u32) {
        if !self.live.contains_key(&id) {
            return;
        }
        // An urgent fire's small instance goes by the lane and skips the app's queue.
        let urgent = self.lane_ids.remove(&id) && items.len() <= LANE_ITEMS;
        let plan = self.plan(&id, &items, urgent);
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let s = &stored.instance.summary;
        // Only what each message needs is taken here; the messages are built and
        // encoded in the task, so a launch of 100,000 items does not hold up the loop.
        let shards: Vec<(u32, String, u32, u32)> = items
            .iter()
            .filter_map(|&item| {
                let shard = usize::try_from(item)
                    .ok()
                    .and_then(|i| stored.instance.shards.get(i))?;
                Some((item, shard.param.clone(), shard.run, shard.attempts))
            })
            .collect();
        let template = ShardTask {
            instance: s.id,
            app: s.app.clone(),
            job: s.job.clone(),
            item: 0,
            total: s.shard_total,
            param: String::new(),
            params: s.params.clone(),
            exec: s.exec.clone(),
            timeout_ms: s.timeout_ms,
            scheduled_at: s.scheduled_at,
            run: 0,
            attempt_base: 0,
            urgent: urgent && self.urgent_reports,
            // Queued ahead of its slot (see `armed`): the worker holds it until then.
            not_before: (s.scheduled_at > now()).then_some(s.scheduled_at),
        };
        let nats = if urgent {
            self.lane.clone()
        } else {
            self.nats.clone()
        };
        let set = if urgent {
            &mut self.lane_publishes
        } else {
            &mut self.publishes
        };
        set.spawn(async move {
            let (app, job) = (template.app.clone(), template.job.clone());
            let (msgs, mut to, unrouted) = match build_messages(&nats.topo, &plan, template, shards)
            {
                Ok(built) => built,
                Err(e) => {
                    return Published {
                        id,
                        app,
                        job,
                        items,
                        tries,
                        result: Err(e),
                        to: Vec::new(),
                        unrouted: Vec::new(),
                    };
                }
            };
            let result = match plan {
                Plan::Failover { order } => match first_answering(&nats, &app, &order).await {
                    Some(worker) => {
                        let mut msgs = msgs;
                        for (m, item) in msgs.iter_mut() {
                            m.0 = nats.topo.direct_subject(&app, &worker, &job, &id, *item);
                            to.push((*item, worker.clone()));
                        }
                        send(&nats, msgs.into_iter().map(|(m, _)| m).collect()).await
                    }
                    None => Err(PublishError::Passing(format!(
                        "none of the workers {order:?} answered a ping (routing = \"failover\")"
                    ))),
                },
                _ => send(&nats, msgs.into_iter().map(|(m, _)| m).collect()).await,
            };
            Published {
                id,
                app,
                job,
                items,
                tries,
                result,
                to,
                unrouted,
            }
        });
    }

    /// A publication ended (of an urgent fire, `lane`), with every other of its kind
    /// that has ended too, so a burst of instances is marked running in one round of
    /// writes (an urgent fire's on the lane, beside the burst's).
    pub(super) async fn on_publications(
        &mut self,
        done: Result<Published, tokio::task::JoinError>,
        lane: bool,
    ) {
        let mut ended = Vec::new();
        let mut next = Some(done);
        while let Some(done) = next {
            match done {
                Ok(p) => ended.push(p),
                Err(e) => {
                    self.stop(Stop::Broken(format!("a publication task failed: {e}")));
                    return;
                }
            }
            let set = if lane {
                &mut self.lane_publishes
            } else {
                &mut self.publishes
            };
            next = if ended.len() < super::PUBLISHED_BATCH {
                set.try_join_next()
            } else {
                None
            };
        }
        self.on_published(ended, lane).await;
    }

    /// Publications ended: mark their instances running, or try again later, or fail
    /// them; the instances' changes are written in one round (on the lane, `lane`).
    async fn on_published(&mut self, done: Vec<Published>, lane: bool) {
        let mut inputs = Vec::new();
        for p in done {
            let Some(stored) = self.live.get(&p.id) else {
                // It ended (cancelled) while its items were being published.
                self.purge_instance(&p.app, &p.job, &p.id).await;
                continue;
            };
            let (status, slot) = (
                stored.instance.summary.status,
                stored.instance.summary.scheduled_at,
            );
            if status.is_final() {
                self.purge_instance(&p.app, &p.job, &p.id).await;
                continue;
            }
            match p.result {
                Ok(()) => {
                    self.record_targets(p.id, p.to);
                    if !p.unrouted.is_empty() {
                        self.unrouted.entry(p.id).or_default().extend(p.unrouted);
                    }
                    if status == InstanceStatus::Pending && slot > now() {
                        // Its items are held by the workers until its slot: it is
                        // marked running then.
                        self.held.insert((slot, p.id, lane));
                    } else if status == InstanceStatus::Pending {
                        inputs.push((p.id, Input::Queued));
                    }
                }
                Err(PublishError::Passing(e)) if p.tries + 1 < PUBLISH_TRIES => {
                    let wait = Duration::from_millis(500)
                        .saturating_mul(1 << p.tries.min(6))
                        .min(Duration::from_secs(30));
                    tracing::warn!(instance = %p.id, error = %e, "shard items not queued yet; trying again in {wait:?}");
                    self.republish.push(Republish {
                        due: Instant::now() + wait,
                        id: p.id,
                        items: p.items,
                        tries: p.tries + 1,
                    });
                }
                Err(PublishError::Passing(e) | PublishError::Lasting(e)) => {
                    let reason = format!("its shard items could not be queued: {e}");
                    tracing::error!(instance = %p.id, %reason, "instance fails");
                    inputs.push((p.id, Input::Fail { reason }));
                }
            }
        }
        self.apply_many_on(inputs, lane).await;
    }

    /// Tries again the publications whose backoff is over, with only the items that are
    /// neither queued nor reported on.
    pub(super) async fn republish_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.republish)
            .into_iter()
            .partition(|r| r.due <= now);
        self.republish = later;
        for r in due {
            let Some(stored) = self.live.get(&r.id) else {
                continue;
            };
            let wanted: Vec<u32> = r
                .items
                .iter()
                .copied()
                .filter(|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| stored.instance.shards.get(i))
                        .is_some_and(|s| s.status == ShardStatus::Pending && s.retry_at.is_none())
                })
                .collect();
            let (app, job) = (
                stored.instance.summary.app.clone(),
                stored.instance.summary.job.clone(),
            );
            match self.missing_items(&app, &job, &r.id, &wanted).await {
                Ok(missing) => self.publish(r.id, missing, r.tries),
                Err(e) => {
                    tracing::warn!(instance = %r.id, error = %e, "cannot check queued items; trying again");
                    self.republish.push(Republish {
                        due: now + Duration::from_secs(1),
                        ..r
                    });
                }
            }
        }
    }

    /// Of these items of an instance, the ones with no message in the work queue and no
    /// report waiting in the results stream: the ones that were never published (or
    /// whose publication was lost).
    pub(super) async fn missing_items(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
        items: &[u32],
    ) -> Result<Vec<u32>, NatsError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let topo = &self.nats.topo;
        let mut present = HashSet::new();
        for (stream, filter) in [
            (
                &self.shards_stream,
                topo.instance_shards_filter(app, job, id),
            ),
            (
                &self.shards_stream,
                topo.instance_direct_filter(app, job, id),
            ),
            (
                &self.results_stream,
                topo.stored_instance_results_filter(app, job, id),
            ),
            (
                &self.results_stream,
                topo.stored_instance_urgent_filter(app, job, id),
            ),
        ] {
            let mut subjects = stream
                .info_with_subjects(filter)
                .await
                .map_err(|e| NatsError::op("read queued items", e))?;
            while let Some(entry) = subjects.next().await {
                let (subject, _) = entry.map_err(|e| NatsError::op("read queued items", e))?;
                if let Some(item) = topo.item_of(&subject) {
                    present.insert(item);
                }
            }
        }
        Ok(items
            .iter()
            .copied()
            .filter(|i| !present.contains(i))
            .collect())
    }

    /// Drops every queued shard item of an instance, in the app's queue and on workers'
    /// own subjects.
    pub(super) async fn purge_instance(&self, app: &str, job: &str, id: &InstanceId) {
        let topo = &self.nats.topo;
        for filter in [
            topo.instance_shards_filter(app, job, id),
            topo.instance_direct_filter(app, job, id),
        ] {
            if let Err(e) = self.shards_stream.purge().filter(filter).await {
                tracing::warn!(instance = %id, error = %e, "queued shard items of an ended instance not purged");
            }
        }
    }
}

/// How long a worker has to answer a failover ping.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// The first of these workers (in order) that answers a ping.
async fn first_answering(nats: &antares_nats::Nats, app: &str, order: &[String]) -> Option<String> {
    for worker in order {
        let subject = nats.topo.worker_ping_subject(app, worker);
        let asked = nats.client.request(subject, Bytes::new());
        match tokio::time::timeout(PING_TIMEOUT, asked).await {
            Ok(Ok(_)) => return Some(worker.clone()),
            Ok(Err(e)) => tracing::debug!(%worker, error = %e, "worker did not answer a ping"),
            Err(_) => tracing::debug!(%worker, "worker did not answer a ping in time"),
        }
    }
    None
}

/// A message to publish: subject, `Nats-Msg-Id`, payload; with its item.
type Message = ((String, String, Bytes), u32);

/// The messages of a publication (subjects by its plan; a failover's are set once a
/// worker answers), the items sent to one worker's own subject and to whom, and the
/// items no live worker can take.
#[allow(clippy::type_complexity)]
fn build_messages(
    topo: &antares_schemas::Topology,
    plan: &Plan,
    template: ShardTask,
    shards: Vec<(u32, String, u32, u32)>,
) -> Result<(Vec<Message>, Vec<(u32, String)>, Vec<u32>), PublishError> {
    let mut msgs = Vec::with_capacity(shards.len());
    let mut to = Vec::new();
    let mut unrouted = Vec::new();
    let (id, app, job) = (
        template.instance,
        template.app.clone(),
        template.job.clone(),
    );
    let mut task = template;
    for (item, param, run, attempts) in shards {
        let subject = match plan {
            Plan::Queue => topo.shard_subject(&app, &job, &id, item),
            Plan::Targeted { to: chosen } => match chosen.get(&item) {
                Some(worker) => {
                    to.push((item, worker.clone()));
                    topo.direct_subject(&app, worker, &job, &id, item)
                }
                None => {
                    unrouted.push(item);
                    continue;
                }
            },
            // The worker is known once one answers.
            Plan::Failover { .. } => String::new(),
        };
        task.item = item;
        task.param = param;
        task.run = run;
        task.attempt_base = attempts;
        let payload =
            codec::encode("shard task", &task).map_err(|e| PublishError::Lasting(e.to_string()))?;
        msgs.push(((subject, topo.shard_msg_id(&id, item, run), payload), item));
    }
    Ok((msgs, to, unrouted))
}

/// Publishes in windows bounded in messages and bytes: each window pipelined, then its
/// acks awaited.
async fn send(nats: &Nats, msgs: Vec<(String, String, Bytes)>) -> Result<(), PublishError> {
    let js = &nats.js;
    let mut it = msgs.into_iter().peekable();
    while it.peek().is_some() {
        let _room = nats.ack_room(WINDOW_MESSAGES.min(it.len())).await;
        let mut acks = Vec::new();
        let mut bytes = 0;
        while let Some((subject, msg_id, payload)) = it.next_if(|m| {
            acks.is_empty() || (acks.len() < WINDOW_MESSAGES && bytes + m.2.len() <= WINDOW_BYTES)
        }) {
            bytes += payload.len();
            let publish = PublishMessage::build().payload(payload).message_id(msg_id);
            let ack = js
                .send_publish(subject, publish)
                .await
                .map_err(|e| PublishError::of(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| PublishError::of(&e))?;
        }
    }
    Ok(())
}
