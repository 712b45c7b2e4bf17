//! When a job fires: a checked [`crate::spec::ScheduleSpec`].
//!
//! - `cron`: see [`crate::cron`] (dialects, time zones, daylight saving time);
//! - `every`: fires at every multiple of the period since the Unix epoch, so `every =
//!   "1h"` fires on the hour (UTC) whenever the scheduler started, and two schedulers
//!   always agree on the fire times;
//! - `at`: fires once.
//!
//! All times are instants ([`Timestamp`]); "after" is always strict, so feeding each
//! fire time back in walks the schedule without repeats.

use std::time::Duration;

use crate::cron::CronExpr;
use crate::instance::TriggerKind;
use crate::spec::{ScheduleSpec, SpecError};
use crate::time::Timestamp;

/// Shortest `every` period.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// A checked schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression in its time zone.
    Cron(CronExpr),
    /// A fixed period, aligned to the Unix epoch.
    Every(Duration),
    /// Once.
    At(Timestamp),
}

impl Schedule {
    /// Checks a schedule as written. Errors name the field (`schedule.cron`,
    /// `schedule.tz`, `schedule.every`, `schedule.at` or `schedule`).
    pub fn from_spec(spec: &ScheduleSpec) -> Result<Schedule, SpecError> {
        let given = [spec.cron.is_some(), spec.every.is_some(), spec.at.is_some()]
            .into_iter()
            .filter(|g| *g)
            .count();
        if given == 0 {
            return Err(SpecError::new(
                "schedule",
                "give one of `cron`, `every` or `at` (or leave `schedule` out for a job that only runs when triggered)",
            ));
        }
        if given > 1 {
            return Err(SpecError::new(
                "schedule",
                "give only one of `cron`, `every` and `at`",
            ));
        }
        if spec.tz.is_some() && spec.cron.is_none() {
            return Err(SpecError::new(
                "schedule.tz",
                "`tz` only applies to `cron` (`every` and `at` are instants, not wall-clock times)",
            ));
        }
        if let Some(expr) = &spec.cron {
            let tz = spec.tz.as_deref().unwrap_or("UTC");
            return CronExpr::parse(expr, tz).map(Schedule::Cron).map_err(|e| {
                if e.is_time_zone() {
                    SpecError::new("schedule.tz", e.to_string())
                } else {
                    SpecError::new("schedule.cron", format!("`{expr}`: {e}"))
                }
            });
        }
        if let Some(every) = spec.every {
            if every.0 < MIN_EVERY {
                return Err(SpecError::new(
                    "schedule.every",
                    format!("`{every}` is too short: `every` must be at least 1s"),
                ));
            }
            return Ok(Schedule::Every(every.0));
        }
        match spec.at {
            Some(at) => Ok(Schedule::At(at)),
            None => Err(SpecError::new("schedule", "empty schedule")),
        }
    }

    /// The first fire time strictly after `after`, or `None` when there is no more.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Every(period) => {
                let p = i64::try_from(period.as_millis()).ok().filter(|p| *p > 0)?;
                let k = after.0.div_euclid(p).checked_add(1)?;
                k.checked_mul(p).map(Timestamp)
            }
            Schedule::At(at) => (after < *at).then_some(*at),
        }
    }

    /// The next `n` fire times after `after` (fewer when the schedule ends).
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        successive(after, n, |t| self.next_after(t))
    }

    /// The trigger kind of the instances it makes.
    pub fn trigger_kind(&self) -> TriggerKind {
        match self {
            Schedule::Cron(_) => TriggerKind::Cron,
            Schedule::Every(_) => TriggerKind::Every,
            Schedule::At(_) => TriggerKind::At,
        }
    }
}

/// The next `n` values of a "next after" function, each strictly after the one before.
pub(crate) fn successive(
    after: Timestamp,
    n: usize,
    next: impl Fn(Timestamp) -> Option<Timestamp>,
) -> Vec<Timestamp> {
    std::iter::successors(next(after), |t| next(*t))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Dur;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test time")
    }

    fn spec(text: &str) -> ScheduleSpec {
        serde_json::from_str(text).expect("schedule json")
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        let s = Schedule::from_spec(&spec(r#"{"every": "30s"}"#)).expect("valid");
        assert_eq!(s.trigger_kind(), TriggerKind::Every);
        assert_eq!(
            s.upcoming(ts("2026-01-01T00:00:07.250Z"), 3),
            [
                ts("2026-01-01T00:00:30Z"),
                ts("2026-01-01T00:01:00Z"),
                ts("2026-01-01T00:01:30Z")
            ]
        );
        // Strictly after: a fire time gives the next one.
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:30Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        let hourly = Schedule::Every(Duration::from_secs(3600));
        assert_eq!(
            hourly.next_after(ts("2026-05-05T10:59:59.999Z")),
            Some(ts("2026-05-05T11:00:00Z"))
        );
        // 7s does not divide a minute: still multiples of 7s since 1970.
        let odd = Schedule::Every(Duration::from_secs(7));
        let next = odd.next_after(ts("2026-01-01T00:00:00Z")).expect("next");
        assert_eq!(next.0 % 7000, 0);
        // Before the epoch too.
        assert_eq!(odd.next_after(Timestamp(-10_000)), Some(Timestamp(-7000)));
    }

    #[test]
    fn at_fires_once() {
        let s = Schedule::from_spec(&spec(r#"{"at": "2026-12-01T00:00:00Z"}"#)).expect("valid");
        assert_eq!(s.trigger_kind(), TriggerKind::At);
        let at = ts("2026-12-01T00:00:00Z");
        assert_eq!(s.next_after(ts("2026-01-01T00:00:00Z")), Some(at));
        assert_eq!(s.next_after(at), None);
        assert_eq!(s.upcoming(ts("2026-01-01T00:00:00Z"), 5), [at]);
    }

    #[test]
    fn cron_in_its_zone() {
        let s = Schedule::from_spec(&spec(r#"{"cron": "0 0 2 * * ?", "tz": "Asia/Shanghai"}"#))
            .expect("valid");
        assert_eq!(s.trigger_kind(), TriggerKind::Cron);
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T18:00:00Z"))
        );
        let utc = Schedule::from_spec(&spec(r#"{"cron": "0 2 * * *"}"#)).expect("valid");
        assert_eq!(
            utc.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T02:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{}"#, "schedule", "give one of"),
            (
                r#"{"cron": "* * * * *", "every": "1m"}"#,
                "schedule",
                "only one",
            ),
            (
                r#"{"every": "1m", "tz": "UTC"}"#,
                "schedule.tz",
                "only applies to `cron`",
            ),
            (
                r#"{"cron": "* * * * 8"}"#,
                "schedule.cron",
                "day-of-week `8` out of range",
            ),
            (
                r#"{"cron": "* * * * *", "tz": "Nowhere/City"}"#,
                "schedule.tz",
                "Nowhere/City",
            ),
            (r#"{"every": "500ms"}"#, "schedule.every", "at least 1s"),
        ];
        for (text, field, message) in cases {
            let e = Schedule::from_spec(&spec(text)).expect_err(text);
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
        let ok = ScheduleSpec {
            every: Some(Dur(Duration::from_secs(1))),
            ..ScheduleSpec::default()
        };
        assert!(Schedule::from_spec(&ok).is_ok());
    }
}
