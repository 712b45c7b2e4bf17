//! Login sessions in the sessions bucket: key = a random 256-bit id (hex), value = who
//! and until when, written with a per-message TTL of the session lifetime so NATS drops
//! it when it ends. Any console process can read any session: consoles keep no state of
//! their own and can run side by side behind one address.

use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, now};
use antares_schemas::Timestamp;
use async_nats::jetstream::kv::Store;
use serde::{Deserialize, Serialize};

use super::secrets::{is_hex_id, random_hex};

/// The session cookie's name.
pub const COOKIE: &str = "antares_session";

/// One session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user it belongs to.
    pub user: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it ends (the TTL ends it too; this guards against a late expiry).
    pub expires_at: Timestamp,
}

/// The sessions bucket.
#[derive(Clone, Debug)]
pub struct Sessions {
    nats: Nats,
    store: Store,
    ttl: Duration,
}

impl Sessions {
    /// Over an opened bucket, with the session lifetime.
    pub fn new(nats: Nats, store: Store, ttl: Duration) -> Self {
        Self { nats, store, ttl }
    }

    /// The session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session for `user`; returns its id.
    pub async fn create(&self, user: &str) -> Result<String, NatsError> {
        let id = random_hex::<32>();
        let at = now();
        let session = Session {
            user: user.to_string(),
            created_at: at,
            expires_at: at.plus(self.ttl),
        };
        let value = antares_nats::codec::encode("session", &session)?;
        let w = Write::put(&self.store.name, id.clone(), value, Expect::Any).with_ttl(self.ttl);
        kv::write(&self.nats, w).await?;
        Ok(id)
    }

    /// The live session with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, NatsError> {
        if !is_hex_id(id, 64) {
            return Ok(None);
        }
        let found = kv::get::<Session>(&self.store, id, "session").await?;
        Ok(found.map(|v| v.value).filter(|s| s.expires_at > now()))
    }

    /// Ends a session (a no-op when it is gone already).
    pub async fn delete(&self, id: &str) -> Result<(), NatsError> {
        if !is_hex_id(id, 64) {
            return Ok(());
        }
        kv::write(
            &self.nats,
            Write::purge(&self.store.name, id.to_string()).with_ttl(Duration::from_secs(1)),
        )
        .await
        .map(|_| ())
    }
}
