//! Apps: `GET/POST /api/apps`, `GET/DELETE /api/apps/{app}`, `POST .../pause|resume`.

use antares_schemas::access::Role;
use antares_schemas::app::App;
use axum::Json;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};

/// `POST /api/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// Name.
    name: String,
    /// What it is.
    #[serde(default)]
    description: String,
}

/// The apps the caller may see.
pub async fn list(caller: Caller) -> Result<Json<Vec<App>>, ApiError> {
    let mut apps = caller.admin.list_apps().await?;
    apps.retain(|a| caller.principal.sees_app(&a.name));
    Ok(Json(apps))
}

/// Creates an app (admin; within the caller's apps when they are limited).
pub async fn create(
    caller: Caller,
    JsonBody(new): JsonBody<NewApp>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    caller.need(Role::Admin)?;
    if !caller.principal.sees_app(&new.name) {
        return Err(ApiError::forbidden(format!(
            "{} is limited to the apps {}: app `{}` is not one of them",
            caller.principal.name,
            caller.principal.apps.join(", "),
            new.name
        )));
    }
    let app = caller.admin.create_app(&new.name, &new.description).await?;
    Ok((StatusCode::CREATED, Json(app)))
}

/// One app.
pub async fn get(caller: Caller, ApiPath(app): ApiPath<String>) -> Result<Json<App>, ApiError> {
    caller.see_app(&app)?;
    Ok(Json(caller.admin.get_app(&app).await?))
}

/// Query of an app's deletion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete its jobs too (otherwise an app with jobs is refused).
    #[serde(default)]
    with_jobs: bool,
}

/// Deletes an app that has no jobs, or with its jobs given `?with_jobs=true` (admin).
pub async fn delete(
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Admin)?;
    if q.with_jobs {
        caller.admin.delete_app_and_jobs(&app).await?;
    } else {
        caller.admin.delete_app(&app).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses every schedule of an app (operator).
pub async fn pause(caller: Caller, ApiPath(app): ApiPath<String>) -> Result<Json<App>, ApiError> {
    set_enabled(caller, app, false).await
}

/// Resumes an app's schedules (operator).
pub async fn resume(caller: Caller, ApiPath(app): ApiPath<String>) -> Result<Json<App>, ApiError> {
    set_enabled(caller, app, true).await
}

async fn set_enabled(caller: Caller, app: String, enabled: bool) -> Result<Json<App>, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Operator)?;
    Ok(Json(caller.admin.set_app_enabled(&app, enabled).await?))
}
