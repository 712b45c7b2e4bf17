//! Pulling shard items from the app's work queue, never more than there are free slots.
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

/// The pulling side of a worker.
pub(crate) struct Puller {
    pub(crate) shared: Arc<Shared>,
    pub(crate) spec: ConsumerSpec,
    pub(crate) consumer: PullConsumer,
    pub(crate) concurrency: usize,
    pub(crate) grace: Duration,
}

/// Pull state: requested-but-not-received messages and the running shards.
struct Slots {
    outstanding: usize,
    running: JoinSet<()>,
    last_traffic: Instant,
    hold_until: Option<Instant>,
}

impl Puller {
    /// Pulls and runs shard items until the phase leaves `Running`, then drains.
    pub(crate) async fn run(mut self, mut phase: watch::Receiver<Phase>) -> Result<()> {
        let client = self.shared.nats.client.clone();
        let inbox = client.new_inbox();
        let mut sub = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| NatsError::op("subscribe to the pull inbox", e))?;
        let mut slots = Slots {
            outstanding: 0,
            running: JoinSet::new(),
            last_traffic: Instant::now(),
            hold_until: None,
        };
        let refill = (self.concurrency / 2).max(1);
        let stats = client.statistics();
        let mut connects = stats.connects.load(Ordering::Relaxed);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost = None;
        while *phase.borrow_and_update() == Phase::Running {
            self.request(&mut slots, refill, &inbox).await;
            tokio::select! {
                biased;
                changed = phase.changed() => if changed.is_err() { break },
                m = sub.next() => match m {
                    Some(m) => {
                        slots.last_traffic = Instant::now();
                        self.receive(&mut slots, m).await;
                    }
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
                    let now_connects = stats.connects.load(Ordering::Relaxed);
                    if now_connects != connects {
                        // Reconnected: the server forgot the requests of the old connection.
                        connects = now_connects;
                        slots.outstanding = 0;
                    } else if slots.outstanding > 0 && slots.last_traffic.elapsed() > PULL_SILENCE {
                        tracing::debug!("no word on {} pulled messages; pulling again", slots.outstanding);
                        slots.outstanding = 0;
                    }
                }
            }
        }
        // Stop pulling: nobody listens to the inbox any more, so the server drops our
        // waiting requests; whatever already arrived goes back to the queue.
        let _ = sub.unsubscribe().await;
        while let Some(m) = sub.next().await {
            if is_shard(&m) {
                queue_nak(self.shared.as_ref(), m).await;
            }
        }
        self.drain(slots.running, &mut phase).await;
        match lost {
            Some(why) => Err(NatsError::Config(format!("worker stopped: {why}")).into()),
            None => Ok(()),
        }
    }

    /// Sends a pull request for the free slots when enough of them are free.
    async fn request(&self, slots: &mut Slots, refill: usize, inbox: &str) {
        let busy = slots.running.len() + slots.outstanding;
        let free = self.concurrency.saturating_sub(busy);
        if free == 0 || (slots.outstanding > 0 && free < refill) {
            return;
        }
        if let Some(until) = slots.hold_until {
            if Instant::now() < until {
                return;
            }
            slots.hold_until = None;
        }
        let batch = BatchConfig {
            batch: free,
            expires: Some(PULL_EXPIRES),
            idle_heartbeat: PULL_HEARTBEAT,
            ..Default::default()
        };
        match self
            .consumer
            .request_batch(batch, inbox.to_string().into())
            .await
        {
            Ok(()) => {
                if slots.outstanding == 0 {
                    slots.last_traffic = Instant::now();
                }
                slots.outstanding += free;
            }
            Err(e) => {
                tracing::warn!("cannot pull from {}: {e}", self.spec.durable);
                slots.hold_until = Some(Instant::now() + PULL_BACKOFF);
            }
        }
    }

    /// Handles one message on the pull inbox: a shard item or a status.
    async fn receive(&mut self, slots: &mut Slots, m: async_nats::Message) {
        if is_shard(&m) {
            slots.outstanding = slots.outstanding.saturating_sub(1);
            if slots.running.len() < self.concurrency {
                let msg = Message {
                    message: m,
                    context: self.shared.nats.js.clone(),
                };
                slots.running.spawn(shard::drive(self.shared.clone(), msg));
            } else {
                // More than we asked for (requests we thought forgotten): put it back.
                queue_nak(self.shared.as_ref(), m).await;
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
            slots.outstanding = slots.outstanding.saturating_sub(owed);
            return;
        }
        let description = m.description.unwrap_or_default();
        slots.outstanding = 0;
        slots.hold_until = Some(Instant::now() + PULL_BACKOFF);
        if description.contains("Consumer Deleted") {
            tracing::warn!(
                "consumer {} was deleted; creating it again",
                self.spec.durable
            );
            match queue::durable(&self.shared.nats, &self.spec).await {
                Ok(c) => self.consumer = c,
                Err(e) => tracing::warn!("{e}"),
            }
        } else {
            tracing::warn!(
                "pull from {} refused: {status} {description}",
                self.spec.durable
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
