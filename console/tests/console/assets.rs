//! The web app's files, with client routes falling back to `index.html`.

use antares_console::Assets;
use reqwest::StatusCode;

use crate::support::Setup;

#[tokio::test]
async fn serves_the_app_and_index_for_client_routes() -> anyhow::Result<()> {
    let dist = tempfile::tempdir()?;
    std::fs::write(dist.path().join("index.html"), "<html>the app</html>")?;
    std::fs::write(dist.path().join("app.js"), "console.log(1)")?;
    let dir = dist.path().to_path_buf();
    let s = Setup::start_with(|mut o| {
        o.assets = Assets::Dir(dir);
        o
    })
    .await?;
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/instances/01JD3W6TQ6D0XGZ8M2Y5C9K7PE",
        "/jobs/shop/report",
    ] {
        let res = http.get(format!("{}{path}", s.base)).send().await?;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.text().await?, "<html>the app</html>", "{path}");
    }
    let res = http.get(format!("{}/app.js", s.base)).send().await?;
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(kind.contains("javascript"), "{kind}");
    assert_eq!(res.text().await?, "console.log(1)");
    // The API's unknown paths stay JSON errors, never the app.
    let res = http.get(format!("{}/api/instancez", s.base)).send().await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = res.json().await?;
    assert!(body["error"].is_string(), "{body}");
    Ok(())
}

#[tokio::test]
async fn without_the_app_the_root_says_how_to_build_it() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let res = reqwest::get(format!("{}/", s.base)).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await?.contains("scripts/build-console"));
    s.admin_api()
        .await?
        .expect("/api/apps", StatusCode::OK)
        .await?;
    Ok(())
}
