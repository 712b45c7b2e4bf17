//! TLS to NATS: a generated CA and server certificate, nats-server with `tls {}`, and
//! the stock scheduler, worker and CLI connecting with `--tls-ca`; without it (or with
//! another CA) the connection is refused with an error that says what to do.

mod support;

use std::path::Path;
use std::process::Output;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::{LocalServer, ServerOptions};
use antares_nats::{ConnectOptions, Nats};
use antares_schemas::Topology;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::antares_process;

/// A CA (its certificate as PEM) and a server certificate and key it signed for
/// `localhost` and `127.0.0.1`, written into `dir`; returns the CA file.
fn certificates(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
        .signed_by(&key, &ca)?;
    std::fs::write(dir.join(format!("{name}-server.pem")), cert.pem())?;
    std::fs::write(
        dir.join(format!("{name}-server-key.pem")),
        key.serialize_pem(),
    )?;
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca.pem())?;
    Ok(ca_file)
}

async fn cli(args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_connects_with_the_ca_and_nothing_without_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = certificates(dir.path(), "good")?;
    let other_ca = certificates(dir.path(), "other")?;
    let conf = dir.path().join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            dir.path().join("good-server.pem").display(),
            dir.path().join("good-server-key.pem").display()
        ),
    )?;
    let server = LocalServer::start(&ServerOptions {
        store_dir: dir.path().join("store"),
        config: Some(conf),
        ..ServerOptions::default()
    })?;
    let url = server.url();
    let ca_arg = ca.display().to_string();

    let nats = Nats::connect(
        &ConnectOptions {
            tls_ca: Some(ca.clone()),
            ..ConnectOptions::url(&url)
        },
        Topology::new("ats")?,
    )
    .await?;
    provision(
        &nats,
        &ProvisionOptions {
            memory: true,
            ..ProvisionOptions::default()
        },
    )
    .await?;

    let tls = ["--nats-url", url.as_str(), "--tls-ca", ca_arg.as_str()];
    let created = cli(&[&tls[..], &["app", "create", "secure"]].concat()).await?;
    assert!(created.status.success(), "{}", text(&created));
    let jobs = dir.path().join("jobs.toml");
    std::fs::write(
        &jobs,
        "[[job]]\napp = \"secure\"\nname = \"hello\"\nhandler = \"noop\"\nshards = 2\n",
    )?;
    let jobs_arg = jobs.display().to_string();
    let applied = cli(&[&tls[..], &["job", "apply", "-f", jobs_arg.as_str()]].concat()).await?;
    assert!(applied.status.success(), "{}", text(&applied));

    let _scheduler = antares_process(&url, &["--tls-ca", &ca_arg, "scheduler", "--id", "s1"])?;
    let _worker = antares_process(
        &url,
        &[
            "--tls-ca", &ca_arg, "worker", "--app", "secure", "--id", "w1",
        ],
    )?;
    let ran = cli(&[
        &tls[..],
        &[
            "job",
            "trigger",
            "secure/hello",
            "--wait",
            "--timeout",
            "20s",
        ],
    ]
    .concat())
    .await?;
    assert!(ran.status.success(), "{}", text(&ran));
    assert!(text(&ran).contains("success"), "{}", text(&ran));

    // Without the CA, or with another one, the server's certificate is not trusted.
    let plain = cli(&["--nats-url", url.as_str(), "app", "list"]).await?;
    assert!(!plain.status.success());
    let said = text(&plain);
    assert!(
        said.contains("--tls-ca") && said.contains("certificate"),
        "{said}"
    );
    let other_arg = other_ca.display().to_string();
    let wrong = cli(&[
        "--nats-url",
        url.as_str(),
        "--tls-ca",
        &other_arg,
        "app",
        "list",
    ])
    .await?;
    assert!(!wrong.status.success());
    let said = text(&wrong);
    assert!(
        said.contains("--tls-ca") && said.contains("certificate"),
        "{said}"
    );
    let missing = cli(&[
        "--nats-url",
        url.as_str(),
        "--tls-ca",
        "/no/such/ca.pem",
        "app",
        "list",
    ])
    .await?;
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("--tls-ca: `/no/such/ca.pem`"),
        "{}",
        text(&missing)
    );
    Ok(())
}
