//! Schema snapshots: a database's full [`DatabaseSchema`] read from information_schema (plus
//! SHOW CREATE TABLE for the partitioning clause, which information_schema only has in pieces).
//!
//! All reads of one snapshot run on one connection inside one `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT, READ ONLY`. MariaDB's information_schema is not versioned, so this
//! does not freeze DDL: a schema changed during the snapshot can be seen half-way. Take
//! snapshots while no migration runs (the migrate commands do).
//!
//! Needs: SELECT (or any privilege) on the tables to see them in information_schema, and
//! SHOW VIEW for view definitions (without it VIEW_DEFINITION is empty: a diff would then
//! show the view as changed). MariaDB only (10.6+: the IGNORED index column).

use std::collections::BTreeMap;

use fleetsync_proto::schema_model::{
    CheckDef, ColumnDef, DatabaseSchema, ForeignKeyDef, Generated, IndexDef, IndexKind, IndexPart,
    SchemaSnapshot, TableDef, TableOptions, TriggerDef, ViewDef,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

/// Databases that are never part of a snapshot of a whole server: the server's own, and
/// fleetsync's (state, migration history, scratch copies).
pub const SYSTEM_DATABASES: [&str; 5] = [
    "information_schema",
    "performance_schema",
    "mysql",
    "sys",
    "fleetsync",
];

/// Prefix of the scratch databases that schema verification creates (and drops).
pub const SCRATCH_PREFIX: &str = "fleetsync_scratch_";

/// A query of the snapshot failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the schema of {database}: {what}: {source}")]
pub struct InspectError {
    pub database: String,
    pub what: &'static str,
    #[source]
    pub source: mysql_async::Error,
}

/// The user databases of a server (not the [`SYSTEM_DATABASES`] or scratch copies), sorted.
pub async fn user_databases(conn: &mut Conn) -> Result<Vec<String>, InspectError> {
    let names: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        .await
        .map_err(|source| InspectError {
            database: "(server)".into(),
            what: "listing databases",
            source,
        })?;
    Ok(names
        .into_iter()
        .filter(|n| !SYSTEM_DATABASES.contains(&n.as_str()) && !n.starts_with(SCRATCH_PREFIX))
        .collect())
}

/// Snapshots `databases` under one read view. A database that does not exist is left out
/// (the caller compares the names it asked for).
pub async fn snapshot(
    conn: &mut Conn,
    databases: &[String],
) -> Result<SchemaSnapshot, InspectError> {
    let err = |what| {
        move |source| InspectError {
            database: "(server)".into(),
            what,
            source,
        }
    };
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(err("starting the read view"))?;
    let mut out = SchemaSnapshot::default();
    for db in databases {
        if let Some(schema) = snapshot_database(conn, db).await? {
            out.databases.push(schema);
        }
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(err("ending the read view"))?;
    out.databases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One database's schema; `None` when it does not exist.
pub async fn snapshot_database(
    conn: &mut Conn,
    db: &str,
) -> Result<Option<DatabaseSchema>, InspectError> {
    let q = Q { db };
    let rows = q
        .rows(
            conn,
            "database options",
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let mut schema = DatabaseSchema {
        name: db.to_string(),
        charset: text(row, 0),
        collation: text(row, 1),
        ..Default::default()
    };
    let mut tables = read_tables(conn, &q).await?;
    read_columns(conn, &q, &mut tables).await?;
    read_indexes(conn, &q, &mut tables).await?;
    read_foreign_keys(conn, &q, &mut tables).await?;
    read_checks(conn, &q, &mut tables).await?;
    read_partitioning(conn, &q, &mut tables).await?;
    schema.tables = tables.into_values().collect();
    schema.views = read_views(conn, &q).await?;
    schema.triggers = read_triggers(conn, &q).await?;
    schema.normalize();
    Ok(Some(schema))
}

/// Runs the snapshot's queries for one database (`?` = the database name).
struct Q<'a> {
    db: &'a str,
}

impl Q<'_> {
    async fn rows(
        &self,
        conn: &mut Conn,
        what: &'static str,
        sql: &str,
    ) -> Result<Vec<Row>, InspectError> {
        conn.exec(sql, (self.db,))
            .await
            .map_err(|source| InspectError {
                database: self.db.to_string(),
                what,
                source,
            })
    }
}

/// Column `i` as text (numbers are printed); `None` for SQL NULL.
fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn text_or_empty(row: &Row, i: usize) -> String {
    text(row, i).unwrap_or_default()
}

fn number(row: &Row, i: usize) -> Option<u64> {
    text(row, i).and_then(|s| s.parse().ok())
}

type Tables = BTreeMap<String, TableDef>;

async fn read_tables(conn: &mut Conn, q: &Q<'_>) -> Result<Tables, InspectError> {
    let rows = q
        .rows(
            conn,
            "tables",
            "SELECT t.TABLE_NAME, t.ENGINE, t.TABLE_COLLATION, c.CHARACTER_SET_NAME, \
             t.CREATE_OPTIONS, t.TABLE_COMMENT, t.AUTO_INCREMENT \
             FROM information_schema.TABLES t \
             LEFT JOIN information_schema.COLLATIONS c ON c.COLLATION_NAME = t.TABLE_COLLATION \
             WHERE t.TABLE_SCHEMA = ? AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
        )
        .await?;
    let mut tables = Tables::new();
    for row in rows {
        let name = text_or_empty(&row, 0);
        let create_options = text_or_empty(&row, 4);
        let table = TableDef {
            name: name.clone(),
            options: TableOptions {
                engine: text(&row, 1),
                collation: text(&row, 2),
                charset: text(&row, 3),
                row_format: row_format_option(&create_options),
                comment: text_or_empty(&row, 5),
            },
            auto_increment: number(&row, 6),
            // Filled in by read_partitioning when CREATE_OPTIONS says so.
            partitioning: create_options.contains("partitioned").then(String::new),
            ..Default::default()
        };
        tables.insert(name, table);
    }
    Ok(tables)
}

/// `row_format=COMPACT` in CREATE_OPTIONS: the format asked for at CREATE/ALTER time.
fn row_format_option(create_options: &str) -> Option<String> {
    create_options.split_whitespace().find_map(|opt| {
        let (k, v) = opt.split_once('=')?;
        k.eq_ignore_ascii_case("row_format")
            .then(|| v.to_ascii_uppercase())
    })
}

async fn read_columns(conn: &mut Conn, q: &Q<'_>, tables: &mut Tables) -> Result<(), InspectError> {
    let rows = q
        .rows(
            conn,
            "columns",
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, \
             CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_COMMENT, GENERATION_EXPRESSION \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .await?;
    for row in rows {
        let Some(table) = tables.get_mut(&text_or_empty(&row, 0)) else {
            continue; // a view's column
        };
        let extra = text_or_empty(&row, 5);
        let (extra, generated_kind, invisible) = split_extra(&extra);
        let generated = generated_kind.map(|stored| Generated {
            expression: text_or_empty(&row, 9),
            stored,
        });
        table.columns.push(ColumnDef {
            name: text_or_empty(&row, 1),
            column_type: text_or_empty(&row, 2),
            nullable: text_or_empty(&row, 3) == "YES",
            default: text(&row, 4),
            extra,
            charset: text(&row, 6),
            collation: text(&row, 7),
            comment: text_or_empty(&row, 8),
            generated,
            invisible,
        });
    }
    Ok(())
}

/// Splits EXTRA into (the rest, `Some(stored)` for a generated column, invisible).
fn split_extra(extra: &str) -> (String, Option<bool>, bool) {
    let mut rest = extra.to_string();
    let mut generated = None;
    for (word, stored) in [("VIRTUAL GENERATED", false), ("STORED GENERATED", true)] {
        if rest.contains(word) {
            generated = Some(stored);
            rest = rest.replace(word, "");
        }
    }
    let invisible = rest.contains("INVISIBLE");
    let rest = rest.replace("INVISIBLE", "");
    let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    (rest, generated, invisible)
}

async fn read_indexes(conn: &mut Conn, q: &Q<'_>, tables: &mut Tables) -> Result<(), InspectError> {
    let rows = q
        .rows(
            conn,
            "indexes",
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, \
             COLLATION, IGNORED, INDEX_COMMENT \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        )
        .await?;
    for row in rows {
        let Some(table) = tables.get_mut(&text_or_empty(&row, 0)) else {
            continue;
        };
        let name = text_or_empty(&row, 1);
        let part = IndexPart {
            column: text_or_empty(&row, 3),
            prefix: number(&row, 4).and_then(|n| u32::try_from(n).ok()),
            descending: text(&row, 6).as_deref() == Some("D"),
        };
        if let Some(index) = table.indexes.iter_mut().find(|i| i.name == name) {
            index.parts.push(part);
            continue;
        }
        let index_type = text_or_empty(&row, 5);
        let kind = match index_type.as_str() {
            _ if name == "PRIMARY" => IndexKind::Primary,
            "FULLTEXT" => IndexKind::Fulltext,
            "SPATIAL" => IndexKind::Spatial,
            _ if number(&row, 2) == Some(0) => IndexKind::Unique,
            _ => IndexKind::Index,
        };
        let using = matches!(
            kind,
            IndexKind::Primary | IndexKind::Unique | IndexKind::Index
        )
        .then_some(index_type);
        table.indexes.push(IndexDef {
            name,
            kind,
            using,
            parts: vec![part],
            comment: text_or_empty(&row, 8),
            ignored: text(&row, 7).as_deref() == Some("YES"),
        });
    }
    Ok(())
}

async fn read_foreign_keys(
    conn: &mut Conn,
    q: &Q<'_>,
    tables: &mut Tables,
) -> Result<(), InspectError> {
    let rows = q
        .rows(
            conn,
            "foreign keys",
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
             k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.TABLE_NAME = k.TABLE_NAME \
              AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
        )
        .await?;
    for row in rows {
        let Some(table) = tables.get_mut(&text_or_empty(&row, 0)) else {
            continue;
        };
        let name = text_or_empty(&row, 1);
        let (column, ref_column) = (text_or_empty(&row, 2), text_or_empty(&row, 5));
        if let Some(fk) = table.foreign_keys.iter_mut().find(|f| f.name == name) {
            fk.columns.push(column);
            fk.ref_columns.push(ref_column);
            continue;
        }
        let ref_schema = text(&row, 3).filter(|s| s != q.db);
        table.foreign_keys.push(ForeignKeyDef {
            name,
            columns: vec![column],
            ref_schema,
            ref_table: text_or_empty(&row, 4),
            ref_columns: vec![ref_column],
            on_update: text_or_empty(&row, 6),
            on_delete: text_or_empty(&row, 7),
        });
    }
    Ok(())
}

async fn read_checks(conn: &mut Conn, q: &Q<'_>, tables: &mut Tables) -> Result<(), InspectError> {
    let rows = q
        .rows(
            conn,
            "check constraints",
            "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE \
             FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
        )
        .await?;
    for row in rows {
        if let Some(table) = tables.get_mut(&text_or_empty(&row, 0)) {
            table.checks.push(CheckDef {
                name: text_or_empty(&row, 1),
                clause: text_or_empty(&row, 2),
            });
        }
    }
    Ok(())
}

async fn read_partitioning(
    conn: &mut Conn,
    q: &Q<'_>,
    tables: &mut Tables,
) -> Result<(), InspectError> {
    for table in tables.values_mut().filter(|t| t.partitioning.is_some()) {
        let sql = format!(
            "SHOW CREATE TABLE {}",
            fleetsync_proto::sql::table_name(q.db, &table.name)
        );
        let row: Option<(String, String)> =
            conn.query_first(sql).await.map_err(|source| InspectError {
                database: q.db.to_string(),
                what: "SHOW CREATE TABLE",
                source,
            })?;
        table.partitioning = row.and_then(|(_, ddl)| partition_clause(&ddl));
    }
    Ok(())
}

/// The `PARTITION BY ...` clause of a CREATE TABLE statement, without a version-comment
/// wrapper (`/*!50100 ... */`, MySQL).
pub fn partition_clause(create_table: &str) -> Option<String> {
    let start = create_table.find("PARTITION BY")?;
    let clause = create_table[start..].trim_end();
    let clause = clause.strip_suffix("*/").unwrap_or(clause).trim_end();
    Some(clause.to_string())
}

async fn read_views(conn: &mut Conn, q: &Q<'_>) -> Result<Vec<ViewDef>, InspectError> {
    let rows = q
        .rows(
            conn,
            "views",
            "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE, ALGORITHM \
             FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
        )
        .await?;
    let own = fleetsync_proto::sql::table_name(q.db, "");
    // `db`.`` -> `db`. : the qualifier every reference to the view's own database carries.
    let own_prefix = &own[..own.len() - 2];
    Ok(rows
        .iter()
        .map(|row| ViewDef {
            name: text_or_empty(row, 0),
            definition: text_or_empty(row, 1).replace(own_prefix, ""),
            check_option: text_or_empty(row, 2),
            security: text_or_empty(row, 3),
            algorithm: text_or_empty(row, 4),
        })
        .collect())
}

async fn read_triggers(conn: &mut Conn, q: &Q<'_>) -> Result<Vec<TriggerDef>, InspectError> {
    let rows = q
        .rows(
            conn,
            "triggers",
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, \
             ACTION_STATEMENT, ACTION_ORDER \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TriggerDef {
            name: text_or_empty(row, 0),
            table: text_or_empty(row, 1),
            timing: text_or_empty(row, 2),
            event: text_or_empty(row, 3),
            statement: text_or_empty(row, 4),
            order: number(row, 5)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_is_split() {
        assert_eq!(
            split_extra("VIRTUAL GENERATED"),
            (String::new(), Some(false), false)
        );
        assert_eq!(
            split_extra("auto_increment INVISIBLE"),
            ("auto_increment".to_string(), None, true)
        );
        assert_eq!(
            split_extra("on update current_timestamp()"),
            ("on update current_timestamp()".to_string(), None, false)
        );
    }

    #[test]
    fn partition_clause_is_extracted() {
        let ddl = "CREATE TABLE `pt` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB\n PARTITION BY HASH (`id`)\nPARTITIONS 2";
        assert_eq!(
            partition_clause(ddl).as_deref(),
            Some("PARTITION BY HASH (`id`)\nPARTITIONS 2")
        );
        let mysql = "CREATE TABLE t (a int)\n/*!50100 PARTITION BY HASH (a) */";
        assert_eq!(
            partition_clause(mysql).as_deref(),
            Some("PARTITION BY HASH (a)")
        );
        assert_eq!(
            row_format_option("row_format=COMPACT"),
            Some("COMPACT".into())
        );
        assert_eq!(row_format_option("partitioned"), None);
    }
}
