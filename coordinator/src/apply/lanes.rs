//! Parallel apply lanes (`[[syncs]] apply_lanes` > 1): a run of row transactions is cut into
//! contiguous *segments*, executed on up to K lane connections at once and **committed in
//! source order** by a sequencer. See docs/apply-lanes.md for the full argument.
//!
//! # Invariants
//!
//! * **Commits in source order.** Segment k's commit (its progress row, then `COMMIT`) is sent
//!   only after segment k-1's commit returned. The progress row (`fleetsync.sync_state`, one
//!   per (sync, source), as in serial mode) therefore always names a position P such that
//!   every transaction at or before P is committed and none after it: resuming from the
//!   stored position is exactly-once, as in serial mode. The progress row is written only in
//!   the commit step, so no lane holds its lock while an earlier lane still executes.
//! * **Write sets.** A transaction's write set is the hashes of (table, index, values) of every
//!   unique index of the target table (the primary key included) over its before and after
//!   images: every row and unique-index entry the server locks. Foreign-key parents are not
//!   locked (the session has `foreign_key_checks=0`). A segment starts only when every
//!   earlier segment whose write set intersects its own has committed, so rows of one key are
//!   changed in source order and an earlier segment never waits for a row lock of a later one.
//! * **Barriers.** A transaction whose write set is unknown (a keyless table, a snapshot
//!   chunk, a key value that cannot be rendered, a unique index the source lacks a column of)
//!   or DDL runs alone on the main connection after everything before it committed.
//! * **Safety net.** Lane sessions use READ COMMITTED (no gap locks for row writes) and
//!   `innodb_lock_wait_timeout` = [`LANE_LOCK_WAIT_SECS`]. Should an earlier segment still
//!   wait for a lock held by a later one (the duplicate-key check of a unique index can lock a
//!   gap even in READ COMMITTED), the server never sees a deadlock (the later one waits in
//!   fleetsync, not in the server) but the lock wait times out (1205); a deadlock the server
//!   does see fails one lane with 1213. Either way every uncommitted lane is rolled back and
//!   the rest of the group runs serially on the main connection (counted as a `lock_wait`
//!   barrier). Other errors roll back every uncommitted lane and fail the batch like serial
//!   mode: transient ones are retried by the pipeline, definite ones stop it visibly.
//! * **Crash.** Each lane connection holds the named lock `<applier lock>:<lane>` for its
//!   lifetime; a starting applier waits for all of them (see
//!   [`Applier::wait_for_old_lanes`]) before it reads the progress, so a killed process's
//!   last commit has either landed or been rolled back when the position is read.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use mysql_async::prelude::Queryable as _;
use mysql_async::Conn;

use fleetsync_config::MAX_APPLY_LANES;
use fleetsync_proto::{KeyKind, Transaction};

use super::batch::{self, Stmt};
use super::exec::{self, Mark, QueryBuf, SlotSql};
use super::run::{next_state, send, send_rows, Exec, Slot};
use super::sql::{self, TableSql};
use super::{state, AppliedState, Applier, ApplyError, SESSION_SETUP};

/// Lock wait timeout of lane sessions, seconds: how long an earlier segment may wait for a
/// lock before the group is rolled back and re-run serially. Short, because such a wait can
/// be on a later lane that waits for this one (which the server cannot see); long enough that
/// ordinary waits on the target's own clients rarely trip it.
pub(super) const LANE_LOCK_WAIT_SECS: u32 = 5;

/// Barrier reasons (label `reason` of [`super::APPLY_BARRIER_TOTAL`]).
pub(super) const BARRIER_DDL: &str = "ddl";
pub(super) const BARRIER_KEYLESS: &str = "keyless";
pub(super) const BARRIER_SNAPSHOT: &str = "snapshot";
pub(super) const BARRIER_UNKEYABLE: &str = "unkeyable";
pub(super) const BARRIER_LOCK_WAIT: &str = "lock_wait";

/// Server error codes after which a group is re-run serially: lock wait timeout, deadlock.
const LOCK_CODES: [u16; 2] = [1205, 1213];

/// The write set of one source transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriteSet {
    /// Deduplicated hashes of every key the transaction writes.
    Keys(Vec<u64>),
    /// Unknown: the transaction must run alone (the reason).
    Barrier(&'static str),
}

/// Contiguous transactions of a run executed in one lane transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// Indexes into the run.
    pub txns: Range<usize>,
    /// The latest earlier segment of the same group whose write set intersects this one's:
    /// this segment starts only after that one committed.
    pub after: Option<usize>,
}

/// What to do with a run of row transactions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Run transaction `txn` alone.
    Barrier { txn: usize, reason: &'static str },
    /// Segments executed in parallel and committed in order.
    Parallel(Vec<Segment>),
}

/// Cuts a run (write sets and row counts per transaction) into steps for `lanes` lanes: each
/// stretch between barriers becomes about `lanes` segments of similar row counts. Pure.
pub(super) fn dispatch(sets: &[WriteSet], rows: &[usize], lanes: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut start = 0;
    for (i, set) in sets.iter().enumerate() {
        if let WriteSet::Barrier(reason) = set {
            if start < i {
                steps.push(Step::Parallel(segments(sets, rows, start..i, lanes)));
            }
            steps.push(Step::Barrier { txn: i, reason });
            start = i + 1;
        }
    }
    if start < sets.len() {
        steps.push(Step::Parallel(segments(
            sets,
            rows,
            start..sets.len(),
            lanes,
        )));
    }
    steps
}

fn segments(sets: &[WriteSet], rows: &[usize], range: Range<usize>, lanes: usize) -> Vec<Segment> {
    let total: usize = range
        .clone()
        .map(|i| rows.get(i).copied().unwrap_or(1))
        .sum();
    let per = total.div_ceil(lanes.max(1)).max(1);
    let mut segs: Vec<Segment> = Vec::new();
    let mut keys: Vec<HashSet<u64>> = Vec::new();
    let mut from = range.start;
    let mut acc = 0;
    let mut cur: HashSet<u64> = HashSet::new();
    for i in range.clone() {
        if let Some(WriteSet::Keys(k)) = sets.get(i) {
            cur.extend(k.iter().copied());
        }
        acc += rows.get(i).copied().unwrap_or(1);
        if acc >= per || i + 1 == range.end {
            let after = keys.iter().rposition(|earlier| !earlier.is_disjoint(&cur));
            segs.push(Segment {
                txns: from..i + 1,
                after,
            });
            keys.push(std::mem::take(&mut cur));
            from = i + 1;
            acc = 0;
        }
    }
    segs
}

/// Hash of one key of a write set: (schema, table, index number, rendered values).
fn key_hash(schema: &str, table: &str, index: usize, rendered: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    schema.hash(&mut h);
    table.hash(&mut h);
    index.hash(&mut h);
    rendered.hash(&mut h);
    h.finish()
}

/// One segment, planned and ready to execute.
struct Prepared<'a> {
    txns: Vec<&'a Transaction>,
    slots: Vec<Slot<'a>>,
    stmts: Vec<Stmt<'a>>,
    state: AppliedState,
    applied: u64,
    skipped: u64,
}

/// A lane's result: segment, lane, its connection back, the query buffer, the outcome.
type LaneDone = (
    usize,
    usize,
    Conn,
    QueryBuf,
    Result<(), (Mark, Exec)>,
    Duration,
);

impl Applier {
    fn lanes_on(&self) -> bool {
        self.opts.apply_lanes > 1 && self.opts.conflicts.is_none() && !self.opts.conflicts.group
    }

    fn lane_lock(&self, lane: usize) -> String {
        format!(
            "{}:{lane}",
            super::lock_name(&self.opts.sync, &self.opts.source)
        )
    }

    pub(super) fn count_barrier(&self, reason: &'static str, n: u64) {
        if self.lanes_on() {
            metrics::counter!(
                super::APPLY_BARRIER_TOTAL,
                "sync" => self.opts.sync.clone(),
                "target" => self.opts.target.clone(),
                "reason" => reason
            )
            .increment(n);
        }
    }

    /// Waits until no connection of an earlier process holds a lane lock (any lane count up
    /// to the maximum: the previous run may have had more lanes), so that its last commit has
    /// landed or been rolled back before the progress is read. Instant when none is held.
    pub(super) async fn wait_for_old_lanes(&mut self) -> Result<(), ApplyError> {
        let mut q = String::from("SELECT 0");
        for lane in 1..=MAX_APPLY_LANES {
            let name = self.lane_lock(lane);
            q.push_str(&format!(
                " + COALESCE(GET_LOCK('{name}', {}), 0) + COALESCE(RELEASE_LOCK('{name}'), 0)",
                super::OWNERSHIP_WAIT_SECS
            ));
        }
        let got: Option<Option<i64>> = self
            .conn
            .query_first(q)
            .await
            .map_err(|source| self.sql_error("waiting for the lane locks", source))?;
        if got.flatten() == Some(2 * MAX_APPLY_LANES as i64) {
            return Ok(());
        }
        Err(self.state_error(format!(
            "a lane connection of an earlier applier still holds its lock after {} s",
            super::OWNERSHIP_WAIT_SECS
        )))
    }

    /// Lane `lane`'s connection (1-based lanes; index `lane - 1`), connected and set up.
    async fn lane_conn(&mut self, lane: usize) -> Result<Conn, ApplyError> {
        if self.lanes.len() < self.opts.apply_lanes {
            self.lanes.resize_with(self.opts.apply_lanes, || None);
        }
        if let Some(c) = self.lanes.get_mut(lane - 1).and_then(Option::take) {
            return Ok(c);
        }
        let mut conn =
            Conn::new(self.target_opts.clone())
                .await
                .map_err(|e| ApplyError::Connect {
                    target: self.opts.target.clone(),
                    source: Box::new(e),
                })?;
        let mut setup =
            format!("{SESSION_SETUP}; SET SESSION innodb_lock_wait_timeout={LANE_LOCK_WAIT_SECS}");
        if self.skip_repl {
            setup.push_str("; SET SESSION skip_replication=1");
        }
        exec::run_text(&mut conn, setup.as_bytes())
            .await
            .map_err(|source| self.sql_error(format!("setting up lane {lane}"), source))?;
        let name = self.lane_lock(lane);
        let got: Option<Option<i64>> = conn
            .query_first(format!(
                "SELECT GET_LOCK('{name}', {})",
                super::OWNERSHIP_WAIT_SECS
            ))
            .await
            .map_err(|source| self.sql_error(format!("taking the lock of lane {lane}"), source))?;
        if got.flatten() != Some(1) {
            return Err(self.state_error(format!("lane {lane}'s lock is held by another session")));
        }
        Ok(conn)
    }

    /// Applies a run of row transactions: serially when lanes are off, else by write set.
    pub(super) async fn flush_rows(&mut self, run: &[&Transaction]) -> Result<(), ApplyError> {
        if !self.lanes_on() || run.len() < 2 {
            return self.flush(run).await;
        }
        let sets = self.write_sets(run).await?;
        let rows: Vec<usize> = run.iter().map(|t| t.changes.len().max(1)).collect();
        for step in dispatch(&sets, &rows, self.opts.apply_lanes) {
            match step {
                Step::Barrier { txn, reason } => {
                    self.count_barrier(reason, 1);
                    self.flush(&run[txn..=txn]).await?;
                }
                Step::Parallel(segs) => {
                    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
                        continue;
                    };
                    if segs.len() == 1 {
                        self.flush(&run[first.txns.start..last.txns.end]).await?;
                    } else {
                        self.apply_parallel(run, &segs).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The write set of each transaction of `run` (see the module docs).
    async fn write_sets(&mut self, run: &[&Transaction]) -> Result<Vec<WriteSet>, ApplyError> {
        let mut sets = Vec::with_capacity(run.len());
        let mut buf = Vec::new();
        for txn in run {
            if txn.snapshot {
                sets.push(WriteSet::Barrier(BARRIER_SNAPSHOT));
                continue;
            }
            // Per table of the transaction: the column lists of its unique indexes, `None`
            // for a paused table (its rows are skipped).
            let mut indexes: Vec<Option<Vec<Vec<usize>>>> = Vec::with_capacity(txn.tables.len());
            let mut barrier = None;
            for schema in &txn.tables {
                if schema.key_kind == KeyKind::None || schema.key.is_empty() {
                    barrier = Some(BARRIER_KEYLESS);
                    break;
                }
                let Some(found) = self.ensure_table(schema).await? else {
                    indexes.push(None);
                    continue;
                };
                let mut list = vec![schema.key.iter().map(|&k| usize::from(k)).collect()];
                for cols in &found.unique_indexes {
                    let ix: Option<Vec<usize>> = cols
                        .iter()
                        .map(|c| {
                            schema
                                .columns
                                .iter()
                                .position(|sc| sc.name.eq_ignore_ascii_case(c))
                        })
                        .collect();
                    match ix {
                        Some(ix) => list.push(ix),
                        None => barrier = Some(BARRIER_UNKEYABLE),
                    }
                }
                indexes.push(Some(list));
            }
            if let Some(reason) = barrier {
                sets.push(WriteSet::Barrier(reason));
                continue;
            }
            let mut keys = Vec::with_capacity(txn.changes.len() * 2);
            'changes: for c in &txn.changes {
                let (Some(Some(list)), Some(schema)) = (
                    indexes.get(c.table as usize),
                    txn.tables.get(c.table as usize),
                ) else {
                    continue;
                };
                for image in [c.before.as_deref(), c.after.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    for (n, ix) in list.iter().enumerate() {
                        buf.clear();
                        if sql::push_key(&mut buf, image, ix).is_err() {
                            barrier = Some(BARRIER_UNKEYABLE);
                            break 'changes;
                        }
                        keys.push(key_hash(&schema.schema, &schema.table, n, &buf));
                    }
                }
            }
            if let Some(reason) = barrier {
                sets.push(WriteSet::Barrier(reason));
                continue;
            }
            keys.sort_unstable();
            keys.dedup();
            sets.push(WriteSet::Keys(keys));
        }
        Ok(sets)
    }

    /// Plans each segment of `segs` (indexes into `run`), chaining their progress states.
    async fn prepare<'a>(
        &mut self,
        run: &[&'a Transaction],
        segs: &[Segment],
    ) -> Result<Vec<Prepared<'a>>, ApplyError> {
        let mut out: Vec<Prepared<'a>> = Vec::with_capacity(segs.len());
        for seg in segs {
            let txns: Vec<&'a Transaction> = run[seg.txns.clone()].to_vec();
            let Some(last) = txns.last().copied() else {
                continue;
            };
            let (slots, mut changes) = self.collect_run(&txns).await?;
            let total = changes.len();
            changes.retain(|c| slots[c.slot as usize].active);
            let skipped = (total - changes.len()) as u64;
            let applied = changes.len() as u64;
            let plans: Vec<_> = slots.iter().map(|s| s.plan.clone()).collect();
            let stmts = batch::plan(&plans, changes).map_err(|e| {
                let txn = txns.get(e.txn as usize).copied().unwrap_or(last);
                self.invalid_change(&slots, e.slot, txn, e.reason)
            })?;
            let prev = out.last().map(|p| &p.state).or(self.state.as_ref());
            // Each segment records the offset of its own last transaction: one committing
            // alone must not let a Kafka consumer resume past the later segments.
            let state = next_state(prev, &txns, last, applied, self.offset_through(last));
            out.push(Prepared {
                txns,
                slots,
                stmts,
                state,
                applied,
                skipped,
            });
        }
        Ok(out)
    }

    /// Executes `segs` on the lanes and commits them in order (see the module docs).
    async fn apply_parallel(
        &mut self,
        run: &[&Transaction],
        segs: &[Segment],
    ) -> Result<(), ApplyError> {
        let prepared = self.prepare(run, segs).await?;
        let sqls: Vec<Vec<SlotSql<'_>>> = prepared
            .iter()
            .map(|p| {
                p.slots
                    .iter()
                    .map(|s| SlotSql {
                        columns: &s.schema.columns,
                        key: &s.plan.key,
                        sql: TableSql::new(
                            &s.target.0,
                            &s.target.1,
                            &s.schema.columns,
                            &s.plan.key,
                        ),
                    })
                    .collect()
            })
            .collect();
        let k = self.opts.apply_lanes;
        let started_at = Instant::now();
        let mut busy = vec![Duration::ZERO; k + 1];
        let mut free: Vec<usize> = (1..=k).rev().collect();
        let mut pending = FuturesUnordered::new();
        let protocol = self.opts.protocol;
        // Executed segments waiting for their turn to commit: segment -> (lane, connection).
        let mut ready: BTreeMap<usize, (usize, Conn)> = BTreeMap::new();
        let (mut next_start, mut next_commit) = (0usize, 0usize);
        let mut failure: Option<(usize, Mark, Exec)> = None;
        while next_commit < prepared.len() {
            while next_start < prepared.len()
                && segs[next_start].after.is_none_or(|j| j < next_commit)
            {
                let Some(lane) = free.pop() else { break };
                let conn = match self.lane_conn(lane).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.abort_lanes(&mut pending, ready).await;
                        return Err(e);
                    }
                };
                let p = &prepared[next_start];
                let sql = &sqls[next_start];
                let seg = next_start;
                pending.push(async move {
                    let t = Instant::now();
                    let mut conn = conn;
                    let mut q = QueryBuf::new(protocol);
                    let mut started = false;
                    let mut r = send_rows(&mut conn, &mut q, &p.stmts, sql, &mut started).await;
                    if r.is_ok() && !q.sql.is_empty() {
                        r = send(&mut conn, &mut q).await;
                    }
                    (seg, lane, conn, q, r, t.elapsed())
                });
                next_start += 1;
            }
            if let Some((lane, mut conn)) = ready.remove(&next_commit) {
                let t = Instant::now();
                let p = &prepared[next_commit];
                let r = self.commit_lane(&mut conn, &p.state).await;
                busy[lane] += t.elapsed();
                self.lanes[lane - 1] = Some(conn);
                free.push(lane);
                if let Err((mark, e)) = r {
                    failure = Some((next_commit, mark, e));
                    break;
                }
                self.paused.append(&mut self.pending_pauses);
                self.state = Some(p.state.clone());
                self.meters.rows.increment(p.applied);
                self.meters.txns.increment(p.txns.len() as u64);
                self.meters.skipped.increment(p.skipped);
                next_commit += 1;
                continue;
            }
            let done: Option<LaneDone> = pending.next().await;
            let Some((seg, lane, conn, _q, r, took)) = done else {
                // Nothing in flight and nothing ready: cannot happen (segment `next_commit`
                // has all its predecessors committed, so it was started).
                return Err(self.state_error("apply lanes stalled (dispatcher bug)"));
            };
            busy[lane] += took;
            match r {
                Ok(()) => {
                    ready.insert(seg, (lane, conn));
                }
                Err((mark, e)) => {
                    ready.insert(seg, (lane, conn));
                    failure = Some((seg, mark, e));
                    break;
                }
            }
        }
        self.record_busy(&busy, started_at.elapsed());
        let Some((seg, mark, e)) = failure else {
            return Ok(());
        };
        self.abort_lanes(&mut pending, ready).await;
        let lock_wait = matches!(&e, Exec::Sql(s) if super::error::server_code(s).is_some_and(|c| LOCK_CODES.contains(&c)));
        if lock_wait {
            // The safety net: whatever is not committed runs serially on the main connection.
            // Only this group: the steps after it are still to come in `flush_rows`.
            let from = segs[next_commit].txns.start;
            let to = segs.last().map_or(from, |s| s.txns.end);
            let rest = &run[from..to];
            tracing::warn!(sync = %self.opts.sync, target = %self.opts.target, transactions = rest.len(), "lock wait between apply lanes: re-running the group serially");
            self.count_barrier(BARRIER_LOCK_WAIT, rest.len() as u64);
            return self.flush(rest).await;
        }
        let p = &prepared[seg];
        Err(self.exec_error(&p.txns, &p.slots, mark, e))
    }

    /// Sends the commit step of a lane: pauses decided so far, the loop marker, the progress.
    async fn commit_lane(
        &self,
        conn: &mut Conn,
        new_state: &AppliedState,
    ) -> Result<(), (Mark, Exec)> {
        let position = new_state.position.to_string();
        if position.len() > state::MAX_POSITION_LEN {
            let _ = exec::run_text(conn, b"ROLLBACK").await;
            return Err((
                Mark::Control("recording the progress"),
                Exec::State(format!(
                    "position {position} is longer than {} characters",
                    state::MAX_POSITION_LEN
                )),
            ));
        }
        let mut q = QueryBuf::new(self.opts.protocol);
        // Lanes run without conflict detection (refused by the config): no conflict rows.
        self.push_epilogue(&mut q, None, &position, new_state);
        let r = send(conn, &mut q).await;
        if r.is_err() {
            let _ = exec::run_text(conn, b"ROLLBACK").await;
        }
        r
    }

    /// Rolls back every uncommitted lane: the ready ones first (their locks may be what an
    /// in-flight one waits for), then each in-flight one once it returns. A lane whose
    /// rollback fails is dropped (the server rolls back when the connection closes).
    async fn abort_lanes<F>(
        &mut self,
        pending: &mut FuturesUnordered<F>,
        ready: BTreeMap<usize, (usize, Conn)>,
    ) where
        F: std::future::Future<Output = LaneDone>,
    {
        for (_, (lane, mut conn)) in ready {
            if exec::run_text(&mut conn, b"ROLLBACK").await.is_ok() {
                self.lanes[lane - 1] = Some(conn);
            }
        }
        while let Some((_, lane, mut conn, _, _, _)) = pending.next().await {
            if exec::run_text(&mut conn, b"ROLLBACK").await.is_ok() {
                self.lanes[lane - 1] = Some(conn);
            }
        }
    }

    fn record_busy(&self, busy: &[Duration], wall: Duration) {
        let wall = wall.as_secs_f64();
        if wall <= 0.0 {
            return;
        }
        for (lane, b) in busy.iter().enumerate().skip(1) {
            metrics::gauge!(
                super::APPLY_LANE_BUSY_RATIO,
                "sync" => self.opts.sync.clone(),
                "target" => self.opts.target.clone(),
                "lane" => lane.to_string()
            )
            .set((b.as_secs_f64() / wall).min(1.0));
        }
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
