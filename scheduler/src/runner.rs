//! The scheduler process: for each partition of the jobs, standby until it holds the
//! partition's lease, then the partition's work loop.
//!
//! ```text
//!            lease taken                       lease lost / given up / shutdown
//!  standby ──────────────▶ leading (work loop) ──────────────────────────────▶ standby / exit
//! ```
//!
//! One lease task ([`crate::leader`]) keeps the leases of every partition and decides
//! which this scheduler leads (its fair share); each partition has its own loop here,
//! and a round of leading a partition is the leader loop (`leading`) for its jobs alone.
//! Rounds of different partitions share nothing but the connection, so each is exactly
//! once on its own, as with a single partition. When a round stops (the lease is lost,
//! another scheduler wrote, something it relies on broke) its partition stands by and
//! starts over from the stored state. The lease task is supervised: if it dies, `run`
//! fails.
//!
//! The number of partitions is the one stored at provision (read again at start), never
//! an option: two schedulers can never split the jobs differently.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use antares_nats::{Nats, NatsError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::alarm::{self, AlarmOptions};
use crate::error::SchedulerError;
use crate::jobs::Catalog;
use crate::leader::{self, Leadership, LeaseSettings};
use crate::leading::{Leading, Stop};
use crate::metrics::SchedulerMetrics;
use crate::store::InstanceStore;

/// How long before its slot a scheduled fire is made by default.
pub const DEFAULT_FIRE_AHEAD: Duration = Duration::from_millis(250);
/// The longest fire-ahead time allowed: a fire made ahead shows as `pending` until its
/// slot.
pub const MAX_FIRE_AHEAD: Duration = Duration::from_secs(10);

/// How a scheduler runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Unique id; `<host>-<pid>-<random>` when `None`.
    pub id: Option<String>,
    /// Lease time to live (use >= 10 s on an R3 cluster).
    pub lease_ttl: Duration,
    /// How often the leases are renewed (or a standby retries).
    pub lease_renew: Duration,
    /// How often the scheduler's heartbeat is written.
    pub heartbeat: Duration,
    /// Most results folded in one batch.
    pub results_batch: usize,
    /// How long an instance waits for a live worker that can run its shards before it
    /// fails saying so (contract §8).
    pub no_worker_wait: Duration,
    /// How long before its slot a scheduled fire is made (claimed and stored), so that
    /// at the slot only its items are queued; zero makes each fire at its slot.
    pub fire_ahead: Duration,
    /// Alarm delivery settings (webhook secret, SMTP) and their rate limit.
    pub alarms: AlarmOptions,
    /// Where this scheduler counts what it does (served by `--metrics-listen`).
    pub metrics: Arc<SchedulerMetrics>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            id: None,
            lease_ttl: Duration::from_secs(3),
            lease_renew: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            results_batch: 1000,
            no_worker_wait: Duration::from_secs(300),
            fire_ahead: DEFAULT_FIRE_AHEAD,
            alarms: AlarmOptions::default(),
            metrics: Arc::new(SchedulerMetrics::new()),
        }
    }
}

/// Runs a scheduler until `shutdown` resolves. Fails when it cannot start, or when its
/// lease task dies (a supervisor should restart the process).
pub async fn run(
    nats: Nats,
    opts: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SchedulerError> {
    if opts.lease_renew >= opts.lease_ttl {
        return Err(SchedulerError::Invalid(format!(
            "--lease-renew ({:?}) must be shorter than --lease-ttl ({:?})",
            opts.lease_renew, opts.lease_ttl
        )));
    }
    let id = opts
        .id
        .clone()
        .unwrap_or_else(antares_nats::process::default_id);
    antares_schemas::names::check_worker_id(&id)?;
    alarm::deliver::check(&opts.alarms).map_err(SchedulerError::Invalid)?;
    // Fail early, with the provisioning hint, when the buckets are missing.
    nats.buckets().await?;
    // The split stored at provision, whatever the handle was made with.
    let nats = nats.with_stored_settings().await?;
    InstanceStore::open(&nats).await?;
    // Fires that are due again soon go by a connection of their own (see `leading`).
    let lane = nats.connect_again("urgent fires").await?;
    // The catalog, read before any lease is taken and kept current from then on, by
    // leaders and standbys alike: a takeover plans at once.
    let buckets = nats.buckets().await?;
    let (catalog, marks) = Catalog::load(&nats, &buckets.apps, &buckets.jobs).await?;
    tracing::info!(jobs = catalog.len(), "job catalog read");
    let catalog_task = tokio::spawn(catalog.clone().follow_buckets(
        buckets.apps.clone(),
        buckets.jobs.clone(),
        marks,
    ));

    let partitions = nats.topo.partitions();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..partitions)
        .map(|_| watch::channel(Leadership::default()))
        .unzip();
    let (stop_tx, stop_rx) = watch::channel(false);
    let lease_task = tokio::spawn(leader::keep_leases(
        nats.clone(),
        LeaseSettings {
            id: id.clone(),
            ttl: opts.lease_ttl,
            renew: opts.lease_renew,
            heartbeat: opts.heartbeat,
        },
        txs,
        stop_rx,
    ));
    // Every scheduler process delivers alarms, leading or not.
    let alarms_task = tokio::spawn(alarm::deliver::run(
        nats.clone(),
        opts.alarms.clone(),
        stop_tx.subscribe(),
    ));
    tracing::info!(%id, partitions, "scheduler started; standing by until it holds a partition lease");
    let sampler = tokio::spawn(crate::metrics::sample(
        nats.clone(),
        Arc::clone(&opts.metrics),
    ));
    let result = supervise(
        [nats, lane],
        catalog,
        opts,
        &id,
        shutdown,
        lease_task,
        rxs,
        stop_tx,
    )
    .await;
    sampler.abort();
    catalog_task.abort();
    let _ = alarms_task.await;
    result
}

/// Runs each partition's loop for as long as the lease task lives; its end (other than
/// at shutdown) is an error.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    [nats, lane]: [Nats; 2],
    catalog: Catalog,
    opts: SchedulerOptions,
    id: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut lease_task: tokio::task::JoinHandle<()>,
    lead_rxs: Vec<watch::Receiver<Leadership>>,
    stop_tx: watch::Sender<bool>,
) -> Result<(), SchedulerError> {
    let (quit_tx, quit_rx) = watch::channel(false);
    let mut loops = JoinSet::new();
    for (partition, lead_rx) in (0u32..).zip(lead_rxs) {
        loops.spawn(lead_partition(
            [nats.clone(), lane.clone()],
            catalog.clone(),
            opts.clone(),
            id.to_string(),
            partition,
            lead_rx,
            quit_rx.clone(),
        ));
    }
    let result = tokio::select! {
        () = shutdown => Ok(()),
        _ = &mut lease_task => Err(lease_task_died()),
    };
    // Every work loop ends before the leases go, so no one leads a partition it gave up.
    let _ = quit_tx.send(true);
    while loops.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    if !lease_task.is_finished() {
        let _ = (&mut lease_task).await;
    }
    let _ = nats.flush().await;
    tracing::info!(%id, "scheduler stopped");
    result
}

/// One partition: stands by and leads in turn until `quit` (or the lease task ends).
async fn lead_partition(
    [nats, lane]: [Nats; 2],
    catalog: Catalog,
    opts: SchedulerOptions,
    id: String,
    partition: u32,
    mut lead_rx: watch::Receiver<Leadership>,
    mut quit: watch::Receiver<bool>,
) {
    let mut shutdown = Box::pin(async move {
        let _ = quit.wait_for(|q| *q).await;
    });
    loop {
        // Standby.
        tokio::select! {
            _ = &mut shutdown => return,
            r = lead_rx.wait_for(Leadership::is_leading) => if r.is_err() {
                return;
            },
        }
        let mut leading = match Leading::new(
            [&nats, &lane],
            catalog.clone(),
            partition,
            lead_rx.clone(),
            opts.results_batch,
            opts.no_worker_wait,
            opts.fire_ahead,
            &opts.alarms,
            Arc::clone(&opts.metrics),
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%id, partition, error = %e, "cannot start leading; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        opts.metrics.set_leading(partition, true);
        let stop = leading.lead(&mut shutdown).await;
        opts.metrics.set_leading(partition, false);
        drop(leading);
        let pause = match &stop {
            Stop::Shutdown => return,
            Stop::LeaseLost => {
                tracing::info!(%id, partition, "no longer leading the partition: standing by");
                Duration::from_millis(200)
            }
            Stop::Conflict => {
                tracing::warn!(%id, partition, "another scheduler wrote: starting over from the stored state");
                Duration::from_millis(200)
            }
            Stop::Broken(why) => {
                tracing::error!(%id, partition, %why, "leading stopped; starting over from the stored state");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn lease_task_died() -> SchedulerError {
    SchedulerError::Nats(NatsError::Config(
        "the lease task ended unexpectedly; the scheduler stops so that its supervisor restarts it"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_nats::ConnectOptions;
    use antares_nats::provision::{ProvisionOptions, provision};
    use antares_nats::server::LocalServer;
    use antares_schemas::Topology;

    /// A scheduler whose lease task dies fails (so its supervisor restarts it) instead of
    /// standing by forever.
    #[tokio::test]
    async fn a_dead_lease_task_is_an_error() -> anyhow::Result<()> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        provision(&nats, &ProvisionOptions::default()).await?;
        let (lead_tx, lead_rx) = watch::channel(Leadership::default());
        let (stop_tx, _stop_rx) = watch::channel(false);
        let lead_rx = vec![lead_rx];
        // A lease task that ends at once, as one would that failed.
        let lease_task = tokio::spawn(async move { drop(lead_tx) });
        let catalog = crate::jobs::Catalog::new(nats.topo.clone());
        let run = supervise(
            [nats.clone(), nats],
            catalog,
            SchedulerOptions::default(),
            "s1",
            std::future::pending(),
            lease_task,
            lead_rx,
            stop_tx,
        );
        let ended = tokio::time::timeout(Duration::from_secs(20), run).await?;
        let e = ended.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("lease task ended"), "{e}");
        Ok(())
    }
}
