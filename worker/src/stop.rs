//! Stopping running shards on the scheduler's word.
//!
//! The scheduler publishes a [`StopShards`] (core NATS) on
//! `<ns>.stop.<app>.<job>.<instance>` when an instance is cancelled or a shard ran past
//! its timeout without being heard of. A worker subscribes to `<ns>.stop.<app>.>` before
//! it pulls anything, and keeps the shards it runs in a [`Stoppers`] registry keyed by
//! instance and item, each with its run and a one-shot channel to tell it to stop. A stop
//! that names an item, a run or both reaches only the matching shards; the shard then
//! stops its job like a timeout does and reports the outcome the stop asked for.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use antares_nats::{Nats, NatsError, async_nats, codec};
use antares_schemas::InstanceId;
use antares_schemas::limits::cap_error;
use antares_schemas::messages::{ShardOutcome, StopOutcome, StopShards};
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::shard::Shared;

/// Why a running shard must stop, and what it then reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stop {
    /// The line written to the shard's log.
    pub(crate) why: String,
    /// What the attempt ends as.
    pub(crate) outcome: ShardOutcome,
}

impl Stop {
    /// The stop a [`StopShards`] asks for.
    pub(crate) fn from_message(msg: &StopShards) -> Self {
        let reason = msg.reason.trim();
        let outcome = match msg.outcome {
            StopOutcome::Cancelled => ShardOutcome::Cancelled,
            StopOutcome::TimedOut => ShardOutcome::TimedOut {
                error: cap_error(if reason.is_empty() {
                    "timed out"
                } else {
                    reason
                }),
            },
        };
        let reason = match (reason.is_empty(), msg.outcome) {
            (false, _) => reason,
            (true, StopOutcome::Cancelled) => "cancelled",
            (true, StopOutcome::TimedOut) => "timed out",
        };
        Self {
            why: format!("stopped by the scheduler: {}", cap_error(reason)),
            outcome,
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    run: u32,
    tx: oneshot::Sender<Stop>,
}

/// The shards running on this worker, by instance and item, with a way to stop each.
///
/// An (instance, item) usually has one entry; it has two when a new run of the item
/// arrives while the old one is still being stopped.
#[derive(Debug, Default)]
pub(crate) struct Stoppers {
    shards: Mutex<BTreeMap<(InstanceId, u32), Vec<Entry>>>,
    next_id: AtomicU64,
}

/// A shard's place in [`Stoppers`]; leaving it when dropped.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    stoppers: &'a Stoppers,
    key: (InstanceId, u32),
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let Ok(mut shards) = self.stoppers.shards.lock() else {
            return;
        };
        if let Some(entries) = shards.get_mut(&self.key) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                shards.remove(&self.key);
            }
        }
    }
}

impl Stoppers {
    /// Registers a running shard; the receiver yields when it must stop.
    pub(crate) fn register(
        &self,
        instance: InstanceId,
        item: u32,
        run: u32,
    ) -> (Registration<'_>, oneshot::Receiver<Stop>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let key = (instance, item);
        if let Ok(mut shards) = self.shards.lock() {
            shards.entry(key).or_default().push(Entry { id, run, tx });
        }
        let registration = Registration {
            stoppers: self,
            key,
            id,
        };
        (registration, rx)
    }

    /// Tells the matching running shards to stop; returns how many were told.
    pub(crate) fn stop(&self, msg: &StopShards) -> usize {
        let Ok(mut shards) = self.shards.lock() else {
            return 0;
        };
        let (first, last) = match msg.item {
            Some(item) => (item, item),
            None => (0, u32::MAX),
        };
        let stop = Stop::from_message(msg);
        let mut told = 0;
        for (_, entries) in shards.range_mut((msg.instance, first)..=(msg.instance, last)) {
            let (hit, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries)
                .into_iter()
                .partition(|e| msg.run.is_none_or(|run| run == e.run));
            *entries = kept;
            for entry in hit {
                if entry.tx.send(stop.clone()).is_ok() {
                    told += 1;
                }
            }
        }
        shards.retain(|_, entries| !entries.is_empty());
        told
    }

    /// How many shards are registered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .lock()
            .map(|s| s.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Subscribes to the app's stop subjects.
pub(crate) async fn subscribe(nats: &Nats, app: &str) -> Result<async_nats::Subscriber, NatsError> {
    let filter = nats.topo.app_stop_filter(app);
    let sub = nats
        .client
        .subscribe(filter.clone())
        .await
        .map_err(|e| NatsError::op(format!("subscribe to {filter}"), e))?;
    // Make sure the server has the subscription before the worker pulls anything.
    nats.client
        .flush()
        .await
        .map_err(|e| NatsError::op("flush the stop subscription", e))?;
    Ok(sub)
}

/// Acts on stop messages for as long as it is polled.
pub(crate) async fn listen(shared: &Shared, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let msg: StopShards = match codec::decode("stop message", &m.payload) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!("ignoring a message on {}: {e}", m.subject);
                continue;
            }
        };
        let told = shared.stoppers.stop(&msg);
        if told > 0 {
            tracing::info!(
                "worker {}: stopping {told} shard(s) of instance {} ({})",
                shared.id,
                msg.instance,
                msg.reason
            );
        }
    }
    tracing::warn!(
        "worker {}: the stop subscription ended; running shards can no longer be stopped by the scheduler",
        shared.id
    );
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::Timestamp;

    fn stop(instance: InstanceId, item: Option<u32>, run: Option<u32>) -> StopShards {
        StopShards {
            instance,
            item,
            run,
            reason: "cancelled by alice".into(),
            outcome: StopOutcome::Cancelled,
        }
    }

    #[test]
    fn stops_reach_only_matching_shards() {
        let s = Stoppers::default();
        let a = InstanceId::for_fire("a", "j", Timestamp(1));
        let b = InstanceId::for_fire("a", "j", Timestamp(2));
        let (_r0, mut a0) = s.register(a, 0, 1);
        let (_r1, mut a1) = s.register(a, 1, 2);
        let (_r2, mut b0) = s.register(b, 0, 1);
        assert_eq!(s.stop(&stop(a, Some(1), Some(1))), 0, "another run");
        assert_eq!(s.stop(&stop(a, Some(2), None)), 0, "another item");
        assert_eq!(s.stop(&stop(a, Some(1), Some(2))), 1);
        assert!(a1.try_recv().is_ok());
        assert!(a0.try_recv().is_err());
        assert_eq!(s.stop(&stop(a, None, None)), 1);
        let got = a0.try_recv().expect("stopped");
        assert_eq!(got.outcome, ShardOutcome::Cancelled);
        assert_eq!(got.why, "stopped by the scheduler: cancelled by alice");
        assert!(b0.try_recv().is_err());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn entries_leave_when_their_shard_ends() {
        let s = Stoppers::default();
        let a = InstanceId::for_fire("a", "j", Timestamp(1));
        let (old, _rx_old) = s.register(a, 0, 1);
        let (new, mut rx_new) = s.register(a, 0, 2);
        assert_eq!(s.len(), 2);
        drop(old);
        assert_eq!(s.len(), 1);
        assert_eq!(s.stop(&stop(a, Some(0), None)), 1);
        assert!(rx_new.try_recv().is_ok());
        drop(new);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn timed_out_stops_carry_their_capped_reason() {
        let a = InstanceId::for_fire("a", "j", Timestamp(1));
        let mut msg = stop(a, None, None);
        msg.outcome = StopOutcome::TimedOut;
        msg.reason = "timed out after 10s".into();
        assert_eq!(
            Stop::from_message(&msg).outcome,
            ShardOutcome::TimedOut {
                error: "timed out after 10s".into()
            }
        );
        msg.reason = "x".repeat(100_000);
        let ShardOutcome::TimedOut { error } = Stop::from_message(&msg).outcome else {
            panic!("timed out");
        };
        assert!(error.len() <= antares_schemas::limits::MAX_ERROR_BYTES);
        msg.reason = String::new();
        let got = Stop::from_message(&msg);
        assert_eq!(
            got.outcome,
            ShardOutcome::TimedOut {
                error: "timed out".into()
            }
        );
    }
}
