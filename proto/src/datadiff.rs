//! Data diff: what the agents compute on each side (chunk checksums, row hashes over key
//! ranges) and the report the coordinator builds from them.
//!
//! A [`KeyRange`] is half-open on the left: `lower < key <= upper` in the key's index order
//! (the column collations decide, as on the server). `None` bounds are open. Ranges are always
//! cut from real key values of one side and applied unchanged to both sides, so a row belongs
//! to the same range on both sides whenever its key compares equal.
//!
//! A [`ChunkChecksum`] is `COUNT(*)` plus the exact sum of CRC32 of each row's canonical byte
//! string and, with the stronger setting, the sum of CRC32C of the same strings (0 otherwise).
//! Two chunks are taken as equal when all three are equal. Sums rather than XORs keep duplicate rows (keyless tables) from cancelling
//! and break the XOR-linearity of CRCs (with BIT_XOR, swapping equal-length values between two
//! rows of one chunk leaves the XOR unchanged).

use serde::{Deserialize, Serialize};

use crate::Value;

/// Key values in key-column order.
pub type KeyValues = Vec<Value>;

/// `lower < key <= upper`; `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRange {
    pub lower: Option<KeyValues>,
    pub upper: Option<KeyValues>,
}

impl KeyRange {
    /// The whole key space.
    pub fn all() -> KeyRange {
        KeyRange::default()
    }
}

/// The checksum of the rows of one range on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkChecksum {
    pub rows: u64,
    /// Exact sum of CRC32 of every row's canonical bytes (the server sums as DECIMAL).
    pub crc32_sum: u128,
    /// Sum of CRC32C of the same bytes (0 when only CRC32 is summed).
    pub crc32c_sum: u128,
}

/// One row's identity and hash, as fetched when drilling into a differing range.
#[derive(Debug, Clone, PartialEq)]
pub struct RowHash {
    /// The key's values as stored (for reports and repair SQL).
    pub key: KeyValues,
    /// Bytes that are equal exactly when the keys compare equal on the server (collation
    /// weights for character columns, exact bytes for everything else).
    pub identity: Vec<u8>,
    /// CRC32 (high 32 bits) and CRC32C (low 32 bits) of the row's canonical bytes.
    pub hash: u64,
}

/// The outcome of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Equal,
    Different,
    /// Not compared (too large, time budget, schemas differ): never counts as equal.
    Skipped,
    OnlyInSource,
    OnlyInTarget,
}

/// How a table was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffMethod {
    /// Chunks over primary-key ranges.
    PrimaryKey,
    /// Chunks over the ranges of a UNIQUE key whose columns are all NOT NULL.
    UniqueKey,
    /// No usable key: whole-table multiset of row hashes.
    WholeTable,
    None,
}

/// The per-table report entry. Keys are JSON objects `{column: value}` (value encoding of
/// `codec::value_to_json`); for keyless tables they hold the whole row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub schema: String,
    pub table: String,
    /// The target's database when it has another name than the source's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_schema: Option<String>,
    pub status: TableStatus,
    pub method: DiffMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub chunks: u64,
    pub rows_source: u64,
    pub rows_target: u64,
    pub only_in_source: Vec<serde_json::Value>,
    pub only_in_target: Vec<serde_json::Value>,
    pub different: Vec<serde_json::Value>,
    pub seconds: f64,
}

impl TableReport {
    pub fn new(schema: &str, table: &str, method: DiffMethod) -> TableReport {
        TableReport {
            schema: schema.to_string(),
            table: table.to_string(),
            target_schema: None,
            status: TableStatus::Equal,
            method,
            skipped: None,
            chunks: 0,
            rows_source: 0,
            rows_target: 0,
            only_in_source: Vec::new(),
            only_in_target: Vec::new(),
            different: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Differing rows found (all three kinds).
    pub fn differing_rows(&self) -> usize {
        self.only_in_source.len() + self.only_in_target.len() + self.different.len()
    }
}

/// The whole diff.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataDiffReport {
    pub source: String,
    pub target: String,
    /// True only when every table was compared and found equal.
    pub equal: bool,
    /// False when some table was skipped.
    pub complete: bool,
    pub tables: Vec<TableReport>,
    pub chunks: u64,
    pub differing_rows: u64,
    pub skipped_tables: Vec<String>,
    /// Times the diff paused for replication lag or server load.
    pub pauses: u64,
    pub seconds: f64,
}

impl DataDiffReport {
    /// Fills the summary fields from the tables.
    pub fn finish(&mut self, seconds: f64) {
        self.chunks = self.tables.iter().map(|t| t.chunks).sum();
        self.differing_rows = self.tables.iter().map(|t| t.differing_rows() as u64).sum();
        self.skipped_tables = self
            .tables
            .iter()
            .filter(|t| t.status == TableStatus::Skipped)
            .map(|t| format!("{}.{}", t.schema, t.table))
            .collect();
        self.complete = self.skipped_tables.is_empty();
        self.equal = self.tables.iter().all(|t| t.status == TableStatus::Equal);
        self.seconds = seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_table_is_not_equal() {
        let mut r = DataDiffReport {
            source: "a".into(),
            target: "b".into(),
            equal: true,
            complete: true,
            tables: vec![TableReport::new("d", "t", DiffMethod::PrimaryKey)],
            chunks: 0,
            differing_rows: 0,
            skipped_tables: Vec::new(),
            pauses: 0,
            seconds: 0.0,
        };
        r.finish(1.0);
        assert!(r.equal && r.complete);
        r.tables[0].status = TableStatus::Skipped;
        r.finish(1.0);
        assert!(!r.equal && !r.complete);
        assert_eq!(r.skipped_tables, vec!["d.t".to_string()]);
    }
}
