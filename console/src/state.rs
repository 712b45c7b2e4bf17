//! What every request handler shares: the control operations, the access records, the
//! metrics and the shutdown signal. Nothing here is state of the console's own beyond
//! counters, the login throttle and the live list of job names (a copy of the jobs
//! bucket's keys, for the paged jobs listings): users, sessions and tokens live in NATS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use antares_nats::Nats;
use antares_scheduler::admin::{Admin, JobNames};
use tokio_util::sync::CancellationToken;

use crate::ConsoleOptions;
use crate::auth::sessions::Sessions;
use crate::auth::throttle::Throttle;
use crate::auth::tokens::Tokens;
use crate::auth::users::Users;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Most live streams (logs, events) one console serves at once.
pub const MAX_STREAMS: usize = 512;

/// The handlers' shared state.
pub type Shared = Arc<State>;

/// See the module docs.
#[derive(Debug)]
pub struct State {
    /// The connection.
    pub nats: Nats,
    /// The control operations (each request acts through `acting_as`).
    pub admin: Admin,
    /// Every job's name, kept live: what the jobs listings page through.
    pub job_names: JobNames,
    /// Users.
    pub users: Users,
    /// Sessions.
    pub sessions: Sessions,
    /// API tokens.
    pub tokens: Tokens,
    /// Failed logins.
    pub throttle: Throttle,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Settings.
    pub options: ConsoleOptions,
    /// Ends live streams when the console stops.
    pub shutdown: CancellationToken,
    streams: AtomicUsize,
}

impl State {
    /// The state over an opened `Admin`.
    pub fn new(
        nats: Nats,
        admin: Admin,
        options: ConsoleOptions,
        buckets: &antares_nats::connect::Buckets,
    ) -> Self {
        Self {
            users: Users::new(nats.clone(), buckets.users.clone()),
            sessions: Sessions::new(nats.clone(), buckets.sessions.clone(), options.session_ttl),
            tokens: Tokens::new(nats.clone(), buckets.tokens.clone()),
            throttle: Throttle::default(),
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            streams: AtomicUsize::new(0),
            job_names: JobNames::watch(&admin),
            nats,
            admin,
            options,
        }
    }

    /// After this console wrote a job (or deleted one): waits, bounded, until the job
    /// names have seen it, so the next page shows it. The write stands either way; a
    /// listing that lags is only logged.
    pub async fn names_written(&self) {
        if let Err(e) = self.job_names.sync().await {
            tracing::warn!(error = %e, "the job names have not seen this console's write yet");
        }
    }

    /// Takes a slot for a live stream (released when the guard drops); 503 when all
    /// [`MAX_STREAMS`] are taken.
    pub fn open_stream(self: &Arc<Self>) -> Result<StreamGuard, ApiError> {
        let taken = self.streams.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_STREAMS {
            self.streams.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::unavailable(format!(
                "this console already serves {MAX_STREAMS} live streams: try again later"
            )));
        }
        self.metrics.sse_open.inc();
        Ok(StreamGuard {
            state: Arc::clone(self),
        })
    }
}

/// One live stream's slot.
#[derive(Debug)]
pub struct StreamGuard {
    state: Shared,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.streams.fetch_sub(1, Ordering::SeqCst);
        self.state.metrics.sse_open.dec();
    }
}
