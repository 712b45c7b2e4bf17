//! The checks of [`JobSpec::validate`], one field at a time.

use super::{JobKind, JobSpec, MAX_SHARDS, SpecError};
use crate::names::{check_name, check_worker_id, split_job_ref};
use crate::schedule::Schedule;

/// HTTP methods an `http` job may use.
pub(super) const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::new(field, message)
}

/// Whether `url` is an absolute http(s) URL with a host.
pub(super) fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Fields that belong to another kind.
fn foreign_fields(spec: &JobSpec) -> Result<(), SpecError> {
    let kind = spec.kind.as_str();
    let present: [(&str, bool, JobKind); 4] = [
        ("handler", spec.handler.is_some(), JobKind::Plugin),
        ("command", spec.command.is_some(), JobKind::Script),
        ("script", spec.script.is_some(), JobKind::Script),
        ("http", spec.http.is_some(), JobKind::Http),
    ];
    for (field, set, owner) in present {
        if set && owner != spec.kind {
            return Err(err(
                field,
                format!(
                    "`{field}` is only for kind = \"{}\", and this job is kind = \"{kind}\": remove it or change `kind`",
                    owner.as_str()
                ),
            ));
        }
    }
    Ok(())
}

fn kind_fields(spec: &JobSpec) -> Result<(), SpecError> {
    foreign_fields(spec)?;
    match spec.kind {
        JobKind::Plugin => {
            if let Some(h) = &spec.handler {
                check_name("handler", h).map_err(|e| err("handler", e.to_string()))?;
            }
        }
        JobKind::Script => match (&spec.command, &spec.script) {
            (None, None) => {
                return Err(err(
                    "command",
                    "a job of kind = \"script\" needs `command` (a shell command line) or `script = { lang, source }`",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(err("script", "give either `command` or `script`, not both"));
            }
            (Some(c), None) if c.trim().is_empty() => {
                return Err(err("command", "is empty"));
            }
            (None, Some(s)) if s.source.trim().is_empty() => {
                return Err(err("script.source", "is empty"));
            }
            _ => {}
        },
        JobKind::Http => {
            let Some(http) = &spec.http else {
                return Err(err(
                    "http",
                    "a job of kind = \"http\" needs `http = { url = \"https://...\" }`",
                ));
            };
            if !is_http_url(&http.url) {
                return Err(err(
                    "http.url",
                    format!("`{}` is not an http:// or https:// URL", http.url),
                ));
            }
            if !METHODS.contains(&http.method.to_ascii_uppercase().as_str()) {
                return Err(err(
                    "http.method",
                    format!(
                        "unknown method `{}`: use one of {}",
                        http.method,
                        METHODS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn shard_fields(spec: &JobSpec) -> Result<(), SpecError> {
    if let Some(s) = spec.shards
        && !(1..=MAX_SHARDS).contains(&s)
    {
        return Err(err("shards", format!("{s} is out of range 1-{MAX_SHARDS}")));
    }
    let n = spec.shard_params.items().len();
    if n > MAX_SHARDS as usize {
        return Err(err(
            "shard_params",
            format!("{n} params: at most {MAX_SHARDS}"),
        ));
    }
    if let Some(s) = spec.shards
        && n > 0
        && n != s as usize
    {
        return Err(err(
            "shard_params",
            format!(
                "has {n} params but `shards` = {s}: give one param per shard, or leave `shards` out (it defaults to the number of params)"
            ),
        ));
    }
    Ok(())
}

fn other_fields(spec: &JobSpec) -> Result<(), SpecError> {
    for (i, w) in spec.workers.iter().enumerate() {
        check_worker_id(w).map_err(|e| err(format!("workers[{i}]"), e.to_string()))?;
    }
    if spec.max_parallel == 0 {
        return Err(err("max_parallel", "must be at least 1"));
    }
    let m = spec.retry.multiplier;
    if !m.is_finite() || m < 1.0 {
        return Err(err(
            "retry.multiplier",
            format!("{m} is not allowed: use a number >= 1.0 (1.0 = the same wait every time)"),
        ));
    }
    for (i, child) in spec.children.iter().enumerate() {
        let field = format!("children[{i}]");
        let (app, job) = split_job_ref(child).map_err(|e| err(&field, e.to_string()))?;
        if app == spec.app && job == spec.name {
            return Err(err(field, "a job cannot be its own child"));
        }
    }
    for (i, email) in spec.alarm.emails.iter().enumerate() {
        let ok = email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !email.chars().any(char::is_whitespace);
        if !ok {
            return Err(err(
                format!("alarm.emails[{i}]"),
                format!("`{email}` is not an email address"),
            ));
        }
    }
    for (i, hook) in spec.alarm.webhooks.iter().enumerate() {
        if !is_http_url(hook) {
            return Err(err(
                format!("alarm.webhooks[{i}]"),
                format!("`{hook}` is not an http:// or https:// URL"),
            ));
        }
    }
    Ok(())
}

/// Every check, first failure first; the caller adds the job.
pub(super) fn check(spec: &JobSpec) -> Result<(), SpecError> {
    check_name("app", &spec.app).map_err(|e| err("app", e.to_string()))?;
    check_name("job", &spec.name).map_err(|e| err("name", e.to_string()))?;
    if let Some(s) = &spec.schedule {
        Schedule::from_spec(s)?;
    }
    kind_fields(spec)?;
    shard_fields(spec)?;
    other_fields(spec)
}
