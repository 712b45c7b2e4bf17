//! Keeping the moments before a slot free of the loop's own long steps.
//!
//! The loop does one thing at a time: a slot of instances made ahead that falls while it
//! folds reports or runs its maintenance tick is marked late by what is left of that
//! step. Steps that can wait therefore do, when the next slot comes sooner than they
//! have been taking lately ([`Took`]), or sooner than [`AT_LEAST`] (one run now and
//! then takes many times the others); they run just after it.

use std::time::Duration;

use antares_nats::now;
use antares_schemas::Timestamp;

/// How far ahead a step looks for a slot to keep clear, at least.
const AT_LEAST: Duration = Duration::from_millis(25);
/// How far ahead a step looks for a slot to keep clear, at most (however long it takes).
const LOOK_AHEAD_MAX: Duration = Duration::from_millis(100);
/// How long after the slot a step put off for it runs.
pub(super) const AFTER_SLOT: Duration = Duration::from_millis(5);

/// How long a step of the loop takes lately: its longest recent run, fading by a quarter
/// with each run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Took(Duration);

impl Took {
    /// Notes how long a run took.
    pub(super) fn note(&mut self, took: Duration) {
        self.0 = took.max(self.0 * 3 / 4);
    }

    /// Whether a run begun now might still be running at `slot` (a slot passed
    /// already is not kept clear).
    pub(super) fn would_run_at(self, slot: Timestamp) -> bool {
        let ahead = (self.0 + Duration::from_millis(1))
            .max(AT_LEAST)
            .min(LOOK_AHEAD_MAX);
        let ahead = i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX);
        let at = now().0;
        slot.0 > at && slot.0 <= at.saturating_add(ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_in(ms: i64) -> Timestamp {
        Timestamp(now().0 + ms)
    }

    #[test]
    fn a_step_keeps_clear_of_a_slot_nearer_than_it_takes() {
        let mut took = Took::default();
        assert!(took.would_run_at(slot_in(20)), "within AT_LEAST");
        assert!(!took.would_run_at(slot_in(50)), "no run took long yet");
        took.note(Duration::from_millis(80));
        assert!(took.would_run_at(slot_in(50)));
        assert!(!took.would_run_at(slot_in(-5)), "a slot passed");
        assert!(!took.would_run_at(slot_in(200)), "after its end");
        took.note(Duration::from_secs(10));
        assert!(
            !took.would_run_at(slot_in(150)),
            "never further ahead than LOOK_AHEAD_MAX"
        );
    }

    #[test]
    fn a_long_run_is_remembered_fading() {
        let mut took = Took::default();
        took.note(Duration::from_millis(80));
        took.note(Duration::from_millis(2));
        assert_eq!(took, Took(Duration::from_millis(60)));
        took.note(Duration::from_millis(70));
        assert_eq!(took, Took(Duration::from_millis(70)));
    }
}
