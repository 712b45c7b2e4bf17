//! The Antares worker: the SDK teams embed in their own worker programs, and the stock
//! worker behind `antares worker`.
//!
//! A worker serves one app. It pulls the app's shard items from a JetStream work queue
//! shared by all the app's workers (and the items the scheduler sends it by name, from
//! its own consumer), runs each with the [`Job`] registered under the job's
//! `handler` (or as a script, when allowed), reports the start and the outcome, and acks
//! the item. It only dials NATS: no ports to open, nothing to register but a heartbeat.
//!
//! ```no_run
//! use antares_worker::{Job, JobContext, JobResult, Worker};
//!
//! struct DemoJob;
//!
//! impl Job for DemoJob {
//!     fn name(&self) -> &str {
//!         "demo"
//!     }
//!
//!     async fn execute(&self, ctx: JobContext) -> JobResult {
//!         ctx.log(format!(
//!             "item {} of {} with param `{}` (params `{}`), attempt {} of instance {}",
//!             ctx.shard_item(),
//!             ctx.shard_total(),
//!             ctx.shard_param(),
//!             ctx.params(),
//!             ctx.attempt(),
//!             ctx.instance_id(),
//!         ));
//!         tokio::select! {
//!             () = tokio::time::sleep(std::time::Duration::from_millis(10)) => JobResult::Success,
//!             () = ctx.cancelled() => JobResult::Later,
//!         }
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), antares_worker::WorkerError> {
//! Worker::builder()
//!     .app("billing")
//!     .nats_url("nats://127.0.0.1:4222")
//!     .concurrency(32)
//!     .register(DemoJob)
//!     .build()
//!     .await?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! What a worker does, in short:
//! - pulls at most `concurrency` shard items at a time, asking the queue only for as many
//!   as it has free slots;
//! - reports `Started`, runs the job (in-progress acks every second keep the item from
//!   being handed to another worker), reports `Finished`, then acks — or, for
//!   [`JobResult::Later`], naks with the `later_delay` so the item comes back as the
//!   next attempt;
//! - announces what it can run in its heartbeat (the scheduler sends it only those) and
//!   answers pings (routing `failover`);
//! - fails (and acks) items it cannot run, saying why: a handler it lacks, a script when
//!   started without `allow_scripts`, an http job when built with `allow_http(false)`;
//! - survives panicking jobs (the attempt fails with the panic message);
//! - stops a shard that runs past its job's `timeout` (it reports `timed_out`), or that
//!   the scheduler stops (its instance was cancelled, or it timed out there): the job
//!   sees [`JobContext::cancelled`] resolve and is aborted after the
//!   [`stop_grace`](WorkerBuilder::stop_grace) (a script's process group gets `SIGTERM`,
//!   then `SIGKILL`);
//! - caps every error it reports at 1 KiB
//!   ([`MAX_ERROR_BYTES`](antares_schemas::limits::MAX_ERROR_BYTES));
//! - writes a heartbeat every second that expires after three missed ones;
//! - on SIGTERM, Ctrl-C or [`WorkerHandle::shutdown`] stops pulling, lets running shards
//!   finish within the grace period, then cancels the rest and hands them back to the
//!   queue, so another worker runs them at once.
//!
//! Script jobs (contract §9) run in their own process group; see [`script_env`] for
//! what they get. Http jobs are one request per shard item; see [`http_jobs`] for what
//! the server gets and how its answer is read. Workers in other languages follow the [`protocol`].

pub mod builtins;
mod context;
mod error;
mod heartbeat;
mod http;
mod job;
mod logs;
mod metrics;
mod ping;
pub mod protocol;
mod pull;
mod reports;
mod script;
mod shard;
mod stop;
mod worker;

pub use context::JobContext;
pub use error::{Result, WorkerError};
pub use heartbeat::MISSED_BEATS;
pub use job::{Job, JobResult};
pub use metrics::WorkerMetrics;
pub use script::EXIT_LATER;
pub use worker::{
    DEFAULT_ACK_WAIT, DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_HEARTBEAT, DEFAULT_LATER_DELAY,
    DEFAULT_NATS_URL, DEFAULT_REPORT_START_AFTER, DEFAULT_STOP_GRACE, MAX_CONCURRENCY, Worker,
    WorkerBuilder, WorkerHandle,
};

/// The environment of a script job: these variables, plus `PATH`, `HOME`, `LANG` and
/// `TZ` from the worker's environment and the names listed with
/// [`WorkerBuilder::script_env`](crate::WorkerBuilder::script_env); nothing else of the
/// worker's environment (no NATS credentials).
///
/// | variable | value |
/// | --- | --- |
/// | `ANTARES_APP` | app name |
/// | `ANTARES_JOB` | job name |
/// | `ANTARES_INSTANCE_ID` | the instance (one run of the job) |
/// | `ANTARES_SHARD_ITEM` | 0-based shard item |
/// | `ANTARES_SHARD_TOTAL` | number of shard items |
/// | `ANTARES_SHARD_PARAM` | this item's shard param |
/// | `ANTARES_PARAMS` | the instance's params |
/// | `ANTARES_ATTEMPT` | 1 on the first run |
///
/// A command runs as `sh -c COMMAND`; a script as `sh -c SOURCE`, `python3 -c SOURCE` or
/// `node -e SOURCE`, with standard input empty. Every line written to standard output or
/// error is a log line of the shard. Exit 0 is success, exit [`EXIT_LATER`] (75) is
/// "later", anything else fails with the last lines of standard error (up to 10 lines
/// or 1 KiB, [`MAX_ERROR_BYTES`](antares_schemas::limits::MAX_ERROR_BYTES)).
///
/// A script that must stop (past its timeout, stopped by the scheduler, or at a forced
/// shutdown) gets `SIGTERM`, sent to its whole process group; once nothing of the group
/// is left, or the worker's [`stop_grace`](crate::WorkerBuilder::stop_grace) (default
/// 3 s) is over, the group gets `SIGKILL`, so nothing the script started outlives it.
pub mod script_env {}

/// Http jobs (`kind = "http"`): each shard item is one request, made with the job's
/// `method`, `url`, `headers` and `body`, plus headers naming the shard:
///
/// | header | value |
/// | --- | --- |
/// | `Antares-App`, `Antares-Job` | names |
/// | `Antares-Instance` | the instance id |
/// | `Antares-Shard-Item` | 0-based shard item |
/// | `Antares-Shard-Total` | number of shard items |
/// | `Antares-Attempt` | 1 on the first run |
/// | `Antares-Params` | the instance's params, percent-encoded UTF-8 |
/// | `Antares-Shard-Param` | this item's shard param, percent-encoded UTF-8 |
///
/// Params are percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`), so any text fits a
/// header; decode them with `urllib.parse.unquote`, `decodeURIComponent` or the like. Encoded, each may take 8 KiB;
/// a bigger one fails the attempt saying so.
///
/// | answer | result |
/// | --- | --- |
/// | 2xx | success |
/// | 429, 503 | later: the item comes back after the worker's `later_delay` (a `Retry-After` is logged, not used) |
/// | any other status | fails with `METHOD URL answered HTTP <status>: <start of the body>` |
/// | no connection, no answer within `http.timeout` | fails saying which |
///
/// Redirects are followed (up to 5). The job's own `timeout` (per attempt) stops a
/// request like any job: it reports `timed_out`. The status line and the first 512 bytes
/// of the body (no more is read) go to the shard's log, the URL without its query
/// (which may hold secrets). Every worker runs http jobs unless built with
/// [`WorkerBuilder::allow_http`]`(false)`; its heartbeat says which.
pub mod http_jobs {}
