//! Lifecycle events on `<ns>.event.<app>.<job>` (JSON, core NATS).
//!
//! Events are for integrations and live views; they are not the record (history is).
//! Publishing one never blocks or fails the scheduler's work: an event that cannot be
//! sent is logged and dropped.

use antares_nats::{Nats, codec};
use antares_schemas::messages::Event;

/// Publishes an event.
pub async fn emit(nats: &Nats, event: &Event) {
    let subject = nats.topo.event_subject(&event.app, &event.job);
    match codec::encode_json("event", event) {
        Ok(body) => {
            if let Err(e) = nats.client.publish(subject, body).await {
                tracing::warn!(error = %e, "event not published");
            }
        }
        Err(e) => tracing::warn!(error = %e, "event not encoded"),
    }
}
