//! Password hashes: argon2id in the PHC string format, so the parameters travel with
//! each hash and can be raised later without breaking stored ones.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on the blocking pool,
//! never on the async workers that serve other requests.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::ApiError;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted (hashing cost grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Hashes computed at once; more wait. Each takes about 19 MiB for a few tens of
/// milliseconds, so a burst of logins cannot take the machine's memory.
const MAX_HASHING: usize = 4;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_HASHING);

/// Refuses a password that is too short or too long.
pub fn check(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Hashes a password (argon2id, default parameters, a random salt).
pub async fn hash(password: &str) -> Result<String, ApiError> {
    let _slot = HASHING
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("password hash: {e}")))?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| ApiError::internal(format!("password salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("password hash: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("password hash: {e}")))?
}

/// Whether `password` matches the stored PHC string (false for a corrupt one).
pub async fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(_slot) = HASHING.acquire().await else {
        return false;
    };
    let (password, phc) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || match PasswordHash::new(&phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "a stored password hash is corrupt");
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches, verified against for unknown users so that a wrong
/// user name takes as long as a wrong password.
pub async fn verify_nothing(password: &str) {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let dummy = DUMMY
        .get_or_init(|| async { hash("no user has this password").await.unwrap_or_default() })
        .await;
    let _ = verify(password, dummy).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").await.expect("hashed");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse", &h).await);
        assert!(!verify("wrong horse", &h).await);
        assert!(!verify("correct horse", "not a hash").await);
    }

    #[test]
    fn passwords_are_bounded() {
        assert!(check("short").is_err());
        assert!(check("long enough").is_ok());
        assert!(check(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
