//! Sync-aware rollout (`migrate up` on servers joined by syncs; `undo` waits the same way,
//! with [`Arrivals`]): a server that receives the migrated database through a sync (one-way,
//! or a bidirectional group) gets each file once, through the sync, never a second time
//! directly. The migration runs at the component's
//! origin ([`topology::components`]); then, receiver by receiver (a parent before its
//! children), fleetsync waits until the receiver's progress row of the sync from its parent
//! is past the parent's binlog end read after the parent had the files (so a backfill has
//! arrived as row changes, applied once, by the sync), and its schema equals the origin's
//! (0 differences); then it writes the receiver's history (`kind = via-sync`, `applied_by`
//! naming the sync and the origin). A wait that times out leaves the receiver's history
//! pending.
//!
//! Which syncs carry the database: a sync whose filter selects a table of it (any table
//! name, so tables a migration creates count, or an existing table of it on the sync's
//! source). Without `--database`: a sync that selects any user table. A sync that maps the
//! database to another name is refused (not followed yet).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fleetsync_config::{Config, TableFilter};
use fleetsync_coordinator::apply::{read_state, SnapshotState};
use fleetsync_coordinator::migrate::topology::{self, Component, Edge, Receipt};
use fleetsync_coordinator::migrate::versioned::{FileState, HistoryMode, Queue};
use fleetsync_coordinator::migrate::{self as cmigrate, Pairing};
use fleetsync_proto::schema_model::SchemaSnapshot;
use fleetsync_proto::BinlogPosition;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{applied_by, locked_state, snapshot, QueueRequest, ServerPlan, Tracker};
use crate::diff_cmd::connect;

/// How long `up` waits, by default, for a receiver's sync to bring a migration (DDL on a big
/// table and a backfill's rows take a while on the target too): ten minutes.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a receiver's progress is read while waiting.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// A table name no real table has: whether a filter selects any new table of a database.
const PROBE_TABLE: &str = "fleetsync_migration_probe";

/// How a receiver gets the migration (`realm-b: V3 via sync s1 from realm-a`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ViaSync {
    /// The sync's name (a group's name for a group member's sync).
    pub sync: String,
    /// Where the migration runs.
    pub origin: String,
    /// The server it receives the database from (the origin, or the one before it in a chain).
    pub from: String,
}

/// A receiver that `--servers` does not select: it gets the files through the sync anyway.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Downstream {
    pub server: String,
    #[serde(flatten)]
    pub via: ViaSync,
    /// Its sync did not bring the files (the wait timed out, ...).
    pub error: Option<String>,
}

/// The fleet's sync components for the migrated database.
#[derive(Debug, Default)]
pub struct Topology {
    pub components: Vec<Component>,
    /// Syncs (pipeline names) that carry TrinityCore's `updates` table of the database.
    pub(super) carries_updates: Vec<String>,
}

impl Topology {
    pub fn component_of(&self, server: &str) -> Option<&Component> {
        self.components
            .iter()
            .find(|c| c.origin == server || c.receivers.iter().any(|r| r.server == server))
    }

    pub fn receipt(&self, server: &str) -> Option<(&Component, &Receipt)> {
        self.components.iter().find_map(|c| {
            c.receivers
                .iter()
                .find(|r| r.server == server)
                .map(|r| (c, r))
        })
    }

    pub fn via(c: &Component, r: &Receipt) -> ViaSync {
        ViaSync {
            sync: r.edge.display.clone(),
            origin: c.origin.clone(),
            from: r.parent.clone(),
        }
    }
}

fn carries(filter: &TableFilter, db: Option<&str>, tables: &[(String, String)]) -> bool {
    match db {
        Some(d) => {
            filter.matches(d, PROBE_TABLE)
                || tables.iter().any(|(s, t)| s == d && filter.matches(s, t))
        }
        None => tables.iter().any(|(s, t)| filter.matches(s, t)),
    }
}

async fn user_tables(config: &Config, server: &str) -> Result<Vec<(String, String)>> {
    let mut conn = connect(config, server).await?;
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA \
             NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'fleetsync')",
        )
        .await
        .with_context(|| format!("server {server}: reading its tables"))?;
    let _ = conn.disconnect().await;
    Ok(rows)
}

/// The components of the syncs that carry the database (see the module docs).
pub async fn topology(config: &Config, req: &QueueRequest) -> Result<Topology> {
    let db = req.database();
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut edges = Vec::new();
    let mut carries_updates = Vec::new();
    for s in &config.syncs {
        let filter = s.filter()?;
        let needs_tables = db
            .as_deref()
            .is_none_or(|d| !filter.matches(d, PROBE_TABLE));
        if needs_tables && !tables.contains_key(&s.source) {
            tables.insert(s.source.clone(), user_tables(config, &s.source).await?);
        }
        let t = tables.get(&s.source).map(Vec::as_slice).unwrap_or(&[]);
        if !carries(&filter, db.as_deref(), t) {
            continue;
        }
        if let Some(d) = db.as_deref() {
            let to = s.table_map()?.target_schema(d);
            if to != d {
                bail!(
                    "sync {} maps database {d} to {to}: `migrate up` and `undo` do not follow a renamed database through a sync yet; apply per server (--servers) with --database on each side",
                    s.control_name()
                );
            }
            if filter.matches(d, "updates") {
                carries_updates.push(s.name.clone());
            }
        }
        for t in &s.targets {
            edges.push(Edge {
                sync: s.name.clone(),
                display: s.control_name().to_string(),
                source: s.source.clone(),
                target: t.clone(),
            });
        }
    }
    let components = topology::components(&edges).map_err(|e| anyhow::anyhow!(e))?;
    Ok(Topology {
        components,
        carries_updates,
    })
}

/// Refuses plans that would run a file twice: a selected receiver whose origin is not
/// selected, or a receiver that applied (directly) a file its origin is about to run.
pub fn check_plans(topo: &Topology, plans: &[ServerPlan], queue: &Queue) -> Result<()> {
    let plan_of = |s: &str| plans.iter().find(|p| p.server == s);
    for p in plans {
        let Some((c, r)) = topo.receipt(&p.server) else {
            continue;
        };
        let Some(origin) = plan_of(&c.origin) else {
            bail!(
                "{} receives the migrated database through sync {} from {}, which --servers does not select: select {} too (the files run there once and reach {} through the sync); nothing applied on any server",
                p.server,
                r.edge.display,
                r.parent,
                c.origin,
                p.server
            );
        };
        for &i in &origin.files {
            if p.applied.contains(&i) {
                bail!(
                    "{} already applied {} directly, and its origin {} has not: running it at {} would reach {} a second time through sync {}; nothing applied on any server",
                    p.server,
                    queue.files[i].file_name,
                    c.origin,
                    c.origin,
                    p.server,
                    r.edge.display
                );
            }
        }
    }
    Ok(())
}

/// The binlog end of `server` (`SHOW MASTER STATUS`).
async fn binlog_end(config: &Config, server: &str) -> Result<BinlogPosition, String> {
    let mut conn = connect(config, server)
        .await
        .map_err(|e| crate::exit::one_line(e.as_ref()))?;
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| format!("server {server}: SHOW MASTER STATUS: {e}"))?;
    let _ = conn.disconnect().await;
    let (file, pos) = row
        .map(|r| (r.get_opt::<String, _>(0), r.get_opt::<u64, _>(1)))
        .ok_or_else(|| format!("server {server}: SHOW MASTER STATUS is empty: is log_bin on?"))?;
    match (file, pos) {
        (Some(Ok(file)), Some(Ok(pos))) => Ok(BinlogPosition::new(file, pos)),
        _ => Err(format!("server {server}: unreadable SHOW MASTER STATUS")),
    }
}

/// Waits until `r`'s sync from its parent has applied the parent's binlog up to `end`;
/// `resume` ends the timeout's message (what to run once the sync is back). A cancel stops
/// the wait (nothing is mid-file here: the origin's files have run).
#[allow(clippy::too_many_arguments)]
async fn wait_caught_up(
    config: &Config,
    r: &Receipt,
    end: &BinlogPosition,
    timeout: Duration,
    deadline: Instant,
    resume: &str,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> Result<(), String> {
    tracker.phase(format!(
        "{}: waiting for sync {} to apply {}'s binlog up to {end}",
        r.server, r.edge.display, r.parent
    ));
    let mut last = String::from("no progress recorded");
    loop {
        let state = match connect(config, &r.server).await {
            Ok(mut conn) => {
                let s = read_state(&mut conn, &r.edge.sync, &r.parent).await;
                let _ = conn.disconnect().await;
                s.map_err(|e| e.to_string())
            }
            Err(e) => Err(crate::exit::one_line(e.as_ref())),
        };
        match state {
            Ok(Some(st)) if st.snapshot == SnapshotState::Done && st.position.binlog >= *end => {
                return Ok(())
            }
            Ok(Some(st)) => last = format!("at {}", st.position.binlog),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {}s waiting for sync {} to apply {}'s binlog up to {end} on {} ({last}): is the sync running, and not failing (`fleetsync status`; in a bidirectional group a table made by a migration gets its version columns only when `fleetsync run` restarts)? {resume}",
                timeout.as_secs(),
                r.edge.display,
                r.parent,
                r.server
            ));
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                return Err(format!(
                    "cancelled while waiting for sync {} to apply {}'s binlog up to {end} on {} ({last}). {resume}",
                    r.edge.display, r.parent, r.server
                ));
            }
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

/// The end of the timeout's message for `up`.
const UP_RESUME: &str =
    "Its history is left pending; `migrate up` again records it once the sync has caught up";

/// Waits for a component's receivers after its origin ran (`up`'s files or `undo`'s undo
/// files): a receiver has them when its sync from its parent has applied the parent's binlog
/// up to its end read now, and its schema equals the origin's (0 differences). The waits of
/// a component share one deadline. Used by `up` ([`follow`]) and `undo`.
pub struct Arrivals<'a> {
    config: &'a Config,
    origin: String,
    database: Option<String>,
    pairing: Pairing,
    /// The origin's schema after its run.
    reference: Result<SchemaSnapshot, String>,
    timeout: Duration,
    deadline: Instant,
    resume: &'a str,
    cancel: &'a CancellationToken,
}

impl<'a> Arrivals<'a> {
    /// Reads the origin's schema (after its run) and starts the component's deadline.
    pub async fn new(
        config: &'a Config,
        req: &QueueRequest,
        c: &Component,
        timeout: Duration,
        resume: &'a str,
        cancel: &'a CancellationToken,
    ) -> Arrivals<'a> {
        let database = req.database();
        let pairing = if database.is_some() {
            Pairing::Single
        } else {
            Pairing::ByName
        };
        let reference = snapshot(config, &c.origin, database.as_deref())
            .await
            .map_err(|e| format!("origin {}: reading its schema: {e}", c.origin));
        Arrivals {
            config,
            origin: c.origin.clone(),
            database,
            pairing,
            reference,
            // One deadline for the component: receivers wait at the same time in effect.
            deadline: Instant::now() + timeout,
            timeout,
            resume,
            cancel,
        }
    }

    /// Waits for `r` (not at all when its parent did not catch up): its schema differences
    /// from the origin's once read, and why it does not have the origin's run, if so.
    pub async fn arrived(
        &self,
        r: &Receipt,
        parent_failed: bool,
        tracker: &Tracker,
    ) -> (Option<usize>, Result<(), String>) {
        if parent_failed {
            return (
                None,
                Err(format!(
                    "{} (which it receives from) did not catch up",
                    r.parent
                )),
            );
        }
        let mut differences = None;
        let res: Result<(), String> = async {
            let end = binlog_end(self.config, &r.parent).await?;
            wait_caught_up(
                self.config,
                r,
                &end,
                self.timeout,
                self.deadline,
                self.resume,
                tracker,
                self.cancel,
            )
            .await?;
            let reference = self.reference.as_ref().map_err(Clone::clone)?;
            let snap = snapshot(self.config, &r.server, self.database.as_deref())
                .await
                .map_err(|e| format!("reading its schema: {e}"))?;
            let mut d = cmigrate::diff(reference, &snap, self.pairing, &cmigrate::Hints::default());
            if !d.equal {
                // The origin may have changed since its run: a bidirectional group installs
                // a new table's version columns and triggers on every member while running,
                // the origin included. Compare with the origin as it is now.
                if let Ok(now) = snapshot(self.config, &self.origin, self.database.as_deref()).await {
                    d = cmigrate::diff(&now, &snap, self.pairing, &cmigrate::Hints::default());
                }
            }
            differences = Some(d.differences.len());
            if !d.equal {
                let first3: Vec<String> =
                    d.differences.iter().take(3).map(|x| x.to_string()).collect();
                return Err(format!(
                    "sync {} caught up but the schema differs from origin {}'s: {} difference(s): {}",
                    r.edge.display,
                    self.origin,
                    d.differences.len(),
                    first3.join("; ")
                ));
            }
            Ok(())
        }
        .await;
        (differences, res)
    }
}

/// What became of one receiver.
#[derive(Debug)]
pub struct Received {
    pub server: String,
    /// Files recorded (or found recorded) on it.
    pub recorded: Vec<usize>,
    pub schema_differences: Option<usize>,
    /// Why it was not recorded (the wait timed out, the schema differs, ...).
    pub error: Option<(Option<usize>, String)>,
}

/// After the origin of `c` had its files (`origin_applied`: queue indexes applied there),
/// waits (at most `timeout` for all of them) for every receiver in order and records the
/// files on the selected ones (`plans`).
/// A receiver whose parent failed to catch up is not waited for.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    topo: &Topology,
    c: &Component,
    origin_applied: &[usize],
    plans: &[ServerPlan],
    timeout: Duration,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> Vec<Received> {
    let mut out: Vec<Received> = Vec::new();
    let arrivals = Arrivals::new(config, req, c, timeout, UP_RESUME, cancel).await;
    for r in &c.receivers {
        let plan = plans.iter().find(|p| p.server == r.server);
        let first = plan.and_then(|p| p.files.first().copied());
        let parent_failed = out
            .iter()
            .any(|o| o.server == r.parent && o.error.is_some());
        let (schema_differences, res) = arrivals.arrived(r, parent_failed, tracker).await;
        let mut rec = Received {
            server: r.server.clone(),
            recorded: Vec::new(),
            schema_differences,
            error: None,
        };
        if let Err(e) = res {
            rec.error = Some((first, e));
            out.push(rec);
            continue;
        }
        if let Some(p) = plan {
            let todo: Vec<usize> = p
                .files
                .iter()
                .copied()
                .filter(|i| origin_applied.contains(i))
                .collect();
            match record(config, req, queue, topo, c, r, &todo).await {
                Ok(done) => {
                    for _ in &done {
                        tracker.table_done(0);
                    }
                    rec.recorded = done;
                }
                Err((i, e)) => rec.error = Some((i.or(first), e)),
            }
        }
        out.push(rec);
    }
    out
}

/// Writes the `via-sync` history of `todo` on receiver `r` (under the queue's lock; files
/// recorded meanwhile are skipped).
async fn record(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    topo: &Topology,
    c: &Component,
    r: &Receipt,
    todo: &[usize],
) -> Result<Vec<usize>, (Option<usize>, String)> {
    let store = req.store().map_err(|e| (None, e.to_string()))?;
    let mut conn = connect(config, &r.server)
        .await
        .map_err(|e| (None, crate::exit::one_line(e.as_ref())))?;
    store
        .prepare(&mut conn)
        .await
        .map_err(|e| (None, e.to_string()))?;
    let st = locked_state(&mut conn, &store, queue)
        .await
        .map_err(|e| (None, e))?;
    let carried =
        queue.mode == HistoryMode::TrinityCore && topo.carries_updates.contains(&r.edge.sync);
    let note = format!(
        "via sync {} from {} (by {})",
        r.edge.display,
        c.origin,
        applied_by()
    );
    let mut done = Vec::new();
    for &i in todo {
        let file = &queue.files[i];
        if st.files[i].is_applied() {
            done.push(i);
            continue;
        }
        if carried {
            // The origin's `updates` row came with the sync: it must be there by now.
            return Err((
                Some(i),
                format!(
                    "sync {} carries {}.updates but {}'s row has not arrived",
                    r.edge.display,
                    req.database().unwrap_or_default(),
                    file.file_name
                ),
            ));
        }
        if matches!(st.files[i], FileState::Pending | FileState::Failed { .. }) {
            store
                .via_sync(&mut conn, file, &note, carried)
                .await
                .map_err(|e| (Some(i), e.to_string()))?;
            done.push(i);
        }
    }
    let _ = conn.disconnect().await;
    Ok(done)
}
