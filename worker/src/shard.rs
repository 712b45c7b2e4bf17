//! Running one shard item: from a pulled message to its settled ack.
//!
//! 1. decode the [`ShardTask`] (a message that is not one is terminated: it can never run)
//!    and register the shard in the worker's [`Stoppers`], so a stop message from the
//!    scheduler reaches it; a task with a `not_before` is held until then (a stop while
//!    held ends it without running it);
//! 2. report `Started` (core publish: best effort, the results stream captures it) once
//!    the job has run for `report_start_after`; a shard that ends sooner is reported by
//!    its `Finished` report alone, which carries its start time;
//! 3. run the job in its own task, sending an in-progress ack every `progress_every` so
//!    the work queue does not hand the item to another worker while it runs;
//! 4. report `Finished` with the outcome (its error capped at
//!    [`MAX_ERROR_BYTES`](antares_schemas::limits::MAX_ERROR_BYTES)), with the other
//!    reports ready at the same moment (see `reports`), awaiting
//!    JetStream's ack (de-duplicated by `Nats-Msg-Id`), and only then ack the message
//!    (`Success`, `Failed`, `TimedOut`, `Cancelled`) or nak it with the `later_delay`
//!    (`Later`). A report that cannot be stored is tried again (same message id, with
//!    in-progress acks meanwhile) for up to a minute, since NATS may be restarting; only
//!    then is the message nak'd, so the item runs again rather than being lost.
//!
//! Stopping a job: a line saying why goes to the shard's log, its context is cancelled
//! (a script's process group gets `SIGTERM`), it gets the worker's `stop_grace` to return
//! (in-progress acks go on meanwhile), then it is aborted (a script's group gets
//! `SIGKILL`); whatever it returns is ignored. A shard past its `timeout_ms` is stopped
//! and reports `TimedOut`; one the scheduler stops reports what the stop message says
//! (`Cancelled` or `TimedOut`); both are acked, never run again from this message. A
//! forced shutdown stops the job the same way and naks the message at once so another
//! worker takes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use antares_nats::codec;
use antares_nats::queue::{self, Settle};
use antares_nats::{Nats, async_nats, now};
use antares_schemas::limits::cap_error;
use antares_schemas::messages::{Execution, ReportKind, ShardOutcome, ShardReport, ShardTask};
use antares_schemas::topology::HEADER_MSG_ID;
use async_nats::jetstream::Message;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::context::JobContext;
use crate::job::{JobFuture, JobResult, Registry, panic_message};
use crate::logs::LogSink;
use crate::metrics::WorkerMetrics;
use crate::reports::Reports;
use crate::stop::{Stop, Stoppers};
use crate::{http, script};

/// What every shard of a worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nats: Nats,
    pub(crate) id: Arc<str>,
    pub(crate) app: String,
    pub(crate) registry: Registry,
    pub(crate) allow_scripts: bool,
    /// The client http jobs use; `None` when the worker runs none.
    pub(crate) http: Option<reqwest::Client>,
    /// Worker environment variables scripts also get.
    pub(crate) script_env: Vec<String>,
    pub(crate) later_delay: Duration,
    pub(crate) report_start_after: Duration,
    pub(crate) progress_every: Duration,
    /// How long a stopped job gets to return before it is aborted (a script's process
    /// group gets `SIGTERM`, then `SIGKILL` when this is over).
    pub(crate) stop_grace: Duration,
    pub(crate) logs: LogSink,
    /// Shards running now.
    pub(crate) running: AtomicU32,
    /// What the worker exposes to Prometheus.
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// Fired when running shards must stop (forced shutdown).
    pub(crate) abort: CancellationToken,
    /// The running shards, for stop messages.
    pub(crate) stoppers: Stoppers,
    /// Where finished reports are stored (several in one message when ready together).
    pub(crate) reports: Reports,
    /// Until when (ms since the epoch) urgent reports go the usual way, after one could
    /// not be stored (credentials that predate them, a stream not provisioned again).
    pub(crate) urgent_off_until: AtomicI64,
}

/// Counts a shard as running until dropped.
struct RunningGuard<'a>(&'a Shared);

impl<'a> RunningGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.running.fetch_add(1, Ordering::Relaxed);
        shared.metrics.started();
        Self(shared)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.stopped();
    }
}

async fn settle(msg: &Message, how: Settle) {
    if let Err(e) = queue::settle(msg, how).await {
        tracing::warn!("{e}");
    }
}

/// Runs the shard item in `msg` to the end and settles the message.
pub(crate) async fn drive(shared: Arc<Shared>, msg: Message) {
    let task: ShardTask = match codec::decode("shard task", &msg.payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(
                "terminating message on {}: {e} (not a shard task; it can never run)",
                msg.subject
            );
            settle(&msg, Settle::Term).await;
            return;
        }
    };
    // Every line logged about this shard names its instance and item.
    let span = tracing::info_span!("shard", instance = %task.instance, item = task.item);
    run_task(shared, msg, task).instrument(span).await;
}

/// [`drive`] once the task is read.
async fn run_task(shared: Arc<Shared>, msg: Message, task: ShardTask) {
    // An item of the app's shared queue this worker cannot run goes back for one that
    // can (the scheduler routes around it once it has read this worker's heartbeat);
    // one sent to this worker by name is run, or failed saying why.
    if !can_run(&shared, &task.exec)
        && shared
            .nats
            .topo
            .parse_direct_subject(&msg.subject)
            .is_none()
    {
        tracing::info!(
            "handing back {}: worker `{}` cannot run it; another worker of the app will",
            msg.subject,
            shared.id
        );
        settle(&msg, Settle::Nak(Some(HAND_BACK_DELAY))).await;
        return;
    }
    // Registered first, so a stop reaches it while it is held for its time.
    let (_registration, mut stop) = shared.stoppers.register(task.instance, task.item, task.run);
    let stopped_early = match hold(&shared, &msg, &task, &mut stop).await {
        Held::Due => None,
        Held::Stopped(stop) => Some(stop),
        Held::ShuttingDown => {
            settle(&msg, Settle::Nak(None)).await;
            return;
        }
    };
    let _running = RunningGuard::new(&shared);
    let clock = Instant::now();
    let attempt = task.attempt_base.saturating_add(queue::attempt(&msg));
    let topo = &shared.nats.topo;
    let urgent = task.urgent && shared.urgent_off_until.load(Ordering::Relaxed) <= now().0;
    let result_subject = if urgent {
        topo.urgent_result_subject(&task.app, &task.job, &task.instance, task.item)
    } else {
        topo.result_subject(&task.app, &task.job, &task.instance, task.item)
    };
    let started_at = now();
    let report = |kind: ReportKind| ShardReport {
        instance: task.instance,
        item: task.item,
        worker: shared.id.to_string(),
        attempt,
        run: task.run,
        at: now(),
        kind,
    };
    let delay = shared.report_start_after;
    let report_start = async {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match codec::encode("shard report", &report(ReportKind::Started)) {
            Ok(bytes) => {
                if let Err(e) = shared
                    .nats
                    .client
                    .publish(result_subject.clone(), bytes)
                    .await
                {
                    tracing::warn!("cannot report the start of {result_subject}: {e}");
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    };
    let outcome = if let Some(stop) = stopped_early {
        let why = format!("{} before it began", stop.why);
        tracing::info!("{why}");
        context(&shared, task.clone(), attempt).log(why);
        Some(stop.outcome)
    } else {
        let running = run(&shared, &msg, task.clone(), attempt, stop);
        if delay.is_zero() {
            report_start.await;
            running.await
        } else {
            tokio::pin!(running);
            tokio::select! {
                biased;
                outcome = &mut running => outcome,
                () = report_start => running.await,
            }
        }
    };
    let outcome = match outcome {
        Some(outcome) => capped(outcome),
        None => {
            // Forced shutdown: hand the item back.
            settle(&msg, Settle::Nak(None)).await;
            return;
        }
    };
    shared.metrics.ended(&task.exec, &outcome, clock.elapsed());
    let settle_with = match outcome {
        ShardOutcome::Success
        | ShardOutcome::Failed { .. }
        | ShardOutcome::TimedOut { .. }
        | ShardOutcome::Cancelled => Settle::Ack,
        ShardOutcome::Later => Settle::Nak(Some(shared.later_delay)),
    };
    let finished = report(ReportKind::Finished {
        started_at,
        outcome,
    });
    let msg_id = format!(
        "{}.done",
        topo.shard_msg_id(&task.instance, task.item, attempt)
    );
    // An urgent report at once, alone, where the scheduler reads first (should that
    // fail, the usual way: a report stored twice is applied once); the others with
    // the reports ready now; alone, and with patience, if that failed.
    let urgent_stored = urgent
        && publish_report(
            &shared.nats,
            result_subject.clone(),
            msg_id.clone(),
            &finished,
        )
        .await
        .map_err(|e| {
            tracing::warn!(
                "urgent result of {result_subject} not stored ({e}); urgent results go \
                 the usual way for {URGENT_OFF:?} (give this app's workers the permissions \
                 of `antares app permissions`, and run `antares provision`)"
            );
            let until = now()
                .0
                .saturating_add(i64::try_from(URGENT_OFF.as_millis()).unwrap_or(0));
            shared.urgent_off_until.store(until, Ordering::Relaxed);
        })
        .is_ok();
    let stored = if urgent_stored {
        Ok(())
    } else {
        let usual = topo.result_subject(&task.app, &task.job, &task.instance, task.item);
        match shared
            .reports
            .store(&task.app, &task.job, msg_id.clone(), finished.clone())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!("result of {usual} not stored with others ({e}); alone now");
                store_report(&shared, &msg, &usual, &msg_id, &finished).await
            }
        }
    };
    match stored {
        Ok(()) => settle(&msg, settle_with).await,
        Err(e) => {
            tracing::warn!("cannot store the result of {result_subject} ({e}); handing it back");
            settle(&msg, Settle::Nak(None)).await;
        }
    }
}

/// How long a worker keeps trying to store a finished report before it hands the shard
/// back: NATS may be restarting, and a report that went out is stored once (its message
/// id), while a shard handed back runs again.
const REPORT_PATIENCE: Duration = Duration::from_secs(60);

/// Stores a finished report, trying again with backoff (and keeping the shard with
/// in-progress acks meanwhile) until [`REPORT_PATIENCE`] runs out or the worker must
/// stop now.
async fn store_report(
    shared: &Shared,
    msg: &Message,
    subject: &str,
    msg_id: &str,
    report: &ShardReport,
) -> Result<(), String> {
    let give_up = Instant::now() + REPORT_PATIENCE;
    let mut wait = Duration::from_millis(200);
    loop {
        let e = match publish_report(
            &shared.nats,
            subject.to_string(),
            msg_id.to_string(),
            report,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() + wait >= give_up || shared.abort.is_cancelled() {
            return Err(e);
        }
        tracing::warn!("cannot store the result of {subject} yet ({e}); trying again in {wait:?}");
        settle(msg, Settle::Progress).await;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.abort.cancelled() => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn publish_report(
    nats: &Nats,
    subject: String,
    msg_id: String,
    report: &ShardReport,
) -> Result<(), String> {
    let bytes = codec::encode("shard report", report).map_err(|e| e.to_string())?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_MSG_ID, msg_id.as_str());
    let ack = nats
        .js
        .publish_with_headers(subject, headers, bytes)
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|_| ()).map_err(|e| e.to_string())
}

/// Longest a task is held for its `not_before`: the scheduler queues a fire at most its
/// fire-ahead time (at most 10 s) before the slot, so a time further off means this
/// host's clock is behind the scheduler's.
const MAX_HOLD: Duration = Duration::from_secs(10);

/// What holding a task until its `not_before` came to.
enum Held {
    /// Its time has come (or it had none).
    Due,
    /// The scheduler stopped it before it began.
    Stopped(Stop),
    /// The worker must stop now: the item goes back.
    ShuttingDown,
}

/// Holds a task until its `not_before`, keeping its message with in-progress acks.
async fn hold(
    shared: &Shared,
    msg: &Message,
    task: &ShardTask,
    stop: &mut oneshot::Receiver<Stop>,
) -> Held {
    let Some(at) = task.not_before else {
        return Held::Due;
    };
    let mut wait = antares_nats::until(at);
    if wait.is_zero() {
        return Held::Due;
    }
    if wait > MAX_HOLD {
        tracing::warn!(
            "not to begin before {at}, {wait:?} from now by this host's clock: held for \
             {MAX_HOLD:?} only (is this host's clock behind the scheduler's?)"
        );
        wait = MAX_HOLD;
    }
    let until = Instant::now() + wait;
    let every = shared.progress_every;
    let mut progress = tokio::time::interval_at(Instant::now() + every, every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listening = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return Held::Due,
            _ = progress.tick() => settle(msg, Settle::Progress).await,
            told = &mut *stop, if listening => match told {
                Ok(told) => return Held::Stopped(told),
                // No stop can come any more: the job runs at its time, with a receiver
                // that says so rather than one already used.
                Err(_) => {
                    listening = false;
                    *stop = oneshot::channel().1;
                }
            },
            () = shared.abort.cancelled() => return Held::ShuttingDown,
        }
    }
}

/// How long urgent reports go the usual way after one could not be stored.
const URGENT_OFF: Duration = Duration::from_secs(600);

/// How long an item this worker cannot run stays away before it is offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// Whether this worker runs items of this kind (what its heartbeat says).
fn can_run(shared: &Shared, exec: &Execution) -> bool {
    match exec {
        Execution::Plugin { handler } => shared.registry.get(handler).is_some(),
        Execution::Command { .. } | Execution::Script { .. } => shared.allow_scripts,
        Execution::Http { .. } => shared.http.is_some(),
    }
}

/// What to run for a task: a future, or a refusal.
fn plan(shared: &Shared, ctx: &JobContext) -> Result<JobFuture, String> {
    match &ctx.task().exec {
        Execution::Plugin { handler } => match shared.registry.get(handler) {
            Some(job) => Ok(job.run(ctx.clone())),
            None => Err(format!(
                "no plugin `{handler}` registered in worker `{}` (registered: {})",
                shared.id,
                registered(&shared.registry)
            )),
        },
        Execution::Command { .. } | Execution::Script { .. } => {
            if shared.allow_scripts {
                Ok(Box::pin(script::run(
                    ctx.clone(),
                    shared.script_env.clone(),
                )))
            } else {
                Err(format!(
                    "scripts are refused by worker `{}`; start it with --allow-scripts",
                    shared.id
                ))
            }
        }
        Execution::Http { .. } => match &shared.http {
            Some(client) => Ok(Box::pin(http::run(ctx.clone(), client.clone()))),
            None => Err(format!(
                "http jobs are refused by worker `{}` (it was built with allow_http(false))",
                shared.id
            )),
        },
    }
}

fn registered(registry: &Registry) -> String {
    let names = registry.names();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The outcome with its error cut to the size every report keeps.
fn capped(outcome: ShardOutcome) -> ShardOutcome {
    match outcome {
        ShardOutcome::Failed { error } => ShardOutcome::Failed {
            error: cap_error(&error),
        },
        ShardOutcome::TimedOut { error } => ShardOutcome::TimedOut {
            error: cap_error(&error),
        },
        other => other,
    }
}

/// A job being stopped: what it will report (`None`: hand the item back) and when it is
/// aborted if it has not returned by then.
struct Stopping {
    outcome: Option<ShardOutcome>,
    abort_at: Instant,
}

/// Runs the job; `None` when it was stopped by a forced shutdown.
/// The context an attempt of `task` runs with: its log lines go to the shard's log.
fn context(shared: &Shared, task: ShardTask, attempt: u32) -> JobContext {
    let topo = &shared.nats.topo;
    let log_subject = topo.log_subject(&task.app, &task.job, &task.instance, task.item);
    JobContext::new(
        task,
        attempt,
        shared.id.clone(),
        log_subject,
        shared.logs.clone(),
        CancellationToken::new(),
        shared.stop_grace,
    )
}

async fn run(
    shared: &Shared,
    msg: &Message,
    task: ShardTask,
    attempt: u32,
    mut stop: oneshot::Receiver<Stop>,
) -> Option<ShardOutcome> {
    let timeout = Duration::from_millis(task.timeout_ms);
    let ctx = context(shared, task, attempt);
    let future = match plan(shared, &ctx) {
        Ok(f) => f,
        Err(refusal) => return Some(ShardOutcome::Failed { error: refusal }),
    };
    let mut handle = tokio::spawn(future);
    let every = shared.progress_every;
    let mut progress = tokio::time::interval_at(Instant::now() + every, every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = async {
        if timeout.is_zero() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(timeout).await;
    };
    tokio::pin!(deadline);
    let begin_stop = |why: &str, outcome: Option<ShardOutcome>| {
        ctx.log(why);
        ctx.cancel();
        Stopping {
            outcome,
            abort_at: Instant::now() + shared.stop_grace,
        }
    };
    // Every branch is disabled once handled: a branch that stays ready would spin.
    let mut stopping: Option<Stopping> = None;
    let mut shutting_down = false;
    let mut listening = true;
    loop {
        let abort_at = stopping.as_ref().map(|s| s.abort_at);
        tokio::select! {
            joined = &mut handle => {
                return match stopping {
                    Some(s) => s.outcome,
                    None => Some(joined_result(joined).into_outcome()),
                };
            }
            _ = progress.tick() => settle(msg, Settle::Progress).await,
            () = sleep_until(abort_at) => {
                handle.abort();
                let _ = (&mut handle).await;
                return stopping.and_then(|s| s.outcome);
            }
            () = shared.abort.cancelled(), if !shutting_down => {
                shutting_down = true;
                match &mut stopping {
                    // Already stopping for a reason of its own: cut the grace short.
                    Some(s) => s.abort_at = s.abort_at.min(Instant::now()),
                    None => {
                        stopping = Some(begin_stop("the worker is shutting down: stopping this attempt and handing the shard back", None));
                    }
                }
            }
            () = &mut deadline, if stopping.is_none() => {
                let error = format!("timed out after {}", humantime::format_duration(timeout));
                stopping = Some(begin_stop(
                    &format!("{error}: stopping"),
                    Some(ShardOutcome::TimedOut { error }),
                ));
            }
            told = &mut stop, if listening && stopping.is_none() => {
                listening = false;
                if let Ok(stop) = told {
                    stopping = Some(begin_stop(&stop.why, Some(stop.outcome)));
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn joined_result(joined: Result<JobResult, tokio::task::JoinError>) -> JobResult {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            JobResult::Fail(format!("job panicked: {}", panic_message(&*e.into_panic())))
        }
        Err(e) => JobResult::Fail(format!("job task ended abnormally: {e}")),
    }
}
