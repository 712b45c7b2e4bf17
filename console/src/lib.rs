//! The Antares web console: an axum server with the HTTP API of the contract (§6) under
//! `/api`, the single-page app's files everywhere else, and `/healthz` and `/metrics`.
//!
//! Every API operation goes through [`antares_scheduler::admin::Admin`], the same code
//! the CLI runs, acting as the logged-in user or token so that changes are recorded as
//! theirs. The console keeps nothing of its own: users, sessions and tokens are in NATS
//! buckets, so several consoles can run side by side behind one address. (It holds one
//! live copy: the job names, followed from the jobs bucket, so that the jobs listings
//! page through them without a scan.)
//!
//! ```no_run
//! # async fn run(nats: antares_nats::Nats) -> Result<(), antares_console::ConsoleError> {
//! use antares_console::{Console, ConsoleOptions};
//! let console = Console::open(&nats, ConsoleOptions::default()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:22111").await?;
//! console.serve(listener, std::future::pending()).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use antares_nats::Nats;
use antares_scheduler::admin::Admin;
use antares_schemas::audit::{Actor, Via};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

mod api;
mod assets;
mod auth;
mod error;
mod extract;
mod metrics;
mod state;

pub use assets::Assets;
pub use auth::{AdminSeed, SeedOutcome};
pub use error::{ApiError, ConsoleError};
pub use extract::MAX_BODY_BYTES;

use state::{Shared, State as ConsoleState};

/// The default address of `antares console`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:22111";
/// The default session lifetime.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest session lifetime accepted.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(60);
/// The longest session lifetime accepted.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The default name of the first admin.
pub const DEFAULT_ADMIN: &str = "admin";

/// How a console runs.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Whether the session cookie is marked `Secure` (always, when the console is reached
    /// over HTTPS through a proxy; it is also set for requests a proxy marks
    /// `X-Forwarded-Proto: https`).
    pub secure_cookie: bool,
    /// The first admin.
    pub admin: AdminSeed,
    /// Where the SPA's files come from.
    pub assets: Assets,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            session_ttl: DEFAULT_SESSION_TTL,
            secure_cookie: false,
            admin: AdminSeed {
                user: DEFAULT_ADMIN.to_string(),
                password: None,
                reset: true,
            },
            assets: Assets::Embedded,
        }
    }
}

/// A console ready to serve.
#[derive(Clone, Debug)]
pub struct Console {
    state: Shared,
    seeded: SeedOutcome,
}

impl Console {
    /// Opens the control operations and the access buckets, and makes sure an admin can
    /// log in: the configured one is created or reset, or, with no password configured,
    /// some admin of every app must exist already ([`ConsoleError::NoAdmin`] otherwise).
    pub async fn open(nats: &Nats, options: ConsoleOptions) -> Result<Self, ConsoleError> {
        let ttl = options.session_ttl;
        if !(MIN_SESSION_TTL..=MAX_SESSION_TTL).contains(&ttl) {
            return Err(ConsoleError::Config(format!(
                "session_ttl: {}s is not a login's lifetime: give 1m to 30d",
                ttl.as_secs()
            )));
        }
        let buckets = nats.buckets().await?;
        let admin = Admin::open(nats).await?.acting_as(Actor {
            name: "console".to_string(),
            via: Via::Console,
            host: Some(antares_nats::process::hostname()),
        });
        let state = Arc::new(ConsoleState::new(nats.clone(), admin, options, &buckets));
        let seeded = state.users.seed_admin(&state.options.admin).await?;
        if matches!(seeded, SeedOutcome::Created | SeedOutcome::Updated) {
            let user = &state.options.admin.user;
            let action = if seeded == SeedOutcome::Created {
                "user.create"
            } else {
                "user.update"
            };
            let after = state.users.get(user).await?.map(|v| v.value.public());
            let after = after.and_then(|u| serde_json::to_value(u).ok());
            state.admin.record(action, user, None, None, after).await?;
        }
        Ok(Self { state, seeded })
    }

    /// What was done about the configured admin.
    pub fn seeded(&self) -> SeedOutcome {
        self.seeded
    }

    /// The whole HTTP service: `/api`, `/healthz`, `/metrics` and the SPA.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .nest("/api", api::router())
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(state)
            .fallback_service(assets::router(&self.state.options.assets))
    }

    /// Serves on `listener` until `shutdown` resolves; live streams end then too.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let stop = self.state.shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.cancel();
            })
            .await?;
        Ok(())
    }
}

/// `GET /healthz`: 200 when NATS answers, 503 saying why when not.
async fn healthz(State(state): State<Shared>) -> Response {
    let flushed = tokio::time::timeout(Duration::from_secs(2), state.nats.flush()).await;
    match flushed {
        Ok(Ok(())) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Ok(Err(e)) => ApiError::unavailable(format!("NATS: {e}")).into_response(),
        Err(_) => ApiError::unavailable("NATS does not answer within 2s").into_response(),
    }
}

/// `GET /metrics`: Prometheus text.
async fn metrics_text(State(state): State<Shared>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("metrics: {e}")).into_response(),
    }
}

/// Middleware of `/api`: an error that a layer below answered without a JSON body (a
/// method not allowed, say) gets one, so clients always read `{"error": ...}`.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path(), |u| u.0.path())
        .to_string();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        other => format!(
            "{} {}",
            other.as_u16(),
            other.canonical_reason().unwrap_or("error")
        ),
    };
    ApiError::new(status, message).into_response()
}
