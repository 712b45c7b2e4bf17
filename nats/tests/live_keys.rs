//! A bucket's keys kept live against a real nats-server: writes, deletes, purges and
//! expiries followed; a set that is not whole yet said so, and made whole again once its
//! bucket is back.

use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::live_keys::LiveKeys;
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::wait::wait_for;
use antares_nats::{ConnectOptions, Nats};
use antares_schemas::Topology;
use async_nats::jetstream::kv::Config;
use bytes::Bytes;

const WAIT: Duration = Duration::from_secs(20);

async fn setup() -> anyhow::Result<(LocalServer, Nats)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    provision(
        &nats,
        &ProvisionOptions {
            memory: true,
            ..ProvisionOptions::default()
        },
    )
    .await?;
    Ok((server, nats))
}

fn put(bucket: &str, key: &str) -> Write {
    Write::put(bucket, key.into(), Bytes::from_static(b"v"), Expect::Any)
}

fn names(keys: &LiveKeys, prefix: &str) -> Vec<String> {
    keys.page(prefix, None, 100).keys
}

#[tokio::test]
async fn keys_follow_writes_deletes_purges_and_expiries() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let sessions = nats.buckets().await?.sessions.clone();
    let bucket = sessions.name.clone();
    for w in kv::write_all(
        &nats,
        vec![
            put(&bucket, "a.1"),
            put(&bucket, "a.2"),
            put(&bucket, "b.1"),
            Write::delete(&bucket, "a.2".into(), Expect::Any),
        ],
    )
    .await
    {
        w?;
    }

    let keys = LiveKeys::watch(&nats, &sessions);
    keys.wait_ready(WAIT).await?;
    assert_eq!(names(&keys, "a."), vec!["a.1"]);
    assert_eq!(keys.len(), 2);

    // Each write is in the set once `sync` returns.
    kv::write(&nats, put(&bucket, "a.3")).await?;
    keys.sync(WAIT).await?;
    assert_eq!(names(&keys, "a."), vec!["a.1", "a.3"]);
    kv::write(&nats, Write::delete(&bucket, "a.1".into(), Expect::Any)).await?;
    keys.sync(WAIT).await?;
    assert_eq!(names(&keys, "a."), vec!["a.3"]);
    kv::write(&nats, Write::purge(&bucket, "a.3".into())).await?;
    keys.sync(WAIT).await?;
    assert_eq!(names(&keys, "a."), Vec::<String>::new());

    // A key whose TTL runs out goes too (the server's marker ends it).
    kv::write(&nats, put(&bucket, "c.1").with_ttl(Duration::from_secs(1))).await?;
    keys.sync(WAIT).await?;
    assert_eq!(names(&keys, "c."), vec!["c.1"]);
    wait_for("c.1 to expire", WAIT, || {
        let gone = names(&keys, "c.").is_empty();
        async move { gone.then_some(()) }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(names(&keys, ""), vec!["b.1"]);
    Ok(())
}

#[tokio::test]
async fn a_set_not_whole_says_so_until_its_bucket_can_be_read() -> anyhow::Result<()> {
    let (_server, nats) = setup().await?;
    let config = || Config {
        bucket: "keys-test".into(),
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Config::default()
    };
    let store = nats.js.create_key_value(config()).await?;
    nats.js.delete_key_value("keys-test").await?;

    // Its consumer cannot be made: not ready, and saying why.
    let keys = LiveKeys::watch(&nats, &store);
    let err = keys
        .wait_ready(Duration::from_millis(300))
        .await
        .expect_err("not ready without its bucket");
    assert!(err.to_string().contains("still being read"), "{err}");
    assert!(!keys.is_ready());

    // The bucket is back: the watcher tries again and catches up.
    let again = nats.js.create_key_value(config()).await?;
    again.put("x.1", Bytes::from_static(b"v")).await?;
    wait_for("the keys to be read", WAIT, || {
        let found = keys.is_ready() && names(&keys, "x.") == vec!["x.1"];
        async move { found.then_some(()) }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(())
}
