//! The audit log against a real nats-server: one entry per change, by its actor, with
//! before and after; paging backwards visits every entry once; filters by app.

use std::collections::BTreeSet;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats, now};
use antares_scheduler::admin::Admin;
use antares_scheduler::store::InstanceStore;
use antares_schemas::audit::{Actor, AuditEntry, Via, is_cut};
use antares_schemas::instance::{Instance, NewInstance, TriggerKind};
use antares_schemas::limits::MAX_AUDIT_SNAPSHOT_BYTES;
use antares_schemas::messages::{Execution, TriggerRequest};
use antares_schemas::spec::{JobSpec, SpecFormat, parse_jobs};
use antares_schemas::{InstanceId, Timestamp, Topology};
use futures::future::join_all;
use serde_json::json;

async fn setup() -> anyhow::Result<(LocalServer, Nats, Admin)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    let opts = ProvisionOptions {
        memory: true,
        ..ProvisionOptions::default()
    };
    provision(&nats, &opts).await?;
    let admin = Admin::open(&nats).await?.acting_as(Actor {
        name: "bob".into(),
        via: Via::Console,
        host: None,
    });
    Ok((server, nats, admin))
}

fn job(params: &str) -> anyhow::Result<JobSpec> {
    let text = format!(
        "app = \"billing\"\nname = \"report\"\nhandler = \"noop\"\nparams = \"{params}\"\nschedule = {{ every = \"1m\" }}\n"
    );
    Ok(parse_jobs(&text, SpecFormat::Toml)?.remove(0))
}

fn running(app: &str, job: &str) -> Instance {
    let id = InstanceId::for_manual(now(), rand::random::<u128>());
    Instance::create(NewInstance {
        id,
        app: app.into(),
        job: job.into(),
        trigger: TriggerKind::Manual,
        scheduled_at: id.time(),
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        shard_params: vec![String::new()],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

#[tokio::test]
async fn each_change_leaves_one_entry() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    admin.create_app("billing", "money").await?;
    admin.apply_jobs(vec![job("a")?]).await?;
    admin.apply_jobs(vec![job("a")?]).await?; // unchanged: not a change
    admin.apply_jobs(vec![job("b")?]).await?;
    admin.set_job_enabled("billing", "report", false).await?;
    admin.set_job_enabled("billing", "report", true).await?;
    let req = TriggerRequest {
        params: Some("now".into()),
        ..TriggerRequest::default()
    };
    let triggered = admin.trigger("billing", "report", &req).await?.id();
    let hour = 3_600_000;
    let to = Timestamp(now().millis() / hour * hour - hour);
    let slots = admin
        .backfill("billing", "report", Timestamp(to.millis() - 2 * 60_000), to)
        .await?;
    assert_eq!(slots.len(), 3);
    let store = InstanceStore::open(&nats).await?;
    let inst = store.create(running("billing", "report")).await?;
    let inst_id = inst.instance.summary.id;
    admin.cancel_instance(&inst_id).await?;
    admin.rollback_job("billing", "report", 1).await?;
    admin.delete_job("billing", "report").await?;
    admin.set_app_enabled("billing", false).await?;
    admin.set_app_enabled("billing", true).await?;
    admin.delete_app("billing").await?;

    let entries = admin.audit_log(100, None, None).await?;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "app.delete",
            "app.resume",
            "app.pause",
            "job.delete",
            "job.rollback",
            "instance.cancel",
            "job.backfill",
            "job.trigger",
            "job.resume",
            "job.pause",
            "job.apply",
            "job.apply",
            "app.create",
        ],
        "newest first"
    );
    let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    for e in &entries {
        assert_eq!(e.actor.name, "bob");
        assert_eq!(e.actor.via, Via::Console);
        assert_eq!(e.app.as_deref(), Some("billing"));
    }
    let by = |action: &str| -> Vec<&AuditEntry> {
        entries.iter().filter(|e| e.action == action).collect()
    };

    let create = by("app.create")[0];
    assert_eq!(create.target, "billing");
    assert_eq!(create.before, None);
    assert_eq!(
        create.after.as_ref().map(|a| &a["description"]),
        Some(&json!("money"))
    );

    // Created, then updated: the first has no before.
    let applies = by("job.apply");
    assert_eq!(applies[1].target, "billing/report");
    assert_eq!(applies[1].before, None);
    assert_eq!(
        applies[1].after.as_ref().map(|a| &a["params"]),
        Some(&json!("a"))
    );
    assert_eq!(
        applies[0].before.as_ref().map(|a| &a["params"]),
        Some(&json!("a"))
    );
    assert_eq!(
        applies[0].after.as_ref().map(|a| &a["params"]),
        Some(&json!("b"))
    );

    let pause = by("job.pause")[0];
    assert_eq!(
        pause.before.as_ref().map(|a| &a["enabled"]),
        Some(&json!(true))
    );
    assert_eq!(
        pause.after.as_ref().map(|a| &a["enabled"]),
        Some(&json!(false))
    );

    let trigger = by("job.trigger")[0];
    let after = trigger.after.clone().unwrap_or_default();
    assert_eq!(after["instance"], json!(triggered.to_string()));
    assert_eq!(after["params"], json!("now"));

    let backfill = by("job.backfill")[0];
    let queued = backfill.after.as_ref().map(|a| a["queued"].clone());
    assert_eq!(
        queued.and_then(|q| q.as_array().map(Vec::len)),
        Some(3),
        "{backfill:?}"
    );

    let cancel = by("instance.cancel")[0];
    assert_eq!(cancel.target, inst_id.to_string());
    assert_eq!(
        cancel.before.as_ref().map(|b| &b["status"]),
        Some(&json!("pending"))
    );

    let rollback = by("job.rollback")[0];
    assert_eq!(
        rollback.after.as_ref().map(|a| &a["params"]),
        Some(&json!("a"))
    );
    assert_eq!(
        rollback.before.as_ref().map(|a| &a["params"]),
        Some(&json!("b"))
    );

    let delete = by("job.delete")[0];
    assert!(
        delete.before.is_some() && delete.after.is_none(),
        "{delete:?}"
    );
    let delete_app = by("app.delete")[0];
    assert!(delete_app.before.is_some() && delete_app.after.is_none());
    Ok(())
}

#[tokio::test]
async fn pages_visit_every_entry_once_and_filter_by_app() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    assert!(admin.audit_log(10, None, None).await?.is_empty());
    // 60 entries: apps a and b in turn, and console ones without an app.
    let records = (0..60).map(|i| {
        let app = ["a", "b"].get(i % 3).copied();
        let admin = admin.clone();
        async move {
            admin
                .record(
                    "thing.touch",
                    &format!("t{i}"),
                    app,
                    None,
                    Some(json!({"i": i})),
                )
                .await
        }
    });
    for r in join_all(records).await {
        r?;
    }

    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let page = admin.audit_log(7, before, None).await?;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(seen.len(), 60, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let only_a = admin.audit_log(100, None, Some(&["a".to_string()])).await?;
    assert_eq!(only_a.len(), 20);
    assert!(only_a.iter().all(|e| e.app.as_deref() == Some("a")));
    let a_and_b = admin
        .audit_log(100, None, Some(&["a".to_string(), "b".to_string()]))
        .await?;
    assert_eq!(a_and_b.len(), 40);
    assert!(a_and_b.iter().all(|e| e.app.is_some()));

    // Paged with a filter: every entry of `b` once.
    let mut targets = BTreeSet::new();
    let mut before = None;
    for _ in 0..100 {
        let page = admin.audit_log(3, before, Some(&["b".to_string()])).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for e in page {
            assert!(targets.insert(e.target), "seen twice");
        }
    }
    assert_eq!(targets.len(), 20);
    assert!(admin.audit_log(10, None, Some(&[])).await?.is_empty());
    let bad = admin.audit_log(10, None, Some(&["Bad".to_string()])).await;
    assert!(bad.is_err());
    // Every page's probes ended their consumers with the read.
    let mut stream = nats.stream(&nats.topo.audit_stream()).await?;
    assert_eq!(stream.info().await?.state.consumer_count, 0);
    Ok(())
}

#[tokio::test]
async fn a_rare_app_is_found_far_back() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    admin
        .record("thing.touch", "old", Some("rare"), None, None)
        .await?;
    for chunk in 0..6 {
        let records = (0..500).map(|i| {
            let admin = admin.clone();
            async move {
                admin
                    .record(
                        "thing.touch",
                        &format!("t{chunk}-{i}"),
                        Some("busy"),
                        None,
                        None,
                    )
                    .await
            }
        });
        for r in join_all(records).await {
            r?;
        }
    }
    let rare = admin
        .audit_log(10, None, Some(&["rare".to_string()]))
        .await?;
    assert_eq!(rare.len(), 1);
    assert_eq!(rare[0].target, "old");
    assert_eq!(rare[0].id, 1);
    // A whole page of the busy one, then the next.
    let page = admin.audit_log(1000, None, None).await?;
    assert_eq!(page.len(), 1000);
    assert_eq!(page[0].id, 3001);
    let next = admin
        .audit_log(1000, page.last().map(|e| e.id), None)
        .await?;
    assert_eq!(next.first().map(|e| e.id), Some(2001));
    // Larger limits are capped.
    assert_eq!(admin.audit_log(5000, None, None).await?.len(), 1000);

    // Past 3000 newer entries of another app, a window wide enough to cross them holds
    // too many of this one to read: it is narrowed, and the newest are found.
    for chunk in 0..6 {
        let records = (0..500).map(|i| {
            let admin = admin.clone();
            async move {
                admin
                    .record(
                        "thing.touch",
                        &format!("n{chunk}-{i}"),
                        Some("newer"),
                        None,
                        None,
                    )
                    .await
            }
        });
        for r in join_all(records).await {
            r?;
        }
    }
    let busy = admin
        .audit_log(10, None, Some(&["busy".to_string()]))
        .await?;
    let ids: Vec<u64> = busy.iter().map(|e| e.id).collect();
    assert_eq!(ids, (2992..=3001).rev().collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test]
async fn an_oversized_snapshot_is_cut_and_marked() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    let big = json!({"source": "x".repeat(MAX_AUDIT_SNAPSHOT_BYTES + 1)});
    admin
        .record(
            "user.create",
            "carol",
            None,
            Some(json!({"small": 1})),
            Some(big),
        )
        .await?;
    let entries = admin.audit_log(10, None, None).await?;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.app, None);
    assert_eq!(e.before, Some(json!({"small": 1})));
    let after = e.after.clone().unwrap_or_default();
    assert!(is_cut(&after), "{after}");
    assert!(
        after["reason"]
            .as_str()
            .is_some_and(|r| r.contains("more than")),
        "{after}"
    );
    Ok(())
}
