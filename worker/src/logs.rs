//! Shipping shard log lines to NATS in order without blocking the jobs that write them.
//!
//! Every line of every shard goes through one bounded channel to one task that publishes
//! it (core NATS; the logs stream captures it). One publisher keeps the lines of a shard
//! in the order they were written. `JobContext::log` never waits: when the channel is
//! full the line is dropped and a warning is logged once per shard. Script output waits
//! for room instead, which slows a chatty script down rather than losing its lines.

use std::time::Duration;

use antares_nats::codec;
use antares_schemas::messages::LogLine;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Lines waiting to be published before `JobContext::log` starts dropping them.
const CAPACITY: usize = 16_384;

enum LogMsg {
    Line { subject: String, line: LogLine },
    Flush(oneshot::Sender<()>),
}

/// Where shard log lines go.
#[derive(Clone, Debug)]
pub(crate) struct LogSink {
    tx: Option<mpsc::Sender<LogMsg>>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line { subject, .. } => write!(f, "Line({subject})"),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LogSink {
    /// A sink that throws lines away (contexts made outside a worker).
    pub(crate) fn discard() -> Self {
        Self { tx: None }
    }

    /// Starts the publisher task on a connection.
    pub(crate) fn start(client: async_nats::Client) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<LogMsg>(CAPACITY);
        let task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    LogMsg::Line { subject, line } => {
                        let bytes = match codec::encode("log line", &line) {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::warn!("dropping a log line: {e}");
                                continue;
                            }
                        };
                        if let Err(e) = client.publish(subject, bytes).await {
                            tracing::warn!("cannot publish a log line: {e}");
                        }
                    }
                    LogMsg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        (Self { tx: Some(tx) }, task)
    }

    /// Queues a line without waiting; `false` when it had to be dropped.
    pub(crate) fn try_send(&self, subject: String, line: LogLine) -> bool {
        match &self.tx {
            None => true,
            Some(tx) => tx.try_send(LogMsg::Line { subject, line }).is_ok(),
        }
    }

    /// Queues a line, waiting for room.
    pub(crate) async fn send(&self, subject: String, line: LogLine) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(LogMsg::Line { subject, line }).await;
        }
    }

    /// Waits (at most `timeout`) until every line queued so far was handed to the
    /// connection; flushing the connection afterwards puts them on the wire.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        let flushed = async {
            if tx.send(LogMsg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        if tokio::time::timeout(timeout, flushed).await.is_err() {
            tracing::warn!("log lines still queued after {timeout:?}; some may be lost");
        }
    }
}
