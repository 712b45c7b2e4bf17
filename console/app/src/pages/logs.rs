//! Live rolling logs of an instance (`GET /api/instances/{id}/logs?follow=1[&shard=N]`):
//! every line as it is written, until the stream's `end` event.
//!
//! Lines go straight into the page (no re-render of the whole list per line), and only
//! the newest [`MAX_LINES`] are kept. A stream that reconnects replays the log from its
//! start, so the lines shown are cleared when it opens again.

use antares_schemas::Timestamp;
use leptos::html;
use leptos::prelude::*;
use serde_json::Value;

use crate::api;
use crate::format;
use crate::sse::{self, Sse};

/// Lines kept on the page.
const MAX_LINES: u32 = 5000;

/// Where the stream is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Following,
    Ended(String),
    Interrupted,
}

/// One line as the stream sends it: JSON with the shard, time and text (other fields
/// ignored), or plain text.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    shard: Option<u64>,
    at: Option<Timestamp>,
    text: String,
    stderr: bool,
}

fn parse_line(data: &str) -> Line {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(o)) => Line {
            shard: o
                .get("shard")
                .or_else(|| o.get("item"))
                .and_then(Value::as_u64),
            at: o
                .get("at")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok()),
            text: o
                .get("line")
                .and_then(Value::as_str)
                .map_or_else(|| data.to_string(), str::to_string),
            stderr: o.get("stream").and_then(Value::as_str) == Some("stderr"),
        },
        _ => Line {
            shard: None,
            at: None,
            text: data.to_string(),
            stderr: false,
        },
    }
}

/// The status an `end` event names (`{"status": "success"}` or plain text).
fn end_status(data: &str) -> String {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(o)) => o
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("ended")
            .to_string(),
        _ if data.trim().is_empty() => "ended".to_string(),
        _ => data.trim().to_string(),
    }
}

/// The logs panel of instance `id` with `shards` shard items; `finished` tells whether
/// the instance has ended, `on_end` is told when the stream ends.
#[component]
pub fn Logs(
    id: String,
    #[prop(into)] shards: Signal<u32>,
    #[prop(into)] finished: Signal<bool>,
    on_end: Callback<()>,
) -> impl IntoView {
    let shard = RwSignal::new(String::new());
    let state = RwSignal::new(State::Connecting);
    let count = RwSignal::new(0u32);
    let dropped = RwSignal::new(0u32);
    let box_ref = NodeRef::<html::Div>::new();
    let stream = StoredValue::new_local(None::<Sse>);

    let clear = move || {
        if let Some(el) = box_ref.get_untracked() {
            el.set_inner_html("");
        }
        count.set(0);
        dropped.set(0);
    };
    let append = move |line: Line| {
        let Some(el) = box_ref.get_untracked() else {
            return;
        };
        let at_bottom = el.scroll_top() + el.client_height() + 24 >= el.scroll_height();
        let document = document();
        let Ok(row) = document.create_element("div") else {
            return;
        };
        row.set_class_name(if line.stderr {
            "log-line stderr"
        } else {
            "log-line"
        });
        let mut prefix = String::new();
        if let Some(at) = line.at {
            prefix.push_str(format::time(at).get(11..).unwrap_or_default());
            prefix.push(' ');
        }
        if let Some(s) = line.shard {
            prefix.push_str(&format!("[{s}] "));
        }
        if let Ok(meta) = document.create_element("span") {
            meta.set_class_name("meta");
            meta.set_text_content(Some(&prefix));
            let _ = row.append_child(&meta);
        }
        let _ = row.append_child(&document.create_text_node(&line.text));
        let _ = el.append_child(&row);
        if count.get_untracked() >= MAX_LINES {
            if let Some(first) = el.first_element_child() {
                first.remove();
            }
            dropped.update(|d| *d += 1);
        } else {
            count.update(|c| *c += 1);
        }
        if at_bottom {
            el.set_scroll_top(el.scroll_height());
        }
    };

    let open = move |id: String, shard: String| {
        stream.set_value(None);
        clear();
        state.set(State::Connecting);
        let url = api::with_query(
            &format!("/api/instances/{}/logs", api::enc(&id)),
            &[("follow", "1"), ("shard", &shard)],
        );
        let mut sse = match Sse::open(&url) {
            Ok(s) => s,
            Err(_) => {
                state.set(State::Interrupted);
                return;
            }
        };
        sse.on("open", move |_| {
            // A reopened stream starts again from the first line.
            clear();
            state.set(State::Following);
        });
        sse.on("message", move |m| append(parse_line(&sse::data(&m))));
        sse.on("end", move |m| {
            state.set(State::Ended(end_status(&sse::data(&m))));
            stream.with_value(|s| s.as_ref().map(Sse::close));
            on_end.run(());
        });
        sse.on("error", move |m| {
            // The server's own `error` event says what failed; the stream's has no data.
            let said = sse::data(&m);
            if !said.is_empty() {
                let text = serde_json::from_str::<Value>(&said)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or(said);
                append(Line {
                    shard: None,
                    at: None,
                    text: format!("(log stream error: {text})"),
                    stderr: true,
                });
                return;
            }
            let closed = stream.with_value(|s| s.as_ref().is_none_or(Sse::closed));
            if matches!(state.get_untracked(), State::Ended(_)) {
                return;
            }
            if closed {
                state.set(State::Interrupted);
            } else if finished.get_untracked() {
                // The instance has ended and the stream dropped: nothing more will come.
                stream.with_value(|s| s.as_ref().map(Sse::close));
                state.set(State::Ended("ended".into()));
            }
        });
        stream.set_value(Some(sse));
    };

    {
        let id = id.clone();
        Effect::new(move |_| open(id.clone(), shard.get()));
    }

    let status_line = move || match state.get() {
        State::Connecting => "Connecting…".to_string(),
        State::Following => "Following: new lines appear as they are written.".to_string(),
        State::Ended(s) => format!("The run has ended ({s}): these are all its lines."),
        State::Interrupted => "The log stream was interrupted.".to_string(),
    };
    let reconnect = {
        let id = id.clone();
        move |_| open(id.clone(), shard.get_untracked())
    };
    view! {
        <div class="logs-head">
            <label>
                "Shard "
                <select data-test="log-shard" on:change=move |ev| shard.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    {move || (0..shards.get().min(1000)).map(|i| view! { <option value=i.to_string()>{i.to_string()}</option> }).collect_view()}
                </select>
            </label>
            <span class="muted" data-test="log-state" data-state=move || match state.get() {
                State::Connecting => "connecting",
                State::Following => "following",
                State::Ended(_) => "ended",
                State::Interrupted => "interrupted",
            }>{status_line}</span>
            <Show when=move || state.get() == State::Interrupted>
                <button type="button" class="btn quiet" on:click=reconnect.clone()>"Reconnect"</button>
            </Show>
        </div>
        {move || (dropped.get() > 0).then(|| view! {
            <p class="muted small">{format!("{} older lines are not shown (the newest {MAX_LINES} are).", dropped.get())}</p>
        })}
        <div class="log-box" data-test="log-lines" node_ref=box_ref></div>
        <Show when=move || count.get() == 0 && dropped.get() == 0>
            <p class="muted small" data-test="no-log-lines">
                {move || if matches!(state.get(), State::Ended(_)) { "This run wrote no log lines." } else { "No lines yet." }}
            </p>
        </Show>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_from_json_or_taken_as_text() {
        let l = parse_line(
            r#"{"shard": 2, "at": "2026-12-01T02:00:00.000Z", "line": "hello", "stream": "stderr"}"#,
        );
        assert_eq!(l.shard, Some(2));
        assert!(l.at.is_some());
        assert_eq!(l.text, "hello");
        assert!(l.stderr);
        let l = parse_line(r#"{"item": 1, "line": "x"}"#);
        assert_eq!(l.shard, Some(1));
        assert_eq!(parse_line("plain text").text, "plain text");
    }

    #[test]
    fn the_end_event_names_the_status() {
        assert_eq!(end_status(r#"{"status": "success"}"#), "success");
        assert_eq!(end_status("failed"), "failed");
        assert_eq!(end_status(""), "ended");
    }
}
