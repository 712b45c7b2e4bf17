//! Script jobs (contract §9): a command line or a stored script run by `sh`, `python3` or
//! `node` in its own process group, its output streamed line by line into the shard's
//! log, its exit status mapped to a [`JobResult`].
//!
//! Exit 0 is `Success`, 75 (`EX_TEMPFAIL`) is `Later`, anything else (or a signal) is
//! `Fail` with the last lines of standard error (at most
//! [`MAX_ERROR_BYTES`](antares_schemas::limits::MAX_ERROR_BYTES)).
//!
//! When the shard must stop (timeout, a stop from the scheduler, forced shutdown) the
//! whole process group gets `SIGTERM`; once the group is gone, or the worker's
//! `stop_grace` is over, it gets `SIGKILL`, so whatever the script started dies with it,
//! even a process that ignores `SIGTERM`. The output keeps being read meanwhile, so a
//! script cleaning up is never blocked writing and its last lines reach the log. A
//! dropped script future (the shard aborted) kills the group too.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_schemas::limits::MAX_ERROR_BYTES;
use antares_schemas::messages::{Execution, LogStream, ScriptLang};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::context::JobContext;
use crate::job::JobResult;

/// The worker's environment variables every script gets (when set).
const PASSED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Exit status meaning "run me again later".
pub const EXIT_LATER: i32 = 75;
/// Lines of standard error kept for the error message.
const TAIL_LINES: usize = 10;
/// Bytes of standard error kept for the error message (with the mark of a cut, it fits
/// the error cap).
const TAIL_BYTES: usize = MAX_ERROR_BYTES - CUT.len();
/// Marks the start of a cut standard error tail.
const CUT: &str = "…";
/// Longest log line; longer output is split.
const MAX_LINE: u64 = 64 * 1024;
/// How long output may keep flowing after the script's main process exited (from
/// processes it left behind) before the group is killed.
const LINGER: Duration = Duration::from_secs(1);
/// First and longest pause between checks whether a stopping script's process group is
/// gone.
const GONE_POLL: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(100));

/// The program and arguments that run an execution, or `None` when it is no script.
pub(crate) fn command_line(exec: &Execution) -> Option<(&'static str, [&str; 2])> {
    match exec {
        Execution::Command { command } => Some(("sh", ["-c", command])),
        Execution::Script { lang, source } => Some(match lang {
            ScriptLang::Shell => ("sh", ["-c", source]),
            ScriptLang::Python => ("python3", ["-c", source]),
            ScriptLang::Node => ("node", ["-e", source]),
        }),
        Execution::Plugin { .. } | Execution::Http { .. } => None,
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Whether any process of the group is left.
    async fn alive(&self) -> bool {
        let Some(pgid) = self.pgid else {
            return false;
        };
        if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
            return false;
        }
        // Zombies count for `kill`: look closer where the system lets us.
        tokio::task::spawn_blocking(move || live_member(pgid).unwrap_or(true))
            .await
            .unwrap_or(true)
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a process group has a member that is not a zombie; `None` where that cannot
/// be told (no `/proc`).
///
/// When a script's shell exits, what it started is handed to init, and a process of it
/// that died stays a zombie until init reaps it, which may take seconds (in a container,
/// init is often not built for it): counting zombies would keep a stopped script waiting
/// for nothing.
fn live_member(pgid: i32) -> Option<bool> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let dir = std::fs::read_dir("/proc").ok()?;
    let live = dir.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (command) state ppid pgrp ...`; the command may hold anything.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        group == Some(pgid) && state != Some("Z")
    });
    Some(live)
}

/// The last lines of standard error.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }

    fn text(&self) -> String {
        let joined = self
            .lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        let trimmed = joined.trim();
        if trimmed.len() <= TAIL_BYTES {
            return trimmed.to_string();
        }
        let mut start = trimmed.len() - TAIL_BYTES;
        while !trimmed.is_char_boundary(start) {
            start += 1;
        }
        format!("{CUT}{}", &trimmed[start..])
    }
}

/// Runs a script execution for a shard; `exec` must be a command or a script.
pub(crate) async fn run(ctx: JobContext, passed: Vec<String>) -> JobResult {
    let exec = ctx.task().exec.clone();
    let Some((program, args)) = command_line(&exec) else {
        return JobResult::Fail("not a script job".into());
    };
    let task = ctx.task();
    let mut cmd = Command::new(program);
    // Only what contract §9 names: never the worker's secrets.
    cmd.env_clear();
    for name in PASSED_ENV
        .iter()
        .copied()
        .chain(passed.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.args(args)
        .env("ANTARES_APP", &task.app)
        .env("ANTARES_JOB", &task.job)
        .env("ANTARES_INSTANCE_ID", task.instance.to_string())
        .env("ANTARES_SHARD_ITEM", task.item.to_string())
        .env("ANTARES_SHARD_TOTAL", task.total.to_string())
        .env("ANTARES_SHARD_PARAM", &task.param)
        .env("ANTARES_PARAMS", &task.params)
        .env("ANTARES_ATTEMPT", ctx.attempt().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return JobResult::Fail(format!(
                "cannot run `{program}`: it is not installed on worker `{}` (not found on its PATH)",
                ctx.worker_id()
            ));
        }
        Err(e) => {
            return JobResult::Fail(format!(
                "cannot start `{program}` on worker `{}`: {e}",
                ctx.worker_id()
            ));
        }
    };
    let mut group = GroupGuard {
        pgid: child.id().and_then(|pid| i32::try_from(pid).ok()),
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let out = pump(child.stdout.take(), LogStream::Stdout, ctx.clone(), None);
    let err = pump(
        child.stderr.take(),
        LogStream::Stderr,
        ctx.clone(),
        Some(tail.clone()),
    );
    let io = futures::future::join(out, err);
    tokio::pin!(io);
    let mut io_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = &mut io, if !io_done => io_done = true,
            () = ctx.cancelled() => {
                group.signal(Signal::SIGTERM);
                let deadline = tokio::time::Instant::now() + ctx.stop_grace();
                let mut exited = false;
                let mut pause = GONE_POLL.0;
                // Until the group is gone or the grace is over, reading its output.
                let gone = loop {
                    tokio::select! {
                        _ = child.wait(), if !exited => exited = true,
                        _ = &mut io, if !io_done => io_done = true,
                        () = tokio::time::sleep_until(deadline) => break false,
                        () = tokio::time::sleep(pause), if exited => {
                            if !group.alive().await {
                                break true;
                            }
                            pause = (pause * 2).min(GONE_POLL.1);
                        }
                    }
                };
                if !gone {
                    // Someone is left in the group (so its id is still taken): kill it.
                    group.kill();
                }
                if !exited {
                    let _ = child.wait().await;
                }
                if !io_done {
                    let _ = tokio::time::timeout(LINGER, &mut io).await;
                }
                group.disarm();
                return JobResult::Fail("stopped: the script's process group was killed".into());
            }
        }
    };
    if !io_done && tokio::time::timeout(LINGER, &mut io).await.is_err() {
        // Something the script started still holds its output open.
        group.kill();
        let _ = tokio::time::timeout(LINGER, &mut io).await;
    }
    group.disarm();
    let tail = tail.lock().map(|t| t.text()).unwrap_or_default();
    match status {
        Ok(status) => outcome(status, &tail),
        Err(e) => JobResult::Fail(format!("lost track of `{program}`: {e}")),
    }
}

/// Maps an exit status and the tail of standard error to a result.
fn outcome(status: ExitStatus, tail: &str) -> JobResult {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => JobResult::Success,
        (Some(EXIT_LATER), _) => JobResult::Later,
        _ if !tail.is_empty() => JobResult::Fail(tail.to_string()),
        (Some(code), _) => JobResult::Fail(format!("exit status {code}")),
        (None, Some(sig)) => JobResult::Fail(format!("killed by signal {sig}")),
        (None, None) => JobResult::Fail(format!("ended abnormally ({status})")),
    }
}

/// Reads an output line by line into the shard's log (and the tail, if given).
async fn pump<R: AsyncRead + Unpin>(
    reader: Option<R>,
    stream: LogStream,
    ctx: JobContext,
    tail: Option<Arc<Mutex<Tail>>>,
) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if let Some(tail) = &tail
                    && let Ok(mut t) = tail.lock()
                {
                    t.push(&line);
                }
                ctx.log_output(stream, line).await;
            }
            Err(e) => {
                tracing::warn!("cannot read the script's {stream:?}: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_statuses() {
        assert_eq!(
            outcome(ExitStatus::from_raw(0), "noise"),
            JobResult::Success
        );
        assert_eq!(outcome(ExitStatus::from_raw(75 << 8), ""), JobResult::Later);
        assert_eq!(
            outcome(ExitStatus::from_raw(3 << 8), ""),
            JobResult::Fail("exit status 3".into())
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(3 << 8), "bad input"),
            JobResult::Fail("bad input".into())
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(9), ""),
            JobResult::Fail("killed by signal 9".into())
        );
    }

    #[test]
    fn tail_keeps_the_last_lines_and_bytes() {
        let mut t = Tail::default();
        for i in 0..25 {
            t.push(&format!("line {i}"));
        }
        let text = t.text();
        assert!(
            text.starts_with("line 15") && text.ends_with("line 24"),
            "{text}"
        );
        let mut t = Tail::default();
        t.push(&"é".repeat(3000));
        let text = t.text();
        assert!(
            text.starts_with(CUT) && text.len() <= MAX_ERROR_BYTES,
            "{}",
            text.len()
        );
    }
}
