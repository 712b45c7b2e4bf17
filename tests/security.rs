//! Per-app isolation with the stock binaries: nats-server runs with the permissions of
//! `antares_nats::permissions` (the ones `nats/config/README.md` shows), a `scheduler`
//! user with every right, and a worker user for each of the apps `billing` and `shop`.
//! Each app's `antares worker` runs its own shards, a script sees no NATS secret, and
//! every cross-app attempt with billing's credentials is refused by the server.

mod support;

use antares_nats::permissions::{example_conf, worker_permissions};
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::queue;
use antares_nats::server::{LocalServer, ServerOptions, find_binary};
use antares_nats::wait::wait_for;
use antares_nats::{ConnectOptions, Nats};
use antares_scheduler::admin::Admin;
use antares_schemas::Topology;
use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::TriggerRequest;
use antares_schemas::spec::{SpecFormat, parse_jobs};
use antares_worker::Worker;
use futures::{FutureExt, StreamExt};
use support::{WAIT, antares_process};

const SCHEDULER_PASSWORD: &str = "scheduler-secret-pw";
const BILLING_PASSWORD: &str = "billing-secret-pw";
const SHOP_PASSWORD: &str = "shop-secret-pw";

const JOBS: &str = r#"
[[job]]
app = "billing"
name = "env"
kind = "script"
command = "env"

[[job]]
app = "billing"
name = "spread"
handler = "noop"
routing = "round_robin"
shards = 2

[[job]]
app = "shop"
name = "sweep"
handler = "noop"
shard_params = "shop-param-1;shop-param-2;shop-param-3"
params = "shop-params"
"#;

/// The server's accounts: the scheduler unrestricted, billing's workers as
/// `antares app permissions` prints them, shop's by [`worker_permissions`].
fn accounts(topo: &Topology) -> anyhow::Result<String> {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .args(["app", "permissions", "billing", "--worker", "billing-1"])
        .output()?;
    anyhow::ensure!(printed.status.success(), "{printed:?}");
    let billing = String::from_utf8(printed.stdout)?.replace(
        "$ATS_WORKER_BILLING_PASSWORD",
        &format!("\"{BILLING_PASSWORD}\""),
    );
    let shop = worker_permissions(topo, "shop", &["shop-1"]);
    Ok(format!(
        "accounts {{\n  ATS {{\n    jetstream: enabled\n    users: [\n\
         \x20     {{ user: \"scheduler\", password: \"{SCHEDULER_PASSWORD}\" }}\n{billing}{}    ]\n  }}\n}}\n",
        shop.user_conf("worker-shop", &format!("\"{SHOP_PASSWORD}\""), 6),
    ))
}

fn as_user(url: &str, user: &str, password: &str) -> ConnectOptions {
    ConnectOptions {
        user: Some(user.into()),
        password: Some(password.into()),
        ..ConnectOptions::url(url)
    }
}

/// Publishes on `subject` with billing's connection and waits for the server to refuse it.
async fn refused(nats: &Nats, subject: &str) -> anyhow::Result<()> {
    let mark = nats.denials.mark();
    nats.client.publish(subject.to_string(), "x".into()).await?;
    nats.client.flush().await?;
    expect_denial(nats, mark, &format!("Publish to \"{subject}\"")).await
}

async fn expect_denial(nats: &Nats, mark: u64, what: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("the server to refuse {what}"),
        WAIT,
        || async move { nats.denials.since(mark).filter(|d| d.contains(what)) },
    )
    .await
    .map(|_| ())
    .map_err(anyhow::Error::msg)
}

/// A stock `antares worker` process as `user`; the password comes from the environment
/// (`ANTARES_PASSWORD`), where a careless script would find it.
fn worker(
    url: &str,
    user: &str,
    password: &str,
    app: &str,
    id: &str,
) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .args([
            "--nats-url",
            url,
            "--user",
            user,
            "worker",
            "--app",
            app,
            "--id",
            id,
        ])
        .arg("--allow-scripts")
        .env("ANTARES_PASSWORD", password)
        .env(
            "RUST_LOG",
            std::env::var("ANTARES_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_runs_its_own_shards_and_reaches_nothing_of_another() -> anyhow::Result<()> {
    let topo = Topology::new("ats")?;
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("accounts.conf");
    std::fs::write(&conf, accounts(&topo)?)?;
    let server = LocalServer::start(&ServerOptions {
        store_dir: dir.path().join("store"),
        config: Some(conf),
        ..ServerOptions::default()
    })?;
    let url = server.url();

    let sched = Nats::connect(
        &as_user(&url, "scheduler", SCHEDULER_PASSWORD),
        topo.clone(),
    )
    .await?;
    provision(
        &sched,
        &ProvisionOptions {
            memory: true,
            ..ProvisionOptions::default()
        },
    )
    .await?;
    let admin = Admin::open(&sched).await?;
    admin.create_app("billing", "").await?;
    admin.create_app("shop", "").await?;
    admin
        .apply_jobs(parse_jobs(JOBS, SpecFormat::Toml)?)
        .await?;

    // Billing's credentials, connected as its workers are (their app's inbox prefix).
    let billing = Nats::connect_for_work(
        &ConnectOptions {
            inbox_prefix: Some(topo.app_inbox_prefix("billing")),
            ..as_user(&url, "worker-billing", BILLING_PASSWORD)
        },
        topo.clone(),
    )
    .await?;
    // Inbox snooping: every reply subject, shop's replies, shop's items.
    let mut snoops = Vec::new();
    for subject in [
        "_INBOX.>",
        "_INBOX_ats.shop.>",
        "ats.shard.shop.>",
        "ats.direct.>",
        ">",
    ] {
        let mark = billing.denials.mark();
        snoops.push(billing.client.subscribe(subject.to_string()).await?);
        expect_denial(&billing, mark, &format!("Subscription to \"{subject}\"")).await?;
    }

    let _scheduler = antares_process(
        &url,
        &[
            "--user",
            "scheduler",
            "--password",
            SCHEDULER_PASSWORD,
            "scheduler",
            "--id",
            "s1",
        ],
    )?;
    let _billing_worker = worker(
        &url,
        "worker-billing",
        BILLING_PASSWORD,
        "billing",
        "billing-1",
    )?;
    let _shop_worker = worker(&url, "worker-shop", SHOP_PASSWORD, "shop", "shop-1")?;
    let admin_ref = &admin;
    wait_for("both workers to beat", WAIT, || async move {
        let view = admin_ref.cluster().await.ok()?;
        (view.workers.len() == 2).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;

    // Each app's worker runs its own shards (shared queue, own consumer, scripts).
    for (app, job, worker) in [
        ("shop", "sweep", "shop-1"),
        ("billing", "spread", "billing-1"),
        ("billing", "env", "billing-1"),
    ] {
        let id = admin
            .trigger(app, job, &TriggerRequest::default())
            .await?
            .id();
        let inst = wait_for(&format!("{app}/{job} to end"), WAIT, || async move {
            admin_ref
                .get_instance(&id)
                .await
                .ok()
                .filter(|i| i.summary.status.is_final())
        })
        .await
        .map_err(anyhow::Error::msg)?;
        assert_eq!(
            inst.summary.status,
            InstanceStatus::Success,
            "{app}/{job}: {:?}",
            inst.summary.reason
        );
        assert!(
            inst.shards
                .iter()
                .all(|s| s.worker.as_deref() == Some(worker)),
            "{app}/{job} ran on {:?}",
            inst.shards
                .iter()
                .map(|s| s.worker.clone())
                .collect::<Vec<_>>()
        );
        if job == "env" {
            let lines: Vec<String> = admin
                .logs(&id, None, false)
                .await?
                .filter_map(|l| async move { l.ok().map(|l| l.line) })
                .collect()
                .await;
            assert!(
                lines.iter().any(|l| l.starts_with("PATH=")),
                "env printed: {lines:?}"
            );
            for secret in [BILLING_PASSWORD, "ANTARES_PASSWORD", "ANTARES_USER"] {
                assert!(
                    !lines.iter().any(|l| l.contains(secret)),
                    "{secret} in {lines:?}"
                );
            }
        }
    }
    // Shop's items and replies went by while billing listened: nothing reached it.
    for sub in &mut snoops {
        assert!(
            sub.next().now_or_never().flatten().is_none(),
            "billing received a message"
        );
    }

    // Every cross-app attempt is refused by the server.
    for subject in [
        "ats.shard.shop.sweep.x.0",                      // queue work for shop
        "ats.direct.shop.shop-1.sweep.x.0",              // or for one of its workers
        "ats.result.shop.sweep.x.0",                     // report on shop's shards
        "ats.log.shop.sweep.x.0",                        // write shop's logs
        "$JS.API.CONSUMER.MSG.NEXT.ATS_SHARDS.app-shop", // pull shop's items
        "$JS.API.CONSUMER.MSG.NEXT.ATS_SHARDS.worker-shop-shop-1",
        "$JS.ACK.ATS_SHARDS.app-shop.1.1.1.1.0", // ack shop's items
        "$JS.API.DIRECT.GET.KV_ats-workers.$KV.ats-workers.shop.shop-1", // read shop's keys
        "$JS.API.STREAM.MSG.GET.KV_ats-jobs",
        "$KV.ats-workers.shop.shop-1", // pose as shop's worker
        "ats.trigger.shop.sweep",      // trigger a shop job
        "ats.trigger.billing.env",     // or even its own
        "$JS.API.CONSUMER.CREATE.ATS_SHARDS.app-shop.ats.direct.billing.billing-1.>",
    ] {
        refused(&billing, subject).await?;
    }
    // The errors name the subject refused instead of blaming provisioning.
    let bound = queue::bind(
        &billing,
        &queue::app_consumer_spec(&topo, "shop", queue::DEFAULT_ACK_WAIT),
    )
    .await;
    let e = bound.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("CONSUMER.INFO.ATS_SHARDS.app-shop") && !e.contains("provision"),
        "{e}"
    );
    let e = billing
        .bucket(&topo.jobs_bucket())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("STREAM.INFO.KV_ats-jobs") && !e.contains("provision"),
        "{e}"
    );

    // A billing worker whose id the permissions do not list is refused at start, saying why.
    let unlisted = Worker::builder()
        .app("billing")
        .id("billing-9")
        .connect_options(as_user(&url, "worker-billing", BILLING_PASSWORD))
        .with_builtins()
        .build()
        .await;
    let e = unlisted.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("CONSUMER.CREATE.ATS_SHARDS.worker-billing-billing-9") && e.contains("listed"),
        "{e}"
    );
    Ok(())
}

/// The example in `nats/config/README.md` is a configuration nats-server accepts.
#[test]
fn the_documented_example_is_a_valid_server_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("example.conf");
    std::fs::write(&conf, example_conf(&Topology::new("ats")?))?;
    let out = std::process::Command::new(find_binary()?)
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .env("ATS_SCHEDULER_PASSWORD", "a")
        .env("ATS_WORKER_BILLING_PASSWORD", "b")
        .output()?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
