//! Live lifecycle events (contract §4) from `GET /api/events`, shared by every page.
//!
//! One stream per browser tab, opened once logged in. Pages do not refetch per event:
//! [`on_event`] runs their refresh at most once per delay, however many events arrive.

use std::time::Duration;

use antares_schemas::messages::Event;
use leptos::prelude::*;

use crate::sse::{self, Sse};

/// The latest event (numbered, so two equal events still count twice), and whether the
/// stream is connected.
#[derive(Clone, Copy, Debug)]
pub struct Events {
    /// The latest event and its number.
    pub last: RwSignal<Option<(u64, Event)>>,
    /// Whether the stream is open.
    pub live: RwSignal<bool>,
}

/// Event names the server may use besides the unnamed `message`.
const NAMES: [&str; 9] = [
    "message",
    "instance_started",
    "shard_started",
    "shard_finished",
    "instance_finished",
    "trigger_rejected",
    "misfired",
    "no_worker",
    "alarm",
];

/// Opens the stream and provides it to the pages below.
pub fn provide_events() -> Events {
    let events = Events {
        last: RwSignal::new(None),
        live: RwSignal::new(false),
    };
    if let Ok(mut stream) = Sse::open("/api/events") {
        stream.on("open", move |_| events.live.set(true));
        stream.on("error", move |_| events.live.set(false));
        let seq = StoredValue::new(0u64);
        for name in NAMES {
            stream.on(name, move |m| {
                if let Ok(event) = serde_json::from_str::<Event>(&sse::data(&m)) {
                    seq.update_value(|n| *n += 1);
                    events.last.set(Some((seq.get_value(), event)));
                }
            });
        }
        // Kept until the app's owner goes: then the stream closes.
        StoredValue::new_local(stream);
    }
    provide_context(events);
    events
}

/// Runs `action` after `delay` when events matching `filter` arrived, at most once per
/// `delay`.
pub fn on_event(
    filter: impl Fn(&Event) -> bool + 'static,
    delay: Duration,
    action: impl Fn() + Clone + 'static,
) {
    let Some(events) = use_context::<Events>() else {
        return;
    };
    let seen = StoredValue::new(
        events
            .last
            .with_untracked(|l| l.as_ref().map_or(0, |(n, _)| *n)),
    );
    let pending = StoredValue::new(false);
    Effect::new(move |_| {
        let hit = events.last.with(|last| match last {
            Some((n, event)) if *n > seen.get_value() => {
                seen.set_value(*n);
                filter(event)
            }
            _ => false,
        });
        if hit && !pending.get_value() {
            pending.set_value(true);
            let action = action.clone();
            set_timeout(
                move || {
                    pending.try_set_value(false);
                    action();
                },
                delay,
            );
        }
    });
}
