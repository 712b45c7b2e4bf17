//! The graph that `children` make across jobs, and its cycles.

use std::collections::{BTreeMap, BTreeSet};

/// A cycle of `children` through one of the jobs in `from`, if there is one, as the jobs
/// along it with the first one repeated at the end (`["a/x", "b/y", "a/x"]`).
///
/// `children` maps each job (`app/job`) to its children; a child that is not a key is a
/// job without children (or one that does not exist yet). Only cycles through a job of
/// `from` count: a cycle elsewhere in the catalog is not made by the jobs of `from`.
pub fn child_cycle<'a>(
    children: &BTreeMap<String, Vec<String>>,
    from: impl IntoIterator<Item = &'a str>,
) -> Option<Vec<String>> {
    from.into_iter()
        .find_map(|start| cycle_through(children, start))
}

/// A path from `start` back to itself, by depth-first search.
fn cycle_through(children: &BTreeMap<String, Vec<String>>, start: &str) -> Option<Vec<String>> {
    let kids = |job: &str| children.get(job).map_or(&[][..], Vec::as_slice);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    // The path so far: each job with the index of its next child to look at.
    let mut path: Vec<(&str, usize)> = vec![(start, 0)];
    seen.insert(start);
    while let Some((job, next)) = path.last_mut() {
        let Some(child) = kids(job).get(*next) else {
            path.pop();
            continue;
        };
        *next += 1;
        if child == start {
            let mut cycle: Vec<String> = path.iter().map(|(j, _)| (*j).to_string()).collect();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(child.as_str()) {
            path.push((child.as_str(), 0));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(from, to)| {
                (
                    (*from).to_string(),
                    to.iter().map(|t| (*t).to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn finds_cycles_through_the_given_jobs() {
        let g = graph(&[
            ("a/x", &["b/y", "c/z"]),
            ("b/y", &["d/w"]),
            ("c/z", &["a/x"]),
            ("d/w", &[]),
        ]);
        assert_eq!(
            child_cycle(&g, ["a/x"]),
            Some(vec!["a/x".into(), "c/z".into(), "a/x".into()])
        );
        assert_eq!(
            child_cycle(&g, ["c/z"]),
            Some(vec!["c/z".into(), "a/x".into(), "c/z".into()])
        );
        assert_eq!(child_cycle(&g, ["d/w", "b/y"]), None);
    }

    #[test]
    fn diamonds_and_unknown_children_are_no_cycles() {
        let g = graph(&[
            ("a/x", &["b/y", "c/z"]),
            ("b/y", &["d/w"]),
            ("c/z", &["d/w", "e/missing"]),
        ]);
        assert_eq!(child_cycle(&g, ["a/x", "b/y", "c/z"]), None);
    }

    #[test]
    fn a_cycle_elsewhere_does_not_count() {
        let g = graph(&[("a/x", &["b/y"]), ("b/y", &["c/z"]), ("c/z", &["b/y"])]);
        assert_eq!(child_cycle(&g, ["a/x"]), None);
        assert_eq!(
            child_cycle(&g, ["b/y"]),
            Some(vec!["b/y".into(), "c/z".into(), "b/y".into()])
        );
    }

    #[test]
    fn long_cycles_are_named_in_order() {
        let g = graph(&[
            ("a/1", &["a/2"]),
            ("a/2", &["a/3"]),
            ("a/3", &["a/4"]),
            ("a/4", &["a/1"]),
        ]);
        let cycle = child_cycle(&g, ["a/3"]).expect("cycle");
        assert_eq!(cycle.join(" -> "), "a/3 -> a/4 -> a/1 -> a/2 -> a/3");
    }
}
