//! The contract's `DemoJob` in a worker of app `demo`, with the built-in jobs.
//!
//! The worker logs through `tracing`; `main` installs `tracing-subscriber` to print it.
//!
//! Run against a provisioned NATS (`antares provision`):
//! `ANTARES_NATS_URL=nats://127.0.0.1:4222 cargo run -p antares-worker --example demo_worker`

use antares_worker::{Job, JobContext, JobResult, Worker, WorkerError};

struct DemoJob;

impl Job for DemoJob {
    fn name(&self) -> &str {
        "demo"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        ctx.log(format!(
            "shard {} of {} (param `{}`, params `{}`) of instance {}, attempt {}",
            ctx.shard_item(),
            ctx.shard_total(),
            ctx.shard_param(),
            ctx.params(),
            ctx.instance_id(),
            ctx.attempt()
        ));
        match ctx.shard_param() {
            "later" if ctx.attempt() == 1 => JobResult::Later,
            "fail" => JobResult::failed("asked to fail by its shard param"),
            _ => {
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => JobResult::Success,
                    () = ctx.cancelled() => JobResult::failed("cancelled"),
                }
            }
        }
    }

    fn on_fail(&self, ctx: &JobContext, error: &str) {
        eprintln!("shard {} failed: {error}", ctx.shard_item());
    }
}

#[tokio::main]
async fn main() -> Result<(), WorkerError> {
    // The worker logs through `tracing`: install a subscriber to see what it does
    // (start-up, stops, lost connections). `RUST_LOG=info` by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let url = std::env::var("ANTARES_NATS_URL")
        .unwrap_or_else(|_| antares_worker::DEFAULT_NATS_URL.to_string());
    Worker::builder()
        .app("demo")
        .nats_url(url)
        .concurrency(32)
        .with_builtins()
        .register(DemoJob)
        .build()
        .await?
        .run()
        .await
}
