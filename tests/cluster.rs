//! A real 3-node NATS cluster: the node configurations of `nats/config/cluster/` (only
//! their ports moved to free ones, so runs never collide), everything provisioned with
//! `--replicas 3`, two `antares scheduler` and two `antares worker` processes given all
//! three URLs, a job firing every second and a sharded job in flight. Then the node
//! that leads one stream is SIGKILLed: the instances bucket in one run, the shard work
//! queue in the other.
//!
//! Afterwards: scheduling resumed; every slot of the 1 s job, from the first to the
//! last, fired exactly once; the sharded instance succeeded with each item recorded
//! once and run at least once. The gap the kill caused is printed.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use antares_nats::server::{LocalServer, ServerOptions};
use antares_nats::wait::wait_for;
use antares_nats::{ConnectOptions, Nats, now};
use antares_scheduler::admin::Admin;
use antares_scheduler::store::ListQuery;
use antares_schemas::instance::{InstanceStatus, InstanceSummary, ShardStatus};
use antares_schemas::spec::{SpecFormat, parse_jobs};
use antares_schemas::{Timestamp, Topology};
use support::{antares_process, describe};
use tokio::process::Child;

const APP: &str = "ha";
const TICK: &str = "tick";
const FAN: &str = "fan";
const FAN_SHARDS: u32 = 24;
/// Waits in this test cover a leader election on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);

/// Which stream's leader is killed.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The instances bucket (`KV_ats-instances`).
    Instances,
    /// The shard work queue (`ATS_SHARDS`).
    WorkQueue,
}

/// One node: its ports and store, and the server while it runs.
struct Node {
    name: String,
    client: u16,
    server: Option<LocalServer>,
}

/// Three nodes started from the repository's cluster configurations.
struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("antares-cluster-")
            .tempdir()?;
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("nats/config/cluster");
        let mut ports: Vec<(u16, u16, u16)> = Vec::new();
        for _ in 0..3 {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let mut nodes = Vec::new();
        for n in 0..3 {
            let text = std::fs::read_to_string(configs.join(format!("n{}.conf", n + 1)))?;
            // The shipped configuration, its ports moved (client 1422x, route 1622x, http 1822x).
            let mut moved = text;
            for (i, (client, route, http)) in ports.iter().enumerate() {
                moved = moved
                    .replace(
                        &format!("127.0.0.1:{}", 14222 + i),
                        &format!("127.0.0.1:{client}"),
                    )
                    .replace(
                        &format!("127.0.0.1:{}", 16222 + i),
                        &format!("127.0.0.1:{route}"),
                    )
                    .replace(
                        &format!("127.0.0.1:{}", 18222 + i),
                        &format!("127.0.0.1:{http}"),
                    );
            }
            // The store directory is given on the command line instead.
            let moved = moved.replace(
                &format!("store_dir: \"./data/n{}\"", n + 1),
                "# store_dir: given with -sd",
            );
            let conf = dir.path().join(format!("n{}.conf", n + 1));
            std::fs::write(&conf, moved)?;
            nodes.push(Node {
                name: format!("n{}", n + 1),
                client: ports[n].0,
                server: None,
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        for n in 0..3 {
            cluster.start_node(n)?;
        }
        Ok(cluster)
    }

    fn conf(&self, n: usize) -> PathBuf {
        self._dir.path().join(format!("n{}.conf", n + 1))
    }

    fn start_node(&mut self, n: usize) -> anyhow::Result<()> {
        let server = LocalServer::start(&ServerOptions {
            port: Some(self.nodes[n].client),
            store_dir: self._dir.path().join(format!("data-n{}", n + 1)),
            config: Some(self.conf(n)),
            ..ServerOptions::default()
        })?;
        self.nodes[n].server = Some(server);
        Ok(())
    }

    /// Every node's URL, comma-separated, as clients of a cluster are configured.
    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs the node with this server name.
    fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow::anyhow!("no node named `{name}`"))?;
        let server = node
            .server
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("node `{name}` is not running"))?;
        server.kill();
        node.server = None;
        Ok(())
    }
}

/// The server name of the node leading `stream`.
async fn stream_leader(nats: &Nats, stream: &str) -> Option<String> {
    let mut s = nats.stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    info.cluster.as_ref().and_then(|c| c.leader.clone())
}

/// Every instance of a job, oldest first.
async fn all_instances(admin: &Admin, job: &str) -> anyhow::Result<Vec<InstanceSummary>> {
    let mut all: Vec<InstanceSummary> = Vec::new();
    loop {
        let q = ListQuery {
            app: Some(APP.to_string()),
            job: Some(job.to_string()),
            limit: antares_schemas::limits::MAX_LIST_LIMIT,
            before: all.last().map(|s| s.id),
            ..ListQuery::default()
        };
        let page = admin.list_instances(&q).await?;
        let done = page.len() < q.limit;
        all.extend(page);
        if done {
            all.reverse();
            return Ok(all);
        }
    }
}

fn jobs_toml(log: &str) -> String {
    format!(
        "[[job]]\napp = \"{APP}\"\nname = \"{TICK}\"\nkind = \"script\"\ncommand = \"true\"\n\
         schedule = {{ every = \"1s\" }}\nmisfire = \"catch_up\"\n\
         overlap = \"parallel\"\nmax_parallel = 20\n\n\
         [[job]]\napp = \"{APP}\"\nname = \"{FAN}\"\nkind = \"script\"\n\
         command = 'echo \"$ANTARES_INSTANCE_ID $ANTARES_SHARD_ITEM $ANTARES_ATTEMPT\" >> {log}; sleep 0.3'\n\
         shards = {FAN_SHARDS}\n"
    )
}

async fn run_scenario(victim: Victim) -> anyhow::Result<()> {
    let started = now();
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let urls = cluster.urls();
    let topo = Topology::new("ats")?;

    // Provisioning waits for the cluster to elect its JetStream meta leader.
    let urls_ref = urls.as_str();
    wait_for(
        "`antares provision --replicas 3` to succeed",
        WAIT,
        || async move {
            let status = antares_process(urls_ref, &["provision", "--replicas", "3"])
                .ok()?
                .wait()
                .await
                .ok()?;
            status.success().then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let nats = Nats::connect(&ConnectOptions::url(urls.clone()), topo.clone()).await?;
    let admin = Admin::open(&nats).await?;
    admin.create_app(APP, "").await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("fan.log");
    let log_str = log
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("temp path is not UTF-8"))?;
    admin
        .apply_jobs(parse_jobs(&jobs_toml(log_str), SpecFormat::Toml)?)
        .await?;

    // A lease of 10 s, as recommended on a replicated cluster: it outlives an election.
    let mut processes: HashMap<&str, Child> = HashMap::new();
    for id in ["sched-a", "sched-b"] {
        let args = [
            "scheduler",
            "--id",
            id,
            "--lease-ttl",
            "10s",
            "--lease-renew",
            "1s",
        ];
        processes.insert(id, antares_process(&urls, &args)?);
    }
    for id in ["w1", "w2"] {
        let args = [
            "worker",
            "--app",
            APP,
            "--id",
            id,
            "--concurrency",
            "4",
            "--allow-scripts",
        ];
        processes.insert(id, antares_process(&urls, &args)?);
    }
    let admin_ref = &admin;
    let ticks_after = |after: Timestamp, n: usize| async move {
        let list = all_instances(admin_ref, TICK).await.ok()?;
        let done = list
            .iter()
            .filter(|s| s.status == InstanceStatus::Success && s.scheduled_at > after)
            .count();
        (done >= n).then_some(())
    };
    wait_for("three ticks before the kill", WAIT, || {
        ticks_after(Timestamp(0), 3)
    })
    .await
    .map_err(anyhow::Error::msg)?;

    // A sharded instance in flight when the node dies.
    let fan = admin.trigger(APP, FAN, &Default::default()).await?.id();
    let fan_ref = &fan;
    wait_for("the sharded instance to run", WAIT, || async move {
        let i = admin_ref.get_instance(fan_ref).await.ok()?;
        (i.shards.iter().any(|s| s.status == ShardStatus::Success)).then_some(())
    })
    .await
    .map_err(anyhow::Error::msg)?;

    let stream = match victim {
        Victim::Instances => format!("KV_{}", topo.instances_bucket()),
        Victim::WorkQueue => topo.shards_stream(),
    };
    let nats_ref = &nats;
    let stream_ref = stream.as_str();
    let leader = wait_for(&format!("the leader of {stream}"), WAIT, || async move {
        stream_leader(nats_ref, stream_ref).await
    })
    .await
    .map_err(anyhow::Error::msg)?;
    cluster.kill(&leader)?;
    let killed_at = now();
    println!(
        "{:>6} ms: SIGKILLed node {leader}, leader of {stream}",
        killed_at.since(started)
    );

    let leader_ref = leader.as_str();
    let new_leader = wait_for(&format!("a new leader of {stream}"), WAIT, || async move {
        stream_leader(nats_ref, stream_ref)
            .await
            .filter(|l| l != leader_ref)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    println!(
        "{:>6} ms: {new_leader} leads {stream}",
        now().since(killed_at)
    );
    wait_for("three ticks scheduled after the kill", WAIT, || {
        ticks_after(killed_at, 3)
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let fan_done = wait_for("the sharded instance to end", WAIT, || async move {
        admin_ref
            .get_instance(fan_ref)
            .await
            .ok()
            .filter(|i| i.summary.status.is_final())
    })
    .await
    .map_err(anyhow::Error::msg)?;

    // Pause the tick and let what is in flight end.
    admin.set_job_enabled(APP, TICK, false).await?;
    let paused_at = now();
    let list = wait_for("every tick to end after the pause", WAIT, || async move {
        if now().since(paused_at) < 1000 {
            return None;
        }
        let list = all_instances(admin_ref, TICK).await.ok()?;
        list.iter().all(|s| s.status.is_final()).then_some(list)
    })
    .await;
    let list = match list {
        Ok(l) => l,
        Err(e) => {
            // Which ones did not end, and where each shard stands.
            let mut detail = String::new();
            for s in all_instances(admin_ref, TICK).await.unwrap_or_default() {
                if s.status.is_final() {
                    continue;
                }
                let shards = match admin.get_instance(&s.id).await {
                    Ok(i) => serde_json::to_string(&i.shards).unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                detail.push_str(&format!(
                    "{} {:?} {:?}: {shards}\n",
                    s.id, s.status, s.reason
                ));
            }
            anyhow::bail!("{e}; not ended:\n{detail}");
        }
    };
    for (_, mut p) in processes {
        let _ = p.start_kill();
    }

    // Slots: consecutive seconds, none missing, none twice; all succeeded.
    let listing = describe(&list);
    let mut slots: Vec<i64> = list.iter().map(|s| s.scheduled_at.millis()).collect();
    slots.sort_unstable();
    let n = slots.len();
    slots.dedup();
    assert_eq!(n, slots.len(), "a slot fired twice:\n{listing}");
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a slot is missing:\n{listing}");
    }
    for s in &list {
        assert_eq!(s.status, InstanceStatus::Success, "{listing}");
    }

    // The gap: the longest pause between two ticks starting, around the kill.
    let mut starts: Vec<Timestamp> = list.iter().filter_map(|s| s.started_at).collect();
    starts.sort_unstable();
    let gap = starts
        .windows(2)
        .filter(|w| w[1] > killed_at)
        .map(|w| w[1].since(w[0]))
        .max()
        .unwrap_or(0);
    let first_after = starts.iter().find(|t| **t > killed_at).copied();
    println!(
        "{victim:?}: {} ticks, every slot once; longest pause between tick starts after the kill {gap} ms; \
         first tick start after the kill {} ms after it",
        list.len(),
        first_after.map_or(-1, |t| t.since(killed_at))
    );

    // The sharded instance: success, each item recorded once, each run at least once.
    let json = serde_json::to_string_pretty(&fan_done).unwrap_or_default();
    assert_eq!(fan_done.summary.status, InstanceStatus::Success, "{json}");
    let mut items: Vec<u32> = fan_done.shards.iter().map(|s| s.item).collect();
    items.sort_unstable();
    assert_eq!(items, (0..FAN_SHARDS).collect::<Vec<_>>(), "{json}");
    let text = std::fs::read_to_string(&log)?;
    let mut runs: HashMap<u32, usize> = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [id, item, _attempt] = parts[..] else {
            anyhow::bail!("unreadable execution record `{line}`");
        };
        if id == fan.to_string() {
            *runs.entry(item.parse()?).or_default() += 1;
        }
    }
    for item in 0..FAN_SHARDS {
        assert!(
            runs.get(&item).copied().unwrap_or(0) >= 1,
            "item {item} never ran: {runs:?}\n{json}"
        );
    }
    let again: Vec<(u32, usize)> = runs.into_iter().filter(|(_, n)| *n > 1).collect();
    println!(
        "{victim:?}: sharded instance {fan}: {FAN_SHARDS} items recorded once, all success; \
         items run more than once (their first report lost with the node): {again:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_leader_killed() -> anyhow::Result<()> {
    run_scenario(Victim::Instances).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_leader_killed() -> anyhow::Result<()> {
    run_scenario(Victim::WorkQueue).await
}
