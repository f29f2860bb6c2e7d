//! Conflict detection in the apply loop (only when the sync's conflict strategy is not `none`).
//!
//! For every key a run of changes touches (keyed tables; snapshot chunks excluded), the first
//! change of the key in the batch gives the *expected* target row: its before image (UPDATE,
//! DELETE: the row must exist and equal it) or, when the key's first change creates it
//! (INSERT, or the new key of a key-changing UPDATE), its after image (the row must be absent
//! or equal it). The target rows are read with `SELECT ... FOR UPDATE` in the batch's own
//! transaction, and the comparison runs in SQL with the same full-row match as keyless
//! deletes (`<=>`, and character columns also as bytes). A key whose row neither matches the
//! expectation nor already equals the key's final image in the batch is a conflict; the
//! decision (see `conflict`) applies to the key's whole run: every change of the batch that
//! touches the key is kept or dropped together. Keyless tables get no detection. In a
//! bidirectional group the decision is by rank instead, with tombstones (see `group`).

use std::collections::HashMap;

use fleetsync_config::ConflictStrategy;
use fleetsync_proto::codec::row_to_json;
use fleetsync_proto::{Column, ColumnType, Op, Transaction, Value};
use mysql_async::prelude::Queryable;
use mysql_async::Row;

use super::batch::Change;
use super::conflict::{decide, Outcome, Version};
use super::run::Slot;
use super::sql::{self, TableSql};
use super::{exec, Applier, ApplyError};

/// Keys per detection query.
pub(super) const KEYS_PER_QUERY: usize = 200;

/// What the decisions of a batch add to its transaction.
pub(super) struct Resolved {
    /// `conflict_log` and `conflicts` inserts.
    pub statements: Vec<Vec<u8>>,
    /// One entry per decision, for the metric once committed.
    pub decisions: Vec<(ConflictStrategy, Outcome)>,
}

#[derive(Clone, Copy)]
pub(super) enum Expect<'a> {
    /// The row must exist and equal this image.
    Row(&'a [Value]),
    /// The row must be absent or equal this image.
    AbsentOr(&'a [Value]),
}

pub(super) struct KeyRun<'a> {
    pub expect: Expect<'a>,
    /// The key's image after the whole run; `None` when the run deletes it.
    pub fin: Option<&'a [Value]>,
    /// When the run deletes the key: the before image of the change that removed it.
    pub gone: Option<&'a [Value]>,
    /// An image carrying the key.
    pub key_img: &'a [Value],
    /// Indexes into the run's changes.
    pub changes: Vec<usize>,
    /// Transaction (index in the run) of the key's last change.
    pub txn: u32,
}

pub(super) struct Local {
    pub row: Vec<Value>,
    pub same_expected: bool,
    pub same_final: bool,
}

impl Applier {
    /// Detects and decides conflicts for `changes` (already limited to active slots), drops
    /// the changes of keys whose incoming version lost, and returns what to record. When it
    /// returns `Some`, a target transaction is open (started here). `None`: nothing to check,
    /// no transaction started.
    pub(super) async fn resolve_conflicts<'a>(
        &mut self,
        run: &[&'a Transaction],
        slots: &[Slot<'a>],
        changes: &mut Vec<Change<'a>>,
    ) -> Result<Option<Resolved>, ApplyError> {
        let mut started = false;
        let result = self.resolve_inner(run, slots, changes, &mut started).await;
        if result.is_err() && started {
            if let Err(e) = exec::run_text(&mut self.conn, b"ROLLBACK").await {
                tracing::debug!(target = %self.opts.target, error = %e, "rollback failed");
            }
        }
        result
    }

    async fn resolve_inner<'a>(
        &mut self,
        run: &[&'a Transaction],
        slots: &[Slot<'a>],
        changes: &mut Vec<Change<'a>>,
        started: &mut bool,
    ) -> Result<Option<Resolved>, ApplyError> {
        let mut resolved = Resolved {
            statements: Vec::new(),
            decisions: Vec::new(),
        };
        let mut drop = vec![false; changes.len()];
        for (si, slot) in slots.iter().enumerate() {
            let policy = self
                .opts
                .conflicts
                .table(&slot.schema.schema, &slot.schema.table)
                .clone();
            if policy.strategy == ConflictStrategy::None || slot.plan.key.is_empty() || !slot.active
            {
                continue;
            }
            if self.opts.conflicts.group {
                self.resolve_group_slot(
                    run,
                    si,
                    slot,
                    &policy,
                    changes,
                    &mut drop,
                    &mut resolved,
                    started,
                )
                .await?;
                continue;
            }
            let columns = &slot.schema.columns;
            let key = &slot.plan.key;
            let newest = match (&policy.strategy, &policy.newest_column) {
                (ConflictStrategy::NewestWins, Some(name)) => Some(
                    columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            self.state_error(format!(
                                "newest_column {name:?} is not a column of {}",
                                sql::table_name(&slot.schema.schema, &slot.schema.table)
                            ))
                        })?,
                ),
                _ => None,
            };
            let runs = key_runs(run, si as u32, changes, key, columns.len(), false);
            if runs.is_empty() {
                continue;
            }
            if !*started {
                exec::run_text(&mut self.conn, b"START TRANSACTION")
                    .await
                    .map_err(|e| self.sql_error("starting a transaction", e))?;
                *started = true;
            }
            let tsql = TableSql::new(&slot.target.0, &slot.target.1, columns, key);
            for chunk in runs.chunks(KEYS_PER_QUERY) {
                let locals = self.read_locals(&tsql, columns, key, chunk).await?;
                for (r, local) in chunk.iter().zip(&locals) {
                    if !is_conflict(r, local.as_ref()) {
                        continue;
                    }
                    let txn = run.get(r.txn as usize).copied().unwrap_or(run[0]);
                    let pick = |img: Option<&'a [Value]>| -> Option<&'a Value> {
                        Some(img?.get(newest?).unwrap_or(&Value::Null))
                    };
                    let local_newest = local
                        .as_ref()
                        .and_then(|l| newest.map(|i| l.row.get(i).unwrap_or(&Value::Null)));
                    let outcome = decide(
                        policy.strategy,
                        &self.opts.conflicts,
                        &Version {
                            server: &txn.origin.name,
                            server_id: txn.origin.server_id,
                            newest: pick(r.fin),
                        },
                        &Version {
                            server: &self.opts.target,
                            server_id: self.target_server_id,
                            newest: local_newest,
                        },
                    );
                    if outcome != Outcome::IncomingWon {
                        for &ci in &r.changes {
                            drop[ci] = true;
                        }
                    }
                    resolved.decisions.push((policy.strategy, outcome));
                    let record = Record {
                        sync: &self.opts.sync,
                        schema: &slot.schema.schema,
                        table: &slot.schema.table,
                        key: key_json(columns, key, r.key_img),
                        incoming: r.fin.map(|f| row_to_json(columns, f).to_string()),
                        local: local
                            .as_ref()
                            .map(|l| row_to_json(columns, &l.row).to_string()),
                        origin: &txn.origin.name,
                        position: txn.position.to_string(),
                        before: before_json(columns, r.expect),
                    };
                    resolved
                        .statements
                        .push(record.log(policy.strategy, outcome));
                    if outcome == Outcome::Parked {
                        let apply = tsql
                            .parked_apply(r.fin, r.key_img, key)
                            .map_err(|e| self.state_error(e.0))?;
                        resolved.statements.push(record.park(&apply));
                    }
                }
            }
        }
        if !*started {
            return Ok(None);
        }
        let mut i = 0;
        changes.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
        Ok(Some(resolved))
    }

    /// The target rows of `runs`' keys, locked, with the comparisons; `None` where absent.
    pub(super) async fn read_locals(
        &mut self,
        tsql: &TableSql,
        columns: &[Column],
        key: &[usize],
        runs: &[KeyRun<'_>],
    ) -> Result<Vec<Option<Local>>, ApplyError> {
        let kc = sql::key_columns(columns, key);
        let render = || -> Result<Vec<u8>, sql::ValueError> {
            let mut q = b"SELECT ".to_vec();
            for c in columns {
                sql::push_ident(&mut q, &c.name);
                if matches!(c.ty, ColumnType::Enum | ColumnType::Set) {
                    q.extend_from_slice(b"+0");
                }
                q.push(b',');
            }
            // Which key, whether the row is as expected, whether it is the final image.
            for part in 0..3 {
                if part > 0 {
                    q.push(b',');
                }
                q.extend_from_slice(b"CASE");
                for (n, r) in runs.iter().enumerate() {
                    q.extend_from_slice(b" WHEN ");
                    q.extend_from_slice(&kc);
                    q.push(b'=');
                    sql::push_key(&mut q, r.key_img, key)?;
                    q.extend_from_slice(b" THEN ");
                    match part {
                        0 => sql::push_int_literal(&mut q, n as u64),
                        1 => {
                            let (Expect::Row(img) | Expect::AbsentOr(img)) = r.expect;
                            q.push(b'(');
                            sql::push_row_match(&mut q, columns, img)?;
                            q.push(b')');
                        }
                        _ => match r.fin {
                            Some(img) => {
                                q.push(b'(');
                                sql::push_row_match(&mut q, columns, img)?;
                                q.push(b')');
                            }
                            None => q.push(b'0'),
                        },
                    }
                }
                q.extend_from_slice(b" END");
            }
            q.extend_from_slice(b" FROM ");
            q.extend_from_slice(&tsql.name);
            q.extend_from_slice(b" WHERE ");
            q.extend_from_slice(&kc);
            q.extend_from_slice(b" IN (");
            for (n, r) in runs.iter().enumerate() {
                if n > 0 {
                    q.push(b',');
                }
                sql::push_key(&mut q, r.key_img, key)?;
            }
            q.extend_from_slice(b") FOR UPDATE");
            Ok(q)
        };
        let q = render().map_err(|e| self.state_error(e.0))?;
        let table = String::from_utf8_lossy(&tsql.name).into_owned();
        let rows: Vec<Row> = self.conn.exec(q.as_slice(), ()).await.map_err(|e| {
            self.sql_error(
                format!("reading target rows of {table} for conflict detection"),
                e,
            )
        })?;
        let mut out: Vec<Option<Local>> = runs.iter().map(|_| None).collect();
        let w = columns.len();
        for row in rows {
            let vals = row.unwrap();
            let flag = |v: Option<&mysql_async::Value>| -> Option<i64> {
                match v? {
                    mysql_async::Value::Int(i) => Some(*i),
                    mysql_async::Value::UInt(u) => Some(*u as i64),
                    mysql_async::Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                    _ => None,
                }
            };
            let Some(idx) = flag(vals.get(w)) else {
                continue;
            };
            let same_expected = flag(vals.get(w + 1)) == Some(1);
            let same_final = flag(vals.get(w + 2)) == Some(1);
            let mut row = Vec::with_capacity(w);
            for (c, v) in columns.iter().zip(vals) {
                let v = fleetsync_mysql::decode::from_mysql(c.ty, c.unsigned, v).map_err(|e| {
                    self.state_error(format!(
                        "decoding {table}.{} for conflict detection: {e}",
                        c.name
                    ))
                })?;
                row.push(v);
            }
            if let Some(slot) = out.get_mut(idx as usize) {
                *slot = Some(Local {
                    row,
                    same_expected,
                    same_final,
                });
            }
        }
        Ok(out)
    }
}

pub(super) fn is_conflict(r: &KeyRun<'_>, local: Option<&Local>) -> bool {
    let expected = match (r.expect, local) {
        (Expect::Row(_), Some(l)) => l.same_expected,
        (Expect::Row(_), None) => false,
        (Expect::AbsentOr(_), Some(l)) => l.same_expected,
        (Expect::AbsentOr(_), None) => true,
    };
    // Already the final version (e.g. the same change made on both sides): nothing to decide.
    let already = match (r.fin, local) {
        (Some(_), Some(l)) => l.same_final,
        (None, None) => true,
        _ => false,
    };
    !expected && !already
}

/// The runs of changes per key of slot `slot`, in order of each key's first change.
/// Snapshot chunks count only with `with_snapshot` (bidirectional groups rank them too).
pub(super) fn key_runs<'a>(
    run: &[&'a Transaction],
    slot: u32,
    changes: &[Change<'a>],
    key: &[usize],
    width: usize,
    with_snapshot: bool,
) -> Vec<KeyRun<'a>> {
    let mut runs: Vec<KeyRun<'a>> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let keyof = |img: &[Value]| -> Option<Vec<u8>> {
        let mut b = Vec::new();
        sql::push_key(&mut b, img, key).ok()?;
        Some(b)
    };
    let ok = |img: Option<&'a [Value]>| img.filter(|i| i.len() == width);
    for (ci, c) in changes.iter().enumerate() {
        if c.slot != slot
            || run
                .get(c.txn as usize)
                .is_none_or(|t| t.snapshot && !with_snapshot)
        {
            continue;
        }
        let (before, after) = match c.op {
            Op::Insert | Op::Snapshot => (None, ok(c.after)),
            Op::Update => (ok(c.before), ok(c.after)),
            Op::Delete => (ok(c.before), None),
        };
        let mut kb = None;
        if let Some(b) = before {
            let Some(k) = keyof(b) else { continue };
            let ka = after.and_then(keyof);
            let at = *index.entry(k.clone()).or_insert_with(|| {
                runs.push(KeyRun {
                    expect: Expect::Row(b),
                    fin: Some(b),
                    gone: None,
                    key_img: b,
                    changes: Vec::new(),
                    txn: c.txn,
                });
                runs.len() - 1
            });
            let r = &mut runs[at];
            r.changes.push(ci);
            r.txn = c.txn;
            r.fin = if ka.as_ref() == Some(&k) { after } else { None };
            r.gone = if r.fin.is_none() { Some(b) } else { None };
            kb = Some(k);
        }
        if let Some(a) = after {
            let Some(k) = keyof(a) else { continue };
            if kb.as_ref() == Some(&k) {
                continue;
            }
            let at = *index.entry(k).or_insert_with(|| {
                runs.push(KeyRun {
                    expect: Expect::AbsentOr(a),
                    fin: Some(a),
                    gone: None,
                    key_img: a,
                    changes: Vec::new(),
                    txn: c.txn,
                });
                runs.len() - 1
            });
            let r = &mut runs[at];
            r.changes.push(ci);
            r.txn = c.txn;
            r.fin = Some(a);
            r.gone = None;
        }
    }
    runs
}

pub(super) fn key_json(columns: &[Column], key: &[usize], img: &[Value]) -> String {
    let cols: Vec<Column> = key
        .iter()
        .filter_map(|&i| columns.get(i).cloned())
        .collect();
    let vals: Vec<Value> = key.iter().filter_map(|&i| img.get(i).cloned()).collect();
    row_to_json(&cols, &vals).to_string()
}

/// One decision, as written to `fleetsync.conflict_log` (and `conflicts` when parked).
pub(super) struct Record<'a> {
    pub sync: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    pub key: String,
    pub incoming: Option<String>,
    pub local: Option<String>,
    pub origin: &'a str,
    pub position: String,
    /// The before image both sides started from (`conflicts.before_json`): the incoming
    /// change's expected row as JSON, `"null"` when the change created the row.
    pub before: String,
}

/// The before image of a key's run as stored in `conflicts.before_json`: the first change's
/// before image, or JSON `null` when the run created the key (a NULL column means an older
/// conflict that did not record it).
pub(super) fn before_json(columns: &[Column], expect: Expect<'_>) -> String {
    match expect {
        Expect::Row(b) => row_to_json(columns, b).to_string(),
        Expect::AbsentOr(_) => "null".to_string(),
    }
}

impl Record<'_> {
    fn common(&self, q: &mut Vec<u8>) {
        for (i, s) in [self.sync, self.schema, self.table].iter().enumerate() {
            if i > 0 {
                q.push(b',');
            }
            sql::push_quoted(q, s.as_bytes());
        }
        for j in [Some(&self.key), self.incoming.as_ref(), self.local.as_ref()] {
            q.push(b',');
            match j {
                Some(j) => {
                    q.extend_from_slice(b"_utf8mb4");
                    sql::push_quoted(q, j.as_bytes());
                }
                None => q.extend_from_slice(b"NULL"),
            }
        }
        q.push(b',');
        sql::push_quoted(q, self.origin.as_bytes());
        q.push(b',');
        sql::push_quoted(q, self.position.as_bytes());
    }

    pub(super) fn log(&self, strategy: ConflictStrategy, outcome: Outcome) -> Vec<u8> {
        let mut q =
            b"INSERT INTO `fleetsync`.`conflict_log` (`sync_name`,`schema_name`,`table_name`,\
            `key_json`,`incoming_json`,`local_json`,`origin_server`,`source_position`,`strategy`,\
            `outcome`,`decided_at`) VALUES ("
                .to_vec();
        self.common(&mut q);
        q.push(b',');
        sql::push_quoted(&mut q, strategy.as_str().as_bytes());
        q.push(b',');
        sql::push_quoted(&mut q, outcome.as_str().as_bytes());
        q.extend_from_slice(b",NOW(6))");
        q
    }

    pub(super) fn park(&self, apply: &[u8]) -> Vec<u8> {
        let mut q = b"INSERT INTO `fleetsync`.`conflicts` (`sync_name`,`schema_name`,`table_name`,\
            `key_json`,`incoming_json`,`local_json`,`origin_server`,`source_position`,\
            `detected_at`,`status`,`apply_sql`,`before_json`) VALUES ("
            .to_vec();
        self.common(&mut q);
        q.extend_from_slice(b",NOW(6),'open',");
        sql::push_hex(&mut q, apply);
        q.extend_from_slice(b",_utf8mb4");
        sql::push_quoted(&mut q, self.before.as_bytes());
        q.push(b')');
        q
    }
}
