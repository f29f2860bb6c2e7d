//! `migrate undo [--to VERSION]`: runs the U files of the newest applied file (or of every
//! applied file above VERSION), newest first, on each selected server; refused everywhere
//! when one is missing.
//!
//! Sync-aware, the mirror of `up` ([`super::via_sync`]): a server that receives the migrated
//! database through a sync never runs a U file itself (a DROP or a DELETE would then reach it
//! twice). The U files run once, at its component's origin; then, receiver by receiver,
//! fleetsync waits (one deadline per component, `--sync-timeout`) until the receiver's sync
//! has applied its parent's binlog up to its end and the receiver's schema equals the
//! origin's, and records the undo in its history (its applied row becomes `rolled_back`, and
//! a `via-sync` row with status `rolled_back` names the sync and the origin).
//!
//! Refused before anything runs (the cases `up` refuses): a selected receiver whose origin is
//! not selected, and a selected receiver whose history disagrees with its origin's (a file
//! applied on one and not on the other), except for files its origin has rolled back: those
//! are an earlier undo whose wait did not finish, and this `undo` only finishes it (waits and
//! records them; the origin runs nothing more) before another one can start.
//!
//! Servers no sync reaches run their U files directly, as they always did. A cancel (the
//! job's) stops between files and between servers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::queue_store::Store;
use fleetsync_coordinator::migrate::runfile;
use fleetsync_coordinator::migrate::topology::{Component, Receipt};
use fleetsync_coordinator::migrate::versioned::{
    self, FileState, Queue, Recorded, RecordedStatus, ServerState,
};
use fleetsync_coordinator::migrate::{self as cmigrate};
use tokio_util::sync::CancellationToken;

use super::changes::{ChangeReport, Route, ServerChange};
use super::via_sync::{self, Arrivals, Downstream, Topology};
use super::{applied_by, locked_state, read_history, read_state, QueueRequest, Tracker};
use crate::diff_cmd::connect;

/// The end of a receiver's timeout message for `undo`.
const UNDO_RESUME: &str = "Its history still shows the files applied; `migrate undo` again records the undo once the sync has caught up (and runs nothing more at the origin)";

/// `migrate undo`'s request.
#[derive(Debug, Clone)]
pub struct UndoRequest {
    pub queue: QueueRequest,
    /// Undo every applied version above this one (default: only the newest).
    pub to: Option<String>,
    /// How long to wait for a receiver's sync to bring the undo (as `up`'s).
    pub sync_timeout: Duration,
}

/// One selected server, read and planned.
struct Plan {
    server: String,
    /// Queue indexes of the files whose U file runs, newest first.
    undo: Vec<usize>,
    state: ServerState,
    /// The history rows (latest per version).
    rows: Vec<Recorded>,
}

impl Plan {
    fn applied(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.state.files.len()).filter(|&i| self.state.files[i] == FileState::Applied)
    }

    /// Whether the latest row of file `i` is a rolled-back one (undone here).
    fn rolled_back(&self, queue: &Queue, i: usize) -> bool {
        self.rows
            .iter()
            .any(|r| r.version == queue.files[i].version && r.status == RecordedStatus::RolledBack)
    }
}

fn has_statements(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| !cmigrate::sqlfile::split(&t).is_empty())
        .unwrap_or(false)
}

/// Checks each selected receiver against its origin (see the module docs); returns, per
/// receiver, the files of an earlier undo its origin has rolled back and it still shows
/// applied (recorded by this run).
fn check_receivers(
    topo: &Topology,
    plans: &[Plan],
    queue: &Queue,
) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut unfinished = BTreeMap::new();
    for p in plans {
        let Some((c, r)) = topo.receipt(&p.server) else {
            continue;
        };
        let Some(origin) = plans.iter().find(|o| o.server == c.origin) else {
            bail!(
                "{} receives the migrated database through sync {} from {}, which --servers does not select: select {} too (the undo files run there once and reach {} through the sync); nothing undone on any server",
                p.server,
                r.edge.display,
                r.parent,
                c.origin,
                p.server
            );
        };
        let here: Vec<usize> = p.applied().collect();
        let there: Vec<usize> = origin.applied().collect();
        if let Some(&i) = there.iter().find(|i| !here.contains(i)) {
            bail!(
                "{}'s history disagrees with its origin {}'s: {} is applied on {} and not recorded on {} (run `migrate up`, which records what {} received through sync {}, then undo); nothing undone on any server",
                p.server,
                c.origin,
                queue.files[i].file_name,
                c.origin,
                p.server,
                p.server,
                r.edge.display
            );
        }
        let mut pending = Vec::new();
        for &i in here.iter().filter(|i| !there.contains(i)) {
            if !origin.rolled_back(queue, i) {
                bail!(
                    "{}'s history disagrees with its origin {}'s: {} is applied on {} and not on {}: undoing at {} would reach {} through sync {} while its own history says otherwise; nothing undone on any server",
                    p.server,
                    c.origin,
                    queue.files[i].file_name,
                    p.server,
                    c.origin,
                    c.origin,
                    p.server,
                    r.edge.display
                );
            }
            pending.push(i);
        }
        if !pending.is_empty() {
            // Newest first, as undone.
            pending.sort_by(|a, b| queue.files[*b].version.cmp(&queue.files[*a].version));
            unfinished.insert(p.server.clone(), pending);
        }
    }
    Ok(unfinished)
}

/// Runs `idx`'s U files on `server` under the queue's lock (today's direct undo): stops at
/// the first failure, or before the next file once `cancel` fires (then `true`: files were
/// left).
#[allow(clippy::too_many_arguments)]
async fn undo_direct(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    store: &Store,
    server: &str,
    idx: &[usize],
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> Result<(ServerChange, bool)> {
    let mut change = ServerChange::new(server);
    let mut stopped = false;
    change.route = Some(Route::Direct);
    let database = req.database();
    let mut conn = connect(config, server).await?;
    if let Err(e) = locked_state(&mut conn, store, queue).await {
        change.error = Some(e);
        return Ok((change, false));
    }
    for &i in idx {
        if cancel.is_cancelled() {
            stopped = true;
            break;
        }
        let f = &queue.files[i];
        let Some(undo) = &f.undo else { continue };
        tracker.phase(format!("{server}: undo {}", f.file_name));
        let text =
            std::fs::read_to_string(undo).with_context(|| format!("reading {}", undo.display()))?;
        match runfile::run_file(&mut conn, database.as_deref(), &text).await {
            Ok(_) => {
                store.undone(&mut conn, f).await?;
                change.files.push(f.file_name.clone());
                tracker.table_done(0);
            }
            Err(e) => {
                change.error = Some(format!(
                    "undo of {} failed: {e}; its history row stays applied",
                    f.file_name
                ));
                break;
            }
        }
    }
    let _ = conn.disconnect().await;
    change.at_version = read_state(config, server, queue, store)
        .await?
        .at_version(queue)
        .map(|v| v.to_string());
    Ok((change, stopped))
}

/// Records on receiver `r` the undo of `todo` (newest first) that reached it through the sync
/// (under the queue's lock; a file no longer applied there is taken as recorded).
async fn record_undo(
    config: &Config,
    queue: &Queue,
    store: &Store,
    c: &Component,
    r: &Receipt,
    todo: &[usize],
) -> Result<Vec<usize>, String> {
    let mut conn = connect(config, &r.server)
        .await
        .map_err(|e| crate::exit::one_line(e.as_ref()))?;
    let st = locked_state(&mut conn, store, queue).await?;
    let note = format!(
        "undone via sync {} from {} (by {})",
        r.edge.display,
        c.origin,
        applied_by()
    );
    let mut done = Vec::new();
    for &i in todo {
        if st.files[i] == FileState::Applied {
            store
                .undone_via_sync(&mut conn, &queue.files[i], &note)
                .await
                .map_err(|e| format!("{}: {e}", queue.files[i].file_name))?;
        }
        done.push(i);
    }
    let _ = conn.disconnect().await;
    Ok(done)
}

/// After origin `c.origin` undid `undone` (newest first): waits for each receiver in order
/// (a parent before its children) and records the undo on the selected ones, with the files
/// of an earlier unfinished undo (`unfinished`). Unselected receivers go to `downstream`.
#[allow(clippy::too_many_arguments)]
async fn follow_undo(
    config: &Config,
    req: &UndoRequest,
    queue: &Queue,
    store: &Store,
    c: &Component,
    plans: &[Plan],
    undone: &[usize],
    unfinished: &BTreeMap<String, Vec<usize>>,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> (Vec<ServerChange>, Vec<Downstream>) {
    let mut changes = Vec::new();
    let mut downstream = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let waits = !undone.is_empty()
        || c.receivers
            .iter()
            .any(|r| unfinished.contains_key(&r.server));
    let arrivals = if waits {
        Some(Arrivals::new(config, &req.queue, c, req.sync_timeout, UNDO_RESUME, cancel).await)
    } else {
        None
    };
    for r in &c.receivers {
        let via = Topology::via(c, r);
        let (differences, res) = match &arrivals {
            Some(a) => a.arrived(r, failed.contains(&r.parent), tracker).await,
            None => (None, Ok(())),
        };
        if res.is_err() {
            failed.push(r.server.clone());
        }
        if !plans.iter().any(|p| p.server == r.server) {
            downstream.push(Downstream {
                server: r.server.clone(),
                via,
                error: res.err(),
            });
            continue;
        }
        let mut change = ServerChange::new(&r.server);
        change.route = Some(Route::ViaSync);
        change.via = Some(via);
        change.schema_differences = differences;
        match res {
            Err(e) => change.error = Some(e),
            Ok(()) => {
                let mut todo: Vec<usize> = undone.to_vec();
                todo.extend(unfinished.get(&r.server).into_iter().flatten());
                todo.sort_by(|a, b| queue.files[*b].version.cmp(&queue.files[*a].version));
                todo.dedup();
                match record_undo(config, queue, store, c, r, &todo).await {
                    Ok(done) => {
                        for _ in &done {
                            tracker.table_done(0);
                        }
                        change.files = done
                            .iter()
                            .map(|&i| queue.files[i].file_name.clone())
                            .collect();
                    }
                    Err(e) => {
                        change.error =
                            Some(format!("the undo reached it but recording it failed: {e}"))
                    }
                }
            }
        }
        change.at_version = read_state(config, &r.server, queue, store)
            .await
            .ok()
            .and_then(|st| st.at_version(queue))
            .map(|v| v.to_string());
        changes.push(change);
    }
    (changes, downstream)
}

/// `migrate undo [--to VERSION]` (see the module docs). `cancel` (a job's) stops it between
/// files and servers; the report says what was undone.
pub async fn undo(
    config: &Config,
    req: &UndoRequest,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> Result<ChangeReport> {
    let q = &req.queue;
    let queue = q.queue()?;
    let store = q.store()?;
    let to = req.to.as_deref().map(|t| q.version(t)).transpose()?;
    let mut plans = Vec::new();
    for server in q.servers(config)? {
        let (state, rows) = read_history(config, &server, &queue, &store).await?;
        let undo = versioned::plan_undo(&queue, &state, to.as_ref(), has_statements)
            .map_err(|e| anyhow!("server {server}: {e}; nothing undone on any server"))?;
        plans.push(Plan {
            server,
            undo,
            state,
            rows,
        });
    }
    let topo = via_sync::topology(config, q).await?;
    let unfinished = check_receivers(&topo, &plans, &queue)?;
    let total: usize = plans
        .iter()
        .map(|p| p.undo.len())
        .chain(unfinished.values().map(Vec::len))
        .sum();
    tracker.planned(Some(total as u64), None);
    let mut report = ChangeReport {
        action: "undo".into(),
        servers: Vec::new(),
        downstream: Vec::new(),
        cancelled: false,
    };
    for p in &plans {
        if topo.receipt(&p.server).is_some() {
            continue; // with its origin
        }
        if cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        let component = topo.component_of(&p.server);
        // An earlier undo's receivers are recorded first; the origin runs nothing more.
        let finishing = component.is_some_and(|c| {
            c.receivers
                .iter()
                .any(|r| unfinished.contains_key(&r.server))
        });
        let idx: &[usize] = if finishing { &[] } else { &p.undo };
        let (change, stopped) =
            undo_direct(config, q, &queue, &store, &p.server, idx, tracker, cancel).await?;
        let undone: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| change.files.contains(&queue.files[i].file_name))
            .collect();
        report.servers.push(change);
        // Cancelled with receivers to record: they are not waited for (their history still
        // shows the files applied; `undo` again records them).
        if stopped || (component.is_some() && cancel.is_cancelled()) {
            report.cancelled = true;
            break;
        }
        if let Some(c) = component {
            let (changes, downstream) = follow_undo(
                config,
                req,
                &queue,
                &store,
                c,
                &plans,
                &undone,
                &unfinished,
                tracker,
                cancel,
            )
            .await;
            // A cancel during a wait left receivers unrecorded.
            let interrupted = changes.iter().any(|x| x.error.is_some())
                || downstream.iter().any(|d| d.error.is_some());
            report.servers.extend(changes);
            report.downstream.extend(downstream);
            if interrupted && cancel.is_cancelled() {
                report.cancelled = true;
                break;
            }
        }
    }
    // In the selection's (name) order.
    report.servers.sort_by_key(|s| {
        plans
            .iter()
            .position(|p| p.server == s.server)
            .unwrap_or(usize::MAX)
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsync_coordinator::migrate::topology::{components, Edge};
    use fleetsync_coordinator::migrate::versioned::{HistoryMode, MigrationFile, Version};

    fn queue(n: usize) -> Queue {
        Queue {
            mode: HistoryMode::Fleetsync,
            dir: "m".into(),
            files: (1..=n)
                .map(|v| MigrationFile {
                    version: Version::parse(&v.to_string(), HistoryMode::Fleetsync)
                        .unwrap_or_else(|e| panic!("{e}")),
                    file_name: format!("V{v}__f.sql"),
                    path: format!("V{v}__f.sql").into(),
                    checksum: format!("c{v}"),
                    undo: None,
                })
                .collect(),
        }
    }

    /// A server's plan from its rows: (version, status).
    fn plan(q: &Queue, server: &str, rows: &[(usize, RecordedStatus)]) -> Plan {
        let rows: Vec<Recorded> = rows
            .iter()
            .map(|(v, s)| Recorded {
                version: q.files[v - 1].version.clone(),
                name: q.files[v - 1].file_name.clone(),
                checksum: q.files[v - 1].checksum.clone(),
                status: *s,
                error: None,
            })
            .collect();
        Plan {
            server: server.into(),
            undo: Vec::new(),
            state: versioned::server_state(q, &rows),
            rows,
        }
    }

    fn one_way() -> Topology {
        Topology {
            components: components(&[Edge {
                sync: "s1".into(),
                display: "s1".into(),
                source: "src".into(),
                target: "dst".into(),
            }])
            .unwrap_or_default(),
            ..Topology::default()
        }
    }

    use RecordedStatus::{Applied, RolledBack};

    #[test]
    fn agreeing_histories_pass() {
        let q = queue(2);
        let plans = [
            plan(&q, "dst", &[(1, Applied), (2, Applied)]),
            plan(&q, "src", &[(1, Applied), (2, Applied)]),
        ];
        let u = check_receivers(&one_way(), &plans, &q).unwrap_or_else(|e| panic!("{e}"));
        assert!(u.is_empty());
    }

    #[test]
    fn a_receiver_without_its_origin_is_refused() {
        let q = queue(1);
        let plans = [plan(&q, "dst", &[(1, Applied)])];
        let e = check_receivers(&one_way(), &plans, &q)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("select src too"), "{e}");
    }

    #[test]
    fn a_receiver_behind_or_ahead_is_refused() {
        let q = queue(2);
        let behind = [
            plan(&q, "dst", &[(1, Applied)]),
            plan(&q, "src", &[(1, Applied), (2, Applied)]),
        ];
        let e = check_receivers(&one_way(), &behind, &q)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("V2__f.sql is applied on src and not recorded on dst"),
            "{e}"
        );
        let ahead = [
            plan(&q, "dst", &[(1, Applied), (2, Applied)]),
            plan(&q, "src", &[(1, Applied)]),
        ];
        let e = check_receivers(&one_way(), &ahead, &q)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("V2__f.sql is applied on dst and not on src"),
            "{e}"
        );
    }

    #[test]
    fn an_unfinished_undo_is_finished_first() {
        let q = queue(2);
        let plans = [
            plan(&q, "dst", &[(1, Applied), (2, Applied)]),
            plan(&q, "src", &[(1, Applied), (2, RolledBack)]),
        ];
        let u = check_receivers(&one_way(), &plans, &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.get("dst"), Some(&vec![1]));
    }
}
