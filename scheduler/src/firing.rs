//! When schedules fire.
//!
//! [`Timers`] holds the next fire time of every scheduled job; the work loop sleeps
//! until the earliest and fires what is due. A fire becomes an instance whose id is
//! derived from the job and the scheduled time, so firing the same slot twice (two
//! schedulers for a moment, or a retry after a crash) creates it once.
//!
//! After a takeover the new leader starts each job from its cursor (the last slot
//! fired, kept in the cursors bucket) and applies the job's misfire policy to slots
//! that were missed by more than [`MISFIRE_THRESHOLD`] ([`plan`], a pure function):
//! `skip` drops them, `fire_once` (the default) fires the latest one, `catch_up` fires
//! each (at most [`CATCH_UP_LIMIT`]). Slots late by less than the threshold, such as one
//! that fell due during the few seconds of a takeover, simply fire late.

use std::collections::{BTreeSet, HashMap};

use antares_schemas::Timestamp;
use antares_schemas::instance::TriggerKind;
use antares_schemas::schedule::Schedule;
use antares_schemas::spec::Misfire;

/// How late a fire may be and still count as on time (not a misfire).
pub const MISFIRE_THRESHOLD_MS: i64 = 10_000;
/// [`MISFIRE_THRESHOLD_MS`] as documentation anchor.
pub const MISFIRE_THRESHOLD: std::time::Duration = std::time::Duration::from_millis(10_000);
/// Most missed slots `catch_up` fires.
pub const CATCH_UP_LIMIT: usize = 100;

/// What to do for one job now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Slots to fire now, oldest first, with how to label them.
    pub fire: Vec<(Timestamp, TriggerKind)>,
    /// Slots missed and not fired.
    pub missed: Vec<Timestamp>,
    /// The next slot to wait for.
    pub next: Option<Timestamp>,
}

/// Plans a job's fires from its cursor (the last slot fired, if any) at `now`.
pub fn plan(
    schedule: &Schedule,
    misfire: Misfire,
    cursor: Option<Timestamp>,
    now: Timestamp,
) -> Plan {
    let kind = schedule.trigger_kind();
    let Some(cursor) = cursor else {
        return Plan {
            next: schedule.next_after(Timestamp(now.0 - 1)),
            ..Plan::default()
        };
    };
    let mut due = Vec::new();
    let mut t = cursor;
    let mut truncated = false;
    while let Some(n) = schedule.next_after(t) {
        if n > now {
            break;
        }
        if due.len() >= 10_000 {
            truncated = true;
            break;
        }
        due.push(n);
        t = n;
    }
    let next = if truncated {
        schedule.next_after(now)
    } else {
        schedule.next_after(t)
    };
    let (late, on_time): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|s| now.since(*s) > MISFIRE_THRESHOLD_MS);
    let mut plan = Plan {
        next,
        ..Plan::default()
    };
    match misfire {
        Misfire::Skip => plan.missed = late,
        Misfire::FireOnce => {
            if let Some((last, rest)) = late.split_last() {
                plan.missed = rest.to_vec();
                plan.fire.push((*last, TriggerKind::Misfire));
            }
        }
        Misfire::CatchUp => {
            let skip = late.len().saturating_sub(CATCH_UP_LIMIT);
            plan.missed = late[..skip].to_vec();
            plan.fire
                .extend(late[skip..].iter().map(|s| (*s, TriggerKind::Misfire)));
        }
    }
    plan.fire.extend(on_time.into_iter().map(|s| (s, kind)));
    plan
}

/// Next fire time of every scheduled job.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    queue: BTreeSet<(Timestamp, String, String)>,
    next: HashMap<(String, String), Timestamp>,
}

impl Timers {
    /// Sets (or clears, with `None`) a job's next fire.
    pub fn set(&mut self, app: &str, job: &str, at: Option<Timestamp>) {
        let key = (app.to_string(), job.to_string());
        if let Some(old) = self.next.remove(&key) {
            self.queue.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(at) = at {
            self.queue.insert((at, key.0.clone(), key.1.clone()));
            self.next.insert(key, at);
        }
    }

    /// A job's next fire.
    pub fn get(&self, app: &str, job: &str) -> Option<Timestamp> {
        self.next.get(&(app.to_string(), job.to_string())).copied()
    }

    /// The earliest next fire.
    pub fn earliest(&self) -> Option<Timestamp> {
        self.queue.first().map(|(t, _, _)| *t)
    }

    /// Removes and returns every fire due at `now`.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<(Timestamp, String, String)> {
        let mut out = Vec::new();
        while let Some(first) = self.queue.first() {
            if first.0 > now {
                break;
            }
            if let Some(item) = self.queue.pop_first() {
                self.next.remove(&(item.1.clone(), item.2.clone()));
                out.push(item);
            }
        }
        out
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.next.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn every(secs: u64) -> Schedule {
        Schedule::Every(Duration::from_secs(secs))
    }

    const S: i64 = 1000;

    #[test]
    fn no_cursor_waits_for_the_next_slot() {
        let p = plan(&every(5), Misfire::FireOnce, None, Timestamp(12 * S));
        assert!(p.fire.is_empty());
        assert_eq!(p.next, Some(Timestamp(15 * S)));
        // Exactly on a slot: that slot is next (fires at once).
        let p = plan(&every(5), Misfire::FireOnce, None, Timestamp(15 * S));
        assert_eq!(p.next, Some(Timestamp(15 * S)));
    }

    #[test]
    fn slots_late_by_less_than_the_threshold_fire_normally() {
        let p = plan(
            &every(5),
            Misfire::Skip,
            Some(Timestamp(100 * S)),
            Timestamp(108 * S),
        );
        assert_eq!(p.fire, vec![(Timestamp(105 * S), TriggerKind::Every)]);
        assert!(p.missed.is_empty());
        assert_eq!(p.next, Some(Timestamp(110 * S)));
    }

    #[test]
    fn misfire_policies() {
        let cursor = Some(Timestamp(100 * S));
        let now = Timestamp(140 * S);
        // Missed (late > 10 s): 105..=125; on time: 130, 135, 140.
        let skip = plan(&every(5), Misfire::Skip, cursor, now);
        assert_eq!(skip.missed.len(), 5);
        assert_eq!(
            skip.fire.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![Timestamp(130 * S), Timestamp(135 * S), Timestamp(140 * S)]
        );
        let once = plan(&every(5), Misfire::FireOnce, cursor, now);
        assert_eq!(once.fire[0], (Timestamp(125 * S), TriggerKind::Misfire));
        assert_eq!(once.missed.len(), 4);
        assert_eq!(once.fire.len(), 4);
        let all = plan(&every(5), Misfire::CatchUp, cursor, now);
        assert_eq!(all.fire.len(), 8);
        assert!(all.missed.is_empty());
        assert_eq!(all.next, Some(Timestamp(145 * S)));
    }

    #[test]
    fn catch_up_is_bounded() {
        let p = plan(
            &every(1),
            Misfire::CatchUp,
            Some(Timestamp(0)),
            Timestamp(1000 * S),
        );
        assert_eq!(
            p.fire
                .iter()
                .filter(|f| f.1 == TriggerKind::Misfire)
                .count(),
            CATCH_UP_LIMIT
        );
        assert!(!p.missed.is_empty());
    }

    #[test]
    fn timers_order_and_replace() {
        let mut t = Timers::default();
        t.set("a", "x", Some(Timestamp(30)));
        t.set("a", "y", Some(Timestamp(10)));
        t.set("a", "x", Some(Timestamp(20)));
        assert_eq!(t.earliest(), Some(Timestamp(10)));
        let due = t.take_due(Timestamp(20));
        assert_eq!(due.len(), 2);
        assert_eq!(t.earliest(), None);
        t.set("a", "x", Some(Timestamp(5)));
        t.set("a", "x", None);
        assert_eq!(t.earliest(), None);
    }
}
