//! Parsing one cron expression: checks every field with a message that names it, and
//! rewrites the expression into the plain 7-field form croner evaluates (explicit lists of
//! values, croner's Sunday = 0 numbering, `+` where the days must match AND).

use std::collections::BTreeSet;

use super::{CronError, Dialect};

/// An expression checked and translated for croner.
#[derive(Debug)]
pub(super) struct Parsed {
    /// Unix or Quartz.
    pub dialect: Dialect,
    /// `sec min hour dom month dow year` in croner's syntax.
    pub croner: String,
    /// `L-n` (or `L-nW`) in the day of month: croner has no such thing, so it runs on
    /// every day and the caller keeps only that day.
    pub last_minus: Option<LastMinus>,
}

/// `L-n`: the n-th day before the last of the month; with `weekday` (`L-nW`), the
/// weekday nearest to it, never leaving the month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastMinus {
    /// Days before the last.
    pub n: u32,
    /// Moved to the nearest weekday.
    pub weekday: bool,
}

/// A field of the expression, in croner's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Second,
    Minute,
    Hour,
    Dom,
    Month,
    Dow,
    Year,
}

impl Field {
    fn label(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Dom => "day-of-month",
            Self::Month => "month",
            Self::Dow => "day-of-week",
            Self::Year => "year",
        }
    }

    /// Smallest and largest value as written in this dialect.
    fn bounds(self, dialect: Dialect) -> (u32, u32) {
        match (self, dialect) {
            (Self::Second | Self::Minute, _) => (0, 59),
            (Self::Hour, _) => (0, 23),
            (Self::Dom, _) => (1, 31),
            (Self::Month, _) => (1, 12),
            (Self::Dow, Dialect::Unix) => (0, 7),
            (Self::Dow, Dialect::Quartz) => (1, 7),
            (Self::Year, _) => (1970, 2099),
        }
    }

    fn hint(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Self::Month, _) => " (or JAN-DEC)",
            (Self::Dow, Dialect::Unix) => {
                " (Unix: 0 and 7 = Sunday, 1 = Monday, 6 = Saturday; or SUN-SAT)"
            }
            (Self::Dow, Dialect::Quartz) => {
                " (Quartz: 1 = Sunday, 2 = Monday, 7 = Saturday; or SUN-SAT)"
            }
            _ => "",
        }
    }

    fn err(self, message: String) -> CronError {
        CronError::Field {
            field: self.label(),
            message,
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Longest each month can be (February in a leap year).
const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Turns `@daily` and friends into their 5-field Unix form.
fn shortcut(text: &str) -> Result<&'static str, CronError> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return Err(CronError::UnknownShortcut(text.to_string())),
    })
}

/// Parses and translates `expr` (already trimmed, not empty).
pub(super) fn parse(expr: &str) -> Result<Parsed, CronError> {
    let text = if expr.starts_with('@') {
        shortcut(expr)?
    } else {
        expr
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (dialect, fields): (Dialect, [&str; 7]) = match parts.as_slice() {
        [mi, h, dom, mo, dow] => (Dialect::Unix, ["0", mi, h, dom, mo, dow, "*"]),
        [s, mi, h, dom, mo, dow] => (Dialect::Quartz, [s, mi, h, dom, mo, dow, "*"]),
        [s, mi, h, dom, mo, dow, y] => (Dialect::Quartz, [s, mi, h, dom, mo, dow, y]),
        _ => {
            return Err(CronError::FieldCount {
                expr: expr.to_string(),
                count: parts.len(),
            });
        }
    };
    let [sec, min, hour, dom, month, dow, year] = fields;

    let sec = set_field(Field::Second, dialect, sec)?;
    let min = set_field(Field::Minute, dialect, min)?;
    let hour = set_field(Field::Hour, dialect, hour)?;
    let month_set = values(Field::Month, dialect, month)?;
    let month = emit(Field::Month, dialect, &month_set);
    let year = set_field(Field::Year, dialect, year)?;
    let days = parse_dom(dom, dialect)?;
    let weekdays = parse_dow(dow, dialect)?;

    // How the two day fields combine.
    let dom_any = matches!(days, Dom::Any);
    let dow_any = weekdays.is_none();
    let and = if dom_any || dow_any {
        false
    } else {
        match dialect {
            Dialect::Quartz => {
                return Err(CronError::BothDays {
                    dom: dom.to_string(),
                    dow: dow.to_string(),
                });
            }
            // Vixie cron: a field that starts with `*` (like `*/2`) makes it AND.
            Dialect::Unix => dom.starts_with('*') || dow.starts_with('*'),
        }
    };
    if let Dom::LastMinus(..) = days
        && !dow_any
    {
        return Err(Field::Dom.err(format!(
            "day-of-month `{dom}` cannot be combined with a day-of-week (`{dow}`): set day-of-week to `?` or `*`"
        )));
    }
    check_feasible(&days, dom, &month_set, dow_any || and)?;

    let (dom_text, last_minus) = match &days {
        Dom::Any => ("*".to_string(), None),
        Dom::LastMinus(n, weekday) => (
            "*".to_string(),
            Some(LastMinus {
                n: *n,
                weekday: *weekday,
            }),
        ),
        Dom::List(tokens) => (tokens.join(","), None),
    };
    let dow_text = match weekdays {
        None => "*".to_string(),
        Some(tokens) if and => format!("+{}", tokens.join(",")),
        Some(tokens) => tokens.join(","),
    };
    Ok(Parsed {
        dialect,
        croner: format!("{sec} {min} {hour} {dom_text} {month} {dow_text} {year}"),
        last_minus,
    })
}

/// A plain field (second, minute, hour, year) in croner's syntax.
fn set_field(field: Field, dialect: Dialect, text: &str) -> Result<String, CronError> {
    let set = values(field, dialect, text)?;
    Ok(emit(field, dialect, &set))
}

/// `*` for a full set, else the values as a list.
fn emit(field: Field, dialect: Dialect, set: &BTreeSet<u32>) -> String {
    let (min, max) = field.bounds(dialect);
    if set.len() == (max - min + 1) as usize {
        return "*".to_string();
    }
    let list: Vec<String> = set.iter().map(u32::to_string).collect();
    list.join(",")
}

/// Every value a comma list of plain items selects.
fn values(field: Field, dialect: Dialect, text: &str) -> Result<BTreeSet<u32>, CronError> {
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        set.extend(expand(field, dialect, item)?);
    }
    Ok(set)
}

/// One value, a number or a name.
fn value(field: Field, dialect: Dialect, text: &str, range_end: bool) -> Result<u32, CronError> {
    let (min, max) = field.bounds(dialect);
    let label = field.label();
    let hint = field.hint(dialect);
    if text.is_empty() {
        return Err(field.err(format!("{label}: a value is missing{hint}")));
    }
    let upper = text.to_ascii_uppercase();
    let v = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().unwrap_or(u32::MAX)
    } else if let (Field::Month, Some(i)) = (field, MONTHS.iter().position(|m| *m == upper)) {
        i as u32 + 1
    } else if let (Field::Dow, Some(i)) = (field, DAYS.iter().position(|d| *d == upper)) {
        match dialect {
            // `FRI-SUN` means Friday to Sunday: SUN closes a range as 7.
            Dialect::Unix if i == 0 && range_end => 7,
            Dialect::Unix => i as u32,
            Dialect::Quartz => i as u32 + 1,
        }
    } else {
        let names = match field {
            Field::Month => " or a month name (JAN-DEC)",
            Field::Dow => " or a day name (SUN-SAT)",
            _ => "",
        };
        return Err(field.err(format!(
            "{label} `{text}` is not a number{names}; expected {min}-{max}"
        )));
    };
    if v < min || v > max {
        return Err(field.err(format!("{label} `{text}` out of range {min}-{max}{hint}")));
    }
    Ok(v)
}

/// One list item without specials: `*`, `N`, `A-B`, `*/S`, `N/S`, `A-B/S`. A range whose
/// end is before its start wraps around (`FRI-MON`, `22-2`).
fn expand(field: Field, dialect: Dialect, item: &str) -> Result<Vec<u32>, CronError> {
    let (min, max) = field.bounds(dialect);
    let label = field.label();
    if item.is_empty() {
        return Err(field.err(format!(
            "{label} has an empty list item (two commas, or a comma at an end)"
        )));
    }
    if item.contains('?') {
        return Err(field.err(format!(
            "`?` is only allowed alone in day-of-month or day-of-week, not in {label} `{item}`"
        )));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let span = max - min + 1;
            let s = step.parse::<u32>().ok().filter(|s| (1..=span).contains(s));
            let Some(s) = s else {
                return Err(field.err(format!(
                    "{label} `{item}`: the step after `/` must be a number from 1 to {span}"
                )));
            };
            (range, Some(s))
        }
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        let a = value(field, dialect, a, false)?;
        let b = value(field, dialect, b, true)?;
        (a, b)
    } else {
        let a = value(field, dialect, range, false)?;
        // `N/S` (Quartz, cronie): from N to the end of the range.
        (a, if step.is_some() { max } else { a })
    };
    let step = step.unwrap_or(1);
    let span = max - min + 1;
    let distance = (end + span - start) % span;
    let mut out = Vec::new();
    let mut k = 0;
    while k <= distance {
        let v = start + k;
        out.push(if v > max { v - span } else { v });
        k += step;
    }
    Ok(out)
}

/// The day-of-month field.
#[derive(Debug)]
enum Dom {
    /// `*` or `?`.
    Any,
    /// `L-n`, and whether it is `L-nW`.
    LastMinus(u32, bool),
    /// croner tokens: numbers, `L`, `LW`, `NW`.
    List(Vec<String>),
}

fn parse_dom(text: &str, dialect: Dialect) -> Result<Dom, CronError> {
    let f = Field::Dom;
    if text == "*" || text == "?" {
        return Ok(Dom::Any);
    }
    let upper = text.to_ascii_uppercase();
    if let Some(n) = upper.strip_prefix("L-") {
        let (n, weekday) = match n.strip_suffix('W') {
            Some(n) => (n, true),
            None => (n, false),
        };
        let n = n.parse::<u32>().ok().filter(|n| *n <= 30).ok_or_else(|| {
            f.err(format!(
                "day-of-month `{text}`: `L-n` (the n-th day before the last) or `L-nW` (the weekday nearest to it) needs n from 0 to 30, alone in the field"
            ))
        })?;
        return Ok(Dom::LastMinus(n, weekday));
    }
    let mut plain = BTreeSet::new();
    let mut special = Vec::new();
    let items: Vec<&str> = upper.split(',').collect();
    for item in &items {
        let item = *item;
        // Quartz allows `L`, `LW` and `nW` only alone in the field; so do we there.
        if dialect == Dialect::Quartz
            && items.len() > 1
            && (item.starts_with('L') || item.ends_with('W'))
        {
            return Err(f.err(format!(
                "day-of-month `{text}`: `{item}` must be alone in the field in a Quartz (6- or 7-field) expression, as Quartz requires"
            )));
        }
        if item == "L" || item == "LW" {
            special.push(item.to_string());
        } else if item.starts_with("L-") {
            return Err(f.err(format!(
                "day-of-month `{text}`: `{item}` must be alone in the field"
            )));
        } else if let Some(day) = item.strip_suffix('W') {
            if !day.bytes().all(|b| b.is_ascii_digit()) || day.is_empty() {
                return Err(f.err(format!(
                    "day-of-month `{item}`: `W` (nearest weekday) takes one day number, like `15W`"
                )));
            }
            let d = value(f, dialect, day, false)?;
            special.push(format!("{d}W"));
        } else {
            plain.extend(expand(f, dialect, item)?);
        }
    }
    let mut tokens: Vec<String> = plain.iter().map(u32::to_string).collect();
    tokens.extend(special);
    Ok(Dom::List(tokens))
}

/// The day-of-week field as croner tokens (Sunday = 0), or `None` for `*`/`?`.
fn parse_dow(text: &str, dialect: Dialect) -> Result<Option<Vec<String>>, CronError> {
    let f = Field::Dow;
    if text == "*" || text == "?" {
        return Ok(None);
    }
    // croner's weekday number: Sunday = 0.
    let to_croner = |v: u32| match dialect {
        Dialect::Unix => v % 7,
        Dialect::Quartz => v - 1,
    };
    let mut plain = BTreeSet::new();
    let mut special = BTreeSet::new();
    let items: Vec<&str> = text.split(',').collect();
    for item in &items {
        let item = *item;
        let upper = item.to_ascii_uppercase();
        // Quartz allows `L`, `nL` and `n#k` only alone in the field; so do we there.
        if dialect == Dialect::Quartz
            && items.len() > 1
            && (upper.contains('#') || upper.ends_with('L'))
        {
            return Err(f.err(format!(
                "day-of-week `{text}`: `{item}` must be alone in the field in a Quartz (6- or 7-field) expression, as Quartz requires"
            )));
        }
        if let Some((day, nth)) = upper.split_once('#') {
            let d = to_croner(value(f, dialect, day, false)?);
            if nth == "L" {
                special.insert(format!("{d}#L"));
                continue;
            }
            let n = nth.parse::<u32>().ok().filter(|n| (1..=5).contains(n));
            let Some(n) = n else {
                return Err(f.err(format!(
                    "day-of-week `{item}`: the number after `#` must be 1 to 5 (the n-th such day of the month) or L"
                )));
            };
            special.insert(format!("{d}#{n}"));
        } else if upper == "L" {
            match dialect {
                // Quartz: `L` alone in day-of-week is the last day of the week, Saturday.
                Dialect::Quartz => {
                    plain.insert(6);
                }
                Dialect::Unix => {
                    return Err(f.err(
                        "day-of-week `L` needs a day before it, like `5L` (the last Friday of the month)"
                            .to_string(),
                    ));
                }
            }
        } else if let Some(day) = upper.strip_suffix('L') {
            let d = to_croner(value(f, dialect, day, false)?);
            special.insert(format!("{d}#L"));
        } else {
            plain.extend(expand(f, dialect, item)?.into_iter().map(to_croner));
        }
    }
    let mut tokens: Vec<String> = plain.iter().map(u32::to_string).collect();
    tokens.extend(special);
    Ok(Some(tokens))
}

/// Rejects a day of month that no selected month has (`0 0 30 2 *`), which would
/// otherwise never fire. Only checked when the day of month alone decides the day.
fn check_feasible(
    days: &Dom,
    text: &str,
    months: &BTreeSet<u32>,
    dom_decides: bool,
) -> Result<(), CronError> {
    if !dom_decides {
        return Ok(());
    }
    let longest = months
        .iter()
        .map(|m| MAX_DAYS[(*m as usize - 1) % 12])
        .max()
        .unwrap_or(31);
    let which = || {
        let names: Vec<&str> = months
            .iter()
            .map(|m| MONTH_NAMES[(*m as usize - 1) % 12])
            .collect();
        names.join(", ")
    };
    let fits = match days {
        Dom::Any => true,
        Dom::LastMinus(n, _) => *n < longest,
        Dom::List(tokens) => tokens.iter().any(|t| {
            let day = t.trim_end_matches('W');
            day.starts_with('L') || day.parse::<u32>().is_ok_and(|d| d <= longest)
        }),
    };
    if fits {
        Ok(())
    } else {
        Err(Field::Dom.err(format!(
            "day-of-month `{text}` never occurs in {}, so this would never fire",
            which()
        )))
    }
}
