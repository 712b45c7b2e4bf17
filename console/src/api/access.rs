//! Users, API tokens and the audit log (admins only): `GET/POST /api/users`,
//! `DELETE /api/users/{name}`, `GET/POST /api/tokens`, `DELETE /api/tokens/{id}`,
//! `GET /api/audit?limit=&before=`.
//!
//! Users are managed by admins of every app only: a user can be given any app. Tokens
//! may be made by any admin, within their own role and apps. Every change is written to
//! the audit log (the password hash and token secret never are).

use antares_nats::now;
use antares_schemas::access::{CreatedToken, NewToken, NewUser, Principal, Role, Token, User};
use antares_schemas::audit::AuditEntry;
use antares_schemas::limits::MAX_LIST_LIMIT;
use antares_schemas::names::check_name;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures::future::join_all;
use serde::Deserialize;

use super::number;
use crate::auth::Caller;
use crate::auth::password;
use crate::auth::users::StoredUser;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use crate::state::Shared;

/// Every user.
pub async fn users(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    caller.need_full_admin()?;
    let users = state.users.list().await?;
    Ok(Json(users.iter().map(StoredUser::public).collect()))
}

/// Creates a user, or replaces one's role, apps and password.
pub async fn put_user(
    State(state): State<Shared>,
    caller: Caller,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.need_full_admin()?;
    check_name("user", &new.name).map_err(|e| ApiError::bad_request(format!("`name`: {e}")))?;
    password::check(&new.password)
        .map_err(|e| ApiError::bad_request(format!("`password`: {e}")))?;
    check_apps(&caller, &new.apps).await?;
    let existing = state.users.get(&new.name).await?;
    let (before, revision, created_at) = match &existing {
        Some(v) => (Some(v.value.clone()), v.revision, v.value.created_at),
        None => (None, 0, now()),
    };
    let user = StoredUser {
        name: new.name.clone(),
        role: new.role,
        apps: new.apps.clone(),
        created_at,
        password_hash: password::hash(&new.password).await?,
    };
    if let Some(old) = &before
        && old.is_full_admin()
        && !user.is_full_admin()
    {
        keep_an_admin(&state, &old.name).await?;
    }
    state.users.put(&user, revision).await?;
    let action = if before.is_some() {
        "user.update"
    } else {
        "user.create"
    };
    let before = before.map(|u| json(&u.public()));
    let after = json(&user.public());
    caller
        .admin
        .record(action, &user.name, None, before, Some(after))
        .await?;
    let status = if revision == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user.public())))
}

/// Deletes a user; their sessions stop working at once.
pub async fn delete_user(
    State(state): State<Shared>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.need_full_admin()?;
    let Some(found) = state.users.get(&name).await? else {
        return Err(ApiError::not_found(format!("user `{name}` does not exist")));
    };
    if found.value.is_full_admin() {
        keep_an_admin(&state, &name).await?;
    }
    state.users.delete(&name, found.revision).await?;
    caller
        .admin
        .record(
            "user.delete",
            &name,
            None,
            Some(json(&found.value.public())),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a change that would leave no admin of every app besides `leaving`.
async fn keep_an_admin(state: &Shared, leaving: &str) -> Result<(), ApiError> {
    let others = state.users.list().await?;
    if others
        .iter()
        .any(|u| u.name != leaving && u.is_full_admin())
    {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "`{leaving}` is the last admin of every app: make another one first"
        )))
    }
}

/// Every app of a user or token must be a valid name of an existing app.
async fn check_apps(caller: &Caller, apps: &[String]) -> Result<(), ApiError> {
    for app in apps {
        check_name("app", app).map_err(|e| ApiError::bad_request(format!("`apps`: {e}")))?;
    }
    let found = join_all(apps.iter().map(|a| caller.admin.get_app(a))).await;
    for (app, res) in apps.iter().zip(found) {
        match res {
            Ok(_) => {}
            Err(antares_scheduler::SchedulerError::NotFound(_)) => {
                return Err(ApiError::bad_request(format!(
                    "`apps`: app `{app}` does not exist"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a token is within what the caller may see (all of its apps are theirs).
fn sees_token(p: &Principal, t: &Token) -> bool {
    p.apps.is_empty() || (!t.apps.is_empty() && t.apps.iter().all(|a| p.sees_app(a)))
}

/// The tokens the caller may see, newest first.
pub async fn tokens(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<Token>>, ApiError> {
    caller.need(Role::Admin)?;
    let mut list = state.tokens.list().await?;
    list.retain(|t| sees_token(&caller.principal, t));
    Ok(Json(list))
}

/// Makes a token; the answer holds its secret, shown this once.
pub async fn create_token(
    State(state): State<Shared>,
    caller: Caller,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.need(Role::Admin)?;
    check_apps(&caller, &new.apps).await?;
    let created = state.tokens.create(new, &caller.principal).await?;
    let t = &created.token;
    caller
        .admin
        .record("token.create", &t.name, None, None, Some(json(t)))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token.
pub async fn delete_token(
    State(state): State<Shared>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.need(Role::Admin)?;
    let found = state
        .tokens
        .get(&id)
        .await?
        .filter(|t| sees_token(&caller.principal, &t.value.token))
        .ok_or_else(|| ApiError::not_found(format!("token `{id}` does not exist")))?;
    state.tokens.delete(&id, found.revision).await?;
    let t = &found.value.token;
    caller
        .admin
        .record("token.delete", &t.name, None, Some(json(t)), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<String>,
    before: Option<String>,
}

/// The audit log, newest first (of the caller's apps when they are limited).
pub async fn audit(
    caller: Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.need(Role::Admin)?;
    let limit = match p.limit.as_deref().filter(|s| !s.is_empty()) {
        None => 50,
        Some(s) => number::<usize>("limit", s)?,
    };
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}: give 1 to {MAX_LIST_LIMIT}"
        )));
    }
    let before = match p.before.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(number::<u64>("before", s)?),
    };
    Ok(Json(
        caller.admin.audit_log(limit, before, caller.apps()).await?,
    ))
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
