//! Bounded work queues: a full queue refuses new messages with a clear error and keeps
//! every message it holds; the scheduler waits for room instead of losing shard items;
//! deleting an app purges what was queued for it; re-provisioning with other limits
//! keeps everything stored.

mod support;

use antares_nats::provision::{MIN_MAX_BYTES, ProvisionOptions, provision};
use antares_nats::queue;
use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::TriggerRequest;
use futures::StreamExt;
use support::{Env, WAIT};

/// Publishes 1 KiB messages on `<prefix><n>` until the stream refuses one, then tiny
/// ones until no room is left; returns how many it took and the refusal.
async fn fill(env: &Env, prefix: &str) -> anyhow::Result<(u64, String)> {
    // A limit of MIN_MAX_BYTES holds fewer than this many messages.
    let most = u64::try_from(MIN_MAX_BYTES)?;
    let mut taken = 0;
    let mut refusal = String::new();
    for size in [1024, 1] {
        let payload = bytes::Bytes::from(vec![b'x'; size]);
        loop {
            anyhow::ensure!(taken < most, "{prefix}: {most} messages were all taken");
            let sent = env
                .nats
                .js
                .publish(format!("{prefix}{taken}"), payload.clone())
                .await?
                .await;
            match sent {
                Ok(_) => taken += 1,
                Err(e) => {
                    refusal = e.to_string();
                    break;
                }
            }
        }
    }
    Ok((taken, refusal))
}

async fn messages(env: &Env, stream: &str) -> anyhow::Result<(u64, u64)> {
    let mut s = env.nats.stream(stream).await?;
    let info = s.info().await?;
    Ok((info.state.messages, info.state.first_sequence))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_new_work_and_keeps_what_it_holds() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "[[job]]\napp = \"shop\"\nname = \"sweep\"\nhandler = \"noop\"\nshards = 3\n",
    )
    .await?;
    env.admin.create_app("ghost", "").await?;
    let topo = env.nats.topo.clone();
    let shop_consumer = queue::app_consumer_spec(&topo, "shop", queue::DEFAULT_ACK_WAIT);
    assert!(
        queue::bind(&env.nats, &shop_consumer).await?.is_some(),
        "app create made it"
    );
    env.nats
        .js
        .delete_consumer_from_stream(&shop_consumer.durable, &shop_consumer.stream)
        .await?;
    // Re-provisioning with small queues keeps what is stored, and makes the consumers
    // of existing apps.
    provision(
        &env.nats,
        &ProvisionOptions {
            queue_max_bytes: MIN_MAX_BYTES,
            ..ProvisionOptions::default()
        },
    )
    .await?;
    assert_eq!(env.admin.list_jobs(Some("shop")).await?.len(), 1);
    assert!(queue::bind(&env.nats, &shop_consumer).await?.is_some());

    // A trigger stream at its limit: the publisher is told, the queued triggers stay.
    let (taken, refusal) = fill(&env, "ats.trigger.ghost.nothing-").await?;
    assert!(taken > 0 && refusal.contains("maximum bytes"), "{refusal}");
    let e = env
        .admin
        .trigger("shop", "sweep", &TriggerRequest::default())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("ATS_TRIGGERS") && e.contains("full"), "{e}");
    assert_eq!(
        messages(&env, &topo.triggers_stream()).await?,
        (taken, 1),
        "nothing queued was dropped"
    );
    env.nats
        .stream(&topo.triggers_stream())
        .await?
        .purge()
        .await?;

    // Shard items of an app nobody serves fill the shard queue.
    let (garbage, refusal) = fill(&env, "ats.shard.ghost.j.x.").await?;
    assert!(refusal.contains("maximum bytes"), "{refusal}");

    // A new instance's items do not fit: it waits for room, losing nothing.
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    // Core NATS sees every publication, the refused ones too.
    let mut attempts = env
        .nats
        .client
        .subscribe(topo.app_shards_filter("shop"))
        .await?;
    let id = env
        .trigger("shop", "sweep", &TriggerRequest::default())
        .await?;
    tokio::time::timeout(WAIT, attempts.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no publication of shop's items"))?;
    wait_for_status(&env.admin, &id, InstanceStatus::Pending).await?;
    assert_eq!(messages(&env, &topo.shards_stream()).await?, (garbage, 1));

    // Deleting the app purges its queued items; the instance then runs.
    env.admin.delete_app("ghost").await?;
    let done = env.finished(&id).await?;
    assert_eq!(
        done.summary.status,
        InstanceStatus::Success,
        "{:?}",
        done.summary.reason
    );
    assert_eq!(env.queued_shards().await?, 0);
    env.stop().await;
    Ok(())
}

async fn wait_for_status(
    admin: &antares_scheduler::admin::Admin,
    id: &antares_schemas::InstanceId,
    status: InstanceStatus,
) -> anyhow::Result<()> {
    antares_nats::wait::wait_for(
        &format!("instance {id} to be {status:?}"),
        WAIT,
        || async move {
            admin
                .get_instance(id)
                .await
                .ok()
                .filter(|i| i.summary.status == status)
                .map(|_| ())
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}
