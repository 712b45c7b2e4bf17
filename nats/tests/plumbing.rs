//! The NATS plumbing against a real nats-server: provisioning, revision-checked writes,
//! scans, and the lease's takeover, fencing and release.

use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::lease::{self, Lease};
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::wait::wait_for;
use antares_nats::{ConnectOptions, Nats, NatsError};
use antares_schemas::{Timestamp, Topology};
use bytes::Bytes;

async fn setup() -> anyhow::Result<(LocalServer, Nats)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    provision(&nats, &ProvisionOptions::default()).await?;
    Ok((server, nats))
}

#[tokio::test]
async fn provisioning_is_idempotent() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let again = provision(&nats, &ProvisionOptions::default()).await?;
    assert_eq!(again.streams.len(), 6);
    assert_eq!(again.buckets.len(), 17);
    assert_eq!(again.partitions, 1);
    // Alarm deliveries: a work queue bounded by bytes that refuses new ones when full.
    let mut alarms = nats.stream(&nats.topo.alarms_stream()).await?;
    let cfg = alarms.info().await?.config.clone();
    assert_eq!(cfg.max_bytes, antares_nats::provision::ALARMS_MAX_BYTES);
    assert_eq!(
        cfg.discard,
        async_nats::jetstream::stream::DiscardPolicy::New
    );
    nats.buckets().await?;
    let bad = provision(
        &nats,
        &ProvisionOptions {
            replicas: 0,
            ..ProvisionOptions::default()
        },
    )
    .await;
    assert!(bad.is_err_and(|e| e.to_string().contains("--replicas")));
    Ok(())
}

#[tokio::test]
async fn revision_checked_writes_and_scans() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let b = nats.buckets().await?;
    let bucket = b.instances.name.clone();
    let v = |s: &str| Bytes::from(s.to_string());
    let r1 = kv::write(
        &nats,
        Write::put(&bucket, "a.j.X1".into(), v("1"), Expect::Revision(0)),
    )
    .await?;
    let dup = kv::write(
        &nats,
        Write::put(&bucket, "a.j.X1".into(), v("2"), Expect::Revision(0)),
    )
    .await;
    assert!(matches!(dup, Err(NatsError::WrongRevision { .. })));
    let r2 = kv::write(
        &nats,
        Write::put(&bucket, "a.j.X1".into(), v("2"), Expect::Revision(r1)),
    )
    .await?;
    let stale = kv::write(
        &nats,
        Write::put(&bucket, "a.j.X1".into(), v("3"), Expect::Revision(r1)),
    )
    .await;
    assert!(matches!(stale, Err(NatsError::WrongRevision { .. })));
    assert!(r2 > r1);
    kv::write(
        &nats,
        Write::put(&bucket, "a.j.X1.0".into(), v("chunk"), Expect::Any),
    )
    .await?;
    kv::write(
        &nats,
        Write::put(&bucket, "a.k.X2".into(), v("x"), Expect::Any),
    )
    .await?;
    kv::write(
        &nats,
        Write::put(&bucket, "b.k.X3".into(), v("y"), Expect::Any),
    )
    .await?;
    kv::write(&nats, Write::delete(&bucket, "b.k.X3".into(), Expect::Any)).await?;

    let mut summaries: Vec<String> = kv::scan(&nats, &b.instances, "*.*.*", true)
        .await?
        .into_iter()
        .map(|s| s.key)
        .collect();
    summaries.sort();
    assert_eq!(summaries, vec!["a.j.X1", "a.k.X2"]);
    let by_id = kv::scan(&nats, &b.instances, "*.*.X1", false).await?;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].value, v("2"));
    assert!(
        kv::scan(&nats, &b.instances, "*.*.NOPE", false)
            .await?
            .is_empty()
    );
    assert!(kv::scan(&nats, &b.history, ">", true).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn lease_is_exclusive_fenced_and_taken_over_after_expiry() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let store = nats.buckets().await?.leases.clone();
    let ttl = Duration::from_secs(1);
    let key = nats.topo.lease_key(0);
    let mut a = Lease::new(nats.clone(), store.clone(), key.clone(), "a".into(), ttl);
    let mut b = Lease::new(nats.clone(), store.clone(), key.clone(), "b".into(), ttl);
    assert!(a.tick(Timestamp(1)).await?);
    assert!(!b.tick(Timestamp(1)).await?);
    assert!(a.tick(Timestamp(2)).await?, "renewal keeps it");
    assert_eq!(
        lease::holder(&store, &key).await?.map(|h| h.record.holder),
        Some("a".to_string())
    );
    // A stops renewing (as if it died): B gets the lease once the TTL passes.
    let b = wait_for(
        "standby to take the expired lease",
        Duration::from_secs(10),
        || {
            let mut lease = Lease::new(nats.clone(), store.clone(), key.clone(), "b".into(), ttl);
            async move {
                lease
                    .tick(Timestamp(3))
                    .await
                    .ok()
                    .filter(|h| *h)
                    .map(|_| lease)
            }
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(b.is_held());
    // A comes back: its renewal is refused, and it knows it lost.
    let renewed = a.tick(Timestamp(4)).await?;
    assert!(!renewed);
    assert!(!a.is_held());
    Ok(())
}

#[tokio::test]
async fn released_lease_is_free_at_once() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let store = nats.buckets().await?.leases.clone();
    let ttl = Duration::from_secs(30);
    let key = nats.topo.lease_key(0);
    let mut a = Lease::new(nats.clone(), store.clone(), key.clone(), "a".into(), ttl);
    let mut b = Lease::new(nats.clone(), store.clone(), key.clone(), "b".into(), ttl);
    assert!(a.tick(Timestamp(1)).await?);
    assert!(!b.tick(Timestamp(1)).await?);
    a.release().await?;
    assert!(b.tick(Timestamp(2)).await?);
    Ok(())
}

/// The number of partitions is stored at provision and read at connect; the streams
/// store each trigger and report under its job's partition, the one `partition_of`
/// computes; splitting anew is refused while a scheduler runs or a message waits.
#[tokio::test]
async fn partitions_are_stored_and_streams_split_by_them() -> anyhow::Result<()> {
    let server = LocalServer::start_temp()?;
    let opts = ConnectOptions::url(server.url());
    let nats = Nats::connect(&opts, Topology::new("ats")?).await?;
    assert_eq!(
        nats.topo.partitions(),
        1,
        "nothing stored yet: one partition"
    );
    let four = ProvisionOptions {
        partitions: Some(4),
        ..ProvisionOptions::default()
    };
    assert_eq!(provision(&nats, &four).await?.partitions, 4);
    let nats = Nats::connect(&opts, Topology::new("ats")?).await?;
    assert_eq!(nats.topo.partitions(), 4, "read back at connect");
    // Provisioning again without the flag keeps the stored number.
    assert_eq!(
        provision(&nats, &ProvisionOptions::default())
            .await?
            .partitions,
        4
    );

    // Many jobs: each stored subject names the partition `partition_of` gives.
    let jobs: Vec<(String, String)> = (0..40)
        .map(|i| (format!("app{}", i % 3), format!("job-{i}")))
        .collect();
    for (app, job) in &jobs {
        nats.js
            .publish(nats.topo.trigger_subject(app, job), Bytes::new())
            .await?
            .await?;
    }
    let stream = nats.stream(&nats.topo.triggers_stream()).await?;
    let mut seen = std::collections::BTreeSet::new();
    for (app, job) in &jobs {
        let msg = stream
            .get_last_raw_message_by_subject(&nats.topo.stored_trigger_subject(app, job))
            .await?;
        let (a, j, p) = nats
            .topo
            .parse_trigger_subject(&msg.subject)
            .ok_or_else(|| anyhow::anyhow!("unparsed {}", msg.subject))?;
        assert_eq!((a, j), (app.as_str(), job.as_str()));
        seen.insert(p);
    }
    assert_eq!(seen.len(), 4, "40 jobs fall in every partition: {seen:?}");
    let id = antares_schemas::InstanceId::for_fire("app1", "job-1", Timestamp(1));
    nats.js
        .publish(
            nats.topo.control_subject("app1", "job-1", &id),
            Bytes::new(),
        )
        .await?
        .await?;
    let results = nats.stream(&nats.topo.results_stream()).await?;
    results
        .get_last_raw_message_by_subject(&nats.topo.stored_control_subject("app1", "job-1", &id))
        .await?;

    // Waiting triggers were stored under the old split: refused.
    let two = ProvisionOptions {
        partitions: Some(2),
        ..ProvisionOptions::default()
    };
    let busy = provision(&nats, &two).await;
    assert!(
        busy.as_ref()
            .is_err_and(|e| e.to_string().contains("still holds")),
        "{busy:?}"
    );
    stream.purge().await?;
    results.purge().await?;
    // A live scheduler leads by the old split: refused.
    let b = nats.buckets().await?;
    b.schedulers.put("s1", Bytes::from_static(b"x")).await?;
    let running = provision(&nats, &two).await;
    assert!(
        running
            .as_ref()
            .is_err_and(|e| e.to_string().contains("stop every scheduler")),
        "{running:?}"
    );
    b.schedulers.delete("s1").await?;
    // Stopped and drained: the new split is stored, and the consumers of partitions
    // that are gone are deleted.
    let spec = |p: u32| antares_nats::queue::ConsumerSpec {
        stream: nats.topo.triggers_stream(),
        durable: nats.topo.triggers_consumer(p),
        filter: Some(nats.topo.partition_triggers_filter(p)),
        ack_wait: Duration::from_secs(5),
        max_ack_pending: 10,
    };
    antares_nats::queue::durable(&nats, &spec(3)).await?;
    assert_eq!(provision(&nats, &two).await?.partitions, 2);
    let names: Vec<String> = futures::TryStreamExt::try_collect(
        nats.stream(&nats.topo.triggers_stream())
            .await?
            .consumer_names(),
    )
    .await?;
    assert!(names.is_empty(), "{names:?}");
    let nats = Nats::connect(&opts, Topology::new("ats")?).await?;
    assert_eq!(nats.topo.partitions(), 2);
    let bad = provision(
        &nats,
        &ProvisionOptions {
            partitions: Some(0),
            ..ProvisionOptions::default()
        },
    )
    .await;
    assert!(bad.is_err_and(|e| e.to_string().contains("--partitions 0")));
    Ok(())
}

/// Many tasks writing windows at once on one connection all finish: a window takes
/// its room for acknowledgements before sending, so no two wait on each other's
/// unawaited acknowledgements (sent piecemeal, 40 windows of 256 exceed the
/// connection's room and stalled for good).
#[tokio::test]
async fn concurrent_windows_of_writes_never_wait_on_each_other() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let bucket = nats.topo.cursors_bucket();
    let tasks: Vec<_> = (0..40)
        .map(|t| {
            let nats = nats.clone();
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let writes = (0..600)
                    .map(|i| {
                        Write::put(
                            &bucket,
                            format!("t{t}.k{i}"),
                            Bytes::from_static(b"x"),
                            Expect::Any,
                        )
                    })
                    .collect();
                kv::write_all(&nats, writes).await
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(tasks))
        .await
        .map_err(|_| anyhow::anyhow!("windows of writes waited on each other"))?;
    for results in all {
        for r in results? {
            r?;
        }
    }
    Ok(())
}

/// A second connection is a connection of its own (the server sees two clients), with
/// the same names.
#[tokio::test]
async fn a_connection_made_again_is_its_own() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let again = nats.connect_again("urgent fires").await?;
    assert_ne!(
        nats.client.server_info().client_id,
        again.client.server_info().client_id
    );
    assert_eq!(
        again.topo.kv_subject("b", "k"),
        nats.topo.kv_subject("b", "k")
    );
    // Its writes are acknowledged on it.
    let bucket = nats.topo.cursors_bucket();
    kv::write(
        &again,
        Write::put(
            &bucket,
            "k".to_string(),
            Bytes::from_static(b"v"),
            Expect::Any,
        ),
    )
    .await?;
    Ok(())
}
