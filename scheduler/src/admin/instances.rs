//! Instances: list, get and cancel.

use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceSummary};
use antares_schemas::messages::Control;

use super::Admin;
use super::audit::Change;
use crate::error::SchedulerError;
use crate::store::ListQuery;

/// The error for an instance that is not there.
pub(crate) fn no_such_instance(id: &InstanceId) -> SchedulerError {
    SchedulerError::NotFound(format!(
        "instance {id} does not exist (or has expired from the history)"
    ))
}

impl Admin {
    /// Instance summaries, running and ended together, newest first.
    pub async fn list_instances(
        &self,
        q: &ListQuery,
    ) -> Result<Vec<InstanceSummary>, SchedulerError> {
        if let Some(app) = &q.app {
            antares_schemas::names::check_name("app", app)?;
        }
        if let Some(job) = &q.job {
            antares_schemas::names::check_name("job", job)?;
        }
        let max = antares_schemas::limits::MAX_LIST_LIMIT;
        if q.limit == 0 || q.limit > max {
            return Err(SchedulerError::Invalid(format!(
                "limit {}: a page holds 1 to {max} instances; page on with `before` (the last id of the previous page)",
                q.limit
            )));
        }
        Ok(self.store.list(q).await?)
    }

    /// One instance, whole (with its shards).
    pub async fn get_instance(&self, id: &InstanceId) -> Result<Instance, SchedulerError> {
        self.store
            .find(id)
            .await?
            .map(|(_, stored)| stored.instance)
            .ok_or_else(|| no_such_instance(id))
    }

    /// An instance's summary (no shard records: one read however many shards it has),
    /// running or ended; `None` if `app/job` has no such instance.
    pub async fn instance_summary(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<Option<InstanceSummary>, SchedulerError> {
        Ok(self.store.find_summary(app, job, id).await?)
    }

    /// Asks the scheduler to stop a running instance: its pending shards never start,
    /// running ones are told to stop. Returns the instance as it was when asked.
    pub async fn cancel_instance(
        &self,
        id: &InstanceId,
    ) -> Result<InstanceSummary, SchedulerError> {
        let summary = self.get_instance(id).await?.summary;
        if summary.status.is_final() {
            return Err(SchedulerError::Conflict(format!(
                "instance {id} has already ended ({})",
                summary.status.as_str()
            )));
        }
        let cancel = Control::Cancel {
            instance: *id,
            at: now(),
        };
        let subject = self
            .nats
            .topo
            .control_subject(&summary.app, &summary.job, id);
        let op = || format!("publish cancel to {subject}");
        self.nats
            .js
            .publish(subject.clone(), codec::encode("control", &cancel)?)
            .await
            .map_err(|e| NatsError::op(op(), e))?
            .await
            .map_err(|e| NatsError::op(op(), e))?;
        let before = serde_json::json!({
            "job": format!("{}/{}", summary.app, summary.job),
            "status": summary.status,
        });
        let change = Change::of_app("instance.cancel", id.to_string(), &summary.app)
            .before(before)
            .after(serde_json::json!({"cancel": "requested"}));
        self.record_all(vec![change]).await?;
        Ok(summary)
    }
}
