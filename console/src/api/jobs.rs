//! Jobs: `GET/POST /api/apps/{app}/jobs`, `GET/PUT/DELETE /api/apps/{app}/jobs/{job}`,
//! `POST .../trigger|pause|resume`, and the jobs page's rows
//! (`GET /api/apps/{app}/job-rows`).
//!
//! Both listings are pages by job name (`?limit=&after=&prefix=`), served from the
//! console's live list of job names: a page view reads that page's jobs and nothing
//! else. The body stays a plain JSON array; when more jobs follow, the header
//! `X-Next-After` holds the name to ask the next page `after`. The console's own writes
//! wait until that list has seen them, so the next page shows them.
//!
//! A spec body is read by the same parser as `antares job apply`, so a bad one is refused
//! with the same message and the field at fault.

use antares_scheduler::SchedulerError;
use antares_scheduler::admin::{DEFAULT_JOB_PAGE, JobPage, JobPageQuery};
use antares_schemas::access::Role;
use antares_schemas::messages::TriggerRequest;
use antares_schemas::spec::{JobSpec, SpecError, SpecFormat, parse_jobs};
use antares_schemas::stats::JobRow;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::number;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, RawBody};
use crate::state::Shared;

/// The header that holds the next page's `after`.
pub const NEXT_AFTER: HeaderName = HeaderName::from_static("x-next-after");

/// Query of the jobs listings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<String>,
    after: Option<String>,
    prefix: Option<String>,
}

impl PageParams {
    fn query(self) -> Result<JobPageQuery, ApiError> {
        let limit = match self.limit.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_JOB_PAGE,
            Some(text) => number::<usize>("limit", text)?,
        };
        let q = JobPageQuery {
            after: self.after.filter(|s| !s.is_empty()),
            prefix: self.prefix.filter(|s| !s.is_empty()),
            limit,
        };
        q.check()?;
        Ok(q)
    }
}

/// A page as the JSON array of its items, with the next cursor in [`NEXT_AFTER`].
fn paged<T: Serialize>(page: JobPage<T>) -> Response {
    let mut res = Json(page.items).into_response();
    if let Some(next) = page.next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        res.headers_mut().insert(NEXT_AFTER, next);
    }
    res
}

/// A page of the jobs of an app, by name.
pub async fn list(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    caller.see_app(&app)?;
    let q = p.query()?;
    let page = caller.admin.job_page(&state.job_names, &app, &q).await?;
    Ok(paged(page))
}

/// One job.
pub async fn get(
    caller: Caller,
    ApiPath((app, job)): ApiPath<(String, String)>,
) -> Result<Json<JobSpec>, ApiError> {
    caller.see_app(&app)?;
    Ok(Json(caller.admin.get_job(&app, &job).await?))
}

/// Creates a job (admin); 409 when it exists (change it with PUT).
pub async fn create(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath(app): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<JobSpec>), ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Admin)?;
    let spec = parse_spec(&body, &app, None)?;
    match caller.admin.get_job(&app, &spec.name).await {
        Ok(_) => {
            return Err(ApiError::conflict(format!(
                "job `{}` already exists: change it with PUT /api/apps/{app}/jobs/{}",
                spec.full_name(),
                spec.name
            )));
        }
        Err(SchedulerError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    caller.admin.apply_jobs(vec![spec.clone()]).await?;
    state.names_written().await;
    Ok((StatusCode::CREATED, Json(spec)))
}

/// Creates or replaces a job (admin); the body's `app` and `name` must be the path's.
pub async fn update(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath((app, job)): ApiPath<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<JobSpec>, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Admin)?;
    let spec = parse_spec(&body, &app, Some(&job))?;
    caller.admin.apply_jobs(vec![spec.clone()]).await?;
    state.names_written().await;
    Ok(Json(spec))
}

/// Deletes a job (admin).
pub async fn delete(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath((app, job)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Admin)?;
    caller.admin.delete_job(&app, &job).await?;
    state.names_written().await;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a trigger.
#[derive(Debug, Serialize)]
pub struct Triggered {
    /// The instance the trigger makes (or, for a repeated `key`, the one it made).
    instance: String,
    /// Set when the `key` was used within 24 h: nothing new was started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    existing: bool,
}

/// Runs a job once now (operator); body `{"params"?, "shard_params"?, "shards"?, "key"?}`
/// or empty.
pub async fn trigger(
    caller: Caller,
    ApiPath((app, job)): ApiPath<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<Triggered>, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Operator)?;
    let req = TriggerRequest::parse(&body).map_err(ApiError::bad_request)?;
    let done = caller.admin.trigger(&app, &job, &req).await?;
    Ok(Json(Triggered {
        instance: done.id().to_string(),
        existing: !done.is_new(),
    }))
}

/// Pauses a job's schedule (operator).
pub async fn pause(
    caller: Caller,
    ApiPath((app, job)): ApiPath<(String, String)>,
) -> Result<Json<JobSpec>, ApiError> {
    set_enabled(caller, app, job, false).await
}

/// Resumes a job's schedule (operator).
pub async fn resume(
    caller: Caller,
    ApiPath((app, job)): ApiPath<(String, String)>,
) -> Result<Json<JobSpec>, ApiError> {
    set_enabled(caller, app, job, true).await
}

async fn set_enabled(
    caller: Caller,
    app: String,
    job: String,
    enabled: bool,
) -> Result<Json<JobSpec>, ApiError> {
    caller.see_app(&app)?;
    caller.need(Role::Operator)?;
    Ok(Json(
        caller.admin.set_job_enabled(&app, &job, enabled).await?,
    ))
}

/// A page of the jobs page's rows: each job of an app with whether its schedule runs,
/// its last run and its next fire.
pub async fn rows(
    caller: Caller,
    State(state): State<Shared>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    caller.see_app(&app)?;
    let q = p.query()?;
    let page: JobPage<JobRow> = caller
        .admin
        .job_row_page(&state.job_names, &app, &q)
        .await?;
    Ok(paged(page))
}

/// Reads one job spec from a JSON body, for the app in the path (and the job, for PUT).
fn parse_spec(body: &[u8], app: &str, job: Option<&str>) -> Result<JobSpec, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request(
            "the request body must be one job spec as a JSON object",
        ));
    }
    let spec_error = |e: SpecError| ApiError::from(SchedulerError::Spec(e));
    let mut jobs = parse_jobs(text, SpecFormat::Json).map_err(spec_error)?;
    let spec = match (jobs.pop(), jobs.is_empty()) {
        (Some(spec), true) => spec,
        _ => {
            return Err(ApiError::bad_request(
                "the request body must hold exactly one job spec",
            ));
        }
    };
    if spec.app != app {
        return Err(spec_error(SpecError::new(
            "app",
            format!("`app` is `{}` but the path is for app `{app}`", spec.app),
        )));
    }
    if let Some(job) = job
        && spec.name != job
    {
        return Err(spec_error(SpecError::new(
            "name",
            format!(
                "`name` is `{}` but the path is for job `{job}` (a job is renamed by creating the new one and deleting the old)",
                spec.name
            ),
        )));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_body_must_match_its_path() {
        let body = br#"{"app": "shop", "name": "x", "kind": "script", "command": "true"}"#;
        assert!(parse_spec(body, "shop", Some("x")).is_ok());
        let e = parse_spec(body, "billing", None).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("app"));
        let e = parse_spec(body, "shop", Some("y")).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_spec(b"[]", "shop", None).expect_err("refused");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let bad = br#"{"app": "shop", "name": "x", "kind": "script", "command": "true", "schedule": {"cron": "nope"}}"#;
        let e = parse_spec(bad, "shop", None).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("schedule.cron"), "{e}");
    }
}
