//! Row-by-row, byte-exact comparison of tables between two servers.
//!
//! Both sides are read over the text protocol with `SET NAMES binary` and a UTC session time
//! zone, so each cell is compared as the bytes the server stores (strings in their column
//! charset, TIMESTAMPs as UTC). Rows are put in a deterministic order on the client: by the
//! primary key's cells when the table has one, else by every cell (which also makes the
//! comparison of a keyless table a multiset comparison, so a duplicated row is a difference).
//! A diff is a human-readable message (`Some`) or equality (`None`); the `assert_*` wrappers
//! turn a diff into an error.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::mariadb::{quote_ident, quote_str, MariaDb};

type Cell = Option<Vec<u8>>;
type RowBytes = Vec<Cell>;

/// Differences shown per table before the message is cut.
const MAX_REPORTED: usize = 3;

/// Base tables (not views) of a schema, sorted by name.
pub async fn base_tables(db: &MariaDb, schema: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
         AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        quote_str(schema)
    );
    first_column(db, &sql).await
}

/// Column names of a table in ordinal order (empty when the table does not exist).
pub async fn column_names(db: &MariaDb, schema: &str, table: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} \
         AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        quote_str(schema),
        quote_str(table)
    );
    first_column(db, &sql).await
}

/// Primary key column names in key order (empty when there is no primary key).
pub async fn primary_key(db: &MariaDb, schema: &str, table: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} \
         AND TABLE_NAME = {} AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        quote_str(schema),
        quote_str(table)
    );
    first_column(db, &sql).await
}

async fn first_column(db: &MariaDb, sql: &str) -> Result<Vec<String>> {
    let rows = db.query_strings(sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// Compares `schema_a.table` on `a` with `schema_b.table` on `b` row by row.
pub async fn diff_tables(
    a: &MariaDb,
    b: &MariaDb,
    schema_a: &str,
    schema_b: &str,
    table: &str,
) -> Result<Option<String>> {
    let name = format!("{schema_a}.{table} vs {schema_b}.{table}");
    let cols_a = column_names(a, schema_a, table).await?;
    if cols_a.is_empty() {
        bail!(
            "{schema_a}.{table} does not exist on the first server (port {})",
            a.port()
        );
    }
    let cols_b = column_names(b, schema_b, table).await?;
    if cols_b.is_empty() {
        return Ok(Some(format!("{name}: table missing on the second server")));
    }
    if cols_a != cols_b {
        return Ok(Some(format!(
            "{name}: columns differ: {cols_a:?} vs {cols_b:?}"
        )));
    }
    let pk = primary_key(a, schema_a, table).await?;
    let key_idx: Vec<usize> = pk
        .iter()
        .filter_map(|k| cols_a.iter().position(|c| c == k))
        .collect();
    let rows_a = read_rows(a, schema_a, table, &cols_a, &pk).await?;
    let rows_b = read_rows(b, schema_b, table, &cols_a, &pk).await?;
    let counts = format!("{} rows vs {} rows", rows_a.len(), rows_b.len());
    let diffs = if key_idx.is_empty() {
        multiset_diffs(rows_a, rows_b)
    } else {
        keyed_diffs(rows_a, rows_b, &key_idx)
    };
    if diffs.is_empty() {
        return Ok(None);
    }
    let mut msg = format!("{name} ({counts}) differ; columns {cols_a:?}");
    for d in &diffs {
        msg.push_str("\n  ");
        msg.push_str(d);
    }
    Ok(Some(msg))
}

/// Like [`diff_tables`], failing with the diff.
pub async fn assert_tables_equal(
    a: &MariaDb,
    b: &MariaDb,
    schema_a: &str,
    schema_b: &str,
    table: &str,
) -> Result<()> {
    match diff_tables(a, b, schema_a, schema_b, table).await? {
        None => Ok(()),
        Some(diff) => bail!("{diff}"),
    }
}

/// Compares every base table of `db_a` on `a` with the same-named table in `db_b` on `b`.
/// Tables that exist only in `db_b` are not reported (see [`diff_schemas`]).
pub async fn diff_databases(
    a: &MariaDb,
    b: &MariaDb,
    db_a: &str,
    db_b: &str,
) -> Result<Option<String>> {
    let tables = base_tables(a, db_a).await?;
    let mut out = Vec::new();
    for table in &tables {
        if let Some(d) = diff_tables(a, b, db_a, db_b, table).await? {
            out.push(d);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} of {} tables of {db_a} differ:\n{}",
        out.len(),
        tables.len(),
        out.join("\n")
    )))
}

/// Like [`diff_databases`], failing with the diff.
pub async fn assert_databases_equal(
    a: &MariaDb,
    b: &MariaDb,
    db_a: &str,
    db_b: &str,
) -> Result<()> {
    match diff_databases(a, b, db_a, db_b).await? {
        None => Ok(()),
        Some(diff) => bail!("{diff}"),
    }
}

/// Compares the base-table sets and each table's columns (name, COLUMN_TYPE, charset) of two
/// databases, both ways.
pub async fn diff_schemas(
    a: &MariaDb,
    b: &MariaDb,
    db_a: &str,
    db_b: &str,
) -> Result<Option<String>> {
    let sa = schema_columns(a, db_a).await?;
    let sb = schema_columns(b, db_b).await?;
    if sa == sb {
        return Ok(None);
    }
    let mut lines = Vec::new();
    for (table, cols) in &sa {
        match sb.get(table) {
            None => lines.push(format!("table {table} only on the first server")),
            Some(other) if other != cols => lines.push(format!(
                "table {table} columns differ:\n    {cols:?}\n    {other:?}"
            )),
            Some(_) => {}
        }
    }
    for table in sb.keys().filter(|t| !sa.contains_key(*t)) {
        lines.push(format!("table {table} only on the second server"));
    }
    Ok(Some(format!(
        "schemas {db_a} vs {db_b} differ:\n  {}",
        lines.join("\n  ")
    )))
}

/// Like [`diff_schemas`], failing with the diff.
pub async fn assert_schemas_equal(a: &MariaDb, b: &MariaDb, db_a: &str, db_b: &str) -> Result<()> {
    match diff_schemas(a, b, db_a, db_b).await? {
        None => Ok(()),
        Some(diff) => bail!("{diff}"),
    }
}

type SchemaColumns = BTreeMap<String, Vec<(String, String, String)>>;

async fn schema_columns(db: &MariaDb, schema: &str) -> Result<SchemaColumns> {
    let sql = format!(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, IFNULL(c.CHARACTER_SET_NAME, '') \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
         ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = {} AND t.TABLE_TYPE = 'BASE TABLE' \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        quote_str(schema)
    );
    let mut out = SchemaColumns::new();
    for row in db.query_strings(&sql).await? {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        out.entry(cell(0))
            .or_default()
            .push((cell(1), cell(2), cell(3)));
    }
    Ok(out)
}

async fn read_rows(
    db: &MariaDb,
    schema: &str,
    table: &str,
    cols: &[String],
    pk: &[String],
) -> Result<Vec<RowBytes>> {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        list.join(", "),
        quote_ident(schema),
        quote_ident(table)
    );
    if !pk.is_empty() {
        let keys: Vec<String> = pk.iter().map(|c| quote_ident(c)).collect();
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
    let mut rows = db.query_rows(&sql).await?;
    // The server orders by collation; the client orders by bytes, the same on both sides.
    rows.sort();
    Ok(rows)
}

fn keyed_diffs(rows_a: Vec<RowBytes>, rows_b: Vec<RowBytes>, key_idx: &[usize]) -> Vec<String> {
    let key_of = |r: &RowBytes| -> RowBytes {
        key_idx
            .iter()
            .map(|&i| r.get(i).cloned().flatten())
            .collect()
    };
    let map_a: BTreeMap<RowBytes, RowBytes> = rows_a.into_iter().map(|r| (key_of(&r), r)).collect();
    let map_b: BTreeMap<RowBytes, RowBytes> = rows_b.into_iter().map(|r| (key_of(&r), r)).collect();
    let mut keys: Vec<&RowBytes> = map_a.keys().chain(map_b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    let mut total = 0usize;
    for key in keys {
        let (ra, rb) = (map_a.get(key), map_b.get(key));
        if ra == rb {
            continue;
        }
        total += 1;
        if out.len() < MAX_REPORTED {
            out.push(format!(
                "key {}:\n    first:  {}\n    second: {}",
                show_row(key),
                ra.map_or("(missing)".to_string(), |r| show_row(r)),
                rb.map_or("(missing)".to_string(), |r| show_row(r)),
            ));
        }
    }
    if total > out.len() {
        out.push(format!("... {} differing keys in all", total));
    }
    out
}

fn multiset_diffs(rows_a: Vec<RowBytes>, rows_b: Vec<RowBytes>) -> Vec<String> {
    let mut counts: BTreeMap<RowBytes, (usize, usize)> = BTreeMap::new();
    for r in rows_a {
        counts.entry(r).or_default().0 += 1;
    }
    for r in rows_b {
        counts.entry(r).or_default().1 += 1;
    }
    let differing: Vec<(&RowBytes, &(usize, usize))> =
        counts.iter().filter(|(_, (ca, cb))| ca != cb).collect();
    let mut out: Vec<String> = differing
        .iter()
        .take(MAX_REPORTED)
        .map(|(row, (ca, cb))| format!("row {} appears {ca} times vs {cb} times", show_row(row)))
        .collect();
    if differing.len() > MAX_REPORTED {
        out.push(format!(
            "... {} differing distinct rows in all",
            differing.len()
        ));
    }
    out
}

/// Shows a row with each cell as text when it is printable UTF-8, else as hex.
pub fn show_row(row: &[Cell]) -> String {
    let cells: Vec<String> = row.iter().map(|c| show_cell(c.as_deref())).collect();
    format!("({})", cells.join(", "))
}

fn show_cell(cell: Option<&[u8]>) -> String {
    const MAX: usize = 80;
    let Some(bytes) = cell else {
        return "NULL".to_string();
    };
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control()) => {
            let shown: String = s.chars().take(MAX).collect();
            let more = if s.chars().count() > MAX { "…" } else { "" };
            format!("{shown:?}{more}")
        }
        _ => {
            let hex: String = bytes
                .iter()
                .take(MAX / 2)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if bytes.len() > MAX / 2 { "…" } else { "" };
            format!("0x{hex}{more} ({} bytes)", bytes.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> RowBytes {
        cells.iter().map(|c| Some(c.as_bytes().to_vec())).collect()
    }

    #[test]
    fn keyed_reports_missing_and_changed_rows() {
        let a = vec![row(&["1", "x"]), row(&["2", "y"])];
        let b = vec![row(&["2", "z"]), row(&["3", "w"])];
        let d = keyed_diffs(a, b, &[0]);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("(missing)"));
        assert!(d[1].contains("\"z\""));
    }

    #[test]
    fn multiset_catches_duplicates() {
        let a = vec![row(&["1"]), row(&["1"])];
        let b = vec![row(&["1"])];
        let d = multiset_diffs(a, b);
        assert_eq!(
            d,
            vec!["row (\"1\") appears 2 times vs 1 times".to_string()]
        );
        assert!(multiset_diffs(vec![row(&["1"])], vec![row(&["1"])]).is_empty());
    }

    #[test]
    fn cells_show_as_text_or_hex() {
        assert_eq!(show_cell(None), "NULL");
        assert_eq!(show_cell(Some(b"ab")), "\"ab\"");
        assert_eq!(show_cell(Some(&[0xff, 0x00])), "0xff00 (2 bytes)");
    }
}
