//! Job specs as users write them (contract §2), in TOML or JSON, and their checks.
//!
//! A [`JobSpec`] is what `job apply -f`, `PUT /api/apps/{app}/jobs/{job}` and `job
//! export` carry. Field names are the contract's; unknown fields are errors; every
//! field but `app` and `name` has a default. [`JobSpec::validate`] rejects a spec whole
//! with a [`SpecError`] that names the job and the field; [`parse_jobs`] reads a file of
//! one or many jobs and validates each; [`export_toml`] writes jobs back so that
//! `parse_jobs` returns them unchanged.
//!
//! Stored as MessagePack, encode with named fields (`rmp_serde::to_vec_named`): the
//! optional fields are left out when unset.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_KEY_BYTES, MAX_PARAMS_BYTES, MAX_SHARD_PARAMS_BYTES};
use crate::messages::{Execution, ScriptLang, ShardParams, TriggerRequest};
use crate::schedule::Schedule;
use crate::time::Timestamp;

mod children;
mod file;
mod kinds;
#[cfg(test)]
mod tests;
mod validate;

pub use children::child_cycle;
pub use file::{SpecFormat, export_toml, parse_jobs};
pub use kinds::{AlarmOn, Dur, JobKind, Misfire, Overlap, Routing};

/// Most shard items one instance may have.
pub const MAX_SHARDS: u32 = 100_000;

/// Most `children` one job may have.
pub const MAX_CHILDREN: usize = 32;

/// `schedule = { ... }`: exactly one of `cron` (with optional `tz`), `every`, `at`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Cron expression (5 fields Unix, 6-7 Quartz, or `@daily`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron`; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Fixed period, aligned to the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Dur>,
    /// One fire at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// `script = { lang, source }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    /// Interpreter.
    pub lang: ScriptLang,
    /// Source text.
    pub source: String,
}

fn default_method() -> String {
    "POST".to_string()
}

fn default_http_timeout() -> Dur {
    Dur::from_secs(10)
}

/// `http = { url, method, headers, body, timeout }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Method, default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers, by name (names starting `Antares-` are the worker's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: String,
    /// Request timeout, default 10s; 0 = none.
    #[serde(default = "default_http_timeout")]
    pub timeout: Dur,
}

/// `retry = { max, backoff, multiplier, max_backoff }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Retries after the first attempt (0 = none).
    pub max: u32,
    /// Wait before the first retry.
    pub backoff: Dur,
    /// Each further wait is the previous one times this (>= 1).
    pub multiplier: f64,
    /// Longest wait.
    pub max_backoff: Dur,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max: 0,
            backoff: Dur::from_secs(10),
            multiplier: 2.0,
            max_backoff: Dur::from_secs(600),
        }
    }
}

impl RetrySpec {
    /// The wait before retry number `retry` (1 = the first retry):
    /// `backoff * multiplier^(retry-1)`, at most `max_backoff`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exp);
        let secs = self.backoff.0.as_secs_f64() * factor;
        let cap = self.max_backoff.0.max(self.backoff.0);
        if secs.is_finite() && secs < cap.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            cap
        }
    }
}

fn default_alarm_on() -> Vec<AlarmOn> {
    vec![AlarmOn::Fail, AlarmOn::Timeout, AlarmOn::Misfire]
}

/// `alarm = { emails, webhooks, on, stuck_after }` (contract §10; see [`crate::alarm`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSpec {
    /// Addresses to mail.
    #[serde(default)]
    pub emails: Vec<String>,
    /// URLs to POST the alarm event to.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// What raises an alarm.
    #[serde(default = "default_alarm_on")]
    pub on: Vec<AlarmOn>,
    /// Alarm when an instance still runs this long after it started (0 = never).
    #[serde(default, skip_serializing_if = "Dur::is_zero_ref")]
    pub stuck_after: Dur,
}

impl Default for AlarmSpec {
    fn default() -> Self {
        Self {
            emails: Vec::new(),
            webhooks: Vec::new(),
            on: default_alarm_on(),
            stuck_after: Dur::default(),
        }
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One job as written (contract §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// App name.
    pub app: String,
    /// Job name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// When it fires; `None` = only when triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// What it runs.
    #[serde(default)]
    pub kind: JobKind,
    /// Plugin: the registered name (default: the job name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Script: a shell command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Script: a script source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptSpec>,
    /// Http: the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Job-level parameter string handed to every shard.
    #[serde(default)]
    pub params: String,
    /// Shard count; defaults to the number of `shard_params`, or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Per-item params: `"a;b;c"` or `["a", "b"]`.
    #[serde(default)]
    pub shard_params: ShardParams,
    /// Which worker gets an item.
    #[serde(default)]
    pub routing: Routing,
    /// Pinning to worker ids (empty = any).
    #[serde(default)]
    pub workers: Vec<String>,
    /// Overlapping runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// Instances side by side for `overlap = "parallel"`.
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// Timeout of each shard attempt; 0 = none.
    #[serde(default)]
    pub timeout: Dur,
    /// Retries of failed shard items.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Missed fires.
    #[serde(default)]
    pub misfire: Misfire,
    /// `app/job`s fired after success.
    #[serde(default)]
    pub children: Vec<String>,
    /// Who hears about trouble.
    #[serde(default)]
    pub alarm: AlarmSpec,
    /// Whether the schedule runs (explicit triggers always do).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for JobSpec {
    /// A manual plugin job with empty names (fill in `app` and `name`).
    fn default() -> Self {
        Self {
            app: String::new(),
            name: String::new(),
            description: String::new(),
            schedule: None,
            kind: JobKind::Plugin,
            handler: None,
            command: None,
            script: None,
            http: None,
            params: String::new(),
            shards: None,
            shard_params: ShardParams::default(),
            routing: Routing::Pull,
            workers: Vec::new(),
            overlap: Overlap::Serial,
            max_parallel: 1,
            timeout: Dur::default(),
            retry: RetrySpec::default(),
            misfire: Misfire::FireOnce,
            children: Vec::new(),
            alarm: AlarmSpec::default(),
            enabled: true,
        }
    }
}

impl JobSpec {
    /// `(app, name)`.
    pub fn key(&self) -> (&str, &str) {
        (&self.app, &self.name)
    }

    /// `app/name`, as the CLI writes it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }

    /// The plugin name: `handler`, or the job name.
    pub fn handler_name(&self) -> &str {
        self.handler.as_deref().unwrap_or(&self.name)
    }

    /// Timeout of each shard attempt in milliseconds, 0 for none.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout.millis()
    }

    /// A new instance of this job: its params, what it runs, its timeout and retry
    /// policy as they are now; no parent and no key (set them after, where they apply).
    pub fn new_instance(
        &self,
        id: crate::InstanceId,
        trigger: crate::instance::TriggerKind,
        scheduled_at: Timestamp,
        shard_params: Vec<String>,
    ) -> crate::instance::NewInstance {
        crate::instance::NewInstance {
            id,
            app: self.app.clone(),
            job: self.name.clone(),
            trigger,
            scheduled_at,
            params: self.params.clone(),
            exec: self.execution(),
            timeout_ms: self.timeout_ms(),
            shard_params,
            retry: self.retry_policy(),
            parent: None,
            depth: 0,
            key: None,
        }
    }

    /// The retry policy an instance of this job keeps.
    pub fn retry_policy(&self) -> crate::instance::RetryPolicy {
        crate::instance::RetryPolicy {
            max: self.retry.max,
            backoff_ms: self.retry.backoff.millis(),
            multiplier: self.retry.multiplier,
            max_backoff_ms: self.retry.max_backoff.millis(),
        }
    }

    /// What each shard runs. Meant for a validated spec (an invalid one gives an empty
    /// command rather than an error).
    pub fn execution(&self) -> Execution {
        match self.kind {
            JobKind::Plugin => Execution::Plugin {
                handler: self.handler_name().to_string(),
            },
            JobKind::Script => match (&self.script, &self.command) {
                (Some(s), _) => Execution::Script {
                    lang: s.lang,
                    source: s.source.clone(),
                },
                (None, command) => Execution::Command {
                    command: command.clone().unwrap_or_default(),
                },
            },
            JobKind::Http => {
                let http = self.http.clone().unwrap_or(HttpSpec {
                    url: String::new(),
                    method: default_method(),
                    headers: BTreeMap::new(),
                    body: String::new(),
                    timeout: default_http_timeout(),
                });
                Execution::Http {
                    url: http.url,
                    method: http.method.to_ascii_uppercase(),
                    headers: http.headers,
                    body: http.body,
                    timeout_ms: http.timeout.millis(),
                }
            }
        }
    }

    /// The checked schedule, `None` for a job without one.
    pub fn schedule(&self) -> Result<Option<Schedule>, SpecError> {
        self.schedule
            .as_ref()
            .map(Schedule::from_spec)
            .transpose()
            .map_err(|e| e.in_job(self.full_name()))
    }

    /// Checks everything; the error names the job and the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate::check(self).map_err(|e| e.in_job(self.full_name()))
    }

    /// The shard params of one instance, one per item, given a trigger's overrides:
    /// - neither `shards` nor `shard_params` in the trigger: the job's (`shards`, or the
    ///   number of its `shard_params`, or 1; `""` for items without a param);
    /// - `shard_params` (non-empty): they replace the job's, and their count is the
    ///   item count; with `shards` too, both must agree;
    /// - `shards` alone: that many items, each with an empty param.
    ///
    /// This is where a trigger is checked, by the admin before it publishes one and by
    /// the scheduler when it takes one: `params` at most [`MAX_PARAMS_BYTES`], all shard
    /// params together at most [`MAX_SHARD_PARAMS_BYTES`], a `key` of 1 to
    /// [`MAX_KEY_BYTES`] bytes.
    pub fn shard_items(&self, req: &TriggerRequest) -> Result<Vec<String>, SpecError> {
        self.check_trigger(req)
            .map_err(|e| e.in_job(self.full_name()))?;
        let over = req.shard_params.as_ref().filter(|p| !p.is_empty());
        if self.routing == Routing::Broadcast && (over.is_some() || req.shards.is_some()) {
            let field = if over.is_some() {
                "shard_params"
            } else {
                "shards"
            };
            return Err(SpecError::new(
                field,
                "the job has `routing = \"broadcast\"`, one shard per live worker: a trigger cannot set `shards` or `shard_params` (give `params`, which every shard gets)",
            )
            .in_job(self.full_name()));
        }
        let (count, params) = match (over, req.shards) {
            (Some(p), shards) => {
                let params = p.items();
                if let Some(s) = shards
                    && params.len() != s as usize
                {
                    return Err(SpecError::new(
                        "shard_params",
                        format!(
                            "the trigger gives {} shard params but `shards` = {s}: give one param per shard, or leave `shards` out",
                            params.len()
                        ),
                    )
                    .in_job(self.full_name()));
                }
                (params.len(), params)
            }
            (None, Some(s)) => (s as usize, Vec::new()),
            (None, None) => {
                let params = self.shard_params.items();
                let count = match self.shards {
                    Some(s) => s as usize,
                    None if params.is_empty() => 1,
                    None => params.len(),
                };
                if !params.is_empty() && params.len() != count {
                    return Err(SpecError::new(
                        "shard_params",
                        format!("has {} params but `shards` = {count}", params.len()),
                    )
                    .in_job(self.full_name()));
                }
                (count, params)
            }
        };
        if count == 0 || count > MAX_SHARDS as usize {
            let field = if req.shards.is_some() || self.shards.is_some() {
                "shards"
            } else {
                "shard_params"
            };
            return Err(SpecError::new(
                field,
                format!("{count} shard items: an instance has 1 to {MAX_SHARDS}"),
            )
            .in_job(self.full_name()));
        }
        validate::check_size(
            "shard_params",
            "the shard params together are",
            validate::params_bytes(&params),
            MAX_SHARD_PARAMS_BYTES,
        )
        .map_err(|e| e.in_job(self.full_name()))?;
        let mut params = params;
        params.resize(count, String::new());
        Ok(params)
    }

    /// The checks of a trigger's `params` and `key`.
    fn check_trigger(&self, req: &TriggerRequest) -> Result<(), SpecError> {
        if let Some(p) = &req.params {
            validate::check_size(
                "params",
                "the trigger's `params` are",
                p.len(),
                MAX_PARAMS_BYTES,
            )?;
        }
        if let Some(key) = &req.key {
            if key.is_empty() {
                return Err(SpecError::new(
                    "key",
                    format!(
                        "is empty: give 1 to {MAX_KEY_BYTES} bytes of text, or leave `key` out"
                    ),
                ));
            }
            validate::check_size("key", "the trigger's `key` is", key.len(), MAX_KEY_BYTES)?;
        }
        Ok(())
    }
}

/// A spec that cannot be used: which job, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SpecError {
    /// The job (`app/name`, or `#2 app/name` in a file of several), when known.
    pub job: Option<String>,
    /// The field (`schedule.cron`, `workers[2]`, ...); empty for the file as a whole.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl SpecError {
    /// An error about a field, job not known yet.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            job: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Sets the job, unless one is set already.
    pub fn in_job(mut self, job: impl Into<String>) -> Self {
        if self.job.is_none() {
            self.job = Some(job.into());
        }
        self
    }

    fn render(&self) -> String {
        match (&self.job, self.field.is_empty()) {
            (Some(job), false) => format!("job {job}: field `{}`: {}", self.field, self.message),
            (Some(job), true) => format!("job {job}: {}", self.message),
            (None, false) => format!("field `{}`: {}", self.field, self.message),
            (None, true) => self.message.clone(),
        }
    }
}
