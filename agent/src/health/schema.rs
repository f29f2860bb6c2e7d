//! Schema checks: `tables` (presence, accessibility, corruption) and `indexes` (missing
//! primary keys, duplicate or redundant indexes, foreign keys without a supporting index).
//!
//! * A table the server cannot open shows in information_schema with no engine and the
//!   reason in its comment (a crashed MyISAM/Aria table, a missing `.ibd` file): `fail`.
//! * CHECK TABLE ... QUICK runs only on tables up to `[health] check_table_max_bytes`, in
//!   batches, until `check_table_budget_secs` is spent; the rest are listed as not checked.
//! * Index analysis is pure ([`redundant_indexes`], [`supporting_index`]); the only fix it
//!   proposes as safe is adding an index for a foreign key (online: `ALGORITHM=INPLACE,
//!   LOCK=NONE`). Dropping a duplicate index is suggested for review only: queries may name
//!   it in index hints, and which copy to keep is the operator's call.

use std::time::{Duration, Instant};

use fleetsync_proto::health::{CheckResult, CheckStatus, Fix};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::{json, Value};

use super::catalog::{IndexInfo, TableInfo};
use super::{result, Ctx};
use fleetsync_proto::sql::ident as quoted;

/// Tables per CHECK TABLE statement: few round trips, and the budget is still looked at often.
const CHECK_BATCH: usize = 16;
/// Engines CHECK TABLE ... QUICK is meaningful for.
const CHECKABLE_ENGINES: &[&str] = &["InnoDB", "MyISAM", "Aria"];

pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quoted(schema), quoted(table))
}

/// Whether information_schema says the server cannot open the table.
fn unreadable(t: &TableInfo) -> bool {
    let c = t.comment.to_ascii_lowercase();
    t.engine.is_none()
        || c.contains("crashed")
        || c.contains("doesn't exist in engine")
        || c.contains("is corrupt")
}

/// `tables`.
pub async fn tables(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<CheckResult, mysql_async::Error> {
    let cat = &ctx.catalog;
    let mut problems: Vec<Value> = Vec::new();
    let mut repair = Vec::new();
    for t in cat.tables.iter().filter(|t| unreadable(t)) {
        problems.push(json!({"table": format!("{}.{}", t.schema, t.name), "engine": t.engine, "problem": t.comment}));
        if t.comment.to_ascii_lowercase().contains("crashed") {
            repair.push(format!("REPAIR TABLE {}", qualified(&t.schema, &t.name)));
        }
    }
    let mut unmatched: Vec<String> = Vec::new();
    if let Some(f) = &ctx.target.source_filter {
        let all: Vec<(String, String)> = cat
            .tables
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        unmatched = f
            .unmatched_includes(&all)
            .into_iter()
            .map(str::to_string)
            .collect();
    }
    let checked = check_tables(conn, ctx).await?;
    for (table, msg) in &checked.problems {
        problems.push(json!({"table": table, "problem": msg, "found_by": "CHECK TABLE QUICK"}));
        if msg.to_ascii_lowercase().contains("crashed") {
            let (s, n) = table.split_once('.').unwrap_or((table, ""));
            repair.push(format!("REPAIR TABLE {}", qualified(s, n)));
        }
    }
    let evidence = json!({
        "tables": cat.tables.len(),
        "problems": problems,
        "include_patterns_matching_nothing": unmatched,
        "checked_quick": checked.checked,
        "not_checked_over_size": checked.over_size,
        "not_checked_over_budget": checked.over_budget,
        "check_table_max_bytes": ctx.cfg.check_table_max_bytes,
    });
    let mut findings = Vec::new();
    if !problems.is_empty() {
        findings.push(format!("{} table(s) unreadable or corrupt", problems.len()));
    }
    if !unmatched.is_empty() {
        findings.push(format!("include pattern(s) {unmatched:?} match no table"));
    }
    if findings.is_empty() {
        let mut s = format!(
            "{} table(s) readable; {} checked with CHECK TABLE QUICK",
            cat.tables.len(),
            checked.checked
        );
        if checked.over_size + checked.over_budget > 0 {
            s.push_str(&format!(
                " ({} too big or over the time budget, not checked)",
                checked.over_size + checked.over_budget
            ));
        }
        return Ok(result("tables", CheckStatus::Pass, s, evidence));
    }
    let mut r = result("tables", CheckStatus::Fail, findings.join("; "), evidence);
    if !repair.is_empty() {
        r.suggestions.push("repair crashed MyISAM/Aria tables (REPAIR TABLE; take a copy of the files first: a repair can drop damaged rows)".into());
        r.fix = Some(Fix {
            sql: repair,
            safe: false,
        });
    }
    if problems
        .iter()
        .any(|p| p["engine"].is_null() && !p["problem"].as_str().unwrap_or("").contains("crashed"))
    {
        r.suggestions.push("an InnoDB table that cannot be opened usually lost its .ibd file: restore it from a backup".into());
    }
    if !unmatched.is_empty() {
        r.suggestions
            .push("fix the sync's include patterns or create the tables they name".into());
    }
    Ok(r)
}

#[derive(Default)]
struct Checked {
    checked: usize,
    over_size: usize,
    over_budget: usize,
    /// `schema.table` and the message.
    problems: Vec<(String, String)>,
}

async fn check_tables(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<Checked, mysql_async::Error> {
    let mut out = Checked::default();
    let mut todo: Vec<&TableInfo> = Vec::new();
    for t in ctx.catalog.tables.iter().filter(|t| !unreadable(t)) {
        let engine = t.engine.as_deref().unwrap_or("");
        if !CHECKABLE_ENGINES
            .iter()
            .any(|e| e.eq_ignore_ascii_case(engine))
        {
            continue;
        }
        if t.bytes > ctx.cfg.check_table_max_bytes {
            out.over_size += 1;
        } else {
            todo.push(t);
        }
    }
    let budget = Duration::from_secs(ctx.cfg.check_table_budget_secs);
    let started = Instant::now();
    for (i, batch) in todo.chunks(CHECK_BATCH).enumerate() {
        if started.elapsed() >= budget {
            out.over_budget = todo.len() - i * CHECK_BATCH;
            break;
        }
        let names: Vec<String> = batch
            .iter()
            .map(|t| qualified(&t.schema, &t.name))
            .collect();
        let rows: Vec<(String, String, String, String)> = conn
            .query(format!("CHECK TABLE {} QUICK", names.join(", ")))
            .await?;
        out.checked += batch.len();
        for (table, _op, kind, text) in rows {
            let kind = kind.to_ascii_lowercase();
            let bad = kind == "error"
                || (kind == "status"
                    && !text.eq_ignore_ascii_case("OK")
                    && !text.contains("up to date"))
                || text.to_ascii_lowercase().contains("crashed");
            if bad {
                out.problems.push((table, text));
            }
        }
    }
    Ok(out)
}

/// An index made unnecessary by another one of the same table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redundant {
    pub index: String,
    pub covered_by: String,
    /// Same columns (a duplicate) rather than a left prefix.
    pub duplicate: bool,
}

fn strength(i: &IndexInfo) -> u8 {
    match (i.is_primary(), i.unique) {
        (true, _) => 2,
        (false, true) => 1,
        _ => 0,
    }
}

fn same_column(a: &(String, Option<u64>), b: &(String, Option<u64>)) -> bool {
    a.0.eq_ignore_ascii_case(&b.0) && a.1 == b.1
}

/// Indexes whose columns equal (duplicate) or are a left prefix of (redundant) another index
/// of the same kind. A unique index is never redundant to a longer one (it enforces
/// uniqueness); of two equal ones the weaker (non-unique, then the later name) is reported;
/// the primary key never is. FULLTEXT and SPATIAL indexes are left alone.
pub fn redundant_indexes(indexes: &[IndexInfo]) -> Vec<Redundant> {
    let mut out: Vec<Redundant> = Vec::new();
    for a in indexes.iter().filter(|a| !a.is_primary()) {
        if matches!(a.kind.as_str(), "FULLTEXT" | "SPATIAL") {
            continue;
        }
        let mut best: Option<Redundant> = None;
        for b in indexes
            .iter()
            .filter(|b| b.name != a.name && b.kind == a.kind)
        {
            if a.columns.len() > b.columns.len()
                || !a
                    .columns
                    .iter()
                    .zip(&b.columns)
                    .all(|(x, y)| same_column(x, y))
            {
                continue;
            }
            let duplicate = a.columns.len() == b.columns.len();
            let redundant = if duplicate {
                strength(a) < strength(b) || (strength(a) == strength(b) && a.name > b.name)
            } else {
                !a.unique
            };
            if redundant && best.as_ref().is_none_or(|r| duplicate && !r.duplicate) {
                best = Some(Redundant {
                    index: a.name.clone(),
                    covered_by: b.name.clone(),
                    duplicate,
                });
            }
        }
        out.extend(best);
    }
    out
}

/// The index whose leading columns are exactly `columns` (whole columns, any order of the
/// rest), if any: what a foreign key needs on both of its sides.
pub fn supporting_index<'a>(indexes: &'a [IndexInfo], columns: &[String]) -> Option<&'a IndexInfo> {
    indexes.iter().find(|i| {
        i.columns.len() >= columns.len()
            && !matches!(i.kind.as_str(), "FULLTEXT" | "SPATIAL")
            && columns
                .iter()
                .zip(&i.columns)
                .all(|(c, (ic, sub))| c.eq_ignore_ascii_case(ic) && sub.is_none())
    })
}

/// A name for a new index on a table that has `existing`: `base`, or `base_2`, ...
fn free_index_name(existing: &[IndexInfo], base: &str) -> String {
    let base: String = base.chars().take(60).collect();
    let taken = |n: &str| existing.iter().any(|i| i.name.eq_ignore_ascii_case(n));
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// `indexes` (from the catalog only).
pub fn indexes(ctx: &Ctx<'_>) -> CheckResult {
    let cat = &ctx.catalog;
    let limit = ctx.cfg.sample_limit.max(50);
    let mut no_pk = Vec::new();
    let mut redundant = Vec::new();
    let mut drops = Vec::new();
    for t in &cat.tables {
        let idx = cat.indexes_of(&t.schema, &t.name);
        if !idx.iter().any(IndexInfo::is_primary) {
            let cols = cat.columns_of(&t.schema, &t.name);
            let usable = idx.iter().find(|i| {
                i.unique
                    && i.columns.iter().all(|(c, _)| {
                        cols.iter()
                            .any(|col| col.name.eq_ignore_ascii_case(c) && !col.nullable)
                    })
            });
            no_pk.push(json!({"table": format!("{}.{}", t.schema, t.name), "not_null_unique_key": usable.map(|i| i.name.clone())}));
        }
        for r in redundant_indexes(idx) {
            drops.push(format!(
                "ALTER TABLE {} DROP INDEX {}",
                qualified(&t.schema, &t.name),
                quoted(&r.index)
            ));
            redundant.push(json!({"table": format!("{}.{}", t.schema, t.name), "index": r.index, "covered_by": r.covered_by,
                                  "kind": if r.duplicate { "duplicate" } else { "left prefix" }}));
        }
    }
    let (unindexed, adds) = unindexed_foreign_keys(ctx);
    let evidence = json!({
        "tables_without_primary_key": no_pk.iter().take(limit).collect::<Vec<_>>(),
        "tables_without_primary_key_count": no_pk.len(),
        "redundant_indexes": redundant.iter().take(limit).collect::<Vec<_>>(),
        "redundant_indexes_count": redundant.len(),
        "foreign_keys_without_index": unindexed,
    });
    let mut findings = Vec::new();
    if !no_pk.is_empty() {
        findings.push(format!("{} table(s) without a primary key", no_pk.len()));
    }
    if !redundant.is_empty() {
        findings.push(format!(
            "{} duplicate or redundant index(es)",
            redundant.len()
        ));
    }
    if !unindexed.is_empty() {
        findings.push(format!(
            "{} foreign key(s) without a supporting index",
            unindexed.len()
        ));
    }
    if findings.is_empty() {
        return result(
            "indexes",
            CheckStatus::Pass,
            format!(
                "{} table(s): primary keys present, no redundant or missing indexes",
                cat.tables.len()
            ),
            evidence,
        );
    }
    let mut r = result("indexes", CheckStatus::Warn, findings.join("; "), evidence);
    if !no_pk.is_empty() {
        r.suggestions.push(
            "add a primary key to tables without one: fleetsync (like row-based replication) matches their rows by the full row, one statement per row, which is slow".into(),
        );
    }
    for d in drops.iter().take(limit) {
        r.suggestions.push(format!(
            "review, then drop the redundant index (every write maintains it): {d}"
        ));
    }
    if !adds.is_empty() {
        r.suggestions.push("add indexes for foreign keys: without one, each parent change scans the child table (safe fix, online)".into());
        r.fix = Some(Fix {
            sql: adds,
            safe: true,
        });
    }
    r
}

/// Foreign keys whose child or parent columns lack an index, with the ADD INDEX statements.
fn unindexed_foreign_keys(ctx: &Ctx<'_>) -> (Vec<Value>, Vec<String>) {
    let cat = &ctx.catalog;
    let mut list = Vec::new();
    let mut adds = Vec::new();
    for fk in &cat.foreign_keys {
        let sides = [
            ("child", &fk.schema, &fk.table, &fk.columns),
            ("parent", &fk.ref_schema, &fk.ref_table, &fk.ref_columns),
        ];
        for (side, schema, table, columns) in sides {
            if cat.table(schema, table).is_none() {
                continue;
            }
            let idx = cat.indexes_of(schema, table);
            if supporting_index(idx, columns).is_some() {
                continue;
            }
            list.push(json!({"constraint": fk.name, "table": format!("{}.{}", fk.schema, fk.table), "side": side,
                             "indexed_table": format!("{schema}.{table}"), "columns": columns}));
            let name = free_index_name(
                idx,
                &format!(
                    "{}_{}",
                    fk.name,
                    if side == "child" { "idx" } else { "ref_idx" }
                ),
            );
            let cols: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
            adds.push(format!(
                "ALTER TABLE {} ADD INDEX {} ({}), ALGORITHM=INPLACE, LOCK=NONE",
                qualified(schema, table),
                quoted(&name),
                cols.join(", ")
            ));
        }
    }
    (list, adds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(name: &str, unique: bool, cols: &[&str]) -> IndexInfo {
        IndexInfo {
            name: name.into(),
            unique,
            kind: "BTREE".into(),
            columns: cols.iter().map(|c| (c.to_string(), None)).collect(),
        }
    }

    #[test]
    fn finds_duplicates_and_left_prefixes() {
        let list = vec![
            idx("PRIMARY", true, &["id"]),
            idx("a", false, &["x", "y"]),
            idx("a_dup", false, &["x", "y"]),
            idx("x_only", false, &["x"]),
            idx("u_x", true, &["x"]),
            idx("id_again", false, &["id"]),
            idx("y", false, &["y"]),
        ];
        let r = redundant_indexes(&list);
        let names: Vec<(&str, &str, bool)> = r
            .iter()
            .map(|r| (r.index.as_str(), r.covered_by.as_str(), r.duplicate))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a_dup", "a", true),
                ("x_only", "u_x", true),
                ("id_again", "PRIMARY", true)
            ]
        );
    }

    #[test]
    fn unique_and_fulltext_are_not_redundant_to_longer_indexes() {
        let mut ft = idx("ft", false, &["body"]);
        ft.kind = "FULLTEXT".into();
        let mut ft2 = idx("ft2", false, &["body", "title"]);
        ft2.kind = "FULLTEXT".into();
        let list = vec![
            idx("u", true, &["a"]),
            idx("ab", false, &["a", "b"]),
            ft,
            ft2,
        ];
        assert!(redundant_indexes(&list).is_empty());
    }

    #[test]
    fn prefix_lengths_must_match() {
        let mut p = idx("p", false, &["name"]);
        p.columns[0].1 = Some(10);
        let list = vec![p, idx("full", false, &["name", "x"])];
        assert!(redundant_indexes(&list).is_empty());
        let cols = vec!["name".to_string()];
        assert_eq!(
            supporting_index(&list, &cols).map(|i| i.name.as_str()),
            Some("full")
        );
        assert!(supporting_index(&list[..1], &cols).is_none());
    }

    #[test]
    fn new_index_names_do_not_collide() {
        let list = vec![idx("fk_idx", false, &["a"]), idx("fk_idx_2", false, &["b"])];
        assert_eq!(free_index_name(&list, "fk_idx"), "fk_idx_3");
        assert_eq!(free_index_name(&list, "other"), "other");
    }
}
