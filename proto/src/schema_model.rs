//! The schema model: everything `fleetsync diff schema` compares and `fleetsync migrate`
//! changes, as plain serde data. Snapshots are taken by the agent (`fleetsync_agent::inspect`)
//! and diffed by the coordinator (`fleetsync_coordinator::migrate`).
//!
//! Invariants a snapshot keeps (the diff relies on them):
//! * Lists are in a canonical order: tables, views, indexes, foreign keys and checks sorted by
//!   name (the primary key first among indexes); columns in table order; triggers by table,
//!   timing, event, then action order.
//! * Names that point into the snapshot's own database are unqualified: a foreign key to a
//!   table of the same database has `ref_schema: None`, and view definitions have the
//!   database's own `` `db`. `` qualifier removed. So two databases with different names but
//!   the same structure compare equal.
//! * Column types, defaults and expressions are kept as the server prints them in
//!   information_schema (`int(11) unsigned`, `'abc'`, `current_timestamp()`), so the same
//!   server version compares them exactly.
//! * `auto_increment` (the table's next value) is recorded but is never a difference.

use serde::{Deserialize, Serialize};

/// Every database of one side (a server, one of its databases, or a schema file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SchemaSnapshot {
    /// Sorted by name.
    pub databases: Vec<DatabaseSchema>,
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DatabaseSchema {
    pub name: String,
    /// Default character set and collation; `None` when not meaningful (a schema file loaded
    /// into a scratch database), which the diff skips.
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub tables: Vec<TableDef>,
    pub views: Vec<ViewDef>,
    pub triggers: Vec<TriggerDef>,
}

impl DatabaseSchema {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn view(&self, name: &str) -> Option<&ViewDef> {
        self.views.iter().find(|v| v.name == name)
    }

    /// Puts every list into the canonical order (see the module doc).
    pub fn normalize(&mut self) {
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.views.sort_by(|a, b| a.name.cmp(&b.name));
        self.triggers.sort_by(|a, b| {
            (&a.table, &a.timing, &a.event, a.order).cmp(&(&b.table, &b.timing, &b.event, b.order))
        });
        for t in &mut self.tables {
            t.normalize();
        }
    }
}

/// A base table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableDef {
    pub name: String,
    /// In table order.
    pub columns: Vec<ColumnDef>,
    pub indexes: Vec<IndexDef>,
    pub foreign_keys: Vec<ForeignKeyDef>,
    pub checks: Vec<CheckDef>,
    pub options: TableOptions,
    /// The `PARTITION BY ...` clause as SHOW CREATE TABLE prints it (without the version
    /// comment wrapper); `None` when the table is not partitioned.
    pub partitioning: Option<String>,
    /// The next AUTO_INCREMENT value: recorded, never compared.
    pub auto_increment: Option<u64>,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }

    pub fn normalize(&mut self) {
        self.indexes.sort_by(|a, b| {
            let pa = a.kind != IndexKind::Primary;
            let pb = b.kind != IndexKind::Primary;
            (pa, &a.name).cmp(&(pb, &b.name))
        });
        self.foreign_keys.sort_by(|a, b| a.name.cmp(&b.name));
        self.checks.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// A column, with everything its definition says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ColumnDef {
    pub name: String,
    /// The full type: `varchar(20)`, `int(10) unsigned zerofill`, `enum('a','b')`.
    pub column_type: String,
    pub nullable: bool,
    /// The default as an SQL expression (`'abc'`, `0`, `NULL`, `current_timestamp()`);
    /// `None` when the column has no default.
    pub default: Option<String>,
    /// `auto_increment`, `on update current_timestamp()` (generation and visibility are in
    /// their own fields).
    pub extra: String,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub comment: String,
    pub generated: Option<Generated>,
    pub invisible: bool,
}

/// A generated column's expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub expression: String,
    /// STORED (PERSISTENT) rather than VIRTUAL.
    pub stored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    Primary,
    Unique,
    #[default]
    Index,
    Fulltext,
    Spatial,
}

/// An index (a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexDef {
    pub name: String,
    pub kind: IndexKind,
    /// BTREE, HASH or RTREE as information_schema reports it (FULLTEXT/SPATIAL: `None`).
    pub using: Option<String>,
    pub parts: Vec<IndexPart>,
    pub comment: String,
    /// MariaDB IGNORED (MySQL: INVISIBLE): kept up to date but not used by the optimizer.
    pub ignored: bool,
}

/// One column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexPart {
    pub column: String,
    /// Prefix length in characters (bytes for binary strings).
    pub prefix: Option<u32>,
    pub descending: bool,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ForeignKeyDef {
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table's database when it is not the table's own.
    pub ref_schema: Option<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// RESTRICT, CASCADE, SET NULL, NO ACTION, SET DEFAULT.
    pub on_update: String,
    pub on_delete: String,
}

/// A CHECK constraint (column-level checks are named after their column; the level itself is
/// not compared, as `ALTER TABLE ADD CONSTRAINT` can only create table-level ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CheckDef {
    pub name: String,
    pub clause: String,
}

/// Table options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableOptions {
    pub engine: Option<String>,
    pub charset: Option<String>,
    pub collation: Option<String>,
    /// The ROW_FORMAT given when the table was created (`COMPACT`, ...); `None` = default.
    pub row_format: Option<String>,
    pub comment: String,
}

/// A view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ViewDef {
    pub name: String,
    /// The SELECT, with the view's own database qualifier removed.
    pub definition: String,
    /// NONE, CASCADED or LOCAL.
    pub check_option: String,
    /// DEFINER or INVOKER.
    pub security: String,
    /// UNDEFINED, MERGE or TEMPTABLE.
    pub algorithm: String,
}

/// A trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TriggerDef {
    pub name: String,
    pub table: String,
    /// BEFORE or AFTER.
    pub timing: String,
    /// INSERT, UPDATE or DELETE.
    pub event: String,
    /// The body (`SET NEW.x = ...` or `BEGIN ... END`).
    pub statement: String,
    /// 1-based order among the triggers of the same table, timing and event.
    pub order: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_puts_primary_first_and_sorts() {
        let mut t = TableDef {
            name: "t".into(),
            indexes: vec![
                IndexDef {
                    name: "b".into(),
                    ..Default::default()
                },
                IndexDef {
                    name: "PRIMARY".into(),
                    kind: IndexKind::Primary,
                    ..Default::default()
                },
                IndexDef {
                    name: "a".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        t.normalize();
        let names: Vec<&str> = t.indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["PRIMARY", "a", "b"]);
        let json = serde_json::to_string(&t).expect("serializes");
        let back: TableDef = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, t);
    }
}
