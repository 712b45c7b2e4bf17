//! What operators ask of instances: listings of running and ended ones together.

use std::collections::HashMap;

use antares_nats::{NatsError, kv};
use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use futures::future::join_all;

use super::{InstanceStore, Place};

impl InstanceStore {
    /// Instance summaries, running and ended together, newest `scheduled_at` first.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<InstanceSummary>, NatsError> {
        let filter = self
            .nats
            .topo
            .instance_summaries_filter(q.app.as_deref(), q.job.as_deref());
        // Live first, then history: an instance caught mid-move is in both, and the
        // history entry replaces the live one.
        let mut found: HashMap<InstanceId, (Place, String)> = HashMap::new();
        for place in [Place::Live, Place::History] {
            for hit in kv::scan(&self.nats, self.bucket(place), &filter, true).await? {
                let Some(id) = hit
                    .key
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<InstanceId>().ok())
                else {
                    continue;
                };
                if q.before.is_none_or(|b| id < b) {
                    found.insert(id, (place, hit.key));
                }
            }
        }
        let mut keys: Vec<(InstanceId, Place, String)> = found
            .into_iter()
            .map(|(id, (place, key))| (id, place, key))
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.0));
        let mut out = Vec::new();
        for window in keys.chunks(64) {
            let reads = window.iter().map(|(_, place, key)| {
                let store = self.bucket(*place);
                async move { kv::get::<InstanceSummary>(store, key, "instance").await }
            });
            for res in join_all(reads).await {
                let Some(v) = res? else { continue };
                if q.status.is_some_and(|st| st != v.value.status) {
                    continue;
                }
                out.push(v.value);
                if out.len() >= q.limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// What `instance list` asks for.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only this app.
    pub app: Option<String>,
    /// Only this job (needs `app`).
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
    /// At most this many.
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
