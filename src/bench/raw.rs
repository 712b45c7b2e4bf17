//! The raw JetStream run: what the server and client do with no Antares in between.
//!
//! A work-queue stream of its own (`<NS>_BENCH_RAW` on `<ns>.bench.raw.>`, with the
//! storage and replicas of the Antares shard stream), deleted afterwards. One connection
//! publishes N messages the size of a `noop` shard task, each on its own subject like
//! shard items are, asynchronously with up to [`WINDOW`] acks in flight. At the same
//! time W consumers, a connection each, pull from one shared durable consumer in batches
//! and ack every message. Timed from the first publish until the stream is empty, which
//! a work queue only is once every ack has been processed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use antares_nats::async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use antares_nats::async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use antares_nats::{ConnectOptions, Nats, codec};
use antares_schemas::messages::{Execution, ShardTask};
use antares_schemas::{InstanceId, Topology};
use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

/// Publish acks in flight at most (the Antares JetStream context allows 4096).
pub(super) const WINDOW: usize = 4096;
/// Messages per pull request of a raw consumer.
const PULL_BATCH: usize = 500;
/// How long the whole run may take before it is called stuck.
const STUCK: Duration = Duration::from_secs(300);

/// What to run.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) connect: ConnectOptions,
    pub(super) topo: Topology,
    pub(super) messages: u32,
    pub(super) consumers: u32,
    pub(super) storage: StorageType,
    pub(super) replicas: usize,
}

/// What it measured.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawResult {
    /// First publish to empty stream.
    pub(super) seconds: f64,
    /// First publish to last publish ack.
    pub(super) publish_seconds: f64,
    messages: u32,
}

impl RawResult {
    pub(super) fn per_s(&self) -> f64 {
        f64::from(self.messages) / self.seconds
    }
}

/// A message like the shard task of a `noop` shard of app `bench`, job `noop`.
pub(super) fn shard_sized_payload(total: u32) -> anyhow::Result<Bytes> {
    let task = ShardTask {
        instance: InstanceId::for_manual(antares_nats::now(), rand::random::<u128>()),
        app: "bench".into(),
        job: "noop".into(),
        item: total.saturating_sub(1),
        total,
        param: String::new(),
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        scheduled_at: antares_nats::now(),
        run: 1,
        attempt_base: 0,
        urgent: false,
        not_before: None,
    };
    Ok(codec::encode("shard task", &task)?)
}

/// Runs it; the stream is deleted whatever happens.
pub(super) async fn run(s: &Settings) -> anyhow::Result<RawResult> {
    let publisher = Nats::connect(
        &super::named(&s.connect, "antares-bench-raw-pub"),
        s.topo.clone(),
    )
    .await?;
    let name = s.topo.bench_raw_stream();
    // A stream left by a run that was killed.
    let _ = publisher.js.delete_stream(&name).await;
    let result = tokio::time::timeout(STUCK, measure(s, &publisher, &name)).await;
    if let Err(e) = publisher.js.delete_stream(&name).await {
        tracing::warn!("could not delete the bench stream {name}: {e}");
    }
    result.map_err(|_| anyhow::anyhow!("the raw run did not end within {STUCK:?}"))?
}

async fn measure(s: &Settings, publisher: &Nats, name: &str) -> anyhow::Result<RawResult> {
    let prefix = s.topo.bench_raw_prefix();
    let stream = publisher
        .js
        .create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{prefix}.>")],
            retention: RetentionPolicy::WorkQueue,
            storage: s.storage,
            num_replicas: s.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create stream {name}"))?;
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1_000_000,
            ..Default::default()
        })
        .await
        .context("cannot create the bench consumer")?;

    // Consumers first, pulling and waiting.
    let total = u64::from(s.messages);
    let received = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..s.consumers {
        let nats = Nats::connect(
            &super::named(&s.connect, &format!("antares-bench-raw-sub-{i}")),
            s.topo.clone(),
        )
        .await?;
        let consumer: PullConsumer = nats
            .js
            .get_stream(name)
            .await
            .context("bench stream")?
            .get_consumer("bench")
            .await
            .map_err(|e| anyhow::anyhow!("bench consumer: {e}"))?;
        tasks.push(tokio::spawn(consume(
            nats,
            consumer,
            Arc::clone(&received),
            total,
            done_tx.clone(),
            done_rx.clone(),
        )));
    }
    drop(consumer);
    let payload = shard_sized_payload(s.messages)?;
    let run_id = rand::random::<u32>();

    let _room = publisher.ack_room(WINDOW).await;
    let start = Instant::now();
    let mut acks = VecDeque::with_capacity(WINDOW);
    for i in 0..s.messages {
        if acks.len() >= WINDOW
            && let Some(ack) = acks.pop_front()
        {
            ack_ok(ack).await?;
        }
        let ack = publisher
            .js
            .publish(format!("{prefix}.{run_id:08x}.{i}"), payload.clone())
            .await
            .context("raw publish")?;
        acks.push_back(ack);
    }
    for ack in acks {
        ack_ok(ack).await?;
    }
    let published = start.elapsed();

    for t in tasks {
        t.await.context("raw consumer task")??;
    }
    // Every ack is sent; the stream is empty once the server has processed them all.
    let stream = publisher
        .js
        .get_stream(name)
        .await
        .context("bench stream")?;
    loop {
        let info = stream.get_info().await.context("bench stream info")?;
        if info.state.messages == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(RawResult {
        seconds,
        publish_seconds: published.as_secs_f64(),
        messages: s.messages,
    })
}

async fn ack_ok(
    ack: antares_nats::async_nats::jetstream::context::PublishAckFuture,
) -> anyhow::Result<()> {
    ack.await.context("raw publish ack")?;
    Ok(())
}

/// Pulls and acks until all messages were received (by any consumer).
async fn consume(
    nats: Nats,
    consumer: PullConsumer,
    received: Arc<AtomicU64>,
    total: u64,
    done_tx: watch::Sender<bool>,
    mut done_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("raw pull: {e}"))?;
    loop {
        tokio::select! {
            biased;
            m = messages.next() => {
                let Some(m) = m else { break };
                let m = m.map_err(|e| anyhow::anyhow!("raw pull: {e}"))?;
                m.ack().await.map_err(|e| anyhow::anyhow!("raw ack: {e}"))?;
                if received.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                    let _ = done_tx.send(true);
                    break;
                }
            }
            changed = done_rx.changed() => {
                if changed.is_err() || *done_rx.borrow() {
                    break;
                }
            }
        }
    }
    drop(messages);
    nats.flush().await?;
    Ok(())
}
