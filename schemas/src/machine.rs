//! The instance/shard state machine.
//!
//! [`step`] is the only place that decides what a report, a cancel or the queueing of
//! shard items does to an instance. It performs no I/O and reads no clock: given the
//! same instance, input and `now` it makes the same change and returns the same
//! [`Effect`]s. The scheduler persists the changed records with revision-checked KV
//! writes and only then carries out the effects (events, purging queued items, moving
//! the instance to history). It takes the instance by `&mut` rather than returning a
//! copy because an instance may hold 20,000 shard records.
//!
//! Shard rules (attempt `n` is JetStream's delivery count of the shard item):
//! - `Started(n)` moves a `pending`, `later` or `running` shard to `running` when `n` is
//!   newer than its last attempt (a duplicate of the current attempt is harmless);
//! - `Finished(n)` records the outcome of attempt `n` unless a newer attempt is known:
//!   `Success` → `success`, `Failed(e)` → `failed`, `Later` → `later` (it runs again);
//!   when no `Started(n)` came first (workers report short attempts only at their end)
//!   it also emits the `shard_started` event, with the start time the report carries;
//! - a shard that is `success`, `failed`, `cancelled` or `timed_out` never changes again,
//!   so late or duplicated reports are ignored.
//!
//! Instance rules: it is `pending` until its shard items are queued, then `running`;
//! when every shard is final it is `success` if all succeeded, else `failed`. A cancel
//! makes every unfinished shard `cancelled` and the instance `cancelled`. A final
//! instance ignores every input.

use crate::instance::{Instance, InstanceStatus, ShardRecord, ShardStatus};
use crate::messages::{Event, EventKind, ReportKind, ShardOutcome, ShardReport};
use crate::time::Timestamp;

/// Something that happened to an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Every shard item of the instance is in the work queue.
    Queued,
    /// A worker reported on a shard item.
    Report(ShardReport),
    /// An operator cancelled the instance.
    Cancel,
}

/// What the scheduler must do after persisting a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Publish this lifecycle event.
    Emit(Box<Event>),
    /// Remove the instance's shard items that are still queued.
    PurgeQueued,
    /// The instance is final: move it to history.
    Finished,
}

/// What a step changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The instance summary changed.
    pub summary_changed: bool,
    /// These shard items changed.
    pub changed_items: Vec<u32>,
    /// What to do next, in order.
    pub effects: Vec<Effect>,
    /// Why the input changed nothing, if it did not.
    pub ignored: Option<&'static str>,
}

impl Step {
    fn ignored(reason: &'static str) -> Self {
        Self {
            ignored: Some(reason),
            ..Self::default()
        }
    }
}

/// Applies one input to an instance.
pub fn step(inst: &mut Instance, input: &Input, now: Timestamp) -> Step {
    if inst.summary.status.is_final() {
        return Step::ignored("instance already ended");
    }
    match input {
        Input::Queued => queued(inst, now),
        Input::Report(r) => report(inst, r, now),
        Input::Cancel => cancel(inst, now),
    }
}

fn event(inst: &Instance, kind: EventKind, at: Timestamp) -> Event {
    Event::new(
        kind,
        &inst.summary.app,
        &inst.summary.job,
        Some(inst.summary.id),
        at,
    )
}

fn start_running(inst: &mut Instance, now: Timestamp, step: &mut Step) {
    if inst.summary.status == InstanceStatus::Pending {
        inst.summary.status = InstanceStatus::Running;
        inst.summary.pending_params = Vec::new();
        inst.summary.started_at = Some(now);
        step.summary_changed = true;
        let mut e = event(inst, EventKind::InstanceStarted, now);
        e.trigger = Some(inst.summary.trigger);
        step.effects.push(Effect::Emit(Box::new(e)));
    }
}

fn queued(inst: &mut Instance, now: Timestamp) -> Step {
    let mut step = Step::default();
    if inst.summary.status != InstanceStatus::Pending {
        return Step::ignored("instance already queued");
    }
    start_running(inst, now, &mut step);
    step
}

/// Whether a report about attempt `attempt` applies to a shard in this state.
fn accepts(shard: &ShardRecord, attempt: u32, kind: &ReportKind) -> bool {
    if shard.status.is_final() || attempt == 0 {
        return false;
    }
    match kind {
        ReportKind::Started => {
            attempt > shard.attempts
                || (attempt == shard.attempts && shard.status == ShardStatus::Running)
        }
        ReportKind::Finished { .. } => {
            attempt > shard.attempts
                || (attempt == shard.attempts && shard.status != ShardStatus::Later)
        }
    }
}

fn report(inst: &mut Instance, r: &ShardReport, now: Timestamp) -> Step {
    let Some(idx) = usize::try_from(r.item)
        .ok()
        .filter(|i| *i < inst.shards.len())
    else {
        return Step::ignored("shard item out of range");
    };
    if !accepts(&inst.shards[idx], r.attempt, &r.kind) {
        return Step::ignored("stale or duplicate report");
    }
    let mut step = Step::default();
    start_running(inst, now, &mut step);
    let before = inst.shards[idx].status;
    let start_reported = before == ShardStatus::Running && inst.shards[idx].attempts == r.attempt;
    let shard = &mut inst.shards[idx];
    let duplicate_start = matches!(r.kind, ReportKind::Started) && r.attempt == shard.attempts;
    shard.worker = Some(r.worker.clone());
    shard.attempts = r.attempt;
    let mut e = Event::new(
        EventKind::ShardStarted,
        &inst.summary.app,
        &inst.summary.job,
        Some(inst.summary.id),
        r.at,
    );
    e.item = Some(r.item);
    e.worker = Some(r.worker.clone());
    e.attempt = Some(r.attempt);
    match &r.kind {
        ReportKind::Started => {
            shard.status = ShardStatus::Running;
            shard.started_at = Some(r.at);
            shard.finished_at = None;
            shard.error = None;
        }
        ReportKind::Finished {
            started_at,
            outcome,
        } => {
            shard.started_at = Some(*started_at);
            shard.finished_at = Some(r.at);
            let (status, error) = match outcome {
                ShardOutcome::Success => (ShardStatus::Success, None),
                ShardOutcome::Failed { error } => (ShardStatus::Failed, Some(error.clone())),
                ShardOutcome::Later => (ShardStatus::Later, None),
            };
            shard.status = status;
            shard.error = error.clone();
            if !start_reported {
                // The worker reports short attempts only when they end: the start
                // event still goes out, first.
                let mut started = e.clone();
                started.at = *started_at;
                step.effects.push(Effect::Emit(Box::new(started)));
            }
            e.kind = EventKind::ShardFinished;
            e.status = Some(shard_status_name(status).to_string());
            e.error = error;
        }
    }
    let after = shard.status;
    step.changed_items.push(r.item);
    if before != after {
        inst.summary.shard_counts.shift(before, after);
        step.summary_changed = true;
    }
    if !duplicate_start {
        step.effects.push(Effect::Emit(Box::new(e)));
    }
    if inst.summary.shard_counts.finished() >= inst.summary.shard_total {
        let status = if inst.summary.shard_counts.success >= inst.summary.shard_total {
            InstanceStatus::Success
        } else {
            InstanceStatus::Failed
        };
        finish(inst, status, now, &mut step);
    }
    step
}

fn cancel(inst: &mut Instance, now: Timestamp) -> Step {
    let mut step = Step::default();
    for shard in inst.shards.iter_mut().filter(|s| !s.status.is_final()) {
        inst.summary
            .shard_counts
            .shift(shard.status, ShardStatus::Cancelled);
        shard.status = ShardStatus::Cancelled;
        shard.finished_at = Some(now);
        step.changed_items.push(shard.item);
    }
    step.effects.push(Effect::PurgeQueued);
    finish(inst, InstanceStatus::Cancelled, now, &mut step);
    step
}

fn finish(inst: &mut Instance, status: InstanceStatus, now: Timestamp, step: &mut Step) {
    inst.summary.status = status;
    inst.summary.finished_at = Some(now);
    inst.summary.pending_params = Vec::new();
    if inst.summary.started_at.is_none() {
        inst.summary.started_at = Some(now);
    }
    step.summary_changed = true;
    let mut e = event(inst, EventKind::InstanceFinished, now);
    e.status = Some(status.as_str().to_string());
    e.trigger = Some(inst.summary.trigger);
    step.effects.push(Effect::Emit(Box::new(e)));
    step.effects.push(Effect::Finished);
}

/// The contract's name of a shard status.
pub fn shard_status_name(s: ShardStatus) -> &'static str {
    match s {
        ShardStatus::Pending => "pending",
        ShardStatus::Running => "running",
        ShardStatus::Success => "success",
        ShardStatus::Failed => "failed",
        ShardStatus::Later => "later",
        ShardStatus::Cancelled => "cancelled",
        ShardStatus::TimedOut => "timed_out",
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
