//! The instance/shard state machine.
//!
//! [`step`] is the only place that decides what a report, a cancel, a lost worker, a
//! timeout or a due retry does to an instance. It performs no I/O and reads no clock:
//! given the same instance, input and `now` it makes the same change and returns the
//! same [`Effect`]s. The scheduler persists the changed records with revision-checked KV
//! writes and only then carries out the effects, in order. It takes the instance by
//! `&mut` rather than returning a copy because an instance may hold 100,000 shards.
//!
//! Attempts and runs. The scheduler publishes a shard item as *run* 1, and publishes it
//! again as run 2, 3, ... for a retry or after its worker was lost; a worker's attempt
//! number is the task's `attempt_base` plus JetStream's delivery count. A report names
//! its run: a report of another run than the shard's current one is stale and ignored,
//! which is the fencing that keeps a frozen worker that wakes up from overwriting the
//! newer attempt's result. Within a run, attempt numbers only grow.
//!
//! Shard rules:
//! - `Started(n)` moves a `pending`, `later` or `running` shard to `running` when `n` is
//!   newer than its last attempt (a duplicate of the current attempt is harmless);
//! - `Finished(n)` records the outcome of attempt `n` unless a newer attempt is known:
//!   `Success` → `success`; `Failed`/`TimedOut`/`Cancelled` → a retry when `retry.max`
//!   allows one (`pending` with `retry_at`, next run), else `failed` or `timed_out`;
//!   `Later` → `later` (it runs again), at most [`MAX_LATER`] times, then `failed`;
//!   when no `Started(n)` came first (workers report short attempts only at their end)
//!   it also emits the `shard_started` event, with the start time the report carries;
//! - `Lost` (its worker stopped beating) reruns a `running` shard as a new run, at most
//!   [`MAX_RERUNS`] times, without using up `retry.max`;
//! - `Reroute` (queued or `later` for a worker that is gone) publishes a waiting shard
//!   again as a new run, so the old publication is void wherever it went;
//! - `Expired` (running past its timeout and not heard of) ends the attempt `timed_out`,
//!   stops it, and retries it like a failure;
//! - a shard that is `success`, `failed`, `cancelled` or `timed_out` never changes again.
//!
//! Instance rules: it is `pending` until its shard items are queued (and while it waits
//! for its turn under the overlap policy), then `running`; when every shard is final it
//! is `failed` if one failed, else `timed_out` if one timed out, else `success`. A cancel
//! or a fail makes every unfinished shard final at once. A final instance ignores every
//! input.

use crate::instance::{Instance, InstanceStatus, ShardRecord, ShardStatus};
use crate::limits::{MAX_LATER, MAX_RERUNS, cap_error};
use crate::messages::{Event, EventKind, ReportKind, ShardOutcome, ShardReport, StopOutcome};
use crate::time::Timestamp;

/// Something that happened to an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Every pending shard item of the instance is in the work queue.
    Queued,
    /// A worker reported on a shard item.
    Report(ShardReport),
    /// An operator (or a newer instance, `overlap = "cover"`) cancelled the instance.
    Cancel {
        /// Why, when it is not the operator's plain cancel.
        reason: Option<String>,
    },
    /// The instance cannot go on (its items cannot be queued): it fails with the reason.
    Fail {
        /// Why.
        reason: String,
    },
    /// The instance is not run (its overlap policy said so): it ends `skipped`.
    Skip {
        /// Why.
        reason: String,
    },
    /// The worker running this shard item stopped beating.
    Lost {
        /// The shard item.
        item: u32,
        /// The worker that was lost.
        worker: String,
    },
    /// This shard item waits (queued, or `later`) for a worker that is gone, or one
    /// that cannot run it: it is published again as a new run, for another worker.
    Reroute {
        /// The shard item.
        item: u32,
    },
    /// This shard item runs past its timeout and nobody reported its end.
    Expired {
        /// The shard item.
        item: u32,
    },
    /// Counts and finality follow from the shard records (a takeover checks them: a
    /// summary written apart from its chunks may lag behind them).
    Recount,
    /// No live worker of the app can run the instance's shards (said once; the reason
    /// names what is missing).
    NoWorker {
        /// What is missing.
        reason: String,
    },
    /// A worker that can run them is back.
    WorkerBack,
    /// The retry time of this shard item has come.
    RetryDue {
        /// The shard item.
        item: u32,
    },
}

/// What the scheduler must do after persisting a step, in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Publish this lifecycle event.
    Emit(Box<Event>),
    /// Remove every queued shard item of the instance.
    PurgeQueued,
    /// Remove the queued message of one shard item (its current publication is void).
    Purge {
        /// The shard item.
        item: u32,
    },
    /// Publish these shard items (their current run, `attempt_base` = their attempts).
    Publish {
        /// The shard items.
        items: Vec<u32>,
    },
    /// Wake up at `at` and feed [`Input::RetryDue`] for the item.
    RetryAt {
        /// The shard item.
        item: u32,
        /// When.
        at: Timestamp,
    },
    /// Tell workers to stop running shards of the instance.
    Stop {
        /// One shard item, or all.
        item: Option<u32>,
        /// Only this run of it.
        run: Option<u32>,
        /// What the stopped attempts end as.
        outcome: StopOutcome,
        /// Why, for their logs.
        reason: String,
    },
    /// The instance is final: fire its children if it succeeded, then move it to history.
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
        Input::Cancel { reason } => end_all(inst, now, Ending::Cancel(reason.clone())),
        Input::Fail { reason } => end_all(inst, now, Ending::Fail(reason.clone())),
        Input::Skip { reason } => end_all(inst, now, Ending::Skip(reason.clone())),
        Input::Lost { item, worker } => lost(inst, *item, worker, now),
        Input::Reroute { item } => reroute(inst, *item),
        Input::Expired { item } => expired(inst, *item, now),
        Input::RetryDue { item } => retry_due(inst, *item),
        Input::Recount => recount(inst, now),
        Input::NoWorker { reason } => no_worker(inst, reason, now),
        Input::WorkerBack => worker_back(inst),
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

fn shard_event(inst: &Instance, kind: EventKind, shard: &ShardRecord, at: Timestamp) -> Event {
    let mut e = event(inst, kind, at);
    e.item = Some(shard.item);
    e.worker.clone_from(&shard.worker);
    e.attempt = Some(shard.attempts);
    e
}

fn start_running(inst: &mut Instance, now: Timestamp, step: &mut Step) {
    if inst.summary.status == InstanceStatus::Pending {
        inst.summary.status = InstanceStatus::Running;
        inst.summary.pending_params = Vec::new();
        inst.summary.waiting = false;
        inst.summary.armed = false;
        inst.summary.reason = None;
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

fn shard_index(inst: &Instance, item: u32) -> Option<usize> {
    usize::try_from(item)
        .ok()
        .filter(|i| *i < inst.shards.len())
}

/// Whether a report applies to a shard in this state.
fn accepts(shard: &ShardRecord, r: &ShardReport) -> bool {
    if shard.status.is_final() || r.attempt == 0 || r.run != shard.run {
        return false;
    }
    match r.kind {
        ReportKind::Started => {
            r.attempt > shard.attempts
                || (r.attempt == shard.attempts && shard.status == ShardStatus::Running)
        }
        ReportKind::Finished { .. } => {
            r.attempt > shard.attempts
                || (r.attempt == shard.attempts
                    && matches!(shard.status, ShardStatus::Running | ShardStatus::Pending))
        }
    }
}

/// Moves a shard to a new status, keeping the counts and noting the change.
fn set_status(inst: &mut Instance, idx: usize, to: ShardStatus, step: &mut Step) {
    let Some(shard) = inst.shards.get_mut(idx) else {
        return;
    };
    let from = shard.status;
    shard.status = to;
    step.changed_items.push(shard.item);
    if from != to {
        inst.summary.shard_counts.shift(from, to);
        step.summary_changed = true;
    }
}

fn report(inst: &mut Instance, r: &ShardReport, now: Timestamp) -> Step {
    let Some(idx) = shard_index(inst, r.item) else {
        return Step::ignored("shard item out of range");
    };
    if !accepts(&inst.shards[idx], r) {
        return Step::ignored("stale or duplicate report");
    }
    let mut step = Step::default();
    start_running(inst, now, &mut step);
    if inst.summary.no_worker_since.take().is_some() {
        // A worker runs it after all: the missing-worker reason no longer holds.
        inst.summary.reason = None;
        step.summary_changed = true;
    }
    let start_reported =
        inst.shards[idx].status == ShardStatus::Running && inst.shards[idx].attempts == r.attempt;
    {
        let shard = &mut inst.shards[idx];
        shard.worker = Some(r.worker.clone());
        shard.attempts = r.attempt;
    }
    match &r.kind {
        ReportKind::Started => {
            let shard = &mut inst.shards[idx];
            shard.started_at = Some(r.at);
            shard.finished_at = None;
            shard.error = None;
            shard.retry_at = None;
            set_status(inst, idx, ShardStatus::Running, &mut step);
            if !start_reported {
                let e = shard_event(inst, EventKind::ShardStarted, &inst.shards[idx], r.at);
                step.effects.push(Effect::Emit(Box::new(e)));
            }
        }
        ReportKind::Finished {
            started_at,
            outcome,
        } => {
            {
                let shard = &mut inst.shards[idx];
                shard.started_at = Some(*started_at);
                shard.finished_at = Some(r.at);
                shard.retry_at = None;
            }
            if !start_reported {
                // The worker reports short attempts only when they end: the start
                // event still goes out, first.
                let e = shard_event(
                    inst,
                    EventKind::ShardStarted,
                    &inst.shards[idx],
                    *started_at,
                );
                step.effects.push(Effect::Emit(Box::new(e)));
            }
            match outcome {
                ShardOutcome::Success => {
                    inst.shards[idx].error = None;
                    set_status(inst, idx, ShardStatus::Success, &mut step);
                    emit_finished(inst, idx, ShardStatus::Success, r.at, &mut step);
                }
                ShardOutcome::Failed { error } => {
                    attempt_failed(inst, idx, ShardStatus::Failed, error, r.at, now, &mut step);
                }
                ShardOutcome::TimedOut { error } => {
                    attempt_failed(
                        inst,
                        idx,
                        ShardStatus::TimedOut,
                        error,
                        r.at,
                        now,
                        &mut step,
                    );
                }
                ShardOutcome::Cancelled => {
                    let error = "stopped by the worker (cancelled)";
                    attempt_failed(inst, idx, ShardStatus::Failed, error, r.at, now, &mut step);
                }
                ShardOutcome::Later => {
                    let laters = inst.shards[idx].laters.saturating_add(1);
                    inst.shards[idx].laters = laters;
                    inst.shards[idx].error = None;
                    if laters >= MAX_LATER {
                        inst.shards[idx].error = Some(format!(
                            "answered Later {laters} times, the most a shard may; it failed"
                        ));
                        set_status(inst, idx, ShardStatus::Failed, &mut step);
                        step.effects.push(Effect::Purge { item: r.item });
                        emit_finished(inst, idx, ShardStatus::Failed, r.at, &mut step);
                    } else {
                        set_status(inst, idx, ShardStatus::Later, &mut step);
                        emit_finished(inst, idx, ShardStatus::Later, r.at, &mut step);
                    }
                }
            }
        }
    }
    settle_instance(inst, now, &mut step);
    step
}

/// An attempt failed (or timed out): retry it when the policy allows, else it is final.
fn attempt_failed(
    inst: &mut Instance,
    idx: usize,
    status: ShardStatus,
    error: &str,
    at: Timestamp,
    now: Timestamp,
    step: &mut Step,
) {
    let policy = inst.summary.retry;
    let shard = &mut inst.shards[idx];
    shard.error = Some(cap_error(error));
    shard.finished_at = Some(at);
    let item = shard.item;
    // The event tells how this attempt ended, whatever comes next.
    let mut e = shard_event(inst, EventKind::ShardFinished, &inst.shards[idx], at);
    e.status = Some(shard_status_name(status).to_string());
    e.error = Some(cap_error(error));
    step.effects.push(Effect::Emit(Box::new(e)));
    let shard = &mut inst.shards[idx];
    if shard.retries < policy.max {
        shard.retries += 1;
        shard.run = shard.run.saturating_add(1);
        let delay = policy.delay_ms(shard.retries);
        let due = Timestamp(
            now.0
                .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)),
        );
        shard.retry_at = Some(due);
        set_status(inst, idx, ShardStatus::Pending, step);
        step.effects.push(Effect::RetryAt { item, at: due });
    } else {
        set_status(inst, idx, status, step);
    }
}

fn emit_finished(inst: &Instance, idx: usize, status: ShardStatus, at: Timestamp, step: &mut Step) {
    let shard = &inst.shards[idx];
    let mut e = shard_event(inst, EventKind::ShardFinished, shard, at);
    e.status = Some(shard_status_name(status).to_string());
    e.error.clone_from(&shard.error);
    step.effects.push(Effect::Emit(Box::new(e)));
}

fn lost(inst: &mut Instance, item: u32, worker: &str, now: Timestamp) -> Step {
    let Some(idx) = shard_index(inst, item) else {
        return Step::ignored("shard item out of range");
    };
    let shard = &inst.shards[idx];
    if shard.status != ShardStatus::Running || shard.worker.as_deref() != Some(worker) {
        return Step::ignored("shard not running on that worker");
    }
    let mut step = Step::default();
    let reruns = shard.reruns.saturating_add(1);
    let shard = &mut inst.shards[idx];
    shard.reruns = reruns;
    shard.finished_at = Some(now);
    if reruns > MAX_RERUNS {
        shard.error = Some(format!(
            "its worker `{worker}` was lost while running it, {reruns} times in all: it ran again {MAX_RERUNS} times, the most a shard may"
        ));
        set_status(inst, idx, ShardStatus::Failed, &mut step);
        step.effects.push(Effect::Purge { item });
        emit_finished(inst, idx, ShardStatus::Failed, now, &mut step);
        settle_instance(inst, now, &mut step);
    } else {
        shard.error = Some(format!(
            "its worker `{worker}` was lost while running it; it runs again"
        ));
        shard.run = shard.run.saturating_add(1);
        set_status(inst, idx, ShardStatus::Pending, &mut step);
        step.effects.push(Effect::Purge { item });
        step.effects.push(Effect::Publish { items: vec![item] });
    }
    step
}

fn reroute(inst: &mut Instance, item: u32) -> Step {
    let Some(idx) = shard_index(inst, item) else {
        return Step::ignored("shard item out of range");
    };
    let shard = &inst.shards[idx];
    let waiting = match shard.status {
        ShardStatus::Pending => shard.retry_at.is_none(),
        ShardStatus::Later => true,
        _ => false,
    };
    if !waiting {
        return Step::ignored("shard not waiting for a worker");
    }
    let mut step = Step::default();
    inst.shards[idx].run = inst.shards[idx].run.saturating_add(1);
    set_status(inst, idx, ShardStatus::Pending, &mut step);
    step.effects.push(Effect::Purge { item });
    step.effects.push(Effect::Publish { items: vec![item] });
    step
}

fn expired(inst: &mut Instance, item: u32, now: Timestamp) -> Step {
    let Some(idx) = shard_index(inst, item) else {
        return Step::ignored("shard item out of range");
    };
    let shard = &inst.shards[idx];
    if shard.status != ShardStatus::Running {
        return Step::ignored("shard not running");
    }
    let mut step = Step::default();
    let run = shard.run;
    let timeout = inst.summary.timeout_ms;
    let error = format!(
        "timed out: no end reported {}s past its timeout of {}ms; stopped by the scheduler",
        now.since(shard.started_at.unwrap_or(now))
            .saturating_sub(i64::try_from(timeout).unwrap_or(0))
            / 1000,
        timeout
    );
    step.effects.push(Effect::Stop {
        item: Some(item),
        run: Some(run),
        outcome: StopOutcome::TimedOut,
        reason: error.clone(),
    });
    step.effects.push(Effect::Purge { item });
    attempt_failed(
        inst,
        idx,
        ShardStatus::TimedOut,
        &error,
        now,
        now,
        &mut step,
    );
    settle_instance(inst, now, &mut step);
    step
}

fn retry_due(inst: &mut Instance, item: u32) -> Step {
    let Some(idx) = shard_index(inst, item) else {
        return Step::ignored("shard item out of range");
    };
    let shard = &mut inst.shards[idx];
    if shard.status != ShardStatus::Pending || shard.retry_at.is_none() {
        return Step::ignored("no retry due");
    }
    shard.retry_at = None;
    Step {
        changed_items: vec![item],
        effects: vec![Effect::Publish { items: vec![item] }],
        ..Step::default()
    }
}

fn no_worker(inst: &mut Instance, reason: &str, now: Timestamp) -> Step {
    if inst.summary.no_worker_since.is_some() {
        return Step::ignored("no worker already said");
    }
    inst.summary.no_worker_since = Some(now);
    inst.summary.reason = Some(cap_error(reason));
    let mut e = event(inst, EventKind::NoWorker, now);
    e.reason = Some(cap_error(reason));
    Step {
        summary_changed: true,
        effects: vec![Effect::Emit(Box::new(e))],
        ..Step::default()
    }
}

fn worker_back(inst: &mut Instance) -> Step {
    if inst.summary.no_worker_since.take().is_none() {
        return Step::ignored("no worker was missing");
    }
    inst.summary.reason = None;
    Step {
        summary_changed: true,
        ..Step::default()
    }
}

fn recount(inst: &mut Instance, now: Timestamp) -> Step {
    let mut step = Step::default();
    let counts = crate::instance::ShardCounts::of(&inst.shards);
    if counts != inst.summary.shard_counts {
        inst.summary.shard_counts = counts;
        step.summary_changed = true;
    }
    if inst.summary.status == InstanceStatus::Running {
        settle_instance(inst, now, &mut step);
    }
    if !step.summary_changed {
        return Step::ignored("counts agree with the shard records");
    }
    step
}

/// Ends the instance once every shard is final.
fn settle_instance(inst: &mut Instance, now: Timestamp, step: &mut Step) {
    let c = inst.summary.shard_counts;
    if c.finished() < inst.summary.shard_total {
        return;
    }
    let status = if c.failed > 0 {
        InstanceStatus::Failed
    } else if c.timed_out > 0 {
        InstanceStatus::TimedOut
    } else if c.cancelled > 0 {
        InstanceStatus::Cancelled
    } else {
        InstanceStatus::Success
    };
    finish(inst, status, now, step);
}

enum Ending {
    Cancel(Option<String>),
    Fail(String),
    Skip(String),
}

fn end_all(inst: &mut Instance, now: Timestamp, ending: Ending) -> Step {
    let mut step = Step::default();
    let (to, status, outcome, reason) = match ending {
        Ending::Cancel(reason) => (
            ShardStatus::Cancelled,
            InstanceStatus::Cancelled,
            StopOutcome::Cancelled,
            reason,
        ),
        Ending::Fail(reason) => (
            ShardStatus::Failed,
            InstanceStatus::Failed,
            StopOutcome::Cancelled,
            Some(reason),
        ),
        Ending::Skip(reason) => (
            ShardStatus::Cancelled,
            InstanceStatus::Skipped,
            StopOutcome::Cancelled,
            Some(reason),
        ),
    };
    let running = inst
        .shards
        .iter()
        .any(|s| matches!(s.status, ShardStatus::Running | ShardStatus::Later));
    for idx in 0..inst.shards.len() {
        if inst.shards[idx].status.is_final() {
            continue;
        }
        inst.shards[idx].finished_at = Some(now);
        inst.shards[idx].retry_at = None;
        if to == ShardStatus::Failed {
            inst.shards[idx].error = reason.as_deref().map(cap_error);
        }
        set_status(inst, idx, to, &mut step);
    }
    step.effects.push(Effect::PurgeQueued);
    if running {
        step.effects.push(Effect::Stop {
            item: None,
            run: None,
            outcome,
            reason: reason.clone().unwrap_or_else(|| "cancelled".to_string()),
        });
    }
    inst.summary.reason = reason.map(|r| cap_error(&r));
    finish(inst, status, now, &mut step);
    step
}

fn finish(inst: &mut Instance, status: InstanceStatus, now: Timestamp, step: &mut Step) {
    inst.summary.status = status;
    inst.summary.finished_at = Some(now);
    inst.summary.pending_params = Vec::new();
    inst.summary.waiting = false;
    inst.summary.armed = false;
    if inst.summary.started_at.is_none() {
        inst.summary.started_at = Some(now);
    }
    step.summary_changed = true;
    let mut e = event(inst, EventKind::InstanceFinished, now);
    e.status = Some(status.as_str().to_string());
    e.trigger = Some(inst.summary.trigger);
    e.reason.clone_from(&inst.summary.reason);
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
