use super::*;
use crate::limits::{MAX_HTTP_HEADER_BYTES, MAX_HTTP_HEADERS, MAX_SOURCE_BYTES};
use crate::messages::ShardParams;
use std::collections::BTreeMap;

fn toml_one(text: &str) -> Result<JobSpec, SpecError> {
    let mut jobs = parse_jobs(text, SpecFormat::Toml)?;
    assert_eq!(jobs.len(), 1, "one job expected");
    Ok(jobs.remove(0))
}

fn base() -> JobSpec {
    JobSpec {
        app: "billing".into(),
        name: "nightly-report".into(),
        ..JobSpec::default()
    }
}

/// A job that sets every field this version runs to something other than its default
/// (`routing`, `workers` and `alarm` keep theirs: see [`unsupported`]).
fn full() -> JobSpec {
    JobSpec {
        app: "billing".into(),
        name: "nightly-report".into(),
        description: "Nightly \"report\"\nsecond line".into(),
        schedule: Some(ScheduleSpec {
            cron: Some("0 0 2 * * ?".into()),
            tz: Some("Asia/Shanghai".into()),
            every: None,
            at: None,
        }),
        kind: JobKind::Script,
        handler: None,
        command: None,
        script: Some(ScriptSpec {
            lang: ScriptLang::Python,
            source: "print('hi')\nprint(1)".into(),
        }),
        http: None,
        params: "p=1".into(),
        shards: Some(2),
        shard_params: ShardParams::List(vec!["a".into(), "{\"x\":1}".into()]),
        routing: Routing::Pull,
        workers: Vec::new(),
        overlap: Overlap::Parallel,
        max_parallel: 4,
        timeout: Dur(Duration::from_millis(90_500)),
        retry: RetrySpec {
            max: 3,
            backoff: Dur::from_secs(5),
            multiplier: 1.5,
            max_backoff: Dur::from_secs(3600),
        },
        misfire: Misfire::CatchUp,
        children: vec!["billing/archive".into(), "ops/notify".into()],
        alarm: AlarmSpec::default(),
        enabled: false,
    }
}

/// A job with the fields this version refuses: it still decodes (a record stored by
/// another version must stay readable), but does not validate.
fn unsupported() -> JobSpec {
    JobSpec {
        kind: JobKind::Http,
        http: Some(http("https://example.com/ping")),
        routing: Routing::LeastRecentlyUsed,
        workers: vec!["host-1-abc".into(), "Host_2".into()],
        alarm: AlarmSpec {
            emails: vec!["ops@example.com".into()],
            webhooks: vec!["https://hooks.example.com/x?y=1".into()],
            on: vec![AlarmOn::Fail, AlarmOn::Success],
            stuck_after: Dur::from_secs(600),
        },
        ..base()
    }
}

#[test]
fn minimal_job_has_the_contract_defaults() {
    let job = toml_one("app = \"billing\"\nname = \"nightly-report\"\n").expect("valid");
    assert_eq!(job, base());
    assert_eq!(job.kind, JobKind::Plugin);
    assert_eq!(job.routing, Routing::Pull);
    assert_eq!(job.overlap, Overlap::Serial);
    assert_eq!(job.misfire, Misfire::FireOnce);
    assert_eq!(job.max_parallel, 1);
    assert_eq!(job.timeout_ms(), 0);
    assert_eq!(job.retry.max, 0);
    assert_eq!(job.retry.backoff, Dur::from_secs(10));
    assert_eq!(job.retry.multiplier, 2.0);
    assert_eq!(job.retry.max_backoff, Dur::from_secs(600));
    assert_eq!(
        job.alarm.on,
        [AlarmOn::Fail, AlarmOn::Timeout, AlarmOn::Misfire]
    );
    assert!(job.enabled);
    assert_eq!(job.handler_name(), "nightly-report");
    assert_eq!(job.key(), ("billing", "nightly-report"));
    assert_eq!(
        job.execution(),
        Execution::Plugin {
            handler: "nightly-report".into()
        }
    );
    assert!(job.schedule().expect("no schedule").is_none());
    assert_eq!(
        job.shard_items(&TriggerRequest::default()).expect("items"),
        [""]
    );
}

#[test]
fn the_contract_example() {
    // Contract §2 lists every field at once; `command`, `script` and `http` together
    // do not fit kind = "plugin", and the error says so.
    let text = r#"
app = "billing"                 # required; [a-z0-9_-]{1,64}
name = "nightly-report"         # required; [a-z0-9_-]{1,64}
description = ""
schedule = { cron = "0 0 2 * * ?", tz = "Asia/Shanghai" }
kind = "plugin"                 # plugin | script | http
handler = "nightly-report"      # plugin: name registered in the worker (default: job name)
command = "echo hello"          # script: a shell command line, or:
script = { lang = "python", source = "print('hi')" }  # script: lang = shell | python | node
http = { url = "...", method = "POST", body = "", timeout = "10s" }
params = ""                     # job-level parameter string handed to every shard
shards = 1                      # shard count; defaults to the number of shard_params
shard_params = ""               # "a;b;c"
routing = "pull"
workers = []                    # optional pinning to worker ids
overlap = "serial"              # serial | discard | cover | parallel
max_parallel = 1                # for overlap = "parallel"
timeout = "0s"                  # 0 = none
retry = { max = 0, backoff = "10s", multiplier = 2.0, max_backoff = "10m" }
misfire = "fire_once"           # skip | fire_once | catch_up
children = []                   # ["app/job", ...] fired after success
alarm = { emails = [], webhooks = [], on = ["fail", "timeout", "misfire"] }
enabled = true
"#;
    let e = toml_one(text).expect_err("mixed kinds");
    assert_eq!(e.field, "command");
    assert_eq!(e.job.as_deref(), Some("billing/nightly-report"));
    assert!(
        e.to_string().starts_with(
            "job billing/nightly-report: field `command`: `command` is only for kind = \"script\""
        ),
        "{e}"
    );
    let plugin: String = text
        .lines()
        .filter(|l| !l.starts_with("command") && !l.starts_with("script") && !l.starts_with("http"))
        .map(|l| format!("{l}\n"))
        .collect();
    let job = toml_one(&plugin).expect("valid");
    assert_eq!(job.handler.as_deref(), Some("nightly-report"));
    let sched = job.schedule().expect("valid").expect("scheduled");
    assert_eq!(sched.trigger_kind(), crate::instance::TriggerKind::Cron);
}

#[test]
fn toml_and_json_forms() {
    let two_toml = r#"
[[job]]
app = "a"
name = "one"

[[job]]
app = "a"
name = "two"
kind = "script"
command = "echo hi"
shard_params = ["x", "y"]
schedule = { every = "30s" }
"#;
    let jobs = parse_jobs(two_toml, SpecFormat::Toml).expect("valid");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1].shard_params.items(), ["x", "y"]);
    assert_eq!(
        jobs[1]
            .shard_items(&TriggerRequest::default())
            .expect("items"),
        ["x", "y"]
    );
    let one_json = r#"{"app": "a", "name": "one"}"#;
    let array_json = r#"[{"app": "a", "name": "one"}, {"app": "a", "name": "two", "kind": "script", "command": "echo hi", "shard_params": ["x", "y"], "schedule": {"every": "30s"}}]"#;
    let wrapped_json = format!(r#"{{"job": {array_json}}}"#);
    assert_eq!(
        parse_jobs(one_json, SpecFormat::Json).expect("one"),
        jobs[..1]
    );
    assert_eq!(
        parse_jobs(array_json, SpecFormat::Json).expect("array"),
        jobs
    );
    assert_eq!(
        parse_jobs(&wrapped_json, SpecFormat::Json).expect("wrapped"),
        jobs
    );
    // Nulls are "unset".
    let nulls = r#"{"app": "a", "name": "one", "schedule": null, "shards": null, "handler": null}"#;
    assert_eq!(
        parse_jobs(nulls, SpecFormat::Json).expect("nulls"),
        jobs[..1]
    );
    // Empty documents hold no jobs.
    assert!(
        parse_jobs("# nothing\n", SpecFormat::Toml)
            .expect("empty")
            .is_empty()
    );
    assert!(
        parse_jobs("[]", SpecFormat::Json)
            .expect("empty")
            .is_empty()
    );
    // A TOML date-time, quoted or not.
    for at in ["2026-12-01T00:00:00Z", "\"2026-12-01T00:00:00Z\""] {
        let job = toml_one(&format!(
            "app = \"a\"\nname = \"b\"\nschedule = {{ at = {at} }}\n"
        ))
        .expect("at");
        let when = job.schedule.and_then(|s| s.at).expect("at");
        assert_eq!(when.to_rfc3339(), "2026-12-01T00:00:00.000Z");
    }
}

#[test]
fn file_errors_name_job_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("foo = 1", "foo", "unknown field `foo`"),
        (
            "retry = { max = 1, bogus = 2 }",
            "retry.bogus",
            "unknown field `bogus`",
        ),
        (
            "retry = { backoff = \"10x\" }",
            "retry.backoff",
            "not a duration",
        ),
        ("timeout = \"soon\"", "timeout", "not a duration"),
        ("timeout = 10", "timeout", "a duration string"),
        (
            "routing = \"nearest\"",
            "routing",
            "unknown variant `nearest`",
        ),
        ("kind = \"lambda\"", "kind", "unknown variant `lambda`"),
        ("shards = -1", "shards", "invalid value"),
        (
            "schedule = { cron = \"* * * * *\", zone = \"UTC\" }",
            "schedule.zone",
            "unknown field `zone`",
        ),
        (
            "schedule = { at = \"tomorrow\" }",
            "schedule.at",
            "RFC 3339",
        ),
        (
            "kind = \"script\"\nscript = { lang = \"ruby\", source = \"x\" }",
            "script.lang",
            "unknown variant `ruby`",
        ),
        (
            "kind = \"http\"\nhttp = { method = \"GET\" }",
            "http",
            "missing field `url`",
        ),
        (
            "alarm = { on = [\"always\"] }",
            "alarm.on",
            "unknown variant `always`",
        ),
    ];
    for (extra, field, message) in cases {
        let text = format!("app = \"billing\"\nname = \"x\"\n{extra}\n");
        let e = toml_one(&text).expect_err(extra);
        assert_eq!(e.field, *field, "{extra}: {e}");
        assert!(e.message.contains(message), "{extra}: {e}");
        assert_eq!(e.job.as_deref(), Some("billing/x"), "{extra}");
    }
    let e = toml_one("name = \"x\"\n").expect_err("no app");
    assert_eq!(e.field, "app");
    assert!(e.message.contains("missing field `app`"), "{e}");

    let e = parse_jobs("app = ", SpecFormat::Toml).expect_err("syntax");
    assert!(e.message.starts_with("not valid TOML"), "{e}");
    let e = parse_jobs("{\"app\": ", SpecFormat::Json).expect_err("syntax");
    assert!(e.message.starts_with("not valid JSON"), "{e}");
    let e = parse_jobs("42", SpecFormat::Json).expect_err("shape");
    assert!(e.message.contains("expected one job"), "{e}");

    let mixed = "app = \"a\"\n[[job]]\napp = \"a\"\nname = \"b\"\n";
    let e = parse_jobs(mixed, SpecFormat::Toml).expect_err("mixed");
    assert!(
        e.message
            .contains("both a [[job]] list and top-level job fields (app)"),
        "{e}"
    );

    let many = "[[job]]\napp = \"a\"\nname = \"one\"\n[[job]]\napp = \"a\"\nname = \"two\"\nmax_parallel = 0\n";
    let e = parse_jobs(many, SpecFormat::Toml).expect_err("second job");
    assert_eq!(
        e.to_string(),
        "job #2 a/two: field `max_parallel`: must be at least 1"
    );
    let dup = "[[job]]\napp = \"a\"\nname = \"one\"\n[[job]]\napp = \"a\"\nname = \"one\"\n";
    let e = parse_jobs(dup, SpecFormat::Toml).expect_err("duplicate");
    assert_eq!(e.field, "name");
    assert!(
        e.message.contains("appears twice") && e.message.contains("job #1"),
        "{e}"
    );
    let e = parse_jobs(
        r#"[{"app": "a", "name": "x"}, {"nme": "y"}]"#,
        SpecFormat::Json,
    )
    .expect_err("typo");
    assert_eq!(e.job.as_deref(), Some("#2"));
    assert_eq!(e.field, "nme");
}

#[test]
fn validation_errors_name_the_field() {
    type Edit = fn(&mut JobSpec);
    let cases: &[(Edit, &str, &str)] = &[
        (
            |j| j.app = "Billing".into(),
            "app",
            "app `Billing` is invalid",
        ),
        (|j| j.name = String::new(), "name", "job `` is invalid"),
        (
            |j| j.command = Some("echo".into()),
            "command",
            "only for kind = \"script\"",
        ),
        (
            |j| j.http = Some(http("https://x")),
            "http",
            "only for kind = \"http\"",
        ),
        (
            |j| j.handler = Some("Bad Name".into()),
            "handler",
            "is invalid",
        ),
        (|j| j.kind = JobKind::Script, "command", "needs `command`"),
        (
            |j| {
                j.kind = JobKind::Script;
                j.handler = Some("x".into());
                j.command = Some("echo".into());
            },
            "handler",
            "only for kind = \"plugin\"",
        ),
        (
            |j| {
                j.kind = JobKind::Script;
                j.command = Some("echo".into());
                j.script = Some(ScriptSpec {
                    lang: ScriptLang::Shell,
                    source: "echo".into(),
                });
            },
            "script",
            "not both",
        ),
        (
            |j| {
                j.kind = JobKind::Script;
                j.command = Some("  ".into());
            },
            "command",
            "is empty",
        ),
        (
            |j| {
                j.kind = JobKind::Script;
                j.script = Some(ScriptSpec {
                    lang: ScriptLang::Node,
                    source: String::new(),
                });
            },
            "script.source",
            "is empty",
        ),
        (|j| j.shards = Some(0), "shards", "out of range 1-100000"),
        (
            |j| j.shards = Some(100_001),
            "shards",
            "out of range 1-100000",
        ),
        (
            |j| {
                j.shards = Some(2);
                j.shard_params = ShardParams::Text("a;b;c".into());
            },
            "shard_params",
            "has 3 params but `shards` = 2",
        ),
        (|j| j.max_parallel = 0, "max_parallel", "at least 1"),
        (|j| j.retry.multiplier = 0.5, "retry.multiplier", ">= 1.0"),
        (
            |j| j.retry.multiplier = f64::NAN,
            "retry.multiplier",
            ">= 1.0",
        ),
        (
            |j| j.children = vec!["nojob".into()],
            "children[0]",
            "APP/JOB",
        ),
        (
            |j| j.children = vec!["billing/nightly-report".into()],
            "children[0]",
            "its own child",
        ),
        (
            |j| j.schedule = Some(cron("* * * * 8", None)),
            "schedule.cron",
            "day-of-week `8`",
        ),
        (
            |j| j.schedule = Some(cron("* * * * *", Some("Mars/Base"))),
            "schedule.tz",
            "unknown time zone `Mars/Base`",
        ),
        (
            |j| {
                j.schedule = Some(ScheduleSpec {
                    every: Some(Dur(Duration::from_millis(500))),
                    ..ScheduleSpec::default()
                })
            },
            "schedule.every",
            "at least 1s",
        ),
        (
            |j| j.schedule = Some(ScheduleSpec::default()),
            "schedule",
            "give one of",
        ),
    ];
    for (i, (edit, field, message)) in cases.iter().enumerate() {
        let mut job = base();
        edit(&mut job);
        let e = job.validate().expect_err(field);
        assert_eq!(e.field, *field, "case {i}: {e}");
        assert!(e.message.contains(message), "case {i}: {e}");
    }
    let mut job = base();
    job.schedule = Some(cron("0 0 0 1 * MON", None));
    let e = job.validate().expect_err("both days");
    assert!(
        e.to_string().starts_with(
            "job billing/nightly-report: field `schedule.cron`: `0 0 0 1 * MON`: day-of-month `1` and day-of-week `MON` are both set"
        ),
        "{e}"
    );
    assert!(full().validate().is_ok());
}

fn http(url: &str) -> HttpSpec {
    HttpSpec {
        url: url.into(),
        method: "POST".into(),
        headers: BTreeMap::new(),
        body: String::new(),
        timeout: Dur::from_secs(10),
    }
}

fn cron(expr: &str, tz: Option<&str>) -> ScheduleSpec {
    ScheduleSpec {
        cron: Some(expr.into()),
        tz: tz.map(str::to_string),
        ..ScheduleSpec::default()
    }
}

#[test]
fn shard_items_with_overrides() {
    let req = |params: Option<&str>, shards: Option<u32>| TriggerRequest {
        shard_params: params.map(|p| ShardParams::Text(p.into())),
        shards,
        ..TriggerRequest::default()
    };
    let mut job = base();
    job.shard_params = ShardParams::Text("a;b;c".into());
    assert_eq!(
        job.shard_items(&req(None, None)).expect("job's"),
        ["a", "b", "c"]
    );
    assert_eq!(
        job.shard_items(&req(Some("x;y"), None)).expect("params"),
        ["x", "y"]
    );
    assert_eq!(
        job.shard_items(&req(Some("x;y"), Some(2))).expect("both"),
        ["x", "y"]
    );
    assert_eq!(
        job.shard_items(&req(None, Some(2))).expect("shards"),
        ["", ""]
    );
    assert_eq!(
        job.shard_items(&req(Some(""), None)).expect("empty"),
        ["a", "b", "c"]
    );
    let e = job
        .shard_items(&req(Some("x;y"), Some(3)))
        .expect_err("mismatch");
    assert_eq!(e.field, "shard_params");
    let e = job.shard_items(&req(None, Some(0))).expect_err("zero");
    assert_eq!(e.field, "shards");
    let e = job
        .shard_items(&req(None, Some(100_001)))
        .expect_err("too many");
    assert_eq!(e.field, "shards");

    let broadcast = JobSpec {
        routing: Routing::Broadcast,
        ..base()
    };
    assert_eq!(broadcast.shard_items(&req(None, None)).expect("one"), [""]);
    let e = broadcast
        .shard_items(&req(None, Some(2)))
        .expect_err("shards");
    assert_eq!(e.field, "shards");
    assert!(e.message.contains("broadcast"), "{e}");
    let e = broadcast
        .shard_items(&req(Some("x;y"), None))
        .expect_err("params");
    assert_eq!(e.field, "shard_params");

    let mut job = base();
    job.shards = Some(3);
    assert_eq!(
        job.shard_items(&req(None, None)).expect("job's"),
        ["", "", ""]
    );
    let list = TriggerRequest {
        shard_params: Some(ShardParams::List(vec!["1".into(), "{\"x\":1}".into()])),
        ..TriggerRequest::default()
    };
    assert_eq!(job.shard_items(&list).expect("list"), ["1", "{\"x\":1}"]);
}

#[test]
fn executions() {
    let mut job = base();
    job.handler = Some("other".into());
    assert_eq!(
        job.execution(),
        Execution::Plugin {
            handler: "other".into()
        }
    );
    job.handler = None;
    job.kind = JobKind::Script;
    job.command = Some("echo hi".into());
    assert_eq!(
        job.execution(),
        Execution::Command {
            command: "echo hi".into()
        }
    );
    job.command = None;
    job.script = Some(ScriptSpec {
        lang: ScriptLang::Python,
        source: "print(1)".into(),
    });
    assert_eq!(
        job.execution(),
        Execution::Script {
            lang: ScriptLang::Python,
            source: "print(1)".into()
        }
    );
    job.script = None;
    job.kind = JobKind::Http;
    job.http = Some(HttpSpec {
        method: "get".into(),
        body: "b".into(),
        ..http("https://x.io/a")
    });
    assert!(job.validate().is_ok());
    assert_eq!(
        job.execution(),
        Execution::Http {
            url: "https://x.io/a".into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: "b".into(),
            timeout_ms: 10_000
        }
    );
    job.timeout = Dur::from_secs(90);
    assert_eq!(job.timeout_ms(), 90_000);
}

#[test]
fn export_round_trip() {
    let mut at_job = base();
    at_job.name = "ping".into();
    at_job.schedule = Some(ScheduleSpec {
        at: Some("2026-12-01T00:00:00.250Z".parse().expect("time")),
        ..ScheduleSpec::default()
    });
    let mut every_job = base();
    every_job.name = "tick".into();
    every_job.handler = Some("noop".into());
    every_job.shard_params = ShardParams::Text("a;b".into());
    every_job.schedule = Some(ScheduleSpec {
        every: Some(Dur::from_secs(90)),
        ..ScheduleSpec::default()
    });
    let mut command_job = base();
    command_job.name = "cmd".into();
    command_job.kind = JobKind::Script;
    command_job.command = Some("echo 'a' \"b\"".into());
    let mut plain = base();
    plain.app = "ops".into();
    let jobs = vec![full(), at_job, every_job, command_job, plain];
    let text = export_toml(&jobs).expect("export");
    assert!(text.contains("[[job]]"), "{text}");
    assert_eq!(
        parse_jobs(&text, SpecFormat::Toml).expect("re-read"),
        jobs,
        "{text}"
    );
    // Once more: the export of the re-read jobs is the same text.
    let again = parse_jobs(&text, SpecFormat::Toml).expect("re-read");
    assert_eq!(export_toml(&again).expect("export"), text);
    // One job exported reads back too.
    let one = export_toml(&jobs[..1]).expect("export");
    assert_eq!(parse_jobs(&one, SpecFormat::Toml).expect("one"), jobs[..1]);
    assert!(
        parse_jobs(&export_toml(&[]).expect("none"), SpecFormat::Toml)
            .expect("none")
            .is_empty()
    );
    // JSON and MessagePack round trips of the same jobs.
    let json = serde_json::to_string(&jobs).expect("json");
    assert_eq!(parse_jobs(&json, SpecFormat::Json).expect("json"), jobs);
    for job in jobs.iter().chain([&unsupported()]) {
        let bytes = rmp_serde::to_vec_named(job).expect("msgpack");
        let back: JobSpec = rmp_serde::from_slice(&bytes).expect("msgpack");
        assert_eq!(&back, job);
    }
}

#[test]
fn durations() {
    for (text, d) in [
        ("500ms", Duration::from_millis(500)),
        ("30s", Duration::from_secs(30)),
        ("10m", Duration::from_secs(600)),
        ("1h 30m", Duration::from_secs(5400)),
        ("0s", Duration::ZERO),
        ("0", Duration::ZERO),
    ] {
        let dur: Dur = text.parse().expect(text);
        assert_eq!(dur.0, d, "{text}");
        let json = serde_json::to_string(&dur).expect("json");
        assert_eq!(serde_json::from_str::<Dur>(&json).expect("back"), dur);
    }
    assert_eq!(Dur::from_secs(600).to_string(), "10m");
    assert_eq!(Dur::default().to_string(), "0s");
    assert_eq!(
        serde_json::to_string(&Dur(Duration::from_millis(1500))).expect("json"),
        "\"1s 500ms\""
    );
    assert!("ten".parse::<Dur>().is_err());
    let bytes = rmp_serde::to_vec_named(&Dur::from_secs(30)).expect("msgpack");
    assert_eq!(
        rmp_serde::from_slice::<Dur>(&bytes).expect("msgpack"),
        Dur::from_secs(30)
    );
}

#[test]
fn format_guess() {
    assert_eq!(SpecFormat::guess("jobs.json", "app = 1"), SpecFormat::Json);
    assert_eq!(SpecFormat::guess("jobs.TOML", "{"), SpecFormat::Toml);
    assert_eq!(SpecFormat::guess("-", "  \n{\"app\": 1}"), SpecFormat::Json);
    assert_eq!(SpecFormat::guess("jobs", "[{}]"), SpecFormat::Json);
    assert_eq!(SpecFormat::guess("jobs", "[[job]]\n"), SpecFormat::Toml);
    assert_eq!(SpecFormat::guess("jobs", "[ ]"), SpecFormat::Json);
    assert_eq!(SpecFormat::guess("jobs", "app = \"a\""), SpecFormat::Toml);
}

#[test]
fn retry_delays() {
    let r = RetrySpec {
        max: 5,
        backoff: Dur::from_secs(10),
        multiplier: 2.0,
        max_backoff: Dur::from_secs(60),
    };
    assert_eq!(r.delay(1), Duration::from_secs(10));
    assert_eq!(r.delay(2), Duration::from_secs(20));
    assert_eq!(r.delay(3), Duration::from_secs(40));
    assert_eq!(r.delay(4), Duration::from_secs(60));
    assert_eq!(r.delay(1000), Duration::from_secs(60));
}

/// Asserts that a spec is refused for `field` with a message containing each of `words`.
fn refused(job: &JobSpec, field: &str, words: &[&str]) {
    let e = job.validate().expect_err(field);
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.job.as_deref(), Some(job.full_name().as_str()), "{e}");
    for w in words {
        assert!(e.message.contains(w), "{field}: `{w}` not in: {e}");
    }
}

#[test]
fn alarms_are_accepted_and_nonsense_refused() {
    let mut job = base();
    job.alarm = AlarmSpec {
        emails: vec!["ops@example.com".into(), "a.b+c@mail.example.org".into()],
        webhooks: vec!["https://hooks.example.com/x?y=1".into()],
        on: vec![
            AlarmOn::Fail,
            AlarmOn::Timeout,
            AlarmOn::Misfire,
            AlarmOn::Stuck,
            AlarmOn::Recovered,
        ],
        stuck_after: Dur::from_secs(600),
    };
    assert!(job.validate().is_ok(), "{:?}", job.validate());
    let text = "app = \"billing\"\nname = \"x\"\nalarm = { webhooks = [\"http://h.example/a\"], on = [\"recovered\", \"stuck\"], stuck_after = \"5m\" }\n";
    let parsed = toml_one(text).expect("valid");
    assert_eq!(parsed.alarm.on, [AlarmOn::Recovered, AlarmOn::Stuck]);

    let mut bad = job.clone();
    bad.alarm.webhooks.push("ftp://h.example/x".into());
    refused(&bad, "alarm.webhooks[1]", &["ftp://h.example/x", "http://"]);
    for email in [
        "ops",
        "ops@localhost",
        "a b@x.org",
        "x@y.org\r\nBcc: z@w.org",
        "@x.org",
    ] {
        let mut bad = job.clone();
        bad.alarm.emails = vec!["ok@x.org".into(), email.into()];
        refused(&bad, "alarm.emails[1]", &["not an email address"]);
    }
    let mut bad = job.clone();
    bad.alarm.webhooks = vec!["https://h.example/".into(); 17];
    refused(&bad, "alarm.webhooks", &["at most 16"]);
    let mut bad = job.clone();
    bad.alarm.on = vec![AlarmOn::Fail, AlarmOn::Success];
    bad.alarm.stuck_after = Dur::default();
    refused(&bad, "alarm.on[1]", &["\"success\"", "not supported"]);
    let mut bad = job.clone();
    bad.alarm.stuck_after = Dur::default();
    refused(&bad, "alarm.stuck_after", &["\"stuck\""]);
    let mut bad = job.clone();
    bad.alarm.on = vec![AlarmOn::Fail];
    refused(&bad, "alarm.stuck_after", &["lacks \"stuck\""]);
    let parsed = toml_one("app = \"billing\"\nname = \"x\"\nalarm = { stuck_after = \"0s\" }\n");
    assert!(parsed.is_ok(), "the contract's field is known: {parsed:?}");
    // Stored records with kinds this version refuses still decode.
    let stored = rmp_serde::to_vec_named(&unsupported()).expect("msgpack");
    let back: JobSpec = rmp_serde::from_slice(&stored).expect("decodes");
    assert_eq!(back, unsupported());
}

#[test]
fn every_routing_and_pinning_is_accepted_and_nonsense_refused() {
    for routing in Routing::ALL {
        let job = JobSpec {
            routing,
            workers: vec!["host-1".into(), "Host_2".into()],
            ..base()
        };
        assert!(job.validate().is_ok(), "{}", routing.as_str());
    }
    let broadcast = JobSpec {
        routing: Routing::Broadcast,
        ..base()
    };
    let job = JobSpec {
        shards: Some(3),
        ..broadcast.clone()
    };
    refused(&job, "shards", &["one shard per live worker"]);
    let job = JobSpec {
        shard_params: ShardParams::List(vec!["a".into(), "b".into()]),
        ..broadcast
    };
    refused(&job, "shard_params", &["one shard per live worker"]);
    let job = JobSpec {
        workers: vec!["w1".into(), "bad.id".into()],
        ..base()
    };
    refused(&job, "workers[1]", &["bad.id"]);
    let job = JobSpec {
        workers: vec!["w1".into(), "w1".into()],
        ..base()
    };
    refused(&job, "workers[1]", &["listed twice"]);
    // From a file too, with the job and the field named.
    let e = toml_one("app = \"billing\"\nname = \"x\"\nrouting = \"broadcast\"\nshards = 2\n")
        .expect_err("broadcast with shards");
    assert_eq!(e.field, "shards");
    assert!(
        e.to_string()
            .starts_with("job billing/x: field `shards`: `routing = \"broadcast\"`"),
        "{e}"
    );
}

#[test]
fn sizes_are_limited() {
    use crate::limits::{MAX_PARAMS_BYTES, MAX_SHARD_PARAMS_BYTES, MAX_SOURCE_BYTES};
    let big = |n: usize| "x".repeat(n);

    let mut job = base();
    job.params = big(MAX_PARAMS_BYTES);
    assert!(job.validate().is_ok());
    job.params = big(MAX_PARAMS_BYTES + 1);
    refused(&job, "params", &["262145 bytes", "262144 bytes (256 KiB)"]);

    let mut job = base();
    let each = MAX_SHARD_PARAMS_BYTES / 4;
    job.shard_params = ShardParams::List(vec![big(each); 4]);
    assert!(job.validate().is_ok());
    job.shard_params = ShardParams::List(vec![big(each), big(each), big(each), big(each + 1)]);
    refused(&job, "shard_params", &["262145 bytes", "256 KiB"]);
    // "a;b" text counts its items, not the separators.
    job.shard_params = ShardParams::Text(format!("{};{}", big(each * 2), big(each * 2)));
    assert!(job.validate().is_ok());

    let mut job = base();
    job.kind = JobKind::Script;
    job.command = Some(big(MAX_SOURCE_BYTES));
    assert!(job.validate().is_ok());
    job.command = Some(big(MAX_SOURCE_BYTES + 10));
    refused(&job, "command", &["262154 bytes", "256 KiB"]);
    job.command = None;
    job.script = Some(ScriptSpec {
        lang: ScriptLang::Python,
        source: big(MAX_SOURCE_BYTES + 1),
    });
    refused(&job, "script.source", &["262145 bytes", "256 KiB"]);
}

#[test]
fn children_are_checked() {
    let with = |children: Vec<String>| JobSpec { children, ..base() };
    refused(&with(vec!["nojob".into()]), "children[0]", &["APP/JOB"]);
    refused(
        &with(vec!["ops/notify".into(), "Ops/x".into()]),
        "children[1]",
        &["app `Ops` is invalid"],
    );
    refused(
        &with(vec!["ops/a.b".into()]),
        "children[0]",
        &["job `a.b` is invalid"],
    );
    refused(
        &with(vec!["billing/nightly-report".into()]),
        "children[0]",
        &["its own child"],
    );
    refused(
        &with(vec!["ops/a".into(), "ops/b".into(), "ops/a".into()]),
        "children[2]",
        &["listed twice", "children[0]"],
    );
    let many: Vec<String> = (0..=MAX_CHILDREN).map(|i| format!("ops/j{i}")).collect();
    refused(
        &with(many.clone()),
        "children",
        &["33 children", "at most 32"],
    );
    assert!(with(many[..MAX_CHILDREN].to_vec()).validate().is_ok());
    // Another job of the same name in another app is not the job itself.
    assert!(with(vec!["ops/nightly-report".into()]).validate().is_ok());
}

#[test]
fn triggers_are_checked() {
    use crate::limits::{MAX_KEY_BYTES, MAX_PARAMS_BYTES, MAX_SHARD_PARAMS_BYTES};
    let job = base();
    let trigger_err = |req: TriggerRequest, field: &str, words: &[&str]| {
        let e = job.shard_items(&req).expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.job.as_deref(), Some("billing/nightly-report"), "{e}");
        for w in words {
            assert!(e.message.contains(w), "{field}: `{w}` not in: {e}");
        }
    };
    let ok = TriggerRequest {
        params: Some("x".repeat(MAX_PARAMS_BYTES)),
        key: Some("k".repeat(MAX_KEY_BYTES)),
        shard_params: Some(ShardParams::List(vec!["y".repeat(MAX_SHARD_PARAMS_BYTES)])),
        shards: None,
    };
    assert_eq!(job.shard_items(&ok).expect("at the limits").len(), 1);
    trigger_err(
        TriggerRequest {
            params: Some("x".repeat(MAX_PARAMS_BYTES + 1)),
            ..TriggerRequest::default()
        },
        "params",
        &["262145 bytes", "256 KiB"],
    );
    trigger_err(
        TriggerRequest {
            shard_params: Some(ShardParams::List(vec![
                "y".repeat(MAX_SHARD_PARAMS_BYTES),
                "z".into(),
            ])),
            ..TriggerRequest::default()
        },
        "shard_params",
        &["262145 bytes", "256 KiB"],
    );
    trigger_err(
        TriggerRequest {
            key: Some(String::new()),
            ..TriggerRequest::default()
        },
        "key",
        &["is empty"],
    );
    trigger_err(
        TriggerRequest {
            key: Some("k".repeat(MAX_KEY_BYTES + 1)),
            ..TriggerRequest::default()
        },
        "key",
        &["257 bytes", "256 bytes"],
    );
    // A job stored before the limits, with too much in its own shard params.
    let mut old = base();
    old.shard_params = ShardParams::List(vec!["y".repeat(MAX_SHARD_PARAMS_BYTES + 1)]);
    let e = old
        .shard_items(&TriggerRequest::default())
        .expect_err("too big");
    assert_eq!(e.field, "shard_params");
}

#[test]
fn misspelt_top_level_fields_are_named_as_unknown() {
    let e = toml_one("app = \"billing\"\nname = \"x\"\nscheduel = { every = \"5s\" }\n")
        .expect_err("typo");
    assert_eq!(e.field, "scheduel", "{e}");
    assert_eq!(
        e.to_string(),
        "job billing/x: field `scheduel`: unknown field `scheduel`: did you mean `schedule`?"
    );
    let e = toml_one("app = \"billing\"\nname = \"x\"\nmax_paralel = 2\n").expect_err("typo");
    assert_eq!(e.field, "max_paralel");
    assert!(e.message.ends_with("did you mean `max_parallel`?"), "{e}");
    let e = toml_one("app = \"billing\"\nname = \"x\"\ncolour = \"red\"\n").expect_err("unknown");
    assert_eq!(e.field, "colour");
    assert!(e.message.contains("a job has the fields app, name,"), "{e}");
    // A bad value of a known table still names the inner field.
    let e = toml_one("app = \"billing\"\nname = \"x\"\nschedule = { evry = \"5s\" }\n")
        .expect_err("inner typo");
    assert_eq!(e.field, "schedule.evry");
}

#[test]
fn the_field_list_is_complete() {
    let mut job = full();
    job.handler = Some("h".into());
    job.command = Some("c".into());
    job.http = Some(http("https://x.io"));
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&job) else {
        panic!("a job is a JSON object");
    };
    let mut written: Vec<&str> = map.keys().map(String::as_str).collect();
    let mut known = file::FIELDS.to_vec();
    written.sort_unstable();
    known.sort_unstable();
    assert_eq!(written, known);
}

#[test]
fn http_jobs_are_checked() {
    let with = |headers: &[(&str, &str)]| {
        let mut spec = http("https://example.com/hook");
        spec.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JobSpec {
            kind: JobKind::Http,
            http: Some(spec),
            ..base()
        }
    };
    assert!(
        with(&[("Authorization", "Bearer x"), ("X-Tab", "a\tb")])
            .validate()
            .is_ok()
    );
    refused(
        &with(&[("Bad Name", "x")]),
        "http.headers.Bad Name",
        &["not a header name"],
    );
    refused(&with(&[("", "x")]), "http.headers.", &["not a header name"]);
    refused(
        &with(&[("Antares-Params", "x")]),
        "http.headers.Antares-Params",
        &["set by the worker"],
    );
    refused(
        &with(&[("X-A", "a\r\nb")]),
        "http.headers.X-A",
        &["control character"],
    );
    refused(
        &with(&[("Content-Type", "a"), ("content-type", "b")]),
        "http.headers.content-type",
        &["twice"],
    );
    let many: Vec<(String, String)> = (0..=MAX_HTTP_HEADERS)
        .map(|i| (format!("X-{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    refused(&with(&many), "http.headers", &["limit of 32"]);
    let big = "v".repeat(MAX_HTTP_HEADER_BYTES);
    refused(
        &with(&[("X-Big", &big)]),
        "http.headers",
        &["limit of 8192 bytes (8 KiB)"],
    );
    let mut job = with(&[]);
    if let Some(h) = job.http.as_mut() {
        h.body = "b".repeat(MAX_SOURCE_BYTES + 1);
    }
    refused(&job, "http.body", &["limit"]);

    let toml = r#"
app = "billing"
name = "ping"
kind = "http"
http = { url = "https://example.com/ping", method = "get", headers = { Authorization = "Bearer t" }, body = "{}", timeout = "5s" }
"#;
    let jobs = parse_jobs(toml, SpecFormat::Toml).expect("valid");
    assert_eq!(
        jobs[0].execution(),
        Execution::Http {
            url: "https://example.com/ping".into(),
            method: "GET".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer t".into())]),
            body: "{}".into(),
            timeout_ms: 5000,
        }
    );
    let back = parse_jobs(&export_toml(&jobs).expect("export"), SpecFormat::Toml).expect("again");
    assert_eq!(back, jobs);
}
