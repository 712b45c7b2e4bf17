//! Login throttling: after [`MAX_FAILURES`] failed logins for one user name from one
//! address, that pair is locked for [`LOCK`]; failures older than [`WINDOW`] are
//! forgotten. Keyed by the pair, so a stranger cannot lock a user out everywhere.
//!
//! Kept in the process: each console throttles what it sees, which bounds guessing to
//! a known rate per console without a NATS write for every failed login.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins before a lock.
pub const MAX_FAILURES: u32 = 10;
/// How long a lock lasts.
pub const LOCK: Duration = Duration::from_secs(60);
/// How long a failure is remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most (user, address) pairs remembered; the oldest are dropped past it.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins per (user, address).
#[derive(Debug, Default)]
pub struct Throttle {
    seen: Mutex<HashMap<(String, Option<IpAddr>), Failures>>,
}

/// The key of a pair: the user name as typed, cut to the longest valid name (a login
/// may send any text as its user name; the memory kept per pair stays small).
fn key(user: &str, ip: Option<IpAddr>) -> (String, Option<IpAddr>) {
    (antares_schemas::limits::cap(user, 64), ip)
}

impl Throttle {
    /// `Err(wait)` while the pair is locked.
    pub fn check(&self, user: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check_at(user, ip, Instant::now())
    }

    fn check_at(&self, user: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&key(user, ip)) {
            Some(f) if f.count >= MAX_FAILURES => {
                let until = f.last + LOCK;
                if until > now {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, ip: Option<IpAddr>) {
        self.failed_at(user, ip, Instant::now());
    }

    fn failed_at(&self, user: &str, ip: Option<IpAddr>, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, f| now.duration_since(f.last) < WINDOW);
            if seen.len() >= MAX_ENTRIES
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        let f = seen.entry(key(user, ip)).or_insert(Failures {
            count: 0,
            last: now,
        });
        // A lock that has run out, or failures long ago, start over.
        let lock_over = f.count >= MAX_FAILURES && now.duration_since(f.last) >= LOCK;
        if lock_over || now.duration_since(f.last) >= WINDOW {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    /// Forgets the failures of a pair that logged in.
    pub fn succeeded(&self, user: &str, ip: Option<IpAddr>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&key(user, ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_too_many_failures_then_lets_go() {
        let t = Throttle::default();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(t.check_at("admin", ip, start).is_ok());
            t.failed_at("admin", ip, start);
        }
        assert!(t.check_at("admin", ip, start).is_err());
        // Another address, or another user, is not locked.
        assert!(
            t.check_at("admin", Some(IpAddr::from([10, 0, 0, 1])), start)
                .is_ok()
        );
        assert!(t.check_at("bob", ip, start).is_ok());
        assert!(t.check_at("admin", ip, start + LOCK).is_ok());
        // After the lock, one more failure does not lock again at once.
        t.failed_at("admin", ip, start + LOCK);
        assert!(t.check_at("admin", ip, start + LOCK).is_ok());
    }

    #[test]
    fn a_success_forgets_failures() {
        let t = Throttle::default();
        for _ in 0..MAX_FAILURES {
            t.failed("admin", None);
        }
        t.succeeded("admin", None);
        assert!(t.check("admin", None).is_ok());
    }
}
