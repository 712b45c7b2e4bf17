//! Storing finished reports, several in one message when several are ready.
//!
//! A busy worker finishes many shards at once. Each finished report must be stored in
//! the results stream before its item is acked, and every stored message costs the
//! server a write, an acknowledgement, a delivery to the scheduler, its ack and a
//! delete. So the reports that are ready together go out together: one task takes
//! whatever has queued up while the previous messages were being stored (never waiting
//! for more), groups it by instance, and publishes one message per instance, with
//! header `Antares-Reports` giving how many reports its body (a MessagePack array)
//! holds; a lone report goes out alone, as always. At low load nothing waits; at high
//! load messages grow by themselves.
//!
//! Each report's shard learns whether its message was stored; if not, it tries alone
//! (its own message id, with in-progress acks meanwhile, see `shard`). A batch whose
//! acknowledgement was lost but which was stored is then stored twice: the scheduler
//! ignores a report it already applied.

use std::collections::HashMap;
use std::sync::Arc;

use antares_nats::{Nats, async_nats, codec};
use antares_schemas::InstanceId;
use antares_schemas::messages::ShardReport;
use antares_schemas::topology::{HEADER_MSG_ID, HEADER_REPORTS};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most reports in one message (each is at most about 1.3 KiB, its error capped: a
/// message stays well under NATS's 1 MiB payload limit).
const MAX_REPORTS: usize = 256;
/// Most messages of reports being stored at once.
const IN_FLIGHT: usize = 8;

/// One finished report to store, and who waits for the outcome.
struct Pending {
    app: String,
    job: String,
    report: ShardReport,
    /// Its own message id, used when it goes out alone.
    msg_id: String,
    done: oneshot::Sender<Result<(), String>>,
}

/// The queue of finished reports of one worker.
#[derive(Debug, Clone)]
pub(crate) struct Reports {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Reports {
    /// Starts the task that stores reports (it ends when every handle is dropped).
    pub(crate) fn start(nats: Nats) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(store_all(nats, rx));
        Self { tx }
    }

    /// Stores a finished report (with others ready at the same time); `Err` says why
    /// it was not stored.
    pub(crate) async fn store(
        &self,
        app: &str,
        job: &str,
        msg_id: String,
        report: ShardReport,
    ) -> Result<(), String> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            app: app.to_string(),
            job: job.to_string(),
            report,
            msg_id,
            done,
        };
        self.tx
            .send(pending)
            .map_err(|_| "the worker is stopping".to_string())?;
        outcome
            .await
            .unwrap_or_else(|_| Err("the report was not sent".to_string()))
    }
}

async fn store_all(nats: Nats, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let room = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ready = Vec::new();
    loop {
        // Room first: what queues meanwhile goes out together.
        let Ok(permit) = room.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut ready, MAX_REPORTS).await == 0 {
            return;
        }
        let nats = nats.clone();
        let batch = std::mem::take(&mut ready);
        tokio::spawn(async move {
            publish_groups(&nats, batch).await;
            drop(permit);
        });
    }
}

/// Publishes one message per instance, all before awaiting any acknowledgement.
async fn publish_groups(nats: &Nats, batch: Vec<Pending>) {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut index: HashMap<InstanceId, usize> = HashMap::new();
    for p in batch {
        let i = *index.entry(p.report.instance).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        if let Some(g) = groups.get_mut(i) {
            g.push(p);
        }
    }
    // Room for every acknowledgement this window awaits, taken at once (see
    // `Nats::ack_room`): windows running beside each other never wait on each other.
    let _room = nats.ack_room(groups.len()).await;
    let mut acks = Vec::with_capacity(groups.len());
    for group in groups {
        let sent = send(nats, &group).await;
        acks.push((group, sent));
    }
    for (group, sent) in acks {
        let outcome = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        for p in group {
            let _ = p.done.send(outcome.clone());
        }
    }
}

/// Sends one message of reports (one instance's); its acknowledgement is awaited later.
async fn send(
    nats: &Nats,
    group: &[Pending],
) -> Result<async_nats::jetstream::context::PublishAckFuture, String> {
    let Some(first) = group.first() else {
        return Err("no report".to_string());
    };
    let r = &first.report;
    let subject = nats
        .topo
        .result_subject(&first.app, &first.job, &r.instance, r.item);
    let mut headers = async_nats::HeaderMap::new();
    let body = if group.len() == 1 {
        headers.insert(HEADER_MSG_ID, first.msg_id.as_str());
        codec::encode("shard report", r)
    } else {
        let n = group.len().to_string();
        headers.insert(HEADER_MSG_ID, format!("{}.{n}", first.msg_id).as_str());
        headers.insert(HEADER_REPORTS, n.as_str());
        let reports: Vec<&ShardReport> = group.iter().map(|p| &p.report).collect();
        codec::encode("shard reports", &reports)
    }
    .map_err(|e| e.to_string())?;
    nats.js
        .publish_with_headers(subject, headers, body)
        .await
        .map_err(|e| e.to_string())
}
