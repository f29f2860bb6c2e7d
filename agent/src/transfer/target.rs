//! The import target: what exists there, whether a file's table fits it, and the statements
//! that write to it.

use fleetsync_proto::sql::{push_ident, push_quoted, push_table};
use fleetsync_proto::{Column, TableSchema};
use mysql_async::prelude::Queryable;

use super::sqlparse::Cursor;
use super::{OnConflict, TransferError};
use crate::source::schema::load_table;

/// Session of the loading connection: values are raw column-charset bytes, TIMESTAMPs UTC,
/// zero dates accepted and an explicit 0 in an AUTO_INCREMENT column kept (as the applier).
pub const SESSION_SETUP: &str = "SET NAMES binary; SET time_zone = '+00:00'; \
    SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'; SET foreign_key_checks = 0";

pub async fn database_exists(
    conn: &mut mysql_async::Conn,
    server: &str,
    db: &str,
) -> Result<bool, TransferError> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await
        .map_err(|e| TransferError::server(server, "reading the databases", e))?;
    Ok(n.unwrap_or(0) > 0)
}

/// The target table's columns (generated ones left out, as in exports), if it exists.
pub async fn existing_table(
    conn: &mut mysql_async::Conn,
    server: &str,
    db: &str,
    table: &str,
) -> Result<Option<TableSchema>, TransferError> {
    let t = load_table(conn, server, db, table)
        .await
        .map_err(|e| TransferError::Server(e.to_string()))?;
    Ok(t.map(|t| t.to_schema()))
}

/// Why rows of `file` cannot go into `target` as they are; empty when they fit.
pub fn mismatches(file: &TableSchema, target: &TableSchema) -> Vec<(Option<String>, String)> {
    let names = |cols: &[Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(&file.columns) != names(&target.columns) {
        return vec![(
            None,
            format!(
                "the target table has columns {:?}, the file {:?}",
                names(&target.columns),
                names(&file.columns)
            ),
        )];
    }
    file.columns
        .iter()
        .zip(&target.columns)
        .filter(|(f, t)| {
            f.ty != t.ty
                || f.unsigned != t.unsigned
                || f.charset != t.charset
                || !f.column_type.eq_ignore_ascii_case(&t.column_type)
        })
        .map(|(f, t)| {
            let cs = |c: &Column| {
                c.charset
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default()
            };
            (
                Some(f.name.clone()),
                format!(
                    "is {}{} in the file but {}{} in the target table",
                    f.column_type,
                    cs(f),
                    t.column_type,
                    cs(t)
                ),
            )
        })
        .collect()
}

/// `CREATE TABLE `name` ...` with the name qualified by `db` (for a syntax check).
pub fn qualified_create(create_sql: &str, db: &str) -> Result<String, String> {
    let mut c = Cursor::new(create_sql.as_bytes(), 1);
    let ok = c.word().as_deref() == Some("CREATE") && c.opt_keyword("TABLE");
    if !ok {
        return Err("the table definition does not start with CREATE TABLE".into());
    }
    let (_, name) = c.table_name().map_err(|(_, m)| m)?;
    let rest = &create_sql[c.offset()..];
    let mut out = b"CREATE TABLE ".to_vec();
    push_table(&mut out, db, &name);
    Ok(format!(
        "{} {}",
        String::from_utf8_lossy(&out),
        rest.trim_start()
    ))
}

/// Runs the server's parser on a `CREATE TABLE` without executing it (`PREPARE`); the
/// server's message on a syntax error.
pub async fn check_create(
    conn: &mut mysql_async::Conn,
    db: &str,
    create_sql: &str,
) -> Result<(), String> {
    let text = qualified_create(create_sql, db)?;
    let mut sql = b"SET NAMES utf8mb4; SET @fleetsync_check = ".to_vec();
    push_quoted(&mut sql, text.as_bytes());
    sql.extend_from_slice(b"; PREPARE fleetsync_check FROM @fleetsync_check");
    let r = conn.query_drop(sql.as_slice()).await;
    let _ = conn
        .query_drop("DEALLOCATE PREPARE fleetsync_check; SET @fleetsync_check = NULL")
        .await;
    r.map_err(|e| e.to_string())
}

/// The fixed parts of a multi-row `INSERT` for one table in one conflict mode.
pub struct InsertSql {
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

impl InsertSql {
    pub fn new(t: &TableSchema, db: &str, table: &str, mode: OnConflict) -> Self {
        let mut prefix = match mode {
            OnConflict::Replace => b"REPLACE INTO ".to_vec(),
            _ => b"INSERT INTO ".to_vec(),
        };
        push_table(&mut prefix, db, table);
        prefix.extend_from_slice(b" (");
        for (i, c) in t.columns.iter().enumerate() {
            if i > 0 {
                prefix.push(b',');
            }
            push_ident(&mut prefix, &c.name);
        }
        prefix.extend_from_slice(b") VALUES ");
        let mut suffix = Vec::new();
        let first = t
            .columns
            .first()
            .map(|c| c.name.as_str())
            .unwrap_or_default();
        match mode {
            OnConflict::Skip => {
                // A no-op update: duplicates are kept as they are, any other error still fails.
                suffix.extend_from_slice(b" ON DUPLICATE KEY UPDATE ");
                push_ident(&mut suffix, first);
                suffix.push(b'=');
                push_ident(&mut suffix, first);
            }
            OnConflict::Update => {
                suffix.extend_from_slice(b" ON DUPLICATE KEY UPDATE ");
                let non_key: Vec<&Column> = t
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !t.key.iter().any(|&k| usize::from(k) == *i))
                    .map(|(_, c)| c)
                    .collect();
                let cols = if non_key.is_empty() {
                    t.columns.iter().collect()
                } else {
                    non_key
                };
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        suffix.push(b',');
                    }
                    push_ident(&mut suffix, &c.name);
                    suffix.extend_from_slice(b"=VALUES(");
                    push_ident(&mut suffix, &c.name);
                    suffix.push(b')');
                }
            }
            OnConflict::Replace | OnConflict::Error => {}
        }
        InsertSql { prefix, suffix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_gets_qualified() {
        let q = qualified_create("CREATE TABLE `t``x` (\n  `a` int\n)", "new db");
        assert_eq!(
            q.as_deref(),
            Ok("CREATE TABLE `new db`.`t``x` (\n  `a` int\n)")
        );
        assert!(qualified_create("DROP TABLE x", "d").is_err());
    }
}
