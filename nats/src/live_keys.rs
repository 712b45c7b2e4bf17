//! A bucket's keys, sorted and kept live in memory, so that a listing by name reads a
//! page of keys without scanning the bucket each time.
//!
//! One background task follows the bucket's stream with a headers-only ordered consumer:
//! the last message of every key first (a value, or a delete, purge or expiry marker),
//! then every later write. Only the keys are held, never the values.
//!
//! The set is served only once it is whole. When the consumer ends (the client recreates
//! it across reconnects itself; this covers the rest), a new one reads every key again
//! into a fresh set, after a backoff, and the old set is swapped out only when the new
//! one has caught up; until then [`LiveKeys::wait_ready`] says it is not ready.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv::Store;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::connect::Nats;
use crate::error::{NatsError, Result};

/// The first pause before a consumer that ended is made again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// See the module docs. Clones share one set and one task; the task stops when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct LiveKeys {
    shared: Arc<Shared>,
    store: Store,
    _task: Arc<StopOnDrop>,
}

/// One page of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, sorted.
    pub keys: Vec<String>,
    /// Whether more keys follow the last one (with the same prefix).
    pub more: bool,
}

#[derive(Debug)]
struct Shared {
    keys: RwLock<BTreeSet<String>>,
    progress: watch::Sender<Progress>,
}

/// How far the watcher has read.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// The set holds every key as of `seen`.
    ready: bool,
    /// The stream sequence of the last message applied to the served set.
    seen: u64,
}

#[derive(Debug)]
struct StopOnDrop(AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LiveKeys {
    /// Starts following `store`'s keys (on the current tokio runtime).
    pub fn watch(nats: &Nats, store: &Store) -> Self {
        let (progress, _) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            keys: RwLock::new(BTreeSet::new()),
            progress,
        });
        let task = tokio::spawn(follow(nats.clone(), store.clone(), Arc::clone(&shared)));
        Self {
            shared,
            store: store.clone(),
            _task: Arc::new(StopOnDrop(task.abort_handle())),
        }
    }

    /// Whether the set is whole now.
    pub fn is_ready(&self) -> bool {
        self.shared.progress.borrow().ready
    }

    /// Waits up to `timeout` for the set to be whole (at start, or after the consumer was
    /// made again); an error saying so otherwise.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.shared.progress.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|p| p.ready)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NatsError::op(
                format!("list the keys of {}", self.store.name),
                format!(
                    "they are still being read from NATS (not done within {timeout:?}): try again shortly"
                ),
            )),
        }
    }

    /// Waits up to `timeout` until the set holds every write made to the bucket before
    /// this call (one read of the stream's state). What a process calls after its own
    /// write, so that its next listing shows it.
    pub async fn sync(&self, timeout: Duration) -> Result<()> {
        let last = self
            .store
            .stream
            .get_info()
            .await
            .map_err(|e| NatsError::op(format!("read the state of {}", self.store.name), e))?
            .state
            .last_sequence;
        let mut rx = self.shared.progress.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|p| p.ready && p.seen >= last)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NatsError::op(
                format!("follow the keys of {}", self.store.name),
                format!("revision {last} was not seen within {timeout:?}"),
            )),
        }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Up to `limit` keys that start with `prefix` and sort strictly after `after`, in
    /// order, from the set as it is now (see [`Self::wait_ready`]).
    pub fn page(&self, prefix: &str, after: Option<&str>, limit: usize) -> KeyPage {
        page_of(&self.read(), prefix, after, limit)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        // A panic while holding the lock leaves a set that is still a valid set.
        self.shared
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Shared {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<String>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Follows the bucket for as long as the task runs, making the consumer again (with
/// backoff) whenever it ends.
async fn follow(nats: Nats, store: Store, shared: Arc<Shared>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let outcome = follow_once(&nats, &store, &shared).await;
        shared.progress.send_modify(|p| p.ready = false);
        match outcome {
            // It caught up before it ended: start again quickly.
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(bucket = %store.name, error = %e, "following the keys failed; trying again")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One consumer, from every key's last message until it ends; whether it caught up.
async fn follow_once(nats: &Nats, store: &Store, shared: &Shared) -> Result<bool> {
    let op = || format!("follow the keys of {}", store.name);
    let prefix = nats.topo.kv_subject(&store.name, "");
    let consumer = store
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: nats.client.new_inbox(),
            filter_subject: format!("{prefix}>"),
            headers_only: true,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::op(op(), e))?;
    // Read into a fresh set; served once caught up.
    let mut fresh = Some(BTreeSet::new());
    let mut seen = 0;
    if consumer.cached_info().num_pending == 0 {
        swap_in(shared, &mut fresh, seen);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| NatsError::op(op(), e))?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| NatsError::op(op(), e))?;
        let info = msg.info().map_err(|e| NatsError::op(op(), e))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let Some(key) = msg.subject.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let live = !removes(msg.headers.as_ref());
        seen = seen.max(sequence);
        match &mut fresh {
            Some(set) => {
                apply(set, key, live);
                if pending == 0 {
                    swap_in(shared, &mut fresh, seen);
                }
            }
            None => {
                apply(&mut shared.write(), key, live);
                shared.progress.send_modify(|p| p.seen = p.seen.max(seen));
            }
        }
    }
    Ok(fresh.is_none())
}

/// Serves the fresh set from now on.
fn swap_in(shared: &Shared, fresh: &mut Option<BTreeSet<String>>, seen: u64) {
    if let Some(set) = fresh.take() {
        *shared.write() = set;
        shared.progress.send_modify(|p| {
            p.ready = true;
            p.seen = p.seen.max(seen);
        });
    }
}

fn apply(set: &mut BTreeSet<String>, key: &str, live: bool) {
    if live {
        if !set.contains(key) {
            set.insert(key.to_string());
        }
    } else {
        set.remove(key);
    }
}

/// Whether a message ends its key: a delete or purge (`KV-Operation`), or a marker the
/// server wrote when the key's TTL ran out.
fn removes(headers: Option<&HeaderMap>) -> bool {
    headers
        .is_some_and(|h| h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some())
}

/// A page of `set`: see [`LiveKeys::page`].
fn page_of(set: &BTreeSet<String>, prefix: &str, after: Option<&str>, limit: usize) -> KeyPage {
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let mut found = set
        .range::<str, _>((start, Bound::Unbounded))
        .take_while(|k| k.starts_with(prefix));
    let keys: Vec<String> = found.by_ref().take(limit).cloned().collect();
    KeyPage {
        more: found.next().is_some(),
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(prefix: &str, after: Option<&str>, limit: usize) -> (Vec<String>, bool) {
        let set: BTreeSet<String> = ["a.x", "a.y", "a.yy", "a.z", "ab.q", "b.x"]
            .into_iter()
            .map(String::from)
            .collect();
        let p = page_of(&set, prefix, after, limit);
        (p.keys, p.more)
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_page_holds_the_keys_after_the_cursor_within_the_prefix() {
        assert_eq!(page("a.", None, 2), (keys(&["a.x", "a.y"]), true));
        assert_eq!(page("a.", Some("a.y"), 2), (keys(&["a.yy", "a.z"]), false));
        assert_eq!(page("a.", Some("a.z"), 2), (keys(&[]), false));
        assert_eq!(page("a.y", None, 5), (keys(&["a.y", "a.yy"]), false));
        // A cursor before the prefix starts at the prefix; one past it finds nothing.
        assert_eq!(page("a.y", Some("a.a"), 1), (keys(&["a.y"]), true));
        assert_eq!(page("a.y", Some("a.yz"), 5), (keys(&[]), false));
        assert_eq!(page("b.", None, 1), (keys(&["b.x"]), false));
        assert_eq!(page("c.", None, 1), (keys(&[]), false));
    }
}
