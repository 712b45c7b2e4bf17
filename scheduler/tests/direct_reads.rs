//! An instance is read directly from its id, never by scanning the instances or the
//! history bucket: `instance get`, `job trigger --wait` and `instance logs --follow`
//! cost a few reads however many instances there are. Checked against a real
//! nats-server with thousands of running and ended instances present, by watching every
//! JetStream API request the reads make.

use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats, codec};
use antares_scheduler::admin::Admin;
use antares_scheduler::store::{InstanceStore, Place, Stored};
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, TriggerKind};
use antares_schemas::messages::{Execution, LogLine, LogStream};
use antares_schemas::{InstanceId, Timestamp, Topology};
use futures::StreamExt;

/// Instances of each kind (running, ended) present while reading.
const MANY: usize = 1500;

fn instance(job: &str, at: i64) -> Instance {
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
        shard_params: vec![String::new(); 2],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

/// `MANY` running and `MANY` ended instances over 10 jobs; returns one of each.
async fn fill(store: &InstanceStore) -> anyhow::Result<(Stored, Stored)> {
    let made: Vec<_> = (0..2 * MANY)
        .map(|i| {
            let job = format!("j{}", i % 10);
            store.create(instance(&job, 1_800_000_000_000 + i as i64 * 1000))
        })
        .collect();
    let made: Vec<_> = futures::stream::iter(made).buffered(64).collect().await;
    let mut made = made.into_iter().collect::<Result<Vec<Stored>, _>>()?;
    let mut ended = made.split_off(MANY);
    for s in &mut ended {
        s.instance.summary.status = InstanceStatus::Success;
    }
    for chunk in ended.chunks(200) {
        let mut batch: Vec<_> = chunk.iter().map(|s| (s, Default::default())).collect();
        for res in store.archive_many(&mut batch).await {
            res?;
        }
    }
    Ok((made.swap_remove(MANY / 2), ended.swap_remove(MANY / 3)))
}

/// Every JetStream API request made while it watches (subject and body).
struct ApiWatch {
    sub: antares_nats::async_nats::Subscriber,
    client: antares_nats::async_nats::Client,
}

impl ApiWatch {
    async fn start(url: &str) -> anyhow::Result<Self> {
        let client = antares_nats::async_nats::connect(url).await?;
        let sub = client.subscribe("$JS.API.>").await?;
        client.flush().await?;
        Ok(Self { sub, client })
    }

    /// What was asked so far.
    async fn take(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        // What the server routed before this round trip has reached us after it.
        self.client.flush().await?;
        let mut out = Vec::new();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_millis(200), self.sub.next()).await
        {
            out.push((
                msg.subject.to_string(),
                String::from_utf8_lossy(&msg.payload).to_string(),
            ));
        }
        Ok(out)
    }
}

/// Consumers created on a bucket's stream (a scan is one).
fn scans_of(asked: &[(String, String)], bucket: &str) -> Vec<String> {
    asked
        .iter()
        .filter(|(s, _)| s.starts_with("$JS.API.CONSUMER.") && s.contains(&format!("KV_{bucket}")))
        .map(|(s, body)| format!("{s} {body}"))
        .collect()
}

/// Direct reads of a bucket's keys.
fn reads_of(asked: &[(String, String)], bucket: &str) -> usize {
    asked
        .iter()
        .filter(|(s, _)| s.starts_with(&format!("$JS.API.DIRECT.GET.KV_{bucket}")))
        .count()
}

#[tokio::test]
async fn instances_are_read_directly_by_id_among_thousands() -> anyhow::Result<()> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    provision(&nats, &ProvisionOptions::default()).await?;
    let admin = Admin::open(&nats).await?;
    let store = InstanceStore::open(&nats).await?;
    let (running, ended) = fill(&store).await?;
    let (running, ended) = (&running.instance.summary, &ended.instance.summary);
    let topo = &nats.topo;
    let buckets = [
        topo.instances_bucket(),
        topo.history_bucket(),
        topo.claims_bucket(),
    ];

    // A log line of the ended one.
    let line = LogLine {
        instance: ended.id,
        item: 1,
        attempt: 1,
        worker: "w".into(),
        at: Timestamp(1_800_000_000_000),
        stream: LogStream::Log,
        line: "hello".into(),
    };
    let subject = topo.log_subject(&ended.app, &ended.job, &ended.id, 1);
    nats.js
        .publish(subject, codec::encode("log line", &line)?)
        .await?
        .await?;

    let mut watch = ApiWatch::start(&server.url()).await?;
    watch.take().await?;

    // `instance get`, running and ended.
    let got = admin.get_instance(&running.id).await?;
    assert_eq!(got.summary.id, running.id);
    assert_eq!(got.summary.job, running.job);
    assert_eq!(got.shards.len(), 2);
    let got = admin.get_instance(&ended.id).await?;
    assert_eq!(
        (got.summary.id, got.summary.status),
        (ended.id, InstanceStatus::Success)
    );
    let (place, _) = store
        .find(&ended.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ended instance not found"))?;
    assert_eq!(place, Place::History);
    let never = InstanceId::for_fire("shop", "j0", Timestamp(1_700_000_000_000));
    assert!(admin.get_instance(&never).await.is_err());
    let asked = watch.take().await?;
    for bucket in &buckets {
        assert_eq!(scans_of(&asked, bucket), Vec::<String>::new(), "{bucket}");
    }
    // Per instance: its claim, its summary and chunk in one bucket or both.
    let reads: usize = buckets.iter().map(|b| reads_of(&asked, b)).sum();
    assert!(
        (4..=4 * 6).contains(&reads),
        "{reads} reads for 4 lookups: {asked:?}"
    );

    // `--wait` of an instance that has ended.
    let waited = admin
        .wait_instance(
            &ended.app,
            &ended.job,
            &ended.id,
            Some(Duration::from_secs(10)),
        )
        .await?;
    assert_eq!(waited.id, ended.id);
    // `instance logs` (following one that has ended stops at its end).
    let lines: Vec<_> = admin.logs(&ended.id, None, true).await?.collect().await;
    let lines = lines.into_iter().collect::<Result<Vec<_>, _>>()?;
    assert_eq!(lines, vec![line]);
    let asked = watch.take().await?;
    for bucket in &buckets {
        assert_eq!(scans_of(&asked, bucket), Vec::<String>::new(), "{bucket}");
    }
    let logs_consumers: Vec<&(String, String)> = asked
        .iter()
        .filter(|(s, _)| s.starts_with("$JS.API.CONSUMER.") && s.contains("CREATE"))
        .collect();
    let filter = topo.instance_logs_filter(&ended.app, &ended.job, &ended.id, None);
    assert!(
        !logs_consumers.is_empty()
            && logs_consumers
                .iter()
                .all(|(s, body)| s.contains(&topo.logs_stream()) && body.contains(&filter)),
        "{logs_consumers:?}"
    );
    Ok(())
}
