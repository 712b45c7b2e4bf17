//! The dashboard's chart as numbers: runs per day stacked by status, scaled into a box.
//! Drawn as SVG by `components::day_chart`; kept pure here so it is tested on the host.

use antares_schemas::instance::InstanceStatus;
use antares_schemas::stats::DayStats;

/// Ended statuses from the bottom of a bar to its top.
pub const STACK: [InstanceStatus; 5] = [
    InstanceStatus::Success,
    InstanceStatus::Failed,
    InstanceStatus::TimedOut,
    InstanceStatus::Cancelled,
    InstanceStatus::Skipped,
];

/// One status's part of a bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Which status.
    pub status: InstanceStatus,
    /// How many ended so.
    pub count: u64,
    /// Top edge.
    pub y: f64,
    /// Height.
    pub height: f64,
}

/// One day's bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `MM-DD`, for the axis.
    pub label: String,
    /// Left edge.
    pub x: f64,
    /// Width.
    pub width: f64,
    /// Ended that day.
    pub total: u64,
    /// Its parts, bottom first; statuses with no runs are left out.
    pub segments: Vec<Segment>,
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... at least `n` (the top of the axis).
pub fn nice_max(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= n || v == u64::MAX {
                return v;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Bars for `days` in a `width` × `height` box (y grows downwards), scaled to `top`.
pub fn bars(days: &[DayStats], width: f64, height: f64, top: u64) -> Vec<Bar> {
    if days.is_empty() {
        return Vec::new();
    }
    #[allow(clippy::cast_precision_loss)]
    let slot = width / days.len() as f64;
    #[allow(clippy::cast_precision_loss)]
    let scale = height / top.max(1) as f64;
    days.iter()
        .enumerate()
        .map(|(i, d)| {
            let mut y = height;
            let segments = STACK
                .iter()
                .filter_map(|status| {
                    let count = d.counts.by_status.get(status).copied().unwrap_or(0);
                    if count == 0 {
                        return None;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let h = count as f64 * scale;
                    y -= h;
                    Some(Segment {
                        status: *status,
                        count,
                        y,
                        height: h,
                    })
                })
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let x = i as f64 * slot + slot * 0.15;
            Bar {
                day: d.day.clone(),
                label: d.day.get(5..).unwrap_or(&d.day).to_string(),
                x,
                width: slot * 0.7,
                total: d.counts.total(),
                segments,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::stats::DayCounts;

    fn day(day: &str, counts: &[(InstanceStatus, u64)]) -> DayStats {
        DayStats {
            day: day.to_string(),
            counts: DayCounts {
                by_status: counts.iter().copied().collect(),
                ..DayCounts::default()
            },
        }
    }

    #[test]
    fn the_axis_top_is_a_round_number() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(4_999), 5_000);
    }

    #[test]
    fn segments_stack_from_the_bottom_in_status_order() {
        let days = [
            day(
                "2026-12-01",
                &[(InstanceStatus::Failed, 2), (InstanceStatus::Success, 6)],
            ),
            day("2026-12-02", &[]),
        ];
        let bars = bars(&days, 200.0, 100.0, 10);
        assert_eq!(bars.len(), 2);
        let first = &bars[0];
        assert_eq!(first.label, "12-01");
        assert_eq!(first.total, 8);
        assert_eq!(first.segments.len(), 2);
        assert_eq!(first.segments[0].status, InstanceStatus::Success);
        assert!((first.segments[0].height - 60.0).abs() < 1e-9);
        assert!((first.segments[0].y - 40.0).abs() < 1e-9);
        assert!((first.segments[1].y - 20.0).abs() < 1e-9);
        assert!(bars[1].segments.is_empty());
        assert!(bars[1].x > first.x + first.width);
    }
}
