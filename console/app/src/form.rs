//! The job editor's form as plain text fields, and its conversion from and to the JSON
//! of a job spec (contract §2).
//!
//! Editing starts from the stored spec and writes back only what the form shows, so
//! fields the form does not show keep their values. Numbers
//! and durations are checked here, naming the field, before anything is sent; the rest
//! (cron, names, time zones, counts that must agree) the server checks and names.

use antares_schemas::spec::{Dur, JobSpec};
use serde_json::{Map, Value, json};

/// Which kind of schedule, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Manual or event triggers only.
    #[default]
    None,
    /// `cron` (and `tz`).
    Cron,
    /// `every`.
    Every,
    /// `at`.
    At,
}

impl ScheduleKind {
    /// The form's option value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Cron => "cron",
            Self::Every => "every",
            Self::At => "at",
        }
    }

    /// From an option value.
    pub fn parse(s: &str) -> Self {
        match s {
            "cron" => Self::Cron,
            "every" => Self::Every,
            "at" => Self::At,
            _ => Self::None,
        }
    }
}

/// Every field of the editor, as typed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobForm {
    pub name: String,
    pub description: String,
    pub schedule: ScheduleKind,
    pub cron: String,
    pub tz: String,
    pub every: String,
    pub at: String,
    pub kind: String,
    pub handler: String,
    /// For scripts: a stored source (`true`) or a command line (`false`).
    pub use_source: bool,
    pub command: String,
    pub lang: String,
    pub source: String,
    pub http_url: String,
    pub http_method: String,
    /// One `Name: value` per line.
    pub http_headers: String,
    pub http_body: String,
    pub http_timeout: String,
    pub params: String,
    pub shards: String,
    pub shard_params: String,
    pub routing: String,
    /// Worker ids the job is pinned to, separated by commas, spaces or lines.
    pub workers: String,
    pub overlap: String,
    pub max_parallel: String,
    pub timeout: String,
    pub retry_max: String,
    pub retry_backoff: String,
    pub retry_multiplier: String,
    pub retry_max_backoff: String,
    pub misfire: String,
    /// `app/job` names, separated by commas, spaces or lines.
    pub children: String,
    /// Alarm email addresses, separated by commas, spaces or lines.
    pub alarm_emails: String,
    /// Alarm webhook URLs, separated by commas, spaces or lines.
    pub alarm_webhooks: String,
    /// What raises an alarm (`fail, timeout, misfire, stuck, recovered`).
    pub alarm_on: String,
    pub alarm_stuck_after: String,
    pub enabled: bool,
}

/// A field the form refused: its spec path and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Spec path (`retry.backoff`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The JSON of a new job's defaults.
pub fn new_spec(app: &str) -> Value {
    let spec = JobSpec {
        app: app.to_string(),
        ..JobSpec::default()
    };
    serde_json::to_value(spec).unwrap_or_else(|_| json!({ "app": app }))
}

impl JobForm {
    /// The form showing a spec.
    pub fn from_spec(spec: &Value) -> Self {
        let schedule = match spec.get("schedule") {
            Some(s) if s.get("cron").is_some() => ScheduleKind::Cron,
            Some(s) if s.get("every").is_some() => ScheduleKind::Every,
            Some(s) if s.get("at").is_some() => ScheduleKind::At,
            _ => ScheduleKind::None,
        };
        let shard_params = match spec.get("shard_params") {
            Some(Value::Array(items)) => {
                let items: Vec<String> = items.iter().map(|i| text(i, &[])).collect();
                if items.iter().any(|i| i.contains(';')) {
                    serde_json::to_string(&items).unwrap_or_default()
                } else {
                    items.join(";")
                }
            }
            _ => text(spec, &["shard_params"]),
        };
        let joined_at = |v: Option<&Value>| match v {
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| text(i, &[]))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        let joined = |field: &str| joined_at(spec.get(field));
        let alarm = |field: &str| joined_at(spec.get("alarm").and_then(|a| a.get(field)));
        let children = joined("children");
        let workers = joined("workers");
        let kind = match text(spec, &["kind"]) {
            k if k.is_empty() => "plugin".to_string(),
            k => k,
        };
        let lang = match text(spec, &["script", "lang"]) {
            l if l.is_empty() => "shell".to_string(),
            l => l,
        };
        let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
        Self {
            name: text(spec, &["name"]),
            description: text(spec, &["description"]),
            schedule,
            cron: text(spec, &["schedule", "cron"]),
            tz: text(spec, &["schedule", "tz"]),
            every: text(spec, &["schedule", "every"]),
            at: text(spec, &["schedule", "at"]),
            kind,
            handler: text(spec, &["handler"]),
            use_source: spec.get("script").is_some_and(|s| !s.is_null()),
            command: text(spec, &["command"]),
            lang,
            source: text(spec, &["script", "source"]),
            http_url: text(spec, &["http", "url"]),
            http_method: or(text(spec, &["http", "method"]), "POST"),
            http_headers: match spec.get("http").and_then(|h| h.get("headers")) {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", text(v, &[])))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            },
            http_body: text(spec, &["http", "body"]),
            http_timeout: or(text(spec, &["http", "timeout"]), "10s"),
            params: text(spec, &["params"]),
            shards: text(spec, &["shards"]),
            shard_params,
            routing: or(text(spec, &["routing"]), "pull"),
            workers,
            overlap: or(text(spec, &["overlap"]), "serial"),
            max_parallel: or(text(spec, &["max_parallel"]), "1"),
            timeout: or(text(spec, &["timeout"]), "0s"),
            retry_max: or(text(spec, &["retry", "max"]), "0"),
            retry_backoff: or(text(spec, &["retry", "backoff"]), "10s"),
            retry_multiplier: or(text(spec, &["retry", "multiplier"]), "2.0"),
            retry_max_backoff: or(text(spec, &["retry", "max_backoff"]), "10m"),
            misfire: or(text(spec, &["misfire"]), "fire_once"),
            children,
            alarm_emails: alarm("emails"),
            alarm_webhooks: alarm("webhooks"),
            alarm_on: match spec.get("alarm").and_then(|a| a.get("on")) {
                Some(_) => alarm("on"),
                None => "fail, timeout, misfire".to_string(),
            },
            alarm_stuck_after: or(text(spec, &["alarm", "stuck_after"]), "0s"),
            enabled: spec.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        }
    }

    /// The spec to send: `base` (the stored spec, or a new one's defaults) with the
    /// form's fields written over it.
    pub fn to_spec(&self, app: &str, base: &Value) -> Result<Value, FieldError> {
        let mut spec = match base {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let set = |spec: &mut Map<String, Value>, k: &str, v: Value| {
            spec.insert(k.to_string(), v);
        };
        set(&mut spec, "app", json!(app));
        set(&mut spec, "name", json!(self.name.trim()));
        set(&mut spec, "description", json!(self.description));

        let schedule = match self.schedule {
            ScheduleKind::None => None,
            ScheduleKind::Cron => {
                let mut s = Map::new();
                s.insert("cron".into(), json!(self.cron.trim()));
                if !self.tz.trim().is_empty() {
                    s.insert("tz".into(), json!(self.tz.trim()));
                }
                Some(Value::Object(s))
            }
            ScheduleKind::Every => {
                duration("schedule.every", &self.every)?;
                Some(json!({ "every": self.every.trim() }))
            }
            ScheduleKind::At => Some(json!({ "at": self.at.trim() })),
        };
        match schedule {
            Some(s) => set(&mut spec, "schedule", s),
            None => {
                spec.remove("schedule");
            }
        }

        set(&mut spec, "kind", json!(self.kind));
        match self.kind.as_str() {
            "script" => {
                spec.remove("handler");
                spec.remove("http");
                if self.use_source {
                    spec.remove("command");
                    set(
                        &mut spec,
                        "script",
                        json!({ "lang": self.lang, "source": self.source }),
                    );
                } else {
                    spec.remove("script");
                    set(&mut spec, "command", json!(self.command));
                }
            }
            "plugin" => {
                for k in ["command", "script", "http"] {
                    spec.remove(k);
                }
                if self.handler.trim().is_empty() {
                    spec.remove("handler");
                } else {
                    set(&mut spec, "handler", json!(self.handler.trim()));
                }
            }
            _ => {
                for k in ["command", "script", "handler"] {
                    spec.remove(k);
                }
                duration("http.timeout", &self.http_timeout)?;
                let mut headers = Map::new();
                for (n, line) in self.http_headers.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let Some((name, value)) = line.split_once(':') else {
                        return Err(err(
                            "http.headers",
                            format!("line {}: write `Name: value`", n + 1),
                        ));
                    };
                    headers.insert(name.trim().to_string(), json!(value.trim()));
                }
                set(
                    &mut spec,
                    "http",
                    json!({
                        "url": self.http_url.trim(),
                        "method": self.http_method.trim(),
                        "headers": headers,
                        "body": self.http_body,
                        "timeout": self.http_timeout.trim(),
                    }),
                );
            }
        }

        set(&mut spec, "params", json!(self.params));
        if self.shards.trim().is_empty() {
            spec.remove("shards");
        } else {
            set(&mut spec, "shards", json!(whole("shards", &self.shards)?));
        }
        let shard_params = self.shard_params.trim();
        let shard_params = if shard_params.starts_with('[') {
            serde_json::from_str::<Vec<String>>(shard_params)
                .map(|items| json!(items))
                .map_err(|e| {
                    err(
                        "shard_params",
                        format!("is not a JSON list of strings ({e}); or write them as a;b;c"),
                    )
                })?
        } else {
            json!(self.shard_params)
        };
        set(&mut spec, "shard_params", shard_params);

        set(&mut spec, "routing", json!(self.routing));
        set(&mut spec, "workers", json!(words(&self.workers)));
        set(&mut spec, "overlap", json!(self.overlap));
        set(
            &mut spec,
            "max_parallel",
            json!(whole("max_parallel", &self.max_parallel)?),
        );
        duration("timeout", &self.timeout)?;
        set(&mut spec, "timeout", json!(self.timeout.trim()));

        duration("retry.backoff", &self.retry_backoff)?;
        duration("retry.max_backoff", &self.retry_max_backoff)?;
        let multiplier: f64 = self.retry_multiplier.trim().parse().map_err(|_| {
            err(
                "retry.multiplier",
                format!("`{}` is not a number (like 2.0)", self.retry_multiplier),
            )
        })?;
        set(
            &mut spec,
            "retry",
            json!({
                "max": whole("retry.max", &self.retry_max)?,
                "backoff": self.retry_backoff.trim(),
                "multiplier": multiplier,
                "max_backoff": self.retry_max_backoff.trim(),
            }),
        );
        set(&mut spec, "misfire", json!(self.misfire));
        set(&mut spec, "children", json!(words(&self.children)));
        duration("alarm.stuck_after", &self.alarm_stuck_after)?;
        let mut alarm = json!({
            "emails": words(&self.alarm_emails),
            "webhooks": words(&self.alarm_webhooks),
            "on": words(&self.alarm_on),
        });
        let stuck_after = self.alarm_stuck_after.trim();
        if stuck_after.parse::<Dur>().is_ok_and(|d| !d.is_zero())
            && let Some(a) = alarm.as_object_mut()
        {
            a.insert("stuck_after".into(), json!(stuck_after));
        }
        set(&mut spec, "alarm", alarm);
        set(&mut spec, "enabled", json!(self.enabled));
        Ok(Value::Object(spec))
    }
}

/// The items of a list typed as text: separated by commas, spaces or lines.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The spec paths the editor shows an input for, where a field error is displayed.
pub const SHOWN: [&str; 36] = [
    "name",
    "description",
    "enabled",
    "schedule",
    "schedule.cron",
    "schedule.tz",
    "schedule.every",
    "schedule.at",
    "kind",
    "handler",
    "command",
    "script",
    "http",
    "http.url",
    "http.method",
    "http.headers",
    "http.body",
    "http.timeout",
    "params",
    "shards",
    "shard_params",
    "routing",
    "workers",
    "overlap",
    "max_parallel",
    "timeout",
    "retry.max",
    "retry.backoff",
    "retry.multiplier",
    "retry.max_backoff",
    "misfire",
    "children",
    "alarm.emails",
    "alarm.webhooks",
    "alarm.on",
    "alarm.stuck_after",
];

/// The shown field an error about `field` belongs to: the longest shown path that is
/// `field` or contains it (`script.source` -> `script`, `children[2]` -> `children`);
/// any other `alarm...` belongs to the alarm section's first field; `None` for the form
/// as a whole.
pub fn owner(field: &str) -> Option<&'static str> {
    let shown = SHOWN
        .iter()
        .filter(|shown| {
            field == **shown
                || field
                    .strip_prefix(**shown)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .max_by_key(|shown| shown.len())
        .copied();
    match shown {
        None if field == "alarm" || field.starts_with("alarm.") => Some("alarm.emails"),
        other => other,
    }
}

/// What to show next to a field: the message without the `job ...: field `...`: ` it
/// starts with when it comes from the server (the place says that already).
pub fn field_message(message: &str, field: &str) -> String {
    let marker = format!("field `{field}`: ");
    match message.find(&marker) {
        Some(at) => message[at + marker.len()..].to_string(),
        None => message.to_string(),
    }
}

fn whole(field: &str, v: &str) -> Result<u32, FieldError> {
    v.trim()
        .parse()
        .map_err(|_| err(field, format!("`{v}` is not a whole number")))
}

fn duration(field: &str, v: &str) -> Result<(), FieldError> {
    v.parse::<Dur>().map(drop).map_err(|e| err(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(spec: &JobSpec) -> JobSpec {
        let json = serde_json::to_value(spec).expect("spec as JSON");
        let form = JobForm::from_spec(&json);
        let back = form.to_spec(&spec.app, &json).expect("form to spec");
        serde_json::from_value(back).expect("a spec")
    }

    #[test]
    fn a_new_job_round_trips() {
        let mut spec: JobSpec = serde_json::from_value(new_spec("billing")).expect("a spec");
        spec.name = "report".into();
        assert_eq!(round_trip(&spec), spec);
    }

    #[test]
    fn every_field_round_trips() {
        let spec: JobSpec = toml::from_str(
            r#"
            app = "billing"
            name = "nightly"
            description = "the nightly report"
            schedule = { cron = "0 0 2 * * ?", tz = "Asia/Shanghai" }
            kind = "script"
            script = { lang = "python", source = "print('hi')\nprint('there')" }
            params = "p"
            shards = 3
            shard_params = ["a;1", "b", "c"]
            routing = "round_robin"
            workers = ["w1"]
            overlap = "parallel"
            max_parallel = 4
            timeout = "30s"
            retry = { max = 2, backoff = "5s", multiplier = 1.5, max_backoff = "1m" }
            misfire = "catch_up"
            children = ["billing/a", "shop/b"]
            alarm = { emails = ["ops@example.com"], webhooks = ["https://h.example/x?a=1"], on = ["fail", "stuck"], stuck_after = "5m" }
            enabled = false
            "#,
        )
        .expect("a spec");
        assert_eq!(round_trip(&spec), spec);
    }

    #[test]
    fn an_http_job_round_trips() {
        let spec: JobSpec = toml::from_str(
            r#"
            app = "shop"
            name = "ping"
            kind = "http"
            http = { url = "https://example.com/hook?x=1", method = "PUT", headers = { "X-Token" = "a: b", Accept = "text/plain" }, body = "{}", timeout = "3s" }
            "#,
        )
        .expect("a spec");
        assert_eq!(round_trip(&spec), spec);
    }

    #[test]
    fn a_header_without_a_colon_names_its_line() {
        let mut form = JobForm::from_spec(&new_spec("shop"));
        form.name = "ping".into();
        form.kind = "http".into();
        form.http_url = "http://localhost/".into();
        form.http_headers = "Accept: */*\nbroken".into();
        let e = form
            .to_spec("shop", &new_spec("shop"))
            .expect_err("a bad header");
        assert_eq!(e.field, "http.headers");
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn switching_kinds_drops_the_other_kinds_fields() {
        let json = new_spec("a");
        let mut form = JobForm::from_spec(&json);
        form.name = "j".into();
        form.kind = "script".into();
        form.command = "echo hi".into();
        form.handler = "left-over".into();
        let spec = form.to_spec("a", &json).expect("a spec");
        assert_eq!(spec["command"], "echo hi");
        assert!(spec.get("handler").is_none());
        assert!(spec.get("script").is_none());
        form.use_source = true;
        form.source = "echo there".into();
        let spec = form.to_spec("a", &json).expect("a spec");
        assert_eq!(spec["script"]["lang"], "shell");
        assert!(spec.get("command").is_none());
    }

    #[test]
    fn a_message_next_to_its_field_does_not_repeat_the_field() {
        assert_eq!(
            field_message(
                "job a/b: field `schedule.cron`: minute `61` out of range 0-59",
                "schedule.cron"
            ),
            "minute `61` out of range 0-59"
        );
        assert_eq!(
            field_message("is not a whole number", "shards"),
            "is not a whole number"
        );
    }

    #[test]
    fn errors_find_the_field_they_are_about() {
        assert_eq!(owner("schedule.cron"), Some("schedule.cron"));
        assert_eq!(owner("schedule"), Some("schedule"));
        assert_eq!(owner("script.source"), Some("script"));
        assert_eq!(owner("children[1]"), Some("children"));
        assert_eq!(owner("retry.max_backoff"), Some("retry.max_backoff"));
        assert_eq!(owner("alarm.emails[0]"), Some("alarm.emails"));
        assert_eq!(owner("alarm.on[1]"), Some("alarm.on"));
        assert_eq!(owner("alarm"), Some("alarm.emails"));
        assert_eq!(owner("shardsx"), None);
        assert_eq!(owner(""), None);
    }

    #[test]
    fn bad_numbers_and_durations_name_their_field() {
        let json = new_spec("a");
        let mut form = JobForm::from_spec(&json);
        form.shards = "three".into();
        assert_eq!(
            form.to_spec("a", &json).expect_err("refused").field,
            "shards"
        );
        form.shards = "3".into();
        form.retry_backoff = "soon".into();
        assert_eq!(
            form.to_spec("a", &json).expect_err("refused").field,
            "retry.backoff"
        );
        form.retry_backoff = "10s".into();
        form.schedule = ScheduleKind::Every;
        form.every = "often".into();
        assert_eq!(
            form.to_spec("a", &json).expect_err("refused").field,
            "schedule.every"
        );
    }
}
