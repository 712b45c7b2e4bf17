//! The worker's heartbeat: a [`WorkerInfo`] written to the workers bucket every interval
//! with a per-message TTL of three intervals, so the entry vanishes by itself when the
//! worker stops beating; a clean shutdown deletes it at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::Timestamp;
use antares_schemas::cluster::WorkerInfo;

use crate::shard::Shared;

/// How many missed beats make a worker gone.
pub const MISSED_BEATS: u32 = 3;

/// The unchanging part of a worker's heartbeat.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) started_at: Timestamp,
    pub(crate) capacity: u32,
    pub(crate) plugins: Vec<String>,
}

fn info(shared: &Shared, me: &Identity) -> WorkerInfo {
    WorkerInfo {
        id: shared.id.to_string(),
        app: shared.app.clone(),
        host: me.host.clone(),
        pid: me.pid,
        started_at: me.started_at,
        last_seen: now(),
        running: shared.running.load(Ordering::Relaxed),
        capacity: me.capacity,
        allow_scripts: shared.allow_scripts,
        plugins: me.plugins.clone(),
        http: shared.http.is_some(),
        holds: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Writes one beat.
pub(crate) async fn beat(
    shared: &Shared,
    me: &Identity,
    every: Duration,
) -> Result<u64, NatsError> {
    let nats = &shared.nats;
    let bytes = codec::encode("worker info", &info(shared, me))?;
    let key = nats.topo.worker_key(&shared.app, &shared.id);
    let write = Write::put(&nats.topo.workers_bucket(), key, bytes, Expect::Any)
        .with_ttl(every * MISSED_BEATS);
    kv::write(nats, write).await
}

/// Beats every `every`, for as long as it is polled.
pub(crate) async fn run(shared: &Shared, me: &Identity, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match beat(shared, me, every).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("heartbeat of worker {} written again", shared.id);
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("cannot write the heartbeat of worker {}: {e}", shared.id);
            }
            Err(_) => {}
        }
    }
}

/// Removes the worker's entry (a delete marker that itself expires).
pub(crate) async fn remove(nats: &Nats, app: &str, id: &str, every: Duration) {
    let key = nats.topo.worker_key(app, id);
    let write =
        Write::delete(&nats.topo.workers_bucket(), key, Expect::Any).with_ttl(every * MISSED_BEATS);
    if let Err(e) = kv::write(nats, write).await {
        tracing::warn!("cannot remove the heartbeat of worker {id}: {e}");
    }
}
