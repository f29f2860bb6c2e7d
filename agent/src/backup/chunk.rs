//! Splitting a table into key ranges that N connections can dump in parallel.
//!
//! * A single integer key: `MIN`/`MAX`, then value ranges sized for `chunk_rows` from the
//!   table's row estimate. When the keys are sparse (the value span is far wider than the row
//!   count) the ranges would be mostly empty, so such tables use keyset boundaries instead.
//! * Any other key (strings, dates, composite): keyset boundaries, each found by an
//!   index-only `ORDER BY key LIMIT 1 OFFSET chunk_rows-1` scan after the previous one.
//! * No key: the whole table in one query (the dumper still cuts it into several files).
//!
//! Invariant: the ranges of a table are disjoint and cover every possible key (the first is
//! open below, the last open above), whatever the estimates said. Boundaries may be planned
//! outside the snapshot; only coverage matters, and it holds for any boundary values.
//!
//! String key boundaries are passed back as parameters on a `SET NAMES binary` session, so
//! each is wrapped in `CONVERT(? USING cs) COLLATE coll` with the column's own collation:
//! comparisons then follow the index order (a bare binary parameter would compare bytes).

use fleetsync_proto::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::BackupError;
use crate::SourceError;
pub use fleetsync_proto::sql::ident as quote;

/// Sparse-key threshold: value span per estimated row above which ranges switch to keyset
/// boundaries.
const SPARSE_FACTOR: i128 = 16;

/// A key column and how to compare a boundary against it.
#[derive(Debug, Clone)]
pub struct KeyCol {
    pub name: String,
    pub ty: ColumnType,
    pub charset: Option<String>,
    pub collation: Option<String>,
}

/// One unit of dump work within a table.
#[derive(Debug, Clone)]
pub enum Range {
    All,
    /// `lo <= key < hi`, either bound open when `None`.
    Int {
        lo: Option<i128>,
        hi: Option<i128>,
    },
    /// `after < key <= upto` (row comparison in index order), either bound open when `None`.
    Keyset {
        after: Option<Vec<Value>>,
        upto: Option<Vec<Value>>,
    },
}

fn is_int(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::MediumInt
            | ColumnType::Int
            | ColumnType::BigInt
    )
}

fn param(k: &KeyCol) -> String {
    match (&k.charset, &k.collation) {
        (Some(cs), Some(coll)) => format!("CONVERT(? USING {cs}) COLLATE {coll}"),
        _ => "?".to_string(),
    }
}

/// A row comparison in index order, expanded so the range optimizer uses it:
/// `(k1 OP ?) OR (k1 = ? AND k2 OP ?) ... OR (k1 = ? AND ... AND kn LAST_OP ?)`.
/// `(">", ">")` is "after", `("<", "<=")` is "up to and including".
fn compare(key: &[KeyCol], op: &str, last_op: &str) -> String {
    let mut terms = Vec::with_capacity(key.len());
    for i in 0..key.len() {
        let mut t: Vec<String> = key[..i]
            .iter()
            .map(|k| format!("{} = {}", quote(&k.name), param(k)))
            .collect();
        let o = if i + 1 == key.len() { last_op } else { op };
        t.push(format!("{} {o} {}", quote(&key[i].name), param(&key[i])));
        terms.push(format!("({})", t.join(" AND ")));
    }
    terms.join(" OR ")
}

/// Parameters for [`compare`]: for term i, the first i values then value i.
fn compare_params(vals: &[Value], out: &mut Vec<Value>) {
    for i in 0..vals.len() {
        out.extend(vals[..=i].iter().cloned());
    }
}

/// The `WHERE` clause (with leading space, or empty) and parameters for `range`.
pub fn where_clause(key: &[KeyCol], range: &Range) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut conds = Vec::new();
    match range {
        Range::All => {}
        Range::Int { lo, hi } => {
            if let (Some(k), Some(lo)) = (key.first(), lo) {
                conds.push(format!("{} >= {lo}", quote(&k.name)));
            }
            if let (Some(k), Some(hi)) = (key.first(), hi) {
                conds.push(format!("{} < {hi}", quote(&k.name)));
            }
        }
        Range::Keyset { after, upto } => {
            if let Some(a) = after {
                conds.push(format!("({})", compare(key, ">", ">")));
                compare_params(a, &mut params);
            }
            if let Some(u) = upto {
                conds.push(format!("({})", compare(key, "<", "<=")));
                compare_params(u, &mut params);
            }
        }
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), params)
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Plans the ranges of `table` (quoted `db`.`t`) with key `key` and about `est_rows` rows.
pub async fn plan(
    conn: &mut Conn,
    server: &str,
    table: &str,
    key: &[KeyCol],
    est_rows: u64,
    chunk_rows: usize,
) -> Result<Vec<Range>, BackupError> {
    let chunk = chunk_rows.max(1) as u64;
    if key.is_empty() || est_rows <= chunk + chunk / 2 {
        return Ok(vec![Range::All]);
    }
    if key.len() == 1 && is_int(key[0].ty) {
        let k = quote(&key[0].name);
        let sql = format!("SELECT MIN({k}), MAX({k}) FROM {table}");
        let mm: Option<(Value, Value)> = conn.exec_first(sql, ()).await.map_err(|e| {
            BackupError::Source(SourceError::from_mysql(
                server,
                &format!("planning {table}"),
                e,
            ))
        })?;
        let Some((Some(min), Some(max))) = mm.map(|(a, b)| (as_i128(&a), as_i128(&b))) else {
            return Ok(vec![Range::All]);
        };
        let span = max - min + 1;
        let n = i128::from(est_rows.div_ceil(chunk)).max(1);
        if span <= i128::from(est_rows) * SPARSE_FACTOR {
            return Ok(int_ranges(min, span, n));
        }
    }
    keyset_ranges(conn, server, table, key, chunk).await
}

/// `n` ranges of equal width over `[min, min + span)`, the outer two open-ended.
pub fn int_ranges(min: i128, span: i128, n: i128) -> Vec<Range> {
    let step = ((span + n - 1) / n).max(1);
    let mut out = Vec::new();
    let mut lo: Option<i128> = None;
    let mut next = min + step;
    while next < min + span {
        out.push(Range::Int { lo, hi: Some(next) });
        lo = Some(next);
        next += step;
    }
    out.push(Range::Int { lo, hi: None });
    out
}

async fn keyset_ranges(
    conn: &mut Conn,
    server: &str,
    table: &str,
    key: &[KeyCol],
    chunk: u64,
) -> Result<Vec<Range>, BackupError> {
    let cols: Vec<String> = key.iter().map(|k| quote(&k.name)).collect();
    let cols = cols.join(", ");
    let mut out = Vec::new();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let range = Range::Keyset {
            after: after.clone(),
            upto: None,
        };
        let (cond, params) = where_clause(key, &range);
        let sql = format!(
            "SELECT {cols} FROM {table}{cond} ORDER BY {cols} LIMIT 1 OFFSET {}",
            chunk - 1
        );
        let row: Option<mysql_async::Row> = conn.exec_first(sql, params).await.map_err(|e| {
            BackupError::Source(SourceError::from_mysql(
                server,
                &format!("planning {table}"),
                e,
            ))
        })?;
        match row {
            Some(r) => {
                let b = r.unwrap();
                out.push(Range::Keyset {
                    after: after.take(),
                    upto: Some(b.clone()),
                });
                after = Some(b);
            }
            None => {
                out.push(Range::Keyset { after, upto: None });
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str, cs: bool) -> KeyCol {
        KeyCol {
            name: name.into(),
            ty: ColumnType::VarChar,
            charset: cs.then(|| "utf8mb4".into()),
            collation: cs.then(|| "utf8mb4_general_ci".into()),
        }
    }

    #[test]
    fn int_ranges_cover_everything() {
        let r = int_ranges(1, 100, 4);
        let bounds: Vec<(Option<i128>, Option<i128>)> = r
            .iter()
            .map(|r| match r {
                Range::Int { lo, hi } => (*lo, *hi),
                _ => (None, None),
            })
            .collect();
        assert_eq!(
            bounds,
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        assert_eq!(int_ranges(5, 1, 3).len(), 1);
    }

    #[test]
    fn keyset_where() {
        let key = vec![k("a", false), k("b", true)];
        let (w, p) = where_clause(
            &key,
            &Range::Keyset {
                after: Some(vec![Value::Int(1), Value::Bytes(b"x".to_vec())]),
                upto: Some(vec![Value::Int(2), Value::Bytes(b"y".to_vec())]),
            },
        );
        let cv = "CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci";
        assert_eq!(
            w,
            format!(" WHERE ((`a` > ?) OR (`a` = ? AND `b` > {cv})) AND ((`a` < ?) OR (`a` = ? AND `b` <= {cv}))")
        );
        assert_eq!(p.len(), 6);
        let (w, p) = where_clause(
            &key[..1],
            &Range::Int {
                lo: Some(-5),
                hi: None,
            },
        );
        assert_eq!((w.as_str(), p.len()), (" WHERE `a` >= -5", 0));
    }
}
