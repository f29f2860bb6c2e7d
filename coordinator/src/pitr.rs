//! Point-in-time recovery: replaying a server's binlog archive onto a restored target.
//!
//! A replay takes the archived transactions strictly after a start position (a backup's
//! binlog coordinate) up to a stop point and applies them with the [`Applier`] (every column
//! type exactly, keyless tables, DDL, database renames through the table map).
//!
//! Stop points:
//! * [`Stop::Time`]: every transaction up to the first whose commit time is after T. Binlog
//!   timestamps are whole seconds, so T is compared at one-second resolution: `--to-time
//!   12:00:00.7` means "everything committed before 12:00:01" (on the server's clock).
//! * [`Stop::Gtid`]: up to and including the transaction that brings the stream's GTID
//!   position to the given set (every domain in it reached; other domains' transactions
//!   before that point are included, as in binlog order).
//! * [`Stop::End`]: everything archived so far.
//!
//! Invariants: [`plan`] reads (and verifies: checksums, chain, headers) every segment the
//! replay needs and checks that the archive covers the whole range, from the start position
//! to a record beyond the stop point, before anything is changed; [`replay`] then applies
//! exactly the planned transactions (it stops at the planned last position even if the
//! archive has grown). Positions are compared by binlog file and offset only.
//!
//! The archive may be a local directory or a bucket's prefix (`[backup] dir = "s3://..."`):
//! the same code reads both through [`fleetsync_store::Store`]; from a bucket, segments are
//! downloaded one at a time as the scan reaches them, and only those the range needs (see
//! `fleetsync_mysql::archive::reader`). Scans run on a blocking thread.
//!
//! Progress: the applier records the replay's position as sync [`PITR_SYNC`] in the target's
//! `fleetsync.sync_state`; a new replay clears that row first (the base restore it follows
//! has just rewritten the tables).

use std::collections::BTreeSet;

use fleetsync_config::TableMap;
use fleetsync_mysql::archive::{Archive, ArchiveError, Flow};
use fleetsync_mysql::ddl::{classify, Statement};
use fleetsync_proto::{BinlogPosition, GtidSet, Position, Transaction};
use fleetsync_store::Store;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::apply::{Applier, ApplierOptions};

/// The sync name a replay's progress is stored under on the target.
pub const PITR_SYNC: &str = "pitr";
/// Row changes per target transaction during a replay.
const REPLAY_BATCH_ROWS: usize = 5_000;

/// Where a replay stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Unix seconds (UTC); see the module docs for the resolution.
    Time(i64),
    Gtid(GtidSet),
    End,
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// The server's archive (`<backup.dir>/binlog-archive/<server>`: a directory or a
    /// bucket's prefix).
    pub archive: Store,
    pub server: String,
    /// Replay transactions strictly after this position.
    pub start: Position,
    /// When the start state was taken (ms since the epoch), if known: a time stop before it is
    /// refused.
    pub start_time_ms: Option<u64>,
    pub stop: Stop,
    /// Only changes of these source databases (`None`: all).
    pub schemas: Option<BTreeSet<String>>,
}

/// The outcome of [`plan`]: what a replay will do.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayPlan {
    pub server: String,
    pub start: String,
    /// Position after the last transaction to apply (`None`: nothing to apply).
    pub last: Option<String>,
    pub transactions: u64,
    pub rows: u64,
    pub ddl: u64,
    pub first_commit_ms: Option<u64>,
    pub last_commit_ms: Option<u64>,
    pub archive_start: String,
    pub archive_end: String,
    pub archive_end_commit_ms: u64,
    #[serde(skip)]
    last_pos: Option<BinlogPosition>,
}

/// What [`replay`] applied.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub transactions: u64,
    pub rows: u64,
    pub position: Option<String>,
}

/// Where the replay applies.
pub struct ReplayTarget {
    /// Server name, for messages.
    pub name: String,
    pub opts: mysql_async::Opts,
    /// Source database/table -> target (`--rename-db`).
    pub map: TableMap,
}

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The request cannot be served by this archive; the message says why and what to do.
    #[error("{0}")]
    Range(String),
    #[error("point-in-time replay on {target}: {message}")]
    Apply { target: String, message: String },
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = fleetsync_proto::calendar::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn utc_ms(ms: u64) -> String {
    utc((ms / 1000) as i64)
}

/// The transaction restricted to `schemas`; `None` when nothing of it is selected (or it is a
/// heartbeat).
pub fn select(mut txn: Transaction, schemas: Option<&BTreeSet<String>>) -> Option<Transaction> {
    if txn.is_empty() {
        return None;
    }
    let Some(set) = schemas else {
        return Some(txn);
    };
    if let Some(ddl) = &txn.ddl {
        let named = if ddl.tables.is_empty() {
            match classify(&ddl.statement) {
                Statement::DatabaseDdl { name } => set.contains(&name),
                _ => ddl.schema.as_ref().is_some_and(|s| set.contains(s)),
            }
        } else {
            ddl.tables.iter().any(|(s, _)| set.contains(s))
        };
        return named.then_some(txn);
    }
    let tables = &txn.tables;
    txn.changes.retain(|c| {
        tables
            .get(c.table as usize)
            .is_some_and(|t| set.contains(&t.schema))
    });
    (!txn.changes.is_empty()).then_some(txn)
}

/// Whether the GTID position `at` has reached every domain of `goal`.
fn reaches(at: Option<&GtidSet>, goal: &GtidSet) -> bool {
    goal.iter().all(|g| {
        at.and_then(|a| a.get(g.domain))
            .is_some_and(|a| a.seq >= g.seq)
    })
}

/// Checks the request against the archive and counts what a replay would apply. Reads and
/// verifies every segment from the start position to the stop point; changes nothing.
pub async fn plan(spec: &ReplaySpec) -> Result<ReplayPlan, PitrError> {
    let archive = Archive::open_store(&spec.archive, &spec.server).await?;
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || plan_with(&archive, &spec))
        .await
        .map_err(|e| PitrError::Range(format!("archive reader failed: {e}")))?
}

fn plan_with(archive: &Archive, spec: &ReplaySpec) -> Result<ReplayPlan, PitrError> {
    let cov = archive.coverage()?;
    let server = &spec.server;
    let start = &spec.start.binlog;
    if *start < cov.start.binlog {
        return Err(PitrError::Range(format!(
            "the binlog archive of {server} starts at {}, after the start position {}: archiving began after that backup was taken; use a backup taken after {}",
            cov.start, spec.start, cov.start
        )));
    }
    if *start > cov.end.binlog {
        return Err(PitrError::Range(format!(
            "the binlog archive of {server} ends at {}, before the start position {} (is the archiver running?)",
            cov.end, spec.start
        )));
    }
    check_stop_against_start(spec)?;
    let mut p = ReplayPlan {
        server: server.clone(),
        start: spec.start.to_string(),
        last: None,
        transactions: 0,
        rows: 0,
        ddl: 0,
        first_commit_ms: None,
        last_commit_ms: None,
        archive_start: cov.start.to_string(),
        archive_end: cov.end.to_string(),
        archive_end_commit_ms: cov.end_commit_ms,
        last_pos: None,
    };
    let mut before_ms = archive.commit_ms_before(start);
    let mut reached = spec.stop == Stop::End
        || matches!(&spec.stop, Stop::Gtid(g) if reaches(spec.start.gtid.as_ref(), g));
    if !reached {
        archive.scan(start, |txn| {
            if txn.position.binlog <= *start {
                before_ms = before_ms.max(txn.commit_ts_ms);
                return Ok(Flow::Continue);
            }
            step(spec, &mut p, txn, &mut reached)
        })?;
    } else if spec.stop == Stop::End {
        archive.scan(start, |txn| {
            if txn.position.binlog > *start {
                let mut ignore = false;
                step(spec, &mut p, txn, &mut ignore)?;
            }
            Ok(Flow::Continue)
        })?;
    }
    if let Stop::Time(t) = spec.stop {
        if (before_ms / 1000) as i64 > t {
            return Err(PitrError::Range(format!(
                "the start position {} already includes transactions committed after the target time {} (at {}): use an older backup",
                spec.start,
                utc(t),
                utc_ms(before_ms)
            )));
        }
    }
    if !reached {
        return Err(not_reached(spec, &cov));
    }
    Ok(p)
}

/// One record of the planning scan.
fn step(
    spec: &ReplaySpec,
    p: &mut ReplayPlan,
    txn: Transaction,
    reached: &mut bool,
) -> Result<Flow, ArchiveError> {
    match &spec.stop {
        Stop::Time(t) if (txn.commit_ts_ms / 1000) as i64 > *t => {
            *reached = true;
            return Ok(Flow::Stop);
        }
        Stop::Gtid(goal) => {
            if let (Some(g), false) = (txn.gtid, txn.is_empty()) {
                if let Some(want) = goal.get(g.domain) {
                    if g.seq > want.seq {
                        return Err(ArchiveError::Invalid(format!(
                            "GTID {want} is not in the archive of {}: domain {} goes on with {g} at {} without it",
                            spec.server, g.domain, txn.position
                        )));
                    }
                }
            }
        }
        _ => {}
    }
    let at = txn.position.clone();
    let gtid_reached = matches!(&spec.stop, Stop::Gtid(goal) if reaches(at.gtid.as_ref(), goal));
    let (ts, rows, is_ddl) = (txn.commit_ts_ms, txn.changes.len(), txn.ddl.is_some());
    if select(txn, spec.schemas.as_ref()).is_some() {
        p.transactions += 1;
        p.rows += rows as u64;
        p.ddl += u64::from(is_ddl);
        p.first_commit_ms.get_or_insert(ts);
        p.last_commit_ms = Some(ts);
        p.last = Some(at.to_string());
        p.last_pos = Some(at.binlog);
    }
    if gtid_reached {
        *reached = true;
        return Ok(Flow::Stop);
    }
    Ok(Flow::Continue)
}

/// Refusals that need only the start position: a stop point before it.
fn check_stop_against_start(spec: &ReplaySpec) -> Result<(), PitrError> {
    match &spec.stop {
        Stop::Time(t) => {
            if let Some(ms) = spec.start_time_ms {
                if ((ms / 1000) as i64) > *t {
                    return Err(PitrError::Range(format!(
                        "the target time {} is before the backup (taken at {}): use an older backup",
                        utc(*t),
                        utc_ms(ms)
                    )));
                }
            }
        }
        Stop::Gtid(goal) => {
            if let Some(at) = &spec.start.gtid {
                if let Some(g) = goal
                    .iter()
                    .find(|g| at.get(g.domain).is_some_and(|a| a.seq > g.seq))
                {
                    return Err(PitrError::Range(format!(
                        "the start position {} is already past GTID {g}: use an older backup",
                        spec.start
                    )));
                }
            }
        }
        Stop::End => {}
    }
    Ok(())
}

fn not_reached(spec: &ReplaySpec, cov: &fleetsync_mysql::archive::Coverage) -> PitrError {
    let end = format!(
        "the binlog archive of {} ends at {} (last commit {})",
        spec.server,
        cov.end,
        utc_ms(cov.end_commit_ms)
    );
    PitrError::Range(match &spec.stop {
        Stop::Time(t) => format!(
            "{end}, before the target time {}: the archive must hold a record after it; wait for the archiver (it stores a heartbeat every few seconds while idle) or check that it runs",
            utc(*t)
        ),
        Stop::Gtid(g) => format!("{end}, before GTID position {g}"),
        Stop::End => end,
    })
}

/// Applies the planned transactions to `target`. Call after [`plan`] (and after the base
/// restore); fails, naming the table, if a change's table is missing on the target.
pub async fn replay(
    spec: &ReplaySpec,
    plan: &ReplayPlan,
    target: &ReplayTarget,
) -> Result<ReplayReport, PitrError> {
    let apply_err = |message: String| PitrError::Apply {
        target: target.name.clone(),
        message,
    };
    let mut report = ReplayReport {
        transactions: 0,
        rows: 0,
        position: None,
    };
    let Some(last) = plan.last_pos.clone() else {
        return Ok(report);
    };
    clear_progress(target, &spec.server)
        .await
        .map_err(|e| apply_err(format!("clearing fleetsync.sync_state: {e}")))?;
    let mut applier = Applier::connect(
        target.opts.clone(),
        target.opts.clone(),
        ApplierOptions {
            sync: PITR_SYNC.into(),
            source: spec.server.clone(),
            target: target.name.clone(),
            map: target.map.clone(),
            create_missing: false,
            apply_ddl: true,
            mark_writes: false,
            loop_prevention: None,
            conflicts: Default::default(),
            protocol: Default::default(),
            apply_lanes: 1,
            group: None,
        },
    )
    .await
    .map_err(|e| apply_err(e.to_string()))?;
    let archive = Archive::open_store(&spec.archive, &spec.server).await?;
    let (tx, mut rx) = mpsc::channel::<Transaction>(256);
    let reader = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || read_planned(&archive, &spec, &last, tx))
    };
    let mut batch: Vec<Transaction> = Vec::new();
    let mut rows = 0usize;
    loop {
        let next = rx.recv().await;
        let done = next.is_none();
        if let Some(t) = next {
            rows += t.changes.len().max(1);
            batch.push(t);
        }
        if (done || rows >= REPLAY_BATCH_ROWS) && !batch.is_empty() {
            apply_batch(&mut applier, &batch, &mut report)
                .await
                .map_err(apply_err)?;
            batch.clear();
            rows = 0;
        }
        if done {
            break;
        }
    }
    reader
        .await
        .map_err(|e| apply_err(format!("archive reader failed: {e}")))??;
    if report.transactions != plan.transactions {
        return Err(apply_err(format!(
            "applied {} transactions, the plan had {}",
            report.transactions, plan.transactions
        )));
    }
    Ok(report)
}

async fn apply_batch(
    applier: &mut Applier,
    batch: &[Transaction],
    report: &mut ReplayReport,
) -> Result<(), String> {
    let state = applier.apply(batch).await.map_err(|e| e.to_string())?;
    if let Some((table, reason)) = applier.paused_tables().into_iter().next() {
        return Err(format!(
            "cannot apply changes of {table}: {reason} (the target must hold the backup's tables; stopped at {})",
            state.position
        ));
    }
    report.transactions += batch.len() as u64;
    report.rows += batch.iter().map(|t| t.changes.len() as u64).sum::<u64>();
    report.position = Some(state.position.to_string());
    Ok(())
}

/// Sends the selected transactions after the start position up to `last` (inclusive).
fn read_planned(
    archive: &Archive,
    spec: &ReplaySpec,
    last: &BinlogPosition,
    tx: mpsc::Sender<Transaction>,
) -> Result<(), PitrError> {
    let start = &spec.start.binlog;
    archive.scan(start, |txn| {
        let at = txn.position.binlog.clone();
        if at <= *start {
            return Ok(Flow::Continue);
        }
        if at > *last {
            return Ok(Flow::Stop);
        }
        if let Some(t) = select(txn, spec.schemas.as_ref()) {
            if tx.blocking_send(t).is_err() {
                return Ok(Flow::Stop);
            }
        }
        Ok(if at == *last {
            Flow::Stop
        } else {
            Flow::Continue
        })
    })?;
    Ok(())
}

/// Removes a previous replay's progress row and pauses for `source` on the target.
async fn clear_progress(target: &ReplayTarget, source: &str) -> Result<(), mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(target.opts.clone()).await?;
    let state = conn
        .exec_drop(
            "DELETE FROM fleetsync.sync_state WHERE sync_name = ? AND source_name = ?",
            (PITR_SYNC, source),
        )
        .await;
    let paused = conn
        .exec_drop(
            "DELETE FROM fleetsync.paused_tables WHERE sync_name = ?",
            (PITR_SYNC,),
        )
        .await;
    for result in [state, paused] {
        match result {
            Ok(()) => {}
            // No fleetsync database or table yet: nothing to clear.
            Err(mysql_async::Error::Server(e)) if e.code == 1049 || e.code == 1146 => {}
            Err(e) => return Err(e),
        }
    }
    let _ = conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsync_proto::Gtid;

    fn set(s: &str) -> GtidSet {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn utc_formats_seconds() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn gtid_goal_is_reached_per_domain() {
        let goal = set("0-1-10,1-2-5");
        assert!(!reaches(Some(&set("0-1-10")), &goal));
        assert!(!reaches(Some(&set("0-1-9,1-2-5")), &goal));
        assert!(reaches(Some(&set("0-1-10,1-2-5")), &goal));
        assert!(reaches(Some(&set("0-1-11,1-2-7,2-3-1")), &goal));
        assert!(!reaches(None, &goal));
        let g = Gtid {
            domain: 0,
            server_id: 1,
            seq: 3,
        };
        assert!(reaches(Some(&GtidSet::from_iter([g])), &set("0-1-3")));
    }
}
