//! Errors: what the API answers (`{"error": ..., "field"?: ...}` with a status), and what
//! stops the console from starting.

use antares_nats::NatsError;
use antares_scheduler::SchedulerError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: a status and a message a person can act on, with the job spec field at
/// fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// The field at fault (`schedule.cron`), when one is.
    pub field: Option<String>,
    /// Seconds after which a refused request may be tried again (429).
    pub retry_after: Option<u64>,
}

/// The JSON body of every error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400: input that cannot be accepted.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: not logged in.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: logged in, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: not there (or not to be seen by this caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: clashes with what is there.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 503: a dependency (NATS) is not answering, or the console is at a limit.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: a fault of the console itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 429 with the seconds to wait.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::NotFound(m) => Self::not_found(m),
            SchedulerError::Invalid(m) => Self::bad_request(m),
            SchedulerError::Name(e) => Self::bad_request(e.to_string()),
            SchedulerError::Spec(e) => Self {
                field: (!e.field.is_empty()).then(|| e.field.clone()),
                ..Self::bad_request(e.to_string())
            },
            SchedulerError::Conflict(m) => Self::conflict(m),
            SchedulerError::Timeout(m) => Self::new(StatusCode::GATEWAY_TIMEOUT, m),
            SchedulerError::Nats(e) => e.into(),
        }
    }
}

impl From<NatsError> for ApiError {
    fn from(e: NatsError) -> Self {
        Self::unavailable(format!("NATS: {e}"))
    }
}

impl From<antares_schemas::names::NameError> for ApiError {
    fn from(e: antares_schemas::names::NameError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The control operations could not be opened (NATS, or not provisioned).
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// NATS refused or failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// No admin can log in, and none can be made.
    #[error(
        "no console admin exists yet and no password is configured for one: set ANTARES_CONSOLE_PASSWORD \
         (or `console_password` in the --config file) to create the admin user `{user}` \
         (named by ANTARES_CONSOLE_USER / `console_user`)"
    )]
    NoAdmin {
        /// The configured admin user name.
        user: String,
    },
    /// A configured value that cannot be used.
    #[error("{0}")]
    Config(String),
    /// Serving failed.
    #[error("serving the console: {0}")]
    Io(#[from] std::io::Error),
}
