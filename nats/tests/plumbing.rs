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
    assert_eq!(again.buckets.len(), 16);
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
