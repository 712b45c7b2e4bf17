//! What the leader counts for its metrics, read off the events its steps emit: a fire
//! when a scheduled instance starts (with how late it was), an outcome when one ends,
//! a shard's duration when it finishes. Counting costs no I/O.

use antares_schemas::InstanceId;
use antares_schemas::instance::TriggerKind;
use antares_schemas::messages::{Event, EventKind};

use super::Leading;

impl Leading {
    /// Counts what `event`, about to be emitted for instance `id`, says happened.
    pub(super) fn observe(&self, id: InstanceId, event: &Event) {
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let inst = &stored.instance;
        let s = &inst.summary;
        match event.kind {
            EventKind::InstanceStarted => {
                if matches!(
                    s.trigger,
                    TriggerKind::Cron | TriggerKind::Every | TriggerKind::At | TriggerKind::Misfire
                ) {
                    self.metrics.fired(s.trigger, s.scheduled_at, event.at);
                }
            }
            EventKind::InstanceFinished => self.metrics.ended(s.status),
            EventKind::ShardFinished => {
                // Records are kept by item: found at its index, not by a search, which
                // over every shard of a large instance made each report cost O(shards).
                let shard = event.item.and_then(|i| {
                    inst.shards
                        .get(i as usize)
                        .filter(|sh| sh.item == i)
                        .or_else(|| inst.shards.iter().find(|sh| sh.item == i))
                });
                if let Some(sh) = shard
                    && let (Some(from), Some(to)) = (sh.started_at, sh.finished_at)
                {
                    self.metrics.shard_ran(from, to);
                }
            }
            _ => {}
        }
    }
}
