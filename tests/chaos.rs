//! Chaos with real processes: three jobs firing every second on two `antares scheduler`s
//! and three `antares worker`s, while the leader and a busy worker are SIGKILLed (new
//! processes take their place) and later nats-server itself is SIGKILLed and restarted
//! on the same port and store.
//!
//! Afterwards every job's slots, from the first to the last, fired exactly once each;
//! every instance ended, and succeeded; and each shard ran once, except that a shard may
//! run again as a new attempt after its worker died (or its report was lost with the
//! server), and then its record says so.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use antares_nats::now;
use antares_nats::server::{LocalServer, ServerOptions};
use antares_nats::wait::wait_for;
use antares_schemas::instance::{
    Instance, InstanceStatus, InstanceSummary, ShardStatus, TriggerKind,
};
use antares_schemas::{InstanceId, Timestamp};
use support::{Env, WAIT, describe, scheduler_process, worker_process};
use tokio::process::Child;

const APP: &str = "chaos";
const JOBS: [&str; 3] = ["tick-a", "tick-b", "tick-c"];
/// How long nats-server stays down (the outage being simulated, not a wait): past the
/// scheduler's 10 s misfire threshold, so the slots it missed are made up by the jobs'
/// `misfire = "catch_up"` (trigger `misfire`) rather than simply fired late.
const OUTAGE: Duration = Duration::from_millis(12_000);

fn jobs_toml(log: &str) -> String {
    let mut toml = String::new();
    for job in JOBS {
        toml.push_str(&format!(
            "[[job]]\napp = \"{APP}\"\nname = \"{job}\"\nkind = \"script\"\n\
             command = 'echo \"$ANTARES_INSTANCE_ID $ANTARES_ATTEMPT $ANTARES_SHARD_ITEM $(date +%s%3N)\" >> {log}; sleep 1.5'\n\
             schedule = {{ every = \"1s\" }}\nmisfire = \"catch_up\"\n\
             overlap = \"parallel\"\nmax_parallel = 10\n\n"
        ));
    }
    toml
}

/// Every instance of every job, for failure messages.
async fn dump(env: &Env) -> String {
    let mut out = String::new();
    for job in JOBS {
        match env.all_instances(APP, job).await {
            Ok(list) => out.push_str(&format!("{job}:\n{}\n", describe(&list))),
            Err(e) => out.push_str(&format!("{job}: unreadable: {e}\n")),
        }
    }
    out
}

/// Waits until every job has `n` successful instances scheduled after `after`.
async fn each_job_succeeds(
    env: &Env,
    n: usize,
    after: Timestamp,
    when: &str,
) -> anyhow::Result<()> {
    for job in JOBS {
        if let Err(e) = env
            .instances_where(APP, job, n, |s| {
                s.status == InstanceStatus::Success && s.scheduled_at > after
            })
            .await
        {
            anyhow::bail!(
                "{when}: expected {n} successful instances of {job} scheduled after {after}: {e}\n{}",
                dump(env).await
            );
        }
    }
    Ok(())
}

/// A running shard that started in the last 500 ms (so it still runs for about a
/// second): its instance and worker.
async fn young_running_shard(env: &Env) -> Option<(InstanceId, String)> {
    let at = now();
    for job in JOBS {
        let list = env.all_instances(APP, job).await.ok()?;
        for s in list.iter().filter(|s| s.status == InstanceStatus::Running) {
            let Ok(inst) = env.admin.get_instance(&s.id).await else {
                continue;
            };
            if let Some(shard) = inst.shards.first()
                && shard.status == ShardStatus::Running
                && shard.run == 1
                && shard.started_at.is_some_and(|t| at.since(t) < 500)
                && let Some(w) = &shard.worker
            {
                return Some((s.id, w.clone()));
            }
        }
    }
    None
}

fn kill_at_once(children: &mut [Child]) -> anyhow::Result<Timestamp> {
    for c in children.iter_mut() {
        c.start_kill()?;
    }
    Ok(now())
}

#[tokio::test]
async fn fires_survive_killed_schedulers_workers_and_server() -> anyhow::Result<()> {
    let started = now();
    let mut env = Env::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("runs.log");
    let log_str = log
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("temp path is not UTF-8"))?
        .to_string();
    env.apply(APP, &jobs_toml(&log_str)).await?;

    let url = env.server.url();
    let mut schedulers: HashMap<String, Child> = HashMap::new();
    for id in ["sched-a", "sched-b"] {
        schedulers.insert(id.to_string(), scheduler_process(&url, id)?);
    }
    let mut workers: HashMap<String, Child> = HashMap::new();
    for id in ["w1", "w2", "w3"] {
        workers.insert(id.to_string(), worker_process(&url, APP, id, 3, true)?);
    }
    let env_ref = &env;
    let leader = wait_for("a scheduler to lead", WAIT, || async move {
        env_ref.lease_holder().await
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.workers_alive(APP, &["w1", "w2", "w3"]).await?;
    each_job_succeeds(&env, 3, Timestamp(0), "before any kill").await?;

    // Kill the leader and a worker in the middle of a shard, at the same moment.
    let (victim_instance, victim_worker) = wait_for(
        "a shard that just started on a worker",
        WAIT,
        || async move { young_running_shard(env_ref).await },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let mut victims = vec![
        schedulers
            .remove(&leader)
            .ok_or_else(|| anyhow::anyhow!("leader `{leader}` is not one of ours"))?,
        workers
            .remove(&victim_worker)
            .ok_or_else(|| anyhow::anyhow!("worker `{victim_worker}` is not one of ours"))?,
    ];
    let killed_at = kill_at_once(&mut victims)?;
    for v in &mut victims {
        v.wait().await?;
    }
    schedulers.insert("sched-c".into(), scheduler_process(&url, "sched-c")?);
    workers.insert("w4".into(), worker_process(&url, APP, "w4", 3, true)?);
    println!(
        "{:>6} ms: SIGKILLed leader {leader} and worker {victim_worker} (running instance {victim_instance})",
        killed_at.since(started)
    );

    let leader_ref = leader.as_str();
    let new_leader = wait_for("another scheduler to lead", WAIT, || async move {
        env_ref.lease_holder().await.filter(|h| h != leader_ref)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let lease_ms = now().since(killed_at);
    let admin = &env.admin;
    let rerun = wait_for(
        "the killed worker's shard to run again and end",
        WAIT,
        || async move {
            admin
                .get_instance(&victim_instance)
                .await
                .ok()
                .filter(|i| i.summary.status.is_final())
        },
    )
    .await;
    let rerun = match rerun {
        Ok(i) => i,
        Err(e) => anyhow::bail!("{e}\n{}", dump(&env).await),
    };
    let json = serde_json::to_string_pretty(&rerun).unwrap_or_default();
    assert_eq!(rerun.summary.status, InstanceStatus::Success, "{json}");
    assert!(
        rerun.shards[0].reruns >= 1 && rerun.shards[0].worker.as_deref() != Some(&victim_worker),
        "the shard of the killed worker ran again elsewhere: {json}"
    );
    assert_eq!(rerun.shards[0].retries, 0, "{json}");
    let rerun_ms = rerun.shards[0]
        .started_at
        .map_or(i64::MAX, |t| t.since(killed_at));
    each_job_succeeds(
        &env,
        2,
        killed_at.plus(Duration::from_secs(1)),
        "after the kills",
    )
    .await?;

    // Now the server itself: SIGKILL, an outage past the misfire threshold, then back on
    // the same port and store.
    let port = env.server.port();
    let store_dir = env.server.store_dir().to_path_buf();
    env.server.kill();
    let crashed_at = now();
    // The length of the outage, not a wait for anything.
    tokio::time::sleep(OUTAGE).await;
    // Nothing is delivered from the crash until now: a run before this took its item
    // before the crash.
    let restarting_at = now();
    let _restarted = LocalServer::start(&ServerOptions {
        port: Some(port),
        store_dir,
        ..ServerOptions::default()
    })?;
    let restarted_at = now();
    println!(
        "{:>6} ms: nats-server SIGKILLed; restarted {} ms later",
        crashed_at.since(started),
        restarted_at.since(crashed_at)
    );
    each_job_succeeds(
        &env,
        2,
        restarted_at.plus(Duration::from_secs(1)),
        "after the server restart",
    )
    .await?;
    let env_ref = &env;
    let admin = &env.admin;

    // Pause, and let everything in flight end.
    for job in JOBS {
        let paused = wait_for(&format!("pausing {job}"), WAIT, || async move {
            admin.set_job_enabled(APP, job, false).await.ok()
        })
        .await;
        paused.map_err(anyhow::Error::msg)?;
    }
    let paused_at = now();
    let ended = wait_for(
        "every instance to end after the pause",
        Duration::from_secs(30),
        || async move {
            // A slot that fell due as the pause was applied shows up within a second.
            if now().since(paused_at) < 1000 {
                return None;
            }
            let mut all = Vec::new();
            for job in JOBS {
                let list = env_ref.all_instances(APP, job).await.ok()?;
                if list.iter().any(|s| !s.status.is_final()) {
                    return None;
                }
                all.push(list);
            }
            Some(all)
        },
    )
    .await;
    let lists = match ended {
        Ok(l) => l,
        Err(e) => anyhow::bail!("{e}\n{}", dump(&env).await),
    };

    // What each execution wrote: "<instance> <attempt> <item> <start, ms since the epoch>".
    let text = std::fs::read_to_string(&log)?;
    let mut executions: HashMap<String, Vec<Ran>> = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [id, attempt, _item, at] = parts[..] else {
            anyhow::bail!("unreadable execution record `{line}`");
        };
        executions.entry(id.to_string()).or_default().push(Ran {
            attempt: attempt.parse()?,
            at: Timestamp(at.parse()?),
        });
    }

    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    let mut triggers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reran: Vec<String> = Vec::new();
    let mut first_fire_after_kill: Option<Timestamp> = None;
    let mut first_fire_after_restart: Option<Timestamp> = None;
    for (job, list) in JOBS.iter().zip(&lists) {
        let listing = describe(list);
        // Slots: consecutive, none missing, none twice.
        let mut slots: Vec<i64> = list.iter().map(|s| s.scheduled_at.millis()).collect();
        slots.sort_unstable();
        let n = slots.len();
        slots.dedup();
        assert_eq!(n, slots.len(), "{job}: a slot fired twice:\n{listing}");
        for pair in slots.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1000,
                "{job}: slots {} and {} are not 1 s apart (missing or extra fires):\n{listing}",
                Timestamp(pair[0]),
                Timestamp(pair[1])
            );
        }
        assert!(
            slots.first().is_some_and(|f| *f < killed_at.millis())
                && slots.last().is_some_and(|l| *l > restarted_at.millis()),
            "{job}: the slots span the kills and the restart:\n{listing}"
        );
        let caught_up = list
            .iter()
            .filter(|s| s.trigger == TriggerKind::Misfire)
            .count();
        assert!(
            caught_up > 0,
            "{job}: slots missed for more than 10 s during the outage are fired as misfires:\n{listing}"
        );
        println!(
            "{job}: {n} slots from {} to {}, each exactly once, 1 s apart; {caught_up} caught up after the outage",
            list.last().map_or(Timestamp(0), |s| s.scheduled_at),
            list.first().map_or(Timestamp(0), |s| s.scheduled_at)
        );
        for s in list {
            *statuses.entry(s.status.as_str()).or_default() += 1;
            *triggers.entry(s.trigger.as_str()).or_default() += 1;
            for (mark, first) in [
                (killed_at, &mut first_fire_after_kill),
                (restarted_at, &mut first_fire_after_restart),
            ] {
                if let Some(t) = s.started_at
                    && t > mark
                    && first.is_none_or(|f| t < f)
                {
                    *first = Some(t);
                }
            }
        }
        for s in list {
            let outage = (crashed_at, restarting_at);
            check_shard(&env, s, &executions, outage, &listing, &mut reran).await?;
        }
    }
    println!("statuses: {statuses:?}; triggers: {triggers:?}");
    let all_success = statuses.keys().all(|k| *k == "success");
    assert!(
        all_success,
        "every instance succeeded: {statuses:?}\n{}",
        dump(&env).await
    );
    println!(
        "takeover: {new_leader} held the lease {lease_ms} ms after {leader} was SIGKILLed; \
         first fire after the kill queued at +{} ms",
        first_fire_after_kill.map_or(-1, |t| t.since(killed_at))
    );
    println!(
        "rerun: the shard of SIGKILLed {victim_worker} ran again on {} {rerun_ms} ms after the kill",
        rerun.shards[0].worker.as_deref().unwrap_or("?")
    );
    println!(
        "server restart: first instance queued {} ms after the restart",
        first_fire_after_restart.map_or(-1, |t| t.since(restarted_at))
    );
    println!("shards that ran more than once: {reran:?}");
    println!("wall time {} ms", now().since(started));

    for (_, mut c) in schedulers.into_iter().chain(workers) {
        let _ = c.kill().await;
    }
    Ok(())
}

/// One execution of a shard, as its script recorded it.
#[derive(Clone, Copy, Debug)]
struct Ran {
    attempt: u32,
    at: Timestamp,
}

/// Asserts that no attempt number ran twice among `ran`.
fn distinct_attempts(ran: &[Ran], id: &InstanceId, side: &str, json: &str) {
    let mut attempts: Vec<u32> = ran.iter().map(|r| r.attempt).collect();
    attempts.sort_unstable();
    let n = attempts.len();
    attempts.dedup();
    assert_eq!(
        n,
        attempts.len(),
        "instance {id}: an attempt ran twice {side}: {ran:?}\n{json}"
    );
}

/// One shard record per item, success, and executions that match it.
///
/// A shard that ran only before or only after the server's outage ran each attempt
/// once, the recorded attempt last: more than one execution only where an attempt
/// number grew (its worker was lost and a rerun is recorded, or its message was
/// redelivered).
///
/// A shard whose executions straddle the outage may have run again after the restart
/// even though its result was recorded: the worker's report went out with the crash
/// (stored once the client reconnected, though the worker saw a timeout and handed the
/// message back), or could not be stored at all, and the server lost the consumer's
/// latest delivery state, so the message came back, possibly twice and with an attempt
/// number used before. Then each side still ran each attempt once, and the recorded
/// attempt ran. A run during the outage is of an item delivered before the crash (held
/// by its worker until its slot, which fell in the outage), so it counts with the
/// runs before.
async fn check_shard(
    env: &Env,
    s: &InstanceSummary,
    executions: &HashMap<String, Vec<Ran>>,
    (crashed_at, restarting_at): (Timestamp, Timestamp),
    listing: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let inst: Instance = env.admin.get_instance(&s.id).await?;
    let json = serde_json::to_string_pretty(&inst).unwrap_or_default();
    assert_eq!(inst.shards.len(), 1, "one shard record: {json}");
    let shard = &inst.shards[0];
    assert_eq!(shard.item, 0, "{json}");
    assert_eq!(shard.status, ShardStatus::Success, "{json}\n{listing}");
    let mut ran = executions
        .get(&s.id.to_string())
        .cloned()
        .unwrap_or_default();
    ran.sort_by_key(|r| r.at);
    assert!(
        ran.iter().any(|r| r.attempt == shard.attempts),
        "instance {}: its recorded attempt {} ran (executions: {ran:?})\n{json}",
        s.id,
        shard.attempts
    );
    let (before, after): (Vec<Ran>, Vec<Ran>) = ran.iter().partition(|r| r.at < restarting_at);
    let straddles = !before.is_empty() && !after.is_empty();
    if straddles {
        distinct_attempts(&before, &s.id, "before the server restart", &json);
        distinct_attempts(&after, &s.id, "after the server restart", &json);
    } else {
        distinct_attempts(&ran, &s.id, "", &json);
        let last = ran.iter().map(|r| r.attempt).max().unwrap_or(0);
        assert_eq!(
            last, shard.attempts,
            "instance {}: an attempt after the recorded one ran: {ran:?}\n{json}",
            s.id
        );
    }
    if ran.len() > 1 {
        let when: Vec<String> = ran
            .iter()
            .map(|r| format!("#{} at {:+} ms", r.attempt, r.at.since(crashed_at)))
            .collect();
        notes.push(format!(
            "{} ran {} (times from the server crash; recorded: attempt {}, run {}, reruns {}, retries {}{})",
            s.id,
            when.join(", "),
            shard.attempts,
            shard.run,
            shard.reruns,
            shard.retries,
            if straddles {
                "; ran again after the restart"
            } else {
                ""
            }
        ));
    }
    Ok(())
}
