//! `--metrics-listen ADDR` of `antares scheduler` and `antares worker`: a small HTTP
//! server answering `GET /metrics` (Prometheus text format) and `GET /healthz`.
//!
//! It is bound before the process starts its work, so a port already in use is an error
//! at start-up naming the flag, never a silent lack of metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Renders the metrics text.
pub type Render = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

/// Parses the flag's value.
fn parse_addr(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().map_err(|e| {
        anyhow::anyhow!("--metrics-listen `{text}`: not HOST:PORT like 0.0.0.0:9464 ({e})")
    })
}

/// Binds the flag's address (first thing at start-up, so a bad one stops the process
/// before it does anything).
pub async fn bind(text: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = parse_addr(text)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-listen {addr}: cannot listen there"))
}

/// Serves the metrics on a task of its own until the process ends.
pub fn serve(listener: tokio::net::TcpListener, render: Render) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = Arc::clone(&render);
                async move {
                    match render() {
                        Ok(text) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics")
                            .into_response(),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(bound)
}
