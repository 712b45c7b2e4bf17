//! The delivery task every scheduler process runs: it pulls alarm deliveries from the
//! shared durable consumer of the alarm stream, sends each (webhook or email) and
//! settles it: acked when sent, put back with a growing delay when not, given up after
//! [`AlarmOptions::attempts`] attempts (logged, and said by an `alarm` event with a
//! `reason`). A few are sent at once, so one slow endpoint does not hold up the others.

use std::time::Duration;

use antares_nats::queue::{self, ConsumerSpec, Settle};
use antares_nats::{Nats, codec};
use antares_schemas::alarm::{AlarmDelivery, AlarmTarget};
use futures::StreamExt;
use tokio::sync::watch;

use super::AlarmOptions;
use super::email::Mailer;
use super::raise::alarm_event;
use super::webhook;
use crate::events;

/// Deliveries sent at once by one process.
const CONCURRENT: usize = 16;
/// How long one delivery may stay unsettled before NATS gives it to another process:
/// longer than a webhook's and an SMTP exchange's timeouts.
const ACK_WAIT: Duration = Duration::from_secs(90);
/// Longest wait before the consumer is made again after it failed.
const MAX_RESTART: Duration = Duration::from_secs(30);

/// What each delivery needs.
struct Senders {
    nats: Nats,
    opts: AlarmOptions,
    http: reqwest::Client,
    mailer: Option<Mailer>,
}

/// Checks the alarm settings (the error names the one at fault and never shows a
/// secret); the scheduler refuses to start with bad ones.
pub fn check(opts: &AlarmOptions) -> Result<(), String> {
    if let Some(url) = &opts.smtp_url {
        Mailer::new(url, opts.smtp_from.as_deref())?;
    } else if opts.smtp_from.is_some() {
        return Err("smtp_from is set but smtp_url is not: set both, or neither".into());
    }
    if opts.attempts == 0 {
        return Err("alarm delivery attempts must be at least 1".into());
    }
    webhook::client().map(|_| ())
}

/// Delivers alarms until `stop` turns true.
pub async fn run(nats: Nats, opts: AlarmOptions, mut stop: watch::Receiver<bool>) {
    let mailer = match opts.smtp_url.as_deref() {
        Some(url) => match Mailer::new(url, opts.smtp_from.as_deref()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!("alarm emails cannot be sent: {e}");
                None
            }
        },
        None => None,
    };
    let http = match webhook::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("alarm deliveries stopped: {e}");
            return;
        }
    };
    let senders = Senders {
        nats,
        opts,
        http,
        mailer,
    };
    let mut failures = 0u32;
    loop {
        let consumed = async {
            let topo = &senders.nats.topo;
            let consumer = queue::durable(
                &senders.nats,
                &ConsumerSpec {
                    stream: topo.alarms_stream(),
                    durable: topo.alarms_consumer(),
                    filter: None,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 4 * CONCURRENT as i64,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(CONCURRENT)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            messages
                .for_each_concurrent(CONCURRENT, |m| async {
                    match m {
                        Ok(m) => senders.deliver(&m).await,
                        Err(e) => tracing::debug!(error = %e, "alarm pull hiccup"),
                    }
                })
                .await;
            Ok::<(), String>(())
        };
        let why = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = consumed => match r {
                Ok(()) => "the alarm consumer ended".to_string(),
                Err(e) => e,
            },
        };
        failures = failures.saturating_add(1);
        let wait = Duration::from_millis(250)
            .saturating_mul(1 << failures.min(7))
            .min(MAX_RESTART);
        tracing::warn!(error = %why, "alarm deliveries paused; starting again in {wait:?}");
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Senders {
    /// Sends one delivery and settles its message.
    async fn deliver(&self, msg: &async_nats::jetstream::Message) {
        let attempt = queue::attempt(msg);
        let delivery: AlarmDelivery = match codec::decode("alarm delivery", &msg.payload) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "alarm delivery unreadable: dropped");
                let _ = queue::settle(msg, Settle::Term).await;
                return;
            }
        };
        let what = delivery.target.describe();
        let p = &delivery.payload;
        let sent = self.send(&delivery).await;
        let settle = match sent {
            Ok(()) => {
                tracing::info!(app = %p.app, job = %p.job, kind = p.kind.as_str(), target = %what, attempt, "alarm delivered");
                Settle::Ack
            }
            Err(why) if attempt < self.opts.attempts => {
                let wait = self.opts.retry_delay(attempt);
                tracing::warn!(app = %p.app, job = %p.job, kind = p.kind.as_str(), target = %what, attempt, "alarm not delivered ({why}); trying again in {wait:?}");
                Settle::Nak(Some(wait))
            }
            Err(why) => {
                let reason = format!(
                    "alarm not delivered to {what}: {why}; given up after {attempt} attempt(s)"
                );
                tracing::error!(app = %p.app, job = %p.job, kind = p.kind.as_str(), "{reason}");
                events::emit(&self.nats, &alarm_event(p, Some(reason))).await;
                Settle::Ack
            }
        };
        if let Err(e) = queue::settle(msg, settle).await {
            tracing::warn!(target = %what, error = %e, "alarm delivery not settled (it may be sent again)");
        }
    }

    async fn send(&self, d: &AlarmDelivery) -> Result<(), String> {
        match &d.target {
            AlarmTarget::Webhook(url) => {
                let body = serde_json::to_vec(&d.payload)
                    .map_err(|e| format!("payload not encoded: {e}"))?;
                webhook::post(
                    &self.http,
                    url,
                    body.into(),
                    self.opts.webhook_secret.as_deref(),
                )
                .await
            }
            AlarmTarget::Email(to) => match &self.mailer {
                Some(m) => m.send(to, &d.payload).await,
                None => Err(
                    "this scheduler has no smtp_url to send emails through (set --smtp-url and --smtp-from)"
                        .into(),
                ),
            },
        }
    }
}
