//! The encodings the worker protocol page documents, checked against the real types so
//! the page cannot drift from them.

use antares_nats::codec;
use antares_schemas::cluster::WorkerInfo;
use antares_schemas::messages::{
    Execution, LogLine, LogStream, ReportKind, ScriptLang, ShardOutcome, ShardReport, ShardTask,
    StopOutcome, StopShards,
};
use antares_schemas::{InstanceId, Timestamp};
use serde_json::{Value, json};

fn as_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Value> {
    let bytes = codec::encode("value", value)?;
    Ok(rmp_serde::from_slice(&bytes)?)
}

#[test]
fn shard_tasks_reports_stops_and_log_lines_are_named_maps() -> anyhow::Result<()> {
    let id = InstanceId::for_fire("billing", "report", Timestamp(1_800_000_000_000));
    let task = ShardTask {
        instance: id,
        app: "billing".into(),
        job: "report".into(),
        item: 1,
        total: 2,
        param: "b".into(),
        params: "p".into(),
        exec: Execution::Script {
            lang: ScriptLang::Python,
            source: "print(1)".into(),
        },
        timeout_ms: 0,
        scheduled_at: Timestamp(1_800_000_000_000),
        run: 1,
        attempt_base: 0,
        urgent: false,
        not_before: None,
    };
    assert_eq!(
        as_json(&task)?,
        json!({
            "instance": id.to_string(), "app": "billing", "job": "report", "item": 1,
            "total": 2, "param": "b", "params": "p",
            "exec": {"script": {"lang": "python", "source": "print(1)"}},
            "timeout_ms": 0, "scheduled_at": 1_800_000_000_000_i64, "run": 1, "attempt_base": 0,
        })
    );
    let plugin = Execution::Plugin {
        handler: "x".into(),
    };
    assert_eq!(as_json(&plugin)?, json!({"plugin": {"handler": "x"}}));
    let mut http = Execution::Http {
        url: "https://h/p".into(),
        method: "GET".into(),
        headers: [("X-A".to_string(), "1".to_string())].into(),
        body: String::new(),
        timeout_ms: 10_000,
    };
    assert_eq!(
        as_json(&http)?,
        json!({"http": {"url": "https://h/p", "method": "GET", "headers": {"X-A": "1"}, "body": "", "timeout_ms": 10_000}})
    );
    if let Execution::Http { headers, .. } = &mut http {
        headers.clear();
    }
    assert_eq!(
        as_json(&http)?,
        json!({"http": {"url": "https://h/p", "method": "GET", "body": "", "timeout_ms": 10_000}}),
        "no headers: the field is left out"
    );

    let mut report = ShardReport {
        instance: id,
        item: 1,
        worker: "w1".into(),
        attempt: 2,
        run: 1,
        at: Timestamp(5),
        kind: ReportKind::Started,
    };
    assert_eq!(
        as_json(&report)?,
        json!({"instance": id.to_string(), "item": 1, "worker": "w1", "attempt": 2, "run": 1, "at": 5, "kind": "started"})
    );
    report.kind = ReportKind::Finished {
        started_at: Timestamp(4),
        outcome: ShardOutcome::Failed {
            error: "boom".into(),
        },
    };
    assert_eq!(
        as_json(&report)?["kind"],
        json!({"finished": {"started_at": 4, "outcome": {"failed": {"error": "boom"}}}})
    );
    report.kind = ReportKind::Finished {
        started_at: Timestamp(4),
        outcome: ShardOutcome::Later,
    };
    assert_eq!(
        as_json(&report)?["kind"]["finished"]["outcome"],
        json!("later")
    );
    for (outcome, expected) in [
        (
            ShardOutcome::TimedOut {
                error: "timed out after 1s".into(),
            },
            json!({"timed_out": {"error": "timed out after 1s"}}),
        ),
        (ShardOutcome::Cancelled, json!("cancelled")),
    ] {
        report.kind = ReportKind::Finished {
            started_at: Timestamp(4),
            outcome,
        };
        assert_eq!(as_json(&report)?["kind"]["finished"]["outcome"], expected);
    }

    let mut stop = StopShards {
        instance: id,
        item: None,
        run: None,
        reason: "cancelled".into(),
        outcome: StopOutcome::Cancelled,
    };
    assert_eq!(
        as_json(&stop)?,
        json!({"instance": id.to_string(), "item": null, "run": null, "reason": "cancelled", "outcome": "cancelled"})
    );
    stop.item = Some(3);
    stop.run = Some(2);
    stop.outcome = StopOutcome::TimedOut;
    assert_eq!(
        as_json(&stop)?,
        json!({"instance": id.to_string(), "item": 3, "run": 2, "reason": "cancelled", "outcome": "timed_out"})
    );
    // What a worker in another language may send: the optional fields left out.
    let bytes = rmp_serde::to_vec_named(&json!({
        "instance": id.to_string(), "reason": "timed out after 10s", "outcome": "timed_out",
    }))?;
    let decoded: StopShards = codec::decode("stop message", &bytes)?;
    assert_eq!((decoded.item, decoded.run), (None, None));

    // The heartbeat as a worker in another language writes it, and as an older one did
    // (without `http`: it runs no http jobs).
    let mut beat = json!({
        "id": "py1", "app": "shop", "host": "h", "pid": 7, "started_at": 1, "last_seen": 2,
        "running": 0, "capacity": 4, "allow_scripts": false, "plugins": ["py-echo"],
        "http": true, "version": "python-example", "some_new_field": 1,
    });
    let info: WorkerInfo = codec::decode("worker info", &rmp_serde::to_vec_named(&beat)?)?;
    assert!(info.http && info.can_run(&http));
    if let Some(m) = beat.as_object_mut() {
        m.remove("http");
    }
    let info: WorkerInfo = codec::decode("worker info", &rmp_serde::to_vec_named(&beat)?)?;
    assert!(!info.http && !info.can_run(&http));
    assert!(!info.can_run(&plugin) && info.plugins == ["py-echo"]);

    let line = LogLine {
        instance: id,
        item: 1,
        attempt: 1,
        worker: "w1".into(),
        at: Timestamp(6),
        stream: LogStream::Stderr,
        line: "oops".into(),
    };
    assert_eq!(
        as_json(&line)?,
        json!({"instance": id.to_string(), "item": 1, "attempt": 1, "worker": "w1", "at": 6, "stream": "stderr", "line": "oops"})
    );
    Ok(())
}
