//! `migrate up` over the fleet: the plan (dry run), or the rollout: canaries one at a time
//! and checked, then waves; resumable (a second run continues where each server stands).
//!
//! The unit of the rollout is a server that runs files itself: a server no sync brings the
//! database to, or the origin of a sync component ([`via_sync`]), whose run is followed by
//! its receivers' waits and history. Receivers are never canaries or in a wave.
//!
//! A cancel (the job's) is checked before each file of a server, before each canary and each
//! wave, and during a receiver's wait: the rollout stops there, never mid-file, and the
//! report says what ran (`cancelled`; `up` again continues).

use std::sync::Arc;

use anyhow::Result;
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::fleet;
use fleetsync_coordinator::migrate::versioned::Queue;
use tokio_util::sync::CancellationToken;

use super::via_sync::{self, Downstream, Topology};
use super::{
    apply_server, check_canaries, names, plan_fleet, run_of, FailedFile, FleetReport, Outcome,
    ServerPlan, ServerRun, Tracker, UpRequest,
};

fn failed_at(queue: &Queue, file: Option<usize>, error: String) -> FailedFile {
    FailedFile {
        file: file.map_or_else(String::new, |i| queue.files[i].file_name.clone()),
        version: file.map_or_else(String::new, |i| queue.files[i].version.to_string()),
        statement: 0,
        statements: 0,
        error,
    }
}

/// Runs one unit: `p`'s files on its server, then, when it is an origin, waits for its
/// receivers and records their history. The first run is `p`'s; then the selected receivers'.
#[allow(clippy::too_many_arguments)]
async fn run_unit(
    config: &Config,
    req: &UpRequest,
    queue: &Queue,
    topo: &Topology,
    plans: &[ServerPlan],
    p: &ServerPlan,
    role: Option<String>,
    tracker: &Tracker,
    downstream: &mut [Downstream],
    cancel: &CancellationToken,
) -> Vec<ServerRun> {
    let q = &req.queue;
    let run = if p.files.is_empty() {
        run_of(queue, p, role, Outcome::UpToDate)
    } else {
        apply_server(config, q, queue, p, role, tracker, cancel).await
    };
    let Some(c) = topo
        .component_of(&p.server)
        .filter(|c| c.origin == p.server)
    else {
        return vec![run];
    };
    // Cancelled: the receivers are not waited for (their history stays pending; `up` again
    // records what reached them).
    if cancel.is_cancelled() {
        let mut out = vec![run];
        for r in &c.receivers {
            if let Some(rp) = plans.iter().find(|x| x.server == r.server) {
                let outcome = if rp.files.is_empty() {
                    Outcome::UpToDate
                } else {
                    Outcome::Cancelled
                };
                let mut rr = run_of(queue, rp, None, outcome);
                rr.via = Some(Topology::via(c, r));
                out.push(rr);
            }
        }
        return out;
    }
    let mut origin_applied = p.applied.clone();
    origin_applied.extend(
        queue
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| run.applied.contains(&f.file_name))
            .map(|(i, _)| i),
    );
    let received = via_sync::follow(
        config,
        q,
        queue,
        topo,
        c,
        &origin_applied,
        plans,
        req.sync_timeout,
        tracker,
        cancel,
    )
    .await;
    let mut out = vec![run];
    for rec in received {
        if let Some(d) = downstream.iter_mut().find(|d| d.server == rec.server) {
            d.error = rec.error.as_ref().map(|(_, e)| e.clone());
        }
        let Some(rp) = plans.iter().find(|x| x.server == rec.server) else {
            continue;
        };
        let mut r = run_of(queue, rp, None, Outcome::Applied);
        r.via = topo.receipt(&rp.server).map(|(c, r)| Topology::via(c, r));
        r.schema_differences = rec.schema_differences;
        r.applied = names(queue, &rec.recorded);
        if let Some(&last) = rec.recorded.iter().max() {
            r.at_version = Some(queue.files[last].version.to_string());
        }
        let missing: Vec<usize> = rp
            .files
            .iter()
            .copied()
            .filter(|i| !rec.recorded.contains(i))
            .collect();
        if let Some((file, e)) = rec.error {
            r.outcome = if cancel.is_cancelled() {
                Outcome::Cancelled
            } else {
                Outcome::Failed
            };
            r.failed = Some(failed_at(queue, file, e));
        } else if let Some(&first) = missing.first() {
            r.outcome = Outcome::Failed;
            r.failed = Some(failed_at(
                queue,
                Some(first),
                format!("not received: its origin {} has not applied it", c.origin),
            ));
        } else if rp.files.is_empty() {
            r.outcome = Outcome::UpToDate;
        }
        out.push(r);
    }
    out
}

/// `migrate up`: the plan (dry run), or the rollout (see the module docs).
pub async fn up(
    config: &Config,
    req: &UpRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<FleetReport> {
    let q = &req.queue;
    let queue = q.queue()?;
    let to = req.to.as_deref().map(|t| q.version(t)).transpose()?;
    let plans = plan_fleet(config, q, &queue, to.as_ref()).await?;
    let topo = via_sync::topology(config, q).await?;
    via_sync::check_plans(&topo, &plans, &queue)?;
    let plan_of = |s: &str| plans.iter().find(|p| p.server == s);
    // A unit has work when it has files, or one of its selected receivers has.
    let has_work = |p: &ServerPlan| -> bool {
        if topo.receipt(&p.server).is_some() {
            return false;
        }
        !p.files.is_empty()
            || topo.component_of(&p.server).is_some_and(|c| {
                c.receivers
                    .iter()
                    .any(|r| plan_of(&r.server).is_some_and(|rp| !rp.files.is_empty()))
            })
    };
    let with_work: Vec<String> = plans
        .iter()
        .filter(|p| has_work(p))
        .map(|p| p.server.clone())
        .collect();
    let (canaries, waves) = fleet::waves(&with_work, req.canary, req.wave);
    let role_of = |server: &str| -> Option<String> {
        if canaries.iter().any(|c| c == server) {
            return Some("canary".into());
        }
        waves
            .iter()
            .position(|w| w.iter().any(|s| s == server))
            .map(|i| format!("wave {}", i + 1))
    };
    let mut downstream: Vec<Downstream> = topo
        .components
        .iter()
        .filter(|c| plan_of(&c.origin).is_some())
        .flat_map(|c| {
            c.receivers
                .iter()
                .filter(|r| plan_of(&r.server).is_none())
                .map(move |r| Downstream {
                    server: r.server.clone(),
                    via: Topology::via(c, r),
                    error: None,
                })
        })
        .collect();
    let mut report = FleetReport {
        dir: q.dir.clone(),
        history: q.history,
        database: q.database(),
        dry_run: !req.yes,
        canaries: canaries.clone(),
        waves: waves.clone(),
        halted: None,
        servers: plans
            .iter()
            .map(|p| {
                let outcome = match (p.files.is_empty(), req.yes) {
                    (true, _) => Outcome::UpToDate,
                    (false, false) => Outcome::Planned,
                    (false, true) => Outcome::NotStarted,
                };
                let mut run = run_of(&queue, p, role_of(&p.server), outcome);
                run.via = topo.receipt(&p.server).map(|(c, r)| Topology::via(c, r));
                run
            })
            .collect(),
        downstream: Vec::new(),
        cancelled: false,
    };
    if !req.yes {
        report.downstream = downstream;
        return Ok(report);
    }
    let total: usize = plans.iter().map(|p| p.files.len()).sum();
    tracker.planned(Some(total as u64), None);
    let put = |report: &mut FleetReport, run: ServerRun| {
        if let Some(slot) = report.servers.iter_mut().find(|r| r.server == run.server) {
            *slot = run;
        }
    };
    let stop = |report: &mut FleetReport, downstream: Vec<Downstream>, at: String| {
        report.cancelled = true;
        report.halted = Some(format!(
            "cancelled {at} (no file was interrupted); `migrate up` again continues"
        ));
        report.downstream = downstream;
    };
    // Canaries, one at a time (each with its receivers).
    let mut canary_runs = Vec::new();
    for c in &canaries {
        let Some(p) = plan_of(c) else { continue };
        if cancel.is_cancelled() {
            stop(&mut report, downstream, format!("before canary {c}"));
            return Ok(report);
        }
        let role = Some("canary".to_string());
        let runs = run_unit(
            config,
            req,
            &queue,
            &topo,
            &plans,
            p,
            role,
            tracker,
            &mut downstream,
            cancel,
        )
        .await;
        let mut failure = None;
        let stopped = runs.iter().any(|r| r.outcome == Outcome::Cancelled);
        for (n, run) in runs.into_iter().enumerate() {
            if failure.is_none() {
                if let Some(f) = &run.failed {
                    failure = Some(match n {
                        0 => format!("canary {c} failed at {}: {}", f.file, f.error),
                        _ => format!("canary {c}'s receiver {}: {}", run.server, f.error),
                    });
                }
            }
            if n == 0 {
                canary_runs.push(run.clone());
            }
            put(&mut report, run);
        }
        if stopped {
            stop(&mut report, downstream, format!("during canary {c}"));
            return Ok(report);
        }
        if let Some(why) = failure {
            report.halted = Some(why);
            report.downstream = downstream;
            return Ok(report);
        }
    }
    let ran: Vec<ServerRun> = canary_runs
        .into_iter()
        .filter(|r| !r.applied.is_empty())
        .collect();
    if !ran.is_empty() {
        let mut canary_runs = ran;
        tracker.phase("checking the canaries");
        let checked = check_canaries(config, q, &queue, &mut canary_runs).await;
        for run in canary_runs {
            put(&mut report, run);
        }
        if let Err(why) = checked {
            report.halted = Some(why);
            report.downstream = downstream;
            return Ok(report);
        }
    }
    // Waves, M units at once.
    for (n, wave) in waves.iter().enumerate() {
        let role = format!("wave {}", n + 1);
        if cancel.is_cancelled() {
            stop(&mut report, downstream, format!("before {role}"));
            return Ok(report);
        }
        let mut runs = Vec::new();
        {
            let mut slots: Vec<Vec<Downstream>> = wave.iter().map(|_| downstream.clone()).collect();
            let futures = wave
                .iter()
                .zip(slots.iter_mut())
                .filter_map(|(s, d)| plan_of(s).map(|p| (p, d)))
                .map(|(p, d)| {
                    run_unit(
                        config,
                        req,
                        &queue,
                        &topo,
                        &plans,
                        p,
                        Some(role.clone()),
                        tracker,
                        d,
                        cancel,
                    )
                });
            for r in futures_util::future::join_all(futures).await {
                runs.extend(r);
            }
            // Each unit touched only its own component's downstream servers.
            for slot in slots {
                for d in slot.into_iter().filter(|d| d.error.is_some()) {
                    if let Some(x) = downstream.iter_mut().find(|x| x.server == d.server) {
                        x.error = d.error;
                    }
                }
            }
        }
        let mut first_failure = None;
        let stopped = runs.iter().any(|r| r.outcome == Outcome::Cancelled);
        for run in runs {
            if first_failure.is_none() {
                if let Some(f) = &run.failed {
                    first_failure =
                        Some(format!("{} failed at {}: {}", run.server, f.file, f.error));
                }
            }
            put(&mut report, run);
        }
        if stopped {
            stop(&mut report, downstream, format!("during {role}"));
            return Ok(report);
        }
        if let (Some(why), true) = (first_failure, req.halt_on_error) {
            report.halted = Some(format!("{role}: {why} (--halt-on-error)"));
            report.downstream = downstream;
            return Ok(report);
        }
    }
    report.downstream = downstream;
    Ok(report)
}
