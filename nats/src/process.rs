//! How an Antares process presents itself on NATS (the host and id in its heartbeats)
//! and when it is asked to stop: one definition for schedulers, workers and the CLI.

/// This machine's name: `HOSTNAME`, else `/etc/hostname`, else `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A process id unique enough among an app's workers or a cluster's schedulers:
/// `<host>-<pid>-<6 random lowercase letters and digits>`, usable as a subject token.
pub fn default_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..6)
        .map(|_| {
            let i = rand::random_range(0..ALPHABET.len());
            char::from(ALPHABET[i])
        })
        .collect();
    format!(
        "{}-{}-{suffix}",
        antares_schemas::names::sanitize_token(&hostname()),
        std::process::id()
    )
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_subject_tokens_and_differ() {
        let a = default_id();
        let b = default_id();
        assert_ne!(a, b);
        assert!(antares_schemas::names::check_worker_id(&a).is_ok(), "{a}");
    }
}
