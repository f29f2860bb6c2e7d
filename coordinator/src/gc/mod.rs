//! Tombstone garbage collection for bidirectional groups: rounds, purges, eviction.
//!
//! A tombstone may be purged on member `m` only when every other member has durably applied
//! its delete and `m` has durably applied every write the others made before applying it
//! ([`crate::apply::rank::purge_allowed`]; never by age alone). The coordinator side (the
//! process that has target connections to every member: `fleetsync run` or `fleetsync
//! coordinator`) establishes this with **rounds**, one task per group, every
//! `tombstone_gc_every`:
//!
//! 1. Round `r` starts at `t_r`: on every member `m` it reads a cutoff `c_m(r) = min(NOW(6),
//!    start of the oldest transaction in information_schema.INNODB_TRX)`, then, after every
//!    cutoff, every member `x`'s binlog end `B_x(r)` (`SHOW MASTER STATUS`).
//! 2. Round `r` is **complete** when every member `o` holds, for every other member `x`, the
//!    progress row of `(group.x, x)` with a snapshot done and a position at or past `B_x(r)`
//!    (the agents' heartbeats move an idle stream's position to the binlog end).
//! 3. When round `r+1` (started after `r` completed) is complete, every member `m` purges its
//!    tombstones with `deleted_at < c_m(r)`, and raises its GC floor (see below) in the same
//!    transaction.
//!
//! **Why a tombstone older than the cutoff is in the binlog before `B`.** Tombstones are
//! stamped with `SYSDATE(6)` (the time of the write itself, inside its transaction; not
//! `NOW(6)`, which is the statement's start and can precede the transaction, e.g. after a
//! metadata-lock wait), so a tombstone's `deleted_at` is at or after its transaction's start.
//! When the cutoff is read, the transaction that wrote a tombstone with `deleted_at < c_m`
//! had started before `c_m` (and `INNODB_TRX` shows the start rounded down to the second, which
//! only lowers `c_m`); it is not running any more (else `c_m` would be at or before its
//! start), so it committed, and MariaDB writes the binlog before the InnoDB commit: its events
//! are in the binlog before `B_m(r)`, read later. If `m` applied that delete from member `x`,
//! `x` committed it before `m` applied it, hence before `B_x(r)` (read after every cutoff).
//! (This assumes the server clock does not step backwards, and a system time zone without
//! daylight saving, e.g. UTC: in a repeated autumn hour local times such as `trx_started`, and
//! `SYSDATE(6)` stored into a TIMESTAMP by a session in such a zone, are ambiguous by an hour.)
//!
//! **Why the purge satisfies the rule.** Let `T` on `m` be the tombstone of delete `D` made
//! on `x` (possibly `m`), with `deleted_at < c_m(r)`: `D` is in `x`'s binlog before `B_x(r)`.
//! Round `r` complete: every member `o` has applied `x`'s stream past `B_x(r)`, so `o` applied
//! `D` (or held a higher-ranked record) by the time `r` completed. Every write `o` made before
//! applying `D` was committed before `r` completed, hence is in `o`'s binlog before
//! `B_o(r+1)`, read after `r` completed; round `r+1` complete: `m` applied `o`'s stream past
//! it. Both conditions of `purge_allowed` hold for every other member. A write `o` makes
//! after applying `D` inherits a rank above `D`'s (the inheritance rule), so it wins over the
//! purged tombstone where it arrives: the applier needs no change (it writes an incoming
//! change to a key with neither row nor tombstone, which is right for any write not yet
//! applied; redeliveries of applied ones are skipped by position).
//!
//! **The floor.** A member's own write to a key with neither row nor tombstone takes the
//! member's floor for the table (`fleetsync.ts_floor`, the highest rank of the tombstones it
//! purged) as predecessor, so it ranks above every purged tombstone of that table, as it
//! would have ranked above the key's own tombstone. The purge raises the floor and deletes the
//! tombstones in one transaction, in chunks of [`PURGE_CHUNK_ROWS`], holding the floor row
//! exclusively; the insert trigger reads it with a locking read. (A floor per table, not per
//! key: a fresh key's first write inherits the floor's primary, which is safe but makes such
//! a write rank like the newest purged delete of the table.)
//!
//! **The bound.** A member that keeps a round from completing (unreachable, or its streams
//! not applied) for longer than `tombstone_gc_bound` is *evicted*: recorded in
//! `fleetsync.gc_evicted` on every other member, then rounds go on without it and every
//! pipeline from or to it is refused ([`Evictions`]) until `fleetsync group readmit` after a
//! re-clone. A member is blamed when it is unreachable, or, once a round has waited longer
//! than `LAG_GRACE` (30 s: idle streams advance with the agents' heartbeats), when it has not
//! applied another member's stream that the others have applied, or when no other member has
//! applied its own stream. Eviction needs at least one member that does not block, and is written on every
//! one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetsync_proto::{BinlogPosition, Position};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use tokio_util::sync::CancellationToken;

use crate::apply::rank::{format_decimal, parse_decimal, Rank};
use crate::versions::FLOOR_TABLE;

mod evict;
mod purge;

pub use evict::{load, refusal_message, Eviction, Evictions};
use evict::{load_evictions, record_eviction};
use purge::purge_on;
pub use purge::{count_tombstones, purge_member};

/// Gauge: tombstones (versions of deleted keys) kept on a member. Labels `sync` (the group),
/// `server`.
pub const METRIC_TOMBSTONES: &str = "fleetsync_tombstones";
/// Counter: tombstones purged on a member by GC. Labels `sync` (the group), `server`.
pub const METRIC_PURGED: &str = "fleetsync_tombstones_purged_total";
/// Gauge: seconds since the group's last completed GC round (grows while a member blocks).
/// Label `sync` (the group).
pub const METRIC_LAST_ROUND: &str = "fleetsync_tombstone_gc_last_round_seconds";
/// Gauge: 1 for a member evicted from its group's GC (see the module docs). Labels `sync`,
/// `server`.
pub const METRIC_EVICTED: &str = "fleetsync_tombstone_gc_evicted";

/// Tombstones deleted per purge transaction: short enough that the floor row (which every
/// local insert of a key without a record reads) is held only briefly.
pub const PURGE_CHUNK_ROWS: usize = 1000;
/// How long a round may wait for streams to be applied before the lagging members count as
/// blocking it: an idle source's position moves only with the agent's heartbeats, which come
/// every 10 s when the source's binlog holds nothing but fleetsync's own applied writes.
const LAG_GRACE: Duration = Duration::from_secs(30);
/// Attempts of one purge chunk that meets a deadlock or lock wait timeout.
const CHUNK_ATTEMPTS: usize = 5;

/// Creates the eviction records (idempotent).
pub const CREATE_EVICTED_TABLE: &str = "CREATE TABLE IF NOT EXISTS `fleetsync`.`gc_evicted` (\
    `sync_name` VARCHAR(64) NOT NULL, `member` VARCHAR(64) NOT NULL, \
    `since` TIMESTAMP(6) NOT NULL, `evicted_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
    `bound_secs` BIGINT UNSIGNED NOT NULL, `reason` TEXT NOT NULL, \
    PRIMARY KEY (`sync_name`, `member`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("server {server}: {context}: {source}")]
    Sql {
        server: String,
        context: String,
        source: Box<mysql_async::Error>,
    },
    #[error("server {server}: {reason}")]
    Bad { server: String, reason: String },
}

impl GcError {
    /// Whether the member could not be reached (a lost or refused connection), as opposed to
    /// a server that answered with an error (a missing privilege, a missing table): only an
    /// unreachable member counts towards its eviction, a misconfigured one is reported.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, GcError::Sql { source, .. } if !matches!(**source, mysql_async::Error::Server(_)))
    }

    /// Whether the server refused for lack of a privilege.
    pub fn is_denied(&self) -> bool {
        matches!(self, GcError::Sql { source, .. }
            if matches!(&**source, mysql_async::Error::Server(e) if [1044, 1142, 1227].contains(&e.code)))
    }
}

fn sql_err(server: &str, context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> GcError {
    let (server, context) = (server.to_string(), context.into());
    move |e| GcError::Sql {
        server,
        context,
        source: Box::new(e),
    }
}

/// One member of a group, as GC reaches it.
#[derive(Clone)]
pub struct GcMember {
    pub name: String,
    pub opts: Opts,
}

/// One group's GC settings.
#[derive(Clone)]
pub struct GcGroup {
    pub group: String,
    pub members: Vec<GcMember>,
    pub every: Duration,
    pub bound: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a round read on the members (see the module docs).
#[derive(Debug, Clone)]
struct Round {
    /// When the round started (Unix seconds).
    started_unix: u64,
    /// Per member: the cutoff (Unix seconds with microseconds, as DECIMAL text).
    cutoffs: BTreeMap<String, String>,
    /// Per member: the binlog end read after every cutoff.
    ends: BTreeMap<String, BinlogPosition>,
}

/// Whether every member has applied every other member's stream past the round's ends, given
/// each member's progress rows (`source -> (position, snapshot done)`); `Err` lists who lags:
/// `(target, source)`.
fn lagging(
    round: &Round,
    progress: &BTreeMap<String, BTreeMap<String, (Position, bool)>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in round.ends.keys() {
        for (x, end) in &round.ends {
            if o == x {
                continue;
            }
            let done = progress
                .get(o)
                .and_then(|p| p.get(x))
                .is_some_and(|(pos, snap)| *snap && pos.binlog >= *end);
            if !done {
                out.push((o.clone(), x.clone()));
            }
        }
    }
    out
}

/// The members to blame for `lags` (see the module docs): a target that lags on a stream the
/// others applied, or a source no other member applied.
fn blame(members: &[String], lags: &[(String, String)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for x in members {
        let behind: Vec<&String> = lags
            .iter()
            .filter(|(_, s)| s == x)
            .map(|(t, _)| t)
            .collect();
        if behind.is_empty() {
            continue;
        }
        if behind.len() == members.len() - 1 {
            out.insert(x.clone());
        } else {
            out.extend(behind.into_iter().cloned());
        }
    }
    out
}

async fn connect(m: &GcMember) -> Result<Conn, GcError> {
    Conn::new(m.opts.clone())
        .await
        .map_err(sql_err(&m.name, "connecting"))
}

/// Reads the cutoff of one member (see the module docs; needs the PROCESS privilege).
async fn read_cutoff(conn: &mut Conn, server: &str) -> Result<String, GcError> {
    // INNODB_TRX shows `trx_started` in the server's system time zone whatever the session's:
    // the session uses it too, so that both convert to Unix time alike.
    conn.query_drop("SET SESSION time_zone = 'SYSTEM'")
        .await
        .map_err(sql_err(server, "setting the session time zone"))?;
    let c: Option<String> = conn
        .query_first(
            "SELECT CAST(UNIX_TIMESTAMP(LEAST(NOW(6), COALESCE((SELECT MIN(`trx_started`) \
             FROM information_schema.INNODB_TRX), NOW(6)))) AS CHAR)",
        )
        .await
        .map_err(sql_err(
            server,
            "reading the GC cutoff (the sync user needs PROCESS)",
        ))?;
    c.ok_or_else(|| GcError::Bad {
        server: server.into(),
        reason: "no GC cutoff returned".into(),
    })
}

async fn read_end(conn: &mut Conn, server: &str) -> Result<BinlogPosition, GcError> {
    let row: Option<Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(sql_err(server, "SHOW MASTER STATUS"))?;
    let bad = |reason: &str| GcError::Bad {
        server: server.into(),
        reason: reason.into(),
    };
    let row = row.ok_or_else(|| bad("SHOW MASTER STATUS is empty: is log_bin on?"))?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(BinlogPosition { file, pos }),
        _ => Err(bad("unreadable SHOW MASTER STATUS")),
    }
}

/// The progress rows of `group`'s pipelines into the member behind `conn`.
async fn read_progress(
    conn: &mut Conn,
    server: &str,
    group: &str,
) -> Result<BTreeMap<String, (Position, bool)>, GcError> {
    let rows: Vec<(String, String, String, String)> = conn
        .exec(
            "SELECT `sync_name`, `source_name`, `position`, `snapshot_state` FROM `fleetsync`.`sync_state` \
             WHERE `sync_name` LIKE CONCAT(?, '.%')",
            (group.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"),),
        )
        .await
        .map_err(sql_err(server, "reading fleetsync.sync_state"))?;
    let mut out = BTreeMap::new();
    for (sync, source, pos, snap) in rows {
        if sync != format!("{group}.{source}") {
            continue;
        }
        let pos: Position = pos.parse().map_err(|e| GcError::Bad {
            server: server.into(),
            reason: format!("fleetsync.sync_state of {sync}: {e}"),
        })?;
        out.insert(source, (pos, snap == "done"));
    }
    Ok(out)
}

/// Checks that GC can read its cutoff on every reachable member of `g` (the PROCESS
/// privilege); an unreachable member is left to the rounds.
pub async fn check(g: &GcGroup) -> Result<(), GcError> {
    for m in &g.members {
        let Ok(mut conn) = connect(m).await else {
            continue;
        };
        let res = read_cutoff(&mut conn, &m.name).await;
        let _ = conn.disconnect().await;
        match res {
            Err(e) if e.is_denied() => {
                return Err(GcError::Bad {
                    server: m.name.clone(),
                    reason: format!(
                        "tombstone GC of group {} reads information_schema.INNODB_TRX, which needs the PROCESS privilege: GRANT PROCESS ON *.* TO the sync user",
                        g.group
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs GC rounds for `g` every `g.every` until cancelled (see the module docs).
pub async fn run_group(g: GcGroup, evictions: Evictions, cancel: CancellationToken) {
    describe();
    let mut state = GroupState::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(g.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.step(&g, &evictions).await;
        let age = state
            .completed_at
            .unwrap_or(started)
            .elapsed()
            .as_secs_f64();
        metrics::gauge!(METRIC_LAST_ROUND, "sync" => g.group.clone()).set(age);
    }
}

fn describe() {
    metrics::describe_gauge!(
        METRIC_TOMBSTONES,
        "Tombstones (versions of deleted keys) kept on a member of a bidirectional group"
    );
    metrics::describe_counter!(
        METRIC_PURGED,
        "Tombstones purged by GC on a member of a bidirectional group"
    );
    metrics::describe_gauge!(
        METRIC_LAST_ROUND,
        "Seconds since the group's last completed tombstone GC round"
    );
    metrics::describe_gauge!(
        METRIC_EVICTED,
        "1 for a member evicted from its group's tombstone GC (its pipelines are refused)"
    );
}

#[derive(Default)]
struct GroupState {
    /// The last completed round: its cutoffs are purged when `pending` completes.
    completed: Option<Round>,
    completed_at: Option<Instant>,
    /// The round started after `completed`.
    pending: Option<Round>,
    /// Per member: since when (Unix seconds) it blocks rounds.
    blocking: BTreeMap<String, u64>,
    /// Members whose last failure was logged (a warning per outage, not per tick).
    warned: BTreeSet<String>,
}

impl GroupState {
    async fn step(&mut self, g: &GcGroup, evictions: &Evictions) {
        let evicted = load_evictions(g).await;
        for m in &g.members {
            let v = if evicted.contains_key(&m.name) {
                1.0
            } else {
                0.0
            };
            metrics::gauge!(METRIC_EVICTED, "sync" => g.group.clone(), "server" => m.name.clone())
                .set(v);
        }
        evictions.set_group(&g.group, evicted.clone());
        let active: Vec<&GcMember> = g
            .members
            .iter()
            .filter(|m| !evicted.contains_key(&m.name))
            .collect();
        let names: Vec<String> = active.iter().map(|m| m.name.clone()).collect();
        // A change of the active set (an eviction, a readmit) restarts the protocol.
        let same = |r: &Option<Round>| r.as_ref().is_none_or(|r| r.ends.keys().eq(names.iter()));
        if !same(&self.pending) || !same(&self.completed) {
            self.pending = None;
            self.completed = None;
        }
        self.blocking.retain(|m, _| names.contains(m));
        let blockers = match self.pending.clone() {
            None => match start_round(&active).await {
                Ok(r) => {
                    self.pending = Some(r);
                    BTreeSet::new()
                }
                Err(down) => down,
            },
            Some(r) => match self.check(g, &active, &r).await {
                Ok(()) => BTreeSet::new(),
                Err(b) => b,
            },
        };
        let now = unix_now();
        self.blocking.retain(|m, _| blockers.contains(m));
        for b in &blockers {
            self.blocking.entry(b.clone()).or_insert(now);
        }
        self.evict(g, &active, evictions).await;
    }

    /// Checks the pending round; when complete, purges the previous one's cutoffs and starts
    /// the next round. `Err`: the members that block it.
    async fn check(
        &mut self,
        g: &GcGroup,
        active: &[&GcMember],
        r: &Round,
    ) -> Result<(), BTreeSet<String>> {
        let mut progress = BTreeMap::new();
        let mut down = BTreeSet::new();
        let mut failed = false;
        for m in active {
            let res = async {
                let mut conn = connect(m).await?;
                let p = read_progress(&mut conn, &m.name, &g.group).await;
                let _ = conn.disconnect().await;
                p
            }
            .await;
            match res {
                Ok(p) => {
                    progress.insert(m.name.clone(), p);
                }
                Err(e) => {
                    self.warn(&g.group, &m.name, &e);
                    failed = true;
                    if e.is_unreachable() {
                        down.insert(m.name.clone());
                    }
                }
            }
        }
        if failed {
            return Err(down);
        }
        let lags = lagging(r, &progress);
        if !lags.is_empty() {
            let names: Vec<String> = active.iter().map(|m| m.name.clone()).collect();
            tracing::debug!(group = %g.group, ?lags, "GC round not complete yet");
            // Streams catch up with heartbeats: only a round pending past the grace blames.
            let grace_over = unix_now() >= r.started_unix + LAG_GRACE.as_secs();
            return Err(if grace_over {
                blame(&names, &lags)
            } else {
                BTreeSet::new()
            });
        }
        self.warned.clear();
        if let Some(prev) = self.completed.take() {
            for m in active {
                let Some(cutoff) = prev.cutoffs.get(&m.name) else {
                    continue;
                };
                if let Err(e) = purge_on(g, m, cutoff).await {
                    tracing::warn!(group = %g.group, server = %m.name, error = %e, "tombstone purge failed (retried next round)");
                }
            }
        }
        self.completed = Some(r.clone());
        self.completed_at = Some(Instant::now());
        self.pending = start_round(active).await.ok();
        Ok(())
    }

    fn warn(&mut self, group: &str, server: &str, e: &GcError) {
        if self.warned.insert(server.to_string()) {
            if e.is_unreachable() {
                tracing::warn!(group, server, error = %e, "tombstone GC cannot reach a member: no purge until it is back (or evicted past tombstone_gc_bound)");
            } else {
                tracing::warn!(group, server, error = %e, "tombstone GC round failed on a member: no purge until this is fixed");
            }
        } else {
            tracing::debug!(group, server, error = %e, "tombstone GC: member still unreachable");
        }
    }

    /// Evicts the members that blocked rounds for longer than the bound.
    async fn evict(&mut self, g: &GcGroup, active: &[&GcMember], evictions: &Evictions) {
        let now = unix_now();
        let bound = g.bound.as_secs();
        let over: Vec<(String, u64)> = self
            .blocking
            .iter()
            .filter(|(_, since)| Duration::from_secs(now.saturating_sub(**since)) >= g.bound)
            .map(|(m, s)| (m.clone(), *s))
            .collect();
        if over.is_empty() {
            return;
        }
        let others: Vec<&GcMember> = active
            .iter()
            .copied()
            .filter(|m| !self.blocking.contains_key(&m.name))
            .collect();
        if others.is_empty() {
            tracing::warn!(group = %g.group, "every member blocks tombstone GC: nobody is evicted (is the coordinator cut off from the members?)");
            return;
        }
        for (member, since) in over {
            let e = Eviction {
                since_unix: since,
                bound_secs: bound,
                reason: "unreachable or not applying the group's streams".into(),
            };
            match record_eviction(g, &others, &member, &e).await {
                Ok(()) => {
                    tracing::error!(group = %g.group, server = %member, "{}", refusal_message(&g.group, &member, &e));
                    self.blocking.remove(&member);
                    // Its pipelines stop before their next batch.
                    let mut all = load_evictions(g).await;
                    all.insert(member.clone(), e);
                    evictions.set_group(&g.group, all);
                }
                Err(err) => {
                    tracing::warn!(group = %g.group, server = %member, error = %err, "recording an eviction failed (retried)")
                }
            }
        }
    }
}

/// Reads every cutoff, then every binlog end; `Err`: the members that could not be reached
/// (empty when a member answered with an error: the round fails without blaming it).
async fn start_round(active: &[&GcMember]) -> Result<Round, BTreeSet<String>> {
    let mut failed = false;
    let mut conns = Vec::new();
    let mut down = BTreeSet::new();
    let mut cutoffs = BTreeMap::new();
    for m in active {
        let res = async {
            let mut conn = connect(m).await?;
            let c = read_cutoff(&mut conn, &m.name).await?;
            Ok::<_, GcError>((conn, c))
        }
        .await;
        match res {
            Ok((conn, c)) => {
                cutoffs.insert(m.name.clone(), c);
                conns.push((m, conn));
            }
            Err(e) => {
                tracing::debug!(server = %m.name, error = %e, "GC round: member not read");
                failed = true;
                if e.is_unreachable() {
                    down.insert(m.name.clone());
                } else {
                    tracing::warn!(server = %m.name, error = %e, "tombstone GC round failed on a member: no purge until this is fixed");
                }
            }
        }
    }
    let mut ends = BTreeMap::new();
    for (m, mut conn) in conns {
        match read_end(&mut conn, &m.name).await {
            Ok(b) => {
                ends.insert(m.name.clone(), b);
            }
            Err(e) => {
                tracing::debug!(server = %m.name, error = %e, "GC round: member not read");
                failed = true;
                if e.is_unreachable() {
                    down.insert(m.name.clone());
                }
            }
        }
        let _ = conn.disconnect().await;
    }
    if !failed {
        Ok(Round {
            started_unix: unix_now(),
            cutoffs,
            ends,
        })
    } else {
        Err(down)
    }
}

#[cfg(test)]
mod tests;
