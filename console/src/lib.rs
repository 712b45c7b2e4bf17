//! The Antares web console: an axum server with the JSON API of the contract (§6) and a
//! Leptos single-page app showing history, live logs, the cluster and job configuration.
//!
//! Not built yet. Until it is, the CLI (`antares instance list`, `antares cluster`, ...)
//! shows the same data, through the same operations (`antares_scheduler::admin`) the
//! console's API will call.
