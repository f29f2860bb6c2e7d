//! Sending planned statements: rendered into multi-statement queries of bounded size, run
//! one query at a time, with the failing statement identified so that an error can name its
//! table and source positions.
//!
//! Sizes: a multi-row statement is closed once it passes [`MAX_STMT_BYTES`] and the query is
//! sent once it passes [`FLUSH_BYTES`], so a query stays near 4 MiB (MariaDB's default
//! `max_allowed_packet` is 16 MiB) unless a single row is larger.
//!
//! Two protocols (`[[syncs]] apply_protocol`): `text` renders every statement as SQL text;
//! `binary` renders the row statements that carry many rows (upserts, plain inserts, deletes
//! by key) as prepared statements with values bound in binary form (see [`bind`]), while
//! transaction control, bookkeeping and the one-row statements of keyless tables stay text.
//! A buffer then holds both: [`run`] sends the text statements between two prepared ones as
//! one multi-statement query and each prepared one as one batch execution, in order.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};

use super::batch::{RowRef, Stmt, StmtKind};
use super::sql::{self, TableSql, ValueError};
use fleetsync_config::ApplyProtocol;
use fleetsync_proto::Column;

#[path = "bind.rs"]
pub(crate) mod bind;

/// A multi-row statement is closed after the row that makes it this long.
pub(crate) const MAX_STMT_BYTES: usize = 1 << 20;
/// The query is sent once it is this long.
pub(crate) const FLUSH_BYTES: usize = 3 << 20;

/// What a statement in a query is about, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Transaction control or bookkeeping (`START TRANSACTION`, the progress row, ...).
    Control(&'static str),
    /// Row changes of a slot, from source transactions `first..=last` of the run.
    Rows { slot: u32, first: u32, last: u32 },
}

/// Prepared statements a target connection keeps (mysql_async's per-connection LRU cache,
/// default 32): two shapes per kind of row statement and table, so 256 hold 64 busy tables
/// without re-preparing; an evicted statement is closed on the server.
pub(crate) const STMT_CACHE_SIZE: usize = 256;

/// `opts` with the statement cache of [`STMT_CACHE_SIZE`] (a reconnect gets a new, empty
/// cache: statements are prepared again on the new connection).
pub(crate) fn with_stmt_cache(opts: mysql_async::Opts) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(opts)
        .stmt_cache_size(STMT_CACHE_SIZE)
        .into()
}

/// Statement texts kept at most (binary protocol); the cache is emptied when it is full.
const MAX_TEXTS: usize = 512;

/// A query being built: `;`-separated statements and one [`Mark`] per statement; with the
/// binary protocol also prepared statements, whose encoded parameters sit in `sql` between
/// the text statements (so `sql.len()` measures everything that waits to be sent).
#[derive(Debug, Default)]
pub(crate) struct QueryBuf {
    pub sql: Vec<u8>,
    pub marks: Vec<Mark>,
    /// How row statements are rendered.
    pub protocol: ApplyProtocol,
    /// The prepared statements in the buffer, in order.
    prepared: Vec<Prepared>,
    /// Prepared statement texts by shape (see [`shape_key`]), kept across batches.
    texts: HashMap<Vec<u8>, Arc<[u8]>>,
}

/// A prepared statement in a [`QueryBuf`], executed once per parameter set.
#[derive(Debug)]
struct Prepared {
    /// Index of its [`Mark`].
    mark: usize,
    text: Arc<[u8]>,
    /// Its encoded parameters in `sql`.
    params: Range<usize>,
    /// Parameters per execution.
    per_set: usize,
}

impl QueryBuf {
    /// An empty buffer rendering row statements for `protocol`.
    pub fn new(protocol: ApplyProtocol) -> Self {
        QueryBuf {
            protocol,
            ..QueryBuf::default()
        }
    }

    pub fn clear(&mut self) {
        self.sql.clear();
        self.marks.clear();
        self.prepared.clear();
    }

    /// Starts a text statement: the caller then appends its text to `sql`.
    pub fn begin(&mut self, mark: Mark) {
        let last_prepared = self
            .prepared
            .last()
            .is_some_and(|p| p.mark + 1 == self.marks.len());
        if !self.marks.is_empty() && !last_prepared {
            self.sql.push(b';');
        }
        self.marks.push(mark);
    }

    /// Appends a whole statement.
    pub fn push(&mut self, mark: Mark, text: &[u8]) {
        self.begin(mark);
        self.sql.extend_from_slice(text);
    }
}

/// The rendering inputs of one slot.
pub(crate) struct SlotSql<'a> {
    pub columns: &'a [Column],
    pub key: &'a [usize],
    pub sql: TableSql,
}

/// Renders statement(s) for `stmt.rows[from..]` until the query has grown by about
/// [`MAX_STMT_BYTES`]; returns the index of the first row not rendered. A value that cannot be
/// rendered fails with the transaction index of its row.
pub(crate) fn render_part(
    q: &mut QueryBuf,
    stmt: &Stmt<'_>,
    from: usize,
    slot: &SlotSql<'_>,
) -> Result<usize, (u32, ValueError)> {
    let rows = stmt.rows.get(from..).unwrap_or_default();
    let Some(first) = rows.first() else {
        return Ok(from);
    };
    if q.protocol == ApplyProtocol::Binary
        && matches!(
            stmt.kind,
            StmtKind::Upsert | StmtKind::Insert | StmtKind::DeleteKeys
        )
    {
        return render_prepared(q, stmt, from, slot);
    }
    let start = q.sql.len();
    let mut mark = (first.txn, first.txn);
    let at = q.marks.len();
    q.begin(Mark::Rows {
        slot: stmt.slot,
        first: first.txn,
        last: first.txn,
    });
    let mut n = 0;
    let res: Result<(), (u32, ValueError)> = (|| {
        let buf = &mut q.sql;
        match stmt.kind {
            StmtKind::Upsert | StmtKind::Insert => {
                buf.extend_from_slice(&slot.sql.insert_head);
                for row in rows {
                    if n > 0 {
                        if buf.len() - start >= MAX_STMT_BYTES {
                            break;
                        }
                        buf.push(b',');
                    }
                    sql::push_row(buf, row.image).map_err(|e| (row.txn, e))?;
                    track(&mut mark, row);
                    n += 1;
                }
                if stmt.kind == StmtKind::Upsert {
                    buf.extend_from_slice(&slot.sql.upsert_tail);
                }
            }
            StmtKind::DeleteKeys => {
                buf.extend_from_slice(&slot.sql.delete_head);
                for row in rows {
                    if n > 0 {
                        if buf.len() - start >= MAX_STMT_BYTES {
                            break;
                        }
                        buf.push(b',');
                    }
                    sql::push_key(buf, row.image, slot.key).map_err(|e| (row.txn, e))?;
                    track(&mut mark, row);
                    n += 1;
                }
                buf.push(b')');
            }
            StmtKind::DeleteRow => {
                buf.extend_from_slice(b"DELETE FROM ");
                buf.extend_from_slice(&slot.sql.name);
                buf.extend_from_slice(b" WHERE ");
                sql::push_row_match(buf, slot.columns, first.image).map_err(|e| (first.txn, e))?;
                buf.extend_from_slice(b" LIMIT 1");
                n = 1;
            }
            StmtKind::UpdateRow => {
                let before = first
                    .before
                    .ok_or_else(|| (first.txn, ValueError("update without before image".into())))?;
                buf.extend_from_slice(b"UPDATE ");
                buf.extend_from_slice(&slot.sql.name);
                buf.extend_from_slice(b" SET ");
                sql::push_assignments(buf, slot.columns, first.image)
                    .map_err(|e| (first.txn, e))?;
                buf.extend_from_slice(b" WHERE ");
                sql::push_row_match(buf, slot.columns, before).map_err(|e| (first.txn, e))?;
                buf.extend_from_slice(b" LIMIT 1");
                n = 1;
            }
        }
        Ok(())
    })();
    if let Some(m) = q.marks.get_mut(at) {
        *m = Mark::Rows {
            slot: stmt.slot,
            first: mark.0,
            last: mark.1,
        };
    }
    res?;
    Ok(from + n)
}

/// The binary protocol's [`render_part`]: encodes the parameters of `stmt.rows[from..]` until
/// they pass [`MAX_STMT_BYTES`], then adds one prepared statement per statement class.
fn render_prepared(
    q: &mut QueryBuf,
    stmt: &Stmt<'_>,
    from: usize,
    slot: &SlotSql<'_>,
) -> Result<usize, (u32, ValueError)> {
    let rows = stmt.rows.get(from..).unwrap_or_default();
    let delete = stmt.kind == StmtKind::DeleteKeys;
    let per_row = if delete {
        slot.key.len()
    } else {
        slot.columns.len()
    };
    let start = q.sql.len();
    // Byte offset of each encoded row's start, and the end.
    let mut bounds = vec![start];
    for row in rows {
        if bounds.len() > 1 && q.sql.len() - start >= MAX_STMT_BYTES {
            break;
        }
        let encoded: Result<(), ValueError> = if delete {
            slot.key.iter().try_for_each(|&k| {
                let v = row
                    .image
                    .get(k)
                    .ok_or_else(|| ValueError(format!("key column {k} missing")))?;
                bind::push_param(&mut q.sql, v)
            })
        } else if row.image.len() != per_row {
            Err(ValueError(format!(
                "image has {} values but the table has {per_row} columns",
                row.image.len()
            )))
        } else {
            row.image
                .iter()
                .try_for_each(|v| bind::push_param(&mut q.sql, v))
        };
        if let Err(e) = encoded {
            q.sql.truncate(start);
            q.begin(Mark::Rows {
                slot: stmt.slot,
                first: row.txn,
                last: row.txn,
            });
            return Err((row.txn, e));
        }
        bounds.push(q.sql.len());
    }
    let n = bounds.len() - 1;
    let mut at = 0;
    for (class, sets) in bind::split_rows(n, bind::row_classes(per_row)) {
        let count = class * sets;
        let run = rows.get(at..at + count).unwrap_or_default();
        let mut mark = (u32::MAX, 0);
        run.iter().for_each(|r| track(&mut mark, r));
        let text = statement_text(q, stmt.kind, slot, class);
        q.marks.push(Mark::Rows {
            slot: stmt.slot,
            first: mark.0,
            last: mark.1,
        });
        q.prepared.push(Prepared {
            mark: q.marks.len() - 1,
            text,
            params: bounds[at]..bounds[at + count],
            per_set: class * per_row,
        });
        at += count;
    }
    Ok(from + n)
}

/// The prepared statement text of `kind` for `class` rows of `slot`, from the cache.
fn statement_text(q: &mut QueryBuf, kind: StmtKind, slot: &SlotSql<'_>, class: usize) -> Arc<[u8]> {
    let key = shape_key(kind, slot, class);
    if let Some(t) = q.texts.get(&key) {
        return t.clone();
    }
    let text: Arc<[u8]> = match kind {
        StmtKind::DeleteKeys => bind::delete_text(&slot.sql, slot.columns, slot.key, class),
        _ => bind::insert_text(&slot.sql, slot.columns, class, kind == StmtKind::Upsert),
    }
    .into();
    if q.texts.len() >= MAX_TEXTS {
        q.texts.clear();
    }
    q.texts.insert(key, text.clone());
    text
}

/// What a prepared statement's text depends on: the kind, the row count, the table's
/// rendered head (name and columns) and which columns are JSON.
fn shape_key(kind: StmtKind, slot: &SlotSql<'_>, class: usize) -> Vec<u8> {
    let head = match kind {
        StmtKind::DeleteKeys => &slot.sql.delete_head,
        _ => &slot.sql.insert_head,
    };
    let mut key = Vec::with_capacity(head.len() + slot.columns.len() + 16);
    key.push(kind as u8);
    key.extend_from_slice(&class.to_le_bytes());
    key.extend(
        slot.columns
            .iter()
            .map(|c| u8::from(c.ty == fleetsync_proto::ColumnType::Json)),
    );
    key.extend(slot.key.iter().flat_map(|k| (*k as u32).to_le_bytes()));
    key.extend_from_slice(head);
    key
}

fn track(mark: &mut (u32, u32), row: &RowRef<'_>) {
    mark.0 = mark.0.min(row.txn);
    mark.1 = mark.1.max(row.txn);
}

/// Runs the statements in `q`, in order: the text statements between two prepared ones as
/// one multi-statement query, each prepared statement as one batch execution. On failure,
/// returns the index of the statement that failed (later statements did not run).
pub(crate) async fn run(conn: &mut Conn, q: &QueryBuf) -> Result<(), (usize, mysql_async::Error)> {
    let (mut pos, mut mark) = (0, 0);
    for p in &q.prepared {
        if p.mark > mark {
            let text = q.sql.get(pos..p.params.start).unwrap_or_default();
            run_multi(conn, text)
                .await
                .map_err(|(i, e)| (mark + i, e))?;
        }
        run_prepared(conn, q, p).await.map_err(|e| (p.mark, e))?;
        pos = p.params.end;
        mark = p.mark + 1;
    }
    if mark < q.marks.len() {
        let text = q.sql.get(pos..).unwrap_or_default();
        run_multi(conn, text)
            .await
            .map_err(|(i, e)| (mark + i, e))?;
    }
    Ok(())
}

/// Executes `p` once per parameter set in one batch (`COM_STMT_BULK_EXECUTE` on MariaDB).
async fn run_prepared(
    conn: &mut Conn,
    q: &QueryBuf,
    p: &Prepared,
) -> Result<(), mysql_async::Error> {
    let mut bytes = q.sql.get(p.params.clone()).unwrap_or_default();
    let mut sets: Vec<Params> = Vec::new();
    while !bytes.is_empty() {
        let (values, rest) = bind::read_params(bytes, p.per_set).map_err(|e| {
            mysql_async::Error::Other(format!("encoded statement parameters: {e}").into())
        })?;
        sets.push(Params::Positional(values));
        bytes = rest;
    }
    conn.exec_batch(&*p.text, sets).await
}

/// Runs one multi-statement text query; on failure returns the index of the failing
/// statement within it.
async fn run_multi(conn: &mut Conn, sql: &[u8]) -> Result<(), (usize, mysql_async::Error)> {
    let mut result = conn.query_iter(sql).await.map_err(|e| (0, e))?;
    // `read`: index of the last statement whose response was read. mysql_async keeps a server
    // error of a later statement and returns it on the next call, so a server error belongs to
    // `read`; a connection error happens while reading the next response.
    let mut read = 0;
    while !result.is_empty() {
        match result.collect::<Row>().await {
            Ok(_) => read += 1,
            Err(e @ mysql_async::Error::Server(_)) => return Err((read, e)),
            Err(e) => return Err((read + 1, e)),
        }
    }
    result.drop_result().await.map_err(|e| (read, e))
}

/// Runs a single (possibly multi-statement) text query, discarding results.
pub(crate) async fn run_text(conn: &mut Conn, sql: &[u8]) -> Result<(), mysql_async::Error> {
    conn.query_drop(sql).await
}
