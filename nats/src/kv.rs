//! Key-value operations Antares relies on beyond the client's own.
//!
//! Every write that must not clobber someone else's goes through [`write`](fn@write) with an
//! [`Expect`]: JetStream stores it only if the key's last revision is the expected one
//! (`Nats-Expected-Last-Subject-Sequence`), else it fails with
//! [`NatsError::WrongRevision`]. That is the fencing of schedulers: a scheduler that
//! lost its lease and writes late is refused, because the new leader has written since.
//! Writes can carry a per-message TTL (`Nats-TTL`, whole seconds, server >= 2.11), which
//! is how leases and heartbeats expire when their writer stops.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{Operation, Store};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::connect::Nats;
use crate::error::{NatsError, Result};

/// What a write expects of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Overwrite whatever is there.
    Any,
    /// The key's last revision (0 = the key never existed).
    Revision(u64),
}

/// A value with the revision it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision (stream sequence).
    pub revision: u64,
}

/// Formats a TTL the way the server takes it: whole seconds, at least 1.
pub fn ttl_header(ttl: Duration) -> String {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    format!("{}s", secs.max(1))
}

fn headers(expect: Expect, ttl: Option<Duration>, op: WriteOp) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Expect::Revision(rev) = expect {
        h.insert(
            "Nats-Expected-Last-Subject-Sequence",
            rev.to_string().as_str(),
        );
    }
    if let Some(ttl) = ttl {
        h.insert("Nats-TTL", ttl_header(ttl).as_str());
    }
    match op {
        WriteOp::Put => {}
        WriteOp::Delete => h.insert("KV-Operation", "DEL"),
        WriteOp::Purge => {
            h.insert("KV-Operation", "PURGE");
            h.insert("Nats-Rollup", "sub");
        }
    }
    h
}

/// One write of a batch.
#[derive(Clone, Debug)]
pub struct Write {
    /// Bucket name.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Encoded value (empty for a delete).
    pub value: Bytes,
    /// What it expects.
    pub expect: Expect,
    /// Per-message TTL.
    pub ttl: Option<Duration>,
    /// A value, a delete marker, or a purge (drops the key's history).
    pub op: WriteOp,
}

/// What a [`Write`] does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Stores the value.
    Put,
    /// Writes a delete marker.
    Delete,
    /// Removes the key's history, leaving one purge marker (give it a TTL to have the
    /// marker go too, on buckets with TTLs enabled).
    Purge,
}

impl Write {
    /// A put of an encoded value.
    pub fn put(bucket: &str, key: String, value: Bytes, expect: Expect) -> Self {
        Self {
            bucket: bucket.to_string(),
            key,
            value,
            expect,
            ttl: None,
            op: WriteOp::Put,
        }
    }

    /// A delete marker.
    pub fn delete(bucket: &str, key: String, expect: Expect) -> Self {
        Self {
            bucket: bucket.to_string(),
            key,
            value: Bytes::new(),
            expect,
            ttl: None,
            op: WriteOp::Delete,
        }
    }

    /// A purge of the key.
    pub fn purge(bucket: &str, key: String) -> Self {
        Self {
            bucket: bucket.to_string(),
            key,
            value: Bytes::new(),
            expect: Expect::Any,
            ttl: None,
            op: WriteOp::Purge,
        }
    }

    /// With a per-message TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Most writes of one [`write_all`] whose acks are in flight at once.
pub const WRITE_WINDOW: usize = 256;

/// Sends a batch of writes pipelined (at most [`WRITE_WINDOW`] unacknowledged) and waits
/// for all; returns each one's new revision or its error, in order.
pub async fn write_all(nats: &Nats, writes: Vec<Write>) -> Vec<Result<u64>> {
    write_pipelined(nats, writes, WRITE_WINDOW).await
}

/// Sends many writes with up to `window` acknowledgements in flight at any time (a
/// sliding window: the next write goes out as soon as an earlier one is acknowledged),
/// and returns each one's new revision or its error, in order. `window` is capped below
/// the connection's room for acknowledgements, leaving room for others, and taken whole
/// before the first write ([`Nats::ack_room`]).
pub async fn write_pipelined(
    nats: &Nats,
    writes: impl IntoIterator<Item = Write>,
    window: usize,
) -> Vec<Result<u64>> {
    let window = window.clamp(1, MAX_PIPELINE);
    let writes = writes.into_iter();
    // Room for what can be in flight: the window, or fewer writes.
    let _room = nats
        .ack_room(window.min(writes.size_hint().1.unwrap_or(window)))
        .await;
    let mut in_flight = FuturesOrdered::new();
    let mut out = Vec::with_capacity(writes.size_hint().0);
    for w in writes {
        if in_flight.len() >= window
            && let Some(res) = in_flight.next().await
        {
            out.push(res);
        }
        let sent = send(nats, &w).await;
        in_flight.push_back(acked(w, sent));
    }
    while let Some(res) = in_flight.next().await {
        out.push(res);
    }
    out
}

/// Most acknowledgements [`write_pipelined`] keeps in flight (half of
/// [`crate::connect::ACK_ROOM`]).
pub const MAX_PIPELINE: usize = 2048;

/// Sends one write; its acknowledgement is awaited by [`acked`].
async fn send(nats: &Nats, w: &Write) -> Result<async_nats::jetstream::context::PublishAckFuture> {
    let subject = nats.topo.kv_subject(&w.bucket, &w.key);
    nats.js
        .publish_with_headers(subject, headers(w.expect, w.ttl, w.op), w.value.clone())
        .await
        .map_err(|e| NatsError::op(format!("write {}/{}", w.bucket, w.key), e))
}

/// A sent write's outcome once acknowledged.
async fn acked(
    w: Write,
    sent: Result<async_nats::jetstream::context::PublishAckFuture>,
) -> Result<u64> {
    match sent {
        Err(e) => Err(e),
        Ok(ack) => match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(NatsError::WrongRevision {
                    key: format!("{}/{}", w.bucket, w.key),
                    expected: match w.expect {
                        Expect::Revision(r) => r,
                        Expect::Any => 0,
                    },
                })
            }
            Err(e) => Err(NatsError::op(format!("write {}/{}", w.bucket, w.key), e)),
        },
    }
}

/// One write.
pub async fn write(nats: &Nats, w: Write) -> Result<u64> {
    write_all(nats, vec![w])
        .await
        .pop()
        .unwrap_or_else(|| Err(NatsError::Config("empty write batch".into())))
}

/// Encodes and writes one value.
pub async fn put<T: Serialize>(
    nats: &Nats,
    bucket: &str,
    key: String,
    what: &'static str,
    value: &T,
    expect: Expect,
) -> Result<u64> {
    write(
        nats,
        Write::put(bucket, key, codec::encode(what, value)?, expect),
    )
    .await
}

/// Reads and decodes a key; `None` when absent or deleted.
pub async fn get<T: DeserializeOwned>(
    store: &Store,
    key: &str,
    what: &'static str,
) -> Result<Option<Versioned<T>>> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
    match entry {
        Some(e) if e.operation == Operation::Put => Ok(Some(Versioned {
            value: codec::decode(what, &e.value)?,
            revision: e.revision,
        })),
        _ => Ok(None),
    }
}

/// Reads a key's raw value; `None` when absent or deleted.
pub async fn get_raw(store: &Store, key: &str) -> Result<Option<Bytes>> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
    Ok(entry
        .filter(|e| e.operation == Operation::Put)
        .map(|e| e.value))
}

/// The last revision of a key, whatever it is (a value, a delete or an expiry marker);
/// 0 when the key never existed. What a create-or-take write must expect.
pub async fn last_revision(store: &Store, key: &str) -> Result<(u64, Option<Operation>)> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
    Ok(entry.map_or((0, None), |e| (e.revision, Some(e.operation))))
}

/// One key found by [`scan`].
#[derive(Clone, Debug)]
pub struct Scanned {
    /// The key.
    pub key: String,
    /// Its value (empty when scanned with `headers_only`).
    pub value: Bytes,
    /// Its revision.
    pub revision: u64,
}

/// The live keys (and values unless `headers_only`) of a bucket matching a key filter
/// (`*` and `>` wildcards), read as of now.
pub async fn scan(
    nats: &Nats,
    store: &Store,
    filter: &str,
    headers_only: bool,
) -> Result<Vec<Scanned>> {
    let entries = last_entries(nats, store, filter, headers_only).await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            e.value.map(|value| Scanned {
                key: e.key,
                value,
                revision: e.revision,
            })
        })
        .collect())
}

/// Longest wait for the next key of a [`scan_last`].
const SCAN_WAIT: Duration = Duration::from_secs(10);

/// A key's last entry as [`scan_last`] finds it.
#[derive(Clone, Debug)]
pub struct Last {
    /// The key.
    pub key: String,
    /// Its value; `None` when the last entry is a delete, purge or expiry marker.
    pub value: Option<Bytes>,
    /// The last entry's revision: what a write replacing it must expect.
    pub revision: u64,
    /// When the last entry was stored.
    pub written: antares_schemas::Timestamp,
}

/// The last entry of every key of a bucket matching a key filter, deleted ones included
/// (with their marker's revision), read as of now in one pass: what a bulk
/// read-compare-write needs instead of a GET per key.
pub async fn scan_last(nats: &Nats, store: &Store, filter: &str) -> Result<Vec<Last>> {
    last_entries(nats, store, filter, false).await
}

/// Entries a scan asks the server for at once.
const SCAN_BATCH: usize = 1024;

/// How long the server keeps a scan's consumer once nobody asks it for more: the
/// bound on its life should the scan stop without deleting it (a crash, a lost
/// connection).
const SCAN_INACTIVE: Duration = Duration::from_secs(5);

/// Longest wait for the deletion of a finished scan's consumer.
const SCAN_DELETE_WAIT: Duration = Duration::from_secs(2);

/// The last entry of every key matching `filter` (values left empty with
/// `headers_only`), each wait for the next bounded by [`SCAN_WAIT`].
async fn last_entries(
    nats: &Nats,
    store: &Store,
    filter: &str,
    headers_only: bool,
) -> Result<Vec<Last>> {
    let mut out = Vec::new();
    scan_each(nats, store, filter, headers_only, |last| out.push(last)).await?;
    Ok(out)
}

/// [`scan_last`] handing each entry to `each` as it arrives, so a large bucket is never
/// held whole: what is kept of each entry is up to the caller. A value is a slice of
/// the connection's read buffer: copy what is kept for long.
///
/// The scan reads through an ephemeral pull consumer of its own, deleted once the read
/// ends, whatever its outcome: scans are made per request (every listing makes one),
/// and consumers left to expire would pile up to the server's limit under a steady
/// stream of requests.
pub async fn scan_each(
    nats: &Nats,
    store: &Store,
    filter: &str,
    headers_only: bool,
    each: impl FnMut(Last),
) -> Result<()> {
    let op = format!("scan {}/{filter}", store.name);
    let prefix = nats.topo.kv_subject(&store.name, "");
    let inbox = nats.client.new_inbox();
    let name = format!("scan_{}", inbox.rsplit('.').next().unwrap_or_default());
    let consumer = store
        .stream
        .create_consumer(pull::Config {
            name: Some(name.clone()),
            filter_subject: format!("{prefix}{filter}"),
            headers_only,
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            inactive_threshold: SCAN_INACTIVE,
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::op(&op, e))?;
    let read = read_last(&consumer, &prefix, headers_only, &op, each).await;
    // Best effort: should the deletion fail, the inactivity threshold ends it.
    let _ = tokio::time::timeout(SCAN_DELETE_WAIT, store.stream.delete_consumer(&name)).await;
    read
}

/// What a scan's consumer delivers, until it has nothing pending.
async fn read_last(
    consumer: &PullConsumer,
    prefix: &str,
    headers_only: bool,
    op: &str,
    mut each: impl FnMut(Last),
) -> Result<()> {
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(SCAN_BATCH)
        .messages()
        .await
        .map_err(|e| NatsError::op(op, e))?;
    loop {
        let next = tokio::time::timeout(SCAN_WAIT, messages.next())
            .await
            .map_err(|_| NatsError::Config(format!("{op} got nothing for {SCAN_WAIT:?}")))?;
        let Some(msg) = next else { break };
        let msg = msg.map_err(|e| NatsError::op(op, e))?;
        let info = msg.info().map_err(|e| NatsError::op(op, e))?;
        let (revision, pending) = (info.stream_sequence, info.pending);
        let written = antares_schemas::Timestamp::from_datetime(&info.published);
        let deleted = msg
            .headers
            .as_ref()
            .is_some_and(|h| h.get("KV-Operation").is_some() || is_marker(Some(h)));
        if let Some(key) = msg.subject.strip_prefix(prefix) {
            each(Last {
                key: key.to_string(),
                value: (!deleted).then(|| {
                    if headers_only {
                        Bytes::new()
                    } else {
                        msg.payload.clone()
                    }
                }),
                revision,
                written,
            });
        }
        if pending == 0 {
            break;
        }
    }
    Ok(())
}

fn is_marker(h: Option<&HeaderMap>) -> bool {
    h.and_then(|h| h.get("Nats-Marker-Reason")).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_headers_are_whole_seconds() {
        assert_eq!(ttl_header(Duration::from_millis(500)), "1s");
        assert_eq!(ttl_header(Duration::from_secs(3)), "3s");
        assert_eq!(ttl_header(Duration::from_millis(3001)), "4s");
        assert_eq!(ttl_header(Duration::ZERO), "1s");
    }
}
