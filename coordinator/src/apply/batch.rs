//! Planning: turning the row changes of a run of source transactions into the statements that
//! reproduce them on a target. Pure: no I/O, so the ordering and compaction rules are tested
//! on their own.
//!
//! A *slot* is one table with one column layout within the run. Per slot:
//! * **Compacted** (the table has a key and it is the only unique index on the target): only
//!   the net effect of the run is applied. The last change per key wins; the keys whose last
//!   change removes them are deleted first (one `DELETE ... IN`), then the remaining keys are
//!   upserted with their final image, in the order of each key's last change. Because no other
//!   unique index exists, no statement of this slot can conflict with another key's row, so
//!   the final table content equals the one replaying every change would give.
//! * **Keyed, ordered**: every change is kept, in order; only *consecutive* changes of the
//!   same table and kind (upsert or delete by key) are grouped into one multi-row statement.
//! * **Keyless**: like native replication, row by row in order; consecutive inserts are
//!   grouped.
//!
//! Ordered statements keep the exact relative order of all changes of ordered slots.
//! Compacted slots are independent of every other table (foreign key checks are off in the
//! applier's session), so their statements come after the ordered ones.

use std::collections::HashMap;

use fleetsync_proto::{Op, Value};

use super::sql;

/// What the planner needs to know about one slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotPlan {
    /// Number of columns of every image of this slot.
    pub width: usize,
    /// Indexes of the key columns; empty for a keyless table.
    pub key: Vec<usize>,
    /// Net-effect compaction is allowed (see the module docs).
    pub compact: bool,
}

/// One row change, as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change<'a> {
    pub slot: u32,
    /// Index of the source transaction in the run, for error messages.
    pub txn: u32,
    pub op: Op,
    pub before: Option<&'a [Value]>,
    pub after: Option<&'a [Value]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StmtKind {
    /// Multi-row `INSERT ... ON DUPLICATE KEY UPDATE` of after images.
    Upsert,
    /// `DELETE ... WHERE key IN (...)` of the keys of before images.
    DeleteKeys,
    /// Multi-row plain `INSERT` (keyless tables).
    Insert,
    /// `DELETE ... WHERE <full row match> LIMIT 1` (keyless tables), one row.
    DeleteRow,
    /// `UPDATE ... SET <after> WHERE <full before match> LIMIT 1` (keyless tables), one row.
    UpdateRow,
}

/// A row of a statement: the image it writes or matches, and for [`StmtKind::UpdateRow`] the
/// before image it matches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    pub image: &'a [Value],
    pub before: Option<&'a [Value]>,
    pub txn: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Stmt<'a> {
    pub slot: u32,
    pub kind: StmtKind,
    pub rows: Vec<RowRef<'a>>,
}

/// Why a change cannot be planned: it names the slot and transaction it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanError {
    pub slot: u32,
    pub txn: u32,
    pub reason: String,
}

/// Per-slot net-effect state of a compacted slot.
#[derive(Default)]
struct Compactor<'a> {
    /// Rendered key literals -> index of the key's live entry.
    index: HashMap<Vec<u8>, usize>,
    /// Changes in order of each key's last change; superseded ones are `None`.
    entries: Vec<Option<(RowRef<'a>, bool /* upsert */)>>,
}

impl<'a> Compactor<'a> {
    fn record(&mut self, key: Vec<u8>, row: RowRef<'a>, upsert: bool) {
        let at = self.entries.len();
        self.entries.push(Some((row, upsert)));
        if let Some(old) = self.index.insert(key, at) {
            if let Some(e) = self.entries.get_mut(old) {
                *e = None;
            }
        }
    }
}

/// Plans `changes` (in source order) for `slots`. See the module docs for the rules.
pub(crate) fn plan<'a>(
    slots: &[SlotPlan],
    changes: impl IntoIterator<Item = Change<'a>>,
) -> Result<Vec<Stmt<'a>>, PlanError> {
    let mut ordered: Vec<Stmt<'a>> = Vec::new();
    let mut compactors: Vec<Option<Compactor<'a>>> = slots
        .iter()
        .map(|s| (s.compact && !s.key.is_empty()).then(Compactor::default))
        .collect();
    let mut keybuf = Vec::new();

    for c in changes {
        let err = |reason: String| PlanError {
            slot: c.slot,
            txn: c.txn,
            reason,
        };
        let slot = slots
            .get(c.slot as usize)
            .ok_or_else(|| err("unknown table".into()))?;
        if let Some(k) = slot.key.iter().find(|&&k| k >= slot.width) {
            return Err(err(format!(
                "key column {k} out of range ({} columns)",
                slot.width
            )));
        }
        let image = |img: Option<&'a [Value]>, what: &str| -> Result<&'a [Value], PlanError> {
            let img = img.ok_or_else(|| err(format!("{:?} change without {what} image", c.op)))?;
            if img.len() != slot.width {
                return Err(err(format!(
                    "{what} image has {} values but the table has {} columns",
                    img.len(),
                    slot.width
                )));
            }
            Ok(img)
        };
        let (before, after) = match c.op {
            Op::Insert | Op::Snapshot => (None, Some(image(c.after, "after")?)),
            Op::Update => (
                Some(image(c.before, "before")?),
                Some(image(c.after, "after")?),
            ),
            Op::Delete => (Some(image(c.before, "before")?), None),
        };
        let row = |image: &'a [Value]| RowRef {
            image,
            before: None,
            txn: c.txn,
        };

        if slot.key.is_empty() {
            let stmt = match (before, after) {
                (None, Some(a)) => (StmtKind::Insert, row(a)),
                (Some(b), Some(a)) => (
                    StmtKind::UpdateRow,
                    RowRef {
                        before: Some(b),
                        ..row(a)
                    },
                ),
                (Some(b), None) => (StmtKind::DeleteRow, row(b)),
                (None, None) => continue,
            };
            push_ordered(&mut ordered, c.slot, stmt.0, stmt.1);
            continue;
        }

        // A key change is a delete of the old key and an upsert of the new one.
        let delete = match (before, after) {
            (Some(b), Some(a)) => slot.key.iter().any(|&i| b.get(i) != a.get(i)).then_some(b),
            (Some(b), None) => Some(b),
            (None, _) => None,
        };
        match compactors.get_mut(c.slot as usize).and_then(Option::as_mut) {
            Some(comp) => {
                if let Some(b) = delete {
                    comp.record(
                        key_bytes(&mut keybuf, b, &slot.key).map_err(&err)?,
                        row(b),
                        false,
                    );
                }
                if let Some(a) = after {
                    comp.record(
                        key_bytes(&mut keybuf, a, &slot.key).map_err(&err)?,
                        row(a),
                        true,
                    );
                }
            }
            None => {
                if let Some(b) = delete {
                    push_ordered(&mut ordered, c.slot, StmtKind::DeleteKeys, row(b));
                }
                if let Some(a) = after {
                    push_ordered(&mut ordered, c.slot, StmtKind::Upsert, row(a));
                }
            }
        }
    }

    for (slot, comp) in compactors.into_iter().enumerate() {
        let Some(comp) = comp else { continue };
        let live = || comp.entries.iter().flatten();
        let deletes: Vec<RowRef<'a>> = live().filter(|(_, up)| !up).map(|(r, _)| *r).collect();
        let upserts: Vec<RowRef<'a>> = live().filter(|(_, up)| *up).map(|(r, _)| *r).collect();
        let slot = slot as u32;
        if !deletes.is_empty() {
            ordered.push(Stmt {
                slot,
                kind: StmtKind::DeleteKeys,
                rows: deletes,
            });
        }
        if !upserts.is_empty() {
            ordered.push(Stmt {
                slot,
                kind: StmtKind::Upsert,
                rows: upserts,
            });
        }
    }
    Ok(ordered)
}

/// The rendered key literals of `image`, used as the identity of a row in compaction.
fn key_bytes(buf: &mut Vec<u8>, image: &[Value], key: &[usize]) -> Result<Vec<u8>, String> {
    buf.clear();
    sql::push_key(buf, image, key).map_err(|e| e.0)?;
    Ok(buf.clone())
}

/// Appends a row to the last statement when it is of the same slot and a groupable kind,
/// else starts a new statement.
fn push_ordered<'a>(ordered: &mut Vec<Stmt<'a>>, slot: u32, kind: StmtKind, row: RowRef<'a>) {
    let groupable = matches!(
        kind,
        StmtKind::Upsert | StmtKind::DeleteKeys | StmtKind::Insert
    );
    if let Some(last) = ordered.last_mut() {
        if groupable && last.slot == slot && last.kind == kind {
            last.rows.push(row);
            return;
        }
    }
    ordered.push(Stmt {
        slot,
        kind,
        rows: vec![row],
    });
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
