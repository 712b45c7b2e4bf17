//! The Antares console's single-page app: Leptos rendered in the browser, talking to the
//! console's JSON API (contract §6) on the same origin with the session cookie.
//!
//! It is built for `wasm32-unknown-unknown` by `scripts/build-console` into
//! `console/dist/`, which `antares console` serves. On the host it only compiles (so the
//! workspace's lints and the unit tests of its pure parts run); it is not meant to run
//! there.
//!
//! Layout: [`api`] fetches and [`sse`] streams; [`session`] holds who is logged in;
//! [`pages`] has one file per page, [`components`] the pieces they share; [`chart`],
//! [`diff`], [`form`] and [`format`](mod@format) are pure logic, tested on the host.

mod api;
mod app;
mod chart;
mod components;
mod diff;
mod events;
mod form;
mod format;
mod pages;
mod session;
mod sse;

fn main() {
    leptos::mount::mount_to_body(app::App);
}
