//! Who changed what: the audit log and the kept versions of job specs.
//!
//! Every change made through the CLI or the console (apps, jobs, triggers, cancels,
//! users, tokens) is one [`AuditEntry`]; every change of a job spec is also one
//! [`JobVersion`], so an old spec can be looked at and put back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::MAX_AUDIT_SNAPSHOT_BYTES;
use crate::spec::JobSpec;
use crate::time::Timestamp;

/// Through what a change was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The `antares` command line.
    Cli,
    /// A console session.
    Console,
    /// An API token.
    Token,
}

impl Via {
    /// `cli`, `console` or `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Console => "console",
            Self::Token => "token",
        }
    }
}

/// Who made a change: a console user or token, or for the CLI its NATS user (else the OS
/// user) and host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// User, token or NATS/OS user name.
    pub name: String,
    /// Through what.
    pub via: Via,
    /// The host the CLI ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{}@{host} ({})", self.name, self.via.as_str()),
            None => write!(f, "{} ({})", self.name, self.via.as_str()),
        }
    }
}

/// One change, as `GET /api/audit` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log (grows with every entry; `before` pages with it).
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// What, as `<thing>.<verb>`: `app.create`, `job.apply`, `job.rollback`,
    /// `job.trigger`, `instance.cancel`, `user.create`, `token.delete`, ...
    pub action: String,
    /// The thing changed: `app`, `app/job`, an instance id, a user or token name.
    pub target: String,
    /// Its app, when it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The thing before the change (JSON), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The thing after the change (JSON), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// What made a job version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionAction {
    /// `job apply`, or a create/edit in the console.
    Apply,
    /// `job rollback`: an older spec put back.
    Rollback,
    /// `job pause`.
    Pause,
    /// `job resume`.
    Resume,
    /// `job delete` (the version has no spec).
    Delete,
}

impl VersionAction {
    /// `apply`, `rollback`, `pause`, `resume` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Rollback => "rollback",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Delete => "delete",
        }
    }
}

/// One kept version of a job spec (`antares job versions`, `GET .../versions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobVersion {
    /// 1 for the first version of the job, one more for each change after it.
    pub version: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// What made it.
    pub action: VersionAction,
    /// For a rollback, the version put back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    /// The spec (none for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<JobSpec>,
}

/// The top-level fields of a job spec whose JSON differs between `old` and `new` (a field
/// set in one and left out of the other counts), by name. What a version changed.
pub fn changed_fields(old: &JobSpec, new: &JobSpec) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|name| a.get(*name) != b.get(*name))
        .cloned()
        .collect()
}

/// An audit snapshot within [`MAX_AUDIT_SNAPSHOT_BYTES`] of JSON: the value itself, or,
/// when bigger, a small object saying it was cut and how big it was
/// (`{"cut": true, "bytes": N, "reason": ...}`).
pub fn cap_snapshot(value: Value) -> Value {
    let bytes = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
    if bytes <= MAX_AUDIT_SNAPSHOT_BYTES {
        return value;
    }
    serde_json::json!({
        "cut": true,
        "bytes": bytes,
        "reason": format!("the snapshot was {bytes} bytes of JSON, more than the {MAX_AUDIT_SNAPSHOT_BYTES} an audit entry keeps"),
    })
}

/// Whether a snapshot is the marker [`cap_snapshot`] puts in place of a cut one.
pub fn is_cut(value: &Value) -> bool {
    value.get("cut") == Some(&Value::Bool(true)) && value.get("bytes").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SpecFormat, parse_jobs};

    fn spec(extra: &str) -> JobSpec {
        let text = format!("app = \"a\"\nname = \"j\"\n{extra}");
        parse_jobs(&text, SpecFormat::Toml)
            .expect("test spec")
            .remove(0)
    }

    #[test]
    fn changed_fields_name_what_differs() {
        let base = spec("params = \"x\"\n");
        assert!(changed_fields(&base, &base).is_empty());
        let other = spec("params = \"y\"\nenabled = false\ndescription = \"d\"\n");
        assert_eq!(
            changed_fields(&base, &other),
            ["description", "enabled", "params"]
        );
        let scheduled = spec("params = \"x\"\nschedule = { every = \"10s\" }\n");
        assert_eq!(changed_fields(&base, &scheduled), ["schedule"]);
        assert_eq!(changed_fields(&scheduled, &base), ["schedule"]);
    }

    #[test]
    fn oversized_snapshots_are_cut_and_marked() {
        let small = serde_json::json!({"params": "x"});
        assert_eq!(cap_snapshot(small.clone()), small);
        assert!(!is_cut(&small));
        let big = serde_json::json!({"params": "x".repeat(MAX_AUDIT_SNAPSHOT_BYTES)});
        let cut = cap_snapshot(big);
        assert!(is_cut(&cut), "{cut}");
        assert!(cut["bytes"].as_u64() > Some(MAX_AUDIT_SNAPSHOT_BYTES as u64));
        assert!(serde_json::to_vec(&cut).expect("json").len() < 1024);
    }
}
