//! Conflict decisions in a bidirectional group: by rank (see `rank`), with tombstones.
//!
//! For every key a batch touches (snapshot rows included), the incoming write's rank is read
//! from its image's version columns (a delete's is the successor of its before image's, made
//! by the origin: what the origin's delete trigger wrote into its tombstone). The local rank
//! is the target row's (read `FOR UPDATE`) or, when there is no row, the target's tombstone's.
//! The incoming run is applied iff it ranks higher; in the same target transaction a winning
//! delete writes its tombstone and a winning insert/update removes the key's tombstone. An
//! equal rank is the same write delivered again: skipped. A key whose target row was not the
//! one the incoming change replaced (before-image mismatch, see `detect`) is a conflict:
//! counted and logged in `fleetsync.conflict_log`; under `manual` a losing incoming version is
//! also parked in `fleetsync.conflicts` (the rank already picked the same winner everywhere).
//!
//! Concurrency: several appliers (one per other member) and the member's own sessions write
//! the same keys. The decision and the write must not interleave with another writer's:
//! the transaction runs at REPEATABLE READ so that `FOR UPDATE` on a key with no row (or no
//! tombstone) locks its gap too; the triggers read the tombstone `FOR UPDATE` as well. Two
//! writers that both found a key absent then deadlock instead of both writing, and the
//! retried one sees the other's write.

use fleetsync_config::{ConflictStrategy, TablePolicy};
use fleetsync_proto::codec::row_to_json;
use fleetsync_proto::{Transaction, Value};
use mysql_async::prelude::Queryable;
use mysql_async::Row;

use super::batch::Change;
use super::conflict::Outcome;
use super::detect::{is_conflict, key_json, key_runs, KeyRun, Record, Resolved, KEYS_PER_QUERY};
use super::rank::{format_decimal, parse_decimal, wins, Rank};
use super::run::Slot;
use super::sql::{self, TableSql};
use super::{exec, Applier, ApplyError};
use crate::versions::{tombstone_table, ORIGIN_COLUMN, RANK_COLUMN, VERSION_COLUMN};

/// Positions of the version columns in a table's images.
#[derive(Clone, Copy)]
struct RankCols {
    rank: usize,
    version: usize,
    origin: usize,
}

impl RankCols {
    fn of(img: &[Value], c: RankCols) -> Result<Rank, String> {
        let num = |i: usize, what: &str| -> Result<u64, String> {
            match img.get(i) {
                None | Some(Value::Null) => Ok(0),
                Some(Value::UInt(n)) => Ok(*n),
                Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| format!("{what} {n} < 0")),
                Some(v) => Err(format!("{what} is not an integer: {v:?}")),
            }
        };
        let primary = match img.get(c.rank) {
            None | Some(Value::Null) => None,
            Some(Value::Decimal(s)) => {
                Some(parse_decimal(s).ok_or_else(|| format!("{RANK_COLUMN} {s:?} is not a rank"))?)
            }
            Some(v) => return Err(format!("{RANK_COLUMN} is not a DECIMAL: {v:?}")),
        };
        Ok(Rank {
            primary,
            version: num(c.version, VERSION_COLUMN)?,
            origin: u32::try_from(num(c.origin, ORIGIN_COLUMN)?)
                .map_err(|_| format!("{ORIGIN_COLUMN} out of range"))?,
        })
    }
}

/// The rank of a write without versions (made before its member's install): that of a row
/// whose version columns are NULL, the lowest of all.
const UNRANKED: Rank = Rank {
    primary: None,
    version: 0,
    origin: 0,
};

impl Applier {
    /// Decides every key of slot `si` by rank; see the module docs. Starts the target
    /// transaction if needed (`started`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn resolve_group_slot<'a>(
        &mut self,
        run: &[&'a Transaction],
        si: usize,
        slot: &Slot<'a>,
        policy: &TablePolicy,
        changes: &[Change<'a>],
        drop: &mut [bool],
        resolved: &mut Resolved,
        started: &mut bool,
    ) -> Result<(), ApplyError> {
        let columns = &slot.schema.columns;
        let key = &slot.plan.key;
        let table = sql::table_name(&slot.schema.schema, &slot.schema.table);
        let pos = |name: &str| {
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        };
        // Records without the version columns: writes made on their origin before its
        // install (a table created while running, see `run_ddl`). They are unranked.
        let rc = match (pos(RANK_COLUMN), pos(VERSION_COLUMN), pos(ORIGIN_COLUMN)) {
            (Some(rank), Some(version), Some(origin)) => Some(RankCols {
                rank,
                version,
                origin,
            }),
            _ => None,
        };
        let runs = key_runs(run, si as u32, changes, key, columns.len(), true);
        if runs.is_empty() {
            return Ok(());
        }
        if !*started {
            // REPEATABLE READ for this transaction: the locking reads below then also lock
            // the gap of a key that has neither a row nor a tombstone, so two appliers (or an
            // applier and a local insert) cannot both decide on "absent" and write in turn.
            exec::run_text(
                &mut self.conn,
                b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION",
            )
            .await
            .map_err(|e| self.sql_error("starting a transaction", e))?;
            *started = true;
        }
        let tsql = TableSql::new(&slot.target.0, &slot.target.1, columns, key);
        let mut tomb = b"`fleetsync`.".to_vec();
        sql::push_ident(&mut tomb, &tombstone_table(&slot.target.0, &slot.target.1));
        let kc = sql::key_columns(columns, key);
        let mut target = Vec::new();
        sql::push_ident(&mut target, &slot.target.0);
        target.push(b'.');
        sql::push_ident(&mut target, &slot.target.1);
        let source_table = (slot.schema.schema.as_str(), slot.schema.table.as_str());
        for chunk in runs.chunks(KEYS_PER_QUERY) {
            let locals = match self.read_locals(&tsql, columns, key, chunk).await {
                Ok(l) => l,
                Err(e) => return Err(self.install_on_miss(source_table, e, rc.is_some()).await),
            };
            // Unranked records: the target rows' ranks are read apart (not in their images).
            let row_ranks = match rc {
                Some(_) => Vec::new(),
                None => match self.read_ranks(&target, &kc, key, chunk).await {
                    Ok(r) => r,
                    Err(e) => return Err(self.install_on_miss(source_table, e, false).await),
                },
            };
            let tombs = match self.read_ranks(&tomb, &kc, key, chunk).await {
                Ok(t) => t,
                Err(e) => return Err(self.install_on_miss(source_table, e, rc.is_some()).await),
            };
            for (i, r) in chunk.iter().enumerate() {
                let txn = run.get(r.txn as usize).copied().unwrap_or(run[0]);
                let bad = |e: String| self.state_error(format!("{table}: {e}"));
                if r.fin.is_none() && r.gone.is_none() {
                    continue;
                }
                let incoming = match (rc, r.fin, r.gone) {
                    (None, _, _) => UNRANKED,
                    (Some(rc), Some(img), _) => RankCols::of(img, rc).map_err(bad)?,
                    (Some(rc), None, Some(before)) => {
                        let pred = RankCols::of(before, rc).map_err(bad)?;
                        Rank::successor(Some(&pred), None, txn.origin.server_id)
                    }
                    (Some(_), None, None) => continue,
                };
                let local = locals.get(i).and_then(Option::as_ref);
                let local_rank = match (local, rc) {
                    (Some(l), Some(rc)) => Some(RankCols::of(&l.row, rc).map_err(bad)?),
                    (Some(_), None) => row_ranks.get(i).copied().flatten(),
                    (None, _) => tombs.get(i).copied().flatten(),
                };
                if rc.is_some() && local_rank == Some(incoming) {
                    // The same write again (a redelivery, or a snapshot of what is here).
                    for &ci in &r.changes {
                        drop[ci] = true;
                    }
                    continue;
                }
                // An unranked write replaces only an unranked record (as the writes of a
                // table without detection, in the order they come): every ranked write,
                // made on a member after its install, wins over it everywhere.
                let won = match rc {
                    Some(_) => wins(&incoming, local_rank.as_ref()),
                    None => local_rank.is_none_or(|l| l <= UNRANKED),
                };
                if won {
                    resolved
                        .statements
                        .push(self.tombstone_sql(&tomb, &kc, columns, key, r, &incoming)?);
                } else {
                    for &ci in &r.changes {
                        drop[ci] = true;
                    }
                }
                if txn.snapshot || !is_conflict(r, local) {
                    continue;
                }
                let outcome = match (won, policy.strategy) {
                    (true, _) => Outcome::IncomingWon,
                    (false, ConflictStrategy::Manual) => Outcome::Parked,
                    (false, _) => Outcome::LocalKept,
                };
                resolved.decisions.push((policy.strategy, outcome));
                let record = Record {
                    sync: &self.opts.sync,
                    schema: &slot.schema.schema,
                    table: &slot.schema.table,
                    key: key_json(columns, key, r.key_img),
                    incoming: r.fin.map(|f| row_to_json(columns, f).to_string()),
                    local: local.map(|l| row_to_json(columns, &l.row).to_string()),
                    origin: &txn.origin.name,
                    position: txn.position.to_string(),
                    before: super::detect::before_json(columns, r.expect),
                };
                resolved
                    .statements
                    .push(record.log(policy.strategy, outcome));
                if outcome == Outcome::Parked {
                    // Taking it later is a new local write: strip the old version so the
                    // member's triggers give it a new, higher one.
                    let img = r.fin.map(|f| {
                        let mut img = f.to_vec();
                        for i in rc.map_or([usize::MAX; 3], |rc| [rc.rank, rc.version, rc.origin]) {
                            if let Some(v) = img.get_mut(i) {
                                *v = Value::Null;
                            }
                        }
                        img
                    });
                    let apply = tsql
                        .parked_apply(img.as_deref(), r.key_img, key)
                        .map_err(|e| self.state_error(e.0))?;
                    resolved.statements.push(record.park(&apply));
                }
            }
        }
        Ok(())
    }

    /// A read of group table `table` (source names) failed with `e`. When the target lacks
    /// the version columns (1054) or the tombstone table (1146), the table was made while
    /// running without a DDL through this applier (copied by a snapshot and created by
    /// `create_missing`, or its DDL applied before a restart): the group's row versions are
    /// installed on the source and the target (after rolling back this target transaction,
    /// which holds the table's locks), and the batch fails so that it is applied again on the
    /// installed table. When nothing could be installed: the refusal of an unprepared table
    /// (records without versions, `ranked` false) or `e`.
    async fn install_on_miss(
        &mut self,
        table: (&str, &str),
        e: ApplyError,
        ranked: bool,
    ) -> ApplyError {
        if !matches!(e.server_code(), Some(1054 | 1146)) {
            return e;
        }
        let name = sql::table_name(table.0, table.1);
        let _ = exec::run_text(&mut self.conn, b"ROLLBACK").await;
        match self.install_group_table(table.0, table.1).await {
            Ok(true) => self.state_error(format!(
                "{name}: the group's row versions were installed while running (the table came \
                 without a DDL through this sync); its rows are applied again"
            )),
            Ok(false) if ranked => e,
            Ok(false) => self.state_error(format!(
                "{name} has no version columns ({RANK_COLUMN}, ...) in the change records nor on \
                 the target: it is in a bidirectional group but was not prepared; restart \
                 `fleetsync run` (it installs them, or says why it cannot)"
            )),
            Err(err) => err,
        }
    }

    /// The tombstone statement of a winning run: remove the key's tombstone (the key lives),
    /// or write the delete's rank.
    fn tombstone_sql(
        &self,
        tomb: &[u8],
        kc: &[u8],
        columns: &[fleetsync_proto::Column],
        key: &[usize],
        r: &KeyRun<'_>,
        rank: &Rank,
    ) -> Result<Vec<u8>, ApplyError> {
        let mut q = Vec::new();
        let err = |e: sql::ValueError| self.state_error(e.0);
        if r.fin.is_some() {
            q.extend_from_slice(b"DELETE FROM ");
            q.extend_from_slice(tomb);
            q.extend_from_slice(b" WHERE ");
            q.extend_from_slice(kc);
            q.push(b'=');
            sql::push_key(&mut q, r.key_img, key).map_err(err)?;
            return Ok(q);
        }
        q.extend_from_slice(b"INSERT INTO ");
        q.extend_from_slice(tomb);
        q.extend_from_slice(b" (");
        for &i in key {
            sql::push_ident(&mut q, &columns[i].name);
            q.push(b',');
        }
        q.extend_from_slice(
            b"`fleetsync_rank`,`fleetsync_version`,`fleetsync_origin`,`deleted_at`) VALUES (",
        );
        for &i in key {
            let v = r
                .key_img
                .get(i)
                .ok_or_else(|| self.state_error("key column missing"))?;
            sql::push_value(&mut q, v).map_err(err)?;
            q.push(b',');
        }
        match rank.primary {
            Some(p) => q.extend_from_slice(format_decimal(p).as_bytes()),
            None => q.extend_from_slice(b"NULL"),
        }
        q.push(b',');
        sql::push_int_literal(&mut q, rank.version);
        q.push(b',');
        sql::push_int_literal(&mut q, u64::from(rank.origin));
        q.extend_from_slice(
            b",SYSDATE(6)) ON DUPLICATE KEY UPDATE `fleetsync_rank`=VALUES(`fleetsync_rank`),\
              `fleetsync_version`=VALUES(`fleetsync_version`),`fleetsync_origin`=VALUES(`fleetsync_origin`),\
              `deleted_at`=VALUES(`deleted_at`)",
        );
        Ok(q)
    }

    /// The ranks of `runs`' keys (locked) in `tomb`, a tombstone table or a group table;
    /// `None` where there is no row. NULL versions and origins (rows older than the install)
    /// read as 0: the rank of an unranked write.
    async fn read_ranks(
        &mut self,
        tomb: &[u8],
        kc: &[u8],
        key: &[usize],
        runs: &[KeyRun<'_>],
    ) -> Result<Vec<Option<Rank>>, ApplyError> {
        let mut q = b"SELECT CASE".to_vec();
        for (n, r) in runs.iter().enumerate() {
            q.extend_from_slice(b" WHEN ");
            q.extend_from_slice(kc);
            q.push(b'=');
            sql::push_key(&mut q, r.key_img, key).map_err(|e| self.state_error(e.0))?;
            q.extend_from_slice(b" THEN ");
            sql::push_int_literal(&mut q, n as u64);
        }
        q.extend_from_slice(
            b" END, CAST(`fleetsync_rank` AS CHAR), COALESCE(`fleetsync_version`, 0), COALESCE(`fleetsync_origin`, 0) FROM ",
        );
        q.extend_from_slice(tomb);
        q.extend_from_slice(b" WHERE ");
        q.extend_from_slice(kc);
        q.extend_from_slice(b" IN (");
        for (n, r) in runs.iter().enumerate() {
            if n > 0 {
                q.push(b',');
            }
            sql::push_key(&mut q, r.key_img, key).map_err(|e| self.state_error(e.0))?;
        }
        q.extend_from_slice(b") FOR UPDATE");
        let name = String::from_utf8_lossy(tomb).into_owned();
        let rows: Vec<Row> = self.conn.query(q).await.map_err(|e| {
            self.sql_error(
                format!("reading the ranks in {name} (is the group installed on this member?)"),
                e,
            )
        })?;
        let mut out = vec![None; runs.len()];
        for row in rows {
            let (Some(Ok(idx)), Some(Ok(rank)), Some(Ok(version)), Some(Ok(origin))) = (
                row.get_opt::<u64, _>(0),
                row.get_opt::<Option<String>, _>(1),
                row.get_opt::<u64, _>(2),
                row.get_opt::<u32, _>(3),
            ) else {
                return Err(self.state_error(format!("unreadable tombstone row in {name}")));
            };
            let primary = match rank {
                Some(s) => Some(
                    parse_decimal(&s)
                        .ok_or_else(|| self.state_error(format!("bad rank {s:?} in {name}")))?,
                ),
                None => None,
            };
            if let Some(slot) = out.get_mut(idx as usize) {
                *slot = Some(Rank {
                    primary,
                    version,
                    origin,
                });
            }
        }
        Ok(out)
    }
}
