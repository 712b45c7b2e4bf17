//! Alarms (contract §10): what is raised, what a webhook receives, and what the
//! scheduler queues for delivery.
//!
//! The leader decides an alarm where the outcome is known and publishes the `alarm`
//! event at once; each of the job's targets (a webhook or an email address) then gets
//! one [`AlarmDelivery`] message on the alarm stream, delivered and retried apart from
//! scheduling. One message per target, so a target that keeps failing never holds up
//! or repeats the others.

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::spec::AlarmOn;
use crate::time::Timestamp;

/// Most webhooks one job may name.
pub const MAX_ALARM_WEBHOOKS: usize = 16;
/// Most email addresses one job may name.
pub const MAX_ALARM_EMAILS: usize = 16;
/// Longest webhook URL or email address.
pub const MAX_ALARM_TARGET_BYTES: usize = 2048;

/// Why an alarm was raised (the `kind` of an `alarm` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// An instance failed.
    Fail,
    /// An instance timed out.
    Timeout,
    /// Fires were missed while no scheduler ran.
    Misfire,
    /// An instance still runs (or waits for a capable worker) `stuck_after` after it
    /// started.
    Stuck,
    /// The first success after a failure.
    Recovered,
}

impl AlarmKind {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Timeout => "timeout",
            Self::Misfire => "misfire",
            Self::Stuck => "stuck",
            Self::Recovered => "recovered",
        }
    }

    /// The `alarm.on` entry that asks for this kind.
    pub fn on(self) -> AlarmOn {
        match self {
            Self::Fail => AlarmOn::Fail,
            Self::Timeout => AlarmOn::Timeout,
            Self::Misfire => AlarmOn::Misfire,
            Self::Stuck => AlarmOn::Stuck,
            Self::Recovered => AlarmOn::Recovered,
        }
    }
}

/// What a webhook receives (`POST`, JSON; contract §10), and what an email tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmPayload {
    /// Why.
    pub kind: AlarmKind,
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// The instance, or `null` (misfires).
    pub instance: Option<InstanceId>,
    /// When it was raised.
    pub at: Timestamp,
    /// The instance's status, or `null`.
    pub status: Option<String>,
    /// What went wrong, in words, or `null`.
    pub error: Option<String>,
    /// Where to see more, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Alarms of the same job and kind left out since the last one (rate limit); absent
    /// when none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where one delivery goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmTarget {
    /// `POST` the payload to this URL.
    Webhook(String),
    /// Mail the alarm to this address.
    Email(String),
}

impl AlarmTarget {
    /// `webhook https://host/path` or `email a@b.c`, for logs and events: a webhook
    /// without its query string (which often holds a token).
    pub fn describe(&self) -> String {
        match self {
            Self::Webhook(url) => {
                let cut = url.split(['?', '#']).next().unwrap_or(url);
                format!("webhook {cut}")
            }
            Self::Email(to) => format!("email to {to}"),
        }
    }
}

/// One alarm for one target, queued on the alarm stream (MessagePack).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmDelivery {
    /// What to tell.
    pub payload: AlarmPayload,
    /// Whom.
    pub target: AlarmTarget,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_contract_keys() {
        let p = AlarmPayload {
            kind: AlarmKind::Fail,
            app: "shop".into(),
            job: "sweep".into(),
            instance: None,
            at: Timestamp(0),
            status: Some("failed".into()),
            error: None,
            url: None,
            suppressed: 0,
        };
        let v = serde_json::to_value(&p).expect("json");
        let mut keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["app", "at", "error", "instance", "job", "kind", "status"]
        );
        assert_eq!(v["kind"], "fail");
        let v = serde_json::to_value(AlarmPayload { suppressed: 3, ..p }).expect("json");
        assert_eq!(v["suppressed"], 3);
    }

    #[test]
    fn a_webhook_is_described_without_its_query() {
        let t = AlarmTarget::Webhook("https://h.example/x?token=secret".into());
        assert_eq!(t.describe(), "webhook https://h.example/x");
    }
}
