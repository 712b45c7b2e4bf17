//! Email deliveries through the scheduler's `smtp_url`, from its `smtp_from`.
//!
//! `smtp://host:port` speaks plain SMTP (add `?tls=required` for STARTTLS);
//! `smtps://user:pass@host:port` speaks SMTP over TLS (rustls, the system's roots).
//! Credentials may be given in either. The URL is checked when the scheduler starts;
//! its password never reaches a log or an error ([`redact_url`]).

use std::time::Duration;

use antares_schemas::alarm::AlarmPayload;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A mailer ready to send alarm emails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

/// `smtps://user:***@host:465`: the URL with its password hidden.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let (auth_end, _) = rest
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '?' | '#'))
        .unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

impl Mailer {
    /// A mailer from the scheduler's settings; the error names the setting at fault
    /// (and never shows the password).
    pub fn new(smtp_url: &str, smtp_from: Option<&str>) -> Result<Self, String> {
        let scheme = smtp_url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("smtp" | "smtps")) {
            return Err(format!(
                "smtp_url `{}`: use smtp://host:port or smtps://user:pass@host:port",
                redact_url(smtp_url)
            ));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|_| {
                format!(
                    "smtp_url `{}` is not a valid SMTP URL: use smtp://host:port or smtps://user:pass@host:port",
                    redact_url(smtp_url)
                )
            })?
            .timeout(Some(TIMEOUT))
            .build();
        let from = smtp_from
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| {
                "smtp_from is needed with smtp_url: the address alarm emails are sent from"
                    .to_string()
            })?
            .parse::<Mailbox>()
            .map_err(|e| format!("smtp_from: not an email address: {e}"))?;
        Ok(Self { transport, from })
    }

    /// Mails one alarm to `to`; `Err` says why it was not accepted.
    pub async fn send(&self, to: &str, alarm: &AlarmPayload) -> Result<(), String> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("`{to}` is not an email address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject(alarm))
            .header(ContentType::TEXT_PLAIN)
            .body(body(alarm))
            .map_err(|e| format!("cannot build the email: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// `[antares] fail: shop/sweep`.
pub fn subject(a: &AlarmPayload) -> String {
    format!("[antares] {}: {}/{}", a.kind.as_str(), a.app, a.job)
}

/// The alarm in plain words, then its JSON payload.
pub fn body(a: &AlarmPayload) -> String {
    let mut text = format!("Alarm `{}` of job {}/{}\n\n", a.kind.as_str(), a.app, a.job);
    if let Some(id) = &a.instance {
        text.push_str(&format!("instance: {id}\n"));
    }
    text.push_str(&format!("at: {}\n", a.at));
    if let Some(status) = &a.status {
        text.push_str(&format!("status: {status}\n"));
    }
    if let Some(error) = &a.error {
        text.push_str(&format!("error: {error}\n"));
    }
    if a.suppressed > 0 {
        text.push_str(&format!(
            "({} more alarm(s) of this kind were left out since the last one)\n",
            a.suppressed
        ));
    }
    if let Some(url) = &a.url {
        text.push_str(&format!("{url}\n"));
    }
    if let Ok(json) = serde_json::to_string_pretty(a) {
        text.push_str(&format!("\n{json}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("smtps://me:pa55@mail.example.com:465"),
            "smtps://me:***@mail.example.com:465"
        );
        assert_eq!(
            redact_url("smtp://mail.example.com:25?tls=required"),
            "smtp://mail.example.com:25?tls=required"
        );
    }

    #[test]
    fn settings_are_checked_without_showing_the_password() {
        let e = Mailer::new("http://x:secret@h:1", Some("a@b.c")).expect_err("scheme");
        assert!(e.contains("smtp_url") && !e.contains("secret"), "{e}");
        let e = Mailer::new("smtp://h:25", None).expect_err("from");
        assert!(e.contains("smtp_from"), "{e}");
        let e = Mailer::new("smtp://h:25", Some("nope")).expect_err("from");
        assert!(e.contains("smtp_from"), "{e}");
    }

    #[tokio::test]
    async fn good_settings_make_a_mailer() {
        assert!(
            Mailer::new(
                "smtps://me:pw@mail.example.com:465",
                Some("ops@example.com")
            )
            .is_ok()
        );
        assert!(Mailer::new("smtp://127.0.0.1:2525", Some("Antares <a@example.com>")).is_ok());
    }
}
