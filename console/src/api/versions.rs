//! Kept versions of a job spec: `GET .../versions`, `GET .../versions/{n}`,
//! `POST .../versions/{n}/rollback`.

use antares_schemas::access::Role;
use antares_schemas::audit::JobVersion;
use axum::Json;
use axum::extract::State;

use super::number;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::Shared;

/// Every kept version of a job, newest first.
pub async fn list(
    caller: Caller,
    ApiPath((app, job)): ApiPath<(String, String)>,
) -> Result<Json<Vec<JobVersion>>, ApiError> {
    caller.see_app(&app)?;
    Ok(Json(caller.admin.job_versions(&app, &job).await?))
}

/// One version.
pub async fn get(
    caller: Caller,
    ApiPath((app, job, n)): ApiPath<(String, String, String)>,
) -> Result<Json<JobVersion>, ApiError> {
    caller.see_app(&app)?;
    let n = number::<u64>("version", &n)?;
    Ok(Json(caller.admin.job_version(&app, &job, n).await?))
}

/// Puts version `n` back as the newest (admin); answers the new version. (A rollback to
/// a version of a deleted job brings the job back: the job names see it before this
/// answers.)
pub async fn rollback(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath((app, job, n)): ApiPath<(String, String, String)>,
) -> Result<Json<JobVersion>, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Admin)?;
    let n = number::<u64>("version", &n)?;
    let version = caller.admin.rollback_job(&app, &job, n).await?;
    state.names_written().await;
    Ok(Json(version))
}
