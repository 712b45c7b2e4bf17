//! Where instances live, against a real nats-server: claims are exclusive, large
//! instances are chunked, ended ones move to history, and listings merge both.

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats};
use antares_scheduler::store::{CreateError, Dirty, InstanceStore, ListQuery, Place};
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, ShardStatus, TriggerKind};
use antares_schemas::machine::{self, Input};
use antares_schemas::messages::{Execution, ReportKind, ShardOutcome, ShardReport};
use antares_schemas::topology::SHARD_CHUNK;
use antares_schemas::{InstanceId, Timestamp, Topology};

async fn setup() -> anyhow::Result<(LocalServer, Nats, InstanceStore)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    provision(&nats, &ProvisionOptions::default()).await?;
    let store = InstanceStore::open(&nats).await?;
    Ok((server, nats, store))
}

fn fire(job: &str, at: i64, shards: usize) -> Instance {
    let at = Timestamp(at);
    Instance::create(NewInstance {
        id: InstanceId::for_fire("shop", job, at),
        app: "shop".into(),
        job: job.into(),
        trigger: TriggerKind::Cron,
        scheduled_at: at,
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        shard_params: (0..shards).map(|i| format!("p{i}")).collect(),
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

#[tokio::test]
async fn the_same_fire_claimed_twice_at_once_exists_once() -> anyhow::Result<()> {
    let (_server, _nats, store) = setup().await?;
    // Two schedulers that both believe they lead fire the same slot at the same moment.
    let (a, b) = tokio::join!(
        store.create(fire("sweep", 1_800_000_000_000, 3)),
        store.create(fire("sweep", 1_800_000_000_000, 3))
    );
    let created = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(created, 1, "exactly one claim wins");
    assert!(matches!(a.err().or(b.err()), Some(CreateError::Exists)));
    let listed = store.list(&ListQuery::default()).await?;
    assert_eq!(listed.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_large_instance_is_chunked_saved_and_moved_to_history() -> anyhow::Result<()> {
    let (_server, _nats, store) = setup().await?;
    let total = SHARD_CHUNK as usize * 2 + 7;
    let mut stored = store.create(fire("big", 1_800_000_000_000, total)).await?;
    let id = stored.instance.summary.id;
    assert_eq!(stored.chunk_revs.len(), 3);

    // Every shard succeeds, folded as one batch.
    let mut dirty = Dirty::default();
    let mut finished = false;
    for item in 0..total as u32 {
        let report = ShardReport {
            instance: id,
            item,
            worker: "w".into(),
            attempt: 1,
            run: 1,
            at: Timestamp(1_800_000_000_500),
            kind: ReportKind::Finished {
                started_at: Timestamp(1_800_000_000_100),
                outcome: ShardOutcome::Success,
            },
        };
        let step = machine::step(
            &mut stored.instance,
            &Input::Report(report),
            Timestamp(1_800_000_001_000),
        );
        dirty.summary |= step.summary_changed;
        dirty.items(&step.changed_items);
        finished |= step.effects.contains(&machine::Effect::Finished);
    }
    assert!(finished);
    store.save(&mut stored, dirty).await?;

    // A stale copy (another scheduler's) cannot overwrite it.
    let (_, mut stale) = store
        .find(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not found"))?;
    stale.summary_rev -= 1;
    stale.instance.summary.status = InstanceStatus::Cancelled;
    let refused = store
        .save(
            &mut stale,
            Dirty {
                summary: true,
                ..Dirty::default()
            },
        )
        .await;
    assert!(refused.is_err());

    store.archive(&stored).await?;
    let (place, back) = store
        .find(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not in history"))?;
    assert_eq!(place, Place::History);
    assert_eq!(back.instance.summary.status, InstanceStatus::Success);
    assert_eq!(back.instance.shards.len(), total);
    assert!(
        back.instance
            .shards
            .iter()
            .all(|s| s.status == ShardStatus::Success)
    );
    assert_eq!(
        back.instance.shards[total - 1].param,
        format!("p{}", total - 1)
    );
    assert!(store.running(|_, _| true).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn listings_merge_running_and_ended_newest_first_with_paging() -> anyhow::Result<()> {
    let (_server, _nats, store) = setup().await?;
    let mut ids = Vec::new();
    for (i, job) in ["a", "b", "a", "b", "a"].iter().enumerate() {
        let s = store
            .create(fire(job, 1_800_000_000_000 + i as i64 * 1000, 1))
            .await?;
        ids.push(s.instance.summary.id);
        if i % 2 == 0 {
            let mut s = s;
            let step = machine::step(
                &mut s.instance,
                &Input::Cancel { reason: None },
                Timestamp(1),
            );
            let mut dirty = Dirty {
                summary: true,
                ..Dirty::default()
            };
            dirty.items(&step.changed_items);
            store.save(&mut s, dirty).await?;
            store.archive(&s).await?;
        }
    }
    let all = store.list(&ListQuery::default()).await?;
    let listed: Vec<InstanceId> = all.iter().map(|s| s.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let q = ListQuery {
        app: Some("shop".into()),
        job: Some("a".into()),
        limit: 2,
        ..ListQuery::default()
    };
    let page1 = store.list(&q).await?;
    assert_eq!(
        page1.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2]]
    );
    let page2 = store
        .list(&ListQuery {
            before: Some(ids[2]),
            ..q.clone()
        })
        .await?;
    assert_eq!(page2.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[0]]);
    let cancelled = store
        .list(&ListQuery {
            status: Some(InstanceStatus::Cancelled),
            ..ListQuery::default()
        })
        .await?;
    assert_eq!(cancelled.len(), 3);
    Ok(())
}
