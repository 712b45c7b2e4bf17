//! Each job's last ended instance (key `<app>.<job>`): what the jobs page shows as its
//! last status, without reading history.
//!
//! Written when instances move to history, in the same batch: only the newest ended
//! instance (by id, which sorts by `scheduled_at`) of each job in the batch, and never
//! over a newer one already there (a long run that ends after a newer one does not take
//! its place). Writing one again after a crash changes nothing.

use std::collections::HashMap;

use antares_nats::NatsError;
use antares_schemas::instance::InstanceSummary;
use antares_schemas::stats::JobState;
use futures::StreamExt;

use super::InstanceStore;
use super::update::update;

/// Keys updated at once.
const CONCURRENT: usize = 32;

/// The job state an ended instance leaves.
pub fn state_of(s: &InstanceSummary) -> JobState {
    JobState {
        app: s.app.clone(),
        job: s.job.clone(),
        last_instance: s.id,
        last_status: s.status,
        last_scheduled_at: s.scheduled_at,
        last_finished_at: s.finished_at,
    }
}

/// The newest state per job among `states`, with the indexes of all the states of that
/// job (each of them is recorded once the newest is).
pub fn newest_per_job(states: Vec<(usize, JobState)>) -> Vec<(JobState, Vec<usize>)> {
    let mut by_job: HashMap<(String, String), (JobState, Vec<usize>)> = HashMap::new();
    for (i, state) in states {
        match by_job.entry((state.app.clone(), state.job.clone())) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (best, owners) = o.get_mut();
                owners.push(i);
                if state.last_instance > best.last_instance {
                    *best = state;
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((state, vec![i]));
            }
        }
    }
    by_job.into_values().collect()
}

impl InstanceStore {
    /// Writes job states unless a newer one is there, all at once; each one's outcome,
    /// in order.
    pub(crate) async fn record_job_states(
        &self,
        states: Vec<JobState>,
    ) -> Vec<Result<(), NatsError>> {
        futures::stream::iter(states)
            .map(|state| async move {
                let key = self.nats.topo.jobstate_key(&state.app, &state.job);
                update(
                    &self.nats,
                    &self.jobstate,
                    &key,
                    "job state",
                    |cur: Option<JobState>| match cur {
                        Some(c) if c.last_instance >= state.last_instance => None,
                        _ => Some(state.clone()),
                    },
                )
                .await
            })
            .buffered(CONCURRENT)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::instance::InstanceStatus;
    use antares_schemas::{InstanceId, Timestamp};

    #[test]
    fn the_newest_instance_of_each_job_wins() {
        let mut s = crate::store::tests_support::summary(InstanceStatus::Success);
        let mut states = Vec::new();
        for (i, (job, at)) in [("a", 3), ("b", 1), ("a", 9), ("a", 5)].iter().enumerate() {
            s.job = (*job).to_string();
            s.id = InstanceId::for_fire("shop", job, Timestamp(*at * 1000));
            states.push((i, state_of(&s)));
        }
        let mut newest = newest_per_job(states);
        newest.sort_by(|x, y| x.0.job.cmp(&y.0.job));
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].0.last_instance.time(), Timestamp(9_000));
        let mut owners = newest[0].1.clone();
        owners.sort();
        assert_eq!(owners, vec![0, 2, 3]);
        assert_eq!(newest[1].1, vec![1]);
    }
}
