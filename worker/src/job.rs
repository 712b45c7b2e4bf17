//! The `Job` trait users implement, its outcome, and the registry of a worker's jobs.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use antares_schemas::messages::ShardOutcome;
use futures::FutureExt;

use crate::context::JobContext;

/// How one attempt at a shard item ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobResult {
    /// Done: the shard item is finished.
    Success,
    /// Failed with this error; the job's retry policy decides whether it runs again.
    Fail(String),
    /// Not now: put the shard item back; this or another worker runs it again after the
    /// worker's `later_delay`, as the next attempt.
    Later,
}

impl JobResult {
    /// A [`Fail`](Self::Fail) with the error's text.
    pub fn failed(err: impl fmt::Display) -> Self {
        Self::Fail(err.to_string())
    }

    pub(crate) fn into_outcome(self) -> ShardOutcome {
        match self {
            Self::Success => ShardOutcome::Success,
            Self::Fail(error) => ShardOutcome::Failed { error },
            Self::Later => ShardOutcome::Later,
        }
    }
}

/// A Rust job a worker runs for shard items of `kind = "plugin"` jobs whose `handler`
/// equals [`name`](Job::name).
///
/// Write `execute` as an `async fn`; the future must be `Send` (hold no `Rc` or
/// `std::sync::MutexGuard` across an `.await`). The listeners are optional; they run on
/// the worker around every attempt. A panic in `execute` or a listener fails the attempt
/// with the panic message; the worker carries on.
///
/// ```
/// use antares_worker::{Job, JobContext, JobResult};
///
/// struct Resize;
///
/// impl Job for Resize {
///     fn name(&self) -> &str {
///         "resize"
///     }
///
///     async fn execute(&self, ctx: JobContext) -> JobResult {
///         ctx.log(format!("resizing batch {}", ctx.shard_param()));
///         match ctx.shard_param().parse::<u32>() {
///             Ok(_) => JobResult::Success,
///             Err(e) => JobResult::failed(e),
///         }
///     }
///
///     fn on_fail(&self, ctx: &JobContext, error: &str) {
///         eprintln!("shard {} failed: {error}", ctx.shard_item());
///     }
/// }
/// ```
pub trait Job: Send + Sync + 'static {
    /// The name job specs refer to as `handler`.
    fn name(&self) -> &str;

    /// Runs one attempt at one shard item.
    fn execute(&self, ctx: JobContext) -> impl Future<Output = JobResult> + Send;

    /// Called before each attempt.
    fn on_before(&self, ctx: &JobContext) {
        let _ = ctx;
    }

    /// Called after each attempt, whatever its result.
    fn on_after(&self, ctx: &JobContext, result: &JobResult) {
        let _ = (ctx, result);
    }

    /// Called after an attempt that returned [`JobResult::Success`].
    fn on_success(&self, ctx: &JobContext) {
        let _ = ctx;
    }

    /// Called after an attempt that failed (returned [`JobResult::Fail`] or panicked).
    fn on_fail(&self, ctx: &JobContext, error: &str) {
        let _ = (ctx, error);
    }
}

/// A boxed job future the worker can spawn.
pub(crate) type JobFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// [`Job`] with its future boxed, so jobs of different types share one registry.
pub(crate) trait ErasedJob: Send + Sync + 'static {
    fn run(self: Arc<Self>, ctx: JobContext) -> JobFuture;
}

impl<J: Job> ErasedJob for J {
    fn run(self: Arc<Self>, ctx: JobContext) -> JobFuture {
        Box::pin(async move {
            self.on_before(&ctx);
            let result = match AssertUnwindSafe(self.execute(ctx.clone()))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(panic) => JobResult::Fail(format!("job panicked: {}", panic_message(&*panic))),
            };
            self.on_after(&ctx, &result);
            match &result {
                JobResult::Success => self.on_success(&ctx),
                JobResult::Fail(error) => self.on_fail(&ctx, error),
                JobResult::Later => {}
            }
            result
        })
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The jobs a worker runs, by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    jobs: BTreeMap<String, Arc<dyn ErasedJob>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}

impl Registry {
    /// Adds a job; `Err(name)` when one of that name is already there.
    pub(crate) fn insert<J: Job>(&mut self, job: J) -> Result<(), String> {
        let name = job.name().to_string();
        if self.jobs.contains_key(&name) {
            return Err(name);
        }
        self.jobs.insert(name, Arc::new(job));
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn ErasedJob>> {
        self.jobs.get(name).cloned()
    }

    /// Registered names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }
}
