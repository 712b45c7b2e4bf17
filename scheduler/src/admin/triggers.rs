//! Manual triggers ("run now") and waiting for the instance they make.

use std::time::Duration;

use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::InstanceSummary;
use antares_schemas::messages::{Event, EventKind, TriggerRequest};
use antares_schemas::topology::{HEADER_INSTANCE, HEADER_MSG_ID, HEADER_TRIGGER};
use async_nats::HeaderMap;
use futures::StreamExt;

use super::Admin;
use crate::error::SchedulerError;

/// How often `wait_instance` looks at the store in case an event was missed (events
/// are core NATS: a reconnect can lose one).
const RECHECK: Duration = Duration::from_secs(2);

impl Admin {
    /// Asks for one run of a job now (also of a paused job) and returns the id its
    /// instance will have. The job must exist and the overrides must suit it; the
    /// trigger is durable once this returns (the trigger stream acknowledged it), so
    /// the instance is made even if no scheduler runs at this moment.
    pub async fn trigger(
        &self,
        app: &str,
        job: &str,
        req: &TriggerRequest,
    ) -> Result<InstanceId, SchedulerError> {
        let spec = self.get_job(app, job).await?;
        spec.shard_items(req)
            .map_err(|e| SchedulerError::Invalid(e.to_string()))?;
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
            .map_err(|e| NatsError::op(op(), e))?;
        Ok(id)
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
                    let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else {
                        continue;
                    };
                    if event.instance.as_ref() != Some(id) {
                        continue;
                    }
                    match event.kind {
                        EventKind::InstanceFinished => {
                            if let Some(s) = self.final_summary(id).await? {
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
                    if let Some(s) = self.final_summary(id).await? {
                        return Ok(s);
                    }
                }
            }
        }
    }

    /// The instance's summary if it has ended.
    async fn final_summary(
        &self,
        id: &InstanceId,
    ) -> Result<Option<InstanceSummary>, SchedulerError> {
        Ok(self
            .store
            .find(id)
            .await?
            .map(|(_, stored)| stored.instance.summary)
            .filter(|s| s.status.is_final()))
    }
}
