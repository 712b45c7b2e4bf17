//! Pulling shard items from the app's work queue and from the worker's own subject,
//! never more than there are free slots.
//!
//! Two feeds: all workers of an app share one durable pull consumer (`pull` routing),
//! and each has its own (`worker-<app>-<worker>`, filter `<ns>.direct.<app>.<worker>.>`)
//! for the items the scheduler sends to it by name (every other routing, and a job
//! firing again within seconds, which must not wait behind the app's queue). Both ask
//! for the free slots; an item of the worker's own feed that arrives while every slot
//! is taken waits here (with in-progress acks) and takes the next free slot before the
//! shared queue does, since nobody else may run it, and one of the shared queue goes
//! back at once for another worker.
//!
//! All workers of an app share one durable pull consumer. A worker asks for exactly as
//! many messages as it has free slots (pull requests with a batch size, kept waiting at
//! the server), so every message it receives has a slot reserved and starts at once:
//! nothing sits in a local buffer while its `ack_wait` runs out, and a busy worker leaves
//! the queue to the others. A new request goes out when half the slots are free again
//! (or none is outstanding), which keeps round trips to a few per batch.
//!
//! The count of messages requested but not yet received is kept from the server's
//! status replies (a request that expires reports how many it still owed). Requests
//! carry an idle heartbeat; after a reconnect, or when neither messages nor heartbeats
//! arrive for a while, the server has forgotten them and the count starts over.
//!
//! Shutdown: the pull inbox is unsubscribed at once (the server drops requests nobody
//! listens to), messages already received but not started are nak'd, running shards get
//! the grace period, then are cancelled and handed back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use antares_nats::queue::{self, ConsumerSpec, Settle};
use antares_nats::{NatsError, async_nats};
use async_nats::StatusCode;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::BatchConfig;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::Result;
use crate::shard::{self, Shared};

/// How long a pull request waits at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Idle heartbeat of a waiting pull request.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Silence after which outstanding requests are presumed forgotten by the server.
const PULL_SILENCE: Duration = Duration::from_secs(11);
/// Pause after the server refused a pull request.
const PULL_BACKOFF: Duration = Duration::from_secs(1);

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Pulling and running shard items.
    Running,
    /// Not pulling; running shards get the grace period.
    Draining,
    /// Not pulling; running shards are cancelled and handed back now.
    Abort,
}

/// A durable consumer a worker pulls from.
pub(crate) struct Source {
    pub(crate) spec: ConsumerSpec,
    pub(crate) consumer: PullConsumer,
    /// Deleted by the server after this long unused (the worker's own consumer).
    pub(crate) inactive: Option<Duration>,
    /// Items of this feed are the worker's alone (they wait for a slot here).
    pub(crate) own: bool,
}

/// The pulling side of a worker.
pub(crate) struct Puller {
    pub(crate) shared: Arc<Shared>,
    /// The app's shared queue and the worker's own.
    pub(crate) sources: [Source; 2],
    pub(crate) concurrency: usize,
    pub(crate) grace: Duration,
}

/// One feed's pull state: requested-but-not-received messages.
struct Feed {
    inbox: String,
    outstanding: usize,
    last_traffic: Instant,
    hold_until: Option<Instant>,
}

/// The running shards, and the worker's own items waiting for a slot.
struct Slots {
    running: JoinSet<()>,
    waiting: VecDeque<Message>,
}

impl Puller {
    /// Pulls and runs shard items until the phase leaves `Running`, then drains.
    pub(crate) async fn run(mut self, mut phase: watch::Receiver<Phase>) -> Result<()> {
        let client = self.shared.nats.client.clone();
        let mut subs = Vec::with_capacity(2);
        let mut feeds = Vec::with_capacity(2);
        for _ in 0..2 {
            let inbox = client.new_inbox();
            subs.push(
                client
                    .subscribe(inbox.clone())
                    .await
                    .map_err(|e| NatsError::op("subscribe to the pull inbox", e))?,
            );
            feeds.push(Feed {
                inbox,
                outstanding: 0,
                last_traffic: Instant::now(),
                hold_until: None,
            });
        }
        let (Some(mut own_sub), Some(mut queue_sub)) = (subs.pop(), subs.pop()) else {
            return Ok(());
        };
        let mut slots = Slots {
            running: JoinSet::new(),
            waiting: VecDeque::new(),
        };
        let refill = (self.concurrency / 2).max(1);
        let stats = client.statistics();
        let mut connects = stats.connects.load(Ordering::Relaxed);
        let every = self.shared.progress_every.min(Duration::from_millis(500));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost = None;
        while *phase.borrow_and_update() == Phase::Running {
            self.start_waiting(&mut slots);
            for (i, feed) in feeds.iter_mut().enumerate() {
                self.request(i, feed, &slots, refill).await;
            }
            tokio::select! {
                biased;
                changed = phase.changed() => if changed.is_err() { break },
                m = own_sub.next() => match m {
                    Some(m) => self.receive(1, &mut feeds[1], &mut slots, m).await,
                    None => {
                        lost = Some("the NATS connection closed");
                        break;
                    }
                },
                m = queue_sub.next() => match m {
                    Some(m) => self.receive(0, &mut feeds[0], &mut slots, m).await,
                    None => {
                        lost = Some("the NATS connection closed");
                        break;
                    }
                },
                Some(joined) = slots.running.join_next(), if !slots.running.is_empty() => {
                    if let Err(e) = joined && e.is_panic() {
                        tracing::error!("a shard driver panicked: {e}");
                    }
                }
                _ = tick.tick() => {
                    // The worker's own items waiting for a slot stay its own.
                    for m in &slots.waiting {
                        if let Err(e) = queue::settle(m, Settle::Progress).await {
                            tracing::debug!("{e}");
                        }
                    }
                    let now_connects = stats.connects.load(Ordering::Relaxed);
                    for feed in &mut feeds {
                        if now_connects != connects {
                            // Reconnected: the server forgot the requests of the old connection.
                            feed.outstanding = 0;
                        } else if feed.outstanding > 0 && feed.last_traffic.elapsed() > PULL_SILENCE {
                            tracing::debug!("no word on {} pulled messages; pulling again", feed.outstanding);
                            feed.outstanding = 0;
                        }
                    }
                    connects = now_connects;
                }
            }
        }
        // Stop pulling: nobody listens to the inboxes any more, so the server drops our
        // waiting requests; whatever already arrived goes back to the queue.
        let _ = queue_sub.unsubscribe().await;
        let _ = own_sub.unsubscribe().await;
        while let Some(m) = queue_sub.next().await {
            if is_shard(&m) {
                queue_nak(self.shared.as_ref(), m).await;
            }
        }
        while let Some(m) = own_sub.next().await {
            if is_shard(&m) {
                queue_nak(self.shared.as_ref(), m).await;
            }
        }
        for m in slots.waiting.drain(..) {
            if let Err(e) = queue::settle(&m, Settle::Nak(None)).await {
                tracing::warn!("{e}");
            }
        }
        self.drain(slots.running, &mut phase).await;
        match lost {
            Some(why) => Err(NatsError::Config(format!("worker stopped: {why}")).into()),
            None => Ok(()),
        }
    }

    /// Starts the worker's own waiting items while slots are free.
    fn start_waiting(&self, slots: &mut Slots) {
        while slots.running.len() < self.concurrency
            && let Some(msg) = slots.waiting.pop_front()
        {
            slots.running.spawn(shard::drive(self.shared.clone(), msg));
        }
    }

    /// Sends a pull request on feed `i` for the free slots when enough of them are free.
    async fn request(&self, i: usize, feed: &mut Feed, slots: &Slots, refill: usize) {
        let busy = slots.running.len() + slots.waiting.len() + feed.outstanding;
        let free = self.concurrency.saturating_sub(busy);
        if free == 0 || (feed.outstanding > 0 && free < refill) {
            return;
        }
        if let Some(until) = feed.hold_until {
            if Instant::now() < until {
                return;
            }
            feed.hold_until = None;
        }
        let batch = BatchConfig {
            batch: free,
            expires: Some(PULL_EXPIRES),
            idle_heartbeat: PULL_HEARTBEAT,
            ..Default::default()
        };
        let source = &self.sources[i];
        match source
            .consumer
            .request_batch(batch, feed.inbox.clone().into())
            .await
        {
            Ok(()) => {
                if feed.outstanding == 0 {
                    feed.last_traffic = Instant::now();
                }
                feed.outstanding += free;
            }
            Err(e) => {
                tracing::warn!("cannot pull from {}: {e}", source.spec.durable);
                feed.hold_until = Some(Instant::now() + PULL_BACKOFF);
            }
        }
    }

    /// Handles one message on feed `i`'s inbox: a shard item or a status.
    async fn receive(
        &mut self,
        i: usize,
        feed: &mut Feed,
        slots: &mut Slots,
        m: async_nats::Message,
    ) {
        feed.last_traffic = Instant::now();
        if is_shard(&m) {
            feed.outstanding = feed.outstanding.saturating_sub(1);
            let msg = Message {
                message: m,
                context: self.shared.nats.js.clone(),
            };
            if slots.running.len() < self.concurrency {
                slots.running.spawn(shard::drive(self.shared.clone(), msg));
            } else if self.sources[i].own && slots.waiting.len() < self.concurrency {
                slots.waiting.push_back(msg);
            } else if let Err(e) = queue::settle(&msg, Settle::Nak(None)).await {
                // More than we asked for (requests we thought forgotten): put it back.
                tracing::warn!("{e}");
            }
            return;
        }
        let Some(status) = m.status else { return };
        if status == StatusCode::IDLE_HEARTBEAT || status == StatusCode::NOT_FOUND {
            return;
        }
        let owed = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Pending-Messages"))
            .and_then(|v| v.as_str().parse::<usize>().ok());
        if let Some(owed) = owed {
            feed.outstanding = feed.outstanding.saturating_sub(owed);
            return;
        }
        let description = m.description.unwrap_or_default();
        feed.outstanding = 0;
        feed.hold_until = Some(Instant::now() + PULL_BACKOFF);
        let source = &mut self.sources[i];
        if description.contains("Consumer Deleted") {
            tracing::warn!(
                "consumer {} was deleted; creating it again",
                source.spec.durable
            );
            match queue::durable_expiring(&self.shared.nats, &source.spec, source.inactive).await {
                Ok(c) => source.consumer = c,
                Err(e) => tracing::warn!("{e}"),
            }
        } else {
            tracing::warn!(
                "pull from {} refused: {status} {description}",
                source.spec.durable
            );
        }
    }

    /// Gives running shards the grace period (cut short by `Abort`), then cancels the
    /// rest and waits until they handed their items back.
    async fn drain(&self, mut running: JoinSet<()>, phase: &mut watch::Receiver<Phase>) {
        if !running.is_empty() {
            tracing::info!(
                "worker {}: waiting up to {:?} for {} running shard(s)",
                self.shared.id,
                self.grace,
                running.len()
            );
        }
        let deadline = tokio::time::sleep(self.grace);
        tokio::pin!(deadline);
        while !running.is_empty() {
            tokio::select! {
                _ = running.join_next() => {}
                () = &mut deadline => break,
                Ok(_) = phase.wait_for(|p| *p == Phase::Abort) => break,
            }
        }
        if !running.is_empty() {
            tracing::info!(
                "worker {}: handing back {} running shard(s)",
                self.shared.id,
                running.len()
            );
            self.shared.abort.cancel();
            while running.join_next().await.is_some() {}
        }
    }
}

/// Whether an inbox message is a stored message rather than a status.
fn is_shard(m: &async_nats::Message) -> bool {
    m.status.is_none_or(|s| s == StatusCode::OK)
}

/// Puts a received but not started message back at once.
async fn queue_nak(shared: &Shared, m: async_nats::Message) {
    let msg = Message {
        message: m,
        context: shared.nats.js.clone(),
    };
    if let Err(e) = queue::settle(&msg, Settle::Nak(None)).await {
        tracing::warn!("{e}");
    }
}
