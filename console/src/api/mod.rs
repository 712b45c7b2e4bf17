//! The HTTP API of the contract (§6), under `/api`. Each handler checks the caller's
//! role and apps, then calls the control operations acting as the caller.
//!
//! Errors are JSON (`{"error": ..., "field"?: ...}`); an unknown path is a JSON 404.

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::Method;
use axum::middleware;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::Shared;

mod access;
mod apps;
mod cluster;
mod events;
mod instances;
mod jobs;
mod logs;
mod session;
mod versions;

/// Every route of `/api`.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/me", get(session::me))
        .route("/apps", get(apps::list).post(apps::create))
        .route("/apps/{app}", get(apps::get).delete(apps::delete))
        .route("/apps/{app}/pause", post(apps::pause))
        .route("/apps/{app}/resume", post(apps::resume))
        .route("/apps/{app}/jobs", get(jobs::list).post(jobs::create))
        .route("/apps/{app}/job-rows", get(jobs::rows))
        .route(
            "/apps/{app}/jobs/{job}",
            get(jobs::get).put(jobs::update).delete(jobs::delete),
        )
        .route("/apps/{app}/jobs/{job}/trigger", post(jobs::trigger))
        .route("/apps/{app}/jobs/{job}/pause", post(jobs::pause))
        .route("/apps/{app}/jobs/{job}/resume", post(jobs::resume))
        .route("/apps/{app}/jobs/{job}/versions", get(versions::list))
        .route("/apps/{app}/jobs/{job}/versions/{n}", get(versions::get))
        .route(
            "/apps/{app}/jobs/{job}/versions/{n}/rollback",
            post(versions::rollback),
        )
        .route("/instances", get(instances::list))
        .route("/instances/{id}", get(instances::get))
        .route("/instances/{id}/cancel", post(instances::cancel))
        .route("/instances/{id}/logs", get(logs::logs))
        .route("/cluster", get(cluster::cluster))
        .route("/stats", get(cluster::stats))
        .route("/events", get(events::events))
        .route("/cron/preview", get(cluster::cron_preview))
        .route("/users", get(access::users).post(access::put_user))
        .route("/users/{name}", axum::routing::delete(access::delete_user))
        .route("/tokens", get(access::tokens).post(access::create_token))
        .route("/tokens/{id}", axum::routing::delete(access::delete_token))
        .route("/audit", get(access::audit))
        .fallback(unknown)
        .layer(middleware::from_fn(crate::json_errors))
}

async fn unknown(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no such API endpoint: {method} {}", uri.path()))
}

/// Parses a number from a query or path parameter, naming it when it is not one.
pub(crate) fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("`{name}` must be a whole number, not `{text}`"))
    })
}
