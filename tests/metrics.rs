//! `--metrics-listen` of `antares scheduler` and `antares worker`: Prometheus text on
//! `GET /metrics` that follows what the processes do.

mod support;

use antares_nats::wait::wait_for;
use antares_schemas::instance::InstanceStatus;
use support::{Env, WAIT, antares_process};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The value of the sample named exactly `series` (name and labels), if shown.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn scrape(port: u16) -> Option<String> {
    let res = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.text().await.ok()
}

#[tokio::test]
async fn scheduler_and_worker_metrics_follow_what_happens() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.apply(
        "m",
        "[[job]]\napp = \"m\"\nname = \"ok\"\nkind = \"script\"\ncommand = \"true\"\nshards = 3\n\n\
         [[job]]\napp = \"m\"\nname = \"bad\"\nkind = \"script\"\ncommand = \"exit 3\"\n\n\
         [[job]]\napp = \"m\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n",
    )
    .await?;
    let url = env.server.url();
    let (sp, wp) = (free_port()?, free_port()?);
    let (sl, wl) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{wp}"));
    let _scheduler = antares_process(
        &url,
        &[
            "scheduler",
            "--id",
            "s1",
            "--lease-ttl",
            "2s",
            "--lease-renew",
            "500ms",
            "--metrics-listen",
            &sl,
        ],
    )?;
    let _worker = antares_process(
        &url,
        &[
            "worker",
            "--app",
            "m",
            "--id",
            "w1",
            "--concurrency",
            "5",
            "--allow-scripts",
            "--metrics-listen",
            &wl,
        ],
    )?;
    let first = wait_for("the worker's metrics", WAIT, || scrape(wp))
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(sample(&first, "antares_worker_slots"), Some(5.0), "{first}");

    let ok = env.trigger("m", "ok", &Default::default()).await?;
    let bad = env.trigger("m", "bad", &Default::default()).await?;
    assert_eq!(
        env.finished(&ok).await?.summary.status,
        InstanceStatus::Success
    );
    assert_eq!(
        env.finished(&bad).await?.summary.status,
        InstanceStatus::Failed
    );

    let text = wait_for(
        "the worker to count 3 successes and 1 failure",
        WAIT,
        || async move {
            let t = scrape(wp).await?;
            let ok = sample(
                &t,
                "antares_worker_shards_total{outcome=\"success\",kind=\"script\"}",
            )?;
            let bad = sample(
                &t,
                "antares_worker_shards_total{outcome=\"failed\",kind=\"script\"}",
            )?;
            (ok >= 3.0 && bad >= 1.0).then_some(t)
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(
        sample(
            &text,
            "antares_worker_shard_duration_seconds_count{kind=\"script\"}"
        )
        .is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "antares_worker_slots_in_use"),
        Some(0.0),
        "{text}"
    );

    let text = wait_for(
        "the scheduler's metrics to show fires, outcomes and leading",
        WAIT,
        || async move {
            let t = scrape(sp).await?;
            let fired = sample(&t, "antares_scheduler_fires_total{trigger=\"every\"}")?;
            let ok = sample(
                &t,
                "antares_scheduler_instances_ended_total{status=\"success\"}",
            )?;
            let bad = sample(
                &t,
                "antares_scheduler_instances_ended_total{status=\"failed\"}",
            )?;
            let leads = sample(&t, "antares_scheduler_leading{partition=\"0\"}")?;
            (fired >= 2.0 && ok >= 1.0 && bad >= 1.0 && leads == 1.0).then_some(t)
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert!(
        sample(&text, "antares_scheduler_fire_lateness_seconds_count").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "antares_scheduler_shard_duration_seconds_count").is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert!(
        sample(&text, "antares_scheduler_shard_queue_depth").is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "antares_scheduler_results_backlog").is_some(),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_or_busy_metrics_address_is_refused_at_start() -> anyhow::Result<()> {
    let env = Env::start().await?;
    env.admin.create_app("m", "").await?;
    let url = env.server.url();
    let out = antares_process(&url, &["scheduler", "--metrics-listen", "nowhere"])?
        .wait_with_output()
        .await?;
    assert!(!out.status.success());
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let out = antares_process(&url, &["worker", "--app", "m", "--metrics-listen", &addr])?
        .wait_with_output()
        .await?;
    assert!(!out.status.success());
    Ok(())
}
