//! An instance's log lines, read from the log stream.
//!
//! Lines are read with an ordered consumer filtered on the instance (or one shard of
//! it), from the first line kept. Without `follow` the stream ends once it has caught up
//! with the log stream; with `follow` it goes on until the instance has ended and no
//! more lines come.

use std::pin::Pin;
use std::time::Duration;

use antares_nats::{NatsError, codec};
use antares_schemas::InstanceId;
use antares_schemas::messages::LogLine;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use futures::{Stream, StreamExt};

use super::Admin;
use super::instances::no_such_instance;
use crate::error::SchedulerError;
use crate::store::InstanceStore;

/// A stream of log lines.
pub type LogLines = Pin<Box<dyn Stream<Item = Result<LogLine, SchedulerError>> + Send>>;

/// How often a follower checks whether the instance has ended.
const FOLLOW_CHECK: Duration = Duration::from_millis(500);

/// How long after its creation an instance that is not in the store yet is waited for
/// (a trigger that was just published).
const YOUNG: Duration = Duration::from_secs(10);

struct Reader {
    messages: Ordered,
    store: InstanceStore,
    app: String,
    job: String,
    id: InstanceId,
    follow: bool,
    caught_up: bool,
    ended: bool,
    quiet_ticks: u32,
    check: tokio::time::Interval,
    done: bool,
}

impl Admin {
    /// The log lines of an instance (or of one shard of it), oldest first. With
    /// `follow`, keeps streaming new lines until the instance has ended.
    pub async fn logs(
        &self,
        id: &InstanceId,
        shard: Option<u32>,
        follow: bool,
    ) -> Result<LogLines, SchedulerError> {
        let instance = match self.store.find(id).await? {
            Some((_, stored)) => Some(stored.instance.summary),
            None => None,
        };
        let instance = match instance {
            Some(s) => s,
            None => self.wait_young(id).await?,
        };
        if let Some(n) = shard
            && n >= instance.shard_total
        {
            return Err(SchedulerError::Invalid(format!(
                "instance {id} has {} shard(s): use --shard 0 to {}",
                instance.shard_total,
                instance.shard_total.saturating_sub(1)
            )));
        }
        let topo = &self.nats.topo;
        let stream = self.nats.stream(&topo.logs_stream()).await?;
        let filter = topo.instance_logs_filter(&instance.app, &instance.job, id, shard);
        let op = || format!("read logs of {id}");
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.nats.client.new_inbox(),
                filter_subject: filter,
                deliver_policy: DeliverPolicy::All,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::op(op(), e))?;
        let caught_up = consumer.cached_info().num_pending == 0;
        let follow = follow && !instance.status.is_final();
        if caught_up && !follow {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let messages = consumer
            .messages()
            .await
            .map_err(|e| NatsError::op(op(), e))?;
        let reader = Reader {
            messages,
            store: self.store.clone(),
            app: instance.app.clone(),
            job: instance.job.clone(),
            id: *id,
            follow,
            caught_up,
            ended: false,
            quiet_ticks: 0,
            check: tokio::time::interval(FOLLOW_CHECK),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            reader,
            |mut r| async move { r.next_line().await.map(|line| (line, r)) },
        )))
    }

    /// Waits a little for an instance whose id says it was made moments ago.
    async fn wait_young(
        &self,
        id: &InstanceId,
    ) -> Result<antares_schemas::instance::InstanceSummary, SchedulerError> {
        let age = antares_nats::now().since(id.time());
        let young = i64::try_from(YOUNG.as_millis()).unwrap_or(i64::MAX);
        if !(0..young).contains(&age) {
            return Err(no_such_instance(id));
        }
        let found = antares_nats::wait::wait_for("instance", Duration::from_secs(5), || async {
            self.store
                .find(id)
                .await
                .ok()
                .flatten()
                .map(|(_, stored)| stored.instance.summary)
        })
        .await;
        found.map_err(|_| no_such_instance(id))
    }
}

impl Reader {
    async fn next_line(&mut self) -> Option<Result<LogLine, SchedulerError>> {
        loop {
            if self.done || (!self.follow && self.caught_up) {
                return None;
            }
            tokio::select! {
                msg = self.messages.next() => {
                    let msg = match msg? {
                        Ok(m) => m,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(NatsError::op(format!("read logs of {}", self.id), e).into()));
                        }
                    };
                    self.caught_up = msg.info().map(|i| i.pending == 0).unwrap_or(true);
                    self.quiet_ticks = 0;
                    match codec::decode::<LogLine>("log line", &msg.payload) {
                        Ok(line) => return Some(Ok(line)),
                        Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "unreadable log line skipped"),
                    }
                }
                _ = self.check.tick(), if self.follow => {
                    if self.ended {
                        // One quiet period after the end lets the last lines arrive.
                        if self.caught_up {
                            self.quiet_ticks += 1;
                            if self.quiet_ticks >= 2 {
                                return None;
                            }
                        }
                    } else {
                        match self.store.find_in(&self.app, &self.job, &self.id).await {
                            Ok(Some((_, s))) if s.instance.summary.status.is_final() => self.ended = true,
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "instance status not read; will retry"),
                        }
                    }
                }
            }
        }
    }
}
