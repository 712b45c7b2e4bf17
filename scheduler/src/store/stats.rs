//! Daily counts of ended instances per app (key `<yyyymmdd>.<app>`, day of `finished_at`
//! in UTC): by status, with the sum and the longest of their run times.
//!
//! Counted when instances move to history, in the same batch: each (day, app) key a batch
//! touches is read, added to and written back (revision-checked) once, all keys at once.
//! The counts are approximate by what a crash repeats: a move to history cut short after
//! its counts were written is done again by the next leader and counts again, as does a
//! write whose acknowledgement was lost.

use antares_nats::NatsError;
use antares_schemas::Timestamp;
use antares_schemas::instance::InstanceSummary;
use antares_schemas::stats::DayCounts;
use futures::StreamExt;

use super::InstanceStore;
use super::update::update;

/// Keys updated at once.
const CONCURRENT: usize = 32;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The day (UTC) a time falls on, as `yyyymmdd`.
pub fn day_of(t: Timestamp) -> u32 {
    let days = t.millis().div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    u32::try_from(y.clamp(0, 9999) * 10_000 + i64::from(m) * 100 + i64::from(d)).unwrap_or(0)
}

/// `yyyymmdd` as `YYYY-MM-DD`.
pub fn day_label(day: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day / 10_000,
        day / 100 % 100,
        day % 100
    )
}

/// The calendar date of a day number (days since 1970-01-01), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The day an ended instance is counted on.
pub fn day_of_end(s: &InstanceSummary, now: Timestamp) -> u32 {
    day_of(s.finished_at.unwrap_or(now))
}

/// Adds one ended instance.
pub fn count(into: &mut DayCounts, s: &InstanceSummary) {
    *into.by_status.entry(s.status).or_default() += 1;
    let ran = match (s.started_at, s.finished_at) {
        (Some(start), Some(end)) => u64::try_from(end.since(start)).unwrap_or(0),
        _ => 0,
    };
    into.duration_ms_sum = into.duration_ms_sum.saturating_add(ran);
    into.duration_ms_max = into.duration_ms_max.max(ran);
}

/// Adds counts to counts.
pub fn merge(into: &mut DayCounts, add: &DayCounts) {
    for (status, n) in &add.by_status {
        let slot = into.by_status.entry(*status).or_default();
        *slot = slot.saturating_add(*n);
    }
    into.duration_ms_sum = into.duration_ms_sum.saturating_add(add.duration_ms_sum);
    into.duration_ms_max = into.duration_ms_max.max(add.duration_ms_max);
}

impl InstanceStore {
    /// Adds counts to their keys, all keys at once; each key's outcome, in order.
    pub(crate) async fn add_counts(
        &self,
        deltas: Vec<(String, DayCounts)>,
    ) -> Vec<Result<(), NatsError>> {
        futures::stream::iter(deltas)
            .map(|(key, delta)| async move {
                update(
                    &self.nats,
                    &self.stats,
                    &key,
                    "day counts",
                    |cur: Option<DayCounts>| {
                        let mut counts = cur.unwrap_or_default();
                        merge(&mut counts, &delta);
                        Some(counts)
                    },
                )
                .await
            })
            .buffered(CONCURRENT)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::instance::InstanceStatus;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(Timestamp(0)), 19_700_101);
        assert_eq!(day_of(Timestamp(DAY_MS - 1)), 19_700_101);
        assert_eq!(day_of(Timestamp(DAY_MS)), 19_700_102);
        let t: Timestamp = "2024-02-29T23:59:59.999Z".parse().expect("time");
        assert_eq!(day_of(t), 20_240_229);
        let t: Timestamp = "2026-12-31T00:00:00Z".parse().expect("time");
        assert_eq!(day_of(t), 20_261_231);
        assert_eq!(day_of(Timestamp(t.0 + DAY_MS)), 20_270_101);
        assert_eq!(day_label(20_270_101), "2027-01-01");
        // Every day of a few years agrees with chrono's calendar.
        for d in 0..2000 {
            let t = Timestamp(1_700_000_000_000 + d * DAY_MS);
            let text = t.to_rfc3339();
            assert_eq!(day_label(day_of(t)), text[..10], "{text}");
        }
    }

    #[test]
    fn counts_add_up_by_status_and_duration() {
        let mut s = crate::store::tests_support::summary(InstanceStatus::Success);
        s.started_at = Some(Timestamp(1_000));
        s.finished_at = Some(Timestamp(4_000));
        let mut a = DayCounts::default();
        count(&mut a, &s);
        s.status = InstanceStatus::Failed;
        s.finished_at = Some(Timestamp(2_000));
        count(&mut a, &s);
        s.started_at = None;
        count(&mut a, &s);
        assert_eq!(a.by_status.get(&InstanceStatus::Success), Some(&1));
        assert_eq!(a.by_status.get(&InstanceStatus::Failed), Some(&2));
        assert_eq!((a.duration_ms_sum, a.duration_ms_max), (4_000, 3_000));
        let mut b = a.clone();
        merge(&mut b, &a);
        assert_eq!(b.total(), 6);
        assert_eq!((b.duration_ms_sum, b.duration_ms_max), (8_000, 3_000));
    }
}
