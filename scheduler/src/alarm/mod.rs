//! Alarms (contract §10): deciding them in the leader, delivering them beside it.
//!
//! **Deciding.** The leader raises an alarm where the outcome is known: an instance
//! that ended `failed` or `timed_out` (`fail`, `timeout`) or `success` after its job's
//! last ended instance failed (`recovered`: the leader remembers each job's last final
//! status, and after a takeover reads it from the job state bucket); missed fires
//! (`misfire`, where the `misfired` event goes out); an instance still running, or
//! waiting for a capable worker, `stuck_after` after it started (`stuck`, from the
//! maintenance tick, once per instance). Only the kinds in the job's `alarm.on` are
//! raised.
//!
//! **Rate limit.** One job's alarms of one kind are raised at most once per
//! [`AlarmOptions::repeat_window`] (a minute by default); the ones left out meanwhile
//! are counted, and the next one raised carries the count (`suppressed` in its event and
//! payload). The count lives in the leader: a takeover starts afresh.
//!
//! **Handing off.** Raising publishes the `alarm` event at once, then queues one
//! [`AlarmDelivery`](antares_schemas::alarm::AlarmDelivery) per target on the alarm
//! stream (a JetStream work queue, bounded by bytes): the leader does not wait for the
//! stream's acknowledgement, let alone for a webhook or a mail server, so alarms never
//! delay scheduling. A queue that is full (or unreachable) is logged; the event went out.
//!
//! **Delivering** ([`deliver`]). Every scheduler process, leader or standby, pulls from
//! one durable consumer of that stream, so each delivery is made by one of them. A
//! delivery that fails is put back with a growing delay (by default 5 s doubling to
//! 5 min: 8 attempts over about 10 min), then given up: logged, and said by an `alarm`
//! event with a `reason`. Webhooks get a `POST` of the JSON payload, signed with
//! `X-Antares-Signature: sha256=<hex HMAC-SHA256 of the body>` when the scheduler has
//! an `alarm_webhook_secret` ([`webhook`]); emails go through `smtp_url` from
//! `smtp_from` ([`email`]). A scheduler without `smtp_url` fails email deliveries
//! saying so (another scheduler that has one may take the retry).
//!
//! Delivery is at least once: a scheduler that dies after sending but before its
//! acknowledgement reached NATS sends again, and a new leader that finishes an instance
//! the previous one had already alarmed on raises it again.

use std::time::Duration;

pub mod deliver;
pub mod email;
pub(crate) mod raise;
pub mod webhook;

/// Alarm settings of a scheduler process.
#[derive(Clone)]
pub struct AlarmOptions {
    /// Key of the webhook signature (`alarm_webhook_secret`); no signature when `None`.
    pub webhook_secret: Option<String>,
    /// `smtp://` or `smtps://user:pass@host:port` (`smtp_url`); emails fail without it.
    pub smtp_url: Option<String>,
    /// Sender of alarm emails (`smtp_from`); needed with `smtp_url`.
    pub smtp_from: Option<String>,
    /// Delay before the second attempt of a delivery; each further one doubles, up to
    /// [`MAX_RETRY_DELAY`].
    pub first_retry: Duration,
    /// Attempts of one delivery before it is given up.
    pub attempts: u32,
    /// One job's alarms of one kind are raised at most once per this long.
    pub repeat_window: Duration,
}

/// Longest delay between two attempts of one delivery.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

impl Default for AlarmOptions {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            smtp_url: None,
            smtp_from: None,
            first_retry: Duration::from_secs(5),
            attempts: 8,
            repeat_window: Duration::from_secs(60),
        }
    }
}

/// Says whether secrets are set, never what they are.
impl std::fmt::Debug for AlarmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmOptions")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("smtp_url", &self.smtp_url.as_deref().map(email::redact_url))
            .field("smtp_from", &self.smtp_from)
            .field("first_retry", &self.first_retry)
            .field("attempts", &self.attempts)
            .field("repeat_window", &self.repeat_window)
            .finish()
    }
}

impl AlarmOptions {
    /// The wait before attempt `attempt + 1`, after attempt `attempt` (from 1) failed.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_retry
            .saturating_mul(factor)
            .min(MAX_RETRY_DELAY.max(self.first_retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_five_minutes_over_about_ten() {
        let o = AlarmOptions::default();
        let waits: Vec<u64> = (1..o.attempts)
            .map(|a| o.retry_delay(a).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300]);
        let total: u64 = waits.iter().sum();
        assert!((540..=720).contains(&total), "{total}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let o = AlarmOptions {
            webhook_secret: Some("hush".into()),
            smtp_url: Some("smtps://me:pa55@mail.example.com:465".into()),
            ..AlarmOptions::default()
        };
        let text = format!("{o:?}");
        assert!(!text.contains("hush") && !text.contains("pa55"), "{text}");
        assert!(text.contains("mail.example.com"), "{text}");
    }
}
