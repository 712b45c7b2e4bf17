//! Work queues: durable pull consumers and settling their messages.
//!
//! How a job outcome maps to JetStream, in one place ([`Settle`]):
//! `Success`/`Fail` → ack (the result is published first), `Later` → nak with a delay
//! (redelivered, and the redelivery is the next attempt), a shard still running →
//! in-progress ack (so `ack_wait` does not hand it to another worker), a message that
//! can never be processed (undecodable) → term.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Message;
use async_nats::jetstream::stream::{ConsumerError as ContextConsumerError, ConsumerErrorKind};

use antares_schemas::Topology;

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

/// Whether a publish was refused because its stream is at its limit (discard-new).
pub fn is_full(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("maximum bytes exceeded") || e.contains("maximum messages exceeded")
}

/// A publish's error; a stream at its limit is said to be full, and what to do.
pub fn publish_error(stream: &str, op: String, e: impl Into<async_nats::Error>) -> NatsError {
    let e = e.into();
    if is_full(&e.to_string()) {
        NatsError::Config(format!(
            "{op}: the work queue {stream} is full ({e}); nothing it holds was dropped, and \
             it takes new messages again as its consumers take old ones (or raise \
             `antares provision --queue-max-bytes`)"
        ))
    } else {
        NatsError::op(op, e)
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

/// Default time a delivered shard item may go without an ack or in-progress ack.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(5);
/// Unacknowledged shard items one shard consumer allows (all workers of an app together).
pub const MAX_ACK_PENDING: i64 = 1_000_000;

/// The consumer all workers of an app share (made by `antares app create`, so workers
/// whose permissions forbid creating consumers can bind to it).
pub fn app_consumer_spec(topo: &Topology, app: &str, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        stream: topo.shards_stream(),
        durable: topo.app_consumer(app),
        filter: Some(topo.app_shards_filter(app)),
        ack_wait,
        max_ack_pending: MAX_ACK_PENDING,
    }
}

/// The consumer of one worker's own deliveries (made by the worker itself).
pub fn worker_consumer_spec(
    topo: &Topology,
    app: &str,
    worker: &str,
    ack_wait: Duration,
) -> ConsumerSpec {
    ConsumerSpec {
        stream: topo.shards_stream(),
        durable: topo.worker_consumer(app, worker),
        filter: Some(topo.worker_direct_filter(app, worker)),
        ack_wait,
        max_ack_pending: MAX_ACK_PENDING,
    }
}

/// Creates (or updates) a durable pull consumer and returns it.
pub async fn durable(nats: &Nats, spec: &ConsumerSpec) -> Result<PullConsumer> {
    durable_expiring(nats, spec, None).await
}

/// Like [`durable`], but the server deletes the consumer once nobody pulled from it for
/// `inactive` (a worker's own consumer, whose worker may never come back).
///
/// One request, `$JS.API.CONSUMER.CREATE.<stream>.<durable>.<filter>`, with no stream
/// info: a user whose permissions name exactly that subject can create or update its
/// own consumer and no other.
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
    let mark = nats.denials.mark();
    nats.js
        .create_consumer_on_stream(cfg, &spec.stream)
        .await
        .map_err(|e| consumer_error(nats, mark, "create", spec, e))
}

/// Binds to a durable consumer that exists, without creating it or reading the stream
/// (one `$JS.API.CONSUMER.INFO.<stream>.<durable>` request); `None` when it does not
/// exist.
pub async fn bind(nats: &Nats, spec: &ConsumerSpec) -> Result<Option<PullConsumer>> {
    let mark = nats.denials.mark();
    match nats
        .js
        .get_consumer_from_stream::<pull::Config, _, _>(&spec.durable, &spec.stream)
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(e)
            if matches!(e.kind(), ConsumerErrorKind::JetStream(ref j)
                if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(consumer_error(nats, mark, "bind to", spec, e)),
    }
}

/// Binds to a durable consumer, creating it when missing (an existing one keeps its
/// settings).
pub async fn ensure(nats: &Nats, spec: &ConsumerSpec) -> Result<PullConsumer> {
    match bind(nats, spec).await? {
        Some(c) => Ok(c),
        None => durable(nats, spec).await,
    }
}

/// What [`remove_app_queue`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Whether the app's consumer was there.
    pub consumer: bool,
    /// Shard items purged (queued for the app or for one of its workers).
    pub items: u64,
}

/// Deletes an app's shared consumer and purges every shard item still queued for the
/// app or one of its workers: with the app gone nothing would ever take them. (Its
/// workers' own consumers go by themselves once unused.)
pub async fn remove_app_queue(nats: &Nats, app: &str) -> Result<Removed> {
    let t = &nats.topo;
    let stream = nats
        .js
        .get_stream_no_info(t.shards_stream())
        .await
        .map_err(|e| NatsError::op(format!("open stream {}", t.shards_stream()), e))?;
    let consumer = match stream.delete_consumer(&t.app_consumer(app)).await {
        Ok(_) => true,
        Err(e)
            if matches!(e.kind(), ConsumerErrorKind::JetStream(ref j)
                if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
        {
            false
        }
        Err(e) => {
            return Err(NatsError::op(
                format!("delete consumer {}", t.app_consumer(app)),
                e,
            ));
        }
    };
    let mut items = 0;
    for filter in [t.app_shards_filter(app), t.app_direct_filter(app)] {
        let purged = stream
            .purge()
            .filter(&filter)
            .await
            .map_err(|e| NatsError::op(format!("purge {filter}"), e))?;
        items += purged.purged;
    }
    Ok(Removed { consumer, items })
}

/// Whether a bound consumer has the settings of `spec` that a worker cares about.
pub fn matches(consumer: &PullConsumer, spec: &ConsumerSpec) -> bool {
    let c = &consumer.cached_info().config;
    c.ack_wait == spec.ack_wait
        && c.filter_subject == spec.filter.clone().unwrap_or_default()
        && c.max_ack_pending == spec.max_ack_pending
}

/// A consumer operation's error, saying what to do: provision, or grant the subject
/// the server refused.
fn consumer_error(
    nats: &Nats,
    mark: u64,
    what: &str,
    spec: &ConsumerSpec,
    e: ContextConsumerError,
) -> NatsError {
    let op = format!("{what} consumer {} of stream {}", spec.durable, spec.stream);
    if let Some(refused) = nats.refused_since(mark) {
        return NatsError::Config(format!("cannot {op} ({e}): {refused}"));
    }
    if let ConsumerErrorKind::JetStream(j) = e.kind()
        && j.error_code() == ErrorCode::STREAM_NOT_FOUND
    {
        return NatsError::Config(format!(
            "cannot {op}: the stream is not there; run `antares provision` against this NATS first"
        ));
    }
    NatsError::op(op, e)
}
