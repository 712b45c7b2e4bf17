//! Manual triggers ("run now") and waiting for the instance they make.

use std::fmt;
use std::time::Duration;

use antares_nats::queue;
use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::InstanceSummary;
use antares_schemas::messages::{Event, EventKind, TriggerRequest};
use antares_schemas::topology::{HEADER_INSTANCE, HEADER_MSG_ID, HEADER_TRIGGER};
use async_nats::HeaderMap;
use futures::StreamExt;

use super::Admin;
use super::audit::Change;
use crate::error::SchedulerError;

/// How often `wait_instance` looks at the store in case an event was missed (events
/// are core NATS: a reconnect can lose one).
const RECHECK: Duration = Duration::from_secs(2);

/// What [`Admin::trigger`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Triggered {
    /// A new trigger is stored; its instance will have this id.
    Queued(InstanceId),
    /// The trigger's `key` was used within the last 24 h by this instance: nothing new
    /// was started.
    KeyUsed(InstanceId),
}

impl Triggered {
    /// The instance: the one the new trigger makes, or the one that used the key.
    pub fn id(&self) -> InstanceId {
        match self {
            Self::Queued(id) | Self::KeyUsed(id) => *id,
        }
    }

    /// Whether a new trigger was stored.
    pub fn is_new(&self) -> bool {
        matches!(self, Self::Queued(_))
    }
}

impl fmt::Display for Triggered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id().fmt(f)
    }
}

impl Admin {
    /// Asks for one run of a job now (also of a paused job). The job must exist and the
    /// overrides must suit it.
    ///
    /// With a `key` that a trigger of this job used within the last 24 h (its claim is
    /// still there), nothing is published and the instance that used it is returned as
    /// [`Triggered::KeyUsed`]. Otherwise the trigger is published and the id its
    /// instance will have is returned as [`Triggered::Queued`]; the trigger is durable
    /// once this returns (the trigger stream acknowledged it), so the instance is made
    /// even if no scheduler runs at this moment. (Two triggers with the same key that
    /// race past this check are both stored; the scheduler makes one instance.)
    pub async fn trigger(
        &self,
        app: &str,
        job: &str,
        req: &TriggerRequest,
    ) -> Result<Triggered, SchedulerError> {
        let spec = self.get_job(app, job).await?;
        spec.shard_items(req)
            .map_err(|e| SchedulerError::Invalid(e.to_string()))?;
        if let Some(key) = &req.key {
            let claim = self.nats.topo.trigger_key_claim(app, job, key);
            if let Some(used) = self.claimed(&claim).await? {
                return Ok(Triggered::KeyUsed(used));
            }
        }
        let id = InstanceId::for_manual(now(), rand::random::<u128>());
        let body = codec::encode_json("trigger", req)?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_TRIGGER, "manual");
        headers.insert(HEADER_INSTANCE, id.to_string().as_str());
        headers.insert(HEADER_MSG_ID, id.to_string().as_str());
        let subject = self.nats.topo.trigger_subject(app, job);
        let op = || format!("publish trigger to {subject}");
        self.nats
            .js
            .publish_with_headers(subject.clone(), headers, body)
            .await
            .map_err(|e| NatsError::op(op(), e))?
            .await
            .map_err(|e| queue::publish_error(&self.nats.topo.triggers_stream(), op(), e))?;
        let mut after = serde_json::to_value(req).unwrap_or_default();
        if let Some(fields) = after.as_object_mut() {
            fields.insert("instance".to_string(), serde_json::json!(id));
        }
        let change = Change::of_app("job.trigger", format!("{app}/{job}"), app).after(after);
        self.record_all(vec![change]).await?;
        Ok(Triggered::Queued(id))
    }

    /// The instance a claim names, `None` when the key is not claimed.
    pub(crate) async fn claimed(&self, key: &str) -> Result<Option<InstanceId>, SchedulerError> {
        let store = &self.buckets.claims;
        let value = store
            .get(key)
            .await
            .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&value);
        text.trim().parse().map(Some).map_err(|e| {
            SchedulerError::Invalid(format!("the claim {}/{key} is corrupt: {e}", store.name))
        })
    }

    /// Waits until an instance of `app/job` has ended and returns it; with a timeout,
    /// fails with [`SchedulerError::Timeout`] once it has passed.
    ///
    /// Listens for its `instance_finished` event, looks at the store once subscribed (so
    /// an instance that ended before is not missed), and again every few seconds (so a
    /// lost event is not waited for forever).
    pub async fn wait_instance(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
        timeout: Option<Duration>,
    ) -> Result<InstanceSummary, SchedulerError> {
        let wait = self.wait_final(app, job, id);
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait).await.unwrap_or_else(|_| {
                Err(SchedulerError::Timeout(format!(
                    "instance {id} has not ended after {t:?}"
                )))
            }),
        }
    }

    async fn wait_final(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<InstanceSummary, SchedulerError> {
        let subject = self.nats.topo.event_subject(app, job);
        let mut events = self
            .nats
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| NatsError::op(format!("subscribe to {subject}"), e))?;
        let mut recheck = tokio::time::interval(RECHECK);
        loop {
            tokio::select! {
                msg = events.next() => {
                    let Some(msg) = msg else {
                        return Err(SchedulerError::Nats(NatsError::Config(format!(
                            "the subscription to {subject} ended"
                        ))));
                    };
                    // Shard events (two for every shard) are passed over unread.
                    if !mentions(&msg.payload, b"instance_finished")
                        && !mentions(&msg.payload, b"trigger_rejected")
                    {
                        continue;
                    }
                    let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else {
                        continue;
                    };
                    if event.instance.as_ref() != Some(id) {
                        continue;
                    }
                    match event.kind {
                        EventKind::InstanceFinished => {
                            if let Some(s) = self.final_summary(app, job, id).await? {
                                return Ok(s);
                            }
                        }
                        EventKind::TriggerRejected => {
                            return Err(SchedulerError::Invalid(format!(
                                "the trigger of instance {id} was rejected: {}",
                                event.reason.unwrap_or_default()
                            )));
                        }
                        _ => {}
                    }
                }
                _ = recheck.tick() => {
                    if let Some(s) = self.final_summary(app, job, id).await? {
                        return Ok(s);
                    }
                }
            }
        }
    }

    /// The instance's summary if it has ended (read directly: its app and job are known).
    async fn final_summary(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<Option<InstanceSummary>, SchedulerError> {
        Ok(self
            .store
            .find_summary(app, job, id)
            .await?
            .filter(|s| s.status.is_final()))
    }
}

/// Whether an event's body contains `word` (its type, before it is parsed).
fn mentions(body: &[u8], word: &[u8]) -> bool {
    body.windows(word.len()).any(|w| w == word)
}
