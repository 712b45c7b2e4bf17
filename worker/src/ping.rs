//! Answering pings: the scheduler asks a worker whether it answers before it sends it
//! the shards of a `failover` job (a core NATS request on `<ns>.ping.<app>.<worker>`;
//! the reply is empty). A worker that answers is connected and its loop is running.

use antares_nats::{Nats, NatsError, async_nats};
use futures::StreamExt;

/// Subscribes to this worker's ping subject.
pub(crate) async fn subscribe(
    nats: &Nats,
    app: &str,
    id: &str,
) -> Result<async_nats::Subscriber, NatsError> {
    let subject = nats.topo.worker_ping_subject(app, id);
    nats.client
        .subscribe(subject)
        .await
        .map_err(|e| NatsError::op("subscribe to pings", e))
}

/// Answers every ping, for as long as it is polled.
pub(crate) async fn answer(nats: &Nats, mut pings: async_nats::Subscriber) {
    while let Some(ping) = pings.next().await {
        if let Some(reply) = ping.reply
            && let Err(e) = nats.client.publish(reply, bytes::Bytes::new()).await
        {
            tracing::debug!("ping not answered: {e}");
        }
    }
    // The subscription ended with the connection: nothing to answer any more.
    std::future::pending::<()>().await;
}
