//! Work queues: durable pull consumers and settling their messages.
//!
//! How a job outcome maps to JetStream, in one place ([`Settle`]):
//! `Success`/`Fail` → ack (the result is published first), `Later` → nak with a delay
//! (redelivered, and the redelivery is the next attempt), a shard still running →
//! in-progress ack (so `ack_wait` does not hand it to another worker), a message that
//! can never be processed (undecodable) → term.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Message;

use crate::connect::Nats;
use crate::error::{NatsError, Result};

/// How to settle a work-queue message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Done with it (it leaves the queue).
    Ack,
    /// Put it back, redelivered after the delay (at once with `None`).
    Nak(Option<Duration>),
    /// Still working on it: restart its `ack_wait`.
    Progress,
    /// Never deliver it again.
    Term,
}

impl From<Settle> for AckKind {
    fn from(s: Settle) -> Self {
        match s {
            Settle::Ack => AckKind::Ack,
            Settle::Nak(d) => AckKind::Nak(d),
            Settle::Progress => AckKind::Progress,
            Settle::Term => AckKind::Term,
        }
    }
}

/// Settles a message (fire and forget: flush the connection before exiting).
pub async fn settle(msg: &Message, how: Settle) -> Result<()> {
    msg.ack_with(how.into())
        .await
        .map_err(|e| NatsError::op(format!("{how:?} message"), e))
}

/// Which delivery of its message this is: 1 the first time.
pub fn attempt(msg: &Message) -> u32 {
    msg.info()
        .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Settings of a durable pull consumer.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// Stream name.
    pub stream: String,
    /// Durable name.
    pub durable: String,
    /// Subject filter (`None` for the whole stream).
    pub filter: Option<String>,
    /// How long a delivered message may stay unacked before redelivery.
    pub ack_wait: Duration,
    /// Most unacked messages at once.
    pub max_ack_pending: i64,
}

/// Creates (or updates) a durable pull consumer and returns it.
pub async fn durable(nats: &Nats, spec: &ConsumerSpec) -> Result<PullConsumer> {
    durable_expiring(nats, spec, None).await
}

/// Like [`durable`], but the server deletes the consumer once nobody pulled from it for
/// `inactive` (a worker's own consumer, whose worker may never come back).
pub async fn durable_expiring(
    nats: &Nats,
    spec: &ConsumerSpec,
    inactive: Option<Duration>,
) -> Result<PullConsumer> {
    consumer(nats, spec, spec.filter.iter().cloned().collect(), inactive).await
}

/// Like [`durable`], with several subject filters (`spec.filter` is not used).
pub async fn durable_filtered(
    nats: &Nats,
    spec: &ConsumerSpec,
    filters: Vec<String>,
) -> Result<PullConsumer> {
    consumer(nats, spec, filters, None).await
}

async fn consumer(
    nats: &Nats,
    spec: &ConsumerSpec,
    mut filters: Vec<String>,
    inactive: Option<Duration>,
) -> Result<PullConsumer> {
    let stream = nats.stream(&spec.stream).await?;
    // One filter goes as `filter_subject`, which servers before 2.10 understand too.
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters.pop().unwrap_or_default(), Vec::new())
    } else {
        (String::new(), filters)
    };
    let cfg = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject,
        filter_subjects,
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        max_deliver: -1,
        inactive_threshold: inactive.unwrap_or_default(),
        ..Default::default()
    };
    stream
        .create_consumer(cfg)
        .await
        .map_err(|e| NatsError::op(format!("consumer {} on {}", spec.durable, spec.stream), e))
}
