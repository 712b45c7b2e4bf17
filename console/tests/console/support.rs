//! A console served on a free port against a real nats-server, and an HTTP client that
//! logs in with a cookie or a bearer token.

use std::time::Duration;

use antares_console::{AdminSeed, Assets, Console, ConsoleOptions};
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats};
use antares_scheduler::SchedulerOptions;
use antares_scheduler::admin::Admin;
use antares_schemas::Topology;
use antares_schemas::spec::{SpecFormat, parse_jobs};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// The configured admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password";

/// The options of a test's console: admin `admin` / [`ADMIN_PASSWORD`], no web app.
pub fn test_options() -> ConsoleOptions {
    ConsoleOptions {
        admin: AdminSeed {
            user: "admin".into(),
            password: Some(ADMIN_PASSWORD.into()),
            reset: true,
        },
        // No web app unless a test gives one.
        assets: Assets::Dir(std::env::temp_dir().join("antares-no-such-dist")),
        ..ConsoleOptions::default()
    }
}

/// A nats-server, provisioned, and a console serving on it.
pub struct Setup {
    pub server: LocalServer,
    pub nats: Nats,
    pub admin: Admin,
    pub base: String,
    tasks: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Setup {
    /// A console with the default options (admin `admin` / [`ADMIN_PASSWORD`]).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|o| o).await
    }

    /// A console with options changed by `change`.
    pub async fn start_with(
        change: impl FnOnce(ConsoleOptions) -> ConsoleOptions,
    ) -> anyhow::Result<Self> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        provision(
            &nats,
            &ProvisionOptions {
                memory: true,
                ..ProvisionOptions::default()
            },
        )
        .await?;
        let admin = Admin::open(&nats).await?;
        let mut setup = Self {
            server,
            nats,
            admin,
            base: String::new(),
            tasks: Vec::new(),
        };
        let opts = change(test_options());
        setup.base = setup.serve(opts).await?;
        Ok(setup)
    }

    /// Serves another console (on the same NATS connection) and returns its base URL.
    pub async fn serve(&mut self, opts: ConsoleOptions) -> anyhow::Result<String> {
        self.serve_on(&self.nats.clone(), opts).await
    }

    /// A new connection to the test's server.
    pub async fn connect(&self) -> anyhow::Result<Nats> {
        Ok(Nats::connect(
            &ConnectOptions::url(self.server.url()),
            Topology::new("ats")?,
        )
        .await?)
    }

    /// Serves another console on `nats` and returns its base URL.
    pub async fn serve_on(&mut self, nats: &Nats, opts: ConsoleOptions) -> anyhow::Result<String> {
        let console = Console::open(nats, opts).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = console.serve(listener, stop).await {
                eprintln!("console failed: {e}");
            }
        });
        self.tasks.push((tx, task));
        Ok(base)
    }

    /// A client that is not logged in.
    pub fn anonymous(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            auth: None,
        }
    }

    /// A client logged in as `user`.
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<Api> {
        let api = self.anonymous();
        let res = api
            .http
            .post(format!("{}/api/login", self.base))
            .json(&serde_json::json!({"user": user, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(
            res.status() == StatusCode::OK,
            "login of {user}: {}",
            res.status()
        );
        let cookie = session_cookie(&res).ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
        Ok(Api {
            auth: Some((COOKIE.as_str(), format!("antares_session={cookie}"))),
            ..api
        })
    }

    /// A client logged in as the configured admin.
    pub async fn admin_api(&self) -> anyhow::Result<Api> {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates an app and applies jobs written as TOML.
    pub async fn apply(&self, app: &str, toml: &str) -> anyhow::Result<()> {
        if self.admin.get_app(app).await.is_err() {
            self.admin.create_app(app, "").await?;
        }
        self.admin
            .apply_jobs(parse_jobs(toml, SpecFormat::Toml)?)
            .await?;
        Ok(())
    }

    /// Runs a scheduler in this process until the test ends.
    pub async fn scheduler(&mut self) -> anyhow::Result<()> {
        let nats = Nats::connect(
            &ConnectOptions::url(self.server.url()),
            Topology::new("ats")?,
        )
        .await?;
        let opts = SchedulerOptions {
            id: Some("s1".into()),
            lease_ttl: Duration::from_secs(2),
            lease_renew: Duration::from_millis(500),
            ..SchedulerOptions::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = antares_scheduler::run(nats, opts, stop).await {
                eprintln!("scheduler failed: {e}");
            }
        });
        self.tasks.push((tx, task));
        Ok(())
    }

    /// Runs a worker of `app` that runs scripts, in this process until the test ends.
    pub async fn worker(&mut self, app: &str) -> anyhow::Result<()> {
        let worker = antares_worker::Worker::builder()
            .app(app)
            .nats_url(self.server.url())
            .namespace("ats")
            .allow_scripts(true)
            .grace(Duration::from_secs(2))
            .with_builtins()
            .build()
            .await?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = worker.run_until(stop).await {
                eprintln!("worker failed: {e}");
            }
        });
        self.tasks.push((tx, task));
        Ok(())
    }
}

impl Setup {
    /// Stops every console, scheduler and worker, and waits for each to end.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        for (tx, task) in self.tasks.drain(..) {
            let _ = tx.send(());
            tokio::time::timeout(WAIT, task).await??;
        }
        Ok(())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for (tx, task) in self.tasks.drain(..) {
            let _ = tx.send(());
            task.abort();
        }
    }
}

/// The session id a `Set-Cookie` of a response gives.
pub fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("antares_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// An HTTP client of the API, with its credentials.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: Option<(&'static str, String)>,
}

impl Api {
    /// The same client with a bearer token instead.
    pub fn bearer(&self, secret: &str) -> Api {
        Api {
            auth: Some((AUTHORIZATION.as_str(), format!("Bearer {secret}"))),
            ..self.clone()
        }
    }

    /// A request with the credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((name, value)) => rb.header(*name, value),
            None => rb,
        }
    }

    async fn send(rb: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let res = rb.send().await?;
        let status = res.status();
        let text = res.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{status}: not JSON ({e}): {text}"))?
        };
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn post_empty(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(self.request(reqwest::Method::POST, path)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(self.request(reqwest::Method::PUT, path).json(&body)).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> anyhow::Result<(StatusCode, Value)> {
        Self::send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// GET that must answer `want`; its body.
    pub async fn expect(&self, path: &str, want: StatusCode) -> anyhow::Result<Value> {
        let (status, body) = self.get(path).await?;
        anyhow::ensure!(
            status == want,
            "GET {path}: {status} (wanted {want}): {body}"
        );
        Ok(body)
    }
}

/// Reads Server-Sent Events from a response: `(event name, data)` pairs, until the
/// stream ends.
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    pub fn new(res: reqwest::Response) -> Self {
        Self {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream has ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<(String, String)>> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok(Some((name, data.join("\n"))));
            }
            match tokio::time::timeout(WAIT, self.body.next()).await {
                Err(_) => anyhow::bail!("no event within {WAIT:?}"),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk?)),
            }
        }
    }
}
