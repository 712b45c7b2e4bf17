//! Starting: no default password outside `antares dev`; the configured one wins.

use antares_console::{AdminSeed, Console, ConsoleError, ConsoleOptions, SeedOutcome};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ADMIN_PASSWORD, Setup};

fn with_password(password: Option<&str>) -> ConsoleOptions {
    ConsoleOptions {
        admin: AdminSeed {
            user: "admin".into(),
            password: password.map(str::to_string),
            reset: true,
        },
        ..ConsoleOptions::default()
    }
}

#[tokio::test]
async fn refuses_to_start_without_an_admin_or_a_password() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    // Another namespace of the same server has no users at all.
    let nats = antares_nats::Nats::connect(
        &antares_nats::ConnectOptions::url(s.server.url()),
        antares_schemas::Topology::new("other")?,
    )
    .await?;
    antares_nats::provision::provision(
        &nats,
        &antares_nats::provision::ProvisionOptions {
            memory: true,
            ..Default::default()
        },
    )
    .await?;
    let err = Console::open(&nats, with_password(None))
        .await
        .expect_err("no admin, no password");
    assert!(matches!(err, ConsoleError::NoAdmin { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ANTARES_CONSOLE_PASSWORD") && text.contains("console_password"),
        "{text}"
    );
    let err = Console::open(&nats, with_password(Some("short")))
        .await
        .expect_err("too short");
    assert!(err.to_string().contains("console_password"), "{err}");

    // Once an admin exists, a console starts without a password configured.
    let c = Console::open(&s.nats, with_password(None)).await?;
    assert_eq!(c.seeded(), SeedOutcome::NotConfigured);
    Ok(())
}

#[tokio::test]
async fn a_configured_password_resets_the_admins() -> anyhow::Result<()> {
    let mut s = Setup::start().await?;
    let c = Console::open(&s.nats, with_password(Some(ADMIN_PASSWORD))).await?;
    assert_eq!(c.seeded(), SeedOutcome::Unchanged);
    let base = s.serve(with_password(Some("a-new-password"))).await?;
    let login = |password: &'static str| {
        let url = format!("{base}/api/login");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"user": "admin", "password": password}))
                .send()
                .await
                .map(|r| r.status())
        }
    };
    assert_eq!(login("a-new-password").await?, StatusCode::OK);
    assert_eq!(login(ADMIN_PASSWORD).await?, StatusCode::UNAUTHORIZED);

    // `reset` off (dev against a NATS it did not start): an existing admin is kept.
    let kept = Console::open(
        &s.nats,
        ConsoleOptions {
            admin: AdminSeed {
                user: "admin".into(),
                password: Some("antares-dev".into()),
                reset: false,
            },
            ..ConsoleOptions::default()
        },
    )
    .await?;
    assert_eq!(kept.seeded(), SeedOutcome::Kept);
    assert_eq!(login("a-new-password").await?, StatusCode::OK);
    Ok(())
}
