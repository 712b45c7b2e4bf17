//! Alarms (contract §10) end to end: a real nats-server, an in-process scheduler and
//! worker, a local HTTP server as the webhook and a tiny SMTP sink as the mail server.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{codec, now};
use antares_scheduler::SchedulerOptions;
use antares_scheduler::alarm::AlarmOptions;
use antares_scheduler::alarm::webhook::signature;
use antares_schemas::Timestamp;
use antares_schemas::alarm::AlarmKind;
use antares_schemas::instance::InstanceStatus;
use antares_schemas::messages::{EventKind, TriggerRequest};
use antares_worker::JobResult;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use support::{Env, Recorder, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request the webhook answered with 200.
#[derive(Debug)]
struct Got {
    signature: Option<String>,
    body: bytes::Bytes,
    json: Value,
}

#[derive(Clone)]
struct Hook {
    tx: mpsc::UnboundedSender<Got>,
    /// Requests answered 500 before the first 200.
    fail_first: u32,
    calls: Arc<AtomicU32>,
}

async fn receive(State(h): State<Hook>, headers: HeaderMap, body: bytes::Bytes) -> StatusCode {
    let n = h.calls.fetch_add(1, Ordering::SeqCst);
    if n < h.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let signature = headers
        .get("x-antares-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = h.tx.send(Got {
        signature,
        body,
        json,
    });
    StatusCode::OK
}

/// A webhook on a local port: its URL, what it accepted, and how many calls it had.
async fn webhook(
    fail_first: u32,
) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Got>, Arc<AtomicU32>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicU32::new(0));
    let hook = Hook {
        tx,
        fail_first,
        calls: calls.clone(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hook);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook?token=t", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, rx, calls))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Got>, what: &str) -> anyhow::Result<Got> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("no webhook call: {what}"))
}

/// A scheduler with quick retries and a signing secret.
async fn scheduler(env: &mut Env, change: impl FnOnce(&mut AlarmOptions)) -> anyhow::Result<()> {
    let mut alarms = AlarmOptions {
        webhook_secret: Some("s3cret".into()),
        first_retry: Duration::from_millis(200),
        ..AlarmOptions::default()
    };
    change(&mut alarms);
    env.scheduler_with("s1", |o| SchedulerOptions { alarms, ..o })
        .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test]
async fn a_webhook_gets_fail_and_timeout_alarms_signed() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, _) = webhook(0).await?;
    env.apply(
        "shop",
        &format!(
            "[[job]]\napp = \"shop\"\nname = \"boom\"\nhandler = \"fail\"\nparams = \"disk full\"\n\
             alarm = {{ webhooks = [\"{url}\"] }}\n\
             [[job]]\napp = \"shop\"\nname = \"slow\"\nhandler = \"sleep\"\nparams = \"60s\"\ntimeout = \"300ms\"\n\
             alarm = {{ webhooks = [\"{url}\"] }}\n"
        ),
    )
    .await?;
    scheduler(&mut env, |_| {}).await?;
    env.run_worker(env.worker("shop")).await?;
    let mut events = env.events("shop", "boom").await?;

    let boom = env
        .trigger("shop", "boom", &TriggerRequest::default())
        .await?;
    let got = next(&mut rx, "the fail alarm").await?;
    assert_eq!(
        keys(&got.json),
        ["app", "at", "error", "instance", "job", "kind", "status"]
    );
    assert_eq!(got.json["kind"], "fail");
    assert_eq!(got.json["app"], "shop");
    assert_eq!(got.json["job"], "boom");
    assert_eq!(got.json["instance"], boom.to_string());
    assert_eq!(got.json["status"], "failed");
    assert!(
        got.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("disk full")),
        "{}",
        got.json
    );
    assert_eq!(
        got.signature.as_deref(),
        Some(signature("s3cret", &got.body).as_str())
    );
    assert!(
        got.signature
            .as_deref()
            .is_some_and(|s| s.starts_with("sha256=") && s.len() == 7 + 64)
    );
    // The alarm event went out too.
    let e = Env::event_where(&mut events, "the alarm event", |e| {
        e.kind == EventKind::Alarm && e.instance == Some(boom)
    })
    .await?;
    assert_eq!(e.alarm, Some(AlarmKind::Fail));

    let slow = env
        .trigger("shop", "slow", &TriggerRequest::default())
        .await?;
    let got = next(&mut rx, "the timeout alarm").await?;
    assert_eq!(got.json["kind"], "timeout");
    assert_eq!(got.json["instance"], slow.to_string());
    assert_eq!(got.json["status"], "timed_out");
    assert_eq!(
        got.signature.as_deref(),
        Some(signature("s3cret", &got.body).as_str())
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_failing_webhook_is_retried_while_other_jobs_fire_on_time() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, calls) = webhook(2).await?;
    env.apply(
        "shop",
        &format!(
            "[[job]]\napp = \"shop\"\nname = \"boom\"\nhandler = \"fail\"\n\
             alarm = {{ webhooks = [\"{url}\"] }}\n\
             [[job]]\napp = \"shop\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = {{ every = \"1s\" }}\n"
        ),
    )
    .await?;
    scheduler(&mut env, |a| a.first_retry = Duration::from_secs(1)).await?;
    env.run_worker(env.worker("shop")).await?;
    let boom = env
        .trigger("shop", "boom", &TriggerRequest::default())
        .await?;
    let raised = env.finished(&boom).await?;
    let got = next(&mut rx, "the alarm after two 500s").await?;
    assert_eq!(got.json["instance"], boom.to_string());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two refusals, then delivered"
    );
    // While the delivery waited for its retries (1 s, then 2 s), the schedule went on:
    // every slot of `tick` in that time has its instance.
    let from = raised.summary.finished_at.unwrap_or(now());
    let to = Timestamp(now().millis() - 300);
    let slots = (to.millis() / 1000) - (from.millis() / 1000);
    assert!(
        slots >= 2,
        "the retries took {} ms",
        to.millis() - from.millis()
    );
    let ticks = env
        .instances_where("shop", "tick", usize::try_from(slots)?, |s| {
            s.scheduled_at > from && s.scheduled_at <= to
        })
        .await?;
    assert_eq!(
        i64::try_from(ticks.len())?,
        slots,
        "one instance per slot while the alarm was retried"
    );
    env.stop().await;
    Ok(())
}

/// Writes a job's cursor as a scheduler that fired long ago would have left it.
async fn set_cursor(env: &Env, app: &str, job: &str, at: Timestamp) -> anyhow::Result<()> {
    let value = codec::encode("cursor", &at)?;
    let w = Write::put(
        &env.nats.topo.cursors_bucket(),
        env.nats.topo.job_key(app, job),
        value,
        Expect::Any,
    );
    kv::write(&env.nats, w).await?;
    Ok(())
}

#[tokio::test]
async fn missed_fires_raise_a_misfire_alarm() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, _) = webhook(0).await?;
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"nightly\"\nhandler = \"noop\"\nschedule = {{ every = \"1s\" }}\n\
             misfire = \"skip\"\nalarm = {{ webhooks = [\"{url}\"], on = [\"misfire\"] }}\n"
        ),
    )
    .await?;
    set_cursor(
        &env,
        "shop",
        "nightly",
        Timestamp(now().millis() - 3_600_000),
    )
    .await?;
    let mut events = env.events("shop", "nightly").await?;
    scheduler(&mut env, |_| {}).await?;
    let got = next(&mut rx, "the misfire alarm").await?;
    assert_eq!(got.json["kind"], "misfire");
    assert!(got.json["instance"].is_null());
    assert!(
        got.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("missed")),
        "{}",
        got.json
    );
    Env::event_where(&mut events, "the alarm event", |e| {
        e.kind == EventKind::Alarm && e.alarm == Some(AlarmKind::Misfire)
    })
    .await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_instance_running_too_long_raises_a_stuck_alarm_once() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, calls) = webhook(0).await?;
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"hang\"\nhandler = \"sleep\"\nparams = \"60s\"\n\
             alarm = {{ webhooks = [\"{url}\"], on = [\"stuck\"], stuck_after = \"1s\" }}\n"
        ),
    )
    .await?;
    scheduler(&mut env, |_| {}).await?;
    env.run_worker(env.worker("shop")).await?;
    let id = env
        .trigger("shop", "hang", &TriggerRequest::default())
        .await?;
    let got = next(&mut rx, "the stuck alarm").await?;
    assert_eq!(got.json["kind"], "stuck");
    assert_eq!(got.json["instance"], id.to_string());
    assert_eq!(got.json["status"], "running");
    assert!(
        got.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("still running")),
        "{}",
        got.json
    );
    // It ends by a cancel: no second stuck alarm came for it meanwhile.
    env.admin.cancel_instance(&id).await?;
    env.finished(&id).await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_first_success_after_a_failure_raises_recovered() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, _) = webhook(0).await?;
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"flaky\"\nhandler = \"flaky\"\n\
             alarm = {{ webhooks = [\"{url}\"], on = [\"fail\", \"recovered\"] }}\n"
        ),
    )
    .await?;
    // No rate limit in the way: each alarm of the sequence is raised.
    scheduler(&mut env, |a| a.repeat_window = Duration::ZERO).await?;
    let flaky = Recorder::new("flaky", |ctx| {
        if ctx.params() == "fail" {
            JobResult::failed("broken")
        } else {
            JobResult::Success
        }
    });
    env.run_worker(env.worker("shop").register(flaky)).await?;
    let run = |params: &str| TriggerRequest {
        params: Some(params.into()),
        ..TriggerRequest::default()
    };
    let first = env.trigger("shop", "flaky", &run("ok")).await?;
    assert_eq!(
        env.finished(&first).await?.summary.status,
        InstanceStatus::Success
    );
    let failed = env.trigger("shop", "flaky", &run("fail")).await?;
    let got = next(&mut rx, "the fail alarm").await?;
    assert_eq!(
        (got.json["kind"].as_str(), got.json["instance"].as_str()),
        (Some("fail"), Some(failed.to_string().as_str()))
    );
    let ok = env.trigger("shop", "flaky", &run("ok")).await?;
    let got = next(&mut rx, "the recovered alarm").await?;
    assert_eq!(
        (got.json["kind"].as_str(), got.json["instance"].as_str()),
        (Some("recovered"), Some(ok.to_string().as_str()))
    );
    assert_eq!(got.json["status"], "success");
    // A second success in a row is no recovery: the next alarm is the next failure's.
    let again = env.trigger("shop", "flaky", &run("ok")).await?;
    env.finished(&again).await?;
    let failed = env.trigger("shop", "flaky", &run("fail")).await?;
    let got = next(&mut rx, "the second fail alarm").await?;
    assert_eq!(
        (got.json["kind"].as_str(), got.json["instance"].as_str()),
        (Some("fail"), Some(failed.to_string().as_str()))
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn repeats_within_the_window_are_left_out_and_counted() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (url, mut rx, calls) = webhook(0).await?;
    env.apply(
        "shop",
        &format!(
            "app = \"shop\"\nname = \"boom\"\nhandler = \"fail\"\nalarm = {{ webhooks = [\"{url}\"] }}\n"
        ),
    )
    .await?;
    scheduler(&mut env, |a| a.repeat_window = Duration::from_secs(3)).await?;
    env.run_worker(env.worker("shop")).await?;
    let one = env
        .trigger("shop", "boom", &TriggerRequest::default())
        .await?;
    let first = next(&mut rx, "the first alarm").await?;
    assert_eq!(first.json["instance"], one.to_string());
    assert!(first.json.get("suppressed").is_none());
    // Failures one after the other until the window has passed and one is raised again.
    let mut failures = 1u32;
    let second = loop {
        let id = env
            .trigger("shop", "boom", &TriggerRequest::default())
            .await?;
        env.finished(&id).await?;
        failures += 1;
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            break got.ok_or_else(|| anyhow::anyhow!("webhook gone"))?;
        }
        anyhow::ensure!(failures < 100, "no second alarm after {failures} failures");
    };
    // Those between the two were left out, and counted in the second (a failure
    // whose alarm was late to arrive may be counted in it too).
    let suppressed = second.json["suppressed"].as_u64().unwrap_or(0);
    assert!(failures >= 3, "the window lets one through per 3 s");
    assert!(
        (1..=u64::from(failures) - 2).contains(&suppressed),
        "{suppressed} left out of {failures}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one delivery per window");
    env.stop().await;
    Ok(())
}

/// One mail a [`smtp_sink`] took: its recipients and its data.
#[derive(Debug)]
struct Mail {
    to: Vec<String>,
    data: String,
}

/// A tiny SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; every mail is sent
/// on the channel. Returns its port.
async fn smtp_sink() -> anyhow::Result<(u16, mpsc::UnboundedReceiver<Mail>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = sock.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ready\r\n").await;
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "RCPT" => {
                            to.push(line.clone());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go on\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            let _ = tx.send(Mail {
                                to: std::mem::take(&mut to),
                                data,
                            });
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"502 not here\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((port, rx))
}

#[tokio::test]
async fn an_email_alarm_reaches_the_mail_server() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let (port, mut mails) = smtp_sink().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"boom\"\nhandler = \"fail\"\nparams = \"disk full\"\n\
         alarm = { emails = [\"ops@example.com\"] }\n",
    )
    .await?;
    scheduler(&mut env, |a| {
        a.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        a.smtp_from = Some("Antares <antares@example.com>".into());
    })
    .await?;
    env.run_worker(env.worker("shop")).await?;
    let id = env
        .trigger("shop", "boom", &TriggerRequest::default())
        .await?;
    let mail = tokio::time::timeout(WAIT, mails.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no mail"))?;
    assert!(
        mail.to.iter().any(|r| r.contains("ops@example.com")),
        "{:?}",
        mail.to
    );
    for want in [
        "shop/boom",
        "disk full",
        &id.to_string(),
        "antares@example.com",
    ] {
        assert!(mail.data.contains(want), "`{want}` not in:\n{}", mail.data);
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_email_without_a_mail_server_is_given_up_visibly() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        "shop",
        "app = \"shop\"\nname = \"boom\"\nhandler = \"fail\"\nalarm = { emails = [\"ops@example.com\"] }\n",
    )
    .await?;
    scheduler(&mut env, |a| a.attempts = 2).await?;
    env.run_worker(env.worker("shop")).await?;
    let mut events = env.events("shop", "boom").await?;
    let id = env
        .trigger("shop", "boom", &TriggerRequest::default())
        .await?;
    let e = Env::event_where(&mut events, "the alarm given up", |e| {
        e.kind == EventKind::Alarm && e.instance == Some(id) && e.reason.is_some()
    })
    .await?;
    let reason = e.reason.unwrap_or_default();
    assert!(
        reason.contains("ops@example.com")
            && reason.contains("smtp_url")
            && reason.contains("2 attempt"),
        "{reason}"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_alarm_settings_stop_the_scheduler_saying_which() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let opts = SchedulerOptions {
        alarms: AlarmOptions {
            smtp_url: Some("smtps://me:pa55@mail.example.com:465".into()),
            smtp_from: None,
            ..AlarmOptions::default()
        },
        ..SchedulerOptions::default()
    };
    let e = antares_scheduler::run(env.connect().await?, opts, std::future::pending())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("smtp_from") && !e.contains("pa55"), "{e}");
    Ok(())
}
