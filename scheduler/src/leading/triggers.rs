//! Durable triggers: messages on `<ns>.trigger.<app>.<job>` become instances.
//!
//! A trigger stays in the work-queue stream until the leader has created its instance,
//! so it survives a scheduler being down. Its instance id comes from the message: a
//! manual trigger (`antares job trigger`, the console) carries the id it promised its
//! caller in a header; any other message gets an id derived from its stream sequence.
//! A backfill trigger (`antares job backfill`) names a slot and gets the id the schedule
//! would have given it. A child trigger (sent by the leader of another partition when a
//! parent there succeeded) carries the child's id, parent and depth. Either way a redelivered trigger finds its instance already there
//! and starts nothing; a trigger whose `key` was used within 24 h starts nothing either
//! and is reported as rejected, naming the instance the key made.
//!
//! Each partition's leader consumes only the triggers the stream stored under its
//! partition; one that is not its own (stored under another split) is rejected.
//!
//! A trigger that cannot run (unknown app or job, a body that is not a valid trigger,
//! overrides the job refuses) is acked so it never loops, logged, and reported as a
//! `trigger_rejected` event with the reason.

use antares_nats::queue::{self, Settle};
use antares_nats::{NatsError, now};
use antares_schemas::InstanceId;
use antares_schemas::Timestamp;
use antares_schemas::instance::TriggerKind;
use antares_schemas::messages::{Event, TriggerRequest};
use antares_schemas::topology::{
    HEADER_DEPTH, HEADER_INSTANCE, HEADER_PARENT, HEADER_SLOT, HEADER_TRIGGER,
};
use async_nats::jetstream::Message;

use super::Leading;
use super::launch::Created;
use crate::events;

/// What a trigger message led to.
enum Handled {
    /// Its instance was created (`None`: it already existed).
    Started(Option<InstanceId>),
    /// It cannot run, for this reason.
    Rejected {
        app: String,
        job: String,
        reason: String,
    },
}

/// The instance id a manual trigger asked for, if it carries a valid one.
fn promised_id(msg: &Message) -> Option<InstanceId> {
    let headers = msg.headers.as_ref()?;
    if headers.get(HEADER_TRIGGER)?.as_str() != "manual" {
        return None;
    }
    headers.get(HEADER_INSTANCE)?.as_str().parse().ok()
}

impl Leading {
    /// Handles one trigger message and settles it.
    pub(super) async fn on_trigger(&mut self, msg: Message) {
        let outcome = self.trigger_instance(&msg).await;
        let how = match outcome {
            Ok(Handled::Started(Some(id))) => {
                tracing::debug!(instance = %id, subject = %msg.subject, "trigger started an instance");
                Settle::Ack
            }
            Ok(Handled::Started(None)) => {
                tracing::debug!(subject = %msg.subject, "trigger already handled: its instance exists");
                Settle::Ack
            }
            Ok(Handled::Rejected { app, job, reason }) => {
                tracing::warn!(subject = %msg.subject, %reason, "trigger rejected");
                let mut event = Event::rejected(&app, &job, now(), reason);
                // A manual trigger promised its caller an id: name it, so a waiting
                // caller learns of the rejection.
                event.instance = promised_id(&msg);
                events::emit(&self.nats, &event).await;
                Settle::Term
            }
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "trigger not handled; it will be redelivered");
                Settle::Nak(Some(std::time::Duration::from_millis(500)))
            }
        };
        if let Err(e) = queue::settle(&msg, how).await {
            tracing::warn!(error = %e, "trigger not settled");
        }
    }

    /// What the trigger led to; `Err` is a NATS failure worth retrying.
    async fn trigger_instance(&mut self, msg: &Message) -> Result<Handled, NatsError> {
        let Some((app, job, partition)) = self.nats.topo.parse_trigger_subject(&msg.subject) else {
            // Not app.job: report it under the raw tokens we have.
            let tail = msg
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_string();
            return Ok(Handled::Rejected {
                app: "_".to_string(),
                job: tail,
                reason: format!(
                    "subject `{}` is not {}",
                    msg.subject,
                    self.nats.topo.trigger_subject("<app>", "<job>")
                ),
            });
        };
        let (app, job) = (app.to_string(), job.to_string());
        let reject = |reason: String| {
            Ok(Handled::Rejected {
                app: app.clone(),
                job: job.clone(),
                reason,
            })
        };
        if partition != self.partition || !self.mine(&app, &job) {
            return reject(format!(
                "stored under partition {partition}, but `{app}/{job}` belongs to partition {} of {}",
                self.nats.topo.partition_of(&app, &job),
                self.nats.topo.partitions()
            ));
        }
        if !self.catalog.has_app(&app) {
            return reject(format!("unknown app `{app}`"));
        }
        let Some(entry) = self.catalog.job(&app, &job) else {
            return reject(format!("unknown job `{app}/{job}`"));
        };
        let req = match TriggerRequest::parse(&msg.payload) {
            Ok(r) => r,
            Err(reason) => return reject(reason),
        };
        let items = match entry.spec.shard_items(&req) {
            Ok(items) => items,
            Err(e) => return reject(e.to_string()),
        };
        let headers = msg.headers.as_ref();
        let how = headers
            .and_then(|h| h.get(HEADER_TRIGGER))
            .map(|v| v.as_str().to_string());
        let info = msg
            .info()
            .map_err(|e| NatsError::op("read trigger metadata", e))?;
        let stored_at = Timestamp(info.published.timestamp_millis());
        let (id, trigger, scheduled_at) = match how.as_deref() {
            Some("manual") => {
                let id = match headers
                    .and_then(|h| h.get(HEADER_INSTANCE))
                    .map(|v| v.as_str().parse::<InstanceId>())
                {
                    Some(Ok(id)) => id,
                    Some(Err(e)) => return reject(e.to_string()),
                    None => InstanceId::for_trigger(&app, &job, info.stream_sequence, stored_at),
                };
                (id, TriggerKind::Manual, id.time())
            }
            Some("backfill") => {
                let slot = headers
                    .and_then(|h| h.get(HEADER_SLOT))
                    .and_then(|v| v.as_str().parse::<i64>().ok())
                    .map(Timestamp);
                let Some(slot) = slot.filter(|s| s.0 > 0) else {
                    return reject(format!(
                        "a backfill trigger needs the header {HEADER_SLOT} with the slot in milliseconds since the epoch"
                    ));
                };
                // The id the schedule itself would give that slot: never run twice.
                (
                    InstanceId::for_fire(&app, &job, slot),
                    TriggerKind::Backfill,
                    slot,
                )
            }
            Some("child") => {
                let id = match headers
                    .and_then(|h| h.get(HEADER_INSTANCE))
                    .map(|v| v.as_str().parse::<InstanceId>())
                {
                    Some(Ok(id)) => id,
                    Some(Err(e)) => return reject(e.to_string()),
                    None => {
                        return reject(format!(
                            "a child trigger needs the header {HEADER_INSTANCE}"
                        ));
                    }
                };
                (id, TriggerKind::Child, id.time())
            }
            _ => {
                let id = InstanceId::for_trigger(&app, &job, info.stream_sequence, stored_at);
                (id, TriggerKind::Event, id.time())
            }
        };
        let mut new = entry.spec.new_instance(id, trigger, scheduled_at, items);
        if trigger == TriggerKind::Child {
            let header = |name: &str| {
                headers
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            new.parent = header(HEADER_PARENT).and_then(|v| v.parse().ok());
            new.depth = header(HEADER_DEPTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
        }
        if let Some(params) = &req.params {
            new.params.clone_from(params);
        }
        new.key.clone_from(&req.key);
        Ok(match self.create_instance(new).await? {
            Created::New(id) => Handled::Started(Some(id)),
            Created::Exists => Handled::Started(None),
            Created::KeyUsed(first) => Handled::Rejected {
                app,
                job,
                reason: match first {
                    Some(first) => format!(
                        "key `{}` was used by instance {first} within 24 h; nothing new was started",
                        req.key.unwrap_or_default()
                    ),
                    None => "its key was used within 24 h; nothing new was started".to_string(),
                },
            },
        })
    }
}
