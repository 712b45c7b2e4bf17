//! Overlap policies: which instances of a job run, which wait their turn.
//!
//! The leader keeps, per job, the instances it has started and not yet seen end
//! (`active`) and those that wait their turn (`waiting`, oldest first). A new instance
//! of any trigger kind is admitted by [`Runs::decide`] from the job's `overlap`:
//! - `serial`: starts when nothing runs, else waits (at most [`MAX_WAITING`]; beyond
//!   that it is recorded `skipped`);
//! - `parallel`: like `serial` with room for `max_parallel` at once;
//! - `discard`: starts when nothing runs, else is recorded `skipped`;
//! - `cover`: the running ones are cancelled and it starts.
//!
//! When an instance ends, [`Runs::admit`] hands out the freed room to the waiting ones,
//! oldest first. This is bookkeeping only; the leader persists and publishes.

use std::collections::{BTreeSet, HashMap};

use antares_schemas::InstanceId;
use antares_schemas::limits::MAX_WAITING;
use antares_schemas::spec::Overlap;

/// What to do with a new instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queue its shard items now.
    Start,
    /// Keep it `pending` until room is free.
    Wait(String),
    /// Record it `skipped`.
    Skip(String),
    /// Cancel these, then start it.
    Cover(Vec<InstanceId>),
}

#[derive(Clone, Debug, Default)]
struct JobRuns {
    active: BTreeSet<InstanceId>,
    waiting: BTreeSet<InstanceId>,
}

/// Running and waiting instances of every job.
#[derive(Clone, Debug, Default)]
pub struct Runs {
    jobs: HashMap<(String, String), JobRuns>,
}

fn room(overlap: Overlap, max_parallel: u32) -> usize {
    match overlap {
        Overlap::Parallel => usize::try_from(max_parallel.max(1)).unwrap_or(usize::MAX),
        Overlap::Serial | Overlap::Discard | Overlap::Cover => 1,
    }
}

impl Runs {
    fn job(&self, app: &str, job: &str) -> Option<&JobRuns> {
        self.jobs.get(&(app.to_string(), job.to_string()))
    }

    fn job_mut(&mut self, app: &str, job: &str) -> &mut JobRuns {
        self.jobs
            .entry((app.to_string(), job.to_string()))
            .or_default()
    }

    /// What the job's policy says about one more instance now.
    pub fn decide(&self, app: &str, job: &str, overlap: Overlap, max_parallel: u32) -> Admission {
        let (active, waiting) = self
            .job(app, job)
            .map_or((0, 0), |j| (j.active.len(), j.waiting.len()));
        let free = active + waiting == 0 || (waiting == 0 && active < room(overlap, max_parallel));
        if free {
            return Admission::Start;
        }
        let running = self
            .job(app, job)
            .and_then(|j| j.active.iter().next_back())
            .map_or_else(
                || "another instance".to_string(),
                |id| format!("instance {id}"),
            );
        match overlap {
            Overlap::Discard => Admission::Skip(format!(
                "{running} of this job was still running (overlap = \"discard\")"
            )),
            Overlap::Cover => Admission::Cover(
                self.job(app, job)
                    .map(|j| j.active.iter().chain(&j.waiting).copied().collect())
                    .unwrap_or_default(),
            ),
            Overlap::Serial | Overlap::Parallel if waiting >= MAX_WAITING => {
                Admission::Skip(format!(
                    "{waiting} instances of this job already wait their turn, the most that may (overlap = \"{}\")",
                    overlap_name(overlap)
                ))
            }
            Overlap::Serial | Overlap::Parallel => Admission::Wait(format!(
                "waiting for {running} to end (overlap = \"{}\")",
                overlap_name(overlap)
            )),
        }
    }

    /// Notes an instance whose items are (being) queued.
    pub fn start(&mut self, app: &str, job: &str, id: InstanceId) {
        let j = self.job_mut(app, job);
        j.waiting.remove(&id);
        j.active.insert(id);
    }

    /// Notes an instance that waits its turn.
    pub fn wait(&mut self, app: &str, job: &str, id: InstanceId) {
        self.job_mut(app, job).waiting.insert(id);
    }

    /// Forgets an instance that ended.
    pub fn end(&mut self, app: &str, job: &str, id: &InstanceId) {
        let key = (app.to_string(), job.to_string());
        if let Some(j) = self.jobs.get_mut(&key) {
            j.active.remove(id);
            j.waiting.remove(id);
            if j.active.is_empty() && j.waiting.is_empty() {
                self.jobs.remove(&key);
            }
        }
    }

    /// The waiting instances that may start now, oldest first (they are moved to active).
    /// Only instances that are `ready` (stored: not still being created) go; the oldest
    /// one that is not holds back the rest, so the order stays, and it gets its turn when
    /// its creation is back.
    pub fn admit(
        &mut self,
        app: &str,
        job: &str,
        overlap: Overlap,
        max_parallel: u32,
        ready: impl Fn(&InstanceId) -> bool,
    ) -> Vec<InstanceId> {
        let room = room(overlap, max_parallel);
        let j = self.job_mut(app, job);
        let mut out = Vec::new();
        while j.active.len() < room {
            let Some(next) = j.waiting.first().copied() else {
                break;
            };
            if !ready(&next) {
                break;
            }
            j.waiting.remove(&next);
            j.active.insert(next);
            out.push(next);
        }
        out
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.jobs.clear();
    }
}

fn overlap_name(o: Overlap) -> &'static str {
    match o {
        Overlap::Serial => "serial",
        Overlap::Discard => "discard",
        Overlap::Cover => "cover",
        Overlap::Parallel => "parallel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::Timestamp;

    fn id(n: i64) -> InstanceId {
        InstanceId::for_fire("a", "j", Timestamp(n * 1000))
    }

    #[test]
    fn serial_waits_in_order_and_is_bounded() {
        let mut r = Runs::default();
        assert_eq!(r.decide("a", "j", Overlap::Serial, 1), Admission::Start);
        r.start("a", "j", id(1));
        for n in 2..2 + MAX_WAITING as i64 {
            assert!(matches!(
                r.decide("a", "j", Overlap::Serial, 1),
                Admission::Wait(_)
            ));
            r.wait("a", "j", id(n));
        }
        assert!(matches!(
            r.decide("a", "j", Overlap::Serial, 1),
            Admission::Skip(_)
        ));
        r.end("a", "j", &id(1));
        assert_eq!(r.admit("a", "j", Overlap::Serial, 1, |_| true), vec![id(2)]);
        assert!(r.admit("a", "j", Overlap::Serial, 1, |_| true).is_empty());
        // Another job is not affected.
        assert_eq!(r.decide("a", "k", Overlap::Serial, 1), Admission::Start);
    }

    #[test]
    fn discard_cover_and_parallel() {
        let mut r = Runs::default();
        r.start("a", "j", id(1));
        assert!(matches!(
            r.decide("a", "j", Overlap::Discard, 1),
            Admission::Skip(_)
        ));
        assert_eq!(
            r.decide("a", "j", Overlap::Cover, 1),
            Admission::Cover(vec![id(1)])
        );
        assert_eq!(r.decide("a", "j", Overlap::Parallel, 2), Admission::Start);
        r.start("a", "j", id(2));
        assert!(matches!(
            r.decide("a", "j", Overlap::Parallel, 2),
            Admission::Wait(_)
        ));
        r.wait("a", "j", id(3));
        r.wait("a", "j", id(4));
        r.end("a", "j", &id(1));
        assert_eq!(
            r.admit("a", "j", Overlap::Parallel, 2, |_| true),
            vec![id(3)]
        );
        r.end("a", "j", &id(2));
        r.end("a", "j", &id(3));
        assert_eq!(
            r.admit("a", "j", Overlap::Parallel, 2, |_| true),
            vec![id(4)]
        );
    }

    #[test]
    fn an_instance_still_being_created_keeps_its_turn() {
        let mut r = Runs::default();
        r.start("a", "j", id(1));
        r.wait("a", "j", id(2));
        r.wait("a", "j", id(3));
        r.end("a", "j", &id(1));
        // 2 is not stored yet: nothing starts, 3 does not overtake it.
        assert!(
            r.admit("a", "j", Overlap::Serial, 1, |i| *i != id(2))
                .is_empty()
        );
        assert!(matches!(
            r.decide("a", "j", Overlap::Serial, 1),
            Admission::Wait(_)
        ));
        // Its creation is back: its turn.
        assert_eq!(r.admit("a", "j", Overlap::Serial, 1, |_| true), vec![id(2)]);
    }
}
