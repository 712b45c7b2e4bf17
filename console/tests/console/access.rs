//! Logins, sessions, tokens, roles and app limits.

use antares_nats::codec;
use reqwest::StatusCode;
use reqwest::header::{RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

use reqwest::header::COOKIE;

use crate::support::{ADMIN_PASSWORD, Api, Setup, session_cookie};

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let anon = s.anonymous();
    let (status, body) = anon.get("/api/me").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap_or("").contains("log"),
        "{body}"
    );
    let (status, _) = anon.get("/api/apps").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = anon
        .post(
            "/api/login",
            json!({"user": "admin", "password": "wrong-password"}),
        )
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = anon
        .post(
            "/api/login",
            json!({"user": "nobody", "password": "whatever-it-is"}),
        )
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let res = anon
        .request(reqwest::Method::POST, "/api/login")
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(cookie.starts_with("antares_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let principal: Value = res.json().await?;
    assert_eq!(principal["name"], "admin");
    assert_eq!(principal["role"], "admin");

    let api = s.admin_api().await?;
    let me = api.expect("/api/me", StatusCode::OK).await?;
    assert_eq!(me["name"], "admin");
    assert_eq!(me["via"], "console");
    let (status, _) = api.post_empty("/api/logout").await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/me").await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session is gone after logout"
    );
    Ok(())
}

/// A session past its end is refused, even while its entry has not expired yet.
#[tokio::test]
async fn an_ended_session_is_refused() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let anon = s.anonymous();
    let res = anon
        .request(reqwest::Method::POST, "/api/login")
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    let id = session_cookie(&res).ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let api = Api {
        auth: Some((COOKIE.as_str(), format!("antares_session={id}"))),
        ..anon
    };
    api.expect("/api/me", StatusCode::OK).await?;
    let store = s.nats.bucket(&s.nats.topo.sessions_bucket()).await?;
    let raw = store
        .get(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("session stored"))?;
    let mut record: Value = codec::decode("session", &raw)?;
    record["expires_at"] = record["created_at"].clone();
    store.put(&id, codec::encode("session", &record)?).await?;
    assert_eq!(api.get("/api/me").await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn a_secure_cookie_when_configured_and_sessions_shared_by_two_consoles() -> anyhow::Result<()>
{
    let mut s = Setup::start_with(|mut o| {
        o.secure_cookie = true;
        o
    })
    .await?;
    let res = s
        .anonymous()
        .request(reqwest::Method::POST, "/api/login")
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    let cookie = res
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A second console on the same NATS knows the session: nothing is kept in a process.
    let api = s.admin_api().await?;
    let second = s
        .serve(antares_console::ConsoleOptions {
            admin: antares_console::AdminSeed {
                user: "admin".into(),
                password: None,
                reset: true,
            },
            ..antares_console::ConsoleOptions::default()
        })
        .await?;
    let other = crate::support::Api {
        base: second,
        ..api.clone()
    };
    let me = other.expect("/api/me", StatusCode::OK).await?;
    assert_eq!(me["name"], "admin");
    Ok(())
}

#[tokio::test]
async fn failed_logins_are_throttled() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let anon = s.anonymous();
    for _ in 0..10 {
        let (status, _) = anon
            .post(
                "/api/login",
                json!({"user": "admin", "password": "not-the-password"}),
            )
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = anon
        .request(reqwest::Method::POST, "/api/login")
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get(RETRY_AFTER).is_some());
    let body: Value = res.json().await?;
    assert!(
        body["error"].as_str().unwrap_or("").contains("too many"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn bearer_tokens_work_until_deleted_or_expired() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let api = s.admin_api().await?;
    let (status, created) = api
        .post("/api/tokens", json!({"name": "ci", "role": "operator"}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap_or_default().to_string();
    let id = created["token"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(secret.starts_with(&format!("{id}.")), "{created}");

    let bot = s.anonymous().bearer(&secret);
    let me = bot.expect("/api/me", StatusCode::OK).await?;
    assert_eq!(me["name"], "ci");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["via"], "token");
    bot.expect("/api/apps", StatusCode::OK).await?;
    // An operator token cannot make tokens or users.
    let (status, _) = bot
        .post("/api/tokens", json!({"name": "x", "role": "viewer"}))
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let list = api.expect("/api/tokens", StatusCode::OK).await?;
    assert!(list.to_string().contains(&id), "{list}");
    assert!(
        !list.to_string().contains(&secret),
        "the secret is never listed: {list}"
    );

    let wrong = s.anonymous().bearer(&format!("{id}.{}", "0".repeat(64)));
    assert_eq!(wrong.get("/api/me").await?.0, StatusCode::UNAUTHORIZED);

    let (status, _) = api.delete(&format!("/api/tokens/{id}")).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = bot.get("/api/me").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A token whose expiry has passed: its stored record made to expire at its creation.
    let (_, created) = api
        .post(
            "/api/tokens",
            json!({"name": "short", "role": "viewer", "expires_in_days": 1}),
        )
        .await?;
    let secret = created["secret"].as_str().unwrap_or_default().to_string();
    let id = created["token"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let short = s.anonymous().bearer(&secret);
    short.expect("/api/me", StatusCode::OK).await?;
    let store = s.nats.bucket(&s.nats.topo.tokens_bucket()).await?;
    let raw = store
        .get(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("token stored"))?;
    let mut record: Value = codec::decode("token", &raw)?;
    record["token"]["expires_at"] = record["token"]["created_at"].clone();
    store.put(&id, codec::encode("token", &record)?).await?;
    assert_eq!(short.get("/api/me").await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

const SHOP_AND_BILLING: &str = r#"
[[job]]
app = "shop"
name = "restock"
kind = "plugin"
handler = "noop"

[[job]]
app = "billing"
name = "invoice"
kind = "plugin"
handler = "noop"
"#;

#[tokio::test]
async fn a_viewer_reads_but_cannot_run_or_change() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    s.admin.create_app("shop", "").await?;
    s.admin.create_app("billing", "").await?;
    s.apply("shop", SHOP_AND_BILLING).await?;
    let api = s.admin_api().await?;
    let (status, user) = api
        .post(
            "/api/users",
            json!({"name": "vera", "password": "vera-password", "role": "viewer"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert!(user.get("password_hash").is_none(), "{user}");
    let users = api.expect("/api/users", StatusCode::OK).await?;
    let names: Vec<&str> = users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["admin", "vera"]);
    assert!(
        !users.to_string().contains("argon2"),
        "no hash is shown: {users}"
    );
    let vera = s.login("vera", "vera-password").await?;
    let apps = vera.expect("/api/apps", StatusCode::OK).await?;
    assert_eq!(apps.as_array().map(Vec::len), Some(2), "{apps}");
    vera.expect("/api/apps/shop/jobs/restock", StatusCode::OK)
        .await?;
    let (status, body) = vera
        .post_empty("/api/apps/shop/jobs/restock/trigger")
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("operator"),
        "{body}"
    );
    let (status, _) = vera.post_empty("/api/apps/shop/pause").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = vera.delete("/api/apps/shop/jobs/restock").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(vera.get("/api/users").await?.0, StatusCode::FORBIDDEN);
    assert_eq!(vera.get("/api/audit").await?.0, StatusCode::FORBIDDEN);

    // Too short a password, an unknown app: refused, saying which.
    let (status, body) = api
        .post(
            "/api/users",
            json!({"name": "x", "password": "short", "role": "viewer"}),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap_or("").contains("password"),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/api/users",
            json!({"name": "x", "password": "long-enough", "role": "viewer", "apps": ["nope"]}),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap_or("").contains("nope"),
        "{body}"
    );

    // A deleted user's session stops at once; the last admin cannot go.
    let (status, _) = api.delete("/api/users/vera").await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(vera.get("/api/apps").await?.0, StatusCode::UNAUTHORIZED);
    let (status, body) = api.delete("/api/users/admin").await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    Ok(())
}

#[tokio::test]
async fn an_app_scoped_operator_sees_and_runs_only_its_app() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    s.admin.create_app("shop", "").await?;
    s.admin.create_app("billing", "").await?;
    s.apply("shop", SHOP_AND_BILLING).await?;
    s.scheduler().await?;
    let api = s.admin_api().await?;
    let (status, _) = api
        .post(
            "/api/users",
            json!({"name": "otto", "password": "otto-password", "role": "operator", "apps": ["shop"]}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let otto = s.login("otto", "otto-password").await?;

    let apps = otto.expect("/api/apps", StatusCode::OK).await?;
    let names: Vec<&str> = apps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["shop"]);
    for path in [
        "/api/apps/billing",
        "/api/apps/billing/jobs",
        "/api/apps/billing/jobs/invoice",
        "/api/apps/billing/job-rows",
        "/api/instances?app=billing",
    ] {
        let (status, body) = otto.get(path).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = otto
        .post_empty("/api/apps/billing/jobs/invoice/trigger")
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = otto.post_empty("/api/apps/billing/pause").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its own app: it runs jobs, but does not change them.
    let (status, mine) = otto
        .post_empty("/api/apps/shop/jobs/restock/trigger")
        .await?;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let (status, _) = otto
        .put(
            "/api/apps/shop/jobs/restock",
            json!({"app": "shop", "name": "restock", "kind": "plugin", "handler": "sleep"}),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An instance of the other app, by id: not found for it, there for the admin.
    let (_, theirs) = api
        .post_empty("/api/apps/billing/jobs/invoice/trigger")
        .await?;
    let theirs = theirs["instance"].as_str().unwrap_or_default().to_string();
    let mine = mine["instance"].as_str().unwrap_or_default().to_string();
    let path = format!("/api/instances/{theirs}");
    wait_ok(&api, &path).await?;
    wait_ok(&otto, &format!("/api/instances/{mine}")).await?;
    assert_eq!(otto.get(&path).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(
        otto.post_empty(&format!("{path}/cancel")).await?.0,
        StatusCode::NOT_FOUND
    );
    let listed = otto.expect("/api/instances", StatusCode::OK).await?;
    let text = listed.to_string();
    assert!(text.contains(&mine) && !text.contains(&theirs), "{listed}");
    let all = api
        .expect("/api/instances", StatusCode::OK)
        .await?
        .to_string();
    assert!(all.contains(&mine) && all.contains(&theirs));
    Ok(())
}

/// Waits until GET `path` answers 200.
pub async fn wait_ok(api: &crate::support::Api, path: &str) -> anyhow::Result<Value> {
    antares_nats::wait::wait_for(path, crate::support::WAIT, || async {
        match api.get(path).await {
            Ok((StatusCode::OK, body)) => Some(body),
            _ => None,
        }
    })
    .await
    .map_err(anyhow::Error::msg)
}

#[tokio::test]
async fn user_and_token_changes_are_in_the_audit_log_with_who_made_them() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let api = s.admin_api().await?;
    api.post(
        "/api/users",
        json!({"name": "vera", "password": "vera-password", "role": "viewer"}),
    )
    .await?;
    let (_, created) = api
        .post("/api/tokens", json!({"name": "ci", "role": "viewer"}))
        .await?;
    let id = created["token"]["id"].as_str().unwrap_or_default();
    api.delete(&format!("/api/tokens/{id}")).await?;
    api.delete("/api/users/vera").await?;
    let log = api.expect("/api/audit?limit=20", StatusCode::OK).await?;
    let entries = log.as_array().cloned().unwrap_or_default();
    for (action, target) in [
        ("user.create", "vera"),
        ("token.create", "ci"),
        ("token.delete", "ci"),
        ("user.delete", "vera"),
    ] {
        let found = entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .ok_or_else(|| anyhow::anyhow!("no {action} of {target} in {log}"))?;
        assert_eq!(found["actor"]["name"], "admin", "{found}");
        assert_eq!(found["actor"]["via"], "console", "{found}");
    }
    let text = log.to_string();
    assert!(
        !text.contains("password"),
        "no password or hash in the log: {text}"
    );
    Ok(())
}
