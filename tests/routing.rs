//! Routing with real workers: each strategy's telling behaviour, pinning, capable
//! workers only, and items moving off a worker that was killed.

mod support;

use std::collections::{BTreeSet, HashMap};

use antares_nats::wait::wait_for;
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, ShardStatus};
use antares_schemas::messages::{EventKind, TriggerRequest};
use antares_worker::{JobResult, WorkerBuilder, WorkerHandle};
use support::{Env, Recorder, Seen, WAIT, signal, worker_process};
use tokio::task::JoinHandle;

const APP: &str = "route";

/// A worker run in this process that a test can stop on its own.
struct Running {
    handle: WorkerHandle,
    task: JoinHandle<()>,
}

async fn start(builder: WorkerBuilder) -> anyhow::Result<Running> {
    let worker = builder.build().await?;
    let handle = worker.handle();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run_until(std::future::pending()).await {
            eprintln!("worker failed: {e}");
        }
    });
    Ok(Running { handle, task })
}

impl Running {
    async fn stop(self) {
        self.handle.shutdown();
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

/// A server, `n` workers `w1..wn` of [`APP`] (each with the `rec` plugin, `slots` slots)
/// and jobs; the scheduler starts once the workers beat.
async fn cluster(
    jobs: &str,
    ids: &[&str],
    slots: usize,
) -> anyhow::Result<(Env, Recorder, HashMap<String, Running>)> {
    let mut env = Env::start().await?;
    env.apply(APP, jobs).await?;
    let rec = Recorder::new("rec", |_| JobResult::Success);
    let mut workers = HashMap::new();
    for id in ids {
        let w = start(
            env.worker(APP)
                .id(*id)
                .concurrency(slots)
                .register(rec.clone()),
        )
        .await?;
        workers.insert((*id).to_string(), w);
    }
    env.workers_alive(APP, ids).await?;
    env.scheduler("s1").await?;
    Ok((env, rec, workers))
}

fn job(name: &str, extra: &str) -> String {
    format!("[[job]]\napp = \"{APP}\"\nname = \"{name}\"\nhandler = \"rec\"\n{extra}\n")
}

async fn run(env: &Env, job: &str) -> anyhow::Result<Instance> {
    let id = env.trigger(APP, job, &TriggerRequest::default()).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(
        inst.summary.status,
        InstanceStatus::Success,
        "{}",
        serde_json::to_string_pretty(&inst)?
    );
    Ok(inst)
}

/// The worker each item of an instance ran on, by item.
fn workers_of(rec: &Recorder, id: &InstanceId) -> Vec<String> {
    let mut seen: Vec<Seen> = rec.seen_for(id);
    seen.sort_by_key(|s| s.item);
    seen.into_iter().map(|s| s.worker).collect()
}

#[tokio::test]
async fn round_robin_cycles_through_the_workers() -> anyhow::Result<()> {
    let jobs = job("rr", "routing = \"round_robin\"\nshards = 7");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2", "w3"], 4).await?;
    let inst = run(&env, "rr").await?;
    assert_eq!(
        workers_of(&rec, &inst.summary.id),
        ["w1", "w2", "w3", "w1", "w2", "w3", "w1"]
    );
    // The turn goes on with the next instance.
    let inst = run(&env, "rr").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id)[0], "w2");
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn first_and_last_take_the_ends_of_the_id_order() -> anyhow::Result<()> {
    let jobs = job("head", "routing = \"first\"\nshards = 3")
        + &job("tail", "routing = \"last\"\nshards = 3");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2", "w3"], 4).await?;
    let inst = run(&env, "head").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w1", "w1", "w1"]);
    let inst = run(&env, "tail").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w3", "w3", "w3"]);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn pinned_jobs_run_only_on_their_workers() -> anyhow::Result<()> {
    let jobs = job(
        "pinned",
        "routing = \"round_robin\"\nworkers = [\"w2\", \"w3\"]\nshards = 4",
    ) + &job("one", "workers = [\"w2\"]\nshards = 3");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2", "w3"], 4).await?;
    let inst = run(&env, "pinned").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w2", "w3", "w2", "w3"]);
    // `pull` with pinning: the pinned worker, though others are free.
    let inst = run(&env, "one").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w2", "w2", "w2"]);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn consistent_hash_keeps_a_job_on_one_worker_until_it_leaves() -> anyhow::Result<()> {
    let jobs = job("sticky", "routing = \"consistent_hash\"");
    let (mut env, rec, mut workers) = cluster(&jobs, &["w1", "w2", "w3"], 4).await?;
    let mut on = BTreeSet::new();
    for _ in 0..10 {
        let inst = run(&env, "sticky").await?;
        on.extend(workers_of(&rec, &inst.summary.id));
    }
    assert_eq!(on.len(), 1, "10 fires ran on {on:?}");
    let first = on.pop_first().unwrap_or_default();
    // Its worker leaves: the job moves (once the leader has seen it go), then stays.
    if let Some(w) = workers.remove(&first) {
        w.stop().await;
    }
    let env_ref = &env;
    let rec_ref = &rec;
    let first_ref = &first;
    let moved = wait_for("the job to run elsewhere", WAIT, || async move {
        let inst = run(env_ref, "sticky").await.ok()?;
        let w = workers_of(rec_ref, &inst.summary.id).pop()?;
        (w != *first_ref).then_some(w)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    for _ in 0..3 {
        let inst = run(&env, "sticky").await?;
        assert_eq!(
            workers_of(&rec, &inst.summary.id),
            std::slice::from_ref(&moved)
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn random_spreads_the_items_over_every_worker() -> anyhow::Result<()> {
    let jobs = job("dice", "routing = \"random\"\nshards = 30");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2", "w3"], 32).await?;
    let inst = run(&env, "dice").await?;
    let on = workers_of(&rec, &inst.summary.id);
    let used: BTreeSet<&String> = on.iter().collect();
    // Missing a worker over 30 fair draws has a chance of about 1 in 65,000.
    assert_eq!(used.len(), 3, "{on:?}");
    let cycle: Vec<String> = (0..30).map(|i| format!("w{}", i % 3 + 1)).collect();
    assert_ne!(on, cycle, "random gave the round-robin order");
    env.stop().await;
    Ok(())
}

/// Runs `job` until one of its fires lands on `worker` (once the leader has seen it,
/// within [`WAIT`]), returning every worker used on the way, in order.
async fn run_until_on(
    env: &Env,
    rec: &Recorder,
    job: &str,
    worker: &str,
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut used = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let inst = run(env, job).await?;
        let on = workers_of(rec, &inst.summary.id);
        let done = on.iter().any(|w| w == worker);
        used.extend(on);
        if done {
            return Ok(used);
        }
    }
    anyhow::bail!("no fire on {worker} within {WAIT:?}: {used:?}")
}

#[tokio::test]
async fn least_frequently_used_lets_a_new_worker_catch_up() -> anyhow::Result<()> {
    let jobs = job("lfu", "routing = \"least_frequently_used\"");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2"], 4).await?;
    let mut on = Vec::new();
    for _ in 0..4 {
        on.extend(workers_of(&rec, &run(&env, "lfu").await?.summary.id));
    }
    assert_eq!(on.iter().filter(|w| *w == "w1").count(), 2, "{on:?}");
    // A third worker joins: having run the job least, it takes the next fires.
    let _w3 = start(env.worker(APP).id("w3").register(rec.clone())).await?;
    env.workers_alive(APP, &["w3"]).await?;
    run_until_on(&env, &rec, "lfu", "w3").await?;
    let inst = run(&env, "lfu").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w3"]);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn least_recently_used_takes_the_worker_idle_longest() -> anyhow::Result<()> {
    let jobs = job("lru", "routing = \"least_recently_used\"");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2"], 4).await?;
    let mut all = Vec::new();
    for _ in 0..2 {
        all.extend(workers_of(&rec, &run(&env, "lru").await?.summary.id));
    }
    let _w3 = start(env.worker(APP).id("w3").register(rec.clone())).await?;
    env.workers_alive(APP, &["w3"]).await?;
    all.extend(run_until_on(&env, &rec, "lru", "w3").await?);
    // Unlike least_frequently_used, the newcomer does not take the next fire: of w1 and
    // w2, the one that ran it longest ago does.
    let n = all.len();
    let (older, newer) = (all[n - 3].clone(), all[n - 2].clone());
    assert_ne!(older, newer, "w1 and w2 take turns: {all:?}");
    let inst = run(&env, "lru").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), [older]);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn busyover_skips_a_worker_whose_slots_are_full() -> anyhow::Result<()> {
    let jobs = job("quick", "routing = \"busyover\"")
        + &format!(
            "[[job]]\napp = \"{APP}\"\nname = \"hold\"\nhandler = \"sleep\"\nparams = \"3s\"\nrouting = \"busyover\"\n"
        );
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2"], 1).await?;
    // Both free: the first.
    let inst = run(&env, "quick").await?;
    assert_eq!(workers_of(&rec, &inst.summary.id), ["w1"]);
    // One worker's only slot runs `hold`: the next goes to the other one.
    let hold = env.trigger(APP, "hold", &TriggerRequest::default()).await?;
    let admin = &env.admin;
    let hold_ref = &hold;
    let busy = wait_for("hold to run", WAIT, || async move {
        let i = admin.get_instance(hold_ref).await.ok()?;
        let s = i.shards.first()?;
        (s.status == ShardStatus::Running).then(|| s.worker.clone())?
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let free = if busy == "w1" { "w2" } else { "w1" };
    for _ in 0..3 {
        let inst = run(&env, "quick").await?;
        assert_eq!(workers_of(&rec, &inst.summary.id), [free]);
    }
    env.finished(&hold).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn broadcast_runs_once_per_worker_and_grows_when_one_joins() -> anyhow::Result<()> {
    let jobs = job("all", "routing = \"broadcast\"\nparams = \"p\"");
    let (mut env, rec, _w) = cluster(&jobs, &["w1", "w2"], 4).await?;
    let inst = run(&env, "all").await?;
    assert_eq!(inst.summary.shard_total, 2);
    let on: BTreeSet<String> = workers_of(&rec, &inst.summary.id).into_iter().collect();
    assert_eq!(on, BTreeSet::from(["w1".to_string(), "w2".to_string()]));
    assert!(
        rec.seen_for(&inst.summary.id)
            .iter()
            .all(|s| s.params == "p")
    );
    // A third worker joins: once the leader has seen it, a fire makes three shards.
    let _w3 = start(env.worker(APP).id("w3").register(rec.clone())).await?;
    env.workers_alive(APP, &["w3"]).await?;
    let env_ref = &env;
    let grown = wait_for("a fire with three shards", WAIT, || async move {
        let inst = run(env_ref, "all").await.ok()?;
        (inst.summary.shard_total == 3).then_some(inst)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let on: BTreeSet<String> = workers_of(&rec, &grown.summary.id).into_iter().collect();
    assert_eq!(on.len(), 3, "{on:?}");
    env.stop().await;
    Ok(())
}

/// Waits for the instance's end: success, its `n` shards each run once, all on `worker`.
async fn all_once_on(
    env: &Env,
    rec: &Recorder,
    id: &InstanceId,
    worker: &str,
    n: usize,
) -> anyhow::Result<()> {
    let inst = env.finished(id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert!(
        inst.shards
            .iter()
            .all(|s| s.worker.as_deref() == Some(worker)
                && s.status == ShardStatus::Success
                && s.attempts == 1)
    );
    assert_eq!(workers_of(rec, id), vec![worker; n]);
    Ok(())
}

#[tokio::test]
async fn a_shard_goes_only_to_a_worker_with_its_plugin() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        APP,
        &format!("app = \"{APP}\"\nname = \"special\"\nhandler = \"demoJobHandler\"\nshards = 8\n"),
    )
    .await?;
    // A handler named as XXL-JOB users name them.
    let rec = Recorder::new("demoJobHandler", |_| JobResult::Success);
    // `w1` lacks the plugin (only the built-ins), `w2` has it.
    env.run_worker(env.worker(APP).id("w1")).await?;
    env.run_worker(env.worker(APP).id("w2").register(rec.clone()))
        .await?;
    env.workers_alive(APP, &["w1", "w2"]).await?;
    env.scheduler("s1").await?;
    for _ in 0..2 {
        let id = env
            .trigger(APP, "special", &TriggerRequest::default())
            .await?;
        all_once_on(&env, &rec, &id, "w2", 8).await?;
    }
    env.stop().await;
    Ok(())
}

/// With no worker at all when it fires, a pull item waits in the scheduler: the first
/// worker to come, which cannot run it, never takes it; the one that can does.
#[tokio::test]
async fn with_no_worker_yet_the_first_to_come_takes_only_what_it_can_run() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        APP,
        &format!("app = \"{APP}\"\nname = \"special\"\nhandler = \"special\"\nshards = 4\n"),
    )
    .await?;
    env.scheduler("s1").await?;
    let mut events = env.events(APP, "special").await?;
    let id = env
        .trigger(APP, "special", &TriggerRequest::default())
        .await?;
    Env::event_where(&mut events, "a no_worker event", |e| {
        e.kind == EventKind::NoWorker && e.instance == Some(id)
    })
    .await?;
    // `w1` lacks the plugin; had the items been queued, it would take and fail them.
    env.run_worker(env.worker(APP).id("w1")).await?;
    env.workers_alive(APP, &["w1"]).await?;
    let rec = Recorder::new("special", |_| JobResult::Success);
    env.run_worker(env.worker(APP).id("w2").register(rec.clone()))
        .await?;
    all_once_on(&env, &rec, &id, "w2", 4).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn items_of_a_killed_worker_run_on_another() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    // Both items go to `w-a` (routing first), which runs one at a time: one runs, the
    // other waits on its subject when it is killed.
    env.apply(
        APP,
        &format!(
            "app = \"{APP}\"\nname = \"pair\"\nhandler = \"sleep\"\nparams = \"2s\"\nrouting = \"first\"\nshards = 2\n"
        ),
    )
    .await?;
    let url = env.server.url();
    let wa = worker_process(&url, APP, "w-a", 1, false)?;
    let _wb = worker_process(&url, APP, "w-b", 1, false)?;
    env.workers_alive(APP, &["w-a", "w-b"]).await?;
    env.scheduler("s1").await?;
    let id = env.trigger(APP, "pair", &TriggerRequest::default()).await?;
    let admin = &env.admin;
    let id_ref = &id;
    wait_for("one item to run on w-a", WAIT, || async move {
        let i = admin.get_instance(id_ref).await.ok()?;
        i.shards
            .iter()
            .any(|s| s.status == ShardStatus::Running && s.worker.as_deref() == Some("w-a"))
            .then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    signal(&wa, "KILL").await?;
    let inst = env.finished(&id).await?;
    assert_eq!(
        inst.summary.status,
        InstanceStatus::Success,
        "{}",
        serde_json::to_string_pretty(&inst)?
    );
    for s in &inst.shards {
        assert_eq!(s.worker.as_deref(), Some("w-b"), "item {}", s.item);
        assert!(s.run >= 2, "item {} ran as run {}", s.item, s.run);
        assert_eq!(s.retries, 0);
    }
    // Nothing is left on the dead worker's subject.
    assert_eq!(env.queued_shards().await?, 0);
    env.stop().await;
    Ok(())
}

#[tokio::test]
async fn failover_skips_a_worker_that_does_not_answer() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.apply(
        APP,
        &format!("app = \"{APP}\"\nname = \"safe\"\nhandler = \"noop\"\nrouting = \"failover\"\n"),
    )
    .await?;
    let url = env.server.url();
    let wa = worker_process(&url, APP, "w-a", 1, false)?;
    let _wb = worker_process(&url, APP, "w-b", 1, false)?;
    env.workers_alive(APP, &["w-a", "w-b"]).await?;
    env.scheduler("s1").await?;
    let on = |inst: &Instance| inst.shards.first().and_then(|s| s.worker.clone());
    let id = env.trigger(APP, "safe", &TriggerRequest::default()).await?;
    assert_eq!(on(&env.finished(&id).await?).as_deref(), Some("w-a"));
    // Frozen: it does not answer, so the next in order runs it.
    signal(&wa, "STOP").await?;
    let id = env.trigger(APP, "safe", &TriggerRequest::default()).await?;
    let inst = env.finished(&id).await?;
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(on(&inst).as_deref(), Some("w-b"));
    // Back: first again.
    signal(&wa, "CONT").await?;
    env.workers_alive(APP, &["w-a"]).await?;
    let env_ref = &env;
    wait_for("w-a to take the job again", WAIT, || async move {
        let id = env_ref
            .trigger(APP, "safe", &TriggerRequest::default())
            .await
            .ok()?;
        let inst = env_ref.finished(&id).await.ok()?;
        (on(&inst).as_deref() == Some("w-a")).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    env.stop().await;
    Ok(())
}

/// A 1 s job of an app whose queue holds a large instance's items runs at once, not
/// after them: the items of an urgent fire's small instance go to a worker's own
/// subject, which it serves before the app's queue.
#[tokio::test]
async fn a_frequent_job_skips_the_queue_of_a_large_instance() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let bulk = "[[job]]\napp = \"route\"\nname = \"bulk\"\nhandler = \"sleep\"\nparams = \"100ms\"\nshards = 100\n";
    env.apply(APP, bulk).await?;
    let id = env
        .run_worker(env.worker(APP).id("w1").concurrency(1))
        .await?;
    env.workers_alive(APP, &[id.as_str()]).await?;
    env.scheduler("s1").await?;
    let bulk = env.trigger(APP, "bulk", &TriggerRequest::default()).await?;
    // Its first item runs; the other 99 (about 10 s of work) wait in the app's queue.
    let admin = &env.admin;
    wait_for("the large instance to run", WAIT, || async {
        admin
            .get_instance(&bulk)
            .await
            .ok()
            .filter(|i| i.summary.status == InstanceStatus::Running)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let tick = "[[job]]\napp = \"route\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n";
    env.apply(APP, tick).await?;
    env.instances_where(APP, "tick", 1, |s| s.status == InstanceStatus::Success)
        .await?;
    let large = env.admin.get_instance(&bulk).await?;
    let waiting = large
        .shards
        .iter()
        .filter(|s| s.status == ShardStatus::Pending)
        .count();
    assert!(
        !large.summary.status.is_final() && waiting > 0,
        "the 1 s job ran only after the large instance's items: {}",
        serde_json::to_string(&large.summary)?
    );
    Ok(())
}
