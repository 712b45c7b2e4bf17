//! Plugin jobs against a real nats-server: outcomes, reports, listeners, panics,
//! refusals, concurrency, timeouts, stops from the scheduler and capped errors.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_nats::{codec, now};
use antares_schemas::Timestamp;
use antares_schemas::limits::MAX_ERROR_BYTES;
use antares_schemas::messages::{
    Execution, LogLine, LogStream, ReportKind, ShardOutcome, ShardReport, StopOutcome,
};
use antares_worker::{Job, JobContext, JobResult};
use anyhow::anyhow;
use common::{Bench, WAIT, plugin, spawn, stop_all, task};

/// Logs what it was given, succeeds, and records its listener calls.
#[derive(Clone, Default)]
struct Echo {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Job for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        ctx.log(format!(
            "{}/{} item {} of {} param={} params={} attempt={}",
            ctx.app(),
            ctx.job(),
            ctx.shard_item(),
            ctx.shard_total(),
            ctx.shard_param(),
            ctx.params(),
            ctx.attempt()
        ));
        JobResult::Success
    }

    fn on_before(&self, _ctx: &JobContext) {
        self.record("before");
    }
    fn on_after(&self, _ctx: &JobContext, result: &JobResult) {
        self.record(&format!("after {result:?}"));
    }
    fn on_success(&self, _ctx: &JobContext) {
        self.record("success");
    }
    fn on_fail(&self, _ctx: &JobContext, error: &str) {
        self.record(&format!("fail {error}"));
    }
}

impl Echo {
    fn record(&self, what: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(what.to_string());
        }
    }
}

#[tokio::test]
async fn plugin_success_reports_started_then_finished() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let echo = Echo::default();
    let worker = spawn(bench.worker("billing", "w1").register(echo.clone())).await?;
    let mut t = task("billing", "report", plugin("echo"));
    t.item = 2;
    t.total = 3;
    t.param = "c".into();
    t.params = "p=1".into();
    bench.publish(&t).await?;

    let seen = bench.until_finished(t.instance, 2).await?;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].kind, ReportKind::Started);
    assert_eq!((seen[0].worker.as_str(), seen[0].attempt), ("w1", 1));
    let ReportKind::Finished {
        started_at,
        outcome,
    } = &seen[1].kind
    else {
        return Err(anyhow!("not finished: {seen:?}"));
    };
    assert_eq!(*outcome, ShardOutcome::Success);
    assert!(*started_at <= seen[1].at);
    assert_eq!(seen[1].attempt, 1);

    let lines = bench.logs_until(&t, |l| !l.is_empty()).await?;
    assert_eq!(
        lines[0].line,
        "billing/report item 2 of 3 param=c params=p=1 attempt=1"
    );
    assert_eq!(
        (lines[0].stream, lines[0].item, lines[0].attempt),
        (LogStream::Log, 2, 1)
    );
    assert_eq!(lines[0].worker, "w1");
    let calls = echo.calls.lock().map_err(|e| anyhow!("{e}"))?.clone();
    assert_eq!(calls, ["before", "after Success", "success"]);
    worker.stop().await
}

/// Returns `Later` on the first attempt, succeeds on the next.
struct NotYet;

impl Job for NotYet {
    fn name(&self) -> &str {
        "not-yet"
    }
    async fn execute(&self, ctx: JobContext) -> JobResult {
        if ctx.attempt() == 1 {
            JobResult::Later
        } else {
            JobResult::Success
        }
    }
}

#[tokio::test]
async fn later_is_redelivered_as_the_next_attempt() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .later_delay(Duration::from_millis(200))
            .register(NotYet),
    )
    .await?;
    let t = task("billing", "sync", plugin("not-yet"));
    bench.publish(&t).await?;
    let (outcome, first) = bench.outcome(t.instance, 0).await?;
    assert_eq!((outcome, first.attempt), (ShardOutcome::Later, 1));
    let seen = bench.until_finished(t.instance, 0).await?;
    assert_eq!(seen[0].kind, ReportKind::Started);
    assert_eq!(seen[0].attempt, 2);
    let ReportKind::Finished { outcome, .. } = &seen[1].kind else {
        return Err(anyhow!("not finished: {seen:?}"));
    };
    assert_eq!((outcome, seen[1].attempt), (&ShardOutcome::Success, 2));
    worker.stop().await
}

#[tokio::test]
async fn failures_carry_their_error() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").with_builtins()).await?;
    let mut t = task("billing", "boom", plugin("fail"));
    t.params = "disk full".into();
    bench.publish(&t).await?;
    let (outcome, _) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::Failed {
            error: "disk full".into()
        }
    );

    let mut t = task("billing", "nap", plugin("sleep"));
    t.params = "a while".into();
    bench.publish(&t).await?;
    let (outcome, _) = bench.outcome(t.instance, 0).await?;
    let ShardOutcome::Failed { error } = outcome else {
        return Err(anyhow!("must fail"));
    };
    assert!(error.contains("`a while` are not a duration"), "{error}");

    let mut t = task("billing", "nap", plugin("sleep"));
    t.params = "20ms".into();
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    worker.stop().await
}

struct Panicky;

impl Job for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn execute(&self, ctx: JobContext) -> JobResult {
        if ctx.params() == "panic" {
            panic!("the job exploded");
        }
        JobResult::Success
    }
}

#[tokio::test]
async fn a_panicking_job_fails_and_the_worker_carries_on() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .concurrency(1)
            .register(Panicky),
    )
    .await?;
    let mut t = task("billing", "explode", plugin("panicky"));
    t.params = "panic".into();
    bench.publish(&t).await?;
    let (outcome, _) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::Failed {
            error: "job panicked: the job exploded".into()
        }
    );
    let t = task("billing", "explode", plugin("panicky"));
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    worker.stop().await
}

#[tokio::test]
async fn items_the_worker_cannot_run_fail_saying_why() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").with_builtins()).await?;
    let t = task("billing", "mystery", plugin("nope"));
    bench.publish_to("w1", &t).await?;
    let (outcome, _) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::Failed {
            error: "no plugin `nope` registered in worker `w1` (registered: fail, noop, sleep)"
                .into()
        }
    );

    worker.stop().await?;

    let worker = spawn(
        bench
            .worker("billing", "w2")
            .with_builtins()
            .allow_http(false),
    )
    .await?;
    let t = task(
        "billing",
        "call",
        Execution::Http {
            url: "http://127.0.0.1:9/".into(),
            method: "POST".into(),
            headers: Default::default(),
            body: String::new(),
            timeout_ms: 1000,
        },
    );
    bench.publish_to("w2", &t).await?;
    let (outcome, _) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::Failed {
            error: "http jobs are refused by worker `w2` (it was built with allow_http(false))"
                .into()
        }
    );

    // Neither is left in the queue to loop.
    bench.until_queue_empty("the shard queue to empty").await?;
    worker.stop().await
}

#[tokio::test]
async fn undecodable_items_are_terminated() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").with_builtins()).await?;
    let t = task("billing", "x", plugin("noop"));
    let subject = bench
        .nats
        .topo
        .shard_subject("billing", "x", &t.instance, 7);
    bench
        .nats
        .js
        .publish(subject, "not messagepack".into())
        .await?
        .await?;
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    bench
        .until_queue_empty("the garbage to leave the queue")
        .await?;
    worker.stop().await
}

/// Succeeds only when another shard is running at the same time.
#[derive(Clone)]
struct Together {
    barrier: Arc<tokio::sync::Barrier>,
}

impl Job for Together {
    fn name(&self) -> &str {
        "together"
    }
    async fn execute(&self, _ctx: JobContext) -> JobResult {
        match tokio::time::timeout(WAIT, self.barrier.wait()).await {
            Ok(_) => JobResult::Success,
            Err(_) => JobResult::Fail("ran alone".into()),
        }
    }
}

#[tokio::test]
async fn concurrency_two_runs_two_shards_at_once() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let job = Together {
        barrier: Arc::new(tokio::sync::Barrier::new(2)),
    };
    let worker = spawn(bench.worker("billing", "w1").concurrency(2).register(job)).await?;
    let mut t = task("billing", "pair", plugin("together"));
    t.total = 2;
    bench.publish(&t).await?;
    t.item = 1;
    bench.publish(&t).await?;
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        let r = bench.next_report().await?;
        if let ReportKind::Finished { outcome, .. } = r.kind {
            outcomes.push((r.item, outcome));
        }
    }
    outcomes.sort_by_key(|(item, _)| *item);
    assert_eq!(
        outcomes,
        [(0, ShardOutcome::Success), (1, ShardOutcome::Success)]
    );
    worker.stop().await
}

/// Waits for cancellation, says it saw it, and returns `Success` (which must be ignored).
#[derive(Clone, Default)]
struct Polite {
    saw_cancel: Arc<AtomicBool>,
}

impl Job for Polite {
    fn name(&self) -> &str {
        "polite"
    }
    async fn execute(&self, ctx: JobContext) -> JobResult {
        ctx.log("waiting");
        ctx.cancelled().await;
        self.saw_cancel.store(true, Ordering::SeqCst);
        JobResult::Success
    }
}

/// Ignores cancellation; `dropped` is set when its future is dropped (it was aborted).
#[derive(Clone, Default)]
struct Stubborn {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Job for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }
    async fn execute(&self, _ctx: JobContext) -> JobResult {
        let _guard = SetOnDrop(self.dropped.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        JobResult::Success
    }
}

fn millis_between(report: &ShardReport) -> anyhow::Result<i64> {
    match &report.kind {
        ReportKind::Finished { started_at, .. } => Ok(report.at.0 - started_at.0),
        ReportKind::Started => Err(anyhow!("not finished")),
    }
}

#[tokio::test]
async fn a_job_past_its_timeout_is_cancelled_then_aborted() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let polite = Polite::default();
    let stubborn = Stubborn::default();
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .concurrency(1)
            .stop_grace(Duration::from_secs(1))
            .with_builtins()
            .register(polite.clone())
            .register(stubborn.clone()),
    )
    .await?;
    // A job that heeds `cancelled()` ends at once, timed out whatever it returns.
    let mut t = task("billing", "polite", plugin("polite"));
    t.timeout_ms = 100;
    bench.publish(&t).await?;
    let (outcome, report) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::TimedOut {
            error: "timed out after 100ms".into()
        }
    );
    assert!(polite.saw_cancel.load(Ordering::SeqCst));
    assert!(millis_between(&report)? < 1000, "{report:?}");
    bench
        .log_containing(&t, "timed out after 100ms: stopping")
        .await?;

    // One that ignores it is aborted once the stop grace is over, and timed out too.
    let mut t = task("billing", "slow", plugin("stubborn"));
    t.timeout_ms = 100;
    bench.publish(&t).await?;
    let (outcome, report) = bench.outcome(t.instance, 0).await?;
    assert_eq!(
        outcome,
        ShardOutcome::TimedOut {
            error: "timed out after 100ms".into()
        }
    );
    assert!(millis_between(&report)? >= 100 + 1000, "{report:?}");
    let dropped = stubborn.dropped.clone();
    wait_for("the stubborn job to be aborted", WAIT, || {
        let dropped = dropped.clone();
        async move { dropped.load(Ordering::SeqCst).then_some(()) }
    })
    .await
    .map_err(anyhow::Error::msg)?;

    let mut t = task("billing", "nap", plugin("sleep"));
    t.params = "1m".into();
    t.timeout_ms = 100;
    bench.publish(&t).await?;
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::TimedOut {
            error: "timed out after 100ms".into()
        }
    );
    bench
        .until_queue_empty("timed-out items to be acked")
        .await?;
    worker.stop().await
}

#[tokio::test]
async fn a_stop_from_the_scheduler_cancels_a_running_job() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let polite = Polite::default();
    let stubborn = Stubborn::default();
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .concurrency(2)
            .stop_grace(Duration::from_millis(300))
            .register(polite.clone())
            .register(stubborn.clone()),
    )
    .await?;
    let mut a = task("billing", "pair", plugin("polite"));
    a.total = 2;
    let mut b = a.clone();
    b.item = 1;
    b.exec = plugin("stubborn");
    bench.publish(&a).await?;
    bench.publish(&b).await?;
    bench.log_containing(&a, "waiting").await?;
    // Both run (a Started report for each, in any order).
    let mut started = Vec::new();
    while started.len() < 2 {
        let r = bench.next_report().await?;
        if r.kind == ReportKind::Started {
            started.push(r.item);
        }
    }
    bench
        .stop(
            &a,
            &stop_all(&a, StopOutcome::Cancelled, "cancelled by alice"),
        )
        .await?;
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        let r = bench.next_report().await?;
        if let ReportKind::Finished { outcome, .. } = r.kind {
            outcomes.push((r.item, outcome));
        }
    }
    outcomes.sort_by_key(|(item, _)| *item);
    assert_eq!(
        outcomes,
        [(0, ShardOutcome::Cancelled), (1, ShardOutcome::Cancelled)]
    );
    assert!(polite.saw_cancel.load(Ordering::SeqCst));
    assert!(stubborn.dropped.load(Ordering::SeqCst), "aborted");
    let lines = bench
        .logs_until(&a, |l| {
            l.iter()
                .filter(|l| l.line == "stopped by the scheduler: cancelled by alice")
                .count()
                == 2
        })
        .await?;
    assert!(lines.iter().any(|l| l.item == 1), "{lines:?}");
    bench
        .until_queue_empty("cancelled items to be acked")
        .await?;
    worker.stop().await
}

/// Fails, or panics, with 100 KB of text.
struct Verbose;

impl Job for Verbose {
    fn name(&self) -> &str {
        "verbose"
    }
    async fn execute(&self, ctx: JobContext) -> JobResult {
        let error = "é".repeat(50_000);
        if ctx.params() == "panic" {
            panic!("{error}");
        }
        JobResult::Fail(error)
    }
}

#[tokio::test]
async fn huge_errors_are_capped_in_reports() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").register(Verbose)).await?;
    for params in ["fail", "panic"] {
        let mut t = task("billing", "loud", plugin("verbose"));
        t.params = params.into();
        bench.publish(&t).await?;
        let ShardOutcome::Failed { error } = bench.outcome(t.instance, 0).await?.0 else {
            return Err(anyhow!("must fail"));
        };
        assert!(
            error.len() <= MAX_ERROR_BYTES,
            "{params}: {} bytes",
            error.len()
        );
        assert!(
            error.len() > MAX_ERROR_BYTES - 8,
            "{params}: {} bytes",
            error.len()
        );
        assert!(error.ends_with('…'), "{params}");
    }
    // A refusal naming a long list of plugins is capped as well.
    let mut builder = bench.worker("other", "w2");
    for i in 0..200 {
        builder = builder.register(Named(format!("a-rather-long-plugin-name-{i:03}")));
    }
    let other = spawn(builder).await?;
    let t = task("other", "mystery", plugin("nope"));
    bench.publish_to("w2", &t).await?;
    let ShardOutcome::Failed { error } = bench.outcome(t.instance, 0).await?.0 else {
        return Err(anyhow!("must fail"));
    };
    assert!(error.starts_with("no plugin `nope`"), "{error}");
    assert!(error.len() <= MAX_ERROR_BYTES, "{} bytes", error.len());
    other.stop().await?;
    worker.stop().await
}

/// Succeeds; registered under any name.
struct Named(String);

impl Job for Named {
    fn name(&self) -> &str {
        &self.0
    }
    async fn execute(&self, _ctx: JobContext) -> JobResult {
        JobResult::Success
    }
}

/// An item of the app's shared queue that a worker cannot run (it joined before the
/// scheduler knew it) is handed back unreported, and runs on a worker that can.
#[tokio::test]
async fn a_queued_item_the_worker_cannot_run_waits_for_one_that_can() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let w1 = spawn(bench.worker("billing", "w1").with_builtins()).await?;
    let t = task("billing", "special", plugin("special"));
    bench.publish(&t).await?;
    let w2 = spawn(
        bench
            .worker("billing", "w2")
            .register(Named("special".into())),
    )
    .await?;
    let seen = bench.until_finished(t.instance, 0).await?;
    assert!(seen.iter().all(|r| r.worker == "w2"), "{seen:?}");
    let last = seen.last().ok_or_else(|| anyhow!("no report"))?;
    assert!(
        matches!(
            &last.kind,
            ReportKind::Finished {
                outcome: ShardOutcome::Success,
                ..
            }
        ),
        "{seen:?}"
    );
    w2.stop().await?;
    w1.stop().await
}

#[tokio::test]
async fn a_short_shard_reports_its_start_only_with_its_end() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .with_builtins()
            .report_start_after(Duration::from_millis(100)),
    )
    .await?;
    // `noop` ends at once: one report, Finished, carrying its start time.
    let quick = task("billing", "quick", plugin("noop"));
    bench.publish(&quick).await?;
    let seen = bench.until_finished(quick.instance, quick.item).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(matches!(
        seen[0].kind,
        ReportKind::Finished {
            outcome: ShardOutcome::Success,
            ..
        }
    ));
    // `sleep 400ms` outlasts the delay: Started is reported while it runs.
    let mut slow = task("billing", "slow", plugin("sleep"));
    slow.params = "400ms".into();
    bench.publish(&slow).await?;
    let seen = bench.until_finished(slow.instance, slow.item).await?;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].kind, ReportKind::Started);
    worker.stop().await
}

/// A task with a `not_before` is held until then and begins at that time; one stopped
/// while it is held ends as the stop says without running.
#[tokio::test]
async fn a_task_is_held_until_its_not_before_and_a_stop_meanwhile_ends_it_unrun()
-> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let echo = Echo::default();
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .concurrency(2)
            .register(echo.clone()),
    )
    .await?;
    let mut held = task("billing", "report", plugin("echo"));
    let at = Timestamp(now().0 + 1500);
    held.not_before = Some(at);
    bench.publish(&held).await?;
    let (outcome, report) = bench.outcome(held.instance, 0).await?;
    assert_eq!(outcome, ShardOutcome::Success);
    let ReportKind::Finished { started_at, .. } = report.kind else {
        return Err(anyhow!("not finished: {report:?}"));
    };
    assert!(started_at >= at, "began at {started_at}, before {at}");

    // Stopped while held: the stop is said again until its end is reported, since it
    // reaches only a task the worker has taken.
    let runs_before = echo.calls.lock().map_err(|e| anyhow!("{e}"))?.len();
    let mut stopped = task("billing", "report", plugin("echo"));
    stopped.not_before = Some(Timestamp(now().0 + 8000));
    let log_subject =
        bench
            .nats
            .topo
            .log_subject(&stopped.app, &stopped.job, &stopped.instance, stopped.item);
    let mut lines = bench.nats.client.subscribe(log_subject).await?;
    bench.nats.client.flush().await?;
    bench.publish(&stopped).await?;
    let subject = bench
        .nats
        .topo
        .stop_subject(&stopped.app, &stopped.job, &stopped.instance);
    let body = codec::encode(
        "stop message",
        &stop_all(&stopped, StopOutcome::Cancelled, "cancelled by alice"),
    )?;
    let client = bench.nats.client.clone();
    let saying = tokio::spawn(async move {
        loop {
            let _ = client.publish(subject.clone(), body.clone()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let ended = bench.outcome(stopped.instance, 0).await;
    saying.abort();
    let (outcome, report) = ended?;
    assert_eq!(outcome, ShardOutcome::Cancelled);
    assert!(
        report.at.0 < stopped.not_before.map_or(0, |t| t.0),
        "{report:?}"
    );
    assert_eq!(
        echo.calls.lock().map_err(|e| anyhow!("{e}"))?.len(),
        runs_before,
        "it never ran"
    );
    // The shard's log says why it did not run.
    let line = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut lines))
        .await
        .map_err(|_| anyhow!("no line in the shard's log"))?
        .ok_or_else(|| anyhow!("the log subscription ended"))?;
    let line: LogLine = codec::decode("log line", &line.payload)?;
    assert!(
        line.line.contains("cancelled by alice before it began"),
        "{line:?}"
    );
    bench
        .until_queue_empty("the stopped item to be acked")
        .await?;
    worker.stop().await
}
