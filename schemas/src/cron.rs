//! Cron expressions as users write them, evaluated in a time zone.
//!
//! # Dialects
//!
//! The number of fields decides the dialect, and each keeps its own meaning:
//!
//! - **5 fields: Unix cron** (`minute hour day-of-month month day-of-week`), seconds 0.
//!   Day-of-week `0` and `7` are Sunday, `1` is Monday … `6` Saturday. When both
//!   day-of-month and day-of-week are restricted a day matches if **either** does
//!   (Vixie cron: `0 0 1 * MON` runs on the 1st and on every Monday); as in Vixie cron,
//!   a field that starts with `*` (like `*/2`) counts as unrestricted for that rule, so
//!   `0 0 */2 * MON` means odd days that are Mondays.
//! - **6 or 7 fields: Quartz** (`second minute hour day-of-month month day-of-week
//!   [year]`). Day-of-week `1` is Sunday, `2` Monday … `7` Saturday (`L` alone means
//!   Saturday). Quartz forbids restricting both day fields, and so do we: one of them
//!   must be `?` (or `*`, which is accepted as a synonym there); `0 0 0 1 * MON` is an
//!   error that says so. The year is `1970-2099`.
//! - **Shortcuts** `@yearly`, `@annually`, `@monthly`, `@weekly` (Sunday), `@daily`,
//!   `@midnight`, `@hourly`: their Unix meaning, at second 0.
//!
//! Both dialects take names (`JAN-DEC`, `SUN-SAT`, any case), lists, ranges (a range
//! whose end comes first wraps: `FRI-MON`), steps (`*/15`, `5/20` = from 5 to the end,
//! `10-40/10`), `?`, and the Quartz specials: day-of-month `L` (last day), `L-3` (the
//! third day before the last; alone in its field, with no day-of-week), `L-3W` (the
//! weekday nearest that day), `LW` (last weekday), `15W` (the weekday nearest the 15th,
//! never leaving the month); day-of-week `5L`/`FRIL` (the last Friday, Unix numbering;
//! `6L` in Quartz) and `MON#2` (the second Monday). In Quartz expressions these stand
//! alone in their field, as Quartz requires (`1,L` or `SAT,SUN,L` is an error there);
//! Unix expressions may list them with other days.
//!
//! # Time zones and daylight saving time
//!
//! The expression is matched against the wall clock of its time zone (an IANA name,
//! `UTC` when none is given). When the clock jumps:
//!
//! - **Gap (spring forward):** a wall-clock time that does not exist that day fires at
//!   the first instant after the gap (Quartz's rule): `30 2 * * *` in America/New_York
//!   runs at 03:00 EDT on 2026-03-08. Several times inside one gap (`*/15 * * * *`) fire
//!   once, at that instant.
//! - **Repeated hour (fall back):** every wall-clock time fires once, at its first
//!   occurrence: `30 1 * * *` in America/New_York runs at 01:30 EDT on 2026-11-01 and
//!   not again at 01:30 EST. This holds for interval expressions too: `*/15 * * * *`
//!   fires at 01:00 … 01:45 EDT and next at 02:00 EST, one real hour without fires.
//!
//! Underneath, the [croner](https://docs.rs/croner) crate finds the next matching wall
//! clock time; this module checks and translates each dialect for it and applies the
//! rules above itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::time::Timestamp;

mod parse;
#[cfg(test)]
mod tests;

/// Which cron dialect an expression was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// 5 fields, Unix meaning (day-of-week 0/7 = Sunday; day fields OR).
    Unix,
    /// 6 or 7 fields, Quartz meaning (seconds first, optional year; 1 = Sunday).
    Quartz,
}

/// A cron expression that cannot be used, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing given.
    #[error("the cron expression is empty")]
    Empty,
    /// Not 5, 6 or 7 fields.
    #[error(
        "cron expression `{expr}` has {count} field(s); use 5 (Unix: minute hour day-of-month month day-of-week), 6 (Quartz: second minute hour day-of-month month day-of-week) or 7 (Quartz with a year)"
    )]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it has.
        count: usize,
    },
    /// `@something` that is not a known shortcut.
    #[error(
        "unknown cron shortcut `{0}`: use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
    )]
    UnknownShortcut(String),
    /// One field is wrong; the message names it.
    #[error("{message}")]
    Field {
        /// `second`, `minute`, `hour`, `day-of-month`, `month`, `day-of-week` or `year`.
        field: &'static str,
        /// What is wrong, naming the field and the value.
        message: String,
    },
    /// Quartz expression with both day fields restricted.
    #[error(
        "day-of-month `{dom}` and day-of-week `{dow}` are both set: in a Quartz (6- or 7-field) expression one of them must be `?`, e.g. `0 0 0 {dom} * ?` or `0 0 0 ? * {dow}` (a 5-field Unix expression would fire on either)"
    )]
    BothDays {
        /// The day-of-month field.
        dom: String,
        /// The day-of-week field.
        dow: String,
    },
    /// Not an IANA time zone name.
    #[error(
        "unknown time zone `{0}`: use an IANA name such as `UTC`, `Europe/Berlin` or `Asia/Shanghai`"
    )]
    UnknownTimeZone(String),
    /// The evaluator refused the translated expression (a bug in this module).
    #[error("cron expression `{expr}` is not supported: {reason}")]
    Unsupported {
        /// The expression.
        expr: String,
        /// The evaluator's reason.
        reason: String,
    },
}

impl CronError {
    /// The cron field at fault, when one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Field { field, .. } => Some(field),
            Self::BothDays { .. } => Some("day-of-month"),
            _ => None,
        }
    }

    /// Whether the time zone, not the expression, is wrong.
    pub fn is_time_zone(&self) -> bool {
        matches!(self, Self::UnknownTimeZone(_))
    }
}

/// Parses an IANA time zone name; empty means UTC.
pub fn parse_tz(name: &str) -> Result<Tz, CronError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| CronError::UnknownTimeZone(name.to_string()))
}

/// A checked cron expression bound to a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronExpr {
    /// The expression as written, whitespace collapsed.
    text: String,
    dialect: Dialect,
    tz: Tz,
    /// Shared: it is large, [`crate::schedule::Schedule`] holds a `CronExpr`, and the
    /// same expression parsed again reuses it (see [`CronExpr::parse`]).
    cron: Arc<croner::Cron>,
    /// `L-n` or `L-nW` in the day of month (see `parse::Parsed`).
    last_minus: Option<parse::LastMinus>,
}

/// How many parsed expressions each thread keeps (all are dropped when it is full).
const PARSED_KEPT: usize = 1024;

thread_local! {
    /// Expressions parsed lately, by text and time zone, with their outcome.
    static PARSED: RefCell<HashMap<(String, String), Result<CronExpr, CronError>>> =
        RefCell::new(HashMap::new());
}

/// A cache key looked up by `(&str, &str)` without building the owned key.
trait ParsedKey {
    fn key(&self) -> (&str, &str);
}

impl ParsedKey for (String, String) {
    fn key(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl ParsedKey for (&str, &str) {
    fn key(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn ParsedKey + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn ParsedKey + 'a) {
        self
    }
}

impl PartialEq for dyn ParsedKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn ParsedKey + '_ {}

impl std::hash::Hash for dyn ParsedKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// Upper bound of evaluator calls for one `next_after` (each `L-n` step moves at least
/// to the next month).
const MAX_STEPS: usize = 4000;

impl CronExpr {
    /// Parses `expr` (5 fields Unix, 6-7 fields Quartz, or an `@` shortcut) to be
    /// evaluated in the IANA time zone `tz` (empty = UTC).
    ///
    /// The last `PARSED_KEPT` expressions parsed on this thread are kept, with their
    /// outcome: a file of many jobs repeats a few expressions, and parsing one costs
    /// far more than finding it again.
    pub fn parse(expr: &str, tz: &str) -> Result<CronExpr, CronError> {
        PARSED.with(|parsed| {
            let mut parsed = parsed.borrow_mut();
            if let Some(found) = parsed.get(&(expr, tz) as &dyn ParsedKey) {
                return found.clone();
            }
            let outcome = Self::parse_new(expr, tz);
            if parsed.len() >= PARSED_KEPT {
                parsed.clear();
            }
            parsed.insert((expr.to_string(), tz.to_string()), outcome.clone());
            outcome
        })
    }

    fn parse_new(expr: &str, tz: &str) -> Result<CronExpr, CronError> {
        let text = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(CronError::Empty);
        }
        let parsed = parse::parse(&text)?;
        let tz = parse_tz(tz)?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Required)
            .build()
            .parse(&parsed.croner)
            .map_err(|e| CronError::Unsupported {
                expr: text.clone(),
                reason: e.to_string(),
            })?;
        Ok(CronExpr {
            text,
            dialect: parsed.dialect,
            tz,
            cron: Arc::new(cron),
            last_minus: parsed.last_minus,
        })
    }

    /// The dialect it was read in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Its time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The expression as written, whitespace collapsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after`, or `None` if there is none (a year
    /// list that has run out, or beyond the year 4999).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let at = DateTime::<Utc>::from_timestamp_millis(after.0)?;
        let local = at.with_timezone(&self.tz);
        let wall = local.naive_local().with_nanosecond(0)?;
        let (mut from, mut inclusive) = match self.tz.from_local_datetime(&wall) {
            // `after` is in the second pass of a repeated hour: every wall-clock time of
            // that hour fired in the first pass, so look from the end of the repetition.
            LocalResult::Ambiguous(early, late) if early.offset().fix() != local.offset().fix() => {
                (self.repeat_end(&early, &late)?, true)
            }
            _ => (wall, false),
        };
        // One pass suffices; the loop only guards against surprises in time zone data.
        for _ in 0..4 {
            let next = self.next_wall(from, inclusive)?;
            let fire = self.resolve(next)?;
            if fire.timestamp_millis() > after.0 {
                return Some(Timestamp(fire.timestamp_millis()));
            }
            from = next;
            inclusive = false;
        }
        None
    }

    /// The next `n` fire times after `after`, fewer if the schedule ends.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        crate::schedule::successive(after, n, |t| self.next_after(t))
    }

    /// The first matching wall-clock time after (or at, if `inclusive`) `from`.
    fn next_wall(&self, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        let (mut from, mut inclusive) = (from, inclusive);
        for _ in 0..MAX_STEPS {
            let next = self.cron.find_next_occurrence(&from, inclusive).ok()?;
            let Some(lm) = self.last_minus else {
                return Some(next);
            };
            let date = next.date();
            let first = date.with_day0(0)?;
            let next_month = first.checked_add_months(chrono::Months::new(1))?;
            let last = next_month.pred_opt()?;
            let target = last
                .day0()
                .checked_sub(lm.n)
                .and_then(|d| first.with_day0(d))
                .map(|t| if lm.weekday { nearest_weekday(t) } else { t });
            match target {
                Some(t) if t == date => return Some(next),
                Some(t) if t > date => from = t.and_hms_opt(0, 0, 0)?,
                _ => from = next_month.and_hms_opt(0, 0, 0)?,
            }
            inclusive = true;
        }
        None
    }

    /// The instant a wall-clock fire time runs at: the only one; the first of a
    /// repeated time; the end of the gap for a time that does not exist.
    fn resolve(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(early, _) => Some(early.with_timezone(&Utc)),
            LocalResult::None => {
                // The first instant whose wall clock is past `wall`: the end of the gap.
                let guess = wall.and_utc().timestamp();
                let (lo, hi) = (guess - 36 * 3600, guess + 36 * 3600);
                let past = |s: i64| {
                    DateTime::<Utc>::from_timestamp(s, 0)
                        .is_some_and(|t| t.with_timezone(&self.tz).naive_local() > wall)
                };
                first_true(lo, hi, past).and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            }
        }
    }

    /// The first wall-clock time after a repeated range, given the two instants of one
    /// repeated time.
    fn repeat_end(&self, early: &DateTime<Tz>, late: &DateTime<Tz>) -> Option<NaiveDateTime> {
        let first_offset = early.offset().fix();
        let second_offset = late.offset().fix();
        let second = |s: i64| {
            DateTime::<Utc>::from_timestamp(s, 0).is_some_and(|t| {
                self.tz.offset_from_utc_datetime(&t.naive_utc()).fix() == second_offset
            })
        };
        // The instant the clock went back.
        let back = first_true(early.timestamp(), late.timestamp(), second)?;
        let back = DateTime::<Utc>::from_timestamp(back, 0)?;
        Some(back.naive_utc() + first_offset)
    }
}

/// The smallest `s` in `(lo, hi]` with `pred(s)`, given `!pred(lo)` and `pred(hi)`
/// (and `pred` monotone in between).
fn first_true(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> bool) -> Option<i64> {
    if pred(lo) || !pred(hi) {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { hi = mid } else { lo = mid }
    }
    Some(hi)
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The weekday nearest to `day` without leaving its month (Quartz's `W`): a Saturday
/// moves to the Friday before (or the Monday after, on the 1st), a Sunday to the Monday
/// after (or the Friday before, on the last day).
fn nearest_weekday(day: chrono::NaiveDate) -> chrono::NaiveDate {
    use chrono::Weekday;
    let month = day.month();
    let moved = match day.weekday() {
        Weekday::Sat => day
            .pred_opt()
            .filter(|d| d.month() == month)
            .or_else(|| day.succ_opt().and_then(|d| d.succ_opt())),
        Weekday::Sun => day
            .succ_opt()
            .filter(|d| d.month() == month)
            .or_else(|| day.pred_opt().and_then(|d| d.pred_opt())),
        _ => Some(day),
    };
    moved.unwrap_or(day)
}
