//! Turning a fire or a trigger into a running instance.
//!
//! Claim the instance (create its summary, failing if the id exists), write its shard
//! records, publish one work-queue message per shard item (pipelined; each with a
//! `Nats-Msg-Id`, so a scheduler that republishes after a takeover cannot queue an item
//! twice), then mark it `running`. A crash anywhere in between leaves a `pending`
//! instance that the next leader completes ([`Leading::recover`]).

use antares_nats::{NatsError, codec};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, ShardStatus};
use antares_schemas::machine::{self, Input};
use antares_schemas::messages::ShardTask;
use async_nats::jetstream::message::PublishMessage;

use crate::runner::Leading;
use crate::store::{CreateError, Dirty, Stored};

impl Leading {
    /// Creates and queues an instance. `Ok(None)` when it already existed.
    pub(crate) async fn launch(
        &mut self,
        new: NewInstance,
    ) -> Result<Option<InstanceId>, NatsError> {
        let id = new.id;
        let stored = match self.store.create(Instance::create(new)).await {
            Ok(s) => s,
            Err(CreateError::Exists) => return Ok(None),
            Err(CreateError::Nats(e)) => return Err(e),
        };
        self.queue(stored).await?;
        Ok(Some(id))
    }

    /// Publishes the pending shard items of a `pending` instance and marks it running.
    pub(crate) async fn queue(&mut self, mut stored: Stored) -> Result<(), NatsError> {
        self.publish_items(&stored).await?;
        let now = antares_nats::now();
        let step = machine::step(&mut stored.instance, &Input::Queued, now);
        let mut dirty = Dirty {
            summary: step.summary_changed,
            ..Dirty::default()
        };
        dirty.items(&step.changed_items);
        self.store.save(&mut stored, dirty).await?;
        let id = stored.instance.summary.id;
        self.live.insert(id, stored);
        self.run_effects(id, step.effects).await;
        Ok(())
    }

    /// Publishes in windows: each window is sent pipelined, then its acks awaited, so
    /// the client's limit of acks in flight is never the thing we wait on.
    async fn publish_items(&self, stored: &Stored) -> Result<(), NatsError> {
        const WINDOW: usize = 1024;
        let s = &stored.instance.summary;
        let topo = &self.nats.topo;
        let pending: Vec<_> = stored
            .instance
            .shards
            .iter()
            .filter(|sh| sh.status == ShardStatus::Pending)
            .collect();
        for window in pending.chunks(WINDOW) {
            let mut acks = Vec::with_capacity(window.len());
            for shard in window {
                let task = ShardTask {
                    instance: s.id,
                    app: s.app.clone(),
                    job: s.job.clone(),
                    item: shard.item,
                    total: s.shard_total,
                    param: shard.param.clone(),
                    params: s.params.clone(),
                    exec: s.exec.clone(),
                    timeout_ms: s.timeout_ms,
                    scheduled_at: s.scheduled_at,
                    run: shard.run,
                    attempt_base: shard.attempts,
                };
                let publish = PublishMessage::build()
                    .payload(codec::encode("shard task", &task)?)
                    .message_id(topo.shard_msg_id(&s.id, shard.item, 1));
                let subject = topo.shard_subject(&s.app, &s.job, &s.id, shard.item);
                let ack = self
                    .nats
                    .js
                    .send_publish(subject, publish)
                    .await
                    .map_err(|e| NatsError::op("queue shard item", e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await
                    .map_err(|e| NatsError::op("queue shard item", e))?;
            }
        }
        Ok(())
    }

    /// Completes what a previous leader left: pending instances get queued, ended ones
    /// moved to history, running ones cached.
    pub(crate) async fn recover(&mut self) -> Result<(), NatsError> {
        for mut stored in self.store.running().await? {
            let status = stored.instance.summary.status;
            let id = stored.instance.summary.id;
            if status == InstanceStatus::Pending {
                tracing::info!(%id, "completing an instance a previous leader left pending");
                self.store.write_missing_chunks(&mut stored).await?;
                self.queue(stored).await?;
            } else if status.is_final() {
                self.store.archive(&stored).await?;
            } else {
                self.live.insert(id, stored);
            }
        }
        Ok(())
    }
}
