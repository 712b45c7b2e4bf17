//! Raw JetStream while a scenario runs: one publish and its ack at a time, paced, on a
//! connection of its own, to a stream of its own (`<NS>_BENCH_BESIDE`, deleted
//! afterwards), each with the time it was sent.
//!
//! A fire needs acknowledged writes one after another (its instance, its items, its
//! `running` mark), so what one such write costs while a burst or a launch loads the
//! same server is the floor under a cron's lateness at that moment. Measured beside,
//! not before, so that the floor and the lateness come from the same seconds.

use std::time::{Duration, Instant};

use antares_nats::async_nats::jetstream::stream::{self, StorageType};
use antares_nats::{ConnectOptions, Nats, now};
use antares_schemas::Timestamp;
use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Percentiles, named};

/// Pause between two round trips (the probe must not load the server itself).
const EVERY: Duration = Duration::from_millis(10);
/// Most round trips kept (about 20 minutes of them).
const MAX_SAMPLES: usize = 120_000;
/// Longest a round trip may take before the probe says so and goes on.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running probe.
pub(super) struct Beside {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<(Timestamp, Duration)>>,
    nats: Nats,
    stream: String,
}

impl Beside {
    /// Makes the stream and starts timing round trips.
    pub(super) async fn start(
        opts: &ConnectOptions,
        topo: antares_schemas::Topology,
        storage: StorageType,
    ) -> anyhow::Result<Self> {
        let nats = Nats::connect(&named(opts, "antares-bench-raw-beside"), topo).await?;
        let stream = nats.topo.bench_beside_stream();
        let subject = nats.topo.bench_beside_subject();
        let _ = nats.js.delete_stream(&stream).await;
        nats.js
            .create_stream(stream::Config {
                name: stream.clone(),
                subjects: vec![subject.clone()],
                storage,
                max_messages: 1000,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create stream {stream}"))?;
        let payload = super::raw::shard_sized_payload(1)?;
        let (stop, mut stopped) = oneshot::channel();
        let js = nats.js.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while samples.len() < MAX_SAMPLES {
                let (at, t) = (now(), Instant::now());
                let acked = tokio::time::timeout(PATIENCE, async {
                    js.publish(subject.clone(), payload.clone()).await?.await
                })
                .await;
                match acked {
                    Ok(Ok(_)) => samples.push((at, t.elapsed())),
                    Ok(Err(e)) => tracing::warn!("raw probe: {e}"),
                    Err(_) => tracing::warn!("raw probe: no ack within {PATIENCE:?}"),
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(EVERY) => {}
                }
            }
            samples
        });
        Ok(Self {
            stop,
            task,
            nats,
            stream,
        })
    }

    /// Stops the probe, deletes its stream, and gives its round trips.
    pub(super) async fn finish(self) -> Vec<(Timestamp, Duration)> {
        let _ = self.stop.send(());
        let samples = self.task.await.unwrap_or_default();
        if let Err(e) = self.nats.js.delete_stream(&self.stream).await {
            tracing::warn!("could not delete the bench stream {}: {e}", self.stream);
        }
        samples
    }
}

/// The round trips sent from `from` to `to` (none when there is no such window).
pub(super) fn within(
    samples: &[(Timestamp, Duration)],
    window: Option<(Timestamp, Timestamp)>,
) -> Option<Percentiles> {
    let (from, to) = window?;
    let picked: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, d)| *d)
        .collect();
    (!picked.is_empty()).then(|| Percentiles::of(&picked))
}
