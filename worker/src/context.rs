//! What a running job knows about its shard item, and how it logs and learns it must stop.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use antares_nats::now;
use antares_schemas::messages::{LogLine, LogStream, ShardTask};
use antares_schemas::{InstanceId, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::logs::LogSink;

/// Everything a job gets to know about the shard item it runs.
///
/// Cheap to clone (one reference count); clones share the log and the cancellation.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    task: ShardTask,
    attempt: u32,
    worker: Arc<str>,
    log_subject: String,
    logs: LogSink,
    cancel: CancellationToken,
    stop_grace: Duration,
    dropped_lines: AtomicBool,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("app", &self.app())
            .field("job", &self.job())
            .field("instance", &self.inner.task.instance)
            .field("item", &self.shard_item())
            .field("attempt", &self.attempt())
            .field("worker", &self.worker_id())
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        task: ShardTask,
        attempt: u32,
        worker: Arc<str>,
        log_subject: String,
        logs: LogSink,
        cancel: CancellationToken,
        stop_grace: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                task,
                attempt,
                worker,
                log_subject,
                logs,
                cancel,
                stop_grace,
                dropped_lines: AtomicBool::new(false),
            }),
        }
    }

    /// A context for running a job outside a worker, in unit tests of the job: its log
    /// lines go nowhere and it is never cancelled.
    pub fn detached(task: ShardTask, attempt: u32) -> Self {
        Self::new(
            task,
            attempt.max(1),
            Arc::from("detached"),
            String::new(),
            LogSink::discard(),
            CancellationToken::new(),
            crate::worker::DEFAULT_STOP_GRACE,
        )
    }

    /// The 0-based index of this shard item.
    pub fn shard_item(&self) -> u32 {
        self.inner.task.item
    }

    /// This item's shard param (the i-th entry of the job's `shard_params`, or "").
    pub fn shard_param(&self) -> &str {
        &self.inner.task.param
    }

    /// How many shard items the instance has.
    pub fn shard_total(&self) -> u32 {
        self.inner.task.total
    }

    /// The instance's parameter string (the job's `params`, or a trigger's override).
    pub fn params(&self) -> &str {
        &self.inner.task.params
    }

    /// The instance (one run of the job) this shard item belongs to.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.task.instance
    }

    /// The app name.
    pub fn app(&self) -> &str {
        &self.inner.task.app
    }

    /// The job name.
    pub fn job(&self) -> &str {
        &self.inner.task.job
    }

    /// When the instance was due.
    pub fn scheduled_at(&self) -> Timestamp {
        self.inner.task.scheduled_at
    }

    /// Which attempt at this shard item this is: 1 on the first run, then one more for
    /// every redelivery (after `Later`, a worker that died, or a hand-back at shutdown).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The id of the worker running it.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker
    }

    /// Adds a line to this shard's log, shown live in the console and by
    /// `antares instance logs`. Never waits; lines keep their order.
    pub fn log(&self, line: impl Into<String>) {
        let line = self.log_line(LogStream::Log, line.into());
        let sent = self
            .inner
            .logs
            .try_send(self.inner.log_subject.clone(), line);
        if !sent && !self.inner.dropped_lines.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "shard {}/{} of instance {} logs faster than NATS takes it: dropping lines",
                self.shard_item(),
                self.shard_total(),
                self.instance_id()
            );
        }
    }

    /// Adds a line of a script's output, waiting for room in the log queue.
    pub(crate) async fn log_output(&self, stream: LogStream, line: String) {
        let line = self.log_line(stream, line);
        self.inner
            .logs
            .send(self.inner.log_subject.clone(), line)
            .await;
    }

    fn log_line(&self, stream: LogStream, line: String) -> LogLine {
        LogLine {
            instance: self.inner.task.instance,
            item: self.inner.task.item,
            attempt: self.inner.attempt,
            worker: self.inner.worker.to_string(),
            at: now(),
            stream,
            line,
        }
    }

    /// Resolves when the job must stop: the shard ran past its timeout, the scheduler
    /// stopped it (its instance was cancelled, or it timed out there), or the worker is
    /// shutting down and its grace period is over. A job that waits or loops for long
    /// should `select!` on this and return soon after: it is aborted once the worker's
    /// [`stop_grace`](crate::WorkerBuilder::stop_grace) (default 3 s) is over, and what
    /// it returns after being cancelled is ignored (the attempt reports `timed_out` or
    /// `cancelled`, or goes back to the queue at shutdown).
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Whether [`cancelled`](Self::cancelled) has resolved.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// How long the job gets to return once cancelled.
    pub(crate) fn stop_grace(&self) -> Duration {
        self.inner.stop_grace
    }

    pub(crate) fn cancel(&self) {
        self.inner.cancel.cancel();
    }

    pub(crate) fn task(&self) -> &ShardTask {
        &self.inner.task
    }
}
