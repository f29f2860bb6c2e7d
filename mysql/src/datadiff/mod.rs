//! The data diff's per-server side: chunk checksums, row hashes and rows over key ranges,
//! all read in one consistent snapshot per side.
//!
//! A [`Session`] is one connection holding `START TRANSACTION WITH CONSISTENT SNAPSHOT`
//! (REPEATABLE READ, `SET NAMES binary`, `time_zone = '+00:00'`): every query of the diff on
//! that side sees the same data. Only SELECTs run, so nothing reaches the binlog and no
//! SUPER (or any write privilege) is needed: SELECT on the compared tables, plus REPLICATION
//! CLIENT (shown as BINLOG MONITOR / SLAVE MONITOR on MariaDB) for the replication-lag check
//! unless that check is disabled. The checksum expressions are in [`expr`].
//!
//! Rows and keys are read with the binary protocol (prepared statements) so that
//! `decode::from_mysql` gets typed values; checksums with the text protocol.
//!
//! The session's read view is held for the whole diff: on a busy server that keeps undo
//! history (history list length) growing; the chunking keeps each query short, not the view.

pub mod expr;
pub mod intkey;
mod throttle;

use std::time::Instant;

use fleetsync_proto::datadiff::{ChunkChecksum, KeyRange, KeyValues, RowHash};
use fleetsync_proto::{KeyKind, TableSchema, Value};
use mysql_async::prelude::Queryable;

use crate::decode::from_mysql;
use crate::schema::{list_tables, load_table};
use crate::SourceError;

/// Databases a whole-server diff leaves out (fleetsync's own state differs by design).
const NOT_USER: &[&str] = &["fleetsync"];

/// A table as the diff reads it: the wire schema (generated columns left out), each
/// column's collation, and the key's index name (for `FORCE INDEX`).
#[derive(Debug, Clone)]
pub struct DiffTable {
    pub schema: TableSchema,
    pub collations: Vec<Option<String>>,
    pub key_index: Option<String>,
    /// information_schema.TABLES.TABLE_ROWS: an estimate for InnoDB.
    pub estimated_rows: u64,
}

impl DiffTable {
    /// Indexes of the key columns (empty for a keyless table).
    pub fn key(&self) -> impl Iterator<Item = usize> + '_ {
        self.schema.key.iter().map(|&k| usize::from(k))
    }

    pub fn has_key(&self) -> bool {
        self.schema.key_kind != KeyKind::None && !self.schema.key.is_empty()
    }

    /// Column names and declarations, for checking that both sides have the same shape.
    pub fn shape(&self) -> Vec<(String, String)> {
        self.schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.column_type.to_ascii_lowercase()))
            .collect()
    }

    pub fn name(&self) -> String {
        format!("{}.{}", self.schema.schema, self.schema.table)
    }
}

/// Limits that make the diff pause (checked at most once a second per side).
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Pause while `Seconds_Behind_Master` exceeds this; `None` disables the check.
    pub max_lag: Option<u64>,
    /// Pause while `Threads_running` exceeds this; `None` disables the check.
    pub max_threads_running: Option<u64>,
}

/// What a chunk checksum sums per row. Row-level hashes (drill-down, keyless tables) are
/// always 64 bits (CRC32 and CRC32C side by side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowChecksum {
    /// `CRC32` of the row's canonical bytes: one pass over each row, the same per-row
    /// strength as pt-table-checksum (a changed row escapes its chunk's checksum with
    /// probability about 2^-32).
    #[default]
    Crc32,
    /// `CRC32` and `CRC32C` of the same bytes (about 2^-64), at about 1.5x the server CPU.
    Crc64,
}

/// One side's connection inside its consistent snapshot.
pub struct Session {
    pub server: String,
    conn: mysql_async::Conn,
    throttle: Throttle,
    last_check: Option<Instant>,
    /// Pauses taken (for the report).
    pub pauses: u64,
    /// Per-row strength of chunk checksums (both sides must use the same).
    pub checksum: RowChecksum,
}

fn err<'a>(server: &'a str, ctx: &str) -> impl FnOnce(mysql_async::Error) -> SourceError + 'a {
    let ctx = ctx.to_string();
    move |e| privilege_error(server, &ctx, e)
}

/// Like [`SourceError::from_mysql`], but names the missing grant for the diff's queries.
fn privilege_error(server: &str, ctx: &str, e: mysql_async::Error) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        let grant = match s.code {
            1142 | 1143 | 1044 => Some("SELECT"),
            1227 if ctx.contains("replication lag") => Some(
                "REPLICATION CLIENT (SLAVE MONITOR) for the replication-lag check (or pass --max-lag 0 to disable it)",
            ),
            _ => None,
        };
        if let Some(grant) = grant {
            return SourceError::NeedsOperator {
                server: server.to_string(),
                message: format!("{ctx}: missing privilege {grant}: {}", s.message),
            };
        }
    }
    SourceError::from_mysql(server, ctx, e)
}

impl Session {
    /// Opens the snapshot on `conn` and checks that the lag check can run.
    pub async fn open(
        server: &str,
        mut conn: mysql_async::Conn,
        throttle: Throttle,
    ) -> Result<Session, SourceError> {
        conn.query_drop("SET NAMES binary, time_zone = '+00:00'")
            .await
            .map_err(err(server, "preparing the diff session"))?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(err(server, "preparing the diff session"))?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(err(server, "starting the consistent snapshot"))?;
        let mut s = Session {
            server: server.to_string(),
            conn,
            throttle,
            last_check: None,
            pauses: 0,
            checksum: RowChecksum::default(),
        };
        s.load_check().await?;
        Ok(s)
    }

    /// Base tables of `db` (every user database when `None`) that `keep` selects, as
    /// `(database, table)`, sorted.
    pub async fn tables(
        &mut self,
        db: Option<&str>,
        keep: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> Result<Vec<(String, String)>, SourceError> {
        let all = list_tables(&mut self.conn, &self.server, |s, t| {
            db.is_none_or(|d| d == s) && (db.is_some() || !NOT_USER.contains(&s)) && keep(s, t)
        })
        .await?;
        Ok(all)
    }

    /// Whether database `db` exists.
    pub async fn has_database(&mut self, db: &str) -> Result<bool, SourceError> {
        let server = self.server.clone();
        let n: Option<u64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(err(&server, "listing databases"))?;
        Ok(n.unwrap_or(0) > 0)
    }

    /// Loads a table's definition (outside the snapshot's data, from information_schema).
    pub async fn table(&mut self, db: &str, table: &str) -> Result<Option<DiffTable>, SourceError> {
        let Some(info) = load_table(&mut self.conn, &self.server, db, table).await? else {
            return Ok(None);
        };
        let schema = info.to_schema();
        let server = self.server.clone();
        let colls: Vec<(String, Option<String>)> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(err(&server, "reading column collations"))?;
        let collations = schema
            .columns
            .iter()
            .map(|c| {
                colls
                    .iter()
                    .find(|(n, _)| n == &c.name)
                    .and_then(|(_, k)| k.clone())
            })
            .collect();
        let key_index = self.key_index(&schema).await?;
        let estimated_rows: Option<Option<u64>> = self
            .conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(err(&server, "reading table statistics"))?;
        Ok(Some(DiffTable {
            schema,
            collations,
            key_index,
            estimated_rows: estimated_rows.flatten().unwrap_or(0),
        }))
    }

    /// The name of the index whose columns are exactly the key, in order.
    async fn key_index(&mut self, schema: &TableSchema) -> Result<Option<String>, SourceError> {
        if schema.key.is_empty() {
            return Ok(None);
        }
        let want: Vec<&str> = schema
            .key
            .iter()
            .map(|&k| schema.columns[usize::from(k)].name.as_str())
            .collect();
        let server = self.server.clone();
        let rows: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
                (&schema.schema, &schema.table),
            )
            .await
            .map_err(err(&server, "reading indexes"))?;
        let mut names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        names.dedup();
        Ok(names
            .into_iter()
            .find(|n| {
                let cols: Vec<&str> = rows
                    .iter()
                    .filter(|(i, _)| i == n)
                    .map(|(_, c)| c.as_str())
                    .collect();
                cols == want
            })
            .map(str::to_string))
    }

    /// The checksum of the rows of `range`.
    pub async fn checksum(
        &mut self,
        t: &DiffTable,
        range: &KeyRange,
    ) -> Result<ChunkChecksum, SourceError> {
        let cond = expr::range_condition(t, range).map_err(|m| self.bad(m))?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            expr::chunk_aggregates(t, self.checksum, false),
            expr::from_table(t),
        );
        self.throttle().await?;
        let ctx = format!("checksumming {}", t.name());
        let row: Option<(u64, Vec<u8>, Vec<u8>)> = self
            .conn
            .query_first(sql)
            .await
            .map_err(err(&self.server, &ctx))?;
        let (rows, a, b) = row.unwrap_or_default();
        self.chunk_checksum(&ctx, rows, &a, &b)
    }

    /// A [`ChunkChecksum`] from the text of `COUNT(*)` and the two sums.
    fn chunk_checksum(
        &self,
        ctx: &str,
        rows: u64,
        a: &[u8],
        b: &[u8],
    ) -> Result<ChunkChecksum, SourceError> {
        // An exact DECIMAL sum, or a DOUBLE one (which may print as `1.5e15`) whose value is
        // an integer below 2^53 (see `expr::FLOAT_EXACT_ROWS`).
        let num = |v: &[u8]| -> Result<u128, SourceError> {
            let text = String::from_utf8_lossy(v);
            text.parse::<u128>()
                .ok()
                .or_else(|| {
                    let f: f64 = text.parse().ok()?;
                    (f.is_finite() && f >= 0.0).then_some(f as u128)
                })
                .ok_or_else(|| self.bad(format!("{ctx}: unexpected checksum {text:?}")))
        };
        Ok(ChunkChecksum {
            rows,
            crc32_sum: num(a)?,
            crc32c_sum: num(b)?,
        })
    }

    /// The key `step` rows after `range.lower` within `range` (in key order), or `None` when
    /// fewer rows follow: the upper bound of a chunk of `step` rows.
    pub async fn boundary(
        &mut self,
        t: &DiffTable,
        range: &KeyRange,
        step: u64,
    ) -> Result<Option<KeyValues>, SourceError> {
        let cond = expr::range_condition(t, range).map_err(|m| self.bad(m))?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT 1 OFFSET {}",
            expr::select_key(t),
            expr::from_table(t),
            expr::order_by_key(t),
            step.saturating_sub(1)
        );
        let ctx = format!("reading key ranges of {}", t.name());
        let row: Option<mysql_async::Row> = self
            .conn
            .exec_first(sql, ())
            .await
            .map_err(err(&self.server, &ctx))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let key: Vec<usize> = t.key().collect();
                Ok(Some(self.decode(t, &key, row.unwrap())?))
            }
        }
    }

    /// Key, identity and hash of every row of `range`.
    pub async fn row_hashes(
        &mut self,
        t: &DiffTable,
        range: &KeyRange,
    ) -> Result<Vec<RowHash>, SourceError> {
        let cond = expr::range_condition(t, range).map_err(|m| self.bad(m))?;
        self.row_hashes_where(t, &cond).await
    }

    /// Key, identity and hash of every row matching the SQL condition `cond`.
    async fn row_hashes_where(
        &mut self,
        t: &DiffTable,
        cond: &str,
    ) -> Result<Vec<RowHash>, SourceError> {
        let sql = format!(
            "SELECT {}, CONCAT({}), {} FROM {} WHERE {cond}",
            expr::select_key(t),
            expr::identity(t),
            expr::row_hash(t),
            expr::from_table(t),
        );
        self.throttle().await?;
        let ctx = format!("reading row hashes of {}", t.name());
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, ())
            .await
            .map_err(err(&self.server, &ctx))?;
        let key: Vec<usize> = t.key().collect();
        let n = key.len();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut vals = row.unwrap();
            let rest = vals.split_off(n);
            let mut rest = rest.into_iter();
            let identity = match rest.next() {
                Some(mysql_async::Value::Bytes(b)) => b,
                _ => Vec::new(),
            };
            let hash = match rest.next() {
                Some(mysql_async::Value::Int(h)) => h as u64,
                Some(mysql_async::Value::UInt(h)) => h,
                Some(mysql_async::Value::Bytes(b)) => {
                    String::from_utf8_lossy(&b).parse().unwrap_or_default()
                }
                _ => 0,
            };
            out.push(RowHash {
                key: self.decode(t, &key, vals)?,
                identity,
                hash,
            });
        }
        Ok(out)
    }

    /// Whole rows (every column) with these keys, in any order.
    pub async fn rows_by_key(
        &mut self,
        t: &DiffTable,
        keys: &[KeyValues],
    ) -> Result<Vec<Vec<Value>>, SourceError> {
        let all: Vec<usize> = (0..t.schema.columns.len()).collect();
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(500) {
            let cond = expr::keys_condition(t, batch).map_err(|m| self.bad(m))?;
            let sql = format!(
                "SELECT {} FROM {} WHERE {cond}",
                expr::select_all(t),
                expr::from_table(t)
            );
            let ctx = format!("reading rows of {}", t.name());
            let rows: Vec<mysql_async::Row> = self
                .conn
                .exec(sql, ())
                .await
                .map_err(err(&self.server, &ctx))?;
            for row in rows {
                out.push(self.decode(t, &all, row.unwrap())?);
            }
        }
        Ok(out)
    }

    /// Keyless tables: every row's hash with its whole row when `keep` says so (a first
    /// pass with `keep` always false gives the hash multiset cheaply).
    pub async fn all_row_hashes(
        &mut self,
        t: &DiffTable,
        keep: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<Vec<(u64, Option<Vec<Value>>)>, SourceError> {
        let sql = format!(
            "SELECT {}, {} FROM {}",
            expr::row_hash(t),
            expr::select_all(t),
            expr::from_table(t)
        );
        self.throttle().await?;
        let ctx = format!("reading row hashes of {}", t.name());
        let all: Vec<usize> = (0..t.schema.columns.len()).collect();
        let mut result = self
            .conn
            .exec_iter(sql, ())
            .await
            .map_err(err(&self.server, &ctx))?;
        let mut out = Vec::new();
        let mut raw = Vec::new();
        while let Some(row) = result.next().await.map_err(err(&self.server, &ctx))? {
            let mut vals = row.unwrap();
            let rest = vals.split_off(1);
            let hash = match vals.pop() {
                Some(mysql_async::Value::Int(h)) => h as u64,
                Some(mysql_async::Value::UInt(h)) => h,
                _ => 0,
            };
            raw.push((hash, keep(hash).then_some(rest)));
        }
        drop(result);
        for (hash, rest) in raw {
            let row = match rest {
                Some(v) => Some(self.decode(t, &all, v)?),
                None => None,
            };
            out.push((hash, row));
        }
        Ok(out)
    }

    /// Ends the snapshot.
    pub async fn close(mut self) {
        let _ = self.conn.query_drop("COMMIT").await;
        let _ = self.conn.disconnect().await;
    }

    fn bad(&self, message: String) -> SourceError {
        SourceError::NeedsOperator {
            server: self.server.clone(),
            message,
        }
    }

    fn decode(
        &self,
        t: &DiffTable,
        cols: &[usize],
        vals: Vec<mysql_async::Value>,
    ) -> Result<Vec<Value>, SourceError> {
        cols.iter()
            .zip(vals)
            .map(|(&i, v)| {
                let c = &t.schema.columns[i];
                from_mysql(c.ty, c.unsigned, v).map_err(|e| SourceError::Decode {
                    server: self.server.clone(),
                    position: "data diff".into(),
                    what: format!("{}.{}", t.name(), c.name),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}
