//! DDL text for the schema model: column definitions, index and key clauses, CREATE TABLE,
//! views and triggers. Pure functions; names are always backquoted.
//!
//! Column definitions always spell out CHARACTER SET and COLLATE for character columns, so a
//! definition means the same whatever the table's default character set is at that moment.

use fleetsync_proto::schema_model::{
    CheckDef, ColumnDef, ForeignKeyDef, IndexDef, IndexKind, TableDef, TableOptions, TriggerDef,
    ViewDef,
};

pub use fleetsync_proto::sql::ident;

/// A string literal: quotes and backslashes escaped.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The column definition after the name: type, charset, generation, nullability, default,
/// extra, visibility, comment.
pub fn column_body(c: &ColumnDef) -> String {
    let mut out = c.column_type.clone();
    if let Some(cs) = &c.charset {
        out.push_str(&format!(" CHARACTER SET {cs}"));
        if let Some(coll) = &c.collation {
            out.push_str(&format!(" COLLATE {coll}"));
        }
    }
    if let Some(g) = &c.generated {
        let kind = if g.stored { "STORED" } else { "VIRTUAL" };
        out.push_str(&format!(" GENERATED ALWAYS AS ({}) {kind}", g.expression));
    } else {
        out.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
        if let Some(d) = &c.default {
            out.push_str(&format!(" DEFAULT {d}"));
        }
    }
    if !c.extra.is_empty() {
        out.push(' ');
        out.push_str(&c.extra);
    }
    if c.invisible {
        out.push_str(" INVISIBLE");
    }
    if !c.comment.is_empty() {
        out.push_str(&format!(" COMMENT {}", quote(&c.comment)));
    }
    out
}

/// `` `name` definition ``.
pub fn column(c: &ColumnDef) -> String {
    format!("{} {}", ident(&c.name), column_body(c))
}

/// The key parts: `` (`a`(10), `b` DESC) ``.
fn parts(i: &IndexDef) -> String {
    let parts: Vec<String> = i
        .parts
        .iter()
        .map(|p| {
            let mut s = ident(&p.column);
            if let Some(n) = p.prefix {
                s.push_str(&format!("({n})"));
            }
            if p.descending {
                s.push_str(" DESC");
            }
            s
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// The index as it appears in CREATE TABLE or after `ADD`.
pub fn index(i: &IndexDef) -> String {
    let head = match i.kind {
        IndexKind::Primary => "PRIMARY KEY".to_string(),
        IndexKind::Unique => format!("UNIQUE KEY {}", ident(&i.name)),
        IndexKind::Index => format!("KEY {}", ident(&i.name)),
        IndexKind::Fulltext => format!("FULLTEXT KEY {}", ident(&i.name)),
        IndexKind::Spatial => format!("SPATIAL KEY {}", ident(&i.name)),
    };
    let mut out = format!("{head} {}", parts(i));
    if let Some(u) = &i.using {
        out.push_str(&format!(" USING {u}"));
    }
    if !i.comment.is_empty() {
        out.push_str(&format!(" COMMENT {}", quote(&i.comment)));
    }
    if i.ignored {
        out.push_str(" IGNORED");
    }
    out
}

/// `DROP PRIMARY KEY` / `` DROP KEY `name` ``.
pub fn drop_index(i: &IndexDef) -> String {
    match i.kind {
        IndexKind::Primary => "DROP PRIMARY KEY".into(),
        _ => format!("DROP KEY {}", ident(&i.name)),
    }
}

fn ident_list(names: &[String]) -> String {
    let v: Vec<String> = names.iter().map(|n| ident(n)).collect();
    v.join(", ")
}

/// `` CONSTRAINT `fk` FOREIGN KEY (...) REFERENCES ... ON DELETE ... ON UPDATE ... ``.
pub fn foreign_key(f: &ForeignKeyDef) -> String {
    let table = match &f.ref_schema {
        Some(db) => format!("{}.{}", ident(db), ident(&f.ref_table)),
        None => ident(&f.ref_table),
    };
    format!(
        "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {table} ({}) ON DELETE {} ON UPDATE {}",
        ident(&f.name),
        ident_list(&f.columns),
        ident_list(&f.ref_columns),
        f.on_delete,
        f.on_update
    )
}

/// `` CONSTRAINT `name` CHECK (clause) ``.
pub fn check(c: &CheckDef) -> String {
    format!("CONSTRAINT {} CHECK ({})", ident(&c.name), c.clause)
}

/// The table options clause (`ENGINE=... DEFAULT CHARSET=... COLLATE=... ROW_FORMAT=...
/// COMMENT=...`). A missing row format is written as `ROW_FORMAT=DEFAULT` when `explicit`.
pub fn table_options(o: &TableOptions, explicit: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &o.engine {
        out.push(format!("ENGINE={e}"));
    }
    if let Some(cs) = &o.charset {
        out.push(format!("DEFAULT CHARSET={cs}"));
    }
    if let Some(c) = &o.collation {
        out.push(format!("COLLATE={c}"));
    }
    match &o.row_format {
        Some(r) => out.push(format!("ROW_FORMAT={r}")),
        None if explicit => out.push("ROW_FORMAT=DEFAULT".into()),
        None => {}
    }
    if explicit || !o.comment.is_empty() {
        out.push(format!("COMMENT={}", quote(&o.comment)));
    }
    out
}

/// CREATE TABLE without foreign keys (they are added once every table exists).
pub fn create_table(t: &TableDef) -> String {
    let mut items: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("  {}", column(c)))
        .collect();
    items.extend(t.indexes.iter().map(|i| format!("  {}", index(i))));
    items.extend(t.checks.iter().map(|c| format!("  {}", check(c))));
    let mut out = format!(
        "CREATE TABLE {} (\n{}\n) {}",
        ident(&t.name),
        items.join(",\n"),
        table_options(&t.options, false).join(" ")
    );
    if let Some(p) = &t.partitioning {
        out.push('\n');
        out.push_str(p);
    }
    out
}

/// CREATE OR REPLACE VIEW (no DEFINER: the applying user becomes the definer).
pub fn create_view(v: &ViewDef) -> String {
    let mut out = format!(
        "CREATE OR REPLACE ALGORITHM={} SQL SECURITY {} VIEW {} AS {}",
        v.algorithm,
        v.security,
        ident(&v.name),
        v.definition
    );
    if v.check_option != "NONE" && !v.check_option.is_empty() {
        out.push_str(&format!(" WITH {} CHECK OPTION", v.check_option));
    }
    out
}

/// A one-line description of a view for diffs.
pub fn view_summary(v: &ViewDef) -> String {
    format!(
        "{} [{} {} {}]",
        v.definition, v.algorithm, v.security, v.check_option
    )
}

/// CREATE TRIGGER (no DEFINER).
pub fn create_trigger(t: &TriggerDef) -> String {
    format!(
        "CREATE TRIGGER {} {} {} ON {} FOR EACH ROW {}",
        ident(&t.name),
        t.timing,
        t.event,
        ident(&t.table),
        t.statement
    )
}

/// A one-line description of a trigger for diffs.
pub fn trigger_summary(t: &TriggerDef) -> String {
    format!(
        "{} {} ON {} #{}: {}",
        t.timing, t.event, t.table, t.order, t.statement
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsync_proto::schema_model::{Generated, IndexPart};

    #[test]
    fn columns_render_every_attribute() {
        let c = ColumnDef {
            name: "na`me".into(),
            column_type: "varchar(20)".into(),
            nullable: false,
            default: Some("'x'".into()),
            charset: Some("latin1".into()),
            collation: Some("latin1_swedish_ci".into()),
            comment: "it's".into(),
            ..Default::default()
        };
        assert_eq!(
            column(&c),
            "`na``me` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL DEFAULT 'x' COMMENT 'it''s'"
        );
        let g = ColumnDef {
            name: "g".into(),
            column_type: "int(11)".into(),
            nullable: true,
            generated: Some(Generated {
                expression: "`id` * 2".into(),
                stored: true,
            }),
            invisible: true,
            ..Default::default()
        };
        assert_eq!(
            column(&g),
            "`g` int(11) GENERATED ALWAYS AS (`id` * 2) STORED INVISIBLE"
        );
    }

    #[test]
    fn indexes_render_prefix_desc_and_ignored() {
        let i = IndexDef {
            name: "k".into(),
            kind: IndexKind::Unique,
            using: Some("BTREE".into()),
            parts: vec![
                IndexPart {
                    column: "a".into(),
                    prefix: Some(5),
                    descending: false,
                },
                IndexPart {
                    column: "b".into(),
                    prefix: None,
                    descending: true,
                },
            ],
            comment: String::new(),
            ignored: true,
        };
        assert_eq!(
            index(&i),
            "UNIQUE KEY `k` (`a`(5), `b` DESC) USING BTREE IGNORED"
        );
    }
}
