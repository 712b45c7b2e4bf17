//! Several finished reports in one results message (header `Antares-Reports`): the
//! scheduler applies each, and refuses a message that does not hold what it says
//! without losing anything else.

mod support;

use std::time::Duration;

use antares_nats::async_nats::HeaderMap;
use antares_nats::wait::wait_for;
use antares_nats::{codec, now};
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::messages::{ReportKind, ShardOutcome, ShardReport, ShardTask, TriggerRequest};
use antares_schemas::topology::{HEADER_MSG_ID, HEADER_REPORTS};
use futures::StreamExt;
use support::{Env, WAIT};

#[tokio::test]
async fn reports_of_several_shards_in_one_message_are_each_applied() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"four\"\nhandler = \"noop\"\nshards = 4\n",
    )
    .await?;
    env.scheduler("s1").await?;
    let topo = env.nats.topo.clone();
    let consumer = env.app_queue("shop", Duration::from_secs(30)).await?;
    // A worker the scheduler knows, played by the test.
    env.hand_worker_beat("shop", "hand", (0, 4), Duration::from_secs(60), false)
        .await?;
    let id = env
        .trigger("shop", "four", &TriggerRequest::default())
        .await?;
    // Every item, however many fetches it takes (they are queued one by one).
    let mut tasks = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tasks.len() < 4 && tokio::time::Instant::now() < deadline {
        let mut msgs = consumer
            .fetch()
            .max_messages(4 - tasks.len())
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            tasks.push(codec::decode::<ShardTask>("task", &m.payload)?);
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    assert_eq!(tasks.len(), 4, "every item delivered");
    let finished = |t: &ShardTask| ShardReport {
        instance: id,
        item: t.item,
        worker: "hand".into(),
        attempt: 1,
        run: t.run,
        at: now(),
        kind: ReportKind::Finished {
            started_at: now(),
            outcome: ShardOutcome::Success,
        },
    };
    let all: Vec<ShardReport> = tasks.iter().map(finished).collect();
    let send = |count: &str, body: bytes::Bytes, msg_id: &str| {
        let mut h = HeaderMap::new();
        h.insert(HEADER_REPORTS, count);
        h.insert(HEADER_MSG_ID, msg_id);
        let subject = topo.result_subject("shop", "four", &id, 0);
        let js = env.nats.js.clone();
        async move {
            js.publish_with_headers(subject, h, body)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    // Refused whole: a count that is not what the body holds (all four reports), a
    // body that is not reports. Nothing of either is applied.
    send("3", codec::encode("r", &all)?, "bad-count").await?;
    send("4", bytes::Bytes::from_static(b"not reports"), "bad-body").await?;
    // Items 0 and 1 in one message; once they are applied (after the bad ones, which
    // came first), items 2 and 3 must still be running.
    send("2", codec::encode("r", &all[..2].to_vec())?, "first").await?;
    let half = wait_for("items 0 and 1 to be applied", WAIT, || {
        let admin = env.admin.clone();
        async move {
            let inst = admin.get_instance(&id).await.ok()?;
            let ok = |i: usize| {
                inst.shards
                    .get(i)
                    .is_some_and(|s| s.status == ShardStatus::Success)
            };
            (ok(0) && ok(1)).then_some(inst)
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(
        half.shards[2..]
            .iter()
            .all(|s| s.status != ShardStatus::Success),
        "a refused message was applied: {:?}",
        half.shards
    );
    // Then 2 and 3 (3 twice: a report applied already is ignored).
    send(
        "3",
        codec::encode("r", &[&all[2], &all[3], &all[3]])?,
        "second",
    )
    .await?;
    let done = wait_for("the instance to end", WAIT, || {
        let admin = env.admin.clone();
        async move {
            let inst = admin.get_instance(&id).await.ok()?;
            inst.summary.status.is_final().then_some(inst)
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(done.summary.status, InstanceStatus::Success);
    assert!(
        done.shards
            .iter()
            .all(|s| s.status == ShardStatus::Success && s.worker.as_deref() == Some("hand")),
        "{:?}",
        done.shards
    );
    env.stop().await;
    Ok(())
}

/// Successful instances of `shop/tick` so far.
async fn ticks_done(env: &Env, n: usize) -> anyhow::Result<()> {
    env.instances_where("shop", "tick", n, |s| s.status == InstanceStatus::Success)
        .await?;
    Ok(())
}

/// A 1 s job's reports come on the urgent subject, read by a consumer of their own;
/// a results stream provisioned before urgent reports existed still gets every report,
/// the usual way, and the next provision and leader move to the urgent way, without
/// keeping a scheduler that predates them from leading.
#[tokio::test]
async fn urgent_reports_are_read_first_and_an_older_stream_still_works() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let topo = env.nats.topo.clone();
    let js = &env.nats.js;
    // The stream and consumer as an older version left them.
    let mut stream = env.nats.stream(&topo.results_stream()).await?;
    let mut config = stream.info().await?.config.clone();
    config.subjects.retain(|s| !s.starts_with("ats.urgent."));
    js.update_stream(&config).await?;
    let old = antares_nats::queue::ConsumerSpec {
        stream: topo.results_stream(),
        durable: topo.results_consumer(0),
        filter: None,
        ack_wait: Duration::from_secs(5),
        max_ack_pending: 50_000,
    };
    antares_nats::queue::durable_filtered(
        &env.nats,
        &old,
        vec!["ats.result.*.*.0.>".into(), "ats.control.*.*.0.>".into()],
    )
    .await?;
    env.tick().await?;
    ticks_done(&env, 2).await?;
    let urgent = topo.urgent_results_consumer(0);
    assert!(
        stream.consumer_info(&urgent).await.is_err(),
        "no urgent consumer on a stream that does not take urgent reports"
    );

    // Provisioned again, and led anew: the urgent way.
    env.stop().await;
    antares_nats::provision::provision(&env.nats, &Default::default()).await?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s2").await?;
    let done = env
        .admin
        .list_instances(&antares_scheduler::store::ListQuery {
            app: Some("shop".into()),
            job: Some("tick".into()),
            limit: 1000,
            ..Default::default()
        })
        .await?
        .len();
    ticks_done(&env, done + 3).await?;
    let info = stream.consumer_info(&urgent).await?;
    assert!(
        info.delivered.consumer_sequence >= 3,
        "the ticks' reports came by the urgent consumer: {info:?}"
    );
    // A scheduler that predates urgent reports may still lead (an upgrade rolled
    // back): its consumer, as it makes it, does not overlap the urgent one.
    antares_nats::queue::durable_filtered(
        &env.nats,
        &old,
        vec!["ats.result.*.*.0.>".into(), "ats.control.*.*.0.>".into()],
    )
    .await?;
    Ok(())
}
