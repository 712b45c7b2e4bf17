//! Every endpoint once, with its errors: apps, jobs, triggers, instances, cluster, stats,
//! versions, cron previews, health and metrics.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::access::wait_ok;
use crate::support::Setup;

fn spec(description: &str) -> Value {
    json!({
        "app": "shop",
        "name": "report",
        "description": description,
        "kind": "script",
        "command": "echo hi",
        "schedule": {"cron": "0 0 2 * * ?"}
    })
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn apps_and_jobs_with_their_errors() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let api = s.admin_api().await?;

    let (status, app) = api
        .post(
            "/api/apps",
            json!({"name": "shop", "description": "the shop"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(
        api.post("/api/apps", json!({"name": "shop"})).await?.0,
        StatusCode::CONFLICT
    );
    let (status, body) = api.post("/api/apps", json!({"name": "Bad Name"})).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api.post("/api/apps", json!({"nam": "x"})).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("nam"), "{body}");
    let apps = api.expect("/api/apps", StatusCode::OK).await?;
    assert_eq!(apps[0]["name"], "shop");
    assert_eq!(
        api.expect("/api/apps/shop", StatusCode::OK).await?["description"],
        "the shop"
    );
    let (status, body) = api.get("/api/apps/nope").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("nope"), "{body}");

    // Jobs.
    let (status, body) = api.post("/api/apps/shop/jobs", spec("first")).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        api.post("/api/apps/shop/jobs", spec("again")).await?.0,
        StatusCode::CONFLICT
    );
    let (status, body) = api
        .put("/api/apps/shop/jobs/report", spec("second"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = api
        .expect("/api/apps/shop/jobs/report", StatusCode::OK)
        .await?;
    assert_eq!(job["description"], "second");
    let jobs = api.expect("/api/apps/shop/jobs", StatusCode::OK).await?;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));

    let (status, body) = api.put("/api/apps/shop/jobs/other", spec("x")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "name", "{body}");
    let mut bad = spec("x");
    bad["schedule"]["cron"] = json!("0 0 2 * * 9");
    let (status, body) = api.put("/api/apps/shop/jobs/report", bad).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "schedule.cron", "{body}");
    let mut bad = spec("x");
    bad["scheduel"] = json!({});
    let (status, body) = api.put("/api/apps/shop/jobs/report", bad).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "scheduel", "{body}");
    let (status, body) = api.post_raw("/api/apps/shop/jobs", "{not json").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("JSON"), "{body}");
    let (status, body) = api.post_raw("/api/login", "{\"user\": 1}").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("user"), "{body}");
    let (status, body) = api
        .post_raw(
            "/api/apps/shop/jobs/report/trigger",
            "{\"shards\": \"two\"}",
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The jobs page's rows: active with a next fire, until paused.
    let rows = api
        .expect("/api/apps/shop/job-rows", StatusCode::OK)
        .await?;
    assert_eq!(rows[0]["spec"]["name"], "report");
    assert_eq!(rows[0]["active"], true);
    assert!(
        rows[0]["next_fire"]
            .as_str()
            .is_some_and(|t| t.ends_with("02:00:00.000Z")),
        "{rows}"
    );
    let (status, body) = api.post_empty("/api/apps/shop/jobs/report/pause").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    let rows = api
        .expect("/api/apps/shop/job-rows", StatusCode::OK)
        .await?;
    assert_eq!(rows[0]["active"], false);
    assert_eq!(rows[0]["next_fire"], Value::Null);
    api.post_empty("/api/apps/shop/jobs/report/resume").await?;
    let (status, body) = api.post_empty("/api/apps/shop/pause").await?;
    assert_eq!(
        (status, body["enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    let rows = api
        .expect("/api/apps/shop/job-rows", StatusCode::OK)
        .await?;
    assert_eq!(rows[0]["active"], false, "a paused app's jobs do not fire");
    assert_eq!(
        api.post_empty("/api/apps/shop/resume").await?.0,
        StatusCode::OK
    );

    // A trigger answers the id of the instance it makes.
    let (status, body) = api
        .post(
            "/api/apps/shop/jobs/report/trigger",
            json!({"params": "p", "key": "k1"}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["instance"].as_str().map(str::len), Some(26), "{body}");

    // Unknown things.
    assert_eq!(
        api.get("/api/apps/shop/jobs/nope").await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.post_empty("/api/apps/shop/jobs/nope/trigger").await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/api/apps/nope/jobs").await?.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = api.get("/api/no/such/thing").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("/api/no/such/thing"), "{body}");
    let (status, body) = api.put("/api/apps", json!({})).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        error(&body).contains("PUT") && error(&body).contains("/api/apps"),
        "{body}"
    );
    let huge = format!(
        "{{\"params\": \"{}\"}}",
        "x".repeat(antares_console::MAX_BODY_BYTES)
    );
    let (status, body) = api
        .post_raw("/api/apps/shop/jobs/report/trigger", &huge)
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error(&body).contains("larger than"), "{body}");

    // Deleting: the app only once its jobs are gone, or with them when asked.
    assert_eq!(api.delete("/api/apps/shop").await?.0, StatusCode::CONFLICT);
    let (status, body) = api.delete("/api/apps/shop?with_jobs=maybe").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains("with_jobs"), "{body}");
    let (status, _) = api.post("/api/apps", json!({"name": "gone"})).await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .post(
            "/api/apps/gone/jobs",
            json!({"app": "gone", "name": "one", "kind": "script", "command": "true"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        api.delete("/api/apps/gone?with_jobs=true").await?.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/api/apps/gone").await?.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.delete("/api/apps/shop/jobs/report").await?.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get("/api/apps/shop/jobs/report").await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete("/api/apps/shop").await?.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/api/apps/shop").await?.0, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn instances_listed_got_and_cancelled() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.apply(
        "shop",
        r#"
app = "shop"
name = "nap"
kind = "plugin"
handler = "sleep"
params = "30s"
"#,
    )
    .await?;
    s.scheduler().await?;
    s.worker("shop").await?;
    let api = s.admin_api().await?;
    let (_, body) = api.post_empty("/api/apps/shop/jobs/nap/trigger").await?;
    let id = body["instance"].as_str().unwrap_or_default().to_string();
    let path = format!("/api/instances/{id}");
    let inst = wait_ok(&api, &path).await?;
    assert_eq!(inst["app"], "shop");
    assert_eq!(inst["trigger"], "manual");
    assert!(inst["shards"].is_array(), "{inst}");

    let list = api
        .expect("/api/instances?app=shop&job=nap&limit=5", StatusCode::OK)
        .await?;
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert!(list[0].get("shards").is_none(), "listings have no shards");
    let (status, body) = api.post_empty(&format!("{path}/cancel")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    antares_nats::wait::wait_for("cancelled", crate::support::WAIT, || async {
        let (_, i) = api.get(&path).await.ok()?;
        (i["status"] == "cancelled").then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let (status, body) = api.post_empty(&format!("{path}/cancel")).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let list = api
        .expect("/api/instances?status=cancelled", StatusCode::OK)
        .await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    assert_eq!(
        api.get("/api/instances/01JD3W6TQ6D0XGZ8M2Y5C9K7PE")
            .await?
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/api/instances/not-an-id").await?.0,
        StatusCode::BAD_REQUEST
    );
    for bad in [
        "status=done",
        "limit=0",
        "limit=5000",
        "limit=x",
        "before=x",
        "job=nap",
        "colour=red",
    ] {
        let (status, body) = api.get(&format!("/api/instances?{bad}")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(!error(&body).is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn cluster_stats_versions_and_cron_previews() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.scheduler().await?;
    s.worker("shop").await?;
    let api = s.admin_api().await?;
    api.post("/api/apps", json!({"name": "shop"})).await?;

    let cluster =
        antares_nats::wait::wait_for("a scheduler and a worker", crate::support::WAIT, || async {
            let (_, c) = api.get("/api/cluster").await.ok()?;
            let ok = c["schedulers"].as_array().is_some_and(|a| !a.is_empty())
                && c["workers"].as_array().is_some_and(|a| !a.is_empty());
            ok.then_some(c)
        })
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(cluster["workers"][0]["app"], "shop");

    let stats = api.expect("/api/stats?days=3", StatusCode::OK).await?;
    assert_eq!(stats["days"].as_array().map(Vec::len), Some(3), "{stats}");
    assert_eq!(
        api.get("/api/stats?days=0").await?.0,
        StatusCode::BAD_REQUEST
    );

    // Versions: each change of the spec is one, and an old one can be put back.
    api.post("/api/apps/shop/jobs", spec("first")).await?;
    api.put("/api/apps/shop/jobs/report", spec("second"))
        .await?;
    let versions = api
        .expect("/api/apps/shop/jobs/report/versions", StatusCode::OK)
        .await?;
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    let first = api
        .expect("/api/apps/shop/jobs/report/versions/1", StatusCode::OK)
        .await?;
    assert_eq!(first["spec"]["description"], "first");
    let (status, back) = api
        .post_empty("/api/apps/shop/jobs/report/versions/1/rollback")
        .await?;
    assert_eq!(status, StatusCode::OK, "{back}");
    let job = api
        .expect("/api/apps/shop/jobs/report", StatusCode::OK)
        .await?;
    assert_eq!(job["description"], "first");
    assert_eq!(
        api.get("/api/apps/shop/jobs/report/versions/99").await?.0,
        StatusCode::NOT_FOUND
    );

    // Cron previews: the same function as `antares cron next`.
    let times = api
        .expect(
            "/api/cron/preview?expr=0%200%202%20*%20*%20%3F&tz=Asia/Shanghai",
            StatusCode::OK,
        )
        .await?;
    let times = times.as_array().cloned().unwrap_or_default();
    assert_eq!(times.len(), 5);
    assert!(
        times
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.ends_with("18:00:00.000Z"))),
        "{times:?}"
    );
    let (status, body) = api
        .get("/api/cron/preview?expr=0%200%202%20*%20*%209")
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&body).contains('9'), "{body}");
    assert_eq!(
        api.get("/api/cron/preview").await?.0,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

#[tokio::test]
async fn health_and_metrics_need_no_login() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let anon = s.anonymous();
    let (status, body) = anon.get("/healthz").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    anon.post(
        "/api/login",
        json!({"user": "admin", "password": "not-it-at-all"}),
    )
    .await?;
    s.admin_api()
        .await?
        .expect(
            "/api/instances/01JD3W6TQ6D0XGZ8M2Y5C9K7PE",
            StatusCode::NOT_FOUND,
        )
        .await?;
    let res = anon
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await?;
    for want in [
        "antares_console_http_requests_total{",
        "route=\"/api/instances/{id}\"",
        "status=\"404\"",
        "antares_console_http_request_duration_seconds_bucket",
        "antares_console_sse_streams_open",
        "antares_console_logins_total{outcome=\"failed\"} 1",
        "antares_console_logins_total{outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    Ok(())
}
