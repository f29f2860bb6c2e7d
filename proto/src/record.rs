//! Change records. A [`Transaction`] is the unit on the bus: one committed source transaction
//! (or one chunk of the initial snapshot), its coordinates, and its row changes in order.

use serde::{Deserialize, Serialize};

use crate::{Gtid, Position, TableSchema, Value};

/// The server a change was committed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// fleetsync's name for the server (`[[servers]] name`).
    pub name: String,
    pub server_id: u32,
    /// `@@server_uuid` on MySQL; empty on MariaDB, which has none.
    pub server_uuid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// A row read by the initial snapshot (Debezium's `r`).
    Snapshot,
}

/// A schema change seen in the binlog, forwarded so targets can follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ddl {
    /// Default database of the statement (`USE db`), if any.
    pub schema: Option<String>,
    /// Tables the statement names, as `(schema, table)`.
    pub tables: Vec<(String, String)>,
    pub statement: String,
}

/// One row change inside a [`Transaction`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// Index into [`Transaction::tables`].
    pub table: u32,
    pub op: Op,
    /// Full before image (UPDATE, DELETE).
    pub before: Option<Vec<Value>>,
    /// Full after image (INSERT, UPDATE, snapshot).
    pub after: Option<Vec<Value>>,
}

/// A committed source transaction, or one chunk of the initial snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub origin: Origin,
    /// GTID of the transaction (`None` for snapshot chunks).
    pub gtid: Option<Gtid>,
    /// Source position just after this transaction: where to resume once it is applied.
    pub position: Position,
    /// Transaction id: the GTID sequence number, or the XID, or a snapshot chunk number.
    pub txn_id: u64,
    /// Commit time on the source, milliseconds since the epoch.
    pub commit_ts_ms: u64,
    /// True for snapshot chunks; `snapshot_done` marks the last one.
    pub snapshot: bool,
    pub snapshot_done: bool,
    /// Schemas of the tables the changes refer to.
    pub tables: Vec<TableSchema>,
    /// Row changes in commit order; the order within the transaction is the index.
    pub changes: Vec<RowChange>,
    /// Schema change carried by this transaction, if it is a DDL statement.
    pub ddl: Option<Ddl>,
}

/// A flat, self-contained view of one row change: what outside consumers see.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord<'a> {
    pub origin: &'a Origin,
    pub gtid: Option<Gtid>,
    pub position: &'a Position,
    pub txn_id: u64,
    /// Order within the transaction, from 0.
    pub seq: u32,
    pub commit_ts_ms: u64,
    pub table: &'a TableSchema,
    pub op: Op,
    pub before: Option<&'a [Value]>,
    pub after: Option<&'a [Value]>,
}

/// Allocator overhead assumed per heap block in [`RowChange::mem_bytes`] (glibc: 8-16 bytes of
/// header and rounding to 16).
const HEAP_BLOCK_OVERHEAD: usize = 16;

impl RowChange {
    /// About how many bytes this change holds in memory (values, their heap buffers, the
    /// images' vectors). An estimate for budgets (the embedded bus, batches): cheap, linear in
    /// the number of values, never exact.
    pub fn mem_bytes(&self) -> usize {
        fn image(values: &Option<Vec<Value>>) -> usize {
            let Some(values) = values else { return 0 };
            let heap: usize = values
                .iter()
                .map(|v| match v {
                    Value::Decimal(s) | Value::Json(s) => s.capacity() + HEAP_BLOCK_OVERHEAD,
                    Value::Text(b) | Value::Bytes(b) | Value::Geometry(b) => {
                        b.capacity() + HEAP_BLOCK_OVERHEAD
                    }
                    _ => 0,
                })
                .sum();
            values.capacity() * std::mem::size_of::<Value>() + HEAP_BLOCK_OVERHEAD + heap
        }
        std::mem::size_of::<RowChange>() + image(&self.before) + image(&self.after)
    }
}

impl Transaction {
    /// About how many bytes the row changes hold in memory (see [`RowChange::mem_bytes`]).
    pub fn mem_bytes(&self) -> usize {
        self.changes.iter().map(RowChange::mem_bytes).sum()
    }

    /// Number of row changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.ddl.is_none()
    }

    /// The flat records of this transaction, in order. Changes whose table index is out of
    /// range (a malformed transaction) are skipped.
    pub fn records(&self) -> impl Iterator<Item = ChangeRecord<'_>> + '_ {
        (0..self.changes.len()).filter_map(move |i| self.record(i))
    }

    /// The record of change `i` (constant time: publishers call it once per row of large
    /// transactions); `None` when `i` is out of range or the change's table index is.
    pub fn record(&self, i: usize) -> Option<ChangeRecord<'_>> {
        let c = self.changes.get(i)?;
        let table = self.tables.get(c.table as usize)?;
        Some(ChangeRecord {
            origin: &self.origin,
            gtid: self.gtid,
            position: &self.position,
            txn_id: self.txn_id,
            seq: i as u32,
            commit_ts_ms: self.commit_ts_ms,
            table,
            op: c.op,
            before: c.before.as_deref(),
            after: c.after.as_deref(),
        })
    }
}

impl ChangeRecord<'_> {
    /// The identifying key of the row: `(column name, value)` pairs taken from the after image
    /// (or the before image for deletes). Empty when the table has no usable key.
    pub fn key(&self) -> Vec<(&str, &Value)> {
        let image = match self.op {
            Op::Delete => self.before,
            _ => self.after.or(self.before),
        };
        let Some(image) = image else {
            return Vec::new();
        };
        self.table
            .key
            .iter()
            .filter_map(|&i| {
                let col = self.table.columns.get(i as usize)?;
                Some((col.name.as_str(), image.get(i as usize)?))
            })
            .collect()
    }
}

/// Loop prevention by marker (`loop_prevention = "marker"`, for servers without MariaDB's
/// `skip_replication`): the applier writes a row into this table in every transaction it
/// applies and starts every statement it runs outside a transaction (DDL) with
/// [`LOOP_MARKER_COMMENT`]; an agent publishes neither kind of transaction again.
pub const LOOP_MARKER_SCHEMA: &str = "fleetsync";
pub const LOOP_MARKER_TABLE: &str = "loop_marker";
pub const LOOP_MARKER_COMMENT: &str = "/* fleetsync:applied */ ";
