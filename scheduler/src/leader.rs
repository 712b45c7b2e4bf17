//! Keeping partition leases, and telling the cluster who we are.
//!
//! One task renews (or tries to take) the leases of the partitions every `lease_renew`
//! and publishes, per partition, the outcome on a watch channel; a partition's work loop
//! only acts while its channel says it leads, and checks the deadline again before each
//! write. Each taking of a lease is a new term: a work loop that was busy (a NATS call
//! can block for seconds) while its lease lapsed and was taken again sees the term
//! change and starts over from the stored state instead of going on with what it
//! skipped. Renewal runs apart from the work loops so a long batch of work can never
//! starve it. The same task writes the scheduler's heartbeat (with a TTL of three beats),
//! naming the partitions it leads, for `antares cluster`.
//!
//! Sharing: at each renewal the task counts the live schedulers (their heartbeats) and
//! takes free partitions up to its fair share, `ceil(partitions / live schedulers)`, and
//! gives up the ones beyond it, so two schedulers split the partitions and a lone one
//! leads them all. A partition nobody took for a whole lease TTL is taken whatever the
//! share (a scheduler whose heartbeat has not expired yet may be dead): a killed
//! scheduler's partitions move within about one TTL. Each scheduler prefers partitions
//! in its own order (rotated by a hash of its id), so newcomers rarely race for the
//! same ones; when they do, the lease's revision check lets one win.
//! See [`antares_nats::lease`] for the protocol and its failure cases.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::lease::Lease;
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::cluster::{LeaseRecord, SchedulerInfo};
use async_nats::jetstream::kv::Store;
use futures::future::join_all;
use tokio::sync::watch;

/// What the lease task knows of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Until when we may act as its leader; `None` when we do not lead it.
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

/// One lease per partition, with the channel its work loop watches.
struct Partition {
    lease: Lease,
    tx: watch::Sender<Leadership>,
    term: u64,
    /// Since when we have seen it free (held by nobody), if it is.
    free_since: Option<Instant>,
    /// Given up for another scheduler: its work loop was told to stop, and the key is
    /// released at the next renewal, once the loop had time to see it.
    giving_up: bool,
}

impl Partition {
    /// Whether its work loop may lead it.
    fn leads(&self) -> bool {
        self.lease.is_held() && !self.giving_up
    }
}

/// Runs until `stop` flips to true; then releases the leases and deletes the heartbeat.
/// `txs` has one channel per partition, in partition order.
pub async fn keep_leases(
    nats: Nats,
    settings: LeaseSettings,
    txs: Vec<watch::Sender<Leadership>>,
    mut stop: watch::Receiver<bool>,
) {
    let buckets = match nats.buckets().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "scheduler cannot open its buckets");
            return;
        }
    };
    let mut parts: Vec<Partition> = txs
        .into_iter()
        .zip(0u32..)
        .map(|(tx, p)| Partition {
            lease: Lease::new(
                nats.clone(),
                buckets.leases.clone(),
                nats.topo.lease_key(p),
                settings.id.clone(),
                settings.ttl,
            ),
            tx,
            term: 0,
            free_since: None,
            giving_up: false,
        })
        .collect();
    let order = preference(&settings.id, parts.len());
    let started_at = now();
    let host = antares_nats::process::hostname();
    let mut renew = tokio::time::interval(settings.renew);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = tokio::time::interval(settings.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = renew.tick() => {
                rebalance(&nats, &buckets.leases, &buckets.schedulers, &settings, &mut parts, &order).await;
            }
            _ = beat.tick() => {
                let led: Vec<u32> = (0u32..).zip(&parts).filter(|(_, p)| p.leads()).map(|(i, _)| i).collect();
                let info = SchedulerInfo {
                    id: settings.id.clone(),
                    host: host.clone(),
                    pid: std::process::id(),
                    started_at,
                    last_seen: now(),
                    leader: !led.is_empty(),
                    partitions: led,
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
    for p in &parts {
        p.tx.send_replace(Leadership {
            until: None,
            term: p.term,
        });
    }
    let released = join_all(parts.iter_mut().map(|p| p.lease.release())).await;
    if released.iter().any(Result::is_err) {
        tracing::warn!("a lease was not released; a standby takes it over when it expires");
    }
    let w = Write::delete(&buckets.schedulers.name, settings.id.clone(), Expect::Any);
    let _ = kv::write(&nats, w).await;
}

/// One renewal: renew what we hold, give up what is beyond our share, take free
/// partitions up to it (and any left free for a whole TTL), then tell the work loops.
async fn rebalance(
    nats: &Nats,
    leases: &Store,
    schedulers: &Store,
    settings: &LeaseSettings,
    parts: &mut [Partition],
    order: &[usize],
) {
    let at = now();
    // Which partitions we led without a lapse until now: leading one that we did not is
    // a new term (even when the lease lapsed and was taken again between two looks).
    let led_before: Vec<bool> = parts.iter().map(Partition::leads).collect();
    // Release what was given up at the last renewal; renew the rest of what we hold.
    let released = join_all(
        parts
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| p.giving_up)
            .map(|(i, p)| async move {
                p.giving_up = false;
                (i, p.lease.release().await)
            }),
    )
    .await;
    for (i, r) in released {
        match r {
            Ok(()) => {
                tracing::info!(id = %settings.id, partition = i, "gave the partition up for another scheduler");
            }
            Err(e) => {
                tracing::warn!(partition = i, error = %e, "partition not released; it moves when its lease expires");
            }
        }
    }
    let renewed = join_all(
        parts
            .iter_mut()
            .filter(|p| p.lease.is_held())
            .map(|p| p.lease.tick(at)),
    )
    .await;
    for r in renewed {
        if let Err(e) = r {
            tracing::warn!(error = %e, "lease renewal failed");
        }
    }
    match look(nats, leases, schedulers, &settings.id).await {
        Ok((holders, live)) => {
            let seen = Instant::now();
            for p in parts.iter_mut() {
                let free = !p.lease.is_held() && !holders.contains_key(p.lease.key());
                p.free_since = free.then(|| p.free_since.unwrap_or(seen));
            }
            let held: Vec<bool> = parts.iter().map(|p| p.lease.is_held()).collect();
            let free: Vec<Option<Duration>> = parts
                .iter()
                .map(|p| p.free_since.map(|s| seen.saturating_duration_since(s)))
                .collect();
            let (take, give) = plan(&held, &free, live, settings.ttl, order);
            for &i in &give {
                if let Some(p) = parts.get_mut(i) {
                    p.giving_up = true;
                }
            }
            let taken = join_all(
                parts
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| take.contains(i))
                    .map(|(i, p)| async move { (i, p.lease.tick(at).await) }),
            )
            .await;
            for (i, r) in taken {
                if let Err(e) = r {
                    tracing::debug!(partition = i, error = %e, "partition lease not taken");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the leases; renewing only"),
    }
    for ((i, p), was) in parts.iter_mut().enumerate().zip(led_before) {
        let leads = p.leads();
        if leads && !was {
            p.term += 1;
            tracing::info!(id = %settings.id, partition = i, term = p.term, "took the partition lease: leading it");
        } else if !leads && was && !p.giving_up {
            tracing::warn!(id = %settings.id, partition = i, "lost the partition lease");
        }
        let until = if leads { p.lease.valid_until() } else { None };
        p.tx.send_replace(Leadership {
            until,
            term: p.term,
        });
    }
}

/// Who else holds each lease key (the live ones), and how many schedulers are live
/// (counting us, even before our first heartbeat).
async fn look(
    nats: &Nats,
    leases: &Store,
    schedulers: &Store,
    me: &str,
) -> Result<(BTreeMap<String, String>, usize), NatsError> {
    let (held, beats) = tokio::join!(
        kv::scan(nats, leases, ">", false),
        kv::scan(nats, schedulers, ">", true)
    );
    let mut holders = BTreeMap::new();
    for hit in held? {
        // An unreadable value is nobody's lease, and one in our name that we do not hold
        // (a restart with the same id) is ours to take again, as the lease reads them.
        if let Ok(r) = codec::decode::<LeaseRecord>("lease", &hit.value)
            && r.holder != me
        {
            holders.insert(hit.key, r.holder);
        }
    }
    let beats = beats?;
    let live = beats.len() + usize::from(!beats.iter().any(|b| b.key == me));
    Ok((holders, live))
}

/// The order a scheduler prefers partitions in: all of them, rotated by a hash of its
/// id, so that schedulers starting together reach for different ones first.
fn preference(id: &str, n: usize) -> Vec<usize> {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start = usize::try_from(h % (n.max(1) as u64)).unwrap_or(0);
    (0..n).map(|i| (start + i) % n).collect()
}

/// Which partitions to take and which to give up. `held[i]`: we lead partition `i`;
/// `free[i]`: for how long it has been seen free; `live`: schedulers alive (us
/// included). Our share is `ceil(n / live)`: we give up the held ones beyond it (the
/// last in our order) and take free ones up to it (the first in our order), and also
/// any left free for `grace`, whose natural taker seems gone.
fn plan(
    held: &[bool],
    free: &[Option<Duration>],
    live: usize,
    grace: Duration,
    order: &[usize],
) -> (Vec<usize>, Vec<usize>) {
    let n = held.len();
    let share = n.div_ceil(live.max(1));
    let holding = held.iter().filter(|h| **h).count();
    let mut give = Vec::new();
    if holding > share {
        give = order
            .iter()
            .rev()
            .copied()
            .filter(|i| held.get(*i).copied().unwrap_or(false))
            .take(holding - share)
            .collect();
    }
    let mut take = Vec::new();
    let mut will_hold = holding - give.len();
    for &i in order {
        let Some(Some(since)) = free.get(i) else {
            continue;
        };
        if held.get(i).copied().unwrap_or(true) || give.contains(&i) {
            continue;
        }
        if will_hold < share || *since >= grace {
            take.push(i);
            will_hold += 1;
        }
    }
    (take, give)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn free_now(n: usize) -> Vec<Option<Duration>> {
        vec![Some(Duration::ZERO); n]
    }

    #[test]
    fn a_lone_scheduler_takes_every_partition() {
        let order: Vec<usize> = (0..4).collect();
        let (take, give) = plan(&[false; 4], &free_now(4), 1, GRACE, &order);
        assert_eq!(take, vec![0, 1, 2, 3]);
        assert!(give.is_empty());
    }

    #[test]
    fn a_second_scheduler_gets_half() {
        let order: Vec<usize> = vec![2, 3, 0, 1];
        // The first gives up the last two of its order...
        let (take, give) = plan(&[true; 4], &[None; 4], 2, GRACE, &order);
        assert!(take.is_empty());
        assert_eq!(give, vec![1, 0]);
        // ...which the second, holding nothing, takes up to its share.
        let free = vec![Some(Duration::ZERO), Some(Duration::ZERO), None, None];
        let (take, give) = plan(&[false; 4], &free, 2, GRACE, &order);
        assert_eq!(take, vec![0, 1]);
        assert!(give.is_empty());
    }

    #[test]
    fn partitions_left_free_are_taken_beyond_the_share() {
        let order: Vec<usize> = (0..4).collect();
        let held = [true, true, false, false];
        // Freshly free: another live scheduler may take them; wait.
        let fresh = vec![None, None, Some(Duration::ZERO), Some(Duration::ZERO)];
        assert_eq!(plan(&held, &fresh, 2, GRACE, &order), (vec![], vec![]));
        // Free for a whole TTL: its leader is gone; take them.
        let stale = vec![None, None, Some(GRACE), Some(GRACE)];
        assert_eq!(plan(&held, &stale, 2, GRACE, &order), (vec![2, 3], vec![]));
    }

    #[test]
    fn preference_is_a_rotation() {
        let mut p = preference("s1", 8);
        assert_eq!(p.len(), 8);
        p.sort_unstable();
        assert_eq!(p, (0..8).collect::<Vec<_>>());
        assert_eq!(preference("x", 1), vec![0]);
    }
}
