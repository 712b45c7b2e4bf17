//! Backfill: the instances a job's schedule would have made in a past time range.
//!
//! Each slot of the schedule in the range gets the id the schedule itself uses for it
//! ([`InstanceId::for_fire`]). A slot whose id is claimed already has an instance (made
//! by the schedule, a misfire catch-up or an earlier backfill) and is reported, not run
//! again. For every other slot a backfill trigger goes to the trigger stream (headers
//! [`HEADER_TRIGGER`] `backfill` and [`HEADER_SLOT`], empty body), and the scheduler
//! makes the instance under that same id: a slot runs at most once however often it is
//! backfilled. Claims are kept as long as history, so a slot older than that is no
//! longer known to have run.

use antares_nats::{NatsError, now};
use antares_schemas::schedule::Schedule;
use antares_schemas::topology::{HEADER_MSG_ID, HEADER_SLOT, HEADER_TRIGGER};
use antares_schemas::{InstanceId, Timestamp};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::Admin;
use super::audit::Change;
use crate::error::SchedulerError;

/// Most slots one backfill covers.
pub const MAX_BACKFILL_SLOTS: usize = 1000;

/// What a backfill did for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillAction {
    /// A backfill trigger is stored; the scheduler makes the instance.
    Queued,
    /// The slot has an instance already; nothing was done.
    Exists,
}

impl BackfillAction {
    /// `queued` or `exists`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Exists => "exists",
        }
    }
}

/// One slot of a backfill (`job backfill --json` items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSlot {
    /// The slot: a fire time of the schedule.
    pub slot: Timestamp,
    /// The slot's instance (made already, or to be made by the trigger).
    pub instance: InstanceId,
    /// What was done.
    pub action: BackfillAction,
}

/// The fire times of a schedule in `[from, to]`; an error past `max`.
fn slots_between(
    schedule: &Schedule,
    from: Timestamp,
    to: Timestamp,
    max: usize,
) -> Result<Vec<Timestamp>, SchedulerError> {
    let mut slots = Vec::new();
    let mut next = schedule.next_after(Timestamp(from.0.saturating_sub(1)));
    while let Some(t) = next.filter(|t| *t <= to) {
        if slots.len() == max {
            return Err(SchedulerError::Invalid(format!(
                "the schedule has more than {max} slots from {from} to {to}: narrow the range (--from/--to) and backfill it in parts"
            )));
        }
        slots.push(t);
        next = schedule.next_after(t);
    }
    Ok(slots)
}

impl Admin {
    /// Makes the instances `app/job`'s schedule would have made from `from` to `to`
    /// (both included, both in the past): every slot without an instance gets a backfill
    /// trigger, every slot with one is reported as it is. At most
    /// [`MAX_BACKFILL_SLOTS`] slots; a job without a schedule is refused.
    pub async fn backfill(
        &self,
        app: &str,
        job: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BackfillSlot>, SchedulerError> {
        let spec = self.get_job(app, job).await?;
        let schedule = spec
            .schedule()
            .map_err(|e| SchedulerError::Invalid(e.to_string()))?
            .ok_or_else(|| {
                SchedulerError::Invalid(format!(
                    "job {app}/{job} has no schedule, so it has no slots to backfill: run it with `antares job trigger {app}/{job}`"
                ))
            })?;
        if from > to {
            return Err(SchedulerError::Invalid(format!(
                "--from {from} is after --to {to}"
            )));
        }
        let now = now();
        if to > now {
            return Err(SchedulerError::Invalid(format!(
                "--to {to} is in the future (now is {now}): the schedule runs the slots still to come; backfill up to now at most"
            )));
        }
        let slots = slots_between(&schedule, from, to, MAX_BACKFILL_SLOTS)?;
        let ids: Vec<InstanceId> = slots
            .iter()
            .map(|slot| InstanceId::for_fire(app, job, *slot))
            .collect();

        // Which slots have an instance: all claims read at once.
        let topo = &self.nats.topo;
        let claimed = join_all(ids.iter().map(|id| self.store.locate(id))).await;

        // A trigger for each of the others, published back to back; the acks after.
        let subject = topo.trigger_subject(app, job);
        let op = || format!("publish backfill trigger to {subject}");
        let mut out = Vec::with_capacity(slots.len());
        let mut acks = Vec::new();
        let _room = self.nats.ack_room(slots.len()).await;
        for ((slot, id), claim) in slots.into_iter().zip(ids).zip(claimed) {
            if claim?.is_some() {
                out.push(BackfillSlot {
                    slot,
                    instance: id,
                    action: BackfillAction::Exists,
                });
                continue;
            }
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_TRIGGER, "backfill");
            headers.insert(HEADER_SLOT, slot.millis().to_string().as_str());
            headers.insert(HEADER_MSG_ID, format!("backfill.{id}").as_str());
            let ack = self
                .nats
                .js
                .publish_with_headers(subject.clone(), headers, Bytes::new())
                .await
                .map_err(|e| NatsError::op(op(), e))?;
            acks.push(ack);
            out.push(BackfillSlot {
                slot,
                instance: id,
                action: BackfillAction::Queued,
            });
        }
        for ack in acks {
            ack.await.map_err(|e| NatsError::op(op(), e))?;
        }
        let queued: Vec<&InstanceId> = out
            .iter()
            .filter(|s| s.action == BackfillAction::Queued)
            .map(|s| &s.instance)
            .collect();
        if !queued.is_empty() {
            let after = serde_json::json!({"from": from, "to": to, "queued": queued});
            let change = Change::of_app("job.backfill", format!("{app}/{job}"), app).after(after);
            self.record_all(vec![change]).await?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test time")
    }

    #[test]
    fn slots_include_both_ends() {
        let every = Schedule::Every(Duration::from_secs(60));
        let slots = slots_between(
            &every,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:03:00Z"),
            10,
        )
        .expect("slots");
        assert_eq!(
            slots,
            [
                ts("2026-01-01T00:00:00Z"),
                ts("2026-01-01T00:01:00Z"),
                ts("2026-01-01T00:02:00Z"),
                ts("2026-01-01T00:03:00Z"),
            ]
        );
        let none = slots_between(
            &every,
            ts("2026-01-01T00:00:01Z"),
            ts("2026-01-01T00:00:59Z"),
            10,
        )
        .expect("none");
        assert!(none.is_empty());
        let at = Schedule::At(ts("2026-01-01T00:00:30Z"));
        let one = slots_between(
            &at,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-02T00:00:00Z"),
            10,
        )
        .expect("one");
        assert_eq!(one, [ts("2026-01-01T00:00:30Z")]);
    }

    #[test]
    fn too_many_slots_are_refused() {
        let every = Schedule::Every(Duration::from_secs(1));
        let from = ts("2026-01-01T00:00:00Z");
        assert_eq!(
            slots_between(&every, from, ts("2026-01-01T00:00:09Z"), 10)
                .expect("ten")
                .len(),
            10
        );
        let e = slots_between(&every, from, ts("2026-01-01T00:00:10Z"), 10).expect_err("eleven");
        assert!(e.to_string().contains("more than 10 slots"), "{e}");
        assert!(e.to_string().contains("narrow the range"), "{e}");
    }
}
