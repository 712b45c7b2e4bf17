//! Which worker gets a shard item: the pure choice behind a job's `routing`.
//!
//! The leader keeps the live workers of every app in memory (from their heartbeats) and
//! calls [`choose`] once per shard item it publishes to one worker: no round trip per
//! item. The candidates are the live workers of the job's app that can run the job's
//! shards (and, when the job pins `workers`, only those), sorted by id; their `free`
//! slots come from the last heartbeat, less what was sent to them since.
//!
//! | routing | the worker |
//! | --- | --- |
//! | `pull` | (when the queue cannot be used: pinning, or workers that cannot run it) the one with the most free slots |
//! | `broadcast` | item `i` of `n` goes to the `i`-th worker (one shard per worker at fire time) |
//! | `first`, `last` | the first (last) by id |
//! | `round_robin` | the next in turn, per job |
//! | `random` | any, uniformly |
//! | `consistent_hash` | the highest hash of (job, item, worker): a job stays on one worker while the set does not change, and only the items of a worker that leaves move |
//! | `least_frequently_used` | the one this job was sent to least often |
//! | `least_recently_used` | the one this job was sent to longest ago (or never) |
//! | `failover` | the first by id; the leader confirms it answers, else takes the next |
//! | `busyover` | the first by id with a free slot (the first when all are full) |

use std::collections::{HashMap, HashSet};

use antares_schemas::spec::Routing;

/// A live worker that can take the item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Worker id.
    pub id: String,
    /// Free slots: capacity less running by its last beat, less what was sent since.
    pub free: u32,
    /// Items it holds beyond its slots (running by its beat, or waiting on its own
    /// subject, plus what was sent since, less its capacity).
    pub over: u32,
}

/// What a job's routing remembers between choices: whose turn it is, and how often and
/// how lately each worker was chosen.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    turn: u64,
    clock: u64,
    /// Per worker: times chosen, and the clock of the last time.
    chosen: HashMap<String, (u64, u64)>,
}

impl Usage {
    /// Forgets workers that are gone (keeps the memory bounded by the live workers).
    pub fn retain(&mut self, live: &HashSet<&str>) {
        self.chosen.retain(|id, _| live.contains(id.as_str()));
    }

    fn record(&mut self, id: &str) {
        self.clock += 1;
        let entry = self.chosen.entry(id.to_string()).or_default();
        entry.0 += 1;
        entry.1 = self.clock;
    }

    fn count(&self, id: &str) -> u64 {
        self.chosen.get(id).map_or(0, |c| c.0)
    }

    fn last(&self, id: &str) -> u64 {
        self.chosen.get(id).map_or(0, |c| c.1)
    }
}

/// The candidate (an index into `workers`, sorted by id) that gets `item` of the job
/// `key` (`app/job`), or `None` when there is none. The chosen worker's `free` drops by
/// one and `usage` records the choice. `random` is any random number.
pub fn choose(
    routing: Routing,
    key: &str,
    item: u32,
    workers: &mut [Candidate],
    usage: &mut Usage,
    random: u64,
) -> Option<usize> {
    let n = workers.len();
    if n == 0 {
        return None;
    }
    let first_min = |f: &dyn Fn(&Candidate) -> u64| -> usize {
        let mut best = 0;
        for (i, w) in workers.iter().enumerate() {
            if f(w) < f(&workers[best]) {
                best = i;
            }
        }
        best
    };
    let at = |x: u64| usize::try_from(x % n as u64).unwrap_or(0);
    let pick = match routing {
        // Most free, then fewest held beyond the slots, then chosen longest ago.
        Routing::Pull => workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| (std::cmp::Reverse(w.free), w.over, usage.last(&w.id)))
            .map_or(0, |(i, _)| i),
        Routing::Broadcast => at(u64::from(item)),
        Routing::First | Routing::Failover => 0,
        Routing::Last => n - 1,
        Routing::RoundRobin => {
            let i = at(usage.turn);
            usage.turn = usage.turn.wrapping_add(1);
            i
        }
        Routing::Random => at(random),
        Routing::ConsistentHash => first_min(&|w| u64::MAX - weight(key, item, &w.id)),
        Routing::LeastFrequentlyUsed => first_min(&|w| usage.count(&w.id)),
        Routing::LeastRecentlyUsed => first_min(&|w| usage.last(&w.id)),
        Routing::Busyover => workers.iter().position(|w| w.free > 0).unwrap_or(0),
    };
    let chosen = &mut workers[pick];
    if chosen.free > 0 {
        chosen.free -= 1;
    } else {
        chosen.over = chosen.over.saturating_add(1);
    }
    usage.record(&chosen.id);
    Some(pick)
}

/// Rendezvous hashing: the weight of a worker for one item of one job.
fn weight(key: &str, item: u32, worker: &str) -> u64 {
    let text = format!("{key}\u{0}{item}\u{0}{worker}");
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str], free: u32) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: (*id).to_string(),
                free,
                over: 0,
            })
            .collect()
    }

    fn ids(routing: Routing, workers: &[&str], items: u32) -> Vec<String> {
        let mut ws = set(workers, 8);
        let mut usage = Usage::default();
        (0..items)
            .map(|i| {
                let k = choose(routing, "shop/job", i, &mut ws, &mut usage, 7).expect("one");
                ws[k].id.clone()
            })
            .collect()
    }

    #[test]
    fn nobody_gets_nothing() {
        for r in Routing::ALL {
            assert_eq!(choose(r, "a/j", 0, &mut [], &mut Usage::default(), 0), None);
        }
    }

    #[test]
    fn first_last_failover_and_round_robin() {
        assert_eq!(ids(Routing::First, &["a", "b", "c"], 3), ["a", "a", "a"]);
        assert_eq!(ids(Routing::Failover, &["a", "b", "c"], 2), ["a", "a"]);
        assert_eq!(ids(Routing::Last, &["a", "b", "c"], 2), ["c", "c"]);
        assert_eq!(
            ids(Routing::RoundRobin, &["a", "b", "c"], 7),
            ["a", "b", "c", "a", "b", "c", "a"]
        );
        assert_eq!(
            ids(Routing::Broadcast, &["a", "b", "c"], 3),
            ["a", "b", "c"]
        );
        assert_eq!(ids(Routing::Random, &["a", "b", "c"], 2), ["b", "b"]);
    }

    #[test]
    fn least_used_spread_then_follow_use() {
        assert_eq!(
            ids(Routing::LeastFrequentlyUsed, &["a", "b", "c"], 6),
            ["a", "b", "c", "a", "b", "c"]
        );
        let mut ws = set(&["a", "b", "c"], 8);
        let mut usage = Usage::default();
        // `a` was used twice, `b` once, `c` never.
        for pick in [0, 0, 1] {
            usage.record(&ws[pick].id);
        }
        let lfu = choose(Routing::LeastFrequentlyUsed, "k", 0, &mut ws, &mut usage, 0);
        assert_eq!(lfu, Some(2));
        // Now `a` was used longest ago.
        let lru = choose(Routing::LeastRecentlyUsed, "k", 0, &mut ws, &mut usage, 0);
        assert_eq!(lru, Some(0));
        let lru = choose(Routing::LeastRecentlyUsed, "k", 0, &mut ws, &mut usage, 0);
        assert_eq!(lru, Some(1));
    }

    #[test]
    fn busyover_and_pull_go_by_free_slots() {
        let mut ws = set(&["a", "b", "c"], 0);
        ws[1].free = 1;
        ws[2].free = 3;
        let mut usage = Usage::default();
        let mut pick = || choose(Routing::Busyover, "k", 0, &mut ws, &mut usage, 0);
        // `a` is full: `b` until it is, then `c`, then the first when all are.
        assert_eq!(pick(), Some(1));
        assert_eq!(pick(), Some(2));
        assert_eq!(pick(), Some(2));
        assert_eq!(pick(), Some(2));
        assert_eq!(pick(), Some(0));
        let mut ws = set(&["a", "b", "c"], 1);
        ws[2].free = 2;
        let mut usage = Usage::default();
        let mut pick = || choose(Routing::Pull, "k", 0, &mut ws, &mut usage, 0);
        assert_eq!(pick(), Some(2));
        assert_eq!(pick(), Some(0));
        assert_eq!(pick(), Some(1));
        assert_eq!(pick(), Some(2));
    }

    #[test]
    fn pull_spreads_what_full_workers_hold() {
        // Every slot taken: the one holding least beyond its slots, then in turn.
        let mut ws = set(&["a", "b", "c"], 0);
        ws[0].over = 2;
        let mut usage = Usage::default();
        let picks: Vec<usize> = (0..7)
            .filter_map(|i| choose(Routing::Pull, "k", i, &mut ws, &mut usage, 0))
            .collect();
        assert_eq!(picks, [1, 2, 1, 2, 0, 1, 2]);
        assert_eq!(ws.iter().map(|w| w.over).collect::<Vec<_>>(), [3, 3, 3]);
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_only_what_it_must() {
        let all = ["w1", "w2", "w3", "w4"];
        let before = ids(Routing::ConsistentHash, &all, 200);
        assert_eq!(before, ids(Routing::ConsistentHash, &all, 200));
        // The same item of the same job, fired again: the same worker.
        let once = ids(Routing::ConsistentHash, &all, 1);
        assert_eq!(once[0], before[0]);
        // Spread over all of them.
        for w in all {
            assert!(before.iter().any(|b| b == w), "{w} got none");
        }
        // `w2` leaves: its items move, no other does.
        let after = ids(Routing::ConsistentHash, &["w1", "w3", "w4"], 200);
        for (b, a) in before.iter().zip(&after) {
            if b != "w2" {
                assert_eq!(a, b);
            } else {
                assert_ne!(a, "w2");
            }
        }
    }

    #[test]
    fn usage_forgets_gone_workers() {
        let mut usage = Usage::default();
        usage.record("a");
        usage.record("b");
        usage.retain(&HashSet::from(["b"]));
        assert_eq!(usage.count("a"), 0);
        assert_eq!(usage.count("b"), 1);
    }
}
