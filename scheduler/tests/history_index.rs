//! Listings, job states and daily counts from what is written when instances move to
//! history, against a real nats-server: hundreds of ended instances page newest first,
//! each exactly once, at a bounded cost per page; filters pick the right scope.

use std::collections::BTreeMap;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats, now};
use antares_scheduler::SchedulerError;
use antares_scheduler::admin::{Admin, last_days};
use antares_scheduler::store::stats::{DAY_MS, day_label, day_of};
use antares_scheduler::store::{InstanceStore, ListQuery, Progress, Stored};
use antares_schemas::instance::{
    Instance, InstanceStatus, InstanceSummary, NewInstance, TriggerKind,
};
use antares_schemas::messages::Execution;
use antares_schemas::{InstanceId, Timestamp, Topology};
use futures::future::join_all;

async fn setup() -> anyhow::Result<(LocalServer, Nats, InstanceStore, Admin)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    let opts = ProvisionOptions {
        memory: true,
        ..ProvisionOptions::default()
    };
    provision(&nats, &opts).await?;
    let store = InstanceStore::open(&nats).await?;
    let admin = Admin::open(&nats).await?;
    Ok((server, nats, store, admin))
}

/// What every test instance is: `app/job`, scheduled at second `n` of a fixed day.
fn new_instance(app: &str, job: &str, n: i64) -> Instance {
    let at = Timestamp(1_800_000_000_000 + n * 1000);
    Instance::create(NewInstance {
        id: InstanceId::for_fire(app, job, at),
        app: app.into(),
        job: job.into(),
        trigger: TriggerKind::Cron,
        scheduled_at: at,
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        shard_params: vec!["p".into()],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

/// Creates instances in the instances bucket, many at a time.
async fn create_all(store: &InstanceStore, made: Vec<Instance>) -> anyhow::Result<Vec<Stored>> {
    let mut out = Vec::new();
    for window in made.chunks(64) {
        for res in join_all(window.iter().map(|i| store.create(i.clone()))).await {
            out.push(res?);
        }
    }
    Ok(out)
}

/// Ends an instance as the state machine would have: status, run times.
fn end(stored: &mut Stored, status: InstanceStatus, started: Timestamp, finished: Timestamp) {
    let s = &mut stored.instance.summary;
    s.status = status;
    s.started_at = Some(started);
    s.finished_at = Some(finished);
}

/// Moves instances to history the way the leader does, one batch.
async fn archive(store: &InstanceStore, batch: &[Stored]) -> anyhow::Result<()> {
    let mut refs: Vec<(&Stored, Progress)> =
        batch.iter().map(|s| (s, Progress::default())).collect();
    for res in store.archive_many(&mut refs).await {
        res?;
    }
    assert!(refs.iter().all(|(_, p)| p.recorded()));
    Ok(())
}

/// Pages through a listing with `limit`; returns the ids and the most index keys one
/// page read.
async fn page_through(
    store: &InstanceStore,
    q: &ListQuery,
) -> anyhow::Result<(Vec<InstanceId>, usize)> {
    let mut all = Vec::new();
    let mut most = 0;
    let mut q = q.clone();
    loop {
        let (page, cost) = store.list_counted(&q).await?;
        most = most.max(cost.index_reads);
        assert!(page.len() <= q.limit);
        let Some(last) = page.last() else { break };
        q.before = Some(last.id);
        all.extend(page.iter().map(|s| s.id));
    }
    Ok((all, most))
}

fn newest_first(list: &[&InstanceSummary]) -> Vec<InstanceId> {
    let mut ids: Vec<InstanceId> = list.iter().map(|s| s.id).collect();
    ids.sort_by(|a, b| b.cmp(a));
    ids
}

#[tokio::test]
async fn hundreds_of_ended_instances_page_newest_first_exactly_once() -> anyhow::Result<()> {
    let (_server, nats, store, admin) = setup().await?;
    // 720 instances over three jobs of two apps, ending with three statuses.
    let jobs = [("shop", "a"), ("shop", "b"), ("bank", "c")];
    let statuses = [
        InstanceStatus::Success,
        InstanceStatus::Failed,
        InstanceStatus::Cancelled,
    ];
    let made: Vec<Instance> = (0..720)
        .map(|n| {
            let (app, job) = jobs[n as usize % 3];
            new_instance(app, job, n)
        })
        .collect();
    let mut stored = create_all(&store, made).await?;
    for (n, s) in stored.iter_mut().enumerate() {
        let at = s.instance.summary.scheduled_at;
        end(s, statuses[n / 3 % 3], at, Timestamp(at.0 + 500));
    }
    // They end mostly in order, every tenth much later (a long run), in batches of
    // several sizes, some larger than a page.
    let mut order: Vec<(usize, usize)> = (0..stored.len())
        .map(|n| (if n % 10 == 0 { n + 400 } else { n }, n))
        .collect();
    order.sort();
    let ended: Vec<Stored> = order.iter().map(|(_, n)| stored[*n].clone()).collect();
    let mut at = 0;
    for size in [40, 300, 7, 120, 253].iter().cycle() {
        if at >= ended.len() {
            break;
        }
        let end_at = (at + size).min(ended.len());
        archive(&store, &ended[at..end_at]).await?;
        at = end_at;
    }
    assert!(
        store.running(|_, _| true).await?.is_empty(),
        "every one left the instances bucket"
    );

    // One still running, the newest: listed on top.
    let running = store.create(new_instance("shop", "a", 10_000)).await?;
    let summaries: Vec<InstanceSummary> =
        stored.iter().map(|s| s.instance.summary.clone()).collect();
    let mut expected: Vec<&InstanceSummary> = summaries.iter().collect();
    expected.push(&running.instance.summary);

    let q = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    let first = store.list(&q).await?;
    assert_eq!(first[0].id, running.instance.summary.id);
    assert_eq!(first[0].status, InstanceStatus::Pending);
    let (all, most) = page_through(&store, &q).await?;
    assert_eq!(
        all,
        newest_first(&expected),
        "every instance once, newest first"
    );
    assert!(most <= 12, "a page of 50 read {most} index keys");

    // Each filter lists exactly its instances.
    let filters = [
        (Some("shop"), None, None),
        (Some("bank"), Some("c"), None),
        (None, None, Some(InstanceStatus::Failed)),
        (Some("shop"), Some("b"), Some(InstanceStatus::Cancelled)),
        (None, Some("c"), None),
        (Some("shop"), Some("a"), Some(InstanceStatus::Pending)),
    ];
    for (app, job, status) in filters {
        let q = ListQuery {
            app: app.map(str::to_string),
            job: job.map(str::to_string),
            status,
            limit: 33,
            before: None,
        };
        let want: Vec<&InstanceSummary> = expected
            .iter()
            .copied()
            .filter(|s| app.is_none_or(|a| s.app == a))
            .filter(|s| job.is_none_or(|j| s.job == j))
            .filter(|s| status.is_none_or(|st| s.status == st))
            .collect();
        let (got, _) = page_through(&store, &q).await?;
        assert!(!got.is_empty(), "{app:?} {job:?} {status:?}");
        assert_eq!(got, newest_first(&want), "{app:?} {job:?} {status:?}");
    }

    // An entry whose history record is gone is skipped; the rest still page once each.
    let gone = &summaries[500];
    let history = nats.bucket(&nats.topo.history_bucket()).await?;
    history
        .purge(nats.topo.instance_key(&gone.app, &gone.job, &gone.id))
        .await?;
    let (all, _) = page_through(&store, &q).await?;
    let left: Vec<&InstanceSummary> = expected
        .iter()
        .copied()
        .filter(|s| s.id != gone.id)
        .collect();
    assert_eq!(all, newest_first(&left));

    // A limit above the most a page may hold is cut to it.
    let big = store
        .list(&ListQuery {
            limit: 5_000,
            ..ListQuery::default()
        })
        .await?;
    assert_eq!(big.len(), 720);
    // Asked of the operations the CLI and the console use, it is refused, saying why.
    let refused = admin
        .list_instances(&ListQuery {
            limit: 5_000,
            ..ListQuery::default()
        })
        .await
        .expect_err("a limit above 1000");
    assert!(refused.to_string().contains("1 to 1000"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_move_done_again_lists_once_and_keeps_the_newest_job_state() -> anyhow::Result<()> {
    let (_server, _nats, store, admin) = setup().await?;
    let made = (0..5).map(|n| new_instance("shop", "a", n)).collect();
    let mut stored = create_all(&store, made).await?;
    for s in &mut stored {
        let at = s.instance.summary.scheduled_at;
        end(s, InstanceStatus::Success, at, Timestamp(at.0 + 10));
    }
    // The newest ends first; the older ones after it must not take its place.
    archive(&store, &stored[4..]).await?;
    archive(&store, &stored[..4]).await?;
    // A move cut short after its records were written is done again by the next leader.
    archive(&store, &stored[2..]).await?;
    let listed = store.list(&ListQuery::default()).await?;
    assert_eq!(listed.len(), 5, "listed once each");
    let states = admin.job_states(Some("shop")).await?;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].last_instance, stored[4].instance.summary.id);
    assert_eq!(states[0].last_status, InstanceStatus::Success);
    Ok(())
}

#[tokio::test]
async fn job_states_and_daily_counts() -> anyhow::Result<()> {
    let (_server, nats, store, admin) = setup().await?;
    let today = now();
    let yesterday = Timestamp(today.0 - DAY_MS);
    // (app, job, status, finished, run time in ms)
    let runs = [
        ("shop", "a", InstanceStatus::Success, yesterday, 1_000),
        ("shop", "a", InstanceStatus::Failed, yesterday, 3_000),
        ("shop", "b", InstanceStatus::Success, today, 500),
        ("shop", "a", InstanceStatus::Success, today, 2_000),
        ("bank", "c", InstanceStatus::TimedOut, today, 9_000),
    ];
    let made = runs
        .iter()
        .enumerate()
        .map(|(n, (app, job, ..))| new_instance(app, job, n as i64))
        .collect();
    let mut stored = create_all(&store, made).await?;
    for (s, (_, _, status, finished, ran)) in stored.iter_mut().zip(&runs) {
        end(s, *status, Timestamp(finished.0 - ran), *finished);
    }
    archive(&store, &stored[..2]).await?;
    archive(&store, &stored[2..]).await?;

    // Each job's newest ended instance.
    let states = admin.job_states(None).await?;
    let by_job: BTreeMap<(String, String), (InstanceId, InstanceStatus)> = states
        .iter()
        .map(|s| {
            (
                (s.app.clone(), s.job.clone()),
                (s.last_instance, s.last_status),
            )
        })
        .collect();
    let id = |n: usize| stored[n].instance.summary.id;
    assert_eq!(by_job.len(), 3);
    assert_eq!(
        by_job[&("shop".into(), "a".into())],
        (id(3), InstanceStatus::Success)
    );
    assert_eq!(
        by_job[&("shop".into(), "b".into())],
        (id(2), InstanceStatus::Success)
    );
    assert_eq!(
        by_job[&("bank".into(), "c".into())],
        (id(4), InstanceStatus::TimedOut)
    );
    assert_eq!(admin.job_states(Some("bank")).await?.len(), 1);
    assert!(admin.job_states(Some("none")).await?.is_empty());

    // One live worker of shop, one running instance of bank.
    let workers = nats.bucket(&nats.topo.workers_bucket()).await?;
    workers
        .put(nats.topo.worker_key("shop", "w1"), "beat".into())
        .await?;
    store.create(new_instance("bank", "c", 100)).await?;

    let stats = admin.stats(4, None).await?;
    let labels: Vec<String> = last_days(now(), 4).into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        stats.days.iter().map(|d| d.day.clone()).collect::<Vec<_>>(),
        labels,
        "every day, oldest first"
    );
    let day = |t: Timestamp| {
        stats
            .days
            .iter()
            .find(|d| d.day == day_label(day_of(t)))
            .map(|d| d.counts.clone())
            .unwrap_or_default()
    };
    let (y, t) = (day(yesterday), day(today));
    assert_eq!(y.by_status.get(&InstanceStatus::Success), Some(&1));
    assert_eq!(y.by_status.get(&InstanceStatus::Failed), Some(&1));
    assert_eq!((y.duration_ms_sum, y.duration_ms_max), (4_000, 3_000));
    assert_eq!(t.total(), 3);
    assert_eq!(t.by_status.get(&InstanceStatus::TimedOut), Some(&1));
    assert_eq!((t.duration_ms_sum, t.duration_ms_max), (11_500, 9_000));
    assert_eq!(
        stats.days[0].counts.total(),
        0,
        "an empty day is there with nothing"
    );
    assert_eq!((stats.running, stats.workers_online), (1, 1));

    let shop = admin.stats(4, Some(&["shop".to_string()])).await?;
    let total: u64 = shop.days.iter().map(|d| d.counts.total()).sum();
    assert_eq!(total, 4);
    assert_eq!((shop.running, shop.workers_online), (0, 1));
    let bank = admin.stats(1, Some(&["bank".to_string()])).await?;
    assert_eq!(bank.days.len(), 1);
    assert_eq!(bank.running, 1);

    for days in [0, 367] {
        let err = admin.stats(days, None).await.expect_err("refused");
        assert!(matches!(err, SchedulerError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("days"), "{err}");
    }
    Ok(())
}

#[tokio::test]
async fn an_imported_history_lists_and_reads_as_an_archived_one() -> anyhow::Result<()> {
    let (_server, _nats, store, admin) = setup().await?;
    let made: Vec<Instance> = (0..1300)
        .map(|n| {
            let mut i = new_instance("shop", ["a", "b", "c"][n as usize % 3], n);
            i.summary.status = if n % 7 == 0 {
                InstanceStatus::Failed
            } else {
                InstanceStatus::Success
            };
            i
        })
        .collect();
    let ended: Vec<InstanceSummary> = made.iter().map(|i| i.summary.clone()).collect();
    let mut import = store.import_history();
    for batch in made.chunks(500) {
        import.add(batch).await?;
    }
    import.finish().await?;

    let all: Vec<&InstanceSummary> = ended.iter().collect();
    let (listed, most) = page_through(&store, &ListQuery::default()).await?;
    assert_eq!(listed, newest_first(&all));
    assert!(most <= 12, "a page of 50 read {most} index keys");
    let failed_b: Vec<&InstanceSummary> = ended
        .iter()
        .filter(|s| s.job == "b" && s.status == InstanceStatus::Failed)
        .collect();
    let q = ListQuery {
        app: Some("shop".into()),
        job: Some("b".into()),
        status: Some(InstanceStatus::Failed),
        limit: 20,
        ..ListQuery::default()
    };
    assert_eq!(page_through(&store, &q).await?.0, newest_first(&failed_b));
    let one = &made[777];
    assert_eq!(admin.get_instance(&one.summary.id).await?, *one);

    // Into scopes that have pages already: refused, and said why.
    let more = vec![{
        let mut i = new_instance("shop", "a", 5000);
        i.summary.status = InstanceStatus::Success;
        i
    }];
    let mut again = store.import_history();
    again.add(&more).await?;
    let refused = again.finish().await.expect_err("scopes have pages");
    assert!(refused.to_string().contains("no pages yet"), "{refused}");
    let running = vec![new_instance("shop", "a", 6000)];
    let refused = store
        .import_history()
        .add(&running)
        .await
        .expect_err("not ended");
    assert!(refused.to_string().contains("only ended"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn listings_leave_no_consumer_behind() -> anyhow::Result<()> {
    let (_server, nats, store, _admin) = setup().await?;
    create_all(
        &store,
        (0..5).map(|n| new_instance("shop", "a", n)).collect(),
    )
    .await?;
    let mut live = nats.buckets().await?.instances.stream.clone();
    let before = live.info().await?.state.consumer_count;
    // Far more listings than a stream may have consumers left over from them, one
    // after another, with running instances to scan and without.
    let q = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    for n in 0..300 {
        let q = ListQuery {
            app: (n % 2 == 0).then(|| "shop".to_string()),
            job: (n % 3 == 0).then(|| "none".to_string()),
            ..q.clone()
        };
        store.list(&q).await?;
    }
    assert_eq!(store.list(&q).await?.len(), 5);
    assert_eq!(
        live.info().await?.state.consumer_count,
        before,
        "every listing's scan ended its consumer"
    );
    Ok(())
}
