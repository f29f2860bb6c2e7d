//! Start-up of bidirectional groups: the checks that need the servers, and the install of
//! row versions, tombstone tables and triggers on every member (`fleetsync_coordinator::
//! versions`). `run` (and `sync once`) install; `check` prints what would be installed.
//!
//! Refused, with one line naming the group, server and tables: a table that is not on every
//! member, a table in two groups, a table in a group and in a one-way sync between two of its
//! members (either direction), two members with the same `@@server_id` (the rank's last tie
//! breaker), and what `versions::plan_member` refuses (keyless tables with detection, a
//! `newest_column` that cannot be ranked, cascading foreign keys, missing privileges), and a
//! member joining an installed group with rows in its group tables (see [`joining_members`]).
//! A joining member gets, after the install, the others' highest tombstone rank as its GC
//! floor (see `versions::raise_floor`).

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use fleetsync_agent::source::schema::list_tables;
use fleetsync_config::{Config, SyncConfig};
use fleetsync_coordinator::gc::{self, Evictions, GcGroup, GcMember};
use fleetsync_coordinator::versions;
use mysql_async::prelude::Queryable;

use crate::opts::opts_by_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check, then install (idempotent).
    Install,
    /// Check, then print what `Install` would do.
    Show,
}

/// Gauge: tombstones (deleted keys' versions) kept on a member. Labels `sync` (the group),
/// `server`. Also set by the GC rounds after each purge (`fleetsync_coordinator::gc`).
pub const METRIC_TOMBSTONES: &str = fleetsync_coordinator::gc::METRIC_TOMBSTONES;

/// How often the tombstone gauge is refreshed (a `COUNT(*)` per tombstone table).
const TOMBSTONE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A member a group was installed on (its tombstone tables are listed in `fleetsync.ts_floor`).
#[derive(Debug, Clone)]
pub struct Installed {
    pub group: String,
    pub server: String,
}

/// Checks and prepares every group of `config` (a no-op without groups).
pub async fn prepare(config: &Config, mode: Mode) -> Result<Vec<Installed>> {
    let mut out = Vec::new();
    for (group, members) in config.groups() {
        out.extend(prepare_group(config, group, &members, mode).await?);
    }
    Ok(out)
}

/// Refreshes [`METRIC_TOMBSTONES`] for `installed` every [`TOMBSTONE_EVERY`] until cancelled.
/// A member that cannot be reached keeps its last value (its pipelines report the outage).
pub fn spawn_tombstone_gauge(
    config: &Config,
    installed: Vec<Installed>,
    cancel: tokio_util::sync::CancellationToken,
) {
    if installed.is_empty() {
        return;
    }
    metrics::describe_gauge!(
        METRIC_TOMBSTONES,
        "Tombstones (versions of deleted keys) kept on a member of a bidirectional group"
    );
    let config = config.clone();
    tokio::spawn(async move {
        loop {
            for i in &installed {
                match count_tombstones(&config, i).await {
                    Ok(n) => metrics::gauge!(METRIC_TOMBSTONES, "sync" => i.group.clone(), "server" => i.server.clone())
                        .set(n as f64),
                    Err(e) => tracing::debug!(server = %i.server, error = %format!("{e:#}"), "counting tombstones failed"),
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TOMBSTONE_EVERY) => {}
            }
        }
    });
}

async fn count_tombstones(config: &Config, i: &Installed) -> Result<u64> {
    let mut conn = connect(config, &i.server).await?;
    let n = fleetsync_coordinator::gc::count_tombstones(&mut conn, &i.server, &i.group).await;
    let _ = conn.disconnect().await;
    Ok(n?)
}

/// The GC settings of every group of `config`.
pub fn gc_groups(config: &Config) -> Result<Vec<GcGroup>> {
    let mut out = Vec::new();
    for (group, members) in config.groups() {
        let (every, bound) = members[0].tombstone_gc()?;
        let mut list = Vec::new();
        for s in &members {
            list.push(GcMember {
                name: s.source.clone(),
                opts: opts_by_name(config, &s.source)?,
            });
        }
        out.push(GcGroup {
            group: group.to_string(),
            members: list,
            every,
            bound,
        });
    }
    Ok(out)
}

/// Loads the recorded evictions into `evictions` (before any pipeline starts), then runs the
/// GC rounds of every group until `cancel` (see `fleetsync_coordinator::gc`).
pub async fn start_gc(
    config: &Config,
    evictions: &Evictions,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let groups = gc_groups(config)?;
    for g in &groups {
        gc::check(g)
            .await
            .map_err(|e| anyhow!("group {}: {e}", g.group))?;
    }
    gc::load(&groups, evictions).await;
    for g in groups {
        tracing::info!(group = %g.group, every = ?g.every, bound = ?g.bound, "tombstone GC rounds started");
        tokio::spawn(gc::run_group(g, evictions.clone(), cancel.child_token()));
    }
    Ok(())
}

/// `fleetsync group readmit` (see the command's help and docs/bidirectional.md).
pub async fn readmit(
    path: &std::path::Path,
    group: &str,
    member: &str,
    from: &str,
    position: &str,
) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let groups = config.groups();
    let (_, syncs) = groups
        .iter()
        .find(|(g, _)| *g == group)
        .ok_or_else(|| anyhow!("no bidirectional group named {group:?}"))?;
    let members: Vec<&str> = syncs.iter().map(|s| s.source.as_str()).collect();
    for (what, m) in [("--member", member), ("--from", from)] {
        if !members.contains(&m) {
            return Err(anyhow!(
                "{what} {m:?} is not a member of group {group} ({})",
                members.join(", ")
            ));
        }
    }
    if member == from {
        return Err(anyhow!("--from must be another member than --member"));
    }
    let pos: fleetsync_proto::Position =
        position.parse().map_err(|e| anyhow!("--position: {e}"))?;
    // Every member first: nothing is changed unless all of them can be.
    let mut conns = Vec::new();
    for m in &members {
        let mut conn = connect(&config, m).await?;
        conn.query_drop("SET SESSION skip_replication=1")
            .await
            .map_err(|e| anyhow!("server {m}: {e}"))?;
        conns.push((*m, conn));
    }
    let (_, xconn) = conns
        .iter_mut()
        .find(|(m, _)| *m == member)
        .ok_or_else(|| anyhow!("no connection to {member}"))?;
    let end: Option<mysql_async::Row> = xconn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| anyhow!("server {member}: SHOW MASTER STATUS: {e}"))?;
    let (file, offset): (Option<String>, Option<u64>) = match &end {
        Some(row) => (row.get(0), row.get(1)),
        None => (None, None),
    };
    let (Some(file), Some(offset)) = (file, offset) else {
        return Err(anyhow!(
            "server {member}: SHOW MASTER STATUS is empty: is log_bin on?"
        ));
    };
    let end = format!("{file}:{offset}");
    let upsert = "INSERT INTO `fleetsync`.`sync_state` (`sync_name`, `source_name`, `position`, `snapshot_state`) \
                  VALUES (?, ?, ?, 'done') ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), \
                  `snapshot_state` = 'done', `bus_offset` = NULL";
    for (m, conn) in conns.iter_mut() {
        let (sync, source, at) = if *m == member {
            (format!("{group}.{from}"), from, pos.to_string())
        } else {
            (format!("{group}.{member}"), member, end.clone())
        };
        conn.exec_drop(upsert, (&sync, source, &at))
            .await
            .map_err(|e| anyhow!("server {m}: setting the position of {sync}: {e}"))?;
    }
    for (m, conn) in conns.iter_mut() {
        conn.query_drop(gc::CREATE_EVICTED_TABLE)
            .await
            .map_err(|e| anyhow!("server {m}: creating fleetsync.gc_evicted: {e}"))?;
        conn.exec_drop(
            "DELETE FROM `fleetsync`.`gc_evicted` WHERE `sync_name` = ? AND `member` = ?",
            (group, member),
        )
        .await
        .map_err(|e| anyhow!("server {m}: clearing the eviction: {e}"))?;
    }
    for (_, conn) in conns {
        let _ = conn.disconnect().await;
    }
    println!(
        "group {group}: {member} readmitted: it applies {from}'s stream from {pos}, the others apply its stream from {end}; a running fleetsync resumes its pipelines at their next retry"
    );
    Ok(())
}

async fn connect(config: &Config, server: &str) -> Result<mysql_async::Conn> {
    let opts = opts_by_name(config, server)?;
    mysql_async::Conn::new(opts)
        .await
        .map_err(|e| anyhow!("{}", fleetsync_agent::source::connect_error(server, e)))
}

async fn prepare_group(
    config: &Config,
    group: &str,
    members: &[&SyncConfig],
    mode: Mode,
) -> Result<Vec<Installed>> {
    let refuse = |m: String| anyhow!("group {group}: {m}");
    let mut installed = Vec::new();
    let mut conns = Vec::new();
    let mut tables: Vec<BTreeSet<(String, String)>> = Vec::new();
    let mut ids: Vec<(u32, &str)> = Vec::new();
    for s in members {
        let mut conn = connect(config, &s.source).await?;
        let filter = s.filter()?;
        let found = list_tables(&mut conn, &s.source, |a, b| filter.matches(a, b))
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let id: Option<u32> = conn
            .query_first("SELECT @@server_id")
            .await
            .map_err(|e| refuse(format!("server {}: reading @@server_id: {e}", s.source)))?;
        let id = id.unwrap_or(0);
        if let Some((_, other)) = ids.iter().find(|(i, _)| *i == id) {
            return Err(refuse(format!(
                "members {other} and {} both have server_id {id}: members need distinct server ids (the last tie breaker of conflicts)",
                s.source
            )));
        }
        ids.push((id, &s.source));
        tables.push(found.into_iter().collect());
        conns.push(conn);
    }
    // Every member holds every table of the group.
    let all: BTreeSet<&(String, String)> = tables.iter().flatten().collect();
    for (s, have) in members.iter().zip(&tables) {
        let missing: Vec<String> = all
            .iter()
            .filter(|t| !have.contains(**t))
            .map(|(a, b)| format!("{a}.{b}"))
            .collect();
        if !missing.is_empty() {
            return Err(refuse(format!(
                "server {} lacks {}: create every table of a group on every member first",
                s.source,
                missing.join(", ")
            )));
        }
    }
    // Overlaps with other syncs.
    for other in &config.syncs {
        if other.control_name() == group {
            continue;
        }
        let Some(idx) = members.iter().position(|m| m.source == other.source) else {
            continue;
        };
        let inside = other
            .targets
            .iter()
            .any(|t| members.iter().any(|m| &m.source == t));
        if other.group.is_none() && !inside {
            continue;
        }
        let filter = other.filter()?;
        let clash: Vec<String> = tables[idx]
            .iter()
            .filter(|(a, b)| filter.matches(a, b))
            .map(|(a, b)| format!("{a}.{b}"))
            .collect();
        if let Some(t) = clash.first() {
            let what = match &other.group {
                Some(g) => format!("group {g}"),
                None => format!(
                    "one-way sync {} ({} -> {})",
                    other.name,
                    other.source,
                    other.targets.join(", ")
                ),
            };
            return Err(refuse(format!(
                "table {t} (server {}) is also in {what}: a table can be in one group only, and not in a one-way sync between members of its group",
                other.source
            )));
        }
    }
    let policy = members[0].conflict_policy()?;
    let joining = joining_members(members, &mut conns, &tables, &policy)
        .await
        .map_err(|e| refuse(e.to_string()))?;
    for ((s, conn), have) in members.iter().zip(conns.iter_mut()).zip(&tables) {
        let list: Vec<(String, String)> = have.iter().cloned().collect();
        let plans = versions::plan_member(conn, &s.source, &s.source, &list, &policy)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        match mode {
            Mode::Show => {
                for p in &plans {
                    println!(
                        "group {group}: server {}: {}.{}: will {}",
                        s.source,
                        p.schema,
                        p.table,
                        p.statements
                            .iter()
                            .map(|(what, _)| what.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                }
            }
            Mode::Install => {
                versions::install(conn, &s.source, group, &plans)
                    .await
                    .map_err(|e| refuse(e.to_string()))?;
                tracing::info!(group, server = %s.source, tables = plans.len(), "row versions, tombstones and triggers installed");
                installed.push(Installed {
                    group: group.to_string(),
                    server: s.source.clone(),
                });
            }
        }
    }
    if mode == Mode::Install {
        copy_floors(members, &mut conns, &tables, &policy)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        if !joining.members.is_empty() {
            tracing::info!(
                group,
                joining = joining.members.len(),
                "members joined the group"
            );
        }
    }
    for conn in conns {
        let _ = conn.disconnect().await;
    }
    Ok(installed)
}

/// The members joining an installed group, with their joining tables: group tables (with
/// conflict detection) that lack the version columns another member already has. Refuses a
/// joining member whose joining tables hold rows: the initial snapshots copy rows, not
/// tombstones, so it would keep keys the others deleted before it joined (and send them on
/// when it writes them). A joining member must have empty group tables, or be a re-clone of
/// a member (which has the columns, so it is not joining). Reads only.
async fn joining_members(
    members: &[&SyncConfig],
    conns: &mut [mysql_async::Conn],
    tables: &[BTreeSet<(String, String)>],
    policy: &fleetsync_config::ConflictPolicy,
) -> Result<Joining> {
    let mut joining = Vec::new();
    let mut installed: Vec<BTreeSet<(String, String)>> = Vec::new();
    for (s, conn) in members.iter().zip(conns.iter_mut()) {
        let found: Vec<(String, String)> = conn
            .exec(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.COLUMNS WHERE COLUMN_NAME = ?",
                (versions::RANK_COLUMN,),
            )
            .await
            .map_err(|e| anyhow!("server {}: reading the installed version columns: {e}", s.source))?;
        installed.push(found.into_iter().collect());
    }
    for (i, s) in members.iter().enumerate() {
        let mut with_rows = Vec::new();
        let mut new_tables = Vec::new();
        for (schema, table) in &tables[i] {
            if policy.table(schema, table).strategy == fleetsync_config::ConflictStrategy::None {
                continue;
            }
            let key = (schema.clone(), table.clone());
            let joining =
                !installed[i].contains(&key) && installed.iter().any(|set| set.contains(&key));
            if !joining {
                continue;
            }
            new_tables.push(key);
            let sql = format!(
                "SELECT 1 FROM {}.{} LIMIT 1",
                fleetsync_proto::sql::ident(schema),
                fleetsync_proto::sql::ident(table)
            );
            let any: Option<u8> = conns[i]
                .query_first(sql)
                .await
                .map_err(|e| anyhow!("server {}: reading {schema}.{table}: {e}", s.source))?;
            if any.is_some() {
                with_rows.push(format!("{schema}.{table}"));
            }
        }
        if !with_rows.is_empty() {
            return Err(anyhow!(
                "server {} joins the installed group with rows in {}: a new member copies the others' rows but not their deletes' tombstones, so keys deleted before it joined would come back; empty these tables on it, or re-clone it from a member (its group databases and `fleetsync`, see docs/bidirectional.md)",
                s.source,
                with_rows.join(", ")
            ));
        }
        if !new_tables.is_empty() {
            joining.push((i, new_tables));
        }
    }
    Ok(Joining { members: joining })
}

/// What [`joining_members`] found.
struct Joining {
    /// Joining members (index into the group's members) and their joining tables.
    members: Vec<(usize, Vec<(String, String)>)>,
}

/// Gives every member, for each group table, at least the highest rank any other member
/// records for it (tombstones, GC floor) as its GC floor. A joining member gets none of the
/// others' tombstones (snapshots copy rows), so its writes to a key it has no record of must
/// rank above them. Done at every start, for every member (the floor is only ever raised,
/// which keeps convergence: it only raises the rank of a member's own writes to keys it has no
/// record of), so a start that died between a joining member's install and this step is
/// completed by the next one.
async fn copy_floors(
    members: &[&SyncConfig],
    conns: &mut [mysql_async::Conn],
    tables: &[BTreeSet<(String, String)>],
    policy: &fleetsync_config::ConflictPolicy,
) -> Result<()> {
    for (i, list) in tables.iter().enumerate() {
        for key in list {
            if policy.table(&key.0, &key.1).strategy == fleetsync_config::ConflictStrategy::None {
                continue;
            }
            let ts = versions::tombstone_table(&key.0, &key.1);
            let mut best = None;
            for (j, conn) in conns.iter_mut().enumerate() {
                if j != i && tables[j].contains(key) {
                    best =
                        best.max(versions::highest_recorded(conn, &members[j].source, &ts).await?);
                }
            }
            if let Some(rank) = best {
                versions::raise_floor(&mut conns[i], &members[i].source, &ts, rank).await?;
            }
        }
    }
    Ok(())
}
