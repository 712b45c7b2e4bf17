//! The lease a scheduler holds to lead a partition of the jobs.
//!
//! ```text
//!  scheduler A                 KV leases/partition.0                 scheduler B
//!  write(expect 0, TTL 3s) ──▶ rev 7 {holder: A}
//!  every 1 s: write(expect 7) ─▶ rev 8, 9, ...        ◀── read: held by A, wait
//!  (A dies)                    TTL passes: expiry marker, rev 12
//!                                                     ◀── write(expect 12, TTL 3s): B leads
//!  A comes back: write(expect 11) ✗ wrong revision → A knows it lost
//! ```
//!
//! Timings: TTL 3 s renewed every 1 s by default (use 10 s or more on an R3 cluster,
//! where a KV leader election takes several seconds). A holder considers itself leader
//! only until the time it *sent* its last successful renewal plus the TTL, so its own
//! view always ends before the server lets the key expire. A standby takes over within
//! about one TTL of the holder's death. A holder that shuts down cleanly deletes the key
//! (revision-checked), so a standby takes over at its next attempt.
//!
//! Failures: a renewal that times out keeps the old deadline (the lease may still be
//! ours); one refused for a wrong revision means someone else holds it: stop leading at
//! once. Every write a leader makes elsewhere is revision-checked too, so even a leader
//! that has not noticed yet cannot overwrite what its successor wrote.

use std::time::{Duration, Instant};

use antares_schemas::Timestamp;
use antares_schemas::cluster::LeaseRecord;
use async_nats::jetstream::kv::{Operation, Store};

use crate::codec;
use crate::connect::Nats;
use crate::error::{NatsError, Result};
use crate::kv::{self, Expect, Write};

/// One lease key held (or wanted) by one holder.
#[derive(Debug)]
pub struct Lease {
    nats: Nats,
    store: Store,
    key: String,
    holder: String,
    ttl: Duration,
    revision: Option<u64>,
    valid_until: Option<Instant>,
    acquired_at: Timestamp,
}

/// Who holds a lease, as read from the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The record.
    pub record: LeaseRecord,
    /// Its revision.
    pub revision: u64,
}

impl Lease {
    /// A lease not held yet.
    pub fn new(nats: Nats, store: Store, key: String, holder: String, ttl: Duration) -> Self {
        Self {
            nats,
            store,
            key,
            holder,
            ttl,
            revision: None,
            valid_until: None,
            acquired_at: Timestamp::default(),
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether we may act as its holder right now.
    pub fn is_held(&self) -> bool {
        self.valid_until.is_some_and(|t| Instant::now() < t)
    }

    /// When our view of holding it ends.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    fn lose(&mut self) {
        self.revision = None;
        self.valid_until = None;
    }

    /// Takes the lease if it is free, or renews it if we hold it. Returns whether we
    /// hold it afterwards.
    pub async fn tick(&mut self, now: Timestamp) -> Result<bool> {
        let expect = match self.revision {
            Some(rev) if self.is_held() => rev,
            _ => {
                self.lose();
                match self.free_revision().await? {
                    Some(rev) => {
                        self.acquired_at = now;
                        rev
                    }
                    None => return Ok(false),
                }
            }
        };
        let record = LeaseRecord {
            holder: self.holder.clone(),
            acquired_at: self.acquired_at,
            renewed_at: now,
        };
        let bucket = self.store.name.clone();
        let sent = Instant::now();
        let w = Write::put(
            &bucket,
            self.key.clone(),
            codec::encode("lease", &record)?,
            Expect::Revision(expect),
        )
        .with_ttl(self.ttl);
        match kv::write(&self.nats, w).await {
            Ok(rev) => {
                self.revision = Some(rev);
                self.valid_until = Some(sent + self.ttl);
                Ok(true)
            }
            Err(NatsError::WrongRevision { .. }) => {
                self.lose();
                Ok(false)
            }
            Err(e) => {
                if !self.is_held() {
                    self.lose();
                }
                Err(e)
            }
        }
    }

    /// The revision to expect when taking the lease, or `None` if someone holds it.
    async fn free_revision(&self) -> Result<Option<u64>> {
        let entry = self
            .store
            .entry(self.key.as_str())
            .await
            .map_err(|e| NatsError::op(format!("read lease {}", self.key), e))?;
        Ok(match entry {
            None => Some(0),
            Some(e) if e.operation != Operation::Put || e.value.is_empty() => Some(e.revision),
            Some(e) => {
                let rec: Option<LeaseRecord> = codec::decode("lease", &e.value).ok();
                match rec {
                    Some(r) if r.holder == self.holder => Some(e.revision),
                    Some(_) => None,
                    // An unreadable value is nobody's lease.
                    None => Some(e.revision),
                }
            }
        })
    }

    /// Gives the lease up (a clean shutdown), so a standby takes over at once.
    pub async fn release(&mut self) -> Result<()> {
        if let (Some(rev), true) = (self.revision, self.is_held()) {
            let bucket = self.store.name.clone();
            let w = Write::delete(&bucket, self.key.clone(), Expect::Revision(rev));
            let res = kv::write(&self.nats, w).await;
            self.lose();
            match res {
                Ok(_) | Err(NatsError::WrongRevision { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            self.lose();
            Ok(())
        }
    }
}

/// Who holds a lease key now, if anyone.
pub async fn holder(store: &Store, key: &str) -> Result<Option<LeaseHolder>> {
    Ok(kv::get::<LeaseRecord>(store, key, "lease")
        .await?
        .map(|v| LeaseHolder {
            record: v.value,
            revision: v.revision,
        }))
}
