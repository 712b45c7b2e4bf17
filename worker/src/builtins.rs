//! The jobs every stock worker registers, for demos, tests and benchmarks
//! ([`WorkerBuilder::with_builtins`](crate::WorkerBuilder::with_builtins)).

use std::time::Duration;

use crate::context::JobContext;
use crate::job::{Job, JobResult};

/// `noop`: succeeds at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl Job for Noop {
    fn name(&self) -> &str {
        "noop"
    }

    async fn execute(&self, _ctx: JobContext) -> JobResult {
        JobResult::Success
    }
}

/// `sleep`: waits for the duration in `params` (`500ms`, `2s`, `1m 30s`), then succeeds.
/// Stops at once when cancelled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sleep;

impl Job for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        let text = ctx.params().trim();
        let pause: Duration = match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(_) if text.is_empty() => {
                return JobResult::Fail(
                    "the `sleep` job needs params: a duration like `500ms` or `2s`".into(),
                );
            }
            Err(e) => {
                return JobResult::Fail(format!(
                    "the `sleep` job's params `{text}` are not a duration ({e}); use e.g. `500ms` or `2s`"
                ));
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => JobResult::Success,
            () = ctx.cancelled() => JobResult::Fail(format!("cancelled while sleeping {text}")),
        }
    }
}

/// `fail`: fails with `params` as the error.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fail;

impl Job for Fail {
    fn name(&self) -> &str {
        "fail"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        let error = ctx.params().trim();
        if error.is_empty() {
            JobResult::Fail("failed on purpose (the `fail` job)".into())
        } else {
            JobResult::Fail(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::messages::{Execution, ShardTask};
    use antares_schemas::{InstanceId, Timestamp};

    fn ctx(params: &str) -> JobContext {
        let task = ShardTask {
            instance: InstanceId::for_fire("a", "j", Timestamp(1)),
            app: "a".into(),
            job: "j".into(),
            item: 0,
            total: 1,
            param: String::new(),
            params: params.into(),
            exec: Execution::Plugin {
                handler: "sleep".into(),
            },
            timeout_ms: 0,
            scheduled_at: Timestamp(1),
            run: 1,
            attempt_base: 0,
            urgent: false,
            not_before: None,
        };
        JobContext::detached(task, 1)
    }

    #[tokio::test]
    async fn builtins_do_what_they_say() {
        assert_eq!(Noop.execute(ctx("")).await, JobResult::Success);
        assert_eq!(Sleep.execute(ctx("1ms")).await, JobResult::Success);
        assert_eq!(
            Fail.execute(ctx("boom")).await,
            JobResult::Fail("boom".into())
        );
        assert!(
            matches!(Fail.execute(ctx("")).await, JobResult::Fail(e) if e.contains("on purpose"))
        );
    }

    #[tokio::test]
    async fn sleep_names_bad_params() {
        let JobResult::Fail(e) = Sleep.execute(ctx("soon")).await else {
            panic!("must fail");
        };
        assert!(e.contains("`soon`") && e.contains("not a duration"), "{e}");
        let JobResult::Fail(e) = Sleep.execute(ctx("")).await else {
            panic!("must fail");
        };
        assert!(e.contains("needs params"), "{e}");
    }
}
