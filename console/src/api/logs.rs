//! `GET /api/instances/{id}/logs?shard=&follow=1`: an instance's log lines, as text, or
//! with `follow=1` as Server-Sent Events until the instance ends.
//!
//! Each event carries one line as JSON (`{"shard", "at", "line", "attempt", "stream",
//! "worker"}`); when the instance has ended and its last lines are sent, a final event
//! named `end` carries its status (`{"status": "success"}`) and the stream closes, so a
//! client never has to guess whether more is coming.

use std::convert::Infallible;
use std::time::Duration;

use antares_schemas::messages::{LogLine, LogStream};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};

use super::instances::{instance_id, visible};
use super::number;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::Shared;

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Query of the logs endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    shard: Option<String>,
    follow: Option<String>,
}

/// One line as an event.
#[derive(Debug, Serialize)]
struct LineEvent<'a> {
    shard: u32,
    at: antares_schemas::Timestamp,
    line: &'a str,
    attempt: u32,
    stream: &'static str,
    worker: &'a str,
}

/// The instance's lines: text, or live events with `follow=1`.
pub async fn logs(
    State(state): State<Shared>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Response, ApiError> {
    let id = instance_id(&id)?;
    let shard = match p.shard.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(number::<u32>("shard", s)?),
    };
    let follow = match p.follow.as_deref() {
        None | Some("" | "0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`follow` is `{other}`: use 1 (stream until the instance ends) or 0"
            )));
        }
    };
    visible(&caller, &id, true).await?;
    if !follow {
        let lines = caller.admin.logs(&id, shard, false).await?;
        let body = lines.map(|r| r.map(|l| Bytes::from(text_line(&l))));
        let mut res = Body::from_stream(body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(res);
    }
    let guard = state.open_stream()?;
    let lines = caller.admin.logs(&id, shard, true).await?;
    let admin = caller.admin.clone();
    let events = lines.map(|r| {
        Ok::<_, Infallible>(match r {
            Ok(l) => line_event(&l),
            Err(e) => Event::default()
                .event("error")
                .json_data(serde_json::json!({"error": e.to_string()}))
                .unwrap_or_default(),
        })
    });
    let end = stream::once(async move {
        let status = match admin.get_instance(&id).await {
            Ok(i) => i.summary.status.as_str().to_string(),
            Err(e) => {
                tracing::debug!(error = %e, "status at the end of a log stream not read");
                "unknown".to_string()
            }
        };
        Ok(Event::default()
            .event("end")
            .json_data(serde_json::json!({"status": status}))
            .unwrap_or_default())
    });
    let shutdown = state.shutdown.clone();
    let body = events
        .chain(end)
        .take_until(async move { shutdown.cancelled().await })
        .map(move |e| {
            let _held = &guard;
            e
        });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn line_event(l: &LogLine) -> Event {
    let e = LineEvent {
        shard: l.item,
        at: l.at,
        line: &l.line,
        attempt: l.attempt,
        stream: stream_name(l.stream),
        worker: &l.worker,
    };
    Event::default().json_data(e).unwrap_or_default()
}

fn stream_name(s: LogStream) -> &'static str {
    match s {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Log => "log",
    }
}

/// A line as `antares instance logs` prints it.
fn text_line(l: &LogLine) -> String {
    let mut tag = format!("shard {}", l.item);
    if l.attempt > 1 {
        tag.push_str(&format!(", attempt {}", l.attempt));
    }
    if l.stream == LogStream::Stderr {
        tag.push_str(", stderr");
    }
    format!("{} [{tag}] {}\n", l.at, l.line)
}
