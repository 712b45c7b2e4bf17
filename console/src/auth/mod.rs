//! Who is asking, and what they may do.
//!
//! A request is made by a logged-in user (the `antares_session` cookie names a session
//! in NATS) or by an API token (`Authorization: Bearer <secret>`). Either way it becomes
//! a [`Caller`]: the [`Principal`] (name, role, apps) and the control operations acting
//! as that principal, so every change is recorded as made by them.
//!
//! Roles include the ones below them (viewer < operator < admin). A principal limited to
//! some apps sees only those: any other app, and anything in it, is "not found", so
//! names of other apps are never revealed.

use std::net::IpAddr;

use antares_scheduler::admin::Admin;
use antares_schemas::access::{Principal, Role};
use antares_schemas::audit::{Actor, Via};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::error::ApiError;
use crate::state::Shared;

pub mod password;
pub mod secrets;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use sessions::COOKIE;
pub use users::{AdminSeed, SeedOutcome};

/// The principal of a request and the operations acting as it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Through a session or a token.
    pub via: Via,
    /// The control operations, recorded as made by this caller.
    pub admin: Admin,
}

impl Caller {
    /// Refuses (403) a caller whose role does not include `role`.
    pub fn need(&self, role: Role) -> Result<(), ApiError> {
        if self.principal.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; {} has the {} role",
                role.as_str(),
                self.principal.name,
                self.principal.role.as_str()
            )))
        }
    }

    /// Refuses (403) anyone but an admin of every app: managing users and reading the
    /// whole audit log give power over every app.
    pub fn need_full_admin(&self) -> Result<(), ApiError> {
        self.need(Role::Admin)?;
        if self.principal.apps.is_empty() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs an admin of every app; {} is limited to {}",
                self.principal.name,
                self.principal.apps.join(", ")
            )))
        }
    }

    /// Refuses (404, as if it did not exist) an app the caller may not see.
    pub fn see_app(&self, app: &str) -> Result<(), ApiError> {
        if self.principal.sees_app(app) {
            Ok(())
        } else {
            Err(hidden_app(app))
        }
    }

    /// The apps the caller is limited to; `None` for every app.
    pub fn apps(&self) -> Option<&[String]> {
        (!self.principal.apps.is_empty()).then_some(self.principal.apps.as_slice())
    }
}

/// The answer for an app the caller may not see: the same as for one that is not there.
pub fn hidden_app(app: &str) -> ApiError {
    ApiError::not_found(format!("app `{app}` does not exist"))
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let (principal, via) = authenticate(&parts.headers, state).await?;
        let admin = state.admin.acting_as(Actor {
            name: principal.name.clone(),
            via,
            host: None,
        });
        Ok(Caller {
            principal,
            via,
            admin,
        })
    }
}

/// The principal of a request: its bearer token, else its session cookie.
async fn authenticate(headers: &HeaderMap, state: &Shared) -> Result<(Principal, Via), ApiError> {
    if let Some(secret) = bearer(headers)? {
        let token = state.tokens.resolve(secret).await?.ok_or_else(|| {
            ApiError::unauthorized("the bearer token is unknown, expired or revoked")
        })?;
        let principal = Principal {
            name: token.name,
            role: token.role,
            apps: token.apps,
        };
        return Ok((principal, Via::Token));
    }
    let Some(id) = cookie(headers, COOKIE) else {
        return Err(ApiError::unauthorized(
            "not logged in: POST /api/login, or send `Authorization: Bearer TOKEN`",
        ));
    };
    let expired = || ApiError::unauthorized("the session has ended: log in again");
    let session = state.sessions.get(id).await?.ok_or_else(expired)?;
    // The user is read each time, so a changed role or a deleted user takes effect at once.
    let user = state.users.get(&session.user).await?.ok_or_else(expired)?;
    let u = user.value;
    Ok((
        Principal {
            name: u.name,
            role: u.role,
            apps: u.apps,
        },
        Via::Console,
    ))
}

/// The secret of an `Authorization: Bearer` header, if there is one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    match text.split_once(' ') {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(secret.trim())),
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer TOKEN`",
        )),
    }
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The address a request came from, when the server knows it.
pub fn peer(parts_ext: &axum::http::Extensions) -> Option<IpAddr> {
    parts_ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_a_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; antares_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn reads_bearer_tokens_only() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x.y"),
        );
        assert_eq!(bearer(&h), Ok(Some("x.y")));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&h).is_err());
    }
}
