//! What changed between two versions of a job spec: field by field, and line by line
//! inside multi-line text (a script's source).
//!
//! Specs are compared as JSON: nested objects become dotted paths (`retry.backoff`),
//! anything else is one value. A line diff works on what differs between the common
//! start and end of the two texts, and long unchanged runs are folded, so a one-line
//! change in a long script shows as a few lines.

use std::collections::BTreeMap;

use serde_json::Value;

/// One line of a text diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// In both.
    Same(String),
    /// Only in the old text.
    Del(String),
    /// Only in the new text.
    Add(String),
    /// This many unchanged lines, not shown.
    Folded(usize),
}

/// One changed field.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Dotted path (`schedule.cron`).
    pub path: String,
    /// The old value, shown as text (`None`: the field is new).
    pub old: Option<String>,
    /// The new value (`None`: the field is gone).
    pub new: Option<String>,
    /// For text over several lines, the line diff.
    pub lines: Option<Vec<Line>>,
}

/// Unchanged lines kept around a change.
const CONTEXT: usize = 2;
/// Largest product of line counts a line diff computes exactly (beyond it, the old
/// lines are all shown removed and the new ones added).
const MAX_CELLS: usize = 1_000_000;

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), value.clone());
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The fields that differ between `old` and `new`, in path order.
pub fn specs(old: &Value, new: &Value) -> Vec<Change> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (o, n) = (a.get(path), b.get(path));
            if o == n {
                return None;
            }
            let lines = match (o, n) {
                (Some(Value::String(x)), Some(Value::String(y)))
                    if x.contains('\n') || y.contains('\n') =>
                {
                    Some(text(x, y))
                }
                _ => None,
            };
            Some(Change {
                path: path.clone(),
                old: o.map(show),
                new: n.map(show),
                lines,
            })
        })
        .collect()
}

/// A line diff of two texts, unchanged runs folded to [`CONTEXT`] lines around changes.
pub fn text(old: &str, new: &str) -> Vec<Line> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut lines: Vec<Line> = a[..prefix]
        .iter()
        .map(|l| Line::Same((*l).into()))
        .collect();
    lines.extend(middle(mid_a, mid_b));
    lines.extend(
        a[a.len() - suffix..]
            .iter()
            .map(|l| Line::Same((*l).into())),
    );
    fold(lines)
}

/// The longest-common-subsequence diff of the differing middle.
fn middle(a: &[&str], b: &[&str]) -> Vec<Line> {
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return a
            .iter()
            .map(|l| Line::Del((*l).into()))
            .chain(b.iter().map(|l| Line::Add((*l).into())))
            .collect();
    }
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(Line::Same(a[i].into()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            out.push(Line::Del(a[i].into()));
            i += 1;
        } else {
            out.push(Line::Add(b[j].into()));
            j += 1;
        }
    }
    out
}

/// Folds unchanged runs, keeping [`CONTEXT`] lines next to each change.
fn fold(lines: Vec<Line>) -> Vec<Line> {
    let changed: Vec<bool> = lines.iter().map(|l| !matches!(l, Line::Same(_))).collect();
    let near = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(changed.len());
        changed[lo..hi].iter().any(|c| *c)
    };
    let mut out = Vec::new();
    let mut folded = 0;
    for (i, line) in lines.into_iter().enumerate() {
        if near(i) {
            if folded > 0 {
                out.push(Line::Folded(folded));
                folded = 0;
            }
            out.push(line);
        } else {
            folded += 1;
        }
    }
    if folded > 0 {
        out.push(Line::Folded(folded));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_added_and_removed_fields_are_listed_by_path() {
        let old = json!({"name": "a", "schedule": {"cron": "0 * * * *"}, "params": "x"});
        let new = json!({"name": "a", "schedule": {"cron": "5 * * * *", "tz": "UTC"}});
        let changes = specs(&old, &new);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["params", "schedule.cron", "schedule.tz"]);
        assert_eq!(changes[0].new, None);
        assert_eq!(changes[1].old.as_deref(), Some("0 * * * *"));
        assert_eq!(changes[2].old, None);
    }

    #[test]
    fn equal_specs_have_no_changes() {
        let spec = json!({"name": "a", "retry": {"max": 1}});
        assert!(specs(&spec, &spec).is_empty());
    }

    #[test]
    fn a_script_change_shows_the_changed_lines_with_context() {
        let old = (1..=20)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let new = old.replace("line 10", "line ten");
        let changes = specs(
            &json!({"script": {"source": old}}),
            &json!({"script": {"source": new}}),
        );
        let lines = changes[0].lines.clone().unwrap_or_default();
        assert_eq!(
            lines,
            vec![
                Line::Folded(7),
                Line::Same("line 8".into()),
                Line::Same("line 9".into()),
                Line::Del("line 10".into()),
                Line::Add("line ten".into()),
                Line::Same("line 11".into()),
                Line::Same("line 12".into()),
                Line::Folded(8),
            ]
        );
    }

    #[test]
    fn inserted_and_removed_lines_are_found() {
        let lines = text("a\nb\nc\nd", "a\nc\nd\ne");
        assert_eq!(
            lines,
            vec![
                Line::Same("a".into()),
                Line::Del("b".into()),
                Line::Same("c".into()),
                Line::Same("d".into()),
                Line::Add("e".into()),
            ]
        );
    }
}
