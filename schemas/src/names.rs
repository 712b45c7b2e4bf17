//! Names of apps, jobs and workers.
//!
//! App and job names appear as single NATS subject tokens and KV key tokens, so the
//! contract restricts them to `[a-z0-9][a-z0-9_-]{0,63}`. Worker ids are a little freer
//! (they are typed by operators and derived from host names) but must still be one
//! token: no `.`, `*`, `>`, whitespace.

/// A name that is not allowed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An app or job name outside `[a-z0-9][a-z0-9_-]{0,63}`.
    #[error(
        "{what} `{name}` is invalid: use 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit"
    )]
    Invalid {
        /// "app", "job", "namespace", ...
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// A plugin handler name outside `[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}`.
    #[error(
        "handler `{name}` is invalid: use 1-128 characters of A-Z, a-z, 0-9, `_`, `.`, `:` and `-`, starting with a letter or digit"
    )]
    Handler {
        /// The rejected name.
        name: String,
    },
}

/// Checks an app or job name (`[a-z0-9][a-z0-9_-]{0,63}`).
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            what,
            name: name.to_string(),
        })
    }
}

/// Checks a plugin handler name (contract: `[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}`, so
/// XXL-JOB users keep names like `demoJobHandler`). Handlers never appear in subjects.
pub fn check_handler(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Handler {
            name: name.to_string(),
        })
    }
}

/// Checks a namespace: like an app name, but also used inside stream and bucket names.
pub fn check_namespace(ns: &str) -> Result<(), NameError> {
    check_name("namespace", ns)
}

/// Checks a worker id: 1-128 characters of `[A-Za-z0-9_-]`.
pub fn check_worker_id(id: &str) -> Result<(), NameError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            what: "worker id",
            name: id.to_string(),
        })
    }
}

/// Turns any text (a host name, say) into something usable inside a worker id.
pub fn sanitize_token(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "host".to_string() } else { s }
}

/// The candidate closest to a misspelt `word` ("did you mean"), when one is close
/// enough to be a likely typo: at most 2 edits, or a quarter of its length.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

/// Splits `APP/JOB` as the CLI takes it.
pub fn split_job_ref(text: &str) -> Result<(String, String), NameError> {
    let (app, job) = text.split_once('/').ok_or_else(|| NameError::Invalid {
        what: "job reference (APP/JOB)",
        name: text.to_string(),
    })?;
    check_name("app", app)?;
    check_name("job", job)?;
    Ok((app.to_string(), job.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_what_xxl_job_users_write() {
        for good in ["demoJobHandler", "a", "report.v2", "ns:job-1", "X_1"] {
            assert!(check_handler(good).is_ok(), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "-x", ".x", "a b", "a*", "a>b", "a/b", long.as_str()] {
            let e = check_handler(bad).expect_err(bad);
            assert!(e.to_string().contains("handler"), "{e}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "billing", "nightly-report", "x_1", "0abc"] {
            assert!(check_name("job", good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "A",
            "-a",
            "_a",
            "a.b",
            "a b",
            "a*",
            "a>",
            "é",
            long.as_str(),
        ] {
            assert!(check_name("job", bad).is_err(), "{bad}");
        }
        assert!(check_name("job", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn worker_ids() {
        assert!(check_worker_id("host-1-abc").is_ok());
        assert!(check_worker_id("Host_1").is_ok());
        assert!(check_worker_id("a.b").is_err());
        assert!(check_worker_id("").is_err());
        assert_eq!(sanitize_token("my.host name"), "my-host-name");
    }

    #[test]
    fn job_refs() {
        assert_eq!(
            split_job_ref("billing/report").expect("ok"),
            ("billing".into(), "report".into())
        );
        assert!(split_job_ref("billing").is_err());
        assert!(split_job_ref("Billing/x").is_err());
    }
}
