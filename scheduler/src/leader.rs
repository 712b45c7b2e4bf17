//! Keeping the lease, and telling the cluster who we are.
//!
//! One task renews (or tries to take) the partition lease every `lease_renew` and
//! publishes the outcome on a watch channel; the scheduler's work loop only acts while
//! the channel says it leads, and checks the deadline again before each write. Each
//! taking of the lease is a new term: a work loop that was busy (a NATS call can block
//! for seconds) while the lease lapsed and was taken again sees the term change and
//! starts over from the stored state instead of going on with what it skipped. Renewal
//! runs apart from the work loop so a long batch of work can never starve it. The same
//! task writes the scheduler's heartbeat (with a TTL of three beats) for `antares cluster`.
//! See [`antares_nats::lease`] for the protocol and its failure cases.

use std::time::{Duration, Instant};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::lease::Lease;
use antares_nats::{Nats, codec, now};
use antares_schemas::cluster::SchedulerInfo;
use tokio::sync::watch;

/// What the lease task knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Until when we may act as leader; `None` when we do not lead.
    pub until: Option<Instant>,
    /// Which holding of the lease this is: it grows each time the lease is taken (again
    /// after it lapsed), so a round of leading can tell that its lease lapsed even when
    /// it never saw `until` pass (a watch channel keeps only the latest value).
    pub term: u64,
}

impl Leadership {
    /// Whether we lead right now.
    pub fn is_leading(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }
}

/// Settings of the lease task.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Our scheduler id.
    pub id: String,
    /// Lease time to live.
    pub ttl: Duration,
    /// How often to renew or retry.
    pub renew: Duration,
    /// How often to write our heartbeat.
    pub heartbeat: Duration,
}

/// Runs until `stop` flips to true; then releases the lease and deletes the heartbeat.
pub async fn keep_lease(
    nats: Nats,
    settings: LeaseSettings,
    tx: watch::Sender<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let buckets = match nats.buckets().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "scheduler cannot open its buckets");
            return;
        }
    };
    let mut lease = Lease::new(
        nats.clone(),
        buckets.leases.clone(),
        nats.topo.lease_key(0),
        settings.id.clone(),
        settings.ttl,
    );
    let started_at = now();
    let host = antares_nats::process::hostname();
    let mut renew = tokio::time::interval(settings.renew);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = tokio::time::interval(settings.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = renew.tick() => {
                let was = lease.is_held();
                match lease.tick(now()).await {
                    Ok(true) if !was => {
                        term += 1;
                        tracing::info!(id = %settings.id, term, "took the lease: leading");
                    }
                    Ok(false) if was => tracing::warn!(id = %settings.id, "lost the lease: standing by"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                }
                let until = if lease.is_held() { lease.valid_until() } else { None };
                tx.send_replace(Leadership { until, term });
            }
            _ = beat.tick() => {
                let info = SchedulerInfo {
                    id: settings.id.clone(),
                    host: host.clone(),
                    pid: std::process::id(),
                    started_at,
                    last_seen: now(),
                    leader: lease.is_held(),
                    partitions: if lease.is_held() { vec![0] } else { Vec::new() },
                    version: env!("CARGO_PKG_VERSION").to_string(),
                };
                if let Ok(value) = codec::encode("scheduler", &info) {
                    let w = Write::put(&buckets.schedulers.name, settings.id.clone(), value, Expect::Any)
                        .with_ttl(settings.heartbeat * 3);
                    if let Err(e) = kv::write(&nats, w).await {
                        tracing::debug!(error = %e, "scheduler heartbeat not written");
                    }
                }
            }
        }
    }
    tx.send_replace(Leadership { until: None, term });
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "lease not released; a standby takes over when it expires");
    }
    let w = Write::delete(&buckets.schedulers.name, settings.id.clone(), Expect::Any);
    let _ = kv::write(&nats, w).await;
}
