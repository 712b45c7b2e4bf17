//! `GET /api/cluster`, `GET /api/stats?days=N`, `GET /api/cron/preview?expr=&tz=&n=5`.

use antares_scheduler::admin::cron_next;
use antares_schemas::Timestamp;
use antares_schemas::cluster::ClusterView;
use antares_schemas::stats::Stats;
use axum::Json;
use serde::Deserialize;

use super::number;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;

/// Most days of counts one request asks for.
pub const MAX_DAYS: u32 = 366;

/// Schedulers (which one leads) and live workers of the caller's apps.
pub async fn cluster(caller: Caller) -> Result<Json<ClusterView>, ApiError> {
    let mut view = caller.admin.cluster().await?;
    view.workers.retain(|w| caller.principal.sees_app(&w.app));
    Ok(Json(view))
}

/// Query of `GET /api/stats`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    days: Option<String>,
}

/// Counts per day over the caller's apps, what runs now, live workers.
pub async fn stats(
    caller: Caller,
    ApiQuery(p): ApiQuery<StatsParams>,
) -> Result<Json<Stats>, ApiError> {
    let days = match p.days.as_deref().filter(|s| !s.is_empty()) {
        None => 7,
        Some(s) => number::<u32>("days", s)?,
    };
    if days == 0 || days > MAX_DAYS {
        return Err(ApiError::bad_request(format!(
            "`days` is {days}: give 1 to {MAX_DAYS}"
        )));
    }
    Ok(Json(caller.admin.stats(days, caller.apps()).await?))
}

/// Query of `GET /api/cron/preview`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewParams {
    expr: Option<String>,
    tz: Option<String>,
    n: Option<String>,
    after: Option<String>,
}

/// The next fire times of a cron expression (what `antares cron next` prints), or 400
/// with the parse error.
pub async fn cron_preview(
    _caller: Caller,
    ApiQuery(p): ApiQuery<PreviewParams>,
) -> Result<Json<Vec<Timestamp>>, ApiError> {
    let expr = p
        .expr
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("`expr` is missing: give a cron expression"))?;
    let n = match p.n.as_deref().filter(|s| !s.is_empty()) {
        None => 5,
        Some(s) => number::<usize>("n", s)?,
    };
    if n == 0 {
        return Err(ApiError::bad_request(
            "`n` is 0: ask for 1 or more fire times",
        ));
    }
    let after = match p.after.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("`after`: {e}")))?,
        ),
    };
    let tz = p.tz.unwrap_or_default();
    Ok(Json(cron_next(&expr, tz.trim(), n, after)?))
}
