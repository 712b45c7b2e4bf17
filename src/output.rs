//! How the CLI prints: aligned tables and times for people, one JSON document for
//! programs (`--json`).

use std::io::Write;
use std::time::Duration;

use antares_schemas::Timestamp;
use serde::Serialize;

/// Writes text to stdout. When stdout is a pipe whose reader has gone (`| head`), the
/// process ends quietly, as command-line tools do; other write errors end it with a
/// message.
pub fn write_out(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`write_out`].
macro_rules! outln {
    () => {
        $crate::output::write_out("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Prints a value as one pretty JSON document on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_out(&format!("{text}\n"));
    Ok(())
}

/// A table with a header row; columns padded to their widest cell, two spaces apart.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                // Newlines or tabs in a cell would break the columns.
                let cell: String = cell
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                if i + 1 == cols {
                    line.push_str(&cell);
                } else {
                    let pad = width.saturating_sub(cell.chars().count());
                    line.push_str(&cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        write_out(&self.render());
        Ok(())
    }
}

/// `2026-01-12 12:00:00` (UTC, to the second), for table cells.
pub fn time(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// [`time`] of an optional time, `-` when unset.
pub fn opt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), time)
}

/// A duration for people: `850ms`, `12.3s`, `4m 10s`, `2h 5m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        let s = d.as_secs();
        format!("{}m {}s", s / 60, s % 60)
    } else {
        let m = d.as_secs() / 60;
        format!("{}h {}m", m / 60, m % 60)
    }
}

/// The time from `start` to `end` (or to now when `end` is unset), `-` without a start.
pub fn elapsed(start: Option<Timestamp>, end: Option<Timestamp>) -> String {
    match start {
        Some(s) => {
            let end = end.unwrap_or_else(antares_nats::now);
            let ms = u64::try_from(end.since(s)).unwrap_or(0);
            duration(Duration::from_millis(ms))
        }
        None => "-".to_string(),
    }
}

/// Cuts text to `max` characters, marking the cut with `…`.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = text.lines().next().unwrap_or("");
    if one_line.chars().count() <= max && one_line.len() == text.len() {
        return text.to_string();
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        t.row(vec!["b".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\nb\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(duration(Duration::from_secs(250)), "4m 10s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 5m");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer text", 5), "a lo…");
        assert_eq!(clip("two\nlines", 10), "two…");
    }
}
