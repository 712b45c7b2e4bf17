//! Console users in the users bucket (key = name): the user as the API shows it, plus
//! its password hash, which never leaves this module's records.
//!
//! The first admin comes from the configuration ([`AdminSeed`]): at start it is created,
//! or its password hash replaced when the configured password no longer verifies. So a
//! forgotten admin password is reset by configuring a new one and restarting.

use antares_nats::kv::{self, Expect, Versioned, Write};
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::Timestamp;
use antares_schemas::access::{Role, User};
use async_nats::jetstream::kv::Store;
use serde::{Deserialize, Serialize};

use super::password;
use crate::error::{ApiError, ConsoleError};

/// A user as stored: the [`User`] and its password hash (PHC string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// Login name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Apps they are limited to; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
    /// When the user was created.
    pub created_at: Timestamp,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl StoredUser {
    /// The user as the API shows it.
    pub fn public(&self) -> User {
        User {
            name: self.name.clone(),
            role: self.role,
            apps: self.apps.clone(),
            created_at: self.created_at,
        }
    }

    /// Whether this user is an admin of every app (who may manage users).
    pub fn is_full_admin(&self) -> bool {
        self.role == Role::Admin && self.apps.is_empty()
    }
}

/// The users bucket.
#[derive(Clone, Debug)]
pub struct Users {
    nats: Nats,
    store: Store,
}

impl Users {
    /// Over an opened bucket.
    pub fn new(nats: Nats, store: Store) -> Self {
        Self { nats, store }
    }

    /// One user, with the revision to expect when replacing it.
    pub async fn get(&self, name: &str) -> Result<Option<Versioned<StoredUser>>, NatsError> {
        if antares_schemas::names::check_name("user", name).is_err() {
            return Ok(None);
        }
        kv::get(&self.store, name, "user").await
    }

    /// Every user, by name (unreadable records are skipped with a warning).
    pub async fn list(&self) -> Result<Vec<StoredUser>, NatsError> {
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.store, ">", false).await? {
            match codec::decode::<StoredUser>("user", &hit.value) {
                Ok(u) => out.push(u),
                Err(e) => tracing::warn!(key = %hit.key, error = %e, "unreadable user skipped"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes a user, expecting `revision` (0: it must not exist).
    pub async fn put(&self, user: &StoredUser, revision: u64) -> Result<(), ApiError> {
        let written = kv::put(
            &self.nats,
            &self.store.name,
            user.name.clone(),
            "user",
            user,
            Expect::Revision(revision),
        )
        .await;
        match written {
            Ok(_) => Ok(()),
            Err(NatsError::WrongRevision { .. }) => Err(ApiError::conflict(format!(
                "user `{}` changed at the same time: try again",
                user.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a user read at `revision`.
    pub async fn delete(&self, name: &str, revision: u64) -> Result<(), ApiError> {
        let w = Write::delete(
            &self.store.name,
            name.to_string(),
            Expect::Revision(revision),
        );
        match kv::write(&self.nats, w).await {
            Ok(_) => Ok(()),
            Err(NatsError::WrongRevision { .. }) => Err(ApiError::conflict(format!(
                "user `{name}` changed at the same time: try again"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes sure the configured admin can log in (see [`AdminSeed`]).
    pub async fn seed_admin(&self, seed: &AdminSeed) -> Result<SeedOutcome, ConsoleError> {
        let bad = |m: String| ConsoleError::Config(m);
        antares_schemas::names::check_name("user", &seed.user)
            .map_err(|e| bad(format!("console_user: {e}")))?;
        let Some(pw) = &seed.password else {
            let admins = self.list().await?;
            return if admins.iter().any(StoredUser::is_full_admin) {
                Ok(SeedOutcome::NotConfigured)
            } else {
                Err(ConsoleError::NoAdmin {
                    user: seed.user.clone(),
                })
            };
        };
        password::check(pw).map_err(|e| bad(format!("console_password: {e}")))?;
        let hash_err = |e: ApiError| bad(e.message);
        let existing = self.get(&seed.user).await?;
        let (user, revision, outcome) = match existing {
            None => {
                let user = StoredUser {
                    name: seed.user.clone(),
                    role: Role::Admin,
                    apps: Vec::new(),
                    created_at: now(),
                    password_hash: password::hash(pw).await.map_err(hash_err)?,
                };
                (user, 0, SeedOutcome::Created)
            }
            Some(v) => {
                let verifies = password::verify(pw, &v.value.password_hash).await;
                if verifies && v.value.is_full_admin() {
                    return Ok(SeedOutcome::Unchanged);
                }
                if !seed.reset {
                    return Ok(SeedOutcome::Kept);
                }
                let mut user = v.value;
                user.role = Role::Admin;
                user.apps.clear();
                if !verifies {
                    user.password_hash = password::hash(pw).await.map_err(hash_err)?;
                }
                (user, v.revision, SeedOutcome::Updated)
            }
        };
        match self.put(&user, revision).await {
            Ok(()) => Ok(outcome),
            // Another console started at the same moment and wrote it.
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => Ok(SeedOutcome::Unchanged),
            Err(e) => Err(bad(e.message)),
        }
    }
}

/// The configured first admin.
#[derive(Clone, Debug)]
pub struct AdminSeed {
    /// User name (`console_user`, default `admin`).
    pub user: String,
    /// Password (`console_password`); none configured when `None`.
    pub password: Option<String>,
    /// Whether an existing user of that name is reset to this password and to admin
    /// (true in production; `antares dev` against a NATS it did not start keeps what
    /// is there).
    pub reset: bool,
}

/// What `Users::seed_admin` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The admin was created.
    Created,
    /// Its password (or role) was reset to the configured one.
    Updated,
    /// It already was an admin with that password.
    Unchanged,
    /// It exists with another password or role, and was left alone (`reset` off).
    Kept,
    /// No password is configured; an admin exists already.
    NotConfigured,
}
