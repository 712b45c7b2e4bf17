//! The audit log: one [`AuditEntry`] per change made through [`Admin`], on the audit
//! stream (subject per app, `-` for the console's own users and tokens).
//!
//! A change is written first and recorded after, so a failure to record never undoes
//! or blocks a change; it is reported as an error that says the change was made but not
//! recorded. Several changes at once (a bulk apply) are published back to back and their
//! acknowledgements awaited together.
//!
//! Reading pages backwards: the stream only reads forwards, so a page is read in windows
//! of sequences going back from `before` (or the end). A probe (an ordered consumer from
//! a window's first sequence) tells how many matching entries lie from there to the end;
//! minus those after the window, that is how many are in it. Empty windows are skipped
//! unread and the next one is twice as wide; a window holding too many to read is halved.
//! So a page reads at most `limit` entries plus one window, whatever the stream's length,
//! and gives up after [`MAX_PROBES`] windows, returning what it found.

use std::time::Duration;

use antares_nats::{NatsError, codec, now};
use antares_schemas::audit::{AuditEntry, cap_snapshot};
use antares_schemas::limits::MAX_LIST_LIMIT;
use antares_schemas::names::check_name;
use antares_schemas::topology::HEADER_MSG_ID;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::Value;

use super::Admin;
use crate::error::SchedulerError;

/// Windows one page looks at, at most.
const MAX_PROBES: usize = 48;
/// Most entries read from one window (a wider window with more is halved first).
const MAX_WINDOW_READ: u64 = 2 * MAX_LIST_LIMIT as u64;
/// Longest wait for the next entry of a window being read.
const READ_WAIT: Duration = Duration::from_secs(10);
/// Longest wait for the deletion of a probe's consumer.
const END_WAIT: Duration = Duration::from_secs(2);
/// Entries whose acknowledgements are awaited at once (the client's limit on
/// acknowledgements in flight is higher).
const PUBLISH_WINDOW: usize = antares_nats::kv::MAX_PIPELINE;
/// How long entries the audit stream does not take yet are published again: longer
/// than a stream leader election on a cluster (about 6 s measured).
const RECORD_PATIENCE: Duration = Duration::from_secs(20);

/// One change to record.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// `<thing>.<verb>`.
    pub action: String,
    /// What was changed.
    pub target: String,
    /// Its app.
    pub app: Option<String>,
    /// Before the change.
    pub before: Option<Value>,
    /// After the change.
    pub after: Option<Value>,
}

impl Change {
    /// A change of something of `app`.
    pub fn of_app(action: &str, target: impl Into<String>, app: &str) -> Self {
        Self {
            action: action.to_string(),
            target: target.into(),
            app: Some(app.to_string()),
            before: None,
            after: None,
        }
    }

    /// With the thing as it was.
    pub fn before(mut self, value: impl serde::Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    /// With the thing as it is now.
    pub fn after(mut self, value: impl serde::Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

impl Admin {
    /// Records one change made by [`Admin::actor`] (the console records its users and
    /// tokens through this, with `app` `None`). Snapshots bigger than
    /// [`antares_schemas::limits::MAX_AUDIT_SNAPSHOT_BYTES`] are replaced by a marker
    /// saying they were cut.
    pub async fn record(
        &self,
        action: &str,
        target: &str,
        app: Option<&str>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<(), SchedulerError> {
        if action.is_empty() || target.is_empty() {
            return Err(SchedulerError::Invalid(
                "an audit entry needs an action and a target".to_string(),
            ));
        }
        if let Some(app) = app {
            check_name("app", app)?;
        }
        self.record_all(vec![Change {
            action: action.to_string(),
            target: target.to_string(),
            app: app.map(str::to_string),
            before,
            after,
        }])
        .await
    }

    /// Records changes already made: published back to back with up to
    /// [`PUBLISH_WINDOW`] acknowledgements awaited at once (a sliding window). An entry the stream could not take (its leader being elected on a
    /// cluster, a timeout) is published again with the same message id, so it is
    /// stored once, for up to [`RECORD_PATIENCE`].
    pub(crate) async fn record_all(&self, changes: Vec<Change>) -> Result<(), SchedulerError> {
        let at = now();
        // Unique per call: the message ids only deduplicate this call's own retries.
        let batch = format!("{:016x}", rand::random::<u64>());
        let mut pending: Vec<(usize, &Change)> = changes.iter().enumerate().collect();
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let mut failed = Vec::new();
            let mut last_error = None;
            let mut acks = FuturesOrdered::new();
            let _room = self.nats.ack_room(pending.len().min(PUBLISH_WINDOW)).await;
            for &(n, change) in &pending {
                if acks.len() >= PUBLISH_WINDOW
                    && let Some((Err(e), n, change)) = acks.next().await
                {
                    failed.push((n, change));
                    last_error = Some(e);
                }
                let entry = AuditEntry {
                    id: 0,
                    at,
                    actor: self.actor.clone(),
                    action: change.action.clone(),
                    target: change.target.clone(),
                    app: change.app.clone(),
                    before: change.before.clone().map(cap_snapshot),
                    after: change.after.clone().map(cap_snapshot),
                };
                let body = codec::encode_json("audit entry", &entry)
                    .map_err(|e| not_recorded(change, e))?;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(HEADER_MSG_ID, format!("audit.{batch}.{n}").as_str());
                let subject = self.nats.topo.audit_subject(change.app.as_deref());
                let sent = self
                    .nats
                    .js
                    .publish_with_headers(subject, headers, body)
                    .await;
                acks.push_back(async move {
                    let result = match sent {
                        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    (result, n, change)
                });
            }
            while let Some((result, n, change)) = acks.next().await {
                if let Err(e) = result {
                    failed.push((n, change));
                    last_error = Some(e);
                }
            }
            let Some(error) = last_error else {
                return Ok(());
            };
            if started.elapsed() + pause > RECORD_PATIENCE {
                let (_, change) = failed[0];
                return Err(not_recorded(change, error));
            }
            tracing::warn!(
                entries = failed.len(),
                error = %error,
                "the audit log did not take {} entries yet; trying again in {pause:?}",
                failed.len()
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            pending = failed;
        }
    }

    /// Audit entries, newest first: up to `limit` (at most
    /// [`MAX_LIST_LIMIT`]) with ids below `before`, of the given apps only when `apps`
    /// is given. Fewer than `limit` when the log has no more, or when the windows one
    /// page may look at held no more (the log is read in a bounded number of windows,
    /// never whole); page on with the last entry's id as `before`.
    pub async fn audit_log(
        &self,
        limit: usize,
        before: Option<u64>,
        apps: Option<&[String]>,
    ) -> Result<Vec<AuditEntry>, SchedulerError> {
        let limit = limit.min(MAX_LIST_LIMIT);
        let topo = &self.nats.topo;
        let filters: Vec<String> = match apps {
            None => topo.audit_stream_subjects(),
            Some(apps) => {
                for app in apps {
                    check_name("app", app)?;
                }
                apps.iter().map(|a| topo.audit_subject(Some(a))).collect()
            }
        };
        if limit == 0 || filters.is_empty() {
            return Ok(Vec::new());
        }
        let name = topo.audit_stream();
        let mut stream = self.nats.js.get_stream(&name).await.map_err(|e| {
            NatsError::op(format!("open stream {name} (run `antares provision`)"), e)
        })?;
        let state = stream
            .info()
            .await
            .map_err(|e| NatsError::op(format!("read stream {name}"), e))?
            .state
            .clone();
        let first = state.first_sequence.max(1);
        let end = state.last_sequence + 1;
        let reader = Reader {
            client: &self.nats.client,
            stream: &stream,
            filters: &filters,
        };

        // `hi`: the window's end (excluded); `after_hi`: matching entries from there on.
        let mut hi = before.map_or(end, |b| b.min(end));
        let mut after_hi = if hi >= end {
            0
        } else {
            let (consumer, pending) = reader.probe(hi).await?;
            reader.end(consumer.cached_info().name.as_str()).await;
            pending
        };
        let mut size = limit as u64;
        let mut out: Vec<AuditEntry> = Vec::with_capacity(limit);
        for _ in 0..MAX_PROBES {
            if out.len() >= limit || hi <= first {
                break;
            }
            let start = hi.saturating_sub(size).max(first);
            let (consumer, pending) = reader.probe(start).await?;
            let name = consumer.cached_info().name.clone();
            let in_window = pending.saturating_sub(after_hi);
            if in_window > MAX_WINDOW_READ && hi - start > 1 {
                reader.end(&name).await;
                size = (hi - start) / 2;
                continue;
            }
            if in_window == 0 {
                reader.end(&name).await;
            } else {
                let found = reader.read(consumer, hi).await;
                reader.end(&name).await;
                let mut found = found?;
                found.reverse();
                let needed = limit - out.len();
                out.extend(found.into_iter().take(needed));
            }
            if in_window.saturating_mul(2) < size {
                size = size.saturating_mul(2);
            }
            hi = start;
            after_hi = pending;
        }
        Ok(out)
    }
}

/// The error for a change made but not recorded.
fn not_recorded(change: &Change, e: impl Into<async_nats::Error>) -> SchedulerError {
    SchedulerError::Nats(NatsError::op(
        format!(
            "the change was made, but recording `{}` of {} in the audit log failed",
            change.action, change.target
        ),
        e,
    ))
}

/// Reads windows of the audit stream.
struct Reader<'a> {
    client: &'a async_nats::Client,
    stream: &'a Stream,
    filters: &'a [String],
}

type Ordered = async_nats::jetstream::consumer::Consumer<push::OrderedConfig>;

impl Reader<'_> {
    /// An ordered consumer of the matching entries from `start` on, and how many there
    /// are.
    async fn probe(&self, start: u64) -> Result<(Ordered, u64), SchedulerError> {
        let (filter_subject, filter_subjects) = match self.filters {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let consumer = self
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject,
                filter_subjects,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::op("read the audit log", e))?;
        let pending = consumer.cached_info().num_pending;
        Ok((consumer, pending))
    }

    /// Deletes a probe's consumer once done with it: a listing makes several, and left
    /// to expire (30 s after their last use) they would pile up under steady requests.
    /// Best effort, bounded: should it fail, expiry still ends the consumer.
    async fn end(&self, name: &str) {
        let _ = tokio::time::timeout(END_WAIT, self.stream.delete_consumer(name)).await;
    }

    /// The entries a probe's consumer delivers before sequence `hi`, oldest first.
    async fn read(&self, consumer: Ordered, hi: u64) -> Result<Vec<AuditEntry>, SchedulerError> {
        let op = "read the audit log";
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| NatsError::op(op, e))?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(READ_WAIT, messages.next())
                .await
                .map_err(|_| {
                    SchedulerError::Timeout(format!(
                        "the audit log sent nothing for {READ_WAIT:?} while being read"
                    ))
                })?;
            let Some(msg) = next else { break };
            let msg = msg.map_err(|e| NatsError::op(op, e))?;
            let info = msg.info().map_err(|e| NatsError::op(op, e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq >= hi {
                break;
            }
            match serde_json::from_slice::<AuditEntry>(&msg.payload) {
                Ok(mut entry) => {
                    entry.id = seq;
                    out.push(entry);
                }
                Err(e) => {
                    tracing::warn!(seq, error = %e, "unreadable audit entry skipped")
                }
            }
            if pending == 0 || out.len() as u64 > 2 * MAX_WINDOW_READ {
                break;
            }
        }
        Ok(out)
    }
}
