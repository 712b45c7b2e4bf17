//! The optional events stream: provisioned with an events retention, every event is also
//! kept in `ATS_EVENTS`, so an integration that was down reads what it missed; a zero
//! retention deletes the stream, and provisioning without one leaves it as it is.

mod support;

use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_schemas::messages::TriggerRequest;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use serde_json::Value;
use support::Env;

async fn events_kept(env: &Env) -> anyhow::Result<Vec<Value>> {
    let stream = env.nats.stream(&env.nats.topo.events_stream()).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut info = stream.clone();
    let total = info.info().await?.state.messages;
    let mut out = Vec::new();
    let mut msgs = consumer.messages().await?;
    while (out.len() as u64) < total {
        let Some(msg) = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await? else {
            break;
        };
        out.push(serde_json::from_slice(&msg?.payload)?);
    }
    Ok(out)
}

fn with_events(retention: Option<Duration>) -> ProvisionOptions {
    ProvisionOptions {
        events_retention: retention,
        ..ProvisionOptions::default()
    }
}

#[tokio::test]
async fn events_are_kept_when_asked_and_the_stream_goes_when_told() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let name = env.nats.topo.events_stream();
    assert!(
        env.nats.stream(&name).await.is_err(),
        "no events stream unless asked for"
    );
    provision(&env.nats, &with_events(Some(Duration::from_secs(3600)))).await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"once\"\nhandler = \"noop\"\n",
    )
    .await?;
    env.run_worker(env.worker("shop")).await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("shop", "once", &TriggerRequest::default())
        .await?;
    env.finished(&id).await?;
    // Read after the fact, as a consumer that was down would.
    let env_ref = &env;
    let kept = antares_nats::wait::wait_for(
        "the instance's events to be kept",
        Duration::from_secs(20),
        || async move {
            let events = events_kept(env_ref).await.ok()?;
            let of_it: Vec<String> = events
                .iter()
                .filter(|e| e["instance"] == id.to_string())
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect();
            of_it
                .iter()
                .any(|t| t == "instance_finished")
                .then_some(of_it)
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(kept.contains(&"instance_started".to_string()), "{kept:?}");
    let mut info = env.nats.stream(&name).await?;
    let cfg = info.info().await?.config.clone();
    assert_eq!(cfg.max_age, Duration::from_secs(3600));
    assert!(cfg.max_bytes > 0, "bounded by bytes too");

    // Provisioning without a retention leaves it; zero deletes it (twice is fine).
    provision(&env.nats, &with_events(None)).await?;
    assert!(env.nats.stream(&name).await.is_ok());
    provision(&env.nats, &with_events(Some(Duration::ZERO))).await?;
    assert!(env.nats.stream(&name).await.is_err());
    provision(&env.nats, &with_events(Some(Duration::ZERO))).await?;
    env.stop().await;
    Ok(())
}
