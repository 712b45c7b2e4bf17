//! Instances: `GET /api/instances?app=&job=&status=&limit=&before=`,
//! `GET /api/instances/{id}`, `POST /api/instances/{id}/cancel`.

use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_scheduler::SchedulerError;
use antares_scheduler::store::ListQuery;
use antares_schemas::InstanceId;
use antares_schemas::access::Role;
use antares_schemas::instance::{Instance, InstanceStatus, InstanceSummary};
use antares_schemas::limits::MAX_LIST_LIMIT;
use axum::Json;
use futures::future::join_all;
use serde::Deserialize;

use super::number;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

/// How many instances a listing gives unless told.
const DEFAULT_LIMIT: usize = 50;
/// How long a just-made instance (its id says so) is waited for before it is "not found".
const YOUNG_WAIT: Duration = Duration::from_secs(5);
/// How old an id may be to count as just made.
const YOUNG: i64 = 10_000;

/// Query of `GET /api/instances`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    app: Option<String>,
    job: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// Instances, running and ended together, newest first; only the caller's apps.
pub async fn list(
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<Vec<InstanceSummary>>, ApiError> {
    let limit = match p.limit.as_deref().filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(text) => number::<usize>("limit", text)?,
    };
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}: give 1 to {MAX_LIST_LIMIT}"
        )));
    }
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<InstanceStatus>()
                .map_err(|e| ApiError::bad_request(format!("`status`: {e}")))?,
        ),
    };
    let before = match p.before.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(instance_id(s)?),
    };
    let app = p.app.filter(|s| !s.is_empty());
    let job = p.job.filter(|s| !s.is_empty());
    if job.is_some() && app.is_none() {
        return Err(ApiError::bad_request("`job` needs `app` too"));
    }
    let query = |app: Option<String>| ListQuery {
        app,
        job: job.clone(),
        status,
        limit,
        before,
    };
    if let Some(app) = &app {
        caller.see_app(app)?;
    }
    let list = match (app, caller.apps()) {
        (Some(app), _) => caller.admin.list_instances(&query(Some(app))).await?,
        (None, None) => caller.admin.list_instances(&query(None)).await?,
        // Limited to some apps: each of them, merged.
        (None, Some(apps)) => {
            let queries: Vec<ListQuery> = apps.iter().map(|a| query(Some(a.clone()))).collect();
            let lists = join_all(queries.iter().map(|q| caller.admin.list_instances(q))).await;
            let mut all = Vec::new();
            for l in lists {
                all.extend(l?);
            }
            all.sort_by_key(|s| std::cmp::Reverse(s.id));
            all.truncate(limit);
            all
        }
    };
    Ok(Json(list))
}

/// One instance, whole.
pub async fn get(caller: Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Instance>, ApiError> {
    let id = instance_id(&id)?;
    Ok(Json(visible(&caller, &id, false).await?))
}

/// Asks the scheduler to stop a running instance (operator); answers the instance as it
/// was when asked.
pub async fn cancel(
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceSummary>, ApiError> {
    let id = instance_id(&id)?;
    visible(&caller, &id, false).await?;
    caller.need(Role::Operator)?;
    Ok(Json(caller.admin.cancel_instance(&id).await?))
}

/// Parses an instance id, saying what one looks like.
pub fn instance_id(text: &str) -> Result<InstanceId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{text}` is not an instance id (26 characters, like 01JD3W6TQ6D0XGZ8M2Y5C9K7PE)"
        ))
    })
}

/// The instance, if the caller may see its app (else "not found", like a missing one).
/// With `wait_young`, an instance whose id says it was made moments ago (a trigger the
/// scheduler has not taken yet) is waited for a little.
pub async fn visible(
    caller: &Caller,
    id: &InstanceId,
    wait_young: bool,
) -> Result<Instance, ApiError> {
    let found = match caller.admin.get_instance(id).await {
        Err(SchedulerError::NotFound(m)) => {
            let age = antares_nats::now().since(id.time());
            if !(wait_young && (0..YOUNG).contains(&age)) {
                return Err(ApiError::not_found(m));
            }
            let admin = &caller.admin;
            wait_for("instance", YOUNG_WAIT, || async move {
                admin.get_instance(id).await.ok()
            })
            .await
            .map_err(|_| ApiError::not_found(m))?
        }
        other => other?,
    };
    if caller.principal.sees_app(&found.summary.app) {
        Ok(found)
    } else {
        Err(ApiError::not_found(format!(
            "instance {id} does not exist (or has expired from the history)"
        )))
    }
}
