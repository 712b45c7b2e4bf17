//! Moves to history end to end: a scheduler and a worker run a job; once its runs end
//! they are listed from the history index, the job's last state is its newest run, and
//! the daily counts count each run once.

mod support;

use antares_nats::wait::wait_for;
use antares_scheduler::store::{InstanceStore, ListQuery};
use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::TriggerRequest;
use support::{Env, Recorder, WAIT};

#[tokio::test]
async fn ended_runs_are_listed_counted_and_the_newest_is_the_last_state() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"ping\"\nhandler = \"record\"\n",
    )
    .await?;
    env.run_worker(
        env.worker("shop")
            .register(Recorder::succeeding("record"))
            .concurrency(4),
    )
    .await?;
    env.scheduler("s1").await?;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            env.trigger("shop", "ping", &TriggerRequest::default())
                .await?,
        );
    }
    ids.sort();
    ids.reverse();

    // Every run ended and left the instances bucket: all moved to history.
    let store = InstanceStore::open(&env.nats).await?;
    let q = ListQuery {
        app: Some("shop".into()),
        job: Some("ping".into()),
        ..ListQuery::default()
    };
    let (store, q) = (&store, &q);
    let listed = wait_for("the runs to move to history", WAIT, || async move {
        let listed = store.list(q).await.ok()?;
        let done = listed.len() == 6 && listed.iter().all(|s| s.status == InstanceStatus::Success);
        (done && store.running(|_, _| true).await.ok()?.is_empty()).then_some(listed)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), ids);

    let states = env.admin.job_states(Some("shop")).await?;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].last_instance, ids[0]);
    assert_eq!(states[0].last_status, InstanceStatus::Success);

    // Two days, in case the runs ended just before midnight (UTC).
    let stats = env.admin.stats(2, None).await?;
    let ended: u64 = stats.days.iter().map(|d| d.counts.total()).sum();
    assert_eq!(ended, 6, "each run counted once");
    assert_eq!(stats.running, 0);
    assert_eq!(stats.workers_online, 1);

    let newest = env
        .admin
        .list_instances(&ListQuery {
            status: Some(InstanceStatus::Success),
            limit: 3,
            ..ListQuery::default()
        })
        .await?;
    assert_eq!(newest.iter().map(|s| s.id).collect::<Vec<_>>(), ids[..3]);
    env.stop().await;
    Ok(())
}
