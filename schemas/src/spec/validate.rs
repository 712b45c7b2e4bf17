//! The checks of [`JobSpec::validate`], one field at a time.

use super::{AlarmOn, JobKind, JobSpec, MAX_CHILDREN, MAX_SHARDS, Routing, SpecError};
use crate::alarm::{MAX_ALARM_EMAILS, MAX_ALARM_TARGET_BYTES, MAX_ALARM_WEBHOOKS};
use crate::limits::{
    MAX_HTTP_HEADER_BYTES, MAX_HTTP_HEADERS, MAX_PARAMS_BYTES, MAX_SHARD_PARAMS_BYTES,
    MAX_SOURCE_BYTES,
};
use crate::names::{check_handler, check_name, check_worker_id, split_job_ref};
use crate::schedule::Schedule;

/// HTTP methods an `http` job may use.
pub(super) const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::new(field, message)
}

/// `262144 bytes (256 KiB)`.
pub(crate) fn bytes_text(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{n} bytes ({} KiB)", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Refuses text longer than `max` bytes, saying how long it is.
pub(crate) fn check_size(field: &str, what: &str, len: usize, max: usize) -> Result<(), SpecError> {
    if len > max {
        return Err(err(
            field,
            format!(
                "{what} {} long, more than the limit of {}",
                bytes_text(len),
                bytes_text(max)
            ),
        ));
    }
    Ok(())
}

/// The sum of the lengths of shard params.
pub(crate) fn params_bytes(items: &[String]) -> usize {
    items.iter().map(String::len).sum()
}

/// `alarm`: what raises one, and where it goes (contract §10). Kinds of `on` that this
/// version never raises are refused, as is `stuck` without `stuck_after` and the other
/// way round, so nothing written is silently ignored.
fn alarm_fields(spec: &JobSpec) -> Result<(), SpecError> {
    let alarm = &spec.alarm;
    for (i, on) in alarm.on.iter().enumerate() {
        if matches!(on, AlarmOn::Success | AlarmOn::Cancel | AlarmOn::Skip) {
            return Err(err(
                format!("alarm.on[{i}]"),
                format!(
                    "\"{}\" is not supported in this version yet: use fail, timeout, misfire, stuck or recovered",
                    on.as_str()
                ),
            ));
        }
    }
    let stuck = alarm.on.contains(&AlarmOn::Stuck);
    if stuck && alarm.stuck_after.is_zero() {
        return Err(err(
            "alarm.stuck_after",
            "`on` has \"stuck\": say after how long an instance is stuck (`stuck_after = \"10m\"`)",
        ));
    }
    if !stuck && !alarm.stuck_after.is_zero() {
        return Err(err(
            "alarm.stuck_after",
            "is set but `on` lacks \"stuck\": add it to `on`, or remove `stuck_after`",
        ));
    }
    if alarm.webhooks.len() > MAX_ALARM_WEBHOOKS {
        return Err(err(
            "alarm.webhooks",
            format!(
                "{} webhooks: a job has at most {MAX_ALARM_WEBHOOKS}",
                alarm.webhooks.len()
            ),
        ));
    }
    if alarm.emails.len() > MAX_ALARM_EMAILS {
        return Err(err(
            "alarm.emails",
            format!(
                "{} addresses: a job has at most {MAX_ALARM_EMAILS}",
                alarm.emails.len()
            ),
        ));
    }
    for (i, email) in alarm.emails.iter().enumerate() {
        let field = format!("alarm.emails[{i}]");
        check_size(
            &field,
            "the address is",
            email.len(),
            MAX_ALARM_TARGET_BYTES,
        )?;
        if !is_email(email) {
            return Err(err(
                field,
                format!("`{email}` is not an email address (like ops@example.com)"),
            ));
        }
    }
    for (i, hook) in alarm.webhooks.iter().enumerate() {
        let field = format!("alarm.webhooks[{i}]");
        check_size(&field, "the URL is", hook.len(), MAX_ALARM_TARGET_BYTES)?;
        if !is_http_url(hook) {
            return Err(err(
                field,
                format!("`{hook}` is not an http:// or https:// URL"),
            ));
        }
    }
    Ok(())
}

/// `user@host.domain`: one `@`, a non-empty user, a host with a dot, no spaces, no
/// control characters or brackets (a mail header must not be injected through it).
fn is_email(email: &str) -> bool {
    let Some((user, host)) = email.split_once('@') else {
        return false;
    };
    let plain = |c: char| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"@\\".contains(c);
    !user.is_empty()
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && user.chars().all(plain)
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
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
                check_handler(h).map_err(|e| err("handler", e.to_string()))?;
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
            (Some(c), None) => {
                check_size("command", "the command is", c.len(), MAX_SOURCE_BYTES)?;
            }
            (None, Some(s)) => {
                check_size(
                    "script.source",
                    "the script is",
                    s.source.len(),
                    MAX_SOURCE_BYTES,
                )?;
            }
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
            http_headers(&http.headers)?;
            check_size(
                "http.body",
                "the body is",
                http.body.len(),
                MAX_SOURCE_BYTES,
            )?;
        }
    }
    Ok(())
}

/// Header names the worker sets itself on every request of an `http` job.
pub(super) const RESERVED_HEADER_PREFIX: &str = "antares-";

/// An `http` job's headers: valid names (RFC 9110 tokens), values without control
/// characters, none of the worker's own, each name once whatever its case, bounded.
fn http_headers(headers: &std::collections::BTreeMap<String, String>) -> Result<(), SpecError> {
    if headers.len() > MAX_HTTP_HEADERS {
        return Err(err(
            "http.headers",
            format!(
                "{} headers, more than the limit of {MAX_HTTP_HEADERS}",
                headers.len()
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut bytes = 0;
    for (name, value) in headers {
        let field = format!("http.headers.{name}");
        let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(is_token) {
            return Err(err(
                field,
                format!("`{name}` is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(RESERVED_HEADER_PREFIX) {
            return Err(err(
                field,
                format!(
                    "`{name}`: headers starting with `Antares-` are set by the worker (instance, shard, params); remove it"
                ),
            ));
        }
        if !seen.insert(lower) {
            return Err(err(
                field,
                format!("`{name}` is given twice (header names ignore case)"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err(
                field,
                "the value holds a control character (a line break?); header values are one line of text",
            ));
        }
        bytes += name.len() + value.len();
    }
    check_size(
        "http.headers",
        "the headers are",
        bytes,
        MAX_HTTP_HEADER_BYTES,
    )
}

fn shard_fields(spec: &JobSpec) -> Result<(), SpecError> {
    check_size("params", "`params` is", spec.params.len(), MAX_PARAMS_BYTES)?;
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
    let items = spec.shard_params.items();
    check_size(
        "shard_params",
        "all shard params together are",
        params_bytes(&items),
        MAX_SHARD_PARAMS_BYTES,
    )?;
    Ok(())
}

/// Most worker ids a job may be pinned to.
pub(crate) const MAX_PINNED_WORKERS: usize = 256;

fn routing_fields(spec: &JobSpec) -> Result<(), SpecError> {
    if spec.routing == Routing::Broadcast {
        if spec.shards.is_some() {
            return Err(err(
                "shards",
                "`routing = \"broadcast\"` makes one shard per live worker: remove `shards`",
            ));
        }
        if !spec.shard_params.items().is_empty() {
            return Err(err(
                "shard_params",
                "`routing = \"broadcast\"` makes one shard per live worker: remove `shard_params` (every shard gets `params`)",
            ));
        }
    }
    if spec.workers.len() > MAX_PINNED_WORKERS {
        return Err(err(
            "workers",
            format!(
                "{} worker ids: a job is pinned to at most {MAX_PINNED_WORKERS}",
                spec.workers.len()
            ),
        ));
    }
    for (i, id) in spec.workers.iter().enumerate() {
        let field = format!("workers[{i}]");
        check_worker_id(id).map_err(|e| err(&field, e.to_string()))?;
        if let Some(j) = spec.workers[..i].iter().position(|w| w == id) {
            return Err(err(
                field,
                format!("`{id}` is listed twice (also workers[{j}])"),
            ));
        }
    }
    Ok(())
}

fn children(spec: &JobSpec) -> Result<(), SpecError> {
    if spec.children.len() > MAX_CHILDREN {
        return Err(err(
            "children",
            format!(
                "{} children: a job has at most {MAX_CHILDREN}",
                spec.children.len()
            ),
        ));
    }
    for (i, child) in spec.children.iter().enumerate() {
        let field = format!("children[{i}]");
        let (app, job) = split_job_ref(child).map_err(|e| err(&field, e.to_string()))?;
        if app == spec.app && job == spec.name {
            return Err(err(field, "a job cannot be its own child"));
        }
        if let Some(j) = spec.children[..i].iter().position(|c| c == child) {
            return Err(err(
                field,
                format!("`{child}` is listed twice (also children[{j}])"),
            ));
        }
    }
    Ok(())
}

fn other_fields(spec: &JobSpec) -> Result<(), SpecError> {
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
    children(spec)?;
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
    routing_fields(spec)?;
    alarm_fields(spec)?;
    other_fields(spec)
}
