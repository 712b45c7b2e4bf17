//! Live streams: a running instance's log lines until it ends, and lifecycle events.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Setup, Sse};

const TALKER: &str = r#"
app = "shop"
name = "talker"
kind = "script"
command = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
"#;

#[tokio::test]
async fn following_a_running_instance_streams_its_lines_and_ends_with_it() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.apply("shop", TALKER).await?;
    s.scheduler().await?;
    s.worker("shop").await?;
    let api = s.admin_api().await?;
    let (status, body) = api.post_empty("/api/apps/shop/jobs/talker/trigger").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["instance"].as_str().unwrap_or_default().to_string();

    // Asked at once: the instance is waited for, then followed while it runs.
    let res = api
        .request(
            reqwest::Method::GET,
            &format!("/api/instances/{id}/logs?follow=1"),
        )
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let mut sse = Sse::new(res);
    let mut lines = Vec::new();
    let end = loop {
        let Some((name, data)) = sse.next().await? else {
            anyhow::bail!("the stream ended without an `end` event after {lines:?}");
        };
        let data: Value = serde_json::from_str(&data)?;
        if name == "end" {
            break data;
        }
        assert_eq!(name, "message", "{data}");
        assert_eq!(data["shard"], 0, "{data}");
        assert!(data["at"].is_string(), "{data}");
        lines.push(data["line"].as_str().unwrap_or_default().to_string());
    };
    assert_eq!(lines, ["line 1", "line 2", "line 3"]);
    assert_eq!(end["status"], "success", "{end}");
    assert!(sse.next().await?.is_none(), "the stream closes after `end`");

    // Without follow: the same lines as text.
    let res = api
        .request(
            reqwest::Method::GET,
            &format!("/api/instances/{id}/logs?shard=0"),
        )
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await?;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("[shard 0] line 2"), "{text}");
    let (status, body) = api
        .get(&format!("/api/instances/{id}/logs?shard=7"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api
        .get(&format!("/api/instances/{id}/logs?follow=yes"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn the_event_stream_carries_instance_events() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.apply("shop", TALKER).await?;
    s.apply(
        "billing",
        r#"
app = "billing"
name = "noop"
kind = "plugin"
handler = "noop"
"#,
    )
    .await?;
    s.scheduler().await?;
    s.worker("shop").await?;
    let api = s.admin_api().await?;
    api.post(
        "/api/users",
        serde_json::json!({"name": "bill", "password": "bill-password", "role": "viewer", "apps": ["billing"]}),
    )
    .await?;
    let bill = s.login("bill", "bill-password").await?;

    let open = |who: &crate::support::Api| who.request(reqwest::Method::GET, "/api/events").send();
    let mut all = Sse::new(open(&api).await?);
    let mut billing_only = Sse::new(open(&bill).await?);
    let (_, body) = api.post_empty("/api/apps/shop/jobs/talker/trigger").await?;
    let id = body["instance"].as_str().unwrap_or_default().to_string();
    let (_, body) = api
        .post_empty("/api/apps/billing/jobs/noop/trigger")
        .await?;
    let billing_id = body["instance"].as_str().unwrap_or_default().to_string();

    let started = loop {
        let Some((_, data)) = all.next().await? else {
            anyhow::bail!("the event stream ended");
        };
        let e: Value = serde_json::from_str(&data)?;
        if e["instance"] == id.as_str() && e["type"] == "instance_started" {
            break e;
        }
    };
    assert_eq!(started["app"], "shop");
    // The viewer of billing sees billing's events, and never shop's.
    loop {
        let Some((_, data)) = billing_only.next().await? else {
            anyhow::bail!("the event stream ended");
        };
        let e: Value = serde_json::from_str(&data)?;
        assert_eq!(e["app"], "billing", "{e}");
        if e["instance"] == billing_id.as_str() {
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn open_streams_end_when_the_console_stops() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    let api = s.admin_api().await?;
    let mut events = Sse::new(
        api.request(reqwest::Method::GET, "/api/events")
            .send()
            .await?,
    );
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("antares_console_sse_streams_open 1"),
        "{metrics}"
    );
    s.stop().await?;
    assert!(
        events.next().await?.is_none(),
        "the stream ends with the console"
    );
    Ok(())
}
