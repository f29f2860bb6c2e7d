//! Schema changes: whether a source DDL statement can run on the target as is, and which
//! errors mean "already done" when it runs a second time after a crash.
//!
//! A DDL statement commits implicitly, so it cannot commit together with the progress row: it
//! runs on its own, then the progress row is updated in its own transaction. A crash between
//! the two replays the statement, hence [`already_done`].
//!
//! Statement text is never rewritten (parsing SQL is out of scope): a statement runs only when
//! the table mapping leaves every table it names where the statement says, possibly after a
//! `USE` of the mapped default database. Otherwise its tables are paused.

use fleetsync_config::TableMap;
use fleetsync_proto::Ddl;

/// What to do with a DDL transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DdlAction {
    /// Run the statement after `USE use_schema` (when `Some`): the target name of the
    /// statement's default database.
    Run { use_schema: Option<String> },
    /// Do not run it; pause the tables it names.
    Pause { reason: String },
    /// Do not run it; no table to pause (a database-level statement). Logged as a warning.
    Skip { reason: String },
}

/// Decides how `ddl` is applied under `map`. See the module docs.
pub(crate) fn decide(ddl: &Ddl, map: &TableMap, apply_ddl: bool) -> DdlAction {
    let stmt = ddl.statement.trim();
    if !apply_ddl {
        let reason = format!("DDL not applied (apply_ddl is off): {stmt}");
        return if ddl.tables.is_empty() {
            DdlAction::Skip { reason }
        } else {
            DdlAction::Pause { reason }
        };
    }
    if ddl.tables.is_empty() {
        let Some(schema) = &ddl.schema else {
            return DdlAction::Skip {
                reason: format!("DDL names no table and no database: {stmt}"),
            };
        };
        if map.target_schema(schema) != *schema || !map.is_schema_identity_for_tables(schema) {
            return DdlAction::Skip {
                reason: format!(
                    "database-level DDL not applied: database {schema:?} is mapped: {stmt}"
                ),
            };
        }
        // `USE db` would fail before CREATE DATABASE db.
        let use_schema = (!is_database_statement(stmt)).then(|| schema.clone());
        return DdlAction::Run { use_schema };
    }
    let use_schema = ddl.schema.as_ref().map(|s| map.target_schema(s));
    let identity = ddl
        .tables
        .iter()
        .all(|(s, t)| map.target(s, t) == (s.clone(), t.clone()))
        && ddl
            .schema
            .as_ref()
            .is_none_or(|s| map.target_schema(s) == *s);
    if identity {
        return DdlAction::Run { use_schema };
    }
    // Only schemas are renamed, and every renamed one is the default database, never written
    // as a qualifier: `USE <mapped default>` makes the statement land in the right place.
    let schema_renames_only = ddl.tables.iter().all(|(s, t)| {
        map.is_schema_identity_for_tables(s)
            && map.target(s, t).1 == *t
            && (map.target_schema(s) == *s
                || (ddl.schema.as_deref() == Some(s.as_str()) && !names_qualifier(stmt, s)))
    });
    if schema_renames_only {
        return DdlAction::Run { use_schema };
    }
    DdlAction::Pause {
        reason: format!("DDL cannot be rewritten for the table mapping: {stmt}"),
    }
}

/// Server errors that, for a DDL statement, mean its effect is already there (a replay after a
/// crash between the statement and the progress update).
pub(crate) fn already_done(code: u16) -> bool {
    matches!(
        code,
        1050 // table already exists
            | 1060 // duplicate column name
            | 1061 // duplicate key name
            | 1091 // can't DROP: column/key doesn't exist
            | 1051 // unknown table (DROP TABLE)
            | 1007 // database exists
            | 1008 // database doesn't exist (DROP DATABASE)
    )
}

/// The first `n` words of `stmt`, upper-cased, skipping leading whitespace and `/* */` or
/// `-- ` / `#` comments.
fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    let mut rest = stmt;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else if rest.starts_with("-- ") || rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// `CREATE/DROP/ALTER DATABASE|SCHEMA ...`.
pub(crate) fn is_database_statement(stmt: &str) -> bool {
    let w = leading_words(stmt, 4);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE" | "DROP" | "ALTER", "DATABASE" | "SCHEMA", ..]
    )
}

/// `RENAME TABLE ...` or `ALTER TABLE ... RENAME ...`: on replay the old name is gone (1146).
pub(crate) fn is_rename(stmt: &str) -> bool {
    let w = leading_words(stmt, 2);
    match w.first().map(String::as_str) {
        Some("RENAME") => true,
        Some("ALTER") => {
            w.get(1).map(String::as_str) == Some("TABLE")
                && stmt.to_ascii_uppercase().contains(" RENAME ")
        }
        _ => false,
    }
}

/// Whether `stmt` seems to use `schema` as a qualifier (`schema.` or `` `schema`. ``, any
/// case, whitespace allowed before the dot). Conservative: a false positive only pauses.
pub(crate) fn names_qualifier(stmt: &str, schema: &str) -> bool {
    if schema.is_empty() {
        return false;
    }
    let hay = stmt.to_lowercase();
    let needle = schema.to_lowercase();
    let bytes = hay.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut from = 0;
    while let Some(found) = hay.get(from..).and_then(|h| h.find(&needle)) {
        let start = from + found;
        let end = start + needle.len();
        from = end;
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        let mut i = end;
        if bytes.get(i) == Some(&b'`') {
            i += 1;
        } else if bytes.get(i).is_some_and(|&b| is_ident(b)) {
            continue;
        }
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if before_ok && bytes.get(i) == Some(&b'.') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> TableMap {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        TableMap::new(&m).expect("valid map")
    }

    fn ddl(schema: Option<&str>, tables: &[(&str, &str)], stmt: &str) -> Ddl {
        Ddl {
            schema: schema.map(String::from),
            tables: tables
                .iter()
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .collect(),
            statement: stmt.into(),
        }
    }

    fn run(use_schema: Option<&str>) -> DdlAction {
        DdlAction::Run {
            use_schema: use_schema.map(String::from),
        }
    }

    #[test]
    fn identity_runs_with_use() {
        let d = ddl(Some("app"), &[("app", "t")], "ALTER TABLE t ADD c INT");
        assert_eq!(decide(&d, &map(&[]), true), run(Some("app")));
        // A table entry that keeps the name is still identity.
        assert_eq!(
            decide(&d, &map(&[("app.t", "app.t")]), true),
            run(Some("app"))
        );
    }

    #[test]
    fn apply_ddl_off_pauses() {
        let d = ddl(Some("app"), &[("app", "t")], "ALTER TABLE t ADD c INT");
        assert!(matches!(
            decide(&d, &map(&[]), false),
            DdlAction::Pause { .. }
        ));
        let d = ddl(Some("app"), &[], "DROP DATABASE app");
        assert!(matches!(
            decide(&d, &map(&[]), false),
            DdlAction::Skip { .. }
        ));
    }

    #[test]
    fn schema_rename_runs_in_mapped_default_schema() {
        let m = map(&[("app", "app_copy")]);
        let d = ddl(Some("app"), &[("app", "t")], "ALTER TABLE t ADD c INT");
        assert_eq!(decide(&d, &m, true), run(Some("app_copy")));
        let d = ddl(
            Some("app"),
            &[("app", "t")],
            "ALTER TABLE `app`.t ADD c INT",
        );
        assert!(matches!(decide(&d, &m, true), DdlAction::Pause { .. }));
        let d = ddl(
            Some("other"),
            &[("app", "t")],
            "ALTER TABLE app . t ADD c INT",
        );
        assert!(matches!(decide(&d, &m, true), DdlAction::Pause { .. }));
        // An unmapped qualified table next to the renamed default schema is fine.
        let d = ddl(
            Some("app"),
            &[("app", "t"), ("lib", "u")],
            "RENAME TABLE t TO lib.u",
        );
        assert_eq!(decide(&d, &m, true), run(Some("app_copy")));
    }

    #[test]
    fn table_rename_pauses() {
        let m = map(&[("app.t", "app.t2")]);
        let d = ddl(Some("app"), &[("app", "t")], "ALTER TABLE t ADD c INT");
        match decide(&d, &m, true) {
            DdlAction::Pause { reason } => {
                assert!(reason.starts_with("DDL cannot be rewritten for the table mapping: ALTER"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn database_statements() {
        let d = ddl(Some("app"), &[], "CREATE DATABASE app");
        assert_eq!(decide(&d, &map(&[]), true), run(None));
        assert!(matches!(
            decide(&d, &map(&[("app", "x")]), true),
            DdlAction::Skip { .. }
        ));
        let d = ddl(Some("app"), &[], "CREATE PROCEDURE p() BEGIN END");
        assert_eq!(decide(&d, &map(&[]), true), run(Some("app")));
        let d = ddl(None, &[], "CREATE USER x");
        assert!(matches!(
            decide(&d, &map(&[]), true),
            DdlAction::Skip { .. }
        ));
    }

    #[test]
    fn statement_shapes() {
        assert!(is_database_statement("/* c */ drop schema if exists x"));
        assert!(!is_database_statement("DROP TABLE x"));
        assert!(is_rename("RENAME TABLE a TO b"));
        assert!(is_rename("alter table a rename to b"));
        assert!(!is_rename("ALTER TABLE a ADD c INT"));
        assert!(names_qualifier("select * from `App`.t", "app"));
        assert!(names_qualifier("x app.t", "app"));
        assert!(!names_qualifier("x myapp.t", "app"));
        assert!(!names_qualifier("x apps.t", "app"));
        assert!(!names_qualifier("ALTER TABLE t ADD app INT", "app"));
        assert!(already_done(1060) && already_done(1008) && !already_done(1146));
    }
}
