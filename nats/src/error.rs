//! The error type of NATS operations.

/// Something NATS refused or a message we could not read.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Could not reach or authenticate with the server.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The URLs tried.
        url: String,
        /// Why.
        message: String,
    },
    /// A configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// A JetStream or core NATS operation failed.
    #[error("{op}: {source}")]
    Op {
        /// What was being done.
        op: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// A revision-checked write found another revision: someone else wrote first.
    #[error("{key} changed under us (expected revision {expected})")]
    WrongRevision {
        /// The key.
        key: String,
        /// The revision we expected.
        expected: u64,
    },
    /// A message that could not be decoded.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What it should have been.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Could not encode a value.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What it was.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A local nats-server could not be started.
    #[error("{0}")]
    Server(String),
}

impl NatsError {
    /// Wraps a client error with what was being done.
    pub fn op(op: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Self::Op {
            op: op.into(),
            source: source.into(),
        }
    }
}

/// Result with [`NatsError`].
pub type Result<T, E = NatsError> = std::result::Result<T, E>;
