//! A test bench: a real nats-server, provisioned, and the scheduler's side of the worker
//! protocol (publishing shard items, reading reports and log lines).

#![allow(dead_code)]

use std::time::Duration;

use antares_nats::async_nats::jetstream::consumer::{DeliverPolicy, pull};
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::queue::{self, ConsumerSpec};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats, codec};
use antares_schemas::messages::{
    Execution, LogLine, ReportKind, ShardOutcome, ShardReport, ShardTask, StopOutcome, StopShards,
};
use antares_schemas::{InstanceId, Timestamp, Topology};
use antares_worker::{Worker, WorkerBuilder, WorkerError, WorkerHandle};
use anyhow::{Context, anyhow};
use futures::StreamExt;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Bench {
    pub server: LocalServer,
    pub nats: Nats,
    reports: pull::Stream,
    /// Reports of a message of several read but not yet returned.
    unread: std::collections::VecDeque<ShardReport>,
}

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        provision(&nats, &ProvisionOptions::default()).await?;
        // The test plays the scheduler: the only consumer of the results stream.
        let consumer = queue::durable(
            &nats,
            &ConsumerSpec {
                stream: nats.topo.results_stream(),
                durable: "test-scheduler".into(),
                filter: None,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
            },
        )
        .await?;
        let reports = consumer.messages().await?;
        Ok(Self {
            server,
            nats,
            reports,
            unread: Default::default(),
        })
    }

    /// A worker builder for `app` on this server, with a fixed id.
    pub fn worker(&self, app: &str, id: &str) -> WorkerBuilder {
        Worker::builder()
            .app(app)
            .id(id)
            .nats_url(self.server.url())
            .namespace("ats")
            // Report every start at once, so tests see Started then Finished.
            .report_start_after(std::time::Duration::ZERO)
    }

    /// Waits until the shard work queue holds nothing (every item acked or terminated).
    pub async fn until_queue_empty(&self, what: &str) -> anyhow::Result<()> {
        let name = self.nats.topo.shards_stream();
        let nats = &self.nats;
        let name = &name;
        antares_nats::wait::wait_for(what, WAIT, || async move {
            let mut s = nats.stream(name).await.ok()?;
            let info = s.info().await.ok()?;
            (info.state.messages == 0).then_some(())
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Queues a shard item as the scheduler would.
    pub async fn publish(&self, task: &ShardTask) -> anyhow::Result<()> {
        let subject = self
            .nats
            .topo
            .shard_subject(&task.app, &task.job, &task.instance, task.item);
        self.nats
            .js
            .publish(subject, codec::encode("shard task", task)?)
            .await?
            .await?;
        Ok(())
    }

    /// Queues a shard item on one worker's own subject, as the scheduler routes it.
    pub async fn publish_to(&self, worker: &str, task: &ShardTask) -> anyhow::Result<()> {
        let subject =
            self.nats
                .topo
                .direct_subject(&task.app, worker, &task.job, &task.instance, task.item);
        self.nats
            .js
            .publish(subject, codec::encode("shard task", task)?)
            .await?
            .await?;
        Ok(())
    }

    /// Tells the workers to stop shards of `task`'s instance, as the scheduler would.
    pub async fn stop(&self, task: &ShardTask, stop: &StopShards) -> anyhow::Result<()> {
        self.stop_raw(task, codec::encode("stop message", stop)?.to_vec())
            .await
    }

    /// Publishes any bytes on the stop subject of `task`'s instance.
    pub async fn stop_raw(&self, task: &ShardTask, body: Vec<u8>) -> anyhow::Result<()> {
        let subject = self
            .nats
            .topo
            .stop_subject(&task.app, &task.job, &task.instance);
        self.nats.client.publish(subject, body.into()).await?;
        self.nats.client.flush().await?;
        Ok(())
    }

    /// Waits for a log line of the instance that contains `text`.
    pub async fn log_containing(
        &self,
        task: &ShardTask,
        text: &str,
    ) -> anyhow::Result<Vec<LogLine>> {
        self.logs_until(task, |lines| lines.iter().any(|l| l.line.contains(text)))
            .await
    }

    /// The next report, whatever it is.
    /// A message of several reports (header `Antares-Reports`) gives them in order.
    pub async fn next_report(&mut self) -> anyhow::Result<ShardReport> {
        if let Some(r) = self.unread.pop_front() {
            return Ok(r);
        }
        let msg = tokio::time::timeout(WAIT, self.reports.next())
            .await
            .context("no report came")?
            .ok_or_else(|| anyhow!("reports ended"))??;
        msg.ack().await.map_err(|e| anyhow!("{e}"))?;
        let counted = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(antares_schemas::topology::HEADER_REPORTS))
            .map(|n| n.as_str().to_string());
        let Some(counted) = counted else {
            return Ok(codec::decode("shard report", &msg.payload)?);
        };
        let reports: Vec<ShardReport> = codec::decode("shard reports", &msg.payload)?;
        anyhow::ensure!(
            counted == reports.len().to_string(),
            "header says {counted} reports, body holds {}",
            reports.len()
        );
        self.unread.extend(reports);
        self.unread
            .pop_front()
            .context("an empty message of reports")
    }

    /// Reads reports until the `Finished` one of this shard item and attempt, returning
    /// every report of that item seen on the way (the finished one last).
    pub async fn until_finished(
        &mut self,
        instance: InstanceId,
        item: u32,
    ) -> anyhow::Result<Vec<ShardReport>> {
        let mut seen = Vec::new();
        loop {
            let r = self.next_report().await?;
            if r.instance != instance || r.item != item {
                continue;
            }
            let done = matches!(r.kind, ReportKind::Finished { .. });
            seen.push(r);
            if done {
                return Ok(seen);
            }
        }
    }

    /// The outcome and attempt of the next `Finished` report of a shard item.
    pub async fn outcome(
        &mut self,
        instance: InstanceId,
        item: u32,
    ) -> anyhow::Result<(ShardOutcome, ShardReport)> {
        let seen = self.until_finished(instance, item).await?;
        let last = seen.last().cloned().ok_or_else(|| anyhow!("no report"))?;
        match &last.kind {
            ReportKind::Finished { outcome, .. } => Ok((outcome.clone(), last)),
            ReportKind::Started => Err(anyhow!("not finished")),
        }
    }

    /// Reads log lines of an instance until `done` says enough.
    pub async fn logs_until(
        &self,
        task: &ShardTask,
        done: impl Fn(&[LogLine]) -> bool,
    ) -> anyhow::Result<Vec<LogLine>> {
        let stream = self.nats.stream(&self.nats.topo.logs_stream()).await?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.nats.topo.instance_logs_filter(
                    &task.app,
                    &task.job,
                    &task.instance,
                    None,
                ),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&lines) {
            let msg = tokio::time::timeout_at(deadline, messages.next())
                .await
                .with_context(|| format!("log lines so far: {lines:?}"))?
                .ok_or_else(|| anyhow!("log lines ended"))??;
            lines.push(codec::decode::<LogLine>("log line", &msg.payload)?);
        }
        Ok(lines)
    }
}

/// A shard item of a fresh instance.
pub fn task(app: &str, job: &str, exec: Execution) -> ShardTask {
    let nonce: u128 = rand::random();
    ShardTask {
        instance: InstanceId::for_manual(Timestamp(1_800_000_000_000), nonce),
        app: app.into(),
        job: job.into(),
        item: 0,
        total: 1,
        param: String::new(),
        params: String::new(),
        exec,
        timeout_ms: 0,
        scheduled_at: Timestamp(1_800_000_000_000),
        run: 1,
        attempt_base: 0,
        urgent: false,
        not_before: None,
    }
}

/// A stop of every shard of `task`'s instance.
pub fn stop_all(task: &ShardTask, outcome: StopOutcome, reason: &str) -> StopShards {
    StopShards {
        instance: task.instance,
        item: None,
        run: None,
        reason: reason.into(),
        outcome,
    }
}

pub fn plugin(handler: &str) -> Execution {
    Execution::Plugin {
        handler: handler.into(),
    }
}

pub fn command(line: &str) -> Execution {
    Execution::Command {
        command: line.into(),
    }
}

/// A running worker.
pub struct Running {
    pub handle: WorkerHandle,
    pub task: JoinHandle<Result<(), WorkerError>>,
}

impl Running {
    /// Shuts down gracefully and waits until it is done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.shutdown();
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("worker did not stop")???;
        Ok(())
    }
}

/// Builds and starts a worker.
pub async fn spawn(builder: WorkerBuilder) -> anyhow::Result<Running> {
    let worker = builder.build().await?;
    let handle = worker.handle();
    let task = tokio::spawn(worker.run_until(std::future::pending()));
    Ok(Running { handle, task })
}
