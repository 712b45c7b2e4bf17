//! A local nats-server process: what `antares dev` and `antares bench` start when no
//! `--nats-url` is given, and what every test runs against.
//!
//! The binary is looked up in `$ANTARES_NATS_SERVER`, then `.tools/bin/` of the
//! project (the install scripts put a pinned release there), then `PATH`. It must be
//! 2.11 or newer (per-message TTLs). The server listens on `127.0.0.1` on the given port
//! or a random free one (`-p -1`, read back from its log, so tests never race for
//! ports), stores in the given directory, and is killed when the handle is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{NatsError, Result};

/// Oldest server version Antares works with.
pub const MIN_VERSION: (u32, u32) = (2, 11);

const INSTALL_HINT: &str = "install it with `scripts/install-tools` (puts a pinned nats-server into .tools/bin) \
or point ANTARES_NATS_SERVER at a nats-server >= 2.11 binary";

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Binary to run; found automatically when `None`.
    pub binary: Option<PathBuf>,
    /// Client port; a random free one when `None`.
    pub port: Option<u16>,
    /// JetStream store directory.
    pub store_dir: PathBuf,
    /// Extra config file (`-c`).
    pub config: Option<PathBuf>,
}

/// A running nats-server; killed on drop.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    port: u16,
    store_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

/// Finds the nats-server binary.
pub fn find_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ANTARES_NATS_SERVER")
        && !p.is_empty()
    {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(NatsError::Server(format!(
                "ANTARES_NATS_SERVER points at `{}`, which is not a file; {INSTALL_HINT}",
                p.display()
            )))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    for root in roots {
        let candidate = root.join(".tools").join("bin").join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(NatsError::Server(format!(
        "no nats-server binary found; {INSTALL_HINT}"
    )))
}

/// Parses `nats-server: v2.15.1` into (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.rsplit('v').next()?.trim();
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks that a binary runs and is new enough.
pub fn check_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| {
            NatsError::Server(format!(
                "cannot run `{}`: {e}; {INSTALL_HINT}",
                binary.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_version(&text) {
        Some(v) if v >= MIN_VERSION => Ok(text),
        Some(_) => Err(NatsError::Server(format!(
            "`{}` is {text}, but Antares needs nats-server >= 2.11; {INSTALL_HINT}",
            binary.display()
        ))),
        None => Err(NatsError::Server(format!(
            "`{}` did not report a nats-server version ({text}); {INSTALL_HINT}",
            binary.display()
        ))),
    }
}

impl LocalServer {
    /// Starts a server in a fresh temporary directory on a random port.
    pub fn start_temp() -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("antares-nats-")
            .tempdir()
            .map_err(|e| NatsError::Server(format!("cannot make a temp dir: {e}")))?;
        let mut s = Self::start(&ServerOptions {
            store_dir: temp.path().to_path_buf(),
            ..ServerOptions::default()
        })?;
        s._temp = Some(temp);
        Ok(s)
    }

    /// Starts a server and waits until it accepts clients.
    pub fn start(opts: &ServerOptions) -> Result<Self> {
        let binary = match &opts.binary {
            Some(b) => b.clone(),
            None => find_binary()?,
        };
        check_version(&binary)?;
        std::fs::create_dir_all(&opts.store_dir).map_err(|e| {
            NatsError::Server(format!(
                "cannot create store dir `{}`: {e}",
                opts.store_dir.display()
            ))
        })?;
        let mut cmd = Command::new(&binary);
        if let Some(cfg) = &opts.config {
            cmd.arg("-c").arg(cfg);
        }
        cmd.arg("-js")
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(opts.port.map_or("-1".to_string(), |p| p.to_string()))
            .arg("-sd")
            .arg(&opts.store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| NatsError::Server(format!("cannot start `{}`: {e}", binary.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| NatsError::Server("nats-server stderr not captured".into()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Option<u16>>();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut port = None;
                let mut ready = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if port.is_none()
                        && let Some(rest) =
                            line.split("Listening for client connections on ").nth(1)
                    {
                        port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    }
                    if !ready && line.contains("Server is ready") {
                        ready = true;
                        let _ = tx.send(port);
                    }
                    if let Ok(mut l) = log.lock() {
                        if l.len() > 200 {
                            l.remove(0);
                        }
                        l.push(line);
                    }
                }
                if !ready {
                    let _ = tx.send(None);
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                return Err(NatsError::Server(format!(
                    "nats-server did not become ready ({}):\n{tail}",
                    if other.is_err() {
                        "timed out"
                    } else {
                        "it exited"
                    }
                )));
            }
        };
        Ok(Self {
            child,
            port,
            store_dir: opts.store_dir.clone(),
            log,
            _temp: None,
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Stops the server gracefully (SIGTERM), then waits for it.
    pub fn stop(&mut self) {
        #[cfg(unix)]
        {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").expect("v") < MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }
}
