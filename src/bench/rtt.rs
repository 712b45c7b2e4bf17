//! Raw JetStream beside the figures of a scenario, measured in the same run on the same
//! server: a stream of its own (`<NS>_BENCH_RAW`, deleted afterwards) written and read
//! with nothing of Antares in between.
//!
//! - write round trip: one publish, then its ack awaited, one after another;
//! - read round trip: one direct get of a subject's last message (what a KV GET is);
//! - pipelined writes: many messages of a given size with [`WINDOW`] acks in flight,
//!   as Antares' bulk writes send them.

use std::time::{Duration, Instant};

use antares_nats::Nats;
use antares_nats::async_nats::jetstream::stream::{self, StorageType};
use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Serialize;

use super::{Percentiles, round};

/// Acks in flight during the pipelined writes (as Antares' bulk writes).
const WINDOW: usize = antares_nats::kv::MAX_PIPELINE;
/// Round trips timed for each percentile.
const SAMPLES: usize = 500;

/// What raw JetStream did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(super) struct Raw {
    /// One publish and its ack, one after another: median, ms.
    pub(super) write_rtt_p50_ms: f64,
    /// ... 99th percentile, ms.
    pub(super) write_rtt_p99_ms: f64,
    /// One direct get of a subject's last message (a KV GET): median, ms.
    pub(super) get_rtt_p50_ms: f64,
    /// ... 99th percentile, ms.
    pub(super) get_rtt_p99_ms: f64,
    /// Pipelined writes made (0 when none were asked for).
    pub(super) pipelined_writes: u64,
    /// Their size, bytes.
    pub(super) pipelined_bytes: usize,
    /// Seconds from the first to the last ack.
    pub(super) pipelined_seconds: f64,
    /// Writes per second.
    pub(super) pipelined_per_s: f64,
}

/// Measures, then deletes the stream whatever happened. `pipelined` writes of
/// `size` bytes follow the round trips (none when 0).
pub(super) async fn measure(nats: &Nats, pipelined: u64, size: usize) -> anyhow::Result<Raw> {
    let name = nats.topo.bench_raw_stream();
    // A stream left by a run that was killed.
    let _ = nats.js.delete_stream(&name).await;
    let result = run(nats, &name, pipelined, size).await;
    if let Err(e) = nats.js.delete_stream(&name).await {
        tracing::warn!("could not delete the bench stream {name}: {e}");
    }
    result
}

async fn run(nats: &Nats, name: &str, pipelined: u64, size: usize) -> anyhow::Result<Raw> {
    let prefix = nats.topo.bench_raw_prefix();
    let stream = nats
        .js
        .create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{prefix}.>")],
            storage: StorageType::File,
            allow_direct: true,
            max_messages_per_subject: 1,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create stream {name}"))?;

    let one = format!("{prefix}.rtt");
    let body = Bytes::from(vec![b'x'; size.max(1)]);
    let mut writes = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        nats.js
            .publish(one.clone(), body.clone())
            .await
            .context("raw publish")?
            .await
            .context("raw publish ack")?;
        writes.push(start.elapsed());
    }
    let mut gets = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        stream
            .direct_get_last_for_subject(&one)
            .await
            .context("raw direct get")?;
        gets.push(start.elapsed());
    }

    let mut seconds = 0.0;
    if pipelined > 0 {
        let start = Instant::now();
        let _room = nats.ack_room(WINDOW).await;
        let mut acks = FuturesOrdered::new();
        for i in 0..pipelined {
            if acks.len() >= WINDOW
                && let Some(ack) = acks.next().await
            {
                ack?;
            }
            let ack = nats
                .js
                .publish(format!("{prefix}.p.{i}"), body.clone())
                .await
                .context("raw publish")?;
            acks.push_back(async move { ack.await.context("raw publish ack") });
        }
        while let Some(ack) = acks.next().await {
            ack?;
        }
        seconds = start.elapsed().as_secs_f64();
    }
    let (w, g) = (Percentiles::of(&writes), Percentiles::of(&gets));
    Ok(Raw {
        write_rtt_p50_ms: round(w.p50, 3),
        write_rtt_p99_ms: round(w.p99, 3),
        get_rtt_p50_ms: round(g.p50, 3),
        get_rtt_p99_ms: round(g.p99, 3),
        pipelined_writes: pipelined,
        pipelined_bytes: size,
        pipelined_seconds: round(seconds, 3),
        pipelined_per_s: if seconds > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let n = pipelined as f64;
            round(n / seconds, 1)
        } else {
            0.0
        },
    })
}

/// How long a wait may last before the scenario calls it stuck.
pub(super) const STUCK: Duration = Duration::from_secs(600);
