//! Errors of the scheduler and the control operations.

use antares_nats::NatsError;
use antares_schemas::names::NameError;

/// What went wrong, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// NATS refused or failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// A bad name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Input that cannot be accepted.
    #[error("{0}")]
    Invalid(String),
    /// A job spec that cannot be accepted, naming the field at fault.
    #[error(transparent)]
    Spec(#[from] antares_schemas::spec::SpecError),
    /// Something already exists.
    #[error("{0}")]
    Conflict(String),
    /// A wait ran out of time.
    #[error("{0}")]
    Timeout(String),
}
