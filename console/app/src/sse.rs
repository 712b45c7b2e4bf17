//! Server-Sent Events from the console (`/api/events`, followed logs).
//!
//! A thin owner of a browser `EventSource` and its listeners: it closes the stream when
//! dropped, so a page keeps it in a `StoredValue` and leaving the page ends the stream.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

type Listener = Closure<dyn FnMut(MessageEvent)>;

/// An open event stream with its listeners.
pub struct Sse {
    source: EventSource,
    listeners: Vec<(String, Listener)>,
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("url", &self.source.url())
            .finish()
    }
}

impl Sse {
    /// Opens a stream (same origin, with cookies).
    pub fn open(url: &str) -> Result<Self, String> {
        EventSource::new(url)
            .map(|source| Self {
                source,
                listeners: Vec::new(),
            })
            .map_err(|e| format!("cannot open {url}: {e:?}"))
    }

    /// Calls `f` with the data of every event named `name` (`message` for unnamed ones;
    /// `open` and `error` are the stream's own).
    pub fn on(&mut self, name: &str, f: impl FnMut(MessageEvent) + 'static) {
        let listener: Listener = Closure::new(f);
        if self
            .source
            .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
            .is_ok()
        {
            self.listeners.push((name.to_string(), listener));
        }
    }

    /// Whether the browser gave up on the stream (it reconnects by itself otherwise).
    pub fn closed(&self) -> bool {
        self.source.ready_state() == EventSource::CLOSED
    }

    /// Ends the stream; the browser does not reconnect.
    pub fn close(&self) {
        self.source.close();
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.source.close();
        for (name, listener) in &self.listeners {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}

/// The text of an event; empty for the stream's own events (`open`, `error`), which
/// have none.
pub fn data(e: &MessageEvent) -> String {
    js_sys::Reflect::get(e, &"data".into())
        .ok()
        .and_then(|d| d.as_string())
        .unwrap_or_default()
}
