//! The jobs listings with thousands of jobs: pages by name that visit every job once in
//! order, their bounds, the console's own writes seen by the next page, and a page view
//! that reads only its page (never a scan of the jobs or job states).

use std::sync::atomic::Ordering;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::wait::wait_for;
use antares_nats::{Nats, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::InstanceStatus;
use antares_schemas::spec::JobSpec;
use antares_schemas::stats::JobState;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Api, Setup, WAIT, test_options};

/// Jobs of the app listed.
const JOBS: usize = 3000;

fn name(i: usize) -> String {
    format!("job-{i:04}")
}

/// GET `path`: status, the JSON body and the `X-Next-After` header.
async fn page(api: &Api, path: &str) -> anyhow::Result<(StatusCode, Value, Option<String>)> {
    let res = api.request(reqwest::Method::GET, path).send().await?;
    let status = res.status();
    let next = res
        .headers()
        .get("x-next-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = res.json().await?;
    Ok((status, body, next))
}

/// Walks every page of `path` (which ends in `?limit=N`): the names seen, in order, and
/// how many pages it took.
async fn walk(
    api: &Api,
    path: &str,
    name_of: fn(&Value) -> Option<&str>,
) -> anyhow::Result<(Vec<String>, usize)> {
    let (mut names, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let url = match &after {
            Some(a) => format!("{path}&after={a}"),
            None => path.to_string(),
        };
        let (status, body, next) = page(api, &url).await?;
        anyhow::ensure!(status == StatusCode::OK, "GET {url}: {status}: {body}");
        let items = body.as_array().cloned().unwrap_or_default();
        pages += 1;
        for item in &items {
            names.push(name_of(item).unwrap_or("?").to_string());
        }
        match next {
            Some(n) => {
                anyhow::ensure!(
                    Some(n.as_str()) == names.last().map(String::as_str),
                    "the cursor is the page's last name"
                );
                after = Some(n);
            }
            None => return Ok((names, pages)),
        }
        anyhow::ensure!(pages <= JOBS, "paging does not end");
    }
}

/// Messages the connection has received so far.
fn received(nats: &Nats) -> u64 {
    nats.client.statistics().in_messages.load(Ordering::Relaxed)
}

#[tokio::test]
async fn thousands_of_jobs_are_listed_a_page_at_a_time() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.admin.create_app("shop", "").await?;
    s.admin.create_app("other", "").await?;
    let spec = |app: &str, name: String| JobSpec {
        app: app.into(),
        name,
        ..JobSpec::default()
    };
    let mut specs: Vec<JobSpec> = (0..JOBS).map(|i| spec("shop", name(i))).collect();
    specs.extend((0..3).map(|i| spec("other", name(i))));
    s.admin.apply_jobs(specs).await?;
    // A last state for every job, so that reading all states would show as much as
    // reading all specs.
    let b = s.nats.buckets().await?;
    let writes = (0..JOBS)
        .map(|i| {
            let state = JobState {
                app: "shop".into(),
                job: name(i),
                last_instance: InstanceId::for_manual(now(), i as u128),
                last_status: InstanceStatus::Success,
                last_scheduled_at: now(),
                last_finished_at: Some(now()),
            };
            let key = s.nats.topo.jobstate_key("shop", &name(i));
            Ok(Write::put(
                &b.jobstate.name,
                key,
                codec::encode("job state", &state)?,
                Expect::Any,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for w in kv::write_all(&s.nats, writes).await {
        w?;
    }

    // A console with a connection of its own, to count what a page view reads.
    let nats = s.connect().await?;
    let base = s.serve_on(&nats, test_options()).await?;
    let api = Api {
        base,
        ..s.admin_api().await?
    };
    let all: Vec<String> = (0..JOBS).map(name).collect();

    // Every job once, in order, whichever listing.
    let (names, pages) = walk(&api, "/api/apps/shop/jobs?limit=250", |j| {
        j["name"].as_str()
    })
    .await?;
    assert_eq!((names.len(), pages), (JOBS, 12));
    assert_eq!(names, all);
    let (names, _) = walk(&api, "/api/apps/shop/job-rows?limit=1000", |r| {
        r["spec"]["name"].as_str()
    })
    .await?;
    assert_eq!(names, all);
    let (_, rows, _) = page(&api, "/api/apps/shop/job-rows?limit=1").await?;
    assert_eq!(rows[0]["state"]["last_status"], "success", "{rows}");
    let (names, _) = walk(&api, "/api/apps/other/jobs?limit=2", |j| j["name"].as_str()).await?;
    assert_eq!(names, vec![name(0), name(1), name(2)]);

    // Default size, cursors, prefixes.
    let (status, body, next) = page(&api, "/api/apps/shop/jobs").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(100));
    assert_eq!(next.as_deref(), Some("job-0099"));
    let (_, body, next) = page(
        &api,
        "/api/apps/shop/jobs?prefix=job-12&after=job-1250&limit=1000",
    )
    .await?;
    let names: Vec<&str> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names.len(), 49, "job-1251 to job-1299");
    assert_eq!((names[0], names[48], next), ("job-1251", "job-1299", None));
    let (_, body, next) = page(
        &api,
        "/api/apps/shop/jobs?prefix=job-2&after=job-0001&limit=2",
    )
    .await?;
    assert_eq!(
        (body[0]["name"].clone(), next.as_deref()),
        (json!("job-2000"), Some("job-2001")),
        "a cursor before the prefix starts at it"
    );
    let (_, body, next) = page(&api, "/api/apps/shop/jobs?after=job-2999").await?;
    assert_eq!((body, next), (json!([]), None));
    let (_, body, _) = page(&api, "/api/apps/shop/job-rows?prefix=nothing-like-it").await?;
    assert_eq!(body, json!([]));

    // Bounds, each refused naming what is wrong.
    for (query, named) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("after=Not%20A%20Name", "after"),
        ("prefix=a.b", "prefix"),
        ("before=job-0001", "before"),
    ] {
        for list in ["jobs", "job-rows"] {
            let (status, body, _) = page(&api, &format!("/api/apps/shop/{list}?{query}")).await?;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{list}?{query}: {body}");
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains(named)),
                "{list}?{query}: {body}"
            );
        }
    }
    assert_eq!(
        page(&api, "/api/apps/nope/jobs").await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        page(&api, "/api/apps/nope/job-rows").await?.0,
        StatusCode::NOT_FOUND
    );

    // A page view reads its page, not the jobs or the states of the app.
    for path in [
        "/api/apps/shop/job-rows?limit=100",
        "/api/apps/shop/jobs?limit=100&after=job-1000",
    ] {
        let before = received(&nats);
        let (status, body, _) = page(&api, path).await?;
        assert_eq!(
            (status, body.as_array().map(Vec::len)),
            (StatusCode::OK, Some(100))
        );
        let read = received(&nats) - before;
        assert!(
            read <= 250,
            "{path}: {read} messages read for a page of 100 of {JOBS} jobs"
        );
    }

    // The console's own writes are in its next page.
    let (status, body) = api
        .post(
            "/api/apps/shop/jobs",
            json!({"app": "shop", "name": "job-1250a", "kind": "script", "command": "true"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body, _) = page(&api, "/api/apps/shop/jobs?after=job-1250&limit=1").await?;
    assert_eq!(body[0]["name"], "job-1250a");
    assert_eq!(
        api.delete("/api/apps/shop/jobs/job-1251").await?.0,
        StatusCode::NO_CONTENT
    );
    let (_, body, _) = page(&api, "/api/apps/shop/job-rows?after=job-1250a&limit=1").await?;
    assert_eq!(body[0]["spec"]["name"], "job-1252");

    // And a write from elsewhere shows up soon after.
    s.admin
        .apply_jobs(vec![spec("shop", "job-9999".into())])
        .await?;
    let api2 = api.clone();
    wait_for("job-9999 listed", WAIT, || {
        let api = api2.clone();
        async move {
            let (_, body, _) = page(&api, "/api/apps/shop/jobs?after=job-2999")
                .await
                .ok()?;
            (body[0]["name"] == "job-9999").then_some(())
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    s.stop().await
}
