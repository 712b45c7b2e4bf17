//! The error type of the worker crate.

use antares_nats::NatsError;
use antares_schemas::names::NameError;

/// Why a worker could not be built or stopped running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A builder setting is wrong; the message names it.
    #[error("{0}")]
    Config(String),
    /// The app name or worker id is not allowed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// NATS refused something or could not be reached.
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// Result with [`WorkerError`].
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
