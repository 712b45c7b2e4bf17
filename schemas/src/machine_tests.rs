use super::*;
use crate::ids::InstanceId;
use crate::instance::{Instance, NewInstance, RetryPolicy, ShardCounts, TriggerKind};
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
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    })
}

fn report(item: u32, attempt: u32, kind: ReportKind) -> Input {
    Input::Report(ShardReport {
        instance: InstanceId::for_fire("app", "job", T0),
        item,
        worker: "w1".into(),
        attempt,
        run: 1,
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
fn an_armed_instance_is_armed_no_more_once_queued_or_skipped() {
    let mut inst = instance(1);
    inst.summary.armed = true;
    step(&mut inst, &Input::Queued, T0);
    assert!(!inst.summary.armed);
    assert_eq!(inst.summary.status, InstanceStatus::Running);

    let mut inst = instance(1);
    inst.summary.armed = true;
    let s = step(
        &mut inst,
        &Input::Skip {
            reason: "paused".into(),
        },
        T0,
    );
    assert!(!inst.summary.armed);
    assert_eq!(inst.summary.status, InstanceStatus::Skipped);
    assert_eq!(emitted(&s), vec![EventKind::InstanceFinished]);
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
    let s = step(&mut inst, &Input::Cancel { reason: None }, T0);
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
        Input::Cancel { reason: None },
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
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::TimedOut { error: "t".into() },
        },
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::Cancelled,
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
                            ShardOutcome::TimedOut { .. } => ShardStatus::TimedOut,
                            ShardOutcome::Cancelled => ShardStatus::Failed,
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
    for round in 0..1000 {
        let mut inst = instance(3);
        inst.summary.retry = RetryPolicy {
            max: u32::try_from(round % 3).unwrap_or(0),
            backoff_ms: 10,
            multiplier: 2.0,
            max_backoff_ms: 1000,
        };
        let mut was_final = None;
        for _ in 0..40 {
            let item = u32::try_from(next(3)).unwrap_or(0);
            let attempt = u32::try_from(next(6)).unwrap_or(0) + 1;
            let run = inst.shards[item as usize].run + u32::from(next(5) == 0);
            let input = match next(11) {
                0 => Input::Queued,
                1 if next(4) == 0 => Input::Cancel { reason: None },
                2 => started(item, attempt),
                3 | 1 => finished(item, attempt, ShardOutcome::Success),
                4 => finished(item, attempt, ShardOutcome::Failed { error: "x".into() }),
                5 => finished(item, attempt, ShardOutcome::TimedOut { error: "t".into() }),
                6 => Input::Lost {
                    item,
                    worker: "w1".into(),
                },
                7 if next(2) == 0 => Input::Reroute { item },
                7 => Input::Expired { item },
                8 => Input::RetryDue { item },
                9 if next(3) == 0 => Input::Recount,
                _ => finished(item, attempt, ShardOutcome::Later),
            };
            let input = match input {
                Input::Report(mut r) => {
                    r.run = run;
                    Input::Report(r)
                }
                other => other,
            };
            let runs_before: Vec<u32> = inst.shards.iter().map(|s| s.run).collect();
            let s = step(&mut inst, &input, T0);
            check_counts(&inst);
            for (sh, before) in inst.shards.iter().zip(&runs_before) {
                assert!(sh.run >= *before, "runs never go back");
                assert!(sh.retries <= inst.summary.retry.max);
                assert!(sh.reruns <= crate::limits::MAX_RERUNS + 1);
                assert!(sh.laters <= crate::limits::MAX_LATER);
                assert_eq!(
                    sh.retry_at.is_some() && !sh.status.is_final(),
                    sh.retry_at.is_some(),
                    "a final shard waits for no retry"
                );
            }
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

fn report_run(item: u32, attempt: u32, run: u32, kind: ReportKind) -> Input {
    match report(item, attempt, kind) {
        Input::Report(mut r) => {
            r.run = run;
            Input::Report(r)
        }
        other => other,
    }
}

fn with_retry(n: usize, max: u32) -> Instance {
    let mut inst = instance(n);
    inst.summary.retry = RetryPolicy {
        max,
        backoff_ms: 1000,
        multiplier: 2.0,
        max_backoff_ms: 3000,
    };
    inst
}

fn fail(item: u32, attempt: u32, run: u32) -> Input {
    report_run(
        item,
        attempt,
        run,
        ReportKind::Finished {
            started_at: T0,
            outcome: ShardOutcome::Failed {
                error: "boom".into(),
            },
        },
    )
}

#[test]
fn failed_shards_retry_with_backoff_then_fail() {
    let mut inst = with_retry(2, 3);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &finished(1, 1, ShardOutcome::Success), T0);
    let mut attempt = 1;
    for (retry, wait) in [(1u32, 1000i64), (2, 2000), (3, 3000)] {
        let s = step(&mut inst, &fail(0, attempt, retry), T0);
        check_counts(&inst);
        let sh = &inst.shards[0];
        assert_eq!(sh.status, ShardStatus::Pending, "retry {retry}");
        assert_eq!(sh.retries, retry);
        assert_eq!(sh.run, retry + 1);
        assert_eq!(sh.retry_at, Some(Timestamp(T0.0 + wait)));
        assert!(s.effects.contains(&Effect::RetryAt {
            item: 0,
            at: Timestamp(T0.0 + wait)
        }));
        assert_eq!(inst.summary.status, InstanceStatus::Running);
        // A late report of the old run changes nothing.
        let stale = step(&mut inst, &fail(0, attempt, retry), T0);
        assert!(stale.ignored.is_some());
        let due = step(&mut inst, &Input::RetryDue { item: 0 }, T0);
        assert_eq!(due.effects, vec![Effect::Publish { items: vec![0] }]);
        assert!(
            step(&mut inst, &Input::RetryDue { item: 0 }, T0)
                .ignored
                .is_some()
        );
        attempt += 1;
    }
    step(&mut inst, &fail(0, attempt, 4), T0);
    assert_eq!(inst.shards[0].status, ShardStatus::Failed);
    assert_eq!(inst.shards[0].attempts, 4);
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
}

#[test]
fn a_timed_out_shard_times_out_its_instance_unless_another_failed() {
    let mut inst = instance(2);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &finished(0, 1, ShardOutcome::Success), T0);
    step(
        &mut inst,
        &finished(
            1,
            1,
            ShardOutcome::TimedOut {
                error: "timed out after 1s".into(),
            },
        ),
        T0,
    );
    assert_eq!(inst.shards[1].status, ShardStatus::TimedOut);
    assert_eq!(inst.summary.status, InstanceStatus::TimedOut);

    let mut inst = instance(2);
    step(&mut inst, &Input::Queued, T0);
    step(
        &mut inst,
        &finished(0, 1, ShardOutcome::Failed { error: "x".into() }),
        T0,
    );
    step(
        &mut inst,
        &finished(1, 1, ShardOutcome::TimedOut { error: "t".into() }),
        T0,
    );
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
}

#[test]
fn the_scheduler_ends_a_shard_past_its_timeout_and_stops_it() {
    let mut inst = with_retry(1, 1);
    inst.summary.timeout_ms = 1000;
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &started(0, 1), T0);
    let s = step(
        &mut inst,
        &Input::Expired { item: 0 },
        Timestamp(T0.0 + 20_000),
    );
    assert!(s.effects.iter().any(|e| matches!(
        e,
        Effect::Stop {
            item: Some(0),
            run: Some(1),
            outcome: StopOutcome::TimedOut,
            ..
        }
    )));
    assert!(s.effects.contains(&Effect::Purge { item: 0 }));
    assert_eq!(inst.shards[0].status, ShardStatus::Pending, "retried");
    assert_eq!(inst.shards[0].run, 2);
    step(&mut inst, &Input::RetryDue { item: 0 }, T0);
    step(&mut inst, &report_run(0, 2, 2, ReportKind::Started), T0);
    step(
        &mut inst,
        &Input::Expired { item: 0 },
        Timestamp(T0.0 + 40_000),
    );
    assert_eq!(inst.shards[0].status, ShardStatus::TimedOut);
    assert_eq!(inst.summary.status, InstanceStatus::TimedOut);
}

#[test]
fn a_lost_worker_reruns_its_shard_without_using_retries_and_is_bounded() {
    let mut inst = with_retry(1, 0);
    step(&mut inst, &Input::Queued, T0);
    let mut attempt = 1;
    for rerun in 1..=crate::limits::MAX_RERUNS {
        step(
            &mut inst,
            &report_run(0, attempt, rerun, ReportKind::Started),
            T0,
        );
        // Another worker than the one running it is lost: nothing happens.
        let other = Input::Lost {
            item: 0,
            worker: "w9".into(),
        };
        assert!(step(&mut inst, &other, T0).ignored.is_some());
        let s = step(
            &mut inst,
            &Input::Lost {
                item: 0,
                worker: "w1".into(),
            },
            T0,
        );
        assert_eq!(
            s.effects,
            vec![
                Effect::Purge { item: 0 },
                Effect::Publish { items: vec![0] }
            ]
        );
        assert_eq!(inst.shards[0].status, ShardStatus::Pending);
        assert_eq!(inst.shards[0].retries, 0);
        assert_eq!(inst.shards[0].reruns, rerun);
        // The frozen worker wakes up and reports: stale.
        let late = report_run(
            0,
            attempt,
            rerun,
            ReportKind::Finished {
                started_at: T0,
                outcome: ShardOutcome::Success,
            },
        );
        assert!(step(&mut inst, &late, T0).ignored.is_some());
        attempt += 1;
    }
    let last = crate::limits::MAX_RERUNS + 1;
    step(
        &mut inst,
        &report_run(0, attempt, last, ReportKind::Started),
        T0,
    );
    step(
        &mut inst,
        &Input::Lost {
            item: 0,
            worker: "w1".into(),
        },
        T0,
    );
    assert_eq!(inst.shards[0].status, ShardStatus::Failed);
    assert!(
        inst.shards[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("lost")
    );
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
}

#[test]
fn later_is_bounded() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    for attempt in 1..crate::limits::MAX_LATER {
        step(&mut inst, &finished(0, attempt, ShardOutcome::Later), T0);
        assert_eq!(inst.shards[0].status, ShardStatus::Later);
    }
    let s = step(
        &mut inst,
        &finished(0, crate::limits::MAX_LATER, ShardOutcome::Later),
        T0,
    );
    assert_eq!(inst.shards[0].status, ShardStatus::Failed);
    assert!(s.effects.contains(&Effect::Purge { item: 0 }));
    assert!(
        inst.shards[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("Later")
    );
}

#[test]
fn cancel_tells_running_shards_to_stop_and_fail_ends_everything() {
    let mut inst = instance(2);
    step(&mut inst, &Input::Queued, T0);
    step(&mut inst, &started(0, 1), T0);
    let s = step(&mut inst, &Input::Cancel { reason: None }, T0);
    assert!(s.effects.contains(&Effect::PurgeQueued));
    assert!(s.effects.iter().any(|e| matches!(
        e,
        Effect::Stop {
            item: None,
            outcome: StopOutcome::Cancelled,
            ..
        }
    )));
    assert_eq!(inst.summary.status, InstanceStatus::Cancelled);

    let mut inst = instance(2);
    let s = step(
        &mut inst,
        &Input::Fail {
            reason: "cannot queue".into(),
        },
        T0,
    );
    assert!(s.effects.contains(&Effect::Finished));
    assert_eq!(inst.summary.status, InstanceStatus::Failed);
    assert_eq!(inst.summary.reason.as_deref(), Some("cannot queue"));
    assert!(inst.shards.iter().all(|s| s.status == ShardStatus::Failed));
}

#[test]
fn a_skipped_instance_ends_at_once_with_its_reason() {
    let mut inst = instance(2);
    let s = step(
        &mut inst,
        &Input::Skip {
            reason: "still running".into(),
        },
        T0,
    );
    assert!(s.effects.contains(&Effect::Finished));
    assert_eq!(inst.summary.status, InstanceStatus::Skipped);
    assert_eq!(inst.summary.reason.as_deref(), Some("still running"));
    check_counts(&inst);
}

#[test]
fn counts_and_finality_follow_the_shard_records() {
    let mut inst = instance(2);
    step(&mut inst, &Input::Queued, T0);
    assert!(step(&mut inst, &Input::Recount, T0).ignored.is_some());
    // The chunks were written, the summary was not.
    inst.shards[0].status = ShardStatus::Success;
    inst.shards[1].status = ShardStatus::Success;
    let s = step(&mut inst, &Input::Recount, T0);
    check_counts(&inst);
    assert_eq!(inst.summary.status, InstanceStatus::Success);
    assert!(s.effects.contains(&Effect::Finished));
}

#[test]
fn no_worker_is_said_once_and_cleared_when_one_is_back() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    let s = step(
        &mut inst,
        &Input::NoWorker {
            reason: "no plugin x".into(),
        },
        T0,
    );
    assert_eq!(emitted(&s), vec![EventKind::NoWorker]);
    assert_eq!(inst.summary.no_worker_since, Some(T0));
    assert_eq!(inst.summary.reason.as_deref(), Some("no plugin x"));
    assert!(
        step(
            &mut inst,
            &Input::NoWorker {
                reason: "again".into()
            },
            T0
        )
        .ignored
        .is_some()
    );
    let s = step(&mut inst, &Input::WorkerBack, T0);
    assert!(s.summary_changed);
    assert_eq!(
        (inst.summary.no_worker_since, inst.summary.reason.clone()),
        (None, None)
    );
    assert!(step(&mut inst, &Input::WorkerBack, T0).ignored.is_some());
    // A report clears it too: a worker runs it after all.
    step(
        &mut inst,
        &Input::NoWorker {
            reason: "none".into(),
        },
        T0,
    );
    step(&mut inst, &started(0, 1), T0);
    assert_eq!(
        (inst.summary.no_worker_since, inst.summary.reason.clone()),
        (None, None)
    );
}

#[test]
fn errors_are_capped() {
    let mut inst = instance(1);
    step(&mut inst, &Input::Queued, T0);
    let huge = "x".repeat(100_000);
    step(
        &mut inst,
        &finished(0, 1, ShardOutcome::Failed { error: huge }),
        T0,
    );
    assert!(inst.shards[0].error.as_deref().unwrap_or("").len() <= crate::limits::MAX_ERROR_BYTES);
}

#[test]
fn a_waiting_shard_is_rerouted_as_a_new_run_and_a_running_one_is_not() {
    let mut inst = instance(2);
    let s = step(&mut inst, &Input::Reroute { item: 0 }, T0);
    assert_eq!(
        s.effects,
        vec![
            Effect::Purge { item: 0 },
            Effect::Publish { items: vec![0] }
        ]
    );
    assert_eq!(inst.shards[0].run, 2);
    assert_eq!(inst.shards[0].status, ShardStatus::Pending);
    assert_eq!(inst.shards[0].reruns, 0);
    // A report of the old run is stale now.
    let old = report(0, 1, ReportKind::Started);
    assert!(step(&mut inst, &old, T0).ignored.is_some());
    // Running: the lost-worker rule handles it, not this one.
    let started = report_run(1, 1, 1, ReportKind::Started);
    step(&mut inst, &started, T0);
    assert!(
        step(&mut inst, &Input::Reroute { item: 1 }, T0)
            .ignored
            .is_some()
    );
    assert!(
        step(&mut inst, &Input::Reroute { item: 9 }, T0)
            .ignored
            .is_some()
    );
}
