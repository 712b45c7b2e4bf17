//! When schedules fire.
//!
//! [`Timers`] holds the next fire time of every scheduled job; the work loop sleeps
//! until the earliest and fires what is due. A fire becomes an instance whose id is
//! derived from the job and the scheduled time and claimed for as long as history is
//! kept, so firing the same slot twice (two schedulers for a moment, a retry after a
//! crash, a backfill) creates it once.
//!
//! After a takeover (or a fire that failed) the leader plans each job from its cursor
//! (the last slot fired, kept in the cursors bucket) with [`plan`], a pure function that
//! looks at the latest slots only, however old the cursor: slots late by less than
//! [`MISFIRE_THRESHOLD`] (one that fell due during a takeover or a NATS restart) simply
//! fire late; older ones follow the job's misfire policy: `skip` runs none, `fire_once`
//! (the default) the latest one, `catch_up` the latest [`CATCH_UP_LIMIT`]. The rest are
//! summarised in one [`Missed`] (one `misfired` event). A cursor that makes no sense
//! (before 2000, or ahead of the clock) is refused and the job planned from now.

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

/// Most missed slots counted for the `misfired` event; beyond it the event says "at least".
pub const MISSED_COUNT_LIMIT: usize = 10_000;
/// A cursor before this (2000-01-01) is garbage, not a real last fire.
const SANE_CURSOR_MS: i64 = 946_684_800_000;
/// A cursor further ahead of the clock than this is garbage too.
const CURSOR_AHEAD_MS: i64 = 60_000;

/// Slots that were missed and not fired, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    /// How many (a lower bound when `at_least`).
    pub count: usize,
    /// Whether there may be more than `count`.
    pub at_least: bool,
    /// The first missed slot.
    pub first: Timestamp,
    /// The last missed slot.
    pub last: Timestamp,
}

/// What to do for one job now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Slots to fire now, oldest first, with how to label them.
    pub fire: Vec<(Timestamp, TriggerKind)>,
    /// Slots missed and not fired.
    pub missed: Option<Missed>,
    /// The next slot to wait for.
    pub next: Option<Timestamp>,
    /// Why the stored cursor was not used, when it made no sense.
    pub bad_cursor: Option<String>,
}

/// Plans a job's fires from its cursor (the last slot fired, if any) at `now`.
///
/// Looks at the latest slots only, however long ago the cursor is: `fire_once` fires
/// the latest late slot, `catch_up` the latest [`CATCH_UP_LIMIT`]; slots late by less
/// than [`MISFIRE_THRESHOLD_MS`] fire as usual; the rest are summarised in `missed`.
pub fn plan(
    schedule: &Schedule,
    misfire: Misfire,
    cursor: Option<Timestamp>,
    now: Timestamp,
) -> Plan {
    let kind = schedule.trigger_kind();
    let fresh = |bad_cursor| Plan {
        next: schedule.next_after(Timestamp(now.0 - 1)),
        bad_cursor,
        ..Plan::default()
    };
    let Some(cursor) = cursor else {
        return fresh(None);
    };
    if cursor.0 < SANE_CURSOR_MS || cursor.0 > now.0.saturating_add(CURSOR_AHEAD_MS) {
        return fresh(Some(format!(
            "the stored last fire {cursor} makes no sense (now is {now}); planning from now"
        )));
    }
    let keep = CATCH_UP_LIMIT + 64;
    let (due, complete) = latest_slots(schedule, cursor, now, keep);
    let next = schedule.next_after(now);
    let (late, on_time): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|s| now.since(*s) > MISFIRE_THRESHOLD_MS);
    let mut plan = Plan {
        next,
        ..Plan::default()
    };
    let fire_late = match misfire {
        Misfire::Skip => 0,
        Misfire::FireOnce => 1,
        Misfire::CatchUp => CATCH_UP_LIMIT,
    }
    .min(late.len());
    let (not_fired, fired) = late.split_at(late.len() - fire_late);
    plan.fire
        .extend(fired.iter().map(|s| (*s, TriggerKind::Misfire)));
    plan.fire.extend(on_time.into_iter().map(|s| (s, kind)));
    let older_missed = !complete;
    if let Some(last) = not_fired.last().copied().or(if older_missed {
        fired.first().copied()
    } else {
        None
    }) {
        // Count from the cursor to the first slot we kept, bounded.
        let first = schedule.next_after(cursor).unwrap_or(last);
        let mut count = not_fired.len();
        let mut at_least = false;
        if older_missed {
            let kept_first = not_fired.first().or(fired.first()).copied().unwrap_or(last);
            let (n, capped) = count_between(schedule, cursor, kept_first, MISSED_COUNT_LIMIT);
            count += n;
            at_least = capped;
        }
        if count > 0 {
            plan.missed = Some(Missed {
                count,
                at_least,
                first,
                last: not_fired.last().copied().unwrap_or(last),
            });
        }
    }
    plan
}

/// The latest slots in `(after, upto]`, oldest first, at most `n`; `true` when they are
/// all the slots there are in that range.
fn latest_slots(
    schedule: &Schedule,
    after: Timestamp,
    upto: Timestamp,
    n: usize,
) -> (Vec<Timestamp>, bool) {
    let mut span: i64 = 60_000;
    loop {
        let reaches_cursor = upto.0.saturating_sub(span) <= after.0;
        let start = if reaches_cursor {
            after
        } else {
            Timestamp(upto.0 - span)
        };
        let mut found = std::collections::VecDeque::with_capacity(n + 1);
        let mut dropped = false;
        let mut t = start;
        while let Some(s) = schedule.next_after(t) {
            if s > upto {
                break;
            }
            found.push_back(s);
            if found.len() > n {
                found.pop_front();
                dropped = true;
            }
            t = s;
        }
        if found.len() >= n || reaches_cursor {
            return (found.into(), reaches_cursor && !dropped);
        }
        span = span.saturating_mul(8);
    }
}

/// Slots in `(after, before)`, counted up to `cap`; `true` when the count was capped.
fn count_between(
    schedule: &Schedule,
    after: Timestamp,
    before: Timestamp,
    cap: usize,
) -> (usize, bool) {
    let mut n = 0;
    let mut t = after;
    while let Some(s) = schedule.next_after(t) {
        if s >= before {
            return (n, false);
        }
        n += 1;
        if n >= cap {
            return (n, true);
        }
        t = s;
    }
    (n, false)
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

    const DAY: i64 = 86_400 * S;
    /// 2026-12-01T00:00:00Z.
    const T: i64 = 1_796_083_200 * S;

    #[test]
    fn slots_late_by_less_than_the_threshold_fire_normally() {
        let p = plan(
            &every(5),
            Misfire::Skip,
            Some(Timestamp(T + 100 * S)),
            Timestamp(T + 108 * S),
        );
        assert_eq!(p.fire, vec![(Timestamp(T + 105 * S), TriggerKind::Every)]);
        assert!(p.missed.is_none());
        assert_eq!(p.next, Some(Timestamp(T + 110 * S)));
    }

    #[test]
    fn misfire_policies() {
        let cursor = Some(Timestamp(T + 100 * S));
        let now = Timestamp(T + 140 * S);
        // Missed (late > 10 s): 105..=125; on time: 130, 135, 140.
        let skip = plan(&every(5), Misfire::Skip, cursor, now);
        let missed = skip.missed.clone().expect("missed");
        assert_eq!((missed.count, missed.at_least), (5, false));
        assert_eq!(missed.first, Timestamp(T + 105 * S));
        assert_eq!(missed.last, Timestamp(T + 125 * S));
        assert_eq!(
            skip.fire.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![
                Timestamp(T + 130 * S),
                Timestamp(T + 135 * S),
                Timestamp(T + 140 * S)
            ]
        );
        let once = plan(&every(5), Misfire::FireOnce, cursor, now);
        assert_eq!(once.fire[0], (Timestamp(T + 125 * S), TriggerKind::Misfire));
        assert_eq!(once.missed.map(|m| m.count), Some(4));
        assert_eq!(once.fire.len(), 4);
        let all = plan(&every(5), Misfire::CatchUp, cursor, now);
        assert_eq!(all.fire.len(), 8);
        assert!(all.missed.is_none());
        assert_eq!(all.next, Some(Timestamp(T + 145 * S)));
    }

    #[test]
    fn after_a_long_outage_the_latest_slots_fire() {
        let cursor = Some(Timestamp(T));
        let now = Timestamp(T + DAY + 500);
        let once = plan(&every(1), Misfire::FireOnce, cursor, now);
        let late: Vec<_> = once
            .fire
            .iter()
            .filter(|f| f.1 == TriggerKind::Misfire)
            .collect();
        assert_eq!(late.len(), 1);
        assert_eq!(
            late[0].0,
            Timestamp(T + DAY - 10 * S),
            "the latest late slot"
        );
        let missed = once.missed.expect("missed");
        assert!(missed.count >= MISSED_COUNT_LIMIT && missed.at_least);
        assert_eq!(missed.first, Timestamp(T + S));

        let all = plan(&every(1), Misfire::CatchUp, cursor, now);
        let late: Vec<_> = all
            .fire
            .iter()
            .filter(|f| f.1 == TriggerKind::Misfire)
            .map(|f| f.0)
            .collect();
        assert_eq!(late.len(), CATCH_UP_LIMIT);
        assert_eq!(late.last(), Some(&Timestamp(T + DAY - 10 * S)));
        assert!(late.windows(2).all(|w| w[0] < w[1]));

        // A daily cron after a day and a half: one late slot, nothing else missed.
        let daily = Schedule::from_spec(&antares_schemas::spec::ScheduleSpec {
            cron: Some("0 0 * * *".into()),
            ..Default::default()
        })
        .expect("cron");
        let p = plan(
            &daily,
            Misfire::FireOnce,
            Some(Timestamp(T)),
            Timestamp(T + DAY + DAY / 2),
        );
        assert_eq!(p.fire, vec![(Timestamp(T + DAY), TriggerKind::Misfire)]);
        assert!(p.missed.is_none());
    }

    #[test]
    fn a_cursor_that_makes_no_sense_is_refused() {
        let now = Timestamp(T);
        for bad in [Timestamp(0), Timestamp(T + DAY)] {
            let p = plan(&every(5), Misfire::CatchUp, Some(bad), now);
            assert!(p.fire.is_empty());
            assert!(p.bad_cursor.is_some());
            assert_eq!(p.next, Some(Timestamp(T)));
        }
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
