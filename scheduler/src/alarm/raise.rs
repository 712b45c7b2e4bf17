//! The leader's side of alarms: which ones are raised (the job's `on`, the rate limit,
//! once per instance), the `alarm` event, and queueing one delivery per target without
//! waiting for the stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use antares_nats::{Nats, codec};
use antares_schemas::InstanceId;
use antares_schemas::alarm::{AlarmDelivery, AlarmKind, AlarmPayload, AlarmTarget};
use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::spec::AlarmSpec;
use tokio::time::Instant;

use crate::events;

/// Batches of deliveries whose stream acknowledgement is awaited at once, at most;
/// past that, deliveries are dropped with an error in the log (the event went out).
const MAX_IN_FLIGHT: usize = 256;
/// Instances remembered as alarmed on at their end (so a finish tried again raises
/// nothing new).
const ENDED_MEMORY: usize = 4096;
/// Rate-limit entries kept before old ones are dropped.
const MAX_RECENT: usize = 10_000;

type JobKey = (String, String);

/// What the leader knows about alarms.
#[derive(Debug)]
pub(crate) struct Alarms {
    nats: Nats,
    window: Duration,
    /// Per job and kind: when one was last raised, and how many were left out since.
    recent: HashMap<(String, String, AlarmKind), (Instant, u32)>,
    /// Each job's last ended instance that succeeded or failed, and how it ended.
    last_end: HashMap<JobKey, (InstanceId, InstanceStatus)>,
    /// Instances alarmed on as stuck (until they end).
    stuck: HashSet<InstanceId>,
    /// Instances whose end was looked at, oldest first.
    ended: VecDeque<InstanceId>,
    ended_set: HashSet<InstanceId>,
    in_flight: Arc<AtomicUsize>,
}

/// Whether a status counts as a failure for `recovered`.
pub(crate) fn is_failure(s: InstanceStatus) -> bool {
    matches!(s, InstanceStatus::Failed | InstanceStatus::TimedOut)
}

impl Alarms {
    pub(crate) fn new(nats: &Nats, window: Duration) -> Self {
        Self {
            nats: nats.clone(),
            window,
            recent: HashMap::new(),
            last_end: HashMap::new(),
            stuck: HashSet::new(),
            ended: VecDeque::new(),
            ended_set: HashSet::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Notes that an instance's end is looked at; `false` if it was already.
    pub(crate) fn first_end(&mut self, id: InstanceId) -> bool {
        if !self.ended_set.insert(id) {
            return false;
        }
        self.ended.push_back(id);
        if self.ended.len() > ENDED_MEMORY
            && let Some(old) = self.ended.pop_front()
        {
            self.ended_set.remove(&old);
        }
        self.stuck.remove(&id);
        true
    }

    /// The last known end (success or failure) of a job, if known here.
    pub(crate) fn last_end(&self, app: &str, job: &str) -> Option<(InstanceId, InstanceStatus)> {
        self.last_end
            .get(&(app.to_string(), job.to_string()))
            .copied()
    }

    /// Records a job's end, unless a newer one is known.
    pub(crate) fn note_end(&mut self, app: &str, job: &str, id: InstanceId, s: InstanceStatus) {
        if !matches!(
            s,
            InstanceStatus::Success | InstanceStatus::Failed | InstanceStatus::TimedOut
        ) {
            return;
        }
        let slot = self
            .last_end
            .entry((app.to_string(), job.to_string()))
            .or_insert((id, s));
        if slot.0 <= id {
            *slot = (id, s);
        }
    }

    /// Whether an instance was alarmed on as stuck; notes that it is now.
    pub(crate) fn first_stuck(&mut self, id: InstanceId) -> bool {
        self.stuck.insert(id)
    }

    /// Forgets the stuck instances that are not in `live` any more.
    pub(crate) fn retain_stuck(&mut self, live: impl Fn(&InstanceId) -> bool) {
        self.stuck.retain(|id| live(id));
    }

    /// The rate limit: `Some(left out since the last one)` when one may be raised now.
    fn admit(&mut self, app: &str, job: &str, kind: AlarmKind, now: Instant) -> Option<u32> {
        if self.recent.len() >= MAX_RECENT {
            let window = self.window;
            self.recent
                .retain(|_, (at, n)| *n > 0 || now - *at < window);
        }
        let key = (app.to_string(), job.to_string(), kind);
        match self.recent.get_mut(&key) {
            Some((at, left_out)) if now.duration_since(*at) < self.window => {
                *left_out = left_out.saturating_add(1);
                None
            }
            Some((at, left_out)) => {
                let n = *left_out;
                *at = now;
                *left_out = 0;
                Some(n)
            }
            None => {
                self.recent.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// Raises an alarm of a job whose `alarm` is `spec`, if its `on` asks for this kind
    /// and the rate limit lets it: the event at once, the deliveries queued.
    pub(crate) async fn raise(&mut self, spec: &AlarmSpec, mut payload: AlarmPayload) {
        if !spec.on.contains(&payload.kind.on()) {
            return;
        }
        let Some(suppressed) = self.admit(&payload.app, &payload.job, payload.kind, Instant::now())
        else {
            tracing::debug!(app = %payload.app, job = %payload.job, kind = payload.kind.as_str(), "alarm left out (rate limit)");
            return;
        };
        payload.suppressed = suppressed;
        tracing::warn!(
            app = %payload.app,
            job = %payload.job,
            instance = ?payload.instance,
            kind = payload.kind.as_str(),
            suppressed,
            error = payload.error.as_deref().unwrap_or(""),
            "alarm"
        );
        events::emit(&self.nats, &alarm_event(&payload, None)).await;
        let targets = spec
            .webhooks
            .iter()
            .cloned()
            .map(AlarmTarget::Webhook)
            .chain(spec.emails.iter().cloned().map(AlarmTarget::Email));
        let subject = self.nats.topo.alarm_subject(&payload.app, &payload.job);
        let mut acks = Vec::new();
        for target in targets {
            let what = target.describe();
            let delivery = AlarmDelivery {
                payload: payload.clone(),
                target,
            };
            let body = match codec::encode("alarm delivery", &delivery) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "alarm delivery not encoded");
                    continue;
                }
            };
            match self.nats.js.publish(subject.clone(), body).await {
                Ok(ack) => acks.push((what, ack)),
                Err(e) => tracing::error!(target = %what, error = %e, "alarm delivery not queued"),
            }
        }
        if acks.is_empty() {
            return;
        }
        // The acknowledgements are awaited beside the loop: a full queue is logged.
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("too many alarm deliveries waiting for the stream: not awaiting these");
            return;
        }
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let results = futures::future::join_all(
                acks.into_iter()
                    .map(|(what, ack)| async move { (what, ack.await) }),
            )
            .await;
            for (what, res) in results {
                if let Err(e) = res {
                    tracing::error!(target = %what, error = %e, "alarm delivery not queued (the alarm stream is full or unreachable)");
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The `alarm` event of a payload; `reason` says what became of a delivery.
pub(crate) fn alarm_event(p: &AlarmPayload, reason: Option<String>) -> Event {
    let mut e = Event::new(EventKind::Alarm, &p.app, &p.job, p.instance, p.at);
    e.alarm = Some(p.kind);
    e.status = p.status.clone();
    e.error = p.error.clone();
    e.suppressed = (p.suppressed > 0).then_some(p.suppressed);
    e.reason = reason;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_nats::ConnectOptions;
    use antares_nats::server::LocalServer;
    use antares_schemas::Topology;

    #[tokio::test]
    async fn repeats_are_left_out_and_counted_in_the_next() -> anyhow::Result<()> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        let mut a = Alarms::new(&nats, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(a.admit("a", "j", AlarmKind::Fail, t0), Some(0));
        assert_eq!(a.admit("a", "j", AlarmKind::Fail, t0), None);
        let t1 = t0 + Duration::from_secs(59);
        assert_eq!(a.admit("a", "j", AlarmKind::Fail, t1), None);
        // Another kind or job is counted apart.
        assert_eq!(a.admit("a", "j", AlarmKind::Timeout, t1), Some(0));
        assert_eq!(a.admit("a", "k", AlarmKind::Fail, t1), Some(0));
        let t2 = t0 + Duration::from_secs(61);
        assert_eq!(a.admit("a", "j", AlarmKind::Fail, t2), Some(2));
        assert_eq!(a.admit("a", "j", AlarmKind::Fail, t2), None);
        Ok(())
    }

    #[tokio::test]
    async fn the_last_end_keeps_the_newest() -> anyhow::Result<()> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        let mut a = Alarms::new(&nats, Duration::from_secs(60));
        let old = InstanceId::for_fire("a", "j", antares_schemas::Timestamp(1000));
        let new = InstanceId::for_fire("a", "j", antares_schemas::Timestamp(2000));
        a.note_end("a", "j", new, InstanceStatus::Failed);
        a.note_end("a", "j", old, InstanceStatus::Success);
        assert_eq!(a.last_end("a", "j"), Some((new, InstanceStatus::Failed)));
        a.note_end("a", "j", new, InstanceStatus::Cancelled);
        assert_eq!(a.last_end("a", "j"), Some((new, InstanceStatus::Failed)));
        assert!(a.first_end(new));
        assert!(!a.first_end(new));
        Ok(())
    }
}
