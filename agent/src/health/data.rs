//! Data checks: `foreign_keys` (orphaned child rows) and `data_integrity` (invalid dates,
//! NULLs in columns meant to hold a value).
//!
//! Every query here scans a table, so each is bounded: tables whose estimated row count is
//! above `[health] scan_max_rows` are not scanned and are listed as skipped (the check then
//! warns), and every statement runs under the session's `max_statement_time`.
//!
//! "NOT NULL-intended" columns (the schema allows NULL, the data model does not), as
//! interpreted here:
//! * a nullable column named `id` or ending in `_id` that is not the child side of a foreign
//!   key (a nullable foreign key column is an optional relation; a nullable `*_id` without one
//!   is most often a missing NOT NULL);
//! * in a table without a primary key, the nullable columns of its unique keys: a NULL there
//!   means the key cannot identify the row (fleetsync then falls back to matching the whole
//!   row, like row-based replication).
//!
//! Invalid dates: DATE, DATETIME and TIMESTAMP values with a zero year-month-day
//! (`0000-00-00`), a zero month or day (`2020-00-15`), or a day past the month's end
//! (`2020-02-31`, stored under `ALLOW_INVALID_DATES`). Such values break clients and cannot
//! be written under the default strict `sql_mode`.

use fleetsync_proto::health::{CheckResult, CheckStatus};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::json;

use super::catalog::{ColumnInfo, ForeignKey, TableInfo};
use super::schema::{qualified, supporting_index};
use super::{result, Ctx};
use fleetsync_proto::sql::ident as quoted;

fn too_big(t: &TableInfo, ctx: &Ctx<'_>) -> bool {
    t.rows > ctx.cfg.scan_max_rows
}

/// The WHERE clause selecting `fk`'s orphans in child alias `c`.
fn orphan_condition(fk: &ForeignKey) -> String {
    let not_null: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", quoted(c)))
        .collect();
    let join: Vec<String> = fk
        .columns
        .iter()
        .zip(&fk.ref_columns)
        .map(|(c, p)| format!("p.{} = c.{}", quoted(p), quoted(c)))
        .collect();
    format!(
        "{} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
        not_null.join(" AND "),
        qualified(&fk.ref_schema, &fk.ref_table),
        join.join(" AND ")
    )
}

/// `foreign_keys`: child rows whose parent row is missing (only with every child column
/// non-NULL, as MATCH SIMPLE defines it).
pub async fn foreign_keys(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    let cat = &ctx.catalog;
    let (mut orphaned, mut skipped, mut missing_parent) = (Vec::new(), Vec::new(), Vec::new());
    let mut checked = 0usize;
    for fk in &cat.foreign_keys {
        let label = json!({"constraint": fk.name, "table": format!("{}.{}", fk.schema, fk.table),
                           "references": format!("{}.{}", fk.ref_schema, fk.ref_table)});
        let (Some(child), parent) = (
            cat.table(&fk.schema, &fk.table),
            cat.table(&fk.ref_schema, &fk.ref_table),
        ) else {
            continue;
        };
        let Some(parent) = parent else {
            missing_parent.push(label);
            continue;
        };
        let parent_unindexed = supporting_index(
            cat.indexes_of(&parent.schema, &parent.name),
            &fk.ref_columns,
        )
        .is_none();
        if too_big(child, ctx) || (parent_unindexed && too_big(parent, ctx)) {
            let mut l = label;
            l["reason"] = json!(format!(
                "more than scan_max_rows={} rows",
                ctx.cfg.scan_max_rows
            ));
            skipped.push(l);
            continue;
        }
        checked += 1;
        let cond = orphan_condition(fk);
        let from = format!("FROM {} c WHERE {cond}", qualified(&fk.schema, &fk.table));
        let count: Option<u64> = conn.query_first(format!("SELECT COUNT(*) {from}")).await?;
        let count = count.unwrap_or(0);
        if count == 0 {
            continue;
        }
        let quoted_cols: Vec<String> = fk
            .columns
            .iter()
            .map(|c| format!("QUOTE(c.{})", quoted(c)))
            .collect();
        let sample: Vec<Vec<u8>> = conn
            .query(format!(
                "SELECT DISTINCT CONCAT_WS(', ', {}) {from} LIMIT {}",
                quoted_cols.join(", "),
                ctx.cfg.sample_limit
            ))
            .await?;
        let mut l = label;
        l["columns"] = json!(fk.columns);
        l["orphaned_rows"] = json!(count);
        l["missing_parent_keys"] = json!(sample
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>());
        l["list_with"] = json!(format!("SELECT c.* {from}"));
        orphaned.push(l);
    }
    let evidence = json!({
        "foreign_keys": cat.foreign_keys.len(),
        "checked": checked,
        "orphaned": orphaned,
        "parent_table_missing": missing_parent,
        "skipped_too_large": skipped,
    });
    let mut findings = Vec::new();
    let rows: u64 = orphaned
        .iter()
        .filter_map(|o| o["orphaned_rows"].as_u64())
        .sum();
    if !orphaned.is_empty() {
        findings.push(format!(
            "{rows} orphaned row(s) under {} foreign key(s)",
            orphaned.len()
        ));
    }
    if !missing_parent.is_empty() {
        findings.push(format!(
            "{} foreign key(s) reference a missing table",
            missing_parent.len()
        ));
    }
    let status = if !findings.is_empty() {
        CheckStatus::Fail
    } else if !skipped.is_empty() {
        findings.push(format!(
            "{} foreign key(s) not checked: table above scan_max_rows",
            skipped.len()
        ));
        CheckStatus::Warn
    } else {
        findings.push(format!(
            "{checked} foreign key(s) checked, no orphaned rows"
        ));
        CheckStatus::Pass
    };
    let mut r = result("foreign_keys", status, findings.join("; "), evidence);
    if !orphaned.is_empty() {
        r.suggestions.push(
            "orphaned rows were written with FOREIGN_KEY_CHECKS=0 or before the constraint existed: restore the missing parent rows or delete the orphans (list them with the evidence's list_with query)".into(),
        );
    }
    if !skipped.is_empty() {
        r.suggestions.push("raise [health] scan_max_rows to check the large tables too (each check scans the whole table)".into());
    }
    Ok(r)
}

fn is_date(c: &ColumnInfo) -> bool {
    matches!(c.data_type.as_str(), "date" | "datetime" | "timestamp")
}

fn id_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id" || n.ends_with("_id")
}

/// The nullable columns of `t` meant to hold a value (see the module docs).
fn not_null_intended<'a>(ctx: &'a Ctx<'_>, t: &TableInfo) -> Vec<&'a ColumnInfo> {
    let cat = &ctx.catalog;
    let indexes = cat.indexes_of(&t.schema, &t.name);
    let has_pk = indexes.iter().any(|i| i.is_primary());
    let fk_cols: Vec<&str> = cat
        .foreign_keys
        .iter()
        .filter(|f| f.schema == t.schema && f.table == t.name)
        .flat_map(|f| f.columns.iter().map(String::as_str))
        .collect();
    cat.columns_of(&t.schema, &t.name)
        .iter()
        .filter(|c| c.nullable)
        .filter(|c| {
            let in_unique = !has_pk
                && indexes.iter().any(|i| {
                    i.unique
                        && i.columns
                            .iter()
                            .any(|(n, _)| n.eq_ignore_ascii_case(&c.name))
                });
            let id = id_like(&c.name) && !fk_cols.iter().any(|f| f.eq_ignore_ascii_case(&c.name));
            in_unique || id
        })
        .collect()
}

fn invalid_date_expr(col: &str) -> String {
    let c = quoted(col);
    format!(
        "(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0 OR DAYOFMONTH({c}) > DAYOFMONTH(LAST_DAY({c})))"
    )
}

/// `data_integrity`: one bounded scan per table that has date or NOT NULL-intended columns.
pub async fn integrity(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<CheckResult, mysql_async::Error> {
    let (mut dates, mut nulls, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut scanned = 0usize;
    for t in &ctx.catalog.tables {
        let date_cols: Vec<&ColumnInfo> = ctx
            .catalog
            .columns_of(&t.schema, &t.name)
            .iter()
            .filter(|c| is_date(c))
            .collect();
        let null_cols = not_null_intended(ctx, t);
        if date_cols.is_empty() && null_cols.is_empty() || t.engine.is_none() {
            continue;
        }
        if too_big(t, ctx) {
            skipped.push(
                json!({"table": format!("{}.{}", t.schema, t.name), "estimated_rows": t.rows}),
            );
            continue;
        }
        scanned += 1;
        let mut sums: Vec<String> = date_cols
            .iter()
            .map(|c| format!("SUM({})", invalid_date_expr(&c.name)))
            .collect();
        sums.extend(
            null_cols
                .iter()
                .map(|c| format!("SUM({} IS NULL)", quoted(&c.name))),
        );
        let row: Option<mysql_async::Row> = conn
            .query_first(format!(
                "SELECT {} FROM {}",
                sums.join(", "),
                qualified(&t.schema, &t.name)
            ))
            .await?;
        let Some(row) = row else { continue };
        let count = |i: usize| -> u64 { row.get::<Option<u64>, _>(i).flatten().unwrap_or(0) };
        let table = qualified(&t.schema, &t.name);
        for (i, c) in date_cols.iter().enumerate() {
            let n = count(i);
            if n > 0 {
                dates.push(json!({"table": format!("{}.{}", t.schema, t.name), "column": c.name, "type": c.data_type, "invalid_values": n,
                                  "list_with": format!("SELECT * FROM {table} WHERE {} LIMIT 100", invalid_date_expr(&c.name))}));
            }
        }
        for (i, c) in null_cols.iter().enumerate() {
            let n = count(date_cols.len() + i);
            if n > 0 {
                nulls.push(json!({"table": format!("{}.{}", t.schema, t.name), "column": c.name, "null_values": n}));
            }
        }
    }
    let evidence = json!({
        "tables_scanned": scanned,
        "invalid_dates": dates,
        "nulls_in_not_null_intended_columns": nulls,
        "skipped_too_large": skipped,
    });
    let mut findings = Vec::new();
    if !dates.is_empty() {
        let n: u64 = dates
            .iter()
            .filter_map(|d| d["invalid_values"].as_u64())
            .sum();
        findings.push(format!(
            "{n} invalid date value(s) in {} column(s)",
            dates.len()
        ));
    }
    if !nulls.is_empty() {
        let n: u64 = nulls.iter().filter_map(|d| d["null_values"].as_u64()).sum();
        findings.push(format!(
            "{n} NULL(s) in {} column(s) meant to hold a value",
            nulls.len()
        ));
    }
    if !skipped.is_empty() {
        findings.push(format!(
            "{} table(s) not scanned: above scan_max_rows={}",
            skipped.len(),
            ctx.cfg.scan_max_rows
        ));
    }
    if findings.is_empty() {
        return Ok(result(
            "data_integrity",
            CheckStatus::Pass,
            format!("{scanned} table(s) scanned: no invalid dates or unexpected NULLs"),
            evidence,
        ));
    }
    let mut r = result(
        "data_integrity",
        CheckStatus::Warn,
        findings.join("; "),
        evidence,
    );
    if !dates.is_empty() {
        r.suggestions.push("replace invalid dates with NULL or a real date (zero dates fail under the default strict sql_mode and in most clients)".into());
    }
    if !nulls.is_empty() {
        r.suggestions.push("fill the NULLs, then declare the columns NOT NULL (a NULL in a unique key of a table without a primary key stops it from identifying rows)".into());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_condition_joins_every_column() {
        let fk = ForeignKey {
            schema: "app".into(),
            table: "child".into(),
            name: "fk".into(),
            columns: vec!["a".into(), "b`x".into()],
            ref_schema: "app".into(),
            ref_table: "parent".into(),
            ref_columns: vec!["pa".into(), "pb".into()],
        };
        assert_eq!(
            orphan_condition(&fk),
            "c.`a` IS NOT NULL AND c.`b``x` IS NOT NULL AND NOT EXISTS (SELECT 1 FROM `app`.`parent` p \
             WHERE p.`pa` = c.`a` AND p.`pb` = c.`b``x`)"
        );
        assert!(id_like("user_id") && id_like("ID") && !id_like("idea") && !id_like("paid"));
    }
}
