//! Messages between processes.
//!
//! Between our own processes they travel as MessagePack with named fields (compact, and
//! fields can be added without breaking older readers); what people and other programs
//! read or write (trigger bodies, events) is JSON.
//!
//! The worker protocol, in the order a shard item lives through it:
//! 1. the scheduler publishes a [`ShardTask`] on the shard subject (work queue);
//! 2. a worker pulls it, publishes a [`ShardReport`] `Started` on the result subject
//!    (best effort), runs it, streaming [`LogLine`]s, and sends in-progress acks;
//! 3. it publishes a [`ShardReport`] `Finished` (awaiting JetStream's ack), then acks
//!    the task (`Success`, `Failed`, `TimedOut`, `Cancelled`) or naks it with a delay
//!    (`Later`);
//! 4. meanwhile the scheduler may tell it to stop ([`StopShards`], core NATS): for a
//!    cancel, or an attempt the scheduler found past its timeout.
//!
//! A retry or a rerun after a lost worker is a new publication of the item: its task
//! carries the next `run`, and reports name the run they are about.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::instance::TriggerKind;
use crate::time::Timestamp;

/// Language of a stored script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptLang {
    /// `sh -c`.
    Shell,
    /// `python3`.
    Python,
    /// `node`.
    Node,
}

/// What a worker runs for a shard item: a snapshot of the job's kind and its details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// A Rust job registered in the worker under `handler`.
    Plugin {
        /// The registered name.
        handler: String,
    },
    /// A shell command line, run with `sh -c`.
    Command {
        /// The command line.
        command: String,
    },
    /// A script source run by an interpreter.
    Script {
        /// The interpreter.
        lang: ScriptLang,
        /// The source.
        source: String,
    },
    /// An HTTP request.
    Http {
        /// URL.
        url: String,
        /// Method.
        method: String,
        /// Headers, by name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// Body.
        body: String,
        /// Request timeout in milliseconds.
        timeout_ms: u64,
    },
}

/// One shard item in the work queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTask {
    /// Its instance.
    pub instance: InstanceId,
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// 0-based index.
    pub item: u32,
    /// Number of shard items of the instance.
    pub total: u32,
    /// This item's shard param.
    pub param: String,
    /// The instance's parameter string.
    pub params: String,
    /// What to run.
    pub exec: Execution,
    /// Timeout in milliseconds, 0 for none.
    pub timeout_ms: u64,
    /// When the instance was due.
    pub scheduled_at: Timestamp,
    /// Which publication of this shard item this is (1 the first time; the scheduler
    /// publishes an item again for a retry or after its worker was lost). Reports name
    /// it, so a report from an older publication is recognised as stale.
    #[serde(default = "first_run")]
    pub run: u32,
    /// Attempts before this publication: a worker's attempt number is this plus the
    /// message's delivery count.
    #[serde(default)]
    pub attempt_base: u32,
    /// Report on the urgent results subject
    /// ([`Topology::urgent_result_subject`](crate::Topology::urgent_result_subject)),
    /// which the scheduler reads before the others: the job fires again within
    /// seconds and its next run waits for this report. A worker that ignores it
    /// reports on the usual subject, which is as correct, only slower under load.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub urgent: bool,
    /// Not to begin before this time: the scheduler queues a scheduled fire's items a
    /// little ahead of its slot, and the worker holds the task (its slot taken, the
    /// message kept with in-progress acks) until then. Sent only to apps whose live
    /// workers all say they hold ([`WorkerInfo::holds`](crate::cluster::WorkerInfo::holds));
    /// absent on every other task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
}

fn first_run() -> u32 {
    1
}

/// How an attempt at a shard ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardOutcome {
    /// Done.
    Success,
    /// Failed with an error.
    Failed {
        /// Why.
        error: String,
    },
    /// Put back: run it again later.
    Later,
    /// Stopped by its timeout (counts as a failure for `retry`).
    TimedOut {
        /// What happened.
        error: String,
    },
    /// Stopped because its instance was cancelled.
    Cancelled,
}

/// What a report says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// An attempt started.
    Started,
    /// An attempt ended.
    Finished {
        /// When the attempt started.
        started_at: Timestamp,
        /// How it ended.
        outcome: ShardOutcome,
    },
}

/// A worker's report on a shard item, sent on the result subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReport {
    /// Its instance.
    pub instance: InstanceId,
    /// The shard item.
    pub item: u32,
    /// The reporting worker.
    pub worker: String,
    /// Which attempt (the task's `attempt_base` plus JetStream's delivery count).
    pub attempt: u32,
    /// The task's `run` (which publication of the item the worker got).
    #[serde(default = "first_run")]
    pub run: u32,
    /// When it was sent.
    pub at: Timestamp,
    /// What happened.
    pub kind: ReportKind,
}

/// A command about an instance, sent on the control subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Stop the instance; its pending shards never start.
    Cancel {
        /// Which instance.
        instance: InstanceId,
        /// When it was asked for.
        at: Timestamp,
    },
}

/// Tells workers to stop running shards, on `<ns>.stop.<app>.<job>.<instance>` (core
/// NATS: workers subscribe to their app's stop subjects and hear it at once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopShards {
    /// The instance.
    pub instance: InstanceId,
    /// Only this shard item (`None`: every shard of the instance).
    #[serde(default)]
    pub item: Option<u32>,
    /// Only this publication of the item (`None`: any).
    #[serde(default)]
    pub run: Option<u32>,
    /// Why (`cancelled`, `timed out after 10s`), for the shard's log.
    pub reason: String,
    /// What the stopped attempt ends as.
    pub outcome: StopOutcome,
}

/// What a stopped attempt reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// Its instance was cancelled.
    Cancelled,
    /// The scheduler found it past its timeout.
    TimedOut,
}

/// Which output a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// A script's standard output.
    Stdout,
    /// A script's standard error.
    Stderr,
    /// `JobContext::log` of a plugin, or the worker itself.
    Log,
}

/// One line of a shard's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its instance.
    pub instance: InstanceId,
    /// The shard item.
    pub item: u32,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// When it was written.
    pub at: Timestamp,
    /// Where it came from.
    pub stream: LogStream,
    /// The text, without the line end.
    pub line: String,
}

/// Shard params as written: `"a;b;c"` or `["a", "{\"x\":1}"]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShardParams {
    /// Semicolon-separated.
    Text(String),
    /// One entry per item.
    List(Vec<String>),
}

impl Default for ShardParams {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl ShardParams {
    /// The params, one per item; empty when none are given.
    pub fn items(&self) -> Vec<String> {
        match self {
            Self::Text(t) if t.is_empty() => Vec::new(),
            Self::Text(t) => t.split(';').map(str::to_string).collect(),
            Self::List(l) => l.clone(),
        }
    }

    /// Whether none are given.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text(t) => t.is_empty(),
            Self::List(l) => l.is_empty(),
        }
    }
}

/// The JSON body of a trigger (contract §3); every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Overrides the job's `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    /// Overrides the job's `shard_params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_params: Option<ShardParams>,
    /// Overrides the job's shard count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Idempotency key: a second trigger with the same key within 24 h starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl TriggerRequest {
    /// Parses a trigger body: empty (or only whitespace) means no overrides.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8 text".to_string())?;
        serde_json::from_str(text).map_err(|e| {
            format!(
                "body is not a valid trigger ({e}); expected JSON like {{\"params\": \"...\", \"shard_params\": \"a;b\", \"shards\": 2}}"
            )
        })
    }
}

/// Kinds of lifecycle events (contract §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An instance was created and its shards queued.
    InstanceStarted,
    /// A shard attempt started.
    ShardStarted,
    /// A shard attempt ended.
    ShardFinished,
    /// An instance ended.
    InstanceFinished,
    /// A trigger was refused.
    TriggerRejected,
    /// A fire was missed.
    Misfired,
    /// No live worker of the app can run the instance's shards.
    NoWorker,
    /// An alarm was raised.
    Alarm,
}

/// A lifecycle event on `<ns>.event.<app>.<job>` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The instance, or `null`.
    pub instance: Option<InstanceId>,
    /// When.
    pub at: Timestamp,
    /// App name (as given, for rejected triggers).
    pub app: String,
    /// Job name (as given, for rejected triggers).
    pub job: String,
    /// Shard item, for shard events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// Worker, for shard events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Attempt, for shard events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Resulting status (`shard_finished`, `instance_finished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Error of a failed shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What made the instance (`instance_started`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerKind>,
    /// Why a trigger was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why an alarm was raised (`alarm` events; the JSON key is `kind`).
    #[serde(default, rename = "kind", skip_serializing_if = "Option::is_none")]
    pub alarm: Option<crate::alarm::AlarmKind>,
    /// Alarms of the same job and kind left out since the last one (rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u32>,
}

impl Event {
    /// An event with only the required fields set.
    pub fn new(
        kind: EventKind,
        app: &str,
        job: &str,
        instance: Option<InstanceId>,
        at: Timestamp,
    ) -> Self {
        Self {
            kind,
            instance,
            at,
            app: app.to_string(),
            job: job.to_string(),
            item: None,
            worker: None,
            attempt: None,
            status: None,
            error: None,
            trigger: None,
            reason: None,
            alarm: None,
            suppressed: None,
        }
    }

    /// A `trigger_rejected` event.
    pub fn rejected(app: &str, job: &str, at: Timestamp, reason: impl Into<String>) -> Self {
        let mut e = Self::new(EventKind::TriggerRejected, app, job, None, at);
        e.reason = Some(reason.into());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_bodies() {
        assert_eq!(
            TriggerRequest::parse(b"").expect("empty"),
            TriggerRequest::default()
        );
        assert_eq!(
            TriggerRequest::parse(b" \n").expect("blank"),
            TriggerRequest::default()
        );
        let t = TriggerRequest::parse(br#"{"params":"x","shard_params":"a;b","shards":2}"#)
            .expect("valid");
        assert_eq!(t.params.as_deref(), Some("x"));
        assert_eq!(
            t.shard_params.map(|p| p.items()),
            Some(vec!["a".into(), "b".into()])
        );
        let t = TriggerRequest::parse(br#"{"shard_params":["1","{\"x\":1}"]}"#).expect("list");
        assert_eq!(t.shard_params.map(|p| p.items().len()), Some(2));
        for bad in [
            &b"garbage"[..],
            b"{\"params\":1}",
            b"{\"nope\":1}",
            b"[1]",
            b"\xff\xfe",
        ] {
            let err = TriggerRequest::parse(bad).expect_err("must fail");
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn messages_round_trip_as_msgpack() {
        let id = InstanceId::for_fire("a", "j", Timestamp(5));
        let task = ShardTask {
            instance: id,
            app: "a".into(),
            job: "j".into(),
            item: 1,
            total: 3,
            param: "b".into(),
            params: "p".into(),
            exec: Execution::Script {
                lang: ScriptLang::Python,
                source: "print(1)".into(),
            },
            timeout_ms: 0,
            scheduled_at: Timestamp(5),
            run: 2,
            attempt_base: 3,
            urgent: false,
            not_before: None,
        };
        let bytes = rmp_serde::to_vec_named(&task).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<ShardTask>(&bytes).expect("decode"),
            task
        );
        // `urgent` is written only when set (so tasks stay as they were for workers
        // that predate it), and read either way.
        let urgent = ShardTask {
            urgent: true,
            ..task.clone()
        };
        let bytes_urgent = rmp_serde::to_vec_named(&urgent).expect("encode");
        assert!(bytes_urgent.len() > bytes.len());
        assert_eq!(
            rmp_serde::from_slice::<ShardTask>(&bytes_urgent).expect("decode"),
            urgent
        );
        // So is `not_before`.
        let held = ShardTask {
            not_before: Some(Timestamp(7)),
            ..task.clone()
        };
        let bytes_held = rmp_serde::to_vec_named(&held).expect("encode");
        assert!(bytes_held.len() > bytes.len());
        assert_eq!(
            rmp_serde::from_slice::<ShardTask>(&bytes_held).expect("decode"),
            held
        );
        let report = ShardReport {
            instance: id,
            item: 1,
            worker: "w".into(),
            attempt: 2,
            run: 1,
            at: Timestamp(9),
            kind: ReportKind::Finished {
                started_at: Timestamp(7),
                outcome: ShardOutcome::Failed {
                    error: "boom".into(),
                },
            },
        };
        let bytes = rmp_serde::to_vec_named(&report).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<ShardReport>(&bytes).expect("decode"),
            report
        );
    }

    #[test]
    fn events_are_contract_json() {
        let e = Event::rejected("a", "j", Timestamp(0), "unknown job");
        let v: serde_json::Value = serde_json::to_value(&e).expect("json");
        assert_eq!(v["type"], "trigger_rejected");
        assert!(v["instance"].is_null());
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["reason"], "unknown job");
    }
}
