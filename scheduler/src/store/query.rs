//! What operators ask of instances: listings of running and ended ones together.
//!
//! Running instances come from the instances bucket (bounded by what runs now). Ended
//! ones come from the history index scope matching the filters ([`super::index`]): a
//! few pages read back from where `before` falls, then the summaries of the newest
//! entries read from history, a window at a time, skipping entries whose history record
//! is gone (expired or deleted). A page of 50 costs the same whatever the size of
//! history. A job named without its app is looked for in every app that has ended an
//! instance of a job of that name (their job states say which).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use antares_nats::{NatsError, codec, kv};
use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use antares_schemas::limits::MAX_LIST_LIMIT;
use antares_schemas::topology::IndexScope;
use futures::future::join_all;

use super::InstanceStore;
use super::index::bucket::BucketPages;
use super::index::walk::Walk;
use super::index::{IndexEntry, Pages, read_head};

/// Summaries read at once.
const WINDOW: usize = 64;
/// Times a listing reads further back for entries whose history record was gone.
const MAX_REFILLS: usize = 8;

/// What a listing read, for those who watch its cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListCost {
    /// Index keys read (heads and pages).
    pub index_reads: usize,
    /// Summaries read from history.
    pub history_reads: usize,
}

impl ListCost {
    fn add(&mut self, other: ListCost) {
        self.index_reads += other.index_reads;
        self.history_reads += other.history_reads;
    }
}

impl InstanceStore {
    /// Instance summaries, running and ended together, newest `scheduled_at` first (at
    /// most [`MAX_LIST_LIMIT`]).
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<InstanceSummary>, NatsError> {
        Ok(self.list_counted(q).await?.0)
    }

    /// [`Self::list`], with what it read.
    pub async fn list_counted(
        &self,
        q: &ListQuery,
    ) -> Result<(Vec<InstanceSummary>, ListCost), NatsError> {
        let limit = q.limit.min(MAX_LIST_LIMIT);
        if limit == 0 {
            return Ok((Vec::new(), ListCost::default()));
        }
        // Live first, then the index: an instance leaves the instances bucket only once it
        // is indexed, so one gone from the first read is found by the second.
        let live = self.list_live(q, limit).await?;
        let (ended, cost) = self.list_ended(q, limit).await?;
        Ok((merge(vec![live, ended], limit), cost))
    }

    /// Running instances (and ended ones not moved yet) matching the query, newest first.
    async fn list_live(
        &self,
        q: &ListQuery,
        limit: usize,
    ) -> Result<Vec<InstanceSummary>, NatsError> {
        let filter = self
            .nats
            .topo
            .instance_summaries_filter(q.app.as_deref(), q.job.as_deref());
        let mut keys: Vec<(InstanceId, String)> = kv::scan(&self.nats, &self.live, &filter, true)
            .await?
            .into_iter()
            .filter_map(|hit| {
                let id = hit.key.rsplit('.').next()?.parse::<InstanceId>().ok()?;
                q.before.is_none_or(|b| id < b).then_some((id, hit.key))
            })
            .collect();
        keys.sort_by_key(|k| Reverse(k.0));
        let mut out = Vec::new();
        for window in keys.chunks(WINDOW) {
            let reads = window.iter().map(|(_, key)| async move {
                kv::get::<InstanceSummary>(&self.live, key, "instance").await
            });
            for res in join_all(reads).await {
                let Some(v) = res? else { continue };
                if q.status.is_some_and(|st| st != v.value.status) {
                    continue;
                }
                out.push(v.value);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Ended instances matching the query, newest first, from the index.
    async fn list_ended(
        &self,
        q: &ListQuery,
        limit: usize,
    ) -> Result<(Vec<InstanceSummary>, ListCost), NatsError> {
        if q.status.is_some_and(|s| !s.is_final()) {
            return Ok((Vec::new(), ListCost::default()));
        }
        let scope = |app: Option<String>| IndexScope {
            app,
            job: q.job.clone(),
            status: q.status,
        };
        let scopes = match (&q.app, &q.job) {
            (None, Some(job)) => {
                let filter = self.nats.topo.jobstate_key("*", job);
                let mut apps: Vec<String> = kv::scan(&self.nats, &self.jobstate, &filter, true)
                    .await?
                    .into_iter()
                    .filter_map(|hit| hit.key.split('.').next().map(str::to_string))
                    .collect();
                apps.sort();
                apps.dedup();
                apps.into_iter().map(|a| scope(Some(a))).collect()
            }
            (app, _) => vec![scope(app.clone())],
        };
        let mut cost = ListCost::default();
        let mut lists = Vec::new();
        for res in join_all(
            scopes
                .into_iter()
                .map(|s| self.list_scope(s, q.before, limit)),
        )
        .await
        {
            let (list, c) = res?;
            cost.add(c);
            lists.push(list);
        }
        Ok((merge(lists, limit), cost))
    }

    /// The newest `limit` ended instances of one scope older than `before`.
    async fn list_scope(
        &self,
        scope: IndexScope,
        before: Option<InstanceId>,
        limit: usize,
    ) -> Result<(Vec<InstanceSummary>, ListCost), NatsError> {
        let store = BucketPages::new(&self.nats, &self.index, scope);
        let (head, _, _) = read_head(&store).await?;
        let mut pages = Pages::new(&store, head);
        let mut walk = Walk::start(&mut pages, before).await?;
        let mut out = Vec::new();
        let mut used = 0;
        let mut want = limit;
        let mut history_reads = 0;
        for _ in 0..MAX_REFILLS {
            walk.fill(&mut pages, want).await?;
            let next: Vec<IndexEntry> = walk
                .newest()
                .skip(used)
                .take(want.saturating_sub(used))
                .cloned()
                .collect();
            used += next.len();
            history_reads += next.len();
            for window in next.chunks(WINDOW) {
                for res in join_all(window.iter().map(|e| self.ended_summary(e))).await {
                    if let Some(s) = res? {
                        out.push(s);
                    }
                }
            }
            if out.len() >= limit || (walk.is_done() && used >= walk.len()) {
                break;
            }
            // Some were gone from history: read further back for as many more.
            want = used + (limit - out.len());
        }
        out.truncate(limit);
        let cost = ListCost {
            index_reads: pages.reads + 1,
            history_reads,
        };
        Ok((out, cost))
    }

    /// The history summary an index entry names; `None` when it is gone (or unreadable,
    /// which is logged).
    async fn ended_summary(&self, e: &IndexEntry) -> Result<Option<InstanceSummary>, NatsError> {
        let key = self.nats.topo.instance_key(&e.app, &e.job, &e.id);
        match kv::get_raw(&self.history, &key).await? {
            None => Ok(None),
            Some(raw) => match codec::decode::<InstanceSummary>("instance", &raw) {
                Ok(s) => Ok(Some(s)),
                Err(err) => {
                    tracing::error!(%key, error = %err, "unreadable instance in history skipped");
                    Ok(None)
                }
            },
        }
    }
}

/// Merges listings (each newest first) into one, newest first, each instance once: a
/// later list's copy of an instance replaces an earlier one's (history after live: an
/// instance caught mid-move is in both).
pub(crate) fn merge(lists: Vec<Vec<InstanceSummary>>, limit: usize) -> Vec<InstanceSummary> {
    let mut all: BTreeMap<Reverse<InstanceId>, InstanceSummary> = BTreeMap::new();
    for list in lists {
        for s in list {
            all.insert(Reverse(s.id), s);
        }
    }
    all.into_values().take(limit).collect()
}

/// What `instance list` asks for.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only this app.
    pub app: Option<String>,
    /// Only this job (of any app without `app`).
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
    /// At most this many (at most [`MAX_LIST_LIMIT`]).
    pub limit: usize,
    /// Only instances older than this one (paging).
    pub before: Option<InstanceId>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            app: None,
            job: None,
            status: None,
            limit: 50,
            before: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::summary;
    use antares_schemas::Timestamp;

    fn at(i: i64, status: InstanceStatus) -> InstanceSummary {
        let mut s = summary(status);
        s.id = InstanceId::for_fire("shop", "sweep", Timestamp(i * 1000));
        s
    }

    #[test]
    fn merging_keeps_newest_first_once_and_prefers_the_later_list() {
        let live = vec![
            at(9, InstanceStatus::Running),
            at(5, InstanceStatus::Success),
        ];
        let ended = vec![
            at(7, InstanceStatus::Failed),
            at(5, InstanceStatus::Success),
            at(1, InstanceStatus::Success),
        ];
        let mut moved = at(5, InstanceStatus::Success);
        moved.reason = Some("from history".into());
        let ended2 = vec![moved];
        let merged = merge(vec![live, ended, ended2], 10);
        let ids: Vec<i64> = merged.iter().map(|s| s.id.time().0 / 1000).collect();
        assert_eq!(ids, vec![9, 7, 5, 1]);
        assert_eq!(merged[2].reason.as_deref(), Some("from history"));
        assert_eq!(merge(vec![merged], 2).len(), 2);
    }
}
