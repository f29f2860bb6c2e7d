//! Sending planned statements: rendered into multi-statement queries of bounded size, run
//! one query at a time, with the failing statement identified so that an error can name its
//! table and source positions.
//!
//! Sizes: a multi-row statement is closed once it passes [`MAX_STMT_BYTES`] and the query is
//! sent once it passes [`FLUSH_BYTES`], so a query stays near 4 MiB (MariaDB's default
//! `max_allowed_packet` is 16 MiB) unless a single row is larger.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::batch::{RowRef, Stmt, StmtKind};
use super::sql::{self, TableSql, ValueError};
use fleetsync_proto::Column;

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

/// A query being built: `;`-separated statements and one [`Mark`] per statement.
#[derive(Debug, Default)]
pub(crate) struct QueryBuf {
    pub sql: Vec<u8>,
    pub marks: Vec<Mark>,
}

impl QueryBuf {
    pub fn clear(&mut self) {
        self.sql.clear();
        self.marks.clear();
    }

    /// Starts a statement: the caller then appends its text to `sql`.
    pub fn begin(&mut self, mark: Mark) {
        if !self.marks.is_empty() {
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

fn track(mark: &mut (u32, u32), row: &RowRef<'_>) {
    mark.0 = mark.0.min(row.txn);
    mark.1 = mark.1.max(row.txn);
}

/// Runs the multi-statement query in `q`. On failure, returns the index of the statement that
/// failed (the server stops at the first error: later statements did not run).
pub(crate) async fn run(conn: &mut Conn, q: &QueryBuf) -> Result<(), (usize, mysql_async::Error)> {
    let mut result = conn
        .query_iter(q.sql.as_slice())
        .await
        .map_err(|e| (0, e))?;
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
