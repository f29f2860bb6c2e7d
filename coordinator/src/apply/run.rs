//! The apply loop: splitting a batch into runs of row transactions and DDL, planning each run,
//! and committing it with its progress row.
//!
//! Parts (`Applier::apply_part`): a batch may end with a part of a source transaction whose
//! rest follows. Its run is sent in a target transaction that stays open ([`Open`]), without
//! the progress row; the following batches must continue that source transaction (else the
//! open transaction is rolled back and the batch fails), and the run holding its end commits
//! everything with the progress row of the end. Invariant: the stored position is always the
//! end of a whole source transaction, so a crash at any point rolls the open target
//! transaction back and the reader, resuming from the stored position, sends the whole
//! source transaction again. Nothing that commits implicitly runs on the main connection
//! while a transaction is open (missing target tables are created on a connection aside).

use std::collections::HashMap;

use fleetsync_proto::{Gtid, KeyKind, Position, TableSchema, Transaction};

use super::batch::{self, Change, SlotPlan};
use super::exec::{self, Mark, QueryBuf, SlotSql};
use super::sql::{self, TableSql};
use super::state;
use super::target::TargetTable;
use super::{AppliedState, Applier, ApplyError, SnapshotState};

/// One table layout within a run.
pub(super) struct Slot<'a> {
    pub schema: &'a TableSchema,
    pub plan: SlotPlan,
    /// False when the table is paused: its changes are skipped.
    pub active: bool,
    pub target: (String, String),
}

/// Where the applied stream stands: the last accepted position and snapshot state.
#[derive(Clone)]
struct Frontier {
    position: Position,
    snapshot: SnapshotState,
}

impl Frontier {
    /// Whether `txn` was applied already (at or before the frontier), which snapshot chunks
    /// never are while the snapshot is running.
    fn covers(&self, txn: &Transaction) -> bool {
        txn.position <= self.position && !(txn.snapshot && self.snapshot == SnapshotState::Running)
    }

    fn advance(this: Option<&Self>, txn: &Transaction) -> Self {
        let snapshot = if txn.snapshot_done {
            SnapshotState::Done
        } else if txn.snapshot {
            SnapshotState::Running
        } else {
            this.map_or(SnapshotState::Done, |f| f.snapshot)
        };
        Frontier {
            position: txn.position.clone(),
            snapshot,
        }
    }
}

/// A target transaction left open by `Applier::apply_part`.
pub(super) struct Open {
    /// The source transaction whose part ended it.
    gtid: Option<Gtid>,
    txn_id: u64,
    /// The progress as it will be once the open transaction commits, up to its last part
    /// (whose position is between the previous source transaction's end and this one's).
    state: AppliedState,
    /// Row changes of paused tables skipped in it so far.
    skipped: u64,
}

impl Applier {
    /// The end of every applied transaction, in the transaction of its rows: the tables paused
    /// so far, the conflicts recorded, the loop marker, the progress row, then COMMIT.
    pub(super) fn push_epilogue(
        &self,
        q: &mut QueryBuf,
        resolved: Option<&super::detect::Resolved>,
        position: &str,
        new_state: &AppliedState,
    ) {
        for ((schema, table), reason) in &self.pending_pauses {
            q.begin(Mark::Control("recording a paused table"));
            state::push_pause(&mut q.sql, &self.opts.sync, schema, table, reason);
        }
        for stmt in resolved.iter().flat_map(|r| &r.statements) {
            q.push(Mark::Control("recording a conflict"), stmt);
        }
        if self.marker {
            q.begin(Mark::Control("writing the loop marker"));
            state::push_loop_marker(&mut q.sql, &self.opts.sync, &self.opts.source);
        }
        q.begin(Mark::Control("recording the progress"));
        state::push_state_upsert(
            &mut q.sql,
            &self.opts.sync,
            &self.opts.source,
            position,
            new_state,
        );
        q.push(Mark::Control("committing"), b"COMMIT");
    }

    /// Applies `batch`; `ends_open`: its last transaction is a part whose rest follows (see
    /// the module docs).
    pub(super) async fn apply_batch(
        &mut self,
        batch: &[Transaction],
        ends_open: bool,
    ) -> Result<AppliedState, ApplyError> {
        if ends_open && (self.opts.apply_lanes > 1 || !self.opts.conflicts.is_none()) {
            self.rollback_open().await;
            return Err(self.state_error(
                "a part of a source transaction reached an applier with lanes or conflict detection (they need whole transactions)",
            ));
        }
        if self.open.is_none() {
            self.ensure_session().await?;
        }
        self.batch_base = batch.as_ptr() as usize;
        if self.batch_offsets.len() != batch.len() {
            // Offsets not given for this batch: keep the stored one.
            self.batch_offsets.clear();
        }
        let mut frontier = match &self.open {
            Some(o) => Some(Frontier {
                position: o.state.position.clone(),
                snapshot: o.state.snapshot,
            }),
            None => self.state.as_ref().map(|s| Frontier {
                position: s.position.clone(),
                snapshot: s.snapshot,
            }),
        };
        let mut run: Vec<&Transaction> = Vec::new();
        let mut continued = self.open.is_none();
        for txn in batch {
            if frontier.as_ref().is_some_and(|f| f.covers(txn)) {
                if self.open.is_some() {
                    let reason = format!("source transaction at {} was sent again while a later part of it is applied (an open target transaction): rolled back", txn.position);
                    self.rollback_open().await;
                    return Err(self.state_error(reason));
                }
                tracing::debug!(sync = %self.opts.sync, target = %self.opts.target, position = %txn.position, "skipping applied transaction");
                continue;
            }
            if !continued {
                continued = true;
                if let Some(o) = &self.open {
                    if o.gtid != txn.gtid || o.txn_id != txn.txn_id {
                        let reason = format!("source transaction {} ended without its last part; got {} at {} instead: the open target transaction was rolled back", o.txn_id, txn.txn_id, txn.position);
                        self.rollback_open().await;
                        return Err(self.state_error(reason));
                    }
                }
            }
            frontier = Some(Frontier::advance(frontier.as_ref(), txn));
            if txn.ddl.is_some() {
                self.flush_any(&run).await?;
                run.clear();
                self.count_barrier(super::lanes::BARRIER_DDL, 1);
                self.apply_ddl(txn).await?;
                self.flush(&[txn]).await?;
            } else {
                run.push(txn);
            }
        }
        if ends_open {
            self.flush_to(&run, true).await?;
        } else {
            self.flush_any(&run).await?;
        }
        match (&self.open, &self.state) {
            (_, Some(s)) => Ok(s.clone()),
            (Some(o), None) => Ok(o.state.clone()),
            (None, None) => {
                Err(self.state_error("no progress recorded yet and the batch is empty"))
            }
        }
    }

    /// Flushes `run` serially when a target transaction is open (it must end there), else
    /// as lanes allow.
    async fn flush_any(&mut self, run: &[&Transaction]) -> Result<(), ApplyError> {
        if self.open.is_some() {
            self.flush(run).await
        } else {
            self.flush_rows(run).await
        }
    }

    /// Rolls back the open target transaction, if any (a broken connection rolls it back
    /// too: the server does when the connection closes).
    pub(super) async fn rollback_open(&mut self) {
        if self.open.take().is_some() {
            if let Err(e) = exec::run_text(&mut self.conn, b"ROLLBACK").await {
                tracing::debug!(target = %self.opts.target, error = %e, "rollback failed");
            }
        }
    }

    /// [`Applier::ensure_table`] while a target transaction is open: a missing table is
    /// created on a connection aside (a CREATE on the main one would commit the open
    /// transaction). The lookup itself is read-only.
    async fn ensure_table_aside(
        &mut self,
        schema: &TableSchema,
    ) -> Result<Option<TargetTable>, ApplyError> {
        let key = (schema.schema.clone(), schema.table.clone());
        if let Some(Some(t)) = self.tables.get(&key) {
            return Ok(Some(t.clone()));
        }
        let aside = mysql_async::Conn::new(self.target_opts.clone())
            .await
            .map_err(|e| ApplyError::Connect {
                target: self.opts.target.clone(),
                source: Box::new(e),
            })?;
        let main = std::mem::replace(&mut self.conn, aside);
        self.session_ok = false;
        let result = match self.ensure_session().await {
            Ok(()) => self.ensure_table(schema).await,
            Err(e) => Err(e),
        };
        let aside = std::mem::replace(&mut self.conn, main);
        // The main connection's session was not touched (it was set up before the
        // transaction opened).
        self.session_ok = true;
        let _ = aside.disconnect().await;
        result
    }

    pub(super) fn state_error(&self, reason: impl Into<String>) -> ApplyError {
        ApplyError::State {
            target: self.opts.target.clone(),
            sync: self.opts.sync.clone(),
            source_name: self.opts.source.clone(),
            reason: reason.into(),
        }
    }

    /// Applies `run` (transactions without DDL, or one DDL transaction whose statement already
    /// ran) in one target transaction ending with its progress row.
    pub(super) async fn flush(&mut self, run: &[&Transaction]) -> Result<(), ApplyError> {
        self.flush_to(run, false).await
    }

    /// [`Applier::flush`]; `keep_open`: `run` ends with a part, the target transaction stays
    /// open (no progress row, no COMMIT; see the module docs). A run after an open
    /// transaction continues it.
    async fn flush_to(&mut self, run: &[&Transaction], keep_open: bool) -> Result<(), ApplyError> {
        let result = self.flush_inner(run, keep_open).await;
        if result.is_err() {
            // Whatever failed before the rows were sent (a lookup, a plan), nothing of an open
            // transaction may stay for a later batch to commit.
            self.rollback_open().await;
        }
        result
    }

    async fn flush_inner(
        &mut self,
        run: &[&Transaction],
        keep_open: bool,
    ) -> Result<(), ApplyError> {
        let Some(last) = run.last() else {
            return Ok(());
        };
        let was_open = self.open.is_some();
        if (was_open || keep_open) && !self.opts.conflicts.is_none() {
            self.rollback_open().await;
            return Err(self.state_error("parts of source transactions with conflict detection"));
        }
        let (slots, mut changes) = self.collect_run(run).await?;
        let total = changes.len();
        changes.retain(|c| slots[c.slot as usize].active);
        let skipped = total - changes.len();
        // Conflict detection opens the target transaction itself (reads FOR UPDATE).
        let resolved = if self.opts.conflicts.is_none() {
            None
        } else {
            self.resolve_conflicts(run, &slots, &mut changes).await?
        };
        let applied = changes.len() as u64;
        let plans: Vec<SlotPlan> = slots.iter().map(|s| s.plan.clone()).collect();
        let planned = batch::plan(&plans, changes);
        if planned.is_err() && resolved.is_some() {
            if let Err(e) = exec::run_text(&mut self.conn, b"ROLLBACK").await {
                tracing::debug!(target = %self.opts.target, error = %e, "rollback failed");
            }
        }
        let stmts = planned.map_err(|e| {
            let txn = run.get(e.txn as usize).copied().unwrap_or(last);
            self.invalid_change(&slots, e.slot, txn, e.reason)
        })?;
        let prev = match &self.open {
            Some(o) => Some(&o.state),
            None => self.state.as_ref(),
        };
        let mut new_state = next_state(prev, run, last, applied, self.offset_through(last));
        if keep_open {
            // The part is not a source transaction: its end (a later run) counts it.
            new_state.txns = new_state.txns.saturating_sub(1);
        }
        let open = self.open.take();

        let sqls: Vec<SlotSql<'_>> = slots
            .iter()
            .map(|s| SlotSql {
                columns: &s.schema.columns,
                key: &s.plan.key,
                sql: TableSql::new(&s.target.0, &s.target.1, &s.schema.columns, &s.plan.key),
            })
            .collect();
        let mut q = std::mem::take(&mut self.q);
        q.clear();
        let result = self
            .execute(
                &mut q,
                &stmts,
                &sqls,
                &new_state,
                resolved.as_ref(),
                was_open,
                keep_open,
            )
            .await;
        q.clear();
        self.q = q;
        result.map_err(|(mark, e)| self.exec_error(run, &slots, mark, e))?;
        let skipped = skipped as u64 + open.map_or(0, |o| o.skipped);
        if keep_open {
            // Sent, not committed.
            self.open = Some(Open {
                gtid: last.gtid,
                txn_id: last.txn_id,
                state: new_state,
                skipped,
            });
            return Ok(());
        }

        // Committed.
        let (rows_before, txns_before) = self.state.as_ref().map_or((0, 0), |s| (s.rows, s.txns));
        self.paused.append(&mut self.pending_pauses);
        self.meters
            .rows
            .increment(new_state.rows.saturating_sub(rows_before));
        self.meters
            .txns
            .increment(new_state.txns.saturating_sub(txns_before));
        self.meters.skipped.increment(skipped);
        self.state = Some(new_state);
        if let Some(r) = resolved {
            for (strategy, outcome) in r.decisions {
                metrics::counter!(
                    super::CONFLICTS_TOTAL,
                    "sync" => self.opts.sync.clone(),
                    "target" => self.opts.target.clone(),
                    "strategy" => strategy.as_str(),
                    "outcome" => outcome.as_str()
                )
                .increment(1);
            }
        }
        Ok(())
    }

    /// The slots (table layouts) of `run` and its changes in order, looking up (and creating
    /// or pausing) target tables on first sight.
    pub(super) async fn collect_run<'a>(
        &mut self,
        run: &[&'a Transaction],
    ) -> Result<(Vec<Slot<'a>>, Vec<Change<'a>>), ApplyError> {
        let mut slots: Vec<Slot<'a>> = Vec::new();
        let mut by_name: HashMap<(&'a str, &'a str), Vec<u32>> = HashMap::new();
        let mut changes: Vec<Change<'a>> =
            Vec::with_capacity(run.iter().map(|t| t.changes.len()).sum());
        for (ti, &txn) in run.iter().enumerate() {
            let mut local: Vec<Option<u32>> = vec![None; txn.tables.len()];
            for c in &txn.changes {
                let i = c.table as usize;
                let slot = match (local.get(i), txn.tables.get(i)) {
                    (Some(Some(s)), _) => *s,
                    (Some(None), Some(schema)) => {
                        let s = self.slot_for(schema, &mut slots, &mut by_name).await?;
                        local[i] = Some(s);
                        s
                    }
                    _ => {
                        return Err(ApplyError::InvalidChange {
                            target: self.opts.target.clone(),
                            table: format!("#{i}"),
                            position: txn.position.to_string(),
                            reason: format!("change refers to table {i} of {}", txn.tables.len()),
                        })
                    }
                };
                changes.push(Change {
                    slot,
                    txn: ti as u32,
                    op: c.op,
                    before: c.before.as_deref(),
                    after: c.after.as_deref(),
                });
            }
        }
        // A table seen with two layouts in one run is applied in order, never compacted.
        for ids in by_name.values().filter(|ids| ids.len() > 1) {
            for &id in ids {
                slots[id as usize].plan.compact = false;
            }
        }
        Ok((slots, changes))
    }
}

/// The progress after `run` (ending with `last`) from `prev`, of which `applied` row changes
/// were applied; `offset`: the bus offset to record (`None`: keep the previous one).
pub(super) fn next_state(
    prev: Option<&AppliedState>,
    run: &[&Transaction],
    last: &Transaction,
    applied: u64,
    offset: Option<i64>,
) -> AppliedState {
    {
        let mut frontier = prev.map(|s| Frontier {
            position: s.position.clone(),
            snapshot: s.snapshot,
        });
        for txn in run {
            frontier = Some(Frontier::advance(frontier.as_ref(), txn));
        }
        AppliedState {
            position: last.position.clone(),
            snapshot: frontier.map_or(SnapshotState::Done, |f| f.snapshot),
            source_commit_ts_ms: last.commit_ts_ms,
            rows: prev.map_or(0, |s| s.rows) + applied,
            txns: prev.map_or(0, |s| s.txns) + run.len() as u64,
            bus_offset: offset.or(prev.and_then(|s| s.bus_offset)),
        }
    }
}

impl Applier {
    /// The error for a failure of [`Applier::execute`] on `run`, naming the table and the
    /// source positions of the failing statement.
    pub(super) fn exec_error(
        &self,
        run: &[&Transaction],
        slots: &[Slot<'_>],
        mark: Mark,
        e: Exec,
    ) -> ApplyError {
        let last_pos = run
            .last()
            .map(|t| t.position.to_string())
            .unwrap_or_default();
        let pos = |i: u32| {
            run.get(i as usize)
                .map(|t| t.position.to_string())
                .unwrap_or_default()
        };
        match e {
            Exec::Value(txn, reason) => {
                let slot = match mark {
                    Mark::Rows { slot, .. } => slot,
                    Mark::Control(_) => u32::MAX,
                };
                match run.get(txn as usize).or(run.last()) {
                    Some(t) => self.invalid_change(slots, slot, t, reason),
                    None => self.state_error(reason),
                }
            }
            Exec::Sql(source) => {
                let context = match mark {
                    Mark::Rows { slot, first, last } => {
                        let table = slots
                            .get(slot as usize)
                            .map(|s| sql::table_name(&s.target.0, &s.target.1))
                            .unwrap_or_default();
                        format!(
                            "applying changes to {table} from source transactions {}..={}",
                            pos(first),
                            pos(last)
                        )
                    }
                    Mark::Control(what) => format!("{what} (source position {last_pos})"),
                };
                self.sql_error(context, source)
            }
            Exec::State(reason) => self.state_error(reason),
        }
    }

    /// Sends `stmts` and the bookkeeping in one transaction. On failure the transaction is
    /// rolled back and the mark of the failing statement is returned. `open`: a target
    /// transaction is open already (continue it); `keep_open`: send the rows only, no
    /// bookkeeping and no COMMIT.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
        &mut self,
        q: &mut QueryBuf,
        stmts: &[batch::Stmt<'_>],
        sqls: &[SlotSql<'_>],
        new_state: &AppliedState,
        resolved: Option<&super::detect::Resolved>,
        open: bool,
        keep_open: bool,
    ) -> Result<(), (Mark, Exec)> {
        let position = new_state.position.to_string();
        if position.len() > state::MAX_POSITION_LEN {
            let reason = format!(
                "position {position} is longer than {} characters",
                state::MAX_POSITION_LEN
            );
            if resolved.is_some() || open {
                let _ = exec::run_text(&mut self.conn, b"ROLLBACK").await;
            }
            return Err((Mark::Control("recording the progress"), Exec::State(reason)));
        }
        // With conflict detection (or a part before) the transaction is already open.
        let mut started = resolved.is_some() || open;
        let result: Result<(), (Mark, Exec)> = async {
            send_rows(&mut self.conn, q, stmts, sqls, &mut started).await?;
            if keep_open {
                started = true;
                return if q.marks.is_empty() {
                    Ok(())
                } else {
                    send(&mut self.conn, q).await
                };
            }
            self.push_epilogue(q, resolved, &position, new_state);
            started = true;
            send(&mut self.conn, q).await
        }
        .await;
        if result.is_err() && started {
            // Nothing of the batch stays (InnoDB). A broken connection fails this too: the
            // server rolls back when the connection closes.
            if let Err(e) = exec::run_text(&mut self.conn, b"ROLLBACK").await {
                tracing::debug!(target = %self.opts.target, error = %e, "rollback failed");
            }
        }
        result
    }

    async fn slot_for<'a>(
        &mut self,
        schema: &'a TableSchema,
        slots: &mut Vec<Slot<'a>>,
        by_name: &mut HashMap<(&'a str, &'a str), Vec<u32>>,
    ) -> Result<u32, ApplyError> {
        let ids = by_name
            .entry((schema.schema.as_str(), schema.table.as_str()))
            .or_default();
        if let Some(&id) = ids.iter().find(|&&id| {
            let s = slots[id as usize].schema;
            s.columns == schema.columns && s.key == schema.key && s.key_kind == schema.key_kind
        }) {
            return Ok(id);
        }
        let id = slots.len() as u32;
        ids.push(id);
        let found = if self.open.is_some() {
            self.ensure_table_aside(schema).await?
        } else {
            self.ensure_table(schema).await?
        };
        let keyed = schema.key_kind != KeyKind::None && !schema.key.is_empty();
        if !keyed {
            self.slow
                .insert(format!("{}.{}", schema.schema, schema.table));
        }
        let plan = SlotPlan {
            width: schema.columns.len(),
            key: if keyed {
                schema.key.iter().map(|&k| usize::from(k)).collect()
            } else {
                Vec::new()
            },
            compact: keyed
                && found
                    .as_ref()
                    .is_some_and(|t| t.key_is_only_unique_index(schema)),
        };
        let target = self.opts.map.target(&schema.schema, &schema.table);
        slots.push(Slot {
            schema,
            plan,
            active: found.is_some(),
            target,
        });
        Ok(id)
    }

    pub(super) fn invalid_change(
        &self,
        slots: &[Slot<'_>],
        slot: u32,
        txn: &Transaction,
        reason: String,
    ) -> ApplyError {
        let table = slots
            .get(slot as usize)
            .map(|s| sql::table_name(&s.schema.schema, &s.schema.table))
            .unwrap_or_else(|| "(unknown table)".into());
        ApplyError::InvalidChange {
            target: self.opts.target.clone(),
            table,
            position: txn.position.to_string(),
            reason,
        }
    }
}

/// Starts a transaction (unless `started`) and sends the statements of `stmts`, in chunks of
/// about [`exec::FLUSH_BYTES`]; the last chunk stays in `q` for the caller to send with its
/// bookkeeping. `started` becomes true once anything was sent.
pub(super) async fn send_rows(
    conn: &mut mysql_async::Conn,
    q: &mut QueryBuf,
    stmts: &[batch::Stmt<'_>],
    sqls: &[SlotSql<'_>],
    started: &mut bool,
) -> Result<(), (Mark, Exec)> {
    if !*started {
        q.push(
            Mark::Control("starting a transaction"),
            b"START TRANSACTION",
        );
    }
    for stmt in stmts {
        let Some(slot) = sqls.get(stmt.slot as usize) else {
            continue;
        };
        let mut from = 0;
        while from < stmt.rows.len() {
            from = exec::render_part(q, stmt, from, slot).map_err(|(txn, e)| {
                let mark = q
                    .marks
                    .last()
                    .copied()
                    .unwrap_or(Mark::Control("rendering"));
                (mark, Exec::Value(txn, e.0))
            })?;
            if q.sql.len() >= exec::FLUSH_BYTES {
                *started = true;
                send(conn, q).await?;
            }
        }
    }
    Ok(())
}

/// A failure inside [`Applier::execute`].
pub(super) enum Exec {
    /// A value could not be rendered: transaction index in the run, reason.
    Value(u32, String),
    Sql(mysql_async::Error),
    State(String),
}

/// Sends the query in `q` and clears it.
pub(super) async fn send(
    conn: &mut mysql_async::Conn,
    q: &mut QueryBuf,
) -> Result<(), (Mark, Exec)> {
    let result = exec::run(conn, q).await.map_err(|(i, e)| {
        let mark = q
            .marks
            .get(i)
            .copied()
            .unwrap_or(Mark::Control("running a query"));
        (mark, Exec::Sql(e))
    });
    q.clear();
    result
}
