//! Script and command jobs against a real nats-server: environment, output as log
//! lines, exit statuses, refusal, timeouts, stops from the scheduler, capped errors.

mod common;

use std::time::Duration;

use antares_nats::wait::wait_for;
use antares_schemas::limits::MAX_ERROR_BYTES;
use antares_schemas::messages::{
    Execution, LogStream, ReportKind, ScriptLang, ShardOutcome, ShardTask, StopOutcome,
};
use anyhow::anyhow;
use common::{Bench, WAIT, command, spawn, stop_all, task};
use tokio::time::Instant;

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
    let lines = bench.logs_until(&t, |l| l.len() >= 3).await?;
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
        let lines = bench.logs_until(&t, |l| !l.is_empty()).await?;
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
    bench.publish_to("w1", &t).await?;
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
        .logs_until(t, |l| {
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
    let lines = bench.log_containing(&t, "got TERM").await?;
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

#[tokio::test]
async fn a_stop_from_the_scheduler_kills_a_running_script() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    // The default stop grace (3 s): a script that ends on SIGTERM must not wait it out.
    let worker = spawn(bench.worker("billing", "w1").allow_scripts(true)).await?;
    let mut t = task("billing", "long", command("echo $$; sleep 1000"));
    t.run = 3;
    bench.publish(&t).await?;
    let group = printed_pids(&bench, &t, 1).await?[0];

    // None of these concern this shard, or can be read; the worker carries on.
    bench.stop_raw(&t, b"not a stop".to_vec()).await?;
    let mut other_run = stop_all(&t, StopOutcome::TimedOut, "another run");
    other_run.run = Some(2);
    bench.stop(&t, &other_run).await?;
    let mut other_item = stop_all(&t, StopOutcome::TimedOut, "another item");
    other_item.item = Some(1);
    bench.stop(&t, &other_item).await?;
    let other_instance = task("billing", "long", command("true"));
    bench
        .stop(
            &other_instance,
            &stop_all(&other_instance, StopOutcome::TimedOut, "another instance"),
        )
        .await?;

    let mut this = stop_all(&t, StopOutcome::Cancelled, "cancelled by alice");
    this.item = Some(0);
    this.run = Some(3);
    let asked = Instant::now();
    bench.stop(&t, &this).await?;
    let (outcome, report) = bench.outcome(t.instance, 0).await?;
    let took = asked.elapsed();
    // Stops that did not match would have ended it as timed out.
    assert_eq!(outcome, ShardOutcome::Cancelled);
    assert_eq!((report.run, report.attempt), (3, 1));
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
    assert!(
        group_members(group).is_empty(),
        "the script's group is gone"
    );
    bench
        .log_containing(&t, "stopped by the scheduler: cancelled by alice")
        .await?;
    // Acked, not handed back: nothing is left to run again.
    bench
        .until_queue_empty("the cancelled item to be acked")
        .await?;

    // The worker still runs shards, and still hears stops.
    let mut t = task("billing", "again", command("echo $$; sleep 1000"));
    t.timeout_ms = 60_000;
    bench.publish(&t).await?;
    printed_pids(&bench, &t, 1).await?;
    bench
        .stop(
            &t,
            &stop_all(&t, StopOutcome::TimedOut, "timed out after 10s"),
        )
        .await?;
    assert_eq!(
        bench.outcome(t.instance, 0).await?.0,
        ShardOutcome::TimedOut {
            error: "timed out after 10s".into()
        }
    );
    worker.stop().await
}

#[tokio::test]
async fn a_huge_stderr_is_capped_in_the_report() -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let worker = spawn(bench.worker("billing", "w1").allow_scripts(true)).await?;
    let t = task(
        "billing",
        "loud",
        command("head -c 100000 /dev/zero | tr '\\0' x >&2; echo >&2; echo the end >&2; exit 1"),
    );
    bench.publish(&t).await?;
    let ShardOutcome::Failed { error } = bench.outcome(t.instance, 0).await?.0 else {
        return Err(anyhow!("must fail"));
    };
    assert!(error.len() <= MAX_ERROR_BYTES, "{} bytes", error.len());
    // The tail is kept: the last line, and as much before it as fits.
    assert!(error.ends_with("xxx\nthe end"), "{error}");
    assert!(error.len() > MAX_ERROR_BYTES / 2, "{} bytes", error.len());
    worker.stop().await
}

/// Contract §9: scripts get their job's variables, `PATH`, `HOME`, `LANG`, `TZ` and the
/// names the worker lists, and nothing else of the worker's environment.
#[tokio::test]
async fn scripts_get_only_the_environment_the_contract_names() -> anyhow::Result<()> {
    // Set by the test runner in this process: the worker's own environment.
    let secret = "CARGO_MANIFEST_DIR";
    let listed = "CARGO_PKG_NAME";
    anyhow::ensure!(std::env::var_os(secret).is_some() && std::env::var_os(listed).is_some());
    let mut bench = Bench::start().await?;
    let worker = spawn(
        bench
            .worker("billing", "w1")
            .allow_scripts(true)
            .script_env([listed]),
    )
    .await?;
    let t = task(
        "billing",
        "env",
        command("env | cut -d= -f1 | sort | tr '\\n' ' '"),
    );
    bench.publish(&t).await?;
    assert_eq!(bench.outcome(t.instance, 0).await?.0, ShardOutcome::Success);
    let lines = bench.logs_until(&t, |l| !l.is_empty()).await?;
    let names: Vec<&str> = lines
        .iter()
        .flat_map(|l| l.line.split_whitespace())
        .collect();
    assert!(
        names.contains(&"PATH") && names.contains(&listed),
        "{names:?}"
    );
    assert!(names.contains(&"ANTARES_INSTANCE_ID"), "{names:?}");
    assert!(
        !names.contains(&secret),
        "the worker's environment leaked: {names:?}"
    );
    let unexpected: Vec<&&str> = names
        .iter()
        .filter(|n| {
            !n.starts_with("ANTARES_")
                && !["PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_", listed].contains(n)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "more than the contract names: {unexpected:?}"
    );
    worker.stop().await
}
