//! SQL text of the data diff: each row's canonical byte string, key-range conditions and key
//! literals.
//!
//! Canonical row bytes (`CONCAT_WS('#', e1, ..., en, nullmap)`), one term per column:
//! * integers, DECIMAL, YEAR, DATE, TIME, DATETIME, DOUBLE: the server's text form, which is
//!   exact (DECIMAL keeps its scale, temporal types their declared fraction, DOUBLE prints
//!   its shortest round-trip form); TIMESTAMP in the session's UTC;
//! * FLOAT: `CAST(c AS DOUBLE)` (the text form of a FLOAT rounds to 6 digits: 16777216 and
//!   16777217 both print `16777200`; the widened double is exact);
//! * BIT, ENUM, SET: `c+0` (the number);
//! * CHAR/VARCHAR/BINARY/VARBINARY: the stored bytes, compared as bytes (a change of letter
//!   case or trailing space under a case-insensitive, PAD SPACE collation is a difference);
//!   when a table has two or more such columns each is length-prefixed,
//!   `CONCAT(OCTET_LENGTH(c), ':', CAST(c AS BINARY))`, so no separator can shift between
//!   them and mixed charsets are not converted; with one, the bare column (the string still
//!   splits uniquely: no other term contains `#`; the other terms are ASCII text, which
//!   converts losslessly into the column's charset, so CRC32 sees the column's own bytes);
//! * TEXT/BLOB/JSON/GEOMETRY: `MD5(CAST(c AS BINARY))` (bounded size: a CONCAT longer than
//!   max_allowed_packet would be NULL);
//! * `nullmap`: `CONCAT(ISNULL(c1), ...)` over the nullable columns (a bare `ISNULL(c)` for
//!   one), so NULL and `''` differ (CONCAT_WS skips NULLs).
//!
//! Key literals: character values are written as `_charset X'hex'` (their exact bytes, and a
//! coercible literal, so the comparison uses the column's collation and the index); other
//! values with [`fleetsync_proto::sql::push_value`]. Ranges use the expanded form
//! `(k1 > a) OR (k1 = a AND k2 > b)` that the range optimizer turns into index ranges.

use fleetsync_proto::datadiff::KeyRange;
use fleetsync_proto::sql::{push_hex, push_table, push_value};
use fleetsync_proto::{ColumnType, Value};

use super::{DiffTable, RowChecksum};
pub use fleetsync_proto::sql::ident;

/// The select list of a chunk checksum: `COUNT(*)` and two sums (0 when empty); with
/// [`RowChecksum::Crc32`] the second sum is the constant 0. The sums are exact DECIMALs, or
/// with `float` DOUBLEs (`+ 0e0`: cheaper to accumulate, above all per `GROUP BY` bucket),
/// which are exact only while `COUNT(*) < 2^21` (2^21 sums of values below 2^32 stay below
/// 2^53): see [`FLOAT_EXACT_ROWS`].
pub fn chunk_aggregates(t: &DiffTable, kind: RowChecksum, float: bool) -> String {
    let f = if float { " + 0e0" } else { "" };
    match kind {
        RowChecksum::Crc32 => format!("COUNT(*), COALESCE(SUM(CRC32({}){f}), 0), 0", row_bytes(t)),
        RowChecksum::Crc64 => format!(
            "COUNT(*), COALESCE(SUM(CRC32(@fs_r := {}){f}), 0), COALESCE(SUM(CRC32C(@fs_r){f}), 0)",
            row_bytes(t)
        ),
    }
}

/// Rows below which DOUBLE sums of 32-bit CRCs are exact.
pub const FLOAT_EXACT_ROWS: u64 = 1 << 21;

/// A row's 64-bit hash: CRC32 (high half) and CRC32C (low half) of its canonical bytes.
pub fn row_hash(t: &DiffTable) -> String {
    format!("(CRC32(@fs_r := {}) << 32) | CRC32C(@fs_r)", row_bytes(t))
}

/// Whether a column's term can contain the separator `#` (its stored bytes).
fn raw_bytes(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Char | ColumnType::VarChar | ColumnType::Binary | ColumnType::VarBinary
    )
}

/// `CONCAT_WS(...)` of the canonical bytes of a row.
pub fn row_bytes(t: &DiffTable) -> String {
    let mut terms: Vec<String> = Vec::with_capacity(t.schema.columns.len() + 1);
    let mut nulls: Vec<String> = Vec::new();
    // With at most one term that can hold `#`, splitting at the separators decodes the string
    // uniquely (every other term is free of `#`, the NULL bitmap says which are absent), so
    // the length prefix is only needed from two such columns on.
    let prefix = t.schema.columns.iter().filter(|c| raw_bytes(c.ty)).count() > 1;
    for c in &t.schema.columns {
        let q = ident(&c.name);
        terms.push(match c.ty {
            ColumnType::Float => format!("CAST({q} AS DOUBLE)"),
            ColumnType::Bit | ColumnType::Enum | ColumnType::Set => format!("{q}+0"),
            ty if raw_bytes(ty) && prefix => {
                format!("CONCAT(OCTET_LENGTH({q}),':',CAST({q} AS BINARY))")
            }
            // The only character term: every other term is ASCII text (digits, signs, hex),
            // which converts losslessly into the column's charset, so its bytes are kept
            // without a cast.
            ty if raw_bytes(ty) => q.clone(),
            ColumnType::Text | ColumnType::Blob | ColumnType::Json | ColumnType::Geometry => {
                format!("MD5(CAST({q} AS BINARY))")
            }
            _ => q.clone(),
        });
        if c.nullable {
            nulls.push(format!("ISNULL({q})"));
        }
    }
    match nulls.len() {
        0 => {}
        1 => terms.append(&mut nulls),
        _ => terms.push(format!("CONCAT({})", nulls.join(","))),
    }
    format!("CONCAT_WS('#',{})", terms.join(","))
}

/// The select list that reads a column so that `decode::from_mysql` takes it (ENUM/SET as
/// numbers).
pub fn select_column(t: &DiffTable, i: usize) -> String {
    let c = &t.schema.columns[i];
    match c.ty {
        ColumnType::Enum | ColumnType::Set => format!("{}+0", ident(&c.name)),
        _ => ident(&c.name),
    }
}

/// Every column, for reading whole rows.
pub fn select_all(t: &DiffTable) -> String {
    (0..t.schema.columns.len())
        .map(|i| select_column(t, i))
        .collect::<Vec<_>>()
        .join(",")
}

/// The key columns, for reading keys.
pub fn select_key(t: &DiffTable) -> String {
    t.key()
        .map(|i| select_column(t, i))
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments of a `CONCAT` that is a row's key identity: one length-prefixed term per
/// key column (so no two different key tuples give equal bytes): collation weights for
/// character columns (trailing spaces trimmed under PAD SPACE collations, which compare
/// them away), the value's bytes otherwise.
pub fn identity(t: &DiffTable) -> String {
    t.key()
        .map(|i| {
            let c = &t.schema.columns[i];
            let q = ident(&c.name);
            let pad = !t.collations[i]
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("nopad");
            match c.ty {
                ColumnType::Char | ColumnType::VarChar | ColumnType::Text if pad => {
                    format!("WEIGHT_STRING(RTRIM({q}))")
                }
                ColumnType::Char | ColumnType::VarChar | ColumnType::Text => {
                    format!("WEIGHT_STRING({q})")
                }
                _ => format!("CAST({} AS BINARY)", select_column(t, i)),
            }
        })
        .map(|e| format!("OCTET_LENGTH({e}),':',{e}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `` `db`.`t` `` plus `FORCE INDEX` for the key's index when there is one.
pub fn from_table(t: &DiffTable) -> String {
    let mut buf = Vec::new();
    push_table(&mut buf, &t.schema.schema, &t.schema.table);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if let Some(index) = &t.key_index {
        s.push_str(" FORCE INDEX (");
        s.push_str(&ident(index));
        s.push(')');
    }
    s
}

/// `ORDER BY` list of the key.
pub fn order_by_key(t: &DiffTable) -> String {
    t.key()
        .map(|i| ident(&t.schema.columns[i].name))
        .collect::<Vec<_>>()
        .join(",")
}

/// The WHERE condition of a range (`1` for the whole key space).
pub fn range_condition(t: &DiffTable, r: &KeyRange) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(lo) = &r.lower {
        parts.push(compare(t, lo, ">", ">")?);
    }
    if let Some(hi) = &r.upper {
        parts.push(compare(t, hi, "<", "<=")?);
    }
    Ok(if parts.is_empty() {
        "1".to_string()
    } else {
        parts.join(" AND ")
    })
}

/// `(k1 OP a) OR (k1 = a AND k2 OP b) ...` where the last term uses `last_op`.
fn compare(t: &DiffTable, vals: &[Value], op: &str, last_op: &str) -> Result<String, String> {
    let cols: Vec<usize> = t.key().collect();
    if cols.len() != vals.len() {
        return Err(format!(
            "{}.{}: a key bound has {} values for {} key columns",
            t.schema.schema,
            t.schema.table,
            vals.len(),
            cols.len()
        ));
    }
    let mut terms = Vec::with_capacity(cols.len());
    for n in 0..cols.len() {
        let mut conj = Vec::with_capacity(n + 1);
        for (j, &c) in cols[..n].iter().enumerate() {
            conj.push(format!(
                "{} = {}",
                ident(&t.schema.columns[c].name),
                key_literal(t, c, &vals[j])?
            ));
        }
        let o = if n + 1 == cols.len() { last_op } else { op };
        conj.push(format!(
            "{} {o} {}",
            ident(&t.schema.columns[cols[n]].name),
            key_literal(t, cols[n], &vals[n])?
        ));
        terms.push(format!("({})", conj.join(" AND ")));
    }
    Ok(format!("({})", terms.join(" OR ")))
}

/// `WHERE` condition matching exactly these keys (`k1 = a AND k2 = b`) OR ...
pub fn keys_condition(t: &DiffTable, keys: &[Vec<Value>]) -> Result<String, String> {
    let cols: Vec<usize> = t.key().collect();
    let mut terms = Vec::with_capacity(keys.len());
    for k in keys {
        let mut conj = Vec::with_capacity(cols.len());
        for (j, &c) in cols.iter().enumerate() {
            let v = k.get(j).ok_or("key with too few values")?;
            conj.push(format!(
                "{} = {}",
                ident(&t.schema.columns[c].name),
                key_literal(t, c, v)?
            ));
        }
        terms.push(format!("({})", conj.join(" AND ")));
    }
    Ok(if terms.is_empty() {
        "0".to_string()
    } else {
        terms.join(" OR ")
    })
}

/// A literal for column `col` that compares with the column's own collation.
pub fn key_literal(t: &DiffTable, col: usize, v: &Value) -> Result<String, String> {
    let c = &t.schema.columns[col];
    let mut buf = Vec::new();
    match (v, &c.charset) {
        (Value::Text(bytes), Some(cs)) => {
            buf.push(b'_');
            buf.extend_from_slice(cs.as_bytes());
            buf.push(b' ');
            push_hex(&mut buf, bytes);
        }
        (Value::Text(bytes) | Value::Bytes(bytes), _) => push_hex(&mut buf, bytes),
        _ => push_value(&mut buf, v).map_err(|e| e.to_string())?,
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
