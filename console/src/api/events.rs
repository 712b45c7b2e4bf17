//! `GET /api/events`: the lifecycle events of the contract (§4), live, as Server-Sent
//! Events; each event's data is the event's JSON as published on `<ns>.event.<app>.<job>`.
//!
//! Read from core NATS: a caller limited to some apps subscribes to those apps' subjects
//! only, so other apps' events never reach this console for them. Keep-alive comments
//! keep proxies from closing an idle stream.

use std::convert::Infallible;

use antares_nats::NatsError;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::select_all;

use super::logs::KEEP_ALIVE;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::Shared;

/// The live event stream.
pub async fn events(State(state): State<Shared>, caller: Caller) -> Result<Response, ApiError> {
    let guard = state.open_stream()?;
    let topo = &state.nats.topo;
    let subjects: Vec<String> = match caller.apps() {
        None => vec![topo.events_filter()],
        Some(apps) => apps.iter().map(|a| topo.event_subject(a, "*")).collect(),
    };
    let mut subs = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let sub = state
            .nats
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| NatsError::op(format!("subscribe to {subject}"), e))?;
        subs.push(sub);
    }
    let principal = caller.principal;
    let shutdown = state.shutdown.clone();
    let body = select_all(subs)
        .filter_map(move |msg| {
            // Re-encoded, not passed through: one line of JSON whatever the publisher sent.
            let event = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                .ok()
                .filter(|v| {
                    v.get("app")
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|app| principal.sees_app(app))
                })
                .map(|v| Event::default().data(v.to_string()));
            std::future::ready(event.map(Ok::<_, Infallible>))
        })
        .take_until(async move { shutdown.cancelled().await })
        .map(move |e| {
            let _held = &guard;
            e
        });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
