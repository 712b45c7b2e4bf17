//! `POST /api/login`, `POST /api/logout`, `GET /api/me`.

use antares_schemas::access::{Login, Principal};
use antares_schemas::audit::Via;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{COOKIE, Caller, cookie, password};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::Shared;

/// Checks the password, starts a session and sets its cookie; answers the principal.
pub async fn login(
    State(state): State<Shared>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = crate::auth::peer(request.extensions());
    let JsonBody(login) =
        <JsonBody<Login> as axum::extract::FromRequest<Shared>>::from_request(request, &state)
            .await?;
    if let Err(wait) = state.throttle.check(&login.user, ip) {
        state.metrics.login("throttled");
        return Err(ApiError::too_many(
            format!(
                "too many failed logins for `{}`: try again in {} s",
                login.user,
                wait.as_secs().max(1)
            ),
            wait.as_secs().max(1),
        ));
    }
    let user = state.users.get(&login.user).await?;
    let ok = match &user {
        Some(u) => password::verify(&login.password, &u.value.password_hash).await,
        None => {
            password::verify_nothing(&login.password).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.failed(&login.user, ip);
        state.metrics.login("failed");
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    state.throttle.succeeded(&login.user, ip);
    state.metrics.login("ok");
    let id = state.sessions.create(&user.value.name).await?;
    let secure = state.options.secure_cookie || behind_https(&headers);
    let max_age = state.sessions.ttl().as_secs();
    let mut res = Json(Principal {
        name: user.value.name,
        role: user.value.role,
        apps: user.value.apps,
    })
    .into_response();
    set_cookie(
        &mut res,
        &format!("{COOKIE}={id}; Max-Age={max_age}"),
        secure,
    )?;
    Ok(res)
}

/// Ends the session of the cookie (if any) and clears the cookie.
pub async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.delete(id).await?;
    }
    let secure = state.options.secure_cookie || behind_https(&headers);
    let mut res = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut res, &format!("{COOKIE}=; Max-Age=0"), secure)?;
    Ok(res)
}

/// `GET /api/me`.
#[derive(Debug, Serialize)]
pub struct Me {
    /// Who.
    #[serde(flatten)]
    principal: Principal,
    /// `console` (a session) or `token`.
    via: Via,
}

/// Who the caller is, and how they came in.
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        principal: caller.principal,
        via: caller.via,
    })
}

fn set_cookie(res: &mut Response, value: &str, secure: bool) -> Result<(), ApiError> {
    let mut text = format!("{value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    let v = HeaderValue::from_str(&text)
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    res.headers_mut().append(header::SET_COOKIE, v);
    Ok(())
}

/// Whether a proxy in front says the client came over HTTPS.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}
