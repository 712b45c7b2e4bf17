use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test time")
}

fn show(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The next `n` fire times of `expr` in `tz` after `after`, as `YYYY-MM-DDTHH:MM:SSZ`.
fn fires(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    let c = CronExpr::parse(expr, tz).unwrap_or_else(|e| panic!("`{expr}`: {e}"));
    c.upcoming(ts(after), n).into_iter().map(show).collect()
}

fn err(expr: &str) -> CronError {
    CronExpr::parse(expr, "UTC").expect_err(expr)
}

// 2026-01-01 is a Thursday.
const NEW_YEAR: &str = "2026-01-01T00:00:00Z";

#[test]
fn unix_day_of_week_1_is_monday() {
    let f = fires("* * * * 1", "UTC", NEW_YEAR, 1441);
    assert_eq!(f[0], "2026-01-05T00:00:00Z");
    assert_eq!(f[1], "2026-01-05T00:01:00Z");
    assert_eq!(f[1439], "2026-01-05T23:59:00Z");
    assert_eq!(f[1440], "2026-01-12T00:00:00Z");
    assert_eq!(
        fires("0 0 * * 1", "UTC", NEW_YEAR, 2),
        ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]
    );
    for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sun"] {
        assert_eq!(
            fires(sunday, "UTC", NEW_YEAR, 2),
            ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
            "{sunday}"
        );
    }
    assert_eq!(
        fires("0 0 * * MON-FRI", "UTC", NEW_YEAR, 3),
        [
            "2026-01-02T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-06T00:00:00Z"
        ]
    );
    // 1-7 is Monday to Sunday; a backwards range wraps.
    assert_eq!(fires("0 0 * * 1-7", "UTC", NEW_YEAR, 7).len(), 7);
    assert_eq!(
        fires("0 0 * * FRI-MON", "UTC", NEW_YEAR, 5),
        [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-09T00:00:00Z"
        ]
    );
    let c = CronExpr::parse("* * * * 1", "").expect("valid");
    assert_eq!(c.dialect(), Dialect::Unix);
}

#[test]
fn quartz_day_of_week_2_is_monday() {
    for monday in ["0 0 12 ? * 2", "0 0 12 ? * MON", "0 0 12 * * 2"] {
        assert_eq!(
            fires(monday, "UTC", NEW_YEAR, 2),
            ["2026-01-05T12:00:00Z", "2026-01-12T12:00:00Z"],
            "{monday}"
        );
    }
    assert_eq!(
        fires("0 0 12 ? * 1", "UTC", NEW_YEAR, 1),
        ["2026-01-04T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 ? * SUN", "UTC", NEW_YEAR, 1),
        ["2026-01-04T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 ? * 7", "UTC", NEW_YEAR, 1),
        ["2026-01-03T12:00:00Z"]
    );
    // `L` alone in a Quartz day-of-week is Saturday.
    assert_eq!(
        fires("0 0 12 ? * L", "UTC", NEW_YEAR, 1),
        ["2026-01-03T12:00:00Z"]
    );
    let c = CronExpr::parse("0 0 12 ? * 2", "UTC").expect("valid");
    assert_eq!(c.dialect(), Dialect::Quartz);
}

#[test]
fn unix_day_fields_or_quartz_forbids_both() {
    assert_eq!(
        fires("0 0 1 * MON", "UTC", "2025-12-31T12:00:00Z", 7),
        [
            "2026-01-01T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-12T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-01-26T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-02T00:00:00Z"
        ]
    );
    // Vixie: a day field starting with `*` makes it AND: odd days that are Mondays.
    assert_eq!(
        fires("0 0 */2 * MON", "UTC", NEW_YEAR, 4),
        [
            "2026-01-05T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-02-09T00:00:00Z",
            "2026-02-23T00:00:00Z"
        ]
    );
    let e = err("0 0 0 1 * MON");
    assert!(matches!(e, CronError::BothDays { .. }), "{e:?}");
    assert!(e.to_string().contains("must be `?`"), "{e}");
    assert_eq!(e.field(), Some("day-of-month"));
    assert_eq!(
        fires("0 0 0 1 * *", "UTC", NEW_YEAR, 2),
        ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]
    );
}

#[test]
fn last_day_and_last_minus() {
    assert_eq!(
        fires("0 0 12 L * ?", "UTC", NEW_YEAR, 4),
        [
            "2026-01-31T12:00:00Z",
            "2026-02-28T12:00:00Z",
            "2026-03-31T12:00:00Z",
            "2026-04-30T12:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 12 L * ?", "UTC", "2028-02-01T00:00:00Z", 1),
        ["2028-02-29T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 L-3 * ?", "UTC", NEW_YEAR, 3),
        [
            "2026-01-28T12:00:00Z",
            "2026-02-25T12:00:00Z",
            "2026-03-28T12:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 0 L-30 * ?", "UTC", "2026-01-02T00:00:00Z", 2),
        ["2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 LW * ?", "UTC", NEW_YEAR, 4),
        [
            "2026-01-30T12:00:00Z",
            "2026-02-27T12:00:00Z",
            "2026-03-31T12:00:00Z",
            "2026-04-30T12:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 12 LW * ?", "UTC", "2026-05-01T00:00:00Z", 1),
        ["2026-05-29T12:00:00Z"]
    );
    // L together with a plain day: Unix only (Quartz wants `L` alone).
    assert_eq!(
        fires("0 0 15,L * *", "UTC", NEW_YEAR, 3),
        [
            "2026-01-15T00:00:00Z",
            "2026-01-31T00:00:00Z",
            "2026-02-15T00:00:00Z"
        ]
    );
}

#[test]
fn weekday_nearest_the_nth_day_before_the_last() {
    // L-1W: the weekday nearest the day before the last (Quartz `0 15 10 L-1W * ?`).
    assert_eq!(
        fires("0 15 10 L-1W * ?", "UTC", "2026-05-01T00:00:00Z", 4),
        [
            "2026-05-29T10:15:00Z", // the 30th is a Saturday: the Friday before
            "2026-06-29T10:15:00Z", // a Monday: itself
            "2026-07-30T10:15:00Z",
            "2026-08-31T10:15:00Z" // the 30th is a Sunday: the Monday after
        ]
    );
    // Never leaving the month: the 1st, a Saturday, moves to Monday the 3rd.
    assert_eq!(
        fires("0 0 0 L-30W 8 ?", "UTC", NEW_YEAR, 1),
        ["2026-08-03T00:00:00Z"]
    );
    // L-0W is LW.
    assert_eq!(
        fires("0 0 12 L-0W * ?", "UTC", NEW_YEAR, 4),
        fires("0 0 12 LW * ?", "UTC", NEW_YEAR, 4)
    );
}

/// Quartz refuses `L`, `W` and `#` inside lists; Antares does too in Quartz
/// expressions, and keeps them in Unix ones.
#[test]
fn quartz_specials_stand_alone() {
    for (expr, field) in [
        ("0 0 0 1,5,29,L * ?", "day-of-month"),
        ("0 0 0 1,LW * ?", "day-of-month"),
        ("0 0 0 15W,20 * ?", "day-of-month"),
        ("0 0 0 ? * SAT,SUN,L", "day-of-week"),
        ("0 0 0 ? * 6L,2", "day-of-week"),
        ("0 0 0 ? * MON#2,FRI#3", "day-of-week"),
    ] {
        let e = err(expr).to_string();
        assert!(e.contains(field) && e.contains("alone"), "`{expr}`: {e}");
    }
    assert_eq!(fires("0 0 1,L * *", "UTC", NEW_YEAR, 2).len(), 2);
    assert_eq!(fires("0 0 * * 5L,1#1", "UTC", NEW_YEAR, 2).len(), 2);
}

#[test]
fn nth_and_last_weekday() {
    assert_eq!(
        fires("0 0 12 ? * MON#2", "UTC", NEW_YEAR, 3),
        [
            "2026-01-12T12:00:00Z",
            "2026-02-09T12:00:00Z",
            "2026-03-09T12:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 12 ? * 2#2", "UTC", NEW_YEAR, 1),
        ["2026-01-12T12:00:00Z"]
    );
    assert_eq!(
        fires("0 12 * * 1#2", "UTC", NEW_YEAR, 1),
        ["2026-01-12T12:00:00Z"]
    );
    let last_fridays = [
        "2026-01-30T12:00:00Z",
        "2026-02-27T12:00:00Z",
        "2026-03-27T12:00:00Z",
    ];
    for expr in [
        "0 0 12 ? * 6L",
        "0 0 12 ? * FRIL",
        "0 0 12 ? * 6#L",
        "0 12 * * 5L",
    ] {
        assert_eq!(fires(expr, "UTC", NEW_YEAR, 3), last_fridays, "{expr}");
    }
}

#[test]
fn nearest_weekday() {
    assert_eq!(
        fires("0 0 12 15W * ?", "UTC", NEW_YEAR, 8),
        [
            "2026-01-15T12:00:00Z", // Thursday
            "2026-02-16T12:00:00Z", // the 15th is a Sunday
            "2026-03-16T12:00:00Z", // Sunday
            "2026-04-15T12:00:00Z",
            "2026-05-15T12:00:00Z",
            "2026-06-15T12:00:00Z",
            "2026-07-15T12:00:00Z",
            "2026-08-14T12:00:00Z", // Saturday
        ]
    );
    // 2026-08-01 is a Saturday: 1W stays in August, on Monday the 3rd.
    assert_eq!(
        fires("0 0 0 1W 8 ?", "UTC", NEW_YEAR, 1),
        ["2026-08-03T00:00:00Z"]
    );
}

#[test]
fn year_field() {
    assert_eq!(
        fires("0 0 0 1 1 ? 2027,2029", "UTC", "2026-06-01T00:00:00Z", 5),
        ["2027-01-01T00:00:00Z", "2029-01-01T00:00:00Z"]
    );
    assert_eq!(
        fires("0 30 9 ? * MON 2026", "UTC", "2026-12-20T00:00:00Z", 5),
        ["2026-12-21T09:30:00Z", "2026-12-28T09:30:00Z"]
    );
    assert_eq!(
        fires("0 0 0 1 1 ? 2030-2099/10", "UTC", NEW_YEAR, 2),
        ["2030-01-01T00:00:00Z", "2040-01-01T00:00:00Z"]
    );
    let past = CronExpr::parse("0 0 0 1 1 ? 2020", "UTC").expect("valid");
    assert_eq!(past.next_after(ts(NEW_YEAR)), None);
    assert!(past.upcoming(ts(NEW_YEAR), 3).is_empty());
}

#[test]
fn shortcuts() {
    let after = "2026-01-01T00:30:00Z";
    assert_eq!(fires("@hourly", "UTC", after, 1), ["2026-01-01T01:00:00Z"]);
    assert_eq!(fires("@daily", "UTC", after, 1), ["2026-01-02T00:00:00Z"]);
    assert_eq!(
        fires("@midnight", "UTC", after, 1),
        ["2026-01-02T00:00:00Z"]
    );
    assert_eq!(fires("@weekly", "UTC", after, 1), ["2026-01-04T00:00:00Z"]);
    assert_eq!(fires("@monthly", "UTC", after, 1), ["2026-02-01T00:00:00Z"]);
    assert_eq!(fires("@yearly", "UTC", after, 1), ["2027-01-01T00:00:00Z"]);
    assert_eq!(
        fires("@ANNUALLY", "UTC", after, 1),
        ["2027-01-01T00:00:00Z"]
    );
    assert_eq!(
        CronExpr::parse("@daily", "UTC").expect("valid").dialect(),
        Dialect::Unix
    );
    assert!(matches!(err("@often"), CronError::UnknownShortcut(_)));
}

#[test]
fn steps_ranges_and_seconds() {
    let quarter = [
        "2026-01-01T00:15:00Z",
        "2026-01-01T00:30:00Z",
        "2026-01-01T00:45:00Z",
    ];
    assert_eq!(fires("*/15 * * * *", "UTC", NEW_YEAR, 3), quarter);
    assert_eq!(fires("0 0/15 * * * ?", "UTC", NEW_YEAR, 3), quarter);
    assert_eq!(fires("0 */15 * * * ?", "UTC", NEW_YEAR, 3), quarter);
    assert_eq!(
        fires("0 5/20 * * * ?", "UTC", NEW_YEAR, 4),
        [
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:25:00Z",
            "2026-01-01T00:45:00Z",
            "2026-01-01T01:05:00Z"
        ]
    );
    assert_eq!(
        fires("0 10-30/10 * * * ?", "UTC", NEW_YEAR, 4),
        [
            "2026-01-01T00:10:00Z",
            "2026-01-01T00:20:00Z",
            "2026-01-01T00:30:00Z",
            "2026-01-01T01:10:00Z"
        ]
    );
    assert_eq!(
        fires("*/10 * * * * ?", "UTC", NEW_YEAR, 2),
        ["2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"]
    );
    assert_eq!(
        fires("0 0 22-1 * * ?", "UTC", "2026-01-01T12:00:00Z", 5),
        [
            "2026-01-01T22:00:00Z",
            "2026-01-01T23:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-02T01:00:00Z",
            "2026-01-02T22:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 1 JAN,jul *", "UTC", NEW_YEAR, 2),
        ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]
    );
}

#[test]
fn strictly_after_with_millis() {
    let c = CronExpr::parse("0 12 * * *", "UTC").expect("valid");
    let noon = ts("2026-01-01T12:00:00Z");
    assert_eq!(c.next_after(Timestamp(noon.0 - 1)), Some(noon));
    assert_eq!(
        c.next_after(noon).map(show).as_deref(),
        Some("2026-01-02T12:00:00Z")
    );
    assert_eq!(
        c.next_after(Timestamp(noon.0 + 500)).map(show).as_deref(),
        Some("2026-01-02T12:00:00Z")
    );
    assert_eq!(c.upcoming(noon, 0), Vec::<Timestamp>::new());
}

#[test]
fn time_zones() {
    assert_eq!(
        fires("0 0 2 * * ?", "Asia/Shanghai", NEW_YEAR, 2),
        ["2026-01-01T18:00:00Z", "2026-01-02T18:00:00Z"]
    );
    let e = CronExpr::parse("* * * * *", "Mars/Olympus").expect_err("unknown zone");
    assert!(e.is_time_zone());
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    assert_eq!(CronExpr::parse("0 0 * * *", "").expect("utc").tz(), Tz::UTC);
}

#[test]
fn dst_gap_fires_at_end_of_gap() {
    // New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
    for expr in ["30 2 * * *", "0 30 2 * * ?"] {
        assert_eq!(
            fires(expr, "America/New_York", "2026-03-08T00:00:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
            "{expr}"
        );
    }
    // Several times in the gap fire once, at its end.
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2026-03-08T06:45:00Z",
            3
        ),
        [
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-08T08:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3),
        [
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z"
        ]
    );
    // Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
    assert_eq!(
        fires("0 30 2 * * ?", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
}

#[test]
fn dst_repeated_hour_fires_once() {
    // New York falls back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
    assert_eq!(
        fires("30 1 * * *", "America/New_York", "2026-11-01T00:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    for after in [
        "2026-11-01T05:45:00Z",
        "2026-11-01T06:15:00Z",
        "2026-11-01T06:30:00Z",
    ] {
        assert_eq!(
            fires("30 1 * * *", "America/New_York", after, 1),
            ["2026-11-02T06:30:00Z"],
            "after {after}"
        );
    }
    // Interval expressions too: each wall-clock time once.
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2026-11-01T04:45:00Z",
            4
        ),
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T07:00:00Z",
            "2026-11-01T07:30:00Z"
        ]
    );
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2026-11-01T06:10:00Z",
            1
        ),
        ["2026-11-01T07:00:00Z"]
    );
    assert_eq!(
        fires("* * * * * ?", "America/New_York", "2026-11-01T06:00:30Z", 1),
        ["2026-11-01T07:00:00Z"]
    );
    // Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
    assert_eq!(
        fires("0 30 2 * * ?", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "* * * * 8",
            "day-of-week",
            "`8` out of range 0-7 (Unix: 0 and 7 = Sunday",
        ),
        (
            "0 0 12 ? * 0",
            "day-of-week",
            "`0` out of range 1-7 (Quartz: 1 = Sunday",
        ),
        (
            "0 0 12 ? * FOO",
            "day-of-week",
            "`FOO` is not a number or a day name",
        ),
        ("0 0 12 ? * 1#6", "day-of-week", "after `#` must be 1 to 5"),
        ("0 12 * * L", "day-of-week", "needs a day before it"),
        ("60 * * * *", "minute", "`60` out of range 0-59"),
        ("* 24 * * *", "hour", "`24` out of range 0-23"),
        ("* * 0 * *", "day-of-month", "`0` out of range 1-31"),
        ("* * 32 * *", "day-of-month", "`32` out of range 1-31"),
        ("* * * 13 *", "month", "`13` out of range 1-12 (or JAN-DEC)"),
        ("* * * FOO *", "month", "month name"),
        ("61 * * * * ?", "second", "`61` out of range 0-59"),
        ("0 0 0 1 1 ? 1969", "year", "`1969` out of range 1970-2099"),
        ("*/0 * * * *", "minute", "step after `/`"),
        ("*/61 * * * *", "minute", "step after `/`"),
        ("? * * * *", "minute", "`?` is only allowed"),
        ("1,,2 * * * *", "minute", "empty list item"),
        ("-5 * * * *", "minute", "a value is missing"),
        ("0 0 30 2 *", "day-of-month", "never occurs in February"),
        ("0 0 0 31 4,6,9,11 ?", "day-of-month", "never occurs"),
        ("0 0 0 L-30 2 ?", "day-of-month", "never occurs"),
        ("0 0 0 L-31 * ?", "day-of-month", "n from 0 to 30"),
        ("0 0 0 1,L-2 * ?", "day-of-month", "must be alone"),
        ("0 0 0 1-5W * ?", "day-of-month", "takes one day number"),
        (
            "0 12 L-3 * MON",
            "day-of-month",
            "cannot be combined with a day-of-week",
        ),
    ];
    for (expr, field, text) in cases {
        let e = err(expr);
        assert_eq!(e.field(), Some(*field), "{expr}: {e}");
        assert!(e.to_string().contains(text), "{expr}: {e}");
    }
    assert!(matches!(
        err("* * * *"),
        CronError::FieldCount { count: 4, .. }
    ));
    assert!(matches!(
        err("* * * * * * * *"),
        CronError::FieldCount { count: 8, .. }
    ));
    assert!(err("* * * *").to_string().contains("use 5"));
    assert_eq!(err("   "), CronError::Empty);
    // Plain Unix day fields OR: dom 30 in February is fine when a weekday is given too.
    assert!(CronExpr::parse("0 0 30 2 MON", "UTC").is_ok());
}

#[test]
fn display_is_the_expression() {
    let c = CronExpr::parse("  0  0 *  * *  ", "UTC").expect("valid");
    assert_eq!(c.to_string(), "0 0 * * *");
    assert_eq!(c.as_str(), "0 0 * * *");
}

#[test]
fn dst_whole_day_skipped() {
    // Samoa skipped 2011-12-30 (from UTC-10 to UTC+14): that day's noon fires at the
    // first instant of the 31st.
    assert_eq!(
        fires("0 12 * * *", "Pacific/Apia", "2011-12-29T00:00:00Z", 3),
        [
            "2011-12-29T22:00:00Z",
            "2011-12-30T10:00:00Z",
            "2011-12-30T22:00:00Z"
        ]
    );
}
