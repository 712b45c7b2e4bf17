//! Script and command jobs against a real nats-server: environment, output as log
//! lines, exit statuses, refusal, timeouts.

mod common;

use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_schemas::messages::{
    Execution, LogStream, ReportKind, ScriptLang, ShardOutcome, ShardTask,
};
use anyhow::anyhow;
use common::{Bench, WAIT, command, spawn, task};

#[tokio::test]
async fn scripts_see_their_shard_and_their_output_is_logged() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").allow_scripts(true)).await?;
    let mut t = task(
        "billing",
        "export",
        command(
            "echo \"$ANTARES_APP $ANTARES_JOB $ANTARES_INSTANCE_ID $ANTARES_SHARD_ITEM \
             $ANTARES_SHARD_TOTAL $ANTARES_SHARD_PARAM $ANTARES_PARAMS $ANTARES_ATTEMPT\"; \
             echo warning >&2; printf 'no newline'",
        ),
    );
    t.item = 1;
    t.total = 4;
    t.param = "{\"x\":1}".into();
    t.params = "full".into();
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 1).await?.0, ShardOutcome::Success);
    let lines = bench.logs_until(t.instance, |l| l.len() >= 3).await?;
    let text = |s: LogStream| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.stream == s)
            .map(|l| l.line.as_str())
            .collect()
    };
    let expected = format!("billing export {} 1 4 {{\"x\":1}} full 1", t.instance);
    assert_eq!(text(LogStream::Stdout), [expected.as_str(), "no newline"]);
    assert_eq!(text(LogStream::Stderr), ["warning"]);
    assert!(
        lines
            .iter()
            .all(|l| l.item == 1 && l.attempt == 1 && l.worker == "w1")
    );

    for (lang, program, source) in [
        (
            ScriptLang::Python,
            "python3",
            "import os\nprint('python', os.environ['ANTARES_SHARD_PARAM'])",
        ),
        (
            ScriptLang::Node,
            "node",
            "console.log('node', process.env.ANTARES_SHARD_PARAM)",
        ),
    ] {
        if !installed(program) {
            eprintln!("skipping the {lang:?} script: `{program}` is not installed");
            continue;
        }
        let mut t = task(
            "billing",
            "interpreted",
            Execution::Script {
                lang,
                source: source.into(),
            },
        );
        t.param = "p7".into();
        bench.publish(&t).await?;
        assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
        let lines = bench.logs_until(t.instance, |l| !l.is_empty()).await?;
        assert_eq!(
            lines[0].line,
            format!("{} p7", program.trim_end_matches('3'))
        );
    }
    worker.stop().await
}

#[tokio::test]
async fn exit_statuses_map_to_results() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .allow_scripts(true)
            .later_delay(Duration::from_millis(200)),
    )
    .await?;
    // 75 = later: runs again as attempt 2, which succeeds.
    let t = task(
        "billing",
        "retry",
        command("[ \"$ANTARES_ATTEMPT\" = 1 ] && exit 75; exit 0"),
    );
    bench.publish(&t).await?;
    let (outcome, r) = bench.outcome(t.instance, 0).await?;
    assert_eq!((outcome, r.attempt), (ShardOutcome::Later, 1));
    let (outcome, r) = bench.outcome(t.instance, 0).await?;
    assert_eq!((outcome, r.attempt), (ShardOutcome::Success, 2));

    let t = task(
        "billing",
        "bad",
        command("echo starting; echo 'first problem' >&2; echo 'input row 7 is bad' >&2; exit 3"),
    );
    bench.publish(&t).await?;
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::Failed {
            error: "first problem\ninput row 7 is bad".into()
        }
    );

    let t = task("billing", "quiet", command("exit 3"));
    bench.publish(&t).await?;
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::Failed {
            error: "exit status 3".into()
        }
    );

    let t = task("billing", "signal", command("kill -9 $$"));
    bench.publish(&t).await?;
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::Failed {
            error: "killed by signal 9".into()
        }
    );
    worker.stop().await
}

#[tokio::test]
async fn scripts_are_refused_unless_allowed() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1")).await?;
    let t = task("billing", "export", command("echo this must not run"));
    bench.publish(&t).await?;
    let seen = bench.until_finished(t.instance, 0).await?;
    let ReportKind::Finished { outcome, .. } = &seen[seen.len() - 1].kind else {
        return Err(anyhow!("not finished"));
    };
    assert_eq!(
        outcome,
        &ShardOutcome::Failed {
            error: "scripts are refused by worker `w1`; start it with --allow-scripts".into()
        }
    );
    worker.stop().await
}

/// Whether a program is on the PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether a process is gone (or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The live (not zombie) processes of a process group.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name: state, parent, process group, ...
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        let group: u32 = fields.nth(1)?.parse().ok()?;
        (group == pgid && state != "Z").then_some(pid)
    })
    .collect()
}

/// The pids a script printed, one per line, in the order printed.
async fn printed_pids(bench: &Bench, t: &ShardTask, count: usize) -> anyhow::Result<Vec<u32>> {
    let lines = bench
        .logs_until(t.instance, |l| {
            l.iter().filter(|l| l.stream == LogStream::Stdout).count() >= count
        })
        .await?;
    lines
        .iter()
        .filter(|l| l.stream == LogStream::Stdout)
        .take(count)
        .map(|l| Ok(l.line.trim().parse()?))
        .collect()
}

#[tokio::test]
async fn a_timed_out_script_gets_sigterm_then_its_whole_group_is_killed() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .allow_scripts(true)
            .stop_grace(Duration::from_millis(500)),
    )
    .await?;
    // The script (its process group's leader) says it got SIGTERM; the child it starts
    // ignores SIGTERM, so only SIGKILL ends it.
    let mut t = task(
        "billing",
        "stuck",
        command(
            "trap 'echo got TERM >&2; exit 1' TERM; echo $$; \
             sh -c 'trap \"\" TERM; sleep 1000' & echo $!; sleep 1000",
        ),
    );
    t.timeout_ms = 1000;
    bench.publish(&t).await?;
    let pids = printed_pids(&bench, &t, 2).await?;
    let (group, stubborn) = (pids[0], pids[1]);
    assert!(!group_members(group).is_empty(), "the script runs");
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::TimedOut {
            error: "timed out after 1s".into()
        }
    );
    let lines = bench.log_containing(t.instance, "got TERM").await?;
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Log && l.line == "timed out after 1s: stopping"),
        "{lines:?}"
    );
    wait_for(
        "every process of the script's group to die",
        WAIT,
        || async move { (gone(stubborn) && group_members(group).is_empty()).then_some(()) },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    bench
        .until_queue_empty("the timed-out item to be acked")
        .await?;
    worker.stop().await
}
