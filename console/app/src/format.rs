//! How times, durations and counts are shown: local wall-clock times, "3 min ago",
//! "1.2 s". The pure parts take the clock and the zone offset as arguments.

use antares_schemas::Timestamp;

/// Milliseconds since the epoch, now (the browser's clock).
pub fn now_ms() -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let ms = js_sys::Date::now() as i64;
    ms
}

/// Minutes to add to local time to get UTC at `ms` (the browser's zone).
fn offset_min(ms: i64) -> i64 {
    #[allow(clippy::cast_precision_loss)]
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    #[allow(clippy::cast_possible_truncation)]
    let off = date.get_timezone_offset() as i64;
    off
}

/// A time in the browser's zone, `2026-12-01 02:00:00`.
pub fn time(ts: Timestamp) -> String {
    wall_clock(ts.millis(), offset_min(ts.millis()))
}

/// A time or a dash.
pub fn time_opt(ts: Option<Timestamp>) -> String {
    ts.map_or_else(|| "—".to_string(), time)
}

/// `ms` shifted by `offset_min` (UTC minus local), as `YYYY-MM-DD HH:MM:SS`.
pub fn wall_clock(ms: i64, offset_min: i64) -> String {
    let local = ms.saturating_sub(offset_min.saturating_mul(60_000));
    chrono::DateTime::from_timestamp_millis(local).map_or_else(
        || "—".to_string(),
        |dt| dt.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// How long ago (or how far ahead) `then` is from `now`: `just now`, `12 s ago`,
/// `in 5 min`.
pub fn relative(then: i64, now: i64) -> String {
    let diff = now.saturating_sub(then);
    let secs = diff.unsigned_abs() / 1000;
    if secs < 2 {
        return "just now".to_string();
    }
    let span = if secs < 90 {
        format!("{secs} s")
    } else if secs < 90 * 60 {
        format!("{} min", (secs + 30) / 60)
    } else if secs < 36 * 3600 {
        format!("{} h", (secs + 1800) / 3600)
    } else {
        format!("{} d", (secs + 43_200) / 86_400)
    };
    if diff >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A duration: `350 ms`, `1.2 s`, `2 min 5 s`, `1 h 3 min`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        #[allow(clippy::cast_precision_loss)]
        let secs = ms as f64 / 1000.0;
        format!("{secs:.1} s")
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// From `start` to `end`, or to now while it runs; a dash before it starts.
pub fn elapsed(start: Option<Timestamp>, end: Option<Timestamp>, now: i64) -> String {
    match start {
        None => "—".to_string(),
        Some(s) => {
            let end = end.map_or(now, Timestamp::millis);
            duration_ms(u64::try_from(end.saturating_sub(s.millis())).unwrap_or(0))
        }
    }
}

/// A share as a percentage with one decimal, or a dash when there is nothing to share.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".to_string();
    }
    #[allow(clippy::cast_precision_loss)]
    let p = part as f64 * 100.0 / whole as f64;
    format!("{p:.1}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_applies_the_zone_offset() {
        // 2026-12-01T02:00:00Z
        let ms = 1_796_090_400_000;
        assert_eq!(wall_clock(ms, 0), "2026-12-01 02:00:00");
        // UTC+8 has an offset of -480 minutes.
        assert_eq!(wall_clock(ms, -480), "2026-12-01 10:00:00");
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1000, 1500), "just now");
        assert_eq!(relative(0, 12_000), "12 s ago");
        assert_eq!(relative(0, 5 * 60_000), "5 min ago");
        assert_eq!(relative(10 * 60_000, 0), "in 10 min");
        assert_eq!(relative(0, 3 * 3_600_000), "3 h ago");
        assert_eq!(relative(0, 3 * 86_400_000), "3 d ago");
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration_ms(350), "350 ms");
        assert_eq!(duration_ms(1200), "1.2 s");
        assert_eq!(duration_ms(125_000), "2 min 5 s");
        assert_eq!(duration_ms(3_780_000), "1 h 3 min");
    }

    #[test]
    fn percentages_of_nothing_are_a_dash() {
        assert_eq!(percent(1, 0), "—");
        assert_eq!(percent(9, 10), "90.0%");
    }
}
