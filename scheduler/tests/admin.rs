//! The control operations against a real nats-server, with no scheduler running:
//! apps, jobs, triggers, cancels, waiting, logs and the cluster view.

use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats, codec, now};
use antares_scheduler::SchedulerError;
use antares_scheduler::admin::{Admin, ApplyAction, BackfillAction, Triggered};
use antares_scheduler::store::{InstanceStore, Stored};
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, TriggerKind};
use antares_schemas::messages::{
    Event, EventKind, Execution, LogLine, LogStream, ShardParams, TriggerRequest,
};
use antares_schemas::spec::{JobSpec, SpecFormat, parse_jobs};
use antares_schemas::topology::{HEADER_INSTANCE, HEADER_MSG_ID, HEADER_SLOT, HEADER_TRIGGER};
use antares_schemas::{InstanceId, Timestamp, Topology};
use futures::StreamExt;

async fn setup() -> anyhow::Result<(LocalServer, Nats, Admin)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    let opts = ProvisionOptions {
        memory: true,
        ..ProvisionOptions::default()
    };
    provision(&nats, &opts).await?;
    let admin = Admin::open(&nats).await?;
    Ok((server, nats, admin))
}

const JOBS: &str = r#"
[[job]]
app = "billing"
name = "report"
description = "nightly report"
schedule = { cron = "0 0 2 * * ?", tz = "Asia/Shanghai" }
kind = "script"
command = "echo $ANTARES_SHARD_PARAM"
shard_params = "a;b;c"
retry = { max = 2, backoff = "5s" }

[[job]]
app = "billing"
name = "tick"
kind = "plugin"
handler = "sleep"
params = "300ms"
schedule = { every = "10s" }
"#;

fn jobs() -> anyhow::Result<Vec<JobSpec>> {
    Ok(parse_jobs(JOBS, SpecFormat::Toml)?)
}

#[tokio::test]
async fn unprovisioned_nats_says_to_provision() -> anyhow::Result<()> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    let err = Admin::open(&nats).await.expect_err("no buckets yet");
    assert!(err.to_string().contains("antares provision"), "{err}");
    Ok(())
}

#[tokio::test]
async fn apps_crud_and_name_errors() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    assert!(admin.list_apps().await?.is_empty());
    let app = admin.create_app("billing", "money").await?;
    assert!(app.enabled);
    admin.create_app("audit", "").await?;
    let dup = admin.create_app("billing", "again").await;
    assert!(matches!(dup, Err(SchedulerError::Conflict(_))), "{dup:?}");
    let bad = admin
        .create_app("Bad_Name", "")
        .await
        .expect_err("bad name");
    assert!(matches!(bad, SchedulerError::Name(_)));
    assert!(bad.to_string().contains("Bad_Name"), "{bad}");
    let names: Vec<String> = admin
        .list_apps()
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec!["audit", "billing"]);
    assert_eq!(admin.get_app("billing").await?.description, "money");
    let missing = admin.get_app("nope").await.expect_err("missing");
    assert!(matches!(missing, SchedulerError::NotFound(_)));
    assert!(
        missing.to_string().contains("antares app create nope"),
        "{missing}"
    );

    assert!(!admin.set_app_enabled("billing", false).await?.enabled);
    assert!(!admin.get_app("billing").await?.enabled);
    assert!(admin.set_app_enabled("billing", true).await?.enabled);

    admin.apply_jobs(jobs()?).await?;
    let refused = admin.delete_app("billing").await.expect_err("has jobs");
    assert!(matches!(refused, SchedulerError::Conflict(_)));
    assert!(
        refused.to_string().contains("delete them first"),
        "{refused}"
    );
    admin.delete_job("billing", "report").await?;
    admin.delete_job("billing", "tick").await?;
    admin.delete_app("billing").await?;
    assert!(matches!(
        admin.get_app("billing").await,
        Err(SchedulerError::NotFound(_))
    ));
    assert!(matches!(
        admin.delete_app("billing").await,
        Err(SchedulerError::NotFound(_))
    ));
    // A deleted app can be made again.
    admin.create_app("billing", "back").await?;
    assert_eq!(admin.get_app("billing").await?.description, "back");
    Ok(())
}

/// `app delete --with-jobs`: every job is deleted as `job delete` does it (a version
/// each), then the app.
#[tokio::test]
async fn an_app_is_deleted_with_its_jobs_when_asked() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    admin.apply_jobs(jobs()?).await?;
    assert_eq!(admin.delete_app_and_jobs("billing").await?, 2);
    assert!(matches!(
        admin.get_app("billing").await,
        Err(SchedulerError::NotFound(_))
    ));
    let latest = admin.job_versions("billing", "tick").await?;
    assert_eq!(
        latest.first().map(|v| v.action),
        Some(antares_schemas::audit::VersionAction::Delete),
        "{latest:?}"
    );
    // Made again, it starts empty.
    admin.create_app("billing", "").await?;
    assert!(admin.list_jobs(Some("billing")).await?.is_empty());
    let missing = admin
        .delete_app_and_jobs("nope")
        .await
        .expect_err("missing");
    assert!(matches!(missing, SchedulerError::NotFound(_)));
    Ok(())
}

#[tokio::test]
async fn apply_get_list_export_round_trip() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    let missing = admin.apply_jobs(jobs()?).await.expect_err("no app");
    assert!(
        missing.to_string().contains("antares app create billing"),
        "{missing}"
    );
    admin.create_app("billing", "").await?;

    let out = admin.apply_jobs(jobs()?).await?;
    assert_eq!(out.len(), 2);
    assert!(
        out.iter().all(|o| o.action == ApplyAction::Created),
        "{out:?}"
    );
    let again = admin.apply_jobs(jobs()?).await?;
    assert!(
        again.iter().all(|o| o.action == ApplyAction::Unchanged),
        "{again:?}"
    );

    let mut changed = jobs()?;
    changed[1].params = "1s".into();
    let out = admin.apply_jobs(changed).await?;
    assert_eq!(out[0].action, ApplyAction::Unchanged);
    assert_eq!(out[1].action, ApplyAction::Updated);
    assert_eq!(out[1].job, "tick");

    let listed = admin.list_jobs(Some("billing")).await?;
    let names: Vec<&str> = listed.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, vec!["report", "tick"]);
    assert_eq!(admin.list_jobs(None).await?.len(), 2);
    assert!(matches!(
        admin.list_jobs(Some("nope")).await,
        Err(SchedulerError::NotFound(_))
    ));
    let got = admin.get_job("billing", "report").await?;
    assert_eq!(got, jobs()?[0]);
    let missing = admin.get_job("billing", "nope").await.expect_err("missing");
    assert!(matches!(missing, SchedulerError::NotFound(_)));

    let text = admin.export_jobs(Some("billing")).await?;
    let back = parse_jobs(&text, SpecFormat::Toml)?;
    assert_eq!(back, listed);
    let out = admin.apply_jobs(back).await?;
    assert!(
        out.iter().all(|o| o.action == ApplyAction::Unchanged),
        "{out:?}"
    );

    // Invalid specs are refused whole, before anything is written.
    let mut bad = jobs()?;
    bad[0].description = "changed".into();
    bad[1].kind = antares_schemas::spec::JobKind::Script;
    bad[1].command = None;
    let err = admin.apply_jobs(bad).await.expect_err("invalid");
    assert!(matches!(err, SchedulerError::Spec(_)), "{err:?}");
    assert_eq!(
        admin.get_job("billing", "report").await?.description,
        "nightly report"
    );
    let twice = admin
        .apply_jobs(vec![jobs()?[0].clone(), jobs()?[0].clone()])
        .await;
    assert!(
        matches!(twice, Err(SchedulerError::Invalid(_))),
        "{twice:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pause_and_resume_set_enabled() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    admin.apply_jobs(jobs()?).await?;
    assert!(
        !admin
            .set_job_enabled("billing", "tick", false)
            .await?
            .enabled
    );
    assert!(!admin.get_job("billing", "tick").await?.enabled);
    assert!(admin.get_job("billing", "report").await?.enabled);
    // Applying the file again puts `enabled = true` back: the file is the truth.
    let out = admin.apply_jobs(jobs()?).await?;
    assert_eq!(out[1].action, ApplyAction::Updated);
    admin.set_job_enabled("billing", "tick", false).await?;
    assert!(
        admin
            .set_job_enabled("billing", "tick", true)
            .await?
            .enabled
    );
    assert!(admin.get_job("billing", "tick").await?.enabled);
    let missing = admin.set_job_enabled("billing", "nope", false).await;
    assert!(matches!(missing, Err(SchedulerError::NotFound(_))));
    Ok(())
}

#[tokio::test]
async fn trigger_publishes_a_durable_message_carrying_the_id() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    admin.apply_jobs(jobs()?).await?;
    admin.set_job_enabled("billing", "report", false).await?;
    let req = TriggerRequest {
        params: Some("x".into()),
        shard_params: Some(ShardParams::Text("p;q".into())),
        ..TriggerRequest::default()
    };
    let Triggered::Queued(id) = admin.trigger("billing", "report", &req).await? else {
        anyhow::bail!("no key: a new trigger");
    };
    assert!(now().since(id.time()).abs() < 60_000);

    let stream = nats.stream(&nats.topo.triggers_stream()).await?;
    let msg = stream
        .get_last_raw_message_by_subject(&nats.topo.stored_trigger_subject("billing", "report"))
        .await?;
    let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(header(HEADER_INSTANCE), Some(id.to_string()));
    assert_eq!(header(HEADER_MSG_ID), Some(id.to_string()));
    assert_eq!(header(HEADER_TRIGGER).as_deref(), Some("manual"));
    assert_eq!(
        TriggerRequest::parse(&msg.payload).map_err(anyhow::Error::msg)?,
        req
    );

    let other = admin
        .trigger("billing", "report", &TriggerRequest::default())
        .await?;
    assert!(other.is_new());
    assert_ne!(other.id(), id);

    let unknown = admin
        .trigger("billing", "nope", &TriggerRequest::default())
        .await;
    assert!(
        matches!(unknown, Err(SchedulerError::NotFound(_))),
        "{unknown:?}"
    );
    let bad = TriggerRequest {
        shard_params: Some(ShardParams::Text("a;b".into())),
        shards: Some(3),
        ..TriggerRequest::default()
    };
    let err = admin
        .trigger("billing", "report", &bad)
        .await
        .expect_err("bad override");
    assert!(matches!(err, SchedulerError::Invalid(_)));
    assert!(err.to_string().contains("shard_params"), "{err}");
    let info = stream.get_info().await?;
    assert_eq!(info.state.messages, 2);
    Ok(())
}

/// How many messages the trigger stream holds.
async fn triggers_stored(nats: &Nats) -> anyhow::Result<u64> {
    let mut stream = nats.stream(&nats.topo.triggers_stream()).await?;
    Ok(stream.info().await?.state.messages)
}

/// Claims a key as the scheduler does when it makes an instance.
async fn claim(nats: &Nats, key: &str, value: String) -> anyhow::Result<()> {
    let claims = nats.buckets().await?.claims.clone();
    claims.create(key, value.into()).await?;
    Ok(())
}

#[tokio::test]
async fn a_used_trigger_key_starts_nothing_and_names_the_instance() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    admin.apply_jobs(jobs()?).await?;
    let keyed = |key: &str| TriggerRequest {
        key: Some(key.into()),
        ..TriggerRequest::default()
    };

    // The key was used within 24 h: its claim names the instance.
    let first = InstanceId::for_manual(now(), 42);
    claim(
        &nats,
        &nats.topo.trigger_key_claim("billing", "report", "order-42"),
        first.to_string(),
    )
    .await?;
    let again = admin
        .trigger("billing", "report", &keyed("order-42"))
        .await?;
    assert_eq!(again, Triggered::KeyUsed(first));
    assert_eq!(triggers_stored(&nats).await?, 0, "nothing published");

    // The same key of another job, and another key, are free.
    let other_job = admin.trigger("billing", "tick", &keyed("order-42")).await?;
    assert!(other_job.is_new(), "{other_job:?}");
    let fresh = admin
        .trigger("billing", "report", &keyed("order-43"))
        .await?;
    assert!(fresh.is_new(), "{fresh:?}");
    assert_eq!(triggers_stored(&nats).await?, 2);
    let stream = nats.stream(&nats.topo.triggers_stream()).await?;
    let msg = stream
        .get_last_raw_message_by_subject(&nats.topo.stored_trigger_subject("billing", "report"))
        .await?;
    let body = TriggerRequest::parse(&msg.payload).map_err(anyhow::Error::msg)?;
    assert_eq!(body.key.as_deref(), Some("order-43"));

    // Bad keys and oversized overrides are refused before anything is published.
    let empty = admin
        .trigger("billing", "report", &keyed(""))
        .await
        .expect_err("empty key");
    assert!(matches!(empty, SchedulerError::Invalid(_)), "{empty:?}");
    assert!(empty.to_string().contains("field `key`"), "{empty}");
    let long = admin
        .trigger("billing", "report", &keyed(&"k".repeat(257)))
        .await
        .expect_err("long key");
    assert!(long.to_string().contains("field `key`"), "{long}");
    let big = TriggerRequest {
        params: Some("p".repeat(antares_schemas::limits::MAX_PARAMS_BYTES + 1)),
        ..TriggerRequest::default()
    };
    let big = admin
        .trigger("billing", "report", &big)
        .await
        .expect_err("big params");
    assert!(big.to_string().contains("field `params`"), "{big}");
    assert_eq!(triggers_stored(&nats).await?, 2);
    Ok(())
}

#[tokio::test]
async fn backfill_queues_the_slots_without_an_instance() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    admin.apply_jobs(jobs()?).await?;
    // `tick` fires every 10 s: six slots from an aligned time an hour ago.
    let from = Timestamp((now().millis() - 3_600_000) / 10_000 * 10_000);
    let to = Timestamp(from.millis() + 50_000);
    let slots: Vec<Timestamp> = (0..6)
        .map(|i| Timestamp(from.millis() + i * 10_000))
        .collect();
    let id_of = |slot: Timestamp| InstanceId::for_fire("billing", "tick", slot);
    // Slots 1 and 3 ran already.
    for i in [1, 3] {
        let id = id_of(slots[i]);
        claim(
            &nats,
            &nats.topo.instance_claim_key(&id),
            nats.topo.instance_key("billing", "tick", &id),
        )
        .await?;
    }

    let out = admin.backfill("billing", "tick", from, to).await?;
    let got: Vec<(Timestamp, InstanceId, BackfillAction)> =
        out.iter().map(|s| (s.slot, s.instance, s.action)).collect();
    let want: Vec<(Timestamp, InstanceId, BackfillAction)> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let action = if i == 1 || i == 3 {
                BackfillAction::Exists
            } else {
                BackfillAction::Queued
            };
            (*slot, id_of(*slot), action)
        })
        .collect();
    assert_eq!(got, want);
    let json = serde_json::to_value(&out[1])?;
    assert_eq!(json["action"], "exists");
    assert_eq!(json["slot"], slots[1].to_rfc3339());

    // One trigger per queued slot, in slot order, with the slot and the id to make.
    assert_eq!(triggers_stored(&nats).await?, 4);
    let stream = nats.stream(&nats.topo.triggers_stream()).await?;
    for (seq, i) in [1u64, 2, 3, 4].into_iter().zip([0usize, 2, 4, 5]) {
        let msg = stream.get_raw_message(seq).await?;
        let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_string());
        assert_eq!(
            msg.subject.as_str(),
            nats.topo.stored_trigger_subject("billing", "tick")
        );
        assert_eq!(header(HEADER_TRIGGER).as_deref(), Some("backfill"));
        assert_eq!(header(HEADER_SLOT), Some(slots[i].millis().to_string()));
        assert_eq!(
            header(HEADER_MSG_ID),
            Some(format!("backfill.{}", id_of(slots[i])))
        );
        assert!(msg.payload.is_empty());
    }

    // Backfilling the same range again stores no second trigger for a slot.
    admin.backfill("billing", "tick", from, to).await?;
    assert_eq!(triggers_stored(&nats).await?, 4);

    // A range without slots is fine.
    let none = admin
        .backfill(
            "billing",
            "tick",
            Timestamp(from.millis() + 1),
            Timestamp(from.millis() + 9_999),
        )
        .await?;
    assert!(none.is_empty());

    // Refusals: no schedule, reversed range, the future, too many slots.
    let manual = parse_jobs("app = \"billing\"\nname = \"manual\"\n", SpecFormat::Toml)?;
    admin.apply_jobs(manual).await?;
    let err = admin
        .backfill("billing", "manual", from, to)
        .await
        .expect_err("no schedule");
    assert!(err.to_string().contains("has no schedule"), "{err}");
    let err = admin
        .backfill("billing", "tick", to, from)
        .await
        .expect_err("reversed");
    assert!(err.to_string().contains("is after --to"), "{err}");
    let err = admin
        .backfill("billing", "tick", from, Timestamp(now().millis() + 60_000))
        .await
        .expect_err("future");
    assert!(err.to_string().contains("in the future"), "{err}");
    let err = admin
        .backfill(
            "billing",
            "tick",
            Timestamp(from.millis() - 10_000 * 1_000),
            from,
        )
        .await
        .expect_err("too many");
    assert!(matches!(err, SchedulerError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains("more than 1000 slots")
            && err.to_string().contains("narrow the range"),
        "{err}"
    );
    let err = admin
        .backfill("billing", "nope", from, to)
        .await
        .expect_err("unknown job");
    assert!(matches!(err, SchedulerError::NotFound(_)), "{err:?}");
    assert_eq!(triggers_stored(&nats).await?, 4);
    Ok(())
}

fn job_with_children(name: &str, children: &[&str]) -> JobSpec {
    JobSpec {
        app: "chain".into(),
        name: name.into(),
        children: children.iter().map(|c| (*c).to_string()).collect(),
        ..JobSpec::default()
    }
}

#[tokio::test]
async fn a_cycle_of_children_is_refused() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    admin.create_app("chain", "").await?;
    admin
        .apply_jobs(vec![
            job_with_children("x", &["chain/y"]),
            job_with_children("w", &["chain/x"]),
        ])
        .await?;

    // y -> z -> x closes a cycle through the stored x.
    let err = admin
        .apply_jobs(vec![
            job_with_children("y", &["chain/z"]),
            job_with_children("z", &["chain/x"]),
        ])
        .await
        .expect_err("cycle");
    assert!(matches!(err, SchedulerError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("chain/y -> chain/z -> chain/x -> chain/y"),
        "{err}"
    );
    // Nothing was written.
    assert!(matches!(
        admin.get_job("chain", "y").await,
        Err(SchedulerError::NotFound(_))
    ));

    // Within the applied set alone, too.
    let err = admin
        .apply_jobs(vec![
            job_with_children("p", &["chain/q"]),
            job_with_children("q", &["chain/p"]),
        ])
        .await
        .expect_err("cycle");
    assert!(
        err.to_string().contains("chain/p -> chain/q -> chain/p"),
        "{err}"
    );

    // The applied x replaces the stored one: without its child the chain is no cycle.
    let out = admin
        .apply_jobs(vec![
            job_with_children("x", &[]),
            job_with_children("y", &["chain/z"]),
            job_with_children("z", &["chain/x"]),
        ])
        .await?;
    assert_eq!(out[0].action, ApplyAction::Updated);
    assert_eq!(out[1].action, ApplyAction::Created);
    // ... and putting the child back now would close it.
    let err = admin
        .apply_jobs(vec![job_with_children("x", &["chain/y"])])
        .await
        .expect_err("cycle");
    assert!(
        err.to_string()
            .contains("chain/x -> chain/y -> chain/z -> chain/x"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_one_shot_time_in_the_past_is_refused_at_apply() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    admin.create_app("billing", "").await?;
    let at = |t: Timestamp| JobSpec {
        app: "billing".into(),
        name: "once".into(),
        schedule: Some(antares_schemas::spec::ScheduleSpec {
            at: Some(t),
            ..Default::default()
        }),
        ..JobSpec::default()
    };
    let past = at(Timestamp(now().millis() - 60_000));
    let err = admin
        .apply_jobs(vec![past.clone()])
        .await
        .expect_err("past");
    assert!(
        matches!(err, SchedulerError::Spec(ref e) if e.field == "schedule.at"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("field `schedule.at`: `schedule.at` is in the past"),
        "{err}"
    );
    let ahead = at(Timestamp(now().millis() + 3_600_000));
    assert_eq!(
        admin.apply_jobs(vec![ahead]).await?[0].action,
        ApplyAction::Created
    );
    // A stored job whose time has come (here written as it would be stored) can be
    // applied again unchanged, as `job export` gives it back; a new past time cannot.
    let jobs = nats.buckets().await?.jobs.clone();
    jobs.put(
        nats.topo.job_key("billing", "once"),
        codec::encode("job", &past)?,
    )
    .await?;
    assert_eq!(
        admin.apply_jobs(vec![past.clone()]).await?[0].action,
        ApplyAction::Unchanged
    );
    let mut edited = past.clone();
    edited.description = "same time, other words".into();
    assert_eq!(
        admin.apply_jobs(vec![edited]).await?[0].action,
        ApplyAction::Updated
    );
    let earlier = at(Timestamp(now().millis() - 120_000));
    assert!(admin.apply_jobs(vec![earlier]).await.is_err());
    Ok(())
}

fn new_instance(app: &str, job: &str, shards: usize) -> Instance {
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
        shard_params: vec![String::new(); shards],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

async fn finish(
    store: &InstanceStore,
    stored: &mut Stored,
    status: InstanceStatus,
) -> anyhow::Result<()> {
    stored.instance.summary.status = status;
    stored.instance.summary.finished_at = Some(now());
    store.archive(stored).await?;
    Ok(())
}

#[tokio::test]
async fn instances_get_cancel_and_wait() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    let unknown = InstanceId::for_manual(Timestamp(1_000), 7);
    let err = admin.cancel_instance(&unknown).await.expect_err("unknown");
    assert!(matches!(err, SchedulerError::NotFound(_)));
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");
    assert!(matches!(
        admin.get_instance(&unknown).await,
        Err(SchedulerError::NotFound(_))
    ));
    assert!(matches!(
        admin.logs(&unknown, None, false).await,
        Err(SchedulerError::NotFound(_))
    ));

    let store = InstanceStore::open(&nats).await?;
    let mut running = store.create(new_instance("billing", "report", 2)).await?;
    let id = running.instance.summary.id;
    assert_eq!(admin.get_instance(&id).await?.shards.len(), 2);
    let listed = admin.list_instances(&Default::default()).await?;
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);

    // A cancel is a durable control message to the scheduler.
    admin.cancel_instance(&id).await?;
    let results = nats.stream(&nats.topo.results_stream()).await?;
    let msg = results
        .get_last_raw_message_by_subject(
            &nats.topo.stored_control_subject("billing", "report", &id),
        )
        .await?;
    let control: antares_schemas::messages::Control = codec::decode("control", &msg.payload)?;
    assert!(
        matches!(control, antares_schemas::messages::Control::Cancel { instance, .. } if instance == id)
    );

    // Not final yet: waiting with a timeout times out.
    let timed_out = admin
        .wait_instance("billing", "report", &id, Some(Duration::from_millis(300)))
        .await;
    assert!(
        matches!(timed_out, Err(SchedulerError::Timeout(_))),
        "{timed_out:?}"
    );

    // It ends (and the event says so) while someone waits: whichever the waiter sees
    // first, the event or its look at the store, it returns the ended instance.
    let waiter = {
        let admin = admin.clone();
        tokio::spawn(async move {
            admin
                .wait_instance("billing", "report", &id, Some(Duration::from_secs(20)))
                .await
        })
    };
    finish(&store, &mut running, InstanceStatus::Cancelled).await?;
    let event = Event::new(
        EventKind::InstanceFinished,
        "billing",
        "report",
        Some(id),
        now(),
    );
    nats.client
        .publish(
            nats.topo.event_subject("billing", "report"),
            codec::encode_json("event", &event)?,
        )
        .await?;
    let done = waiter.await??;
    assert_eq!(done.status, InstanceStatus::Cancelled);

    // Ended already: waiting returns at once, cancelling is refused.
    let done = admin.wait_instance("billing", "report", &id, None).await?;
    assert_eq!(done.id, id);
    let err = admin.cancel_instance(&id).await.expect_err("ended");
    assert!(matches!(err, SchedulerError::Conflict(_)));
    assert!(
        err.to_string().contains("already ended (cancelled)"),
        "{err}"
    );
    Ok(())
}

async fn publish_log(nats: &Nats, id: InstanceId, item: u32, line: &str) -> anyhow::Result<()> {
    let log = LogLine {
        instance: id,
        item,
        attempt: 1,
        worker: "w1".into(),
        at: now(),
        stream: LogStream::Stdout,
        line: line.into(),
    };
    nats.js
        .publish(
            nats.topo.log_subject("billing", "report", &id, item),
            codec::encode("log", &log)?,
        )
        .await?
        .await?;
    Ok(())
}

async fn collect(lines: antares_scheduler::admin::LogLines) -> anyhow::Result<Vec<(u32, String)>> {
    let all: Vec<_> =
        tokio::time::timeout(Duration::from_secs(20), lines.collect::<Vec<_>>()).await?;
    let mut out = Vec::new();
    for l in all {
        let l = l?;
        out.push((l.item, l.line));
    }
    Ok(out)
}

#[tokio::test]
async fn logs_read_and_follow() -> anyhow::Result<()> {
    let (_server, nats, admin) = setup().await?;
    let store = InstanceStore::open(&nats).await?;
    let mut stored = store.create(new_instance("billing", "report", 2)).await?;
    let id = stored.instance.summary.id;

    assert!(
        collect(admin.logs(&id, None, false).await?)
            .await?
            .is_empty()
    );
    publish_log(&nats, id, 0, "zero-1").await?;
    publish_log(&nats, id, 1, "one-1").await?;
    publish_log(&nats, id, 0, "zero-2").await?;
    let all = collect(admin.logs(&id, None, false).await?).await?;
    assert_eq!(
        all,
        vec![
            (0, "zero-1".into()),
            (1, "one-1".into()),
            (0, "zero-2".into())
        ]
    );
    let one = collect(admin.logs(&id, Some(1), false).await?).await?;
    assert_eq!(one, vec![(1, "one-1".into())]);
    let bad = admin.logs(&id, Some(2), false).await;
    assert!(matches!(bad, Err(SchedulerError::Invalid(_))));

    // Following: new lines come through, and the stream ends after the instance does.
    let mut follow = admin.logs(&id, Some(0), true).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await?;
    assert_eq!(
        first.map(|l| l.map(|l| l.line)).transpose()?,
        Some("zero-1".into())
    );
    let second = tokio::time::timeout(Duration::from_secs(10), follow.next()).await?;
    assert_eq!(
        second.map(|l| l.map(|l| l.line)).transpose()?,
        Some("zero-2".into())
    );
    publish_log(&nats, id, 0, "zero-3").await?;
    let third = tokio::time::timeout(Duration::from_secs(10), follow.next()).await?;
    assert_eq!(
        third.map(|l| l.map(|l| l.line)).transpose()?,
        Some("zero-3".into())
    );
    finish(&store, &mut stored, InstanceStatus::Success).await?;
    let rest = collect(follow).await?;
    assert!(rest.is_empty(), "{rest:?}");
    Ok(())
}

#[tokio::test]
async fn cluster_and_cron_preview() -> anyhow::Result<()> {
    let (_server, _nats, admin) = setup().await?;
    let view = admin.cluster().await?;
    assert!(view.schedulers.is_empty() && view.workers.is_empty());

    let after: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let next = antares_scheduler::admin::cron_next("0 0 12 ? * MON#2", "UTC", 3, Some(after))?;
    let text: Vec<String> = next.iter().map(|t| t.to_rfc3339()).collect();
    assert_eq!(
        text,
        vec![
            "2026-01-12T12:00:00.000Z",
            "2026-02-09T12:00:00.000Z",
            "2026-03-09T12:00:00.000Z"
        ]
    );
    let err =
        antares_scheduler::admin::cron_next("0 0 25 * * ?", "UTC", 3, None).expect_err("bad hour");
    assert!(matches!(err, SchedulerError::Invalid(_)));
    let err = antares_scheduler::admin::cron_next("0 0 12 * * ?", "Mars/Base", 3, None)
        .expect_err("bad tz");
    assert!(err.to_string().contains("Mars/Base"), "{err}");
    Ok(())
}
