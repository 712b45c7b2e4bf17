//! Job versions against a real nats-server: every change of a spec is one version, by
//! whoever made it; old ones can be read and put back.

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats};
use antares_scheduler::SchedulerError;
use antares_scheduler::admin::{Admin, ApplyAction};
use antares_schemas::Topology;
use antares_schemas::audit::{Actor, JobVersion, VersionAction, Via};
use antares_schemas::spec::{JobSpec, SpecFormat, parse_jobs};
use futures::StreamExt;
use futures::future::join_all;

async fn setup() -> anyhow::Result<(LocalServer, Admin)> {
    let server = LocalServer::start_temp()?;
    let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
    let opts = ProvisionOptions {
        memory: true,
        ..ProvisionOptions::default()
    };
    provision(&nats, &opts).await?;
    let admin = Admin::open(&nats).await?;
    admin.create_app("billing", "").await?;
    Ok((server, admin))
}

fn alice() -> Actor {
    Actor {
        name: "alice".into(),
        via: Via::Cli,
        host: Some("desk".into()),
    }
}

fn job(name: &str, params: &str) -> anyhow::Result<JobSpec> {
    let text = format!(
        "app = \"billing\"\nname = \"{name}\"\nhandler = \"noop\"\nparams = \"{params}\"\nschedule = {{ every = \"1h\" }}\n"
    );
    Ok(parse_jobs(&text, SpecFormat::Toml)?.remove(0))
}

fn numbers(versions: &[JobVersion]) -> Vec<u64> {
    versions.iter().map(|v| v.version).collect()
}

#[tokio::test]
async fn every_change_is_a_version_by_its_actor() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    let admin = admin.acting_as(alice());
    let missing = admin.job_versions("billing", "report").await;
    assert!(
        matches!(missing, Err(SchedulerError::NotFound(_))),
        "{missing:?}"
    );

    for params in ["one", "two", "three"] {
        admin.apply_jobs(vec![job("report", params)?]).await?;
    }
    let versions = admin.job_versions("billing", "report").await?;
    assert_eq!(numbers(&versions), [3, 2, 1], "newest first");
    for v in &versions {
        assert_eq!(v.actor, alice());
        assert_eq!(v.action, VersionAction::Apply);
        assert_eq!(v.from_version, None);
    }
    assert_eq!(
        versions[0].spec.as_ref().map(|s| s.params.as_str()),
        Some("three")
    );
    assert_eq!(
        versions[2].spec.as_ref().map(|s| s.params.as_str()),
        Some("one")
    );

    // An unchanged apply writes nothing.
    let out = admin.apply_jobs(vec![job("report", "three")?]).await?;
    assert_eq!(out[0].action, ApplyAction::Unchanged);
    assert_eq!(admin.job_versions("billing", "report").await?.len(), 3);

    // Pause, resume and delete are versions too; a delete has no spec.
    admin.set_job_enabled("billing", "report", false).await?;
    admin.set_job_enabled("billing", "report", false).await?; // no change, no version
    admin.set_job_enabled("billing", "report", true).await?;
    admin.delete_job("billing", "report").await?;
    let versions = admin.job_versions("billing", "report").await?;
    assert_eq!(numbers(&versions), [6, 5, 4, 3, 2, 1]);
    let actions: Vec<VersionAction> = versions.iter().take(3).map(|v| v.action).collect();
    assert_eq!(
        actions,
        [
            VersionAction::Delete,
            VersionAction::Resume,
            VersionAction::Pause
        ]
    );
    assert_eq!(versions[0].spec, None);
    assert_eq!(versions[2].spec.as_ref().map(|s| s.enabled), Some(false));

    // The delete cannot be put back; v1 can, and makes the deleted job again.
    let refused = admin
        .rollback_job("billing", "report", 6)
        .await
        .expect_err("a delete has no spec");
    assert!(matches!(refused, SchedulerError::Invalid(_)), "{refused:?}");
    assert!(refused.to_string().contains("deletion"), "{refused}");
    assert!(matches!(
        admin.get_job("billing", "report").await,
        Err(SchedulerError::NotFound(_))
    ));
    let rolled = admin.rollback_job("billing", "report", 1).await?;
    assert_eq!(rolled.version, 7);
    assert_eq!(rolled.action, VersionAction::Rollback);
    assert_eq!(rolled.from_version, Some(1));
    assert_eq!(rolled.actor, alice());
    let v1 = admin.job_version("billing", "report", 1).await?;
    assert_eq!(Some(admin.get_job("billing", "report").await?), v1.spec);
    assert_eq!(rolled.spec, v1.spec);
    assert_eq!(admin.job_version("billing", "report", 7).await?, rolled);

    // Rolling back to what is there already changes nothing.
    let again = admin
        .rollback_job("billing", "report", 1)
        .await
        .expect_err("same spec");
    assert!(matches!(again, SchedulerError::Conflict(_)), "{again:?}");
    assert_eq!(admin.job_versions("billing", "report").await?.len(), 7);

    let unknown = admin
        .job_version("billing", "report", 99)
        .await
        .expect_err("no such version");
    assert!(matches!(unknown, SchedulerError::NotFound(_)));
    assert!(
        unknown.to_string().contains("versions 1 to 7 are kept"),
        "{unknown}"
    );
    Ok(())
}

#[tokio::test]
async fn the_last_fifty_versions_are_kept() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    for i in 1..=55 {
        admin
            .apply_jobs(vec![job("report", &format!("p{i}"))?])
            .await?;
    }
    let versions = admin.job_versions("billing", "report").await?;
    assert_eq!(versions.len(), 50);
    assert_eq!(versions.first().map(|v| v.version), Some(55));
    assert_eq!(versions.last().map(|v| v.version), Some(6));
    assert_eq!(
        versions[0].spec.as_ref().map(|s| s.params.as_str()),
        Some("p55")
    );
    let gone = admin
        .job_version("billing", "report", 3)
        .await
        .expect_err("too old");
    assert!(
        gone.to_string().contains("too old") && gone.to_string().contains("versions 6 to 55"),
        "{gone}"
    );
    let rolled = admin.rollback_job("billing", "report", 6).await?;
    assert_eq!(rolled.version, 56);
    assert_eq!(admin.get_job("billing", "report").await?.params, "p6");
    Ok(())
}

#[tokio::test]
async fn a_bulk_apply_writes_a_version_per_job() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    let specs: Vec<JobSpec> = (0..200)
        .map(|i| job(&format!("j{i}"), "x"))
        .collect::<anyhow::Result<_>>()?;
    let out = admin.apply_jobs(specs.clone()).await?;
    assert!(out.iter().all(|o| o.action == ApplyAction::Created));
    let all = join_all(specs.iter().map(|s| admin.job_versions(&s.app, &s.name))).await;
    for (spec, versions) in specs.iter().zip(all) {
        let versions = versions?;
        assert_eq!(numbers(&versions), [1], "{}", spec.full_name());
        assert_eq!(versions[0].spec.as_ref(), Some(spec));
    }

    // Applied again with one changed: one more version, for that one.
    let mut changed = specs.clone();
    changed[17].params = "y".into();
    let out = admin.apply_jobs(changed).await?;
    let updated: Vec<&str> = out
        .iter()
        .filter(|o| o.action == ApplyAction::Updated)
        .map(|o| o.job.as_str())
        .collect();
    assert_eq!(updated, ["j17"]);
    assert_eq!(
        numbers(&admin.job_versions("billing", "j17").await?),
        [2, 1]
    );
    assert_eq!(numbers(&admin.job_versions("billing", "j18").await?), [1]);

    let entries = admin.audit_log(1000, None, None).await?;
    let applies = entries.iter().filter(|e| e.action == "job.apply").count();
    assert_eq!(applies, 201);
    Ok(())
}

#[tokio::test]
async fn a_refused_rollback_writes_nothing() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    admin.apply_jobs(vec![job("report", "a")?]).await?;
    admin.apply_jobs(vec![job("report", "b")?]).await?;
    admin.delete_job("billing", "report").await?;
    admin.delete_app("billing").await?;
    // Its app is gone: the rollback is checked like an apply.
    let refused = admin
        .rollback_job("billing", "report", 1)
        .await
        .expect_err("no app");
    assert!(
        refused.to_string().contains("antares app create billing"),
        "{refused}"
    );
    assert_eq!(
        numbers(&admin.job_versions("billing", "report").await?),
        [3, 2, 1]
    );
    let bad = admin
        .job_versions("billing", "Bad")
        .await
        .expect_err("name");
    assert!(matches!(bad, SchedulerError::Name(_)), "{bad:?}");
    Ok(())
}

#[tokio::test]
async fn racing_changes_never_leave_a_spec_without_its_version() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    admin.apply_jobs(vec![job("report", "start")?]).await?;
    let applies = (0..8).map(|i| {
        let admin = admin.clone();
        async move {
            let spec = job("report", &format!("p{i}"))?;
            let params = spec.params.clone();
            anyhow::Ok((params, admin.apply_jobs(vec![spec]).await))
        }
    });
    let mut applied = Vec::new();
    for result in join_all(applies).await {
        let (params, outcome) = result?;
        match outcome {
            Ok(_) => applied.push(params),
            Err(SchedulerError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    assert!(!applied.is_empty());
    let versions = admin.job_versions("billing", "report").await?;
    let n = versions.len() as u64;
    assert_eq!(numbers(&versions), (1..=n).rev().collect::<Vec<u64>>());
    let kept: Vec<&str> = versions
        .iter()
        .filter_map(|v| v.spec.as_ref().map(|s| s.params.as_str()))
        .collect();
    for params in &applied {
        assert!(kept.contains(&params.as_str()), "{params} has no version");
    }
    let stored = admin.get_job("billing", "report").await?;
    assert!(
        kept.contains(&stored.params.as_str()),
        "the stored spec has no version"
    );
    Ok(())
}

/// The last sequence of a bucket's stream: it moves with every write.
async fn last_write(admin: &Admin, bucket: &str) -> anyhow::Result<u64> {
    let mut stream = admin.nats().stream(&format!("KV_{bucket}")).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// How many `job.apply` entries the audit log holds per job, read page by page.
async fn applies_per_job(admin: &Admin) -> anyhow::Result<std::collections::HashMap<String, u32>> {
    let mut out = std::collections::HashMap::new();
    let mut before = None;
    loop {
        let page = admin.audit_log(1000, before, None).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for e in page.iter().filter(|e| e.action == "job.apply") {
            *out.entry(e.target.clone()).or_default() += 1;
        }
    }
    Ok(out)
}

#[tokio::test]
async fn a_bulk_apply_of_thousands_writes_only_what_changed() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    let topo = admin.nats().topo.clone();
    let (jobs, versions) = (topo.jobs_bucket(), topo.versions_bucket());
    // One job deleted before the bulk apply: made again after its delete marker.
    admin.apply_jobs(vec![job("j5", "old")?]).await?;
    admin.delete_job("billing", "j5").await?;

    let n = 3000;
    let specs: Vec<JobSpec> = (0..n)
        .map(|i| job(&format!("j{i}"), "x"))
        .collect::<anyhow::Result<_>>()?;
    let out = admin.apply_jobs(specs.clone()).await?;
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|o| o.action == ApplyAction::Created));
    let stored = admin.list_jobs(Some("billing")).await?;
    assert_eq!(stored.len(), n);
    let wanted: std::collections::HashMap<String, &JobSpec> =
        specs.iter().map(|s| (s.full_name(), s)).collect();
    assert!(
        stored
            .iter()
            .all(|s| wanted.get(&s.full_name()) == Some(&s))
    );
    for name in ["j0", "j1234", "j2999"] {
        assert_eq!(numbers(&admin.job_versions("billing", name).await?), [1]);
    }
    assert_eq!(
        numbers(&admin.job_versions("billing", "j5").await?),
        [3, 2, 1]
    );
    let audited = applies_per_job(&admin).await?;
    for spec in &specs {
        let want = if spec.name == "j5" { 2 } else { 1 };
        assert_eq!(
            audited.get(&spec.full_name()).copied(),
            Some(want),
            "{}",
            spec.full_name()
        );
    }

    // Applied again unchanged: nothing is written, no version, no audit entry.
    let (jobs_at, versions_at) = (
        last_write(&admin, &jobs).await?,
        last_write(&admin, &versions).await?,
    );
    let out = admin.apply_jobs(specs.clone()).await?;
    assert!(out.iter().all(|o| o.action == ApplyAction::Unchanged));
    assert_eq!(last_write(&admin, &jobs).await?, jobs_at);
    assert_eq!(last_write(&admin, &versions).await?, versions_at);
    assert_eq!(applies_per_job(&admin).await?, audited);

    // A tenth changed: a new version for each of those, and only for those.
    let mut changed = specs.clone();
    for spec in changed.iter_mut().step_by(10) {
        spec.params = "y".into();
    }
    let out = admin.apply_jobs(changed.clone()).await?;
    let updated = out
        .iter()
        .filter(|o| o.action == ApplyAction::Updated)
        .count();
    assert_eq!(updated, n / 10);
    assert_eq!(last_write(&admin, &jobs).await?, jobs_at + (n / 10) as u64);
    assert_eq!(
        last_write(&admin, &versions).await?,
        versions_at + (n / 10) as u64
    );
    assert_eq!(
        numbers(&admin.job_versions("billing", "j10").await?),
        [2, 1]
    );
    assert_eq!(numbers(&admin.job_versions("billing", "j11").await?), [1]);
    assert_eq!(admin.get_job("billing", "j2990").await?.params, "y");
    Ok(())
}

#[tokio::test]
async fn racing_bulk_applies_keep_versions_contiguous() -> anyhow::Result<()> {
    let (_server, admin) = setup().await?;
    let n = 1000;
    let batch = |params: String| -> anyhow::Result<Vec<JobSpec>> {
        (0..n).map(|i| job(&format!("j{i}"), &params)).collect()
    };
    admin.apply_jobs(batch("start".into())?).await?;
    let applies = (0..4).map(|round| {
        let admin = admin.clone();
        async move {
            let specs = batch(format!("p{round}"))?;
            anyhow::Ok(admin.apply_jobs(specs).await)
        }
    });
    for outcome in join_all(applies).await {
        match outcome? {
            Ok(_) | Err(SchedulerError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let stored = admin.list_jobs(Some("billing")).await?;
    assert_eq!(stored.len(), n);
    let mut kept = every_version(&admin).await?;
    for spec in &stored {
        let versions = kept.remove(&spec.full_name()).unwrap_or_default();
        let count = versions.len() as u64;
        assert_eq!(
            numbers(&versions),
            (1..=count).collect::<Vec<u64>>(),
            "{}",
            spec.full_name()
        );
        assert!(
            versions.iter().any(|v| v.spec.as_ref() == Some(spec)),
            "the stored spec of {} has no version",
            spec.full_name()
        );
    }
    Ok(())
}

/// Every kept version of every job, oldest first, read in one pass over the bucket's
/// stream (reading them job by job would take a consumer each).
async fn every_version(
    admin: &Admin,
) -> anyhow::Result<std::collections::HashMap<String, Vec<JobVersion>>> {
    use antares_nats::async_nats::jetstream::consumer::{DeliverPolicy, push};
    let nats = admin.nats();
    let bucket = nats.topo.versions_bucket();
    let stream = nats.stream(&format!("KV_{bucket}")).await?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: nats.client.new_inbox(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut out: std::collections::HashMap<String, Vec<JobVersion>> = Default::default();
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await?;
    let prefix = format!("$KV.{bucket}.");
    while pending > 0 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the versions stream ended"))??;
        pending = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending;
        let key = msg
            .subject
            .trim_start_matches(prefix.as_str())
            .replacen('.', "/", 1);
        let version: JobVersion = antares_nats::codec::decode("job version", &msg.payload)?;
        out.entry(key).or_default().push(version);
    }
    Ok(out)
}
