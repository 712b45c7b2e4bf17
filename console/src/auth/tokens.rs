//! API tokens in the tokens bucket: key = the token's public id, value = the token and
//! the SHA-256 of its secret. The secret (`<id>.<64 hex digits>`, 256 random bits) is
//! shown once, when it is made; a fast hash is enough for a secret of that entropy,
//! where a slow one (argon2) is needed for passwords people choose.

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, codec, now};
use antares_schemas::access::{CreatedToken, NewToken, Principal, Token};
use async_nats::jetstream::kv::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secrets::{hex, is_hex_id, random_hex};
use crate::error::ApiError;

/// Hex digits of a token id.
const ID_LEN: usize = 24;
/// Longest token name.
const MAX_NAME_CHARS: usize = 128;
/// Longest lifetime a token may be given.
pub const MAX_DAYS: u32 = 3650;

/// A token as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token as the API shows it.
    pub token: Token,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
}

/// The tokens bucket.
#[derive(Clone, Debug)]
pub struct Tokens {
    nats: Nats,
    store: Store,
}

impl Tokens {
    /// Over an opened bucket.
    pub fn new(nats: Nats, store: Store) -> Self {
        Self { nats, store }
    }

    /// Makes a token for `creator`: its role at most the creator's, its apps within the
    /// creator's (none given by a creator limited to some apps: the creator's).
    pub async fn create(
        &self,
        req: NewToken,
        creator: &Principal,
    ) -> Result<CreatedToken, ApiError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::bad_request(format!(
                "`name`: give the token a name of 1 to {MAX_NAME_CHARS} characters saying what it is for"
            )));
        }
        if !creator.role.allows(req.role) {
            return Err(ApiError::forbidden(format!(
                "`role`: a token's role is at most its creator's ({}), not {}",
                creator.role.as_str(),
                req.role.as_str()
            )));
        }
        let apps = if req.apps.is_empty() {
            creator.apps.clone()
        } else {
            if let Some(app) = req.apps.iter().find(|a| !creator.sees_app(a)) {
                return Err(ApiError::forbidden(format!(
                    "`apps`: a token's apps are within its creator's; `{app}` is not"
                )));
            }
            req.apps.clone()
        };
        let expires_at = match req.expires_in_days {
            None => None,
            Some(0) => {
                return Err(ApiError::bad_request(
                    "`expires_in_days` is 0: give 1 or more days, or leave it out for a token that does not expire",
                ));
            }
            Some(d) if d > MAX_DAYS => {
                return Err(ApiError::bad_request(format!(
                    "`expires_in_days` is {d}: at most {MAX_DAYS}"
                )));
            }
            Some(d) => Some(now().plus(std::time::Duration::from_secs(u64::from(d) * 86_400))),
        };
        let id = random_hex::<{ ID_LEN / 2 }>();
        let secret = format!("{id}.{}", random_hex::<32>());
        let token = Token {
            id: id.clone(),
            name: name.to_string(),
            role: req.role,
            apps,
            created_by: creator.name.clone(),
            created_at: now(),
            expires_at,
        };
        let stored = StoredToken {
            token: token.clone(),
            secret_sha256: digest(&secret),
        };
        kv::put(
            &self.nats,
            &self.store.name,
            id,
            "token",
            &stored,
            Expect::Revision(0),
        )
        .await?;
        Ok(CreatedToken { token, secret })
    }

    /// The principal a bearer secret stands for, if it is a live token.
    pub async fn resolve(&self, secret: &str) -> Result<Option<Token>, NatsError> {
        let Some((id, _)) = secret.split_once('.') else {
            return Ok(None);
        };
        let Some(stored) = self.get(id).await? else {
            return Ok(None);
        };
        let matches = stored.value.secret_sha256.as_bytes() == digest(secret).as_bytes();
        let live = stored.value.token.expires_at.is_none_or(|t| t > now());
        Ok((matches && live).then_some(stored.value.token))
    }

    /// One token.
    pub async fn get(&self, id: &str) -> Result<Option<kv::Versioned<StoredToken>>, NatsError> {
        if !is_hex_id(id, ID_LEN) {
            return Ok(None);
        }
        kv::get(&self.store, id, "token").await
    }

    /// Every token, newest first.
    pub async fn list(&self) -> Result<Vec<Token>, NatsError> {
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.store, ">", false).await? {
            match codec::decode::<StoredToken>("token", &hit.value) {
                Ok(t) => out.push(t.token),
                Err(e) => tracing::warn!(key = %hit.key, error = %e, "unreadable token skipped"),
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes a token read at `revision`.
    pub async fn delete(&self, id: &str, revision: u64) -> Result<(), ApiError> {
        let w = Write::delete(&self.store.name, id.to_string(), Expect::Revision(revision));
        match kv::write(&self.nats, w).await {
            Ok(_) => Ok(()),
            Err(NatsError::WrongRevision { .. }) => Err(ApiError::conflict(format!(
                "token `{id}` changed at the same time: try again"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}
