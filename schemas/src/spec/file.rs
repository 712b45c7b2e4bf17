//! Job files: reading one or many jobs from TOML or JSON, and writing them back.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{JobSpec, SpecError};

/// The format of a job file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecFormat {
    /// One job at top level, or a `[[job]]` list.
    Toml,
    /// One object, an array, or `{"job": [...]}`.
    Json,
}

impl SpecFormat {
    /// By extension (`.json`, `.toml`), else JSON if the text starts with `{`, or with
    /// `[` then `{` or `]` (a TOML file may start with `[[job]]` or a `[table]`).
    pub fn guess(path: &str, text: &str) -> SpecFormat {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".json") {
            SpecFormat::Json
        } else if lower.ends_with(".toml") {
            SpecFormat::Toml
        } else if looks_like_json(text) {
            SpecFormat::Json
        } else {
            SpecFormat::Toml
        }
    }
}

fn looks_like_json(text: &str) -> bool {
    let t = text.trim_start();
    if t.starts_with('{') {
        return true;
    }
    t.strip_prefix('[')
        .is_some_and(|rest| rest.trim_start().starts_with(['{', ']']))
}

/// Reads every job of a file and validates each. An empty document gives no jobs.
/// Errors name the job (its position when the file holds several) and the field.
pub fn parse_jobs(text: &str, format: SpecFormat) -> Result<Vec<JobSpec>, SpecError> {
    let raw = match format {
        SpecFormat::Toml => toml_jobs(text)?,
        SpecFormat::Json => json_jobs(text)?,
    };
    let many = raw.len() > 1;
    let mut jobs: Vec<JobSpec> = Vec::with_capacity(raw.len());
    // Where each job is in the file, by app and name: a repeat is found in one lookup,
    // however many jobs the file holds.
    let mut seen: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let label = label(&value, i, many);
        let job = decode(&value).map_err(|e| e.in_job(label.clone()))?;
        job.validate().map_err(|mut e| {
            e.job = Some(label.clone());
            e
        })?;
        let key = (job.app.clone(), job.name.clone());
        if let Some(j) = seen.get(&key) {
            return Err(SpecError::new(
                "name",
                format!(
                    "{} appears twice in this file (also job #{})",
                    job.full_name(),
                    j + 1
                ),
            )
            .in_job(label));
        }
        seen.insert(key, jobs.len());
        jobs.push(job);
    }
    Ok(jobs)
}

/// `#2 billing/report` in a file of several jobs, `billing/report` alone.
fn label(value: &Value, i: usize, many: bool) -> String {
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let has_name = value.get("app").is_some() || value.get("name").is_some();
    match (many, has_name) {
        (true, true) => format!("#{} {}/{}", i + 1, text("app"), text("name")),
        (true, false) => format!("#{}", i + 1),
        (false, true) => format!("{}/{}", text("app"), text("name")),
        (false, false) => "#1".to_string(),
    }
}

fn toml_jobs(text: &str) -> Result<Vec<Value>, SpecError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| SpecError::new("", format!("not valid TOML: {e}")))?;
    let doc = toml_to_json(toml::Value::Table(table));
    split(doc, "[[job]]")
}

fn json_jobs(text: &str) -> Result<Vec<Value>, SpecError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| SpecError::new("", format!("not valid JSON: {e}")))?;
    split(doc, "\"job\"")
}

/// One job, a list of jobs, or `{job = [...]}`.
fn split(doc: Value, list_name: &str) -> Result<Vec<Value>, SpecError> {
    let shape = || {
        SpecError::new(
            "",
            "expected one job (a table/object with `app` and `name`), a list of them, or `job` = a list of them",
        )
    };
    match doc {
        Value::Array(items) => Ok(items),
        Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        Value::Object(mut map) if map.contains_key("job") => {
            if map.len() > 1 {
                let others: Vec<&str> = map
                    .keys()
                    .filter(|k| *k != "job")
                    .map(String::as_str)
                    .collect();
                return Err(SpecError::new(
                    "",
                    format!(
                        "the file has both a {list_name} list and top-level job fields ({}): put each job in the list",
                        others.join(", ")
                    ),
                ));
            }
            match map.remove("job") {
                Some(Value::Array(items)) => Ok(items),
                Some(one @ Value::Object(_)) => Ok(vec![one]),
                _ => Err(shape()),
            }
        }
        one @ Value::Object(_) => Ok(vec![one]),
        _ => Err(shape()),
    }
}

/// TOML to JSON values; TOML date-times become RFC 3339 strings.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// Decodes one job; on failure finds the field at fault by decoding each field alone
/// (serde's message says what is wrong, not always where).
fn decode(value: &Value) -> Result<JobSpec, SpecError> {
    let err = match <JobSpec as serde::Deserialize>::deserialize(value) {
        Ok(job) => return Ok(job),
        Err(e) => e,
    };
    let Value::Object(map) = value else {
        return Err(SpecError::new(
            "",
            format!("a job must be a table/object: {err}"),
        ));
    };
    for (key, v) in map {
        let Err(e) = probe(key, v.clone()) else {
            continue;
        };
        if !FIELDS.contains(&key.as_str()) {
            return Err(SpecError::new(key.clone(), unknown_field(key)));
        }
        if let Value::Object(inner) = v {
            for (sub, sv) in inner {
                let one = Value::Object(Map::from_iter([(sub.clone(), sv.clone())]));
                if let Err(se) = probe(key, one)
                    && !se.to_string().starts_with("missing field")
                {
                    return Err(SpecError::new(format!("{key}.{sub}"), se.to_string()));
                }
            }
        }
        return Err(SpecError::new(key.clone(), e.to_string()));
    }
    let message = err.to_string();
    let field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("")
        .to_string();
    Err(SpecError::new(field, message))
}

/// The top-level fields of a job (contract §2).
pub(super) const FIELDS: [&str; 22] = [
    "app",
    "name",
    "description",
    "schedule",
    "kind",
    "handler",
    "command",
    "script",
    "http",
    "params",
    "shards",
    "shard_params",
    "routing",
    "workers",
    "overlap",
    "max_parallel",
    "timeout",
    "retry",
    "misfire",
    "children",
    "alarm",
    "enabled",
];

/// `unknown field `scheduel`: did you mean `schedule`?`, or the list of fields.
fn unknown_field(key: &str) -> String {
    match crate::names::closest(key, FIELDS.iter().copied()) {
        Some(f) => format!("unknown field `{key}`: did you mean `{f}`?"),
        None => format!(
            "unknown field `{key}`: a job has the fields {}",
            FIELDS.join(", ")
        ),
    }
}

/// Decodes a minimal job with only `key` set to `v`.
fn probe(key: &str, v: Value) -> Result<JobSpec, serde_json::Error> {
    let mut map = Map::new();
    map.insert("app".into(), Value::from("a"));
    map.insert("name".into(), Value::from("b"));
    map.insert(key.to_string(), v);
    serde_json::from_value(Value::Object(map))
}

/// Every job as one TOML document of `[[job]]` tables, which [`parse_jobs`] reads back
/// unchanged. No jobs give a comment only.
pub fn export_toml(jobs: &[JobSpec]) -> Result<String, SpecError> {
    #[derive(Serialize)]
    struct Doc<'a> {
        job: &'a [JobSpec],
    }
    if jobs.is_empty() {
        return Ok("# no jobs\n".to_string());
    }
    toml::to_string(&Doc { job: jobs })
        .map_err(|e| SpecError::new("", format!("cannot write the jobs as TOML: {e}")))
}
