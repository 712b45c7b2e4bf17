use super::*;
use crate::ids::InstanceId;
use crate::instance::{Instance, NewInstance, ShardCounts, TriggerKind};
use crate::messages::Execution;

const T0: Timestamp = Timestamp(1_000_000);

fn instance(n: usize) -> Instance {
    Instance::create(NewInstance {
        id: InstanceId::for_fire("app", "job", T0),
        app: "app".into(),
        job: "job".into(),
        trigger: TriggerKind::Cron,
        scheduled_at: T0,
        params: String::new(),
        exec: Execution::Plugin {
            handler: "job".into(),
        },
        timeout_ms: 0,
        shard_params: (0..n).map(|i| i.to_string()).collect(),
    })
}

fn report(item: u32, attempt: u32, kind: ReportKind) -> Input {
    Input::Report(ShardReport {
        instance: InstanceId::for_fire("app", "job", T0),
        item,
        worker: "w1".into(),
        attempt,
        at: Timestamp(T0.0 + i64::from(attempt)),
        kind,
    })
}

fn finished(item: u32, attempt: u32, outcome: ShardOutcome) -> Input {
    report(
        item,
        attempt,
        ReportKind::Finished {
            started_at: T0,
            outcome,
        },
    )
}

fn started(item: u32, attempt: u32) -> Input {
    report(item, attempt, ReportKind::Started)
}

fn emitted(step: &Step) -> Vec<EventKind> {
    step.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(ev.kind),
            _ => None,
        })
        .collect()
}

fn check_counts(inst: &Instance) {
    assert_eq!(inst.summary.shard_counts, ShardCounts::of(&inst.shards));
}

#[test]
fn all_shards_succeed() {
    let mut inst = instance(3);
    let s = step(&mut inst, &Input::Queued, T0);
    assert_eq!(inst.summary.status, InstanceStatus::Running);
    assert!(inst.summary.pending_params.is_empty());
    assert_eq!(emitted(&s), vec![EventKind::InstanceStarted]);
    for i in 0..3 {
        let s = step(&mut inst, &started(i, 1), T0);
        assert_eq!(emitted(&s), vec![EventKind::ShardStarted]);
        assert_eq!(inst.shards[i as usize].status, ShardStatus::Running);
        let s = step(&mut inst, &finished(i, 1, ShardOutcome::Success), T0);
        check_counts(&inst);
        if i < 2 {
            assert_eq!(emitted(&s), vec![EventKind::ShardFinished]);
            assert!(!s.effects.contains(&Effect::Finished));
        } else {
            assert_eq!(
                emitted(&s),
                vec![EventKind::ShardFinished, EventKind::InstanceFinished]
            );
            assert!(s.effects.contains(&Effect::Finished));
        }
    }
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(inst.summary.finished_at, Some(T0));
    assert!(
        inst.shards
            .iter()
            .all(|s| s.attempts == 1 && s.worker.as_deref() == Some("w1"))
    );
}

#[test]
fn one_failure_fails_the_instance_with_its_error() {
    let mut inst = instance(2);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &finished(0, 1, ShardOutcome::Success), T0);
    let s = step(
        &mut inst,
        &finished(
            1,
            1,
            ShardOutcome::Failed {
                error: "boom".into(),
            },
        ),
        T0,
    );
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    assert_eq!(inst.shards[1].status, ShardStatus::Failed);
    assert_eq!(inst.shards[1].error.as_deref(), Some("boom"));
    let finished_event = s.effects.iter().find_map(|e| match e {
        Effect::Emit(ev) if ev.kind == EventKind::ShardFinished => Some((**ev).clone()),
        _ => None,
    });
    assert_eq!(
        finished_event.and_then(|e| e.error),
        Some("boom".to_string())
    );
}

#[test]
fn later_runs_again_then_succeeds() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &started(0, 1), T0);
    step(&mut inst, &finished(0, 1, ShardOutcome::Later), T0);
    assert_eq!(inst.shards[0].status, ShardStatus::Later);
    assert_eq!(inst.summary.status, InstanceStatus::Running);
    // A late duplicate of attempt 1 changes nothing.
    assert!(step(&mut inst, &started(0, 1), T0).ignored.is_some());
    assert!(
        step(&mut inst, &finished(0, 1, ShardOutcome::Later), T0)
            .ignored
            .is_some()
    );
    step(&mut inst, &started(0, 2), T0);
    assert_eq!(inst.shards[0].status, ShardStatus::Running);
    step(&mut inst, &finished(0, 2, ShardOutcome::Success), T0);
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(inst.shards[0].attempts, 2);
    check_counts(&inst);
}

#[test]
fn finished_without_started_is_enough() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    let s = step(&mut inst, &finished(0, 1, ShardOutcome::Success), T0);
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert_eq!(inst.shards[0].started_at, Some(T0));
    // The start was never reported on its own: its event still goes out, first.
    assert_eq!(
        emitted(&s),
        vec![
            EventKind::ShardStarted,
            EventKind::ShardFinished,
            EventKind::InstanceFinished
        ]
    );
}

#[test]
fn reports_before_queued_start_the_instance() {
    let mut inst = instance(2);
    let s = step(&mut inst, &started(0, 1), T0);
    assert_eq!(inst.summary.status, InstanceStatus::Running);
    assert_eq!(
        emitted(&s),
        vec![EventKind::InstanceStarted, EventKind::ShardStarted]
    );
    assert!(step(&mut inst, &Input::Queued, T0).ignored.is_some());
}

#[test]
fn cancel_stops_pending_shards_and_freezes_the_instance() {
    let mut inst = instance(3);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &finished(0, 1, ShardOutcome::Success), T0);
    step(&mut inst, &started(1, 1), T0);
    let s = step(&mut inst, &Input::Cancel, T0);
    assert_eq!(inst.summary.status, InstanceStatus::Cancelled);
    assert!(s.effects.contains(&Effect::PurgeQueued));
    assert!(s.effects.contains(&Effect::Finished));
    assert_eq!(inst.shards[0].status, ShardStatus::Success);
    assert_eq!(inst.shards[1].status, ShardStatus::Cancelled);
    assert_eq!(inst.shards[2].status, ShardStatus::Cancelled);
    check_counts(&inst);
    let frozen = inst.clone();
    for input in [
        finished(1, 1, ShardOutcome::Success),
        started(2, 1),
        Input::Cancel,
        Input::Queued,
    ] {
        assert!(step(&mut inst, &input, T0).ignored.is_some());
        assert_eq!(inst, frozen);
    }
}

#[test]
fn out_of_range_and_attempt_zero_are_ignored() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    assert!(step(&mut inst, &started(5, 1), T0).ignored.is_some());
    assert!(step(&mut inst, &started(0, 0), T0).ignored.is_some());
}

/// Every shard status against every report kind and every attempt relation.
#[test]
fn every_shard_state_against_every_report() {
    let outcomes = [
        ReportKind::Started,
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::Success,
        },
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::Failed { error: "e".into() },
        },
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::Later,
        },
    ];
    for status in ShardStatus::ALL {
        for current in [0u32, 2] {
            if status == ShardStatus::Pending && current != 0 {
                continue;
            }
            for attempt in [1u32, 2, 3] {
                for kind in &outcomes {
                    let mut inst = instance(2);
                    step(&mut inst, &Input::Queued, T0);
                    inst.shards[0].status = status;
                    inst.shards[0].attempts = current;
                    inst.summary.shard_counts = ShardCounts::of(&inst.shards);
                    let before = inst.shards[0].clone();
                    let s = step(&mut inst, &report(0, attempt, kind.clone()), T0);
                    check_counts(&inst);
                    let after = &inst.shards[0];
                    if status.is_final() {
                        assert_eq!(after, &before, "{status:?} must never change");
                        assert!(s.ignored.is_some());
                        continue;
                    }
                    if attempt < current {
                        assert_eq!(after, &before, "stale attempt {attempt} < {current}");
                        continue;
                    }
                    if s.ignored.is_some() {
                        // Only duplicates of the current attempt are ignored.
                        assert_eq!(attempt, current, "{status:?} {kind:?}");
                        assert_eq!(after, &before);
                        continue;
                    }
                    assert_eq!(after.attempts, attempt);
                    let expected = match kind {
                        ReportKind::Started => ShardStatus::Running,
                        ReportKind::Finished { outcome, .. } => match outcome {
                            ShardOutcome::Success => ShardStatus::Success,
                            ShardOutcome::Failed { .. } => ShardStatus::Failed,
                            ShardOutcome::Later => ShardStatus::Later,
                        },
                    };
                    assert_eq!(after.status, expected, "{status:?} + {kind:?}");
                    assert_eq!(inst.summary.status, InstanceStatus::Running);
                }
            }
        }
    }
}

/// Long pseudo-random sequences keep the invariants.
#[test]
fn random_sequences_keep_invariants() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..500 {
        let mut inst = instance(3);
        let mut was_final = None;
        for _ in 0..30 {
            let item = u32::try_from(next(3)).unwrap_or(0);
            let attempt = u32::try_from(next(4)).unwrap_or(0) + 1;
            let input = match next(6) {
                0 => Input::Queued,
                1 => Input::Cancel,
                2 => started(item, attempt),
                3 => finished(item, attempt, ShardOutcome::Success),
                4 => finished(item, attempt, ShardOutcome::Failed { error: "x".into() }),
                _ => finished(item, attempt, ShardOutcome::Later),
            };
            let s = step(&mut inst, &input, T0);
            check_counts(&inst);
            if let Some(frozen) = &was_final {
                assert_eq!(&inst, frozen);
                assert!(s.ignored.is_some());
            }
            let all_final = inst.shards.iter().all(|s| s.status.is_final());
            assert_eq!(inst.summary.status.is_final(), all_final);
            if inst.summary.status.is_final() {
                assert!(inst.summary.finished_at.is_some());
                if was_final.is_none() {
                    assert!(s.effects.contains(&Effect::Finished));
                }
                was_final = Some(inst.clone());
            }
        }
    }
}
