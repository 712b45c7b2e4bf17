//! Http jobs end to end: a real scheduler and worker calling a local HTTP server, which
//! records what it was sent and answers as each route says.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::messages::TriggerRequest;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use futures::StreamExt;
use support::Env;

/// One request the server got.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    headers: BTreeMap<String, String>,
    body: String,
}

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Seen {
    fn record(&self, method: &axum::http::Method, headers: &HeaderMap, body: String) -> usize {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        let mut all = self.requests.lock().expect("lock");
        all.push(Request {
            method: method.to_string(),
            headers,
            body,
        });
        all.len()
    }

    fn all(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The long body `/broken` answers with: its start is quoted, the rest never read.
fn broken_body() -> String {
    format!("database is down\n{}", "x".repeat(2000))
}

/// Starts the test server; returns its base URL and what it records.
async fn server() -> anyhow::Result<(String, Seen)> {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/ok",
            any(
                |State(s): State<Seen>, method, headers: HeaderMap, body: String| async move {
                    s.record(&method, &headers, body);
                    "hello from the server\nall is well"
                },
            ),
        )
        .route(
            "/flaky",
            any(
                |State(s): State<Seen>, method, headers: HeaderMap, body: String| async move {
                    if s.record(&method, &headers, body) == 1 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            "busy, come back later",
                        )
                    } else {
                        (StatusCode::OK, [("retry-after", "0")], "done now")
                    }
                },
            ),
        )
        .route(
            "/broken",
            any(|| async { (StatusCode::INTERNAL_SERVER_ERROR, broken_body()) }),
        )
        .route(
            "/slow",
            any(|| async {
                // Slower than any timeout the tests set: the worker gives up first.
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("test http server failed: {e}");
        }
    });
    Ok((base, seen))
}

/// An env with a scheduler, one worker and the test server, and an http job on `route`.
async fn setup(route: &str, rest: &str) -> anyhow::Result<(Env, String, Seen)> {
    let mut env = Env::start().await?;
    let (base, seen) = server().await?;
    env.apply(
        "web",
        &format!(
            "app = \"web\"\nname = \"call\"\nkind = \"http\"\nhttp = {{ url = \"{base}{route}\", {rest} }}\n"
        ),
    )
    .await?;
    env.run_worker(env.worker("web").concurrency(4)).await?;
    env.scheduler("s1").await?;
    Ok((env, base, seen))
}

async fn log_lines(env: &Env, id: &InstanceId) -> anyhow::Result<Vec<String>> {
    let logs = env.admin.logs(id, None, false).await?;
    Ok(logs
        .filter_map(|l| async move { l.ok().map(|l| l.line) })
        .collect()
        .await)
}

#[tokio::test]
async fn a_2xx_succeeds_and_the_server_sees_the_shard() -> anyhow::Result<()> {
    let (mut env, base, seen) = setup(
        "/ok?token=secret",
        "method = \"put\", headers = { Authorization = \"Bearer t0k\", X-Team = \"billing\" }, body = \"{\\\"a\\\":1}\"",
    )
    .await?;
    let req = TriggerRequest {
        params: Some("p=1&q=é".into()),
        shard_params: Some(antares_schemas::messages::ShardParams::Text("x;y z".into())),
        ..TriggerRequest::default()
    };
    let id = env.trigger("web", "call", &req).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success, "{inst:?}");

    let mut got = seen.all();
    got.sort_by_key(|r| r.headers.get("antares-shard-item").cloned());
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, (r, param)) in got.iter().zip(["x", "y%20z"]).enumerate() {
        let h = |name: &str| r.headers.get(name).map(String::as_str);
        assert_eq!(r.method, "PUT");
        assert_eq!(r.body, "{\"a\":1}");
        assert_eq!(h("authorization"), Some("Bearer t0k"));
        assert_eq!(h("x-team"), Some("billing"));
        assert_eq!(h("antares-app"), Some("web"));
        assert_eq!(h("antares-job"), Some("call"));
        assert_eq!(h("antares-instance"), Some(id.to_string().as_str()));
        assert_eq!(h("antares-shard-item"), Some(i.to_string().as_str()));
        assert_eq!(h("antares-shard-total"), Some("2"));
        assert_eq!(h("antares-attempt"), Some("1"));
        assert_eq!(h("antares-params"), Some("p%3D1%26q%3D%C3%A9"));
        assert_eq!(h("antares-shard-param"), Some(param));
    }

    let lines = log_lines(&env, &id).await?;
    let status = format!("PUT {base}/ok: HTTP 200 OK in ");
    assert!(
        lines.iter().any(|l| l.starts_with(&status)),
        "the status line, without the query: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("secret")),
        "the query is never logged: {lines:?}"
    );
    assert!(
        lines.contains(&"hello from the server".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"all is well".to_string()), "{lines:?}");
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_503_is_later_and_the_next_attempt_succeeds() -> anyhow::Result<()> {
    let (mut env, _, seen) = setup("/flaky", "method = \"GET\"").await?;
    let id = env
        .trigger("web", "call", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success, "{inst:?}");
    let shard = &inst.shards[0];
    assert_eq!((shard.status, shard.attempts), (ShardStatus::Success, 2));
    let attempts: Vec<_> = seen
        .all()
        .iter()
        .map(|r| r.headers.get("antares-attempt").cloned())
        .collect();
    assert_eq!(attempts, [Some("1".into()), Some("2".into())]);
    let lines = log_lines(&env, &id).await?;
    assert!(
        lines.iter().any(|l| l
            .starts_with("HTTP 503 Service Unavailable: the shard runs again later")
            && l.contains("Retry-After `1`")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"busy, come back later".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"done now".to_string()), "{lines:?}");
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_500_fails_with_the_status_and_the_start_of_the_body() -> anyhow::Result<()> {
    let (mut env, base, _) = setup("/broken", "method = \"POST\"").await?;
    let id = env
        .trigger("web", "call", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed, "{inst:?}");
    let shard = &inst.shards[0];
    assert_eq!(shard.status, ShardStatus::Failed);
    let error = shard.error.clone().unwrap_or_default();
    let start = format!(
        "POST {base}/broken answered HTTP 500 Internal Server Error: database is down\nxxx"
    );
    assert!(error.starts_with(&start), "{error}");
    assert!(error.ends_with("x…"), "the body is cut: {error}");
    assert!(
        error.len() < 700,
        "at most 512 bytes of body: {}",
        error.len()
    );

    let lines = log_lines(&env, &id).await?;
    assert!(lines.contains(&"database is down".to_string()), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("only its first 512 bytes are read")),
        "{lines:?}"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn no_answer_within_http_timeout_fails_saying_so() -> anyhow::Result<()> {
    let (mut env, base, _) = setup("/slow", "method = \"GET\", timeout = \"300ms\"").await?;
    let id = env
        .trigger("web", "call", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Failed, "{inst:?}");
    assert_eq!(
        inst.shards[0].error.as_deref(),
        Some(format!("GET {base}/slow: no answer within 300ms (the job's http.timeout)").as_str())
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn past_the_jobs_own_timeout_the_request_is_timed_out() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (base, _) = server().await?;
    env.apply(
        "web",
        &format!(
            "app = \"web\"\nname = \"call\"\nkind = \"http\"\ntimeout = \"500ms\"\nhttp = {{ url = \"{base}/slow\", timeout = \"0s\" }}\n"
        ),
    )
    .await?;
    env.run_worker(env.worker("web")).await?;
    env.scheduler("s1").await?;
    let id = env
        .trigger("web", "call", &TriggerRequest::default())
        .await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::TimedOut, "{inst:?}");
    let shard = &inst.shards[0];
    assert_eq!(shard.status, ShardStatus::TimedOut);
    assert_eq!(shard.error.as_deref(), Some("timed out after 500ms"));
    env.stop().await;
    Ok(())
}
