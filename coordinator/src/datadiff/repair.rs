//! Repair SQL: statements that make the target's rows equal the source's.
//!
//! Keyed tables: `DELETE` by key for rows only on the target, then `REPLACE` of the source
//! rows (read from the source's snapshot) for rows only on the source or different. Keys are
//! written as collation-comparing literals (see `fleetsync_mysql::datadiff::expr`), rows with
//! [`fleetsync_proto::sql::push_row`], exact for every type under the header's
//! `SET NAMES binary` and UTC time zone. Keyless tables: `DELETE ... WHERE every column <=>
//! value LIMIT 1` per surplus target copy, `INSERT` per surplus source copy.
//!
//! The file is one transaction with foreign key checks off (rows of several tables may
//! depend on each other); it is meant to be reviewed and run by an operator
//! (`mariadb < repair.sql`), which writes to the target's binlog like any client would.

use fleetsync_mysql::datadiff::expr::{ident, keys_condition};
use fleetsync_mysql::datadiff::{DiffTable, Session};
use fleetsync_mysql::SourceError;
use fleetsync_proto::sql::{push_row, push_table, push_value};
use fleetsync_proto::Value;

use super::walk::Found;

/// Rows per REPLACE/INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;

/// The repair script being built.
#[derive(Debug, Default)]
pub struct RepairSql {
    body: Vec<u8>,
    pub statements: usize,
}

impl RepairSql {
    /// The whole script: header, statements, COMMIT.
    pub fn render(&self, source: &str, target: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(
            format!(
                "-- fleetsync diff data: repair SQL that makes {target} (target) equal {source} (source).\n\
                 -- Review, then run it against the target, e.g. `mariadb ... < this-file`.\n\
                 SET NAMES binary;\nSET time_zone = '+00:00';\n\
                 SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';\n\
                 SET foreign_key_checks = 0;\nSTART TRANSACTION;\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"COMMIT;\nSET foreign_key_checks = 1;\n");
        out
    }

    /// Adds the statements for one table (`t` = the target's definition).
    pub async fn table(
        &mut self,
        source: &mut Session,
        s: &DiffTable,
        t: &DiffTable,
        found: &Found,
    ) -> Result<(), SourceError> {
        let bad = |m: String| SourceError::NeedsOperator {
            server: source.server.clone(),
            message: format!("{}: repair SQL: {m}", s.name()),
        };
        if found.keyless {
            for row in &found.only_in_target {
                self.delete_row(t, row).map_err(bad)?;
            }
            self.insert_rows(t, "INSERT", &found.only_in_source)
                .map_err(bad)?;
            return Ok(());
        }
        for batch in found.only_in_target.chunks(ROWS_PER_STATEMENT) {
            let cond = keys_condition(t, batch).map_err(bad)?;
            self.statement(|b| {
                b.extend_from_slice(b"DELETE FROM ");
                push_table(b, &t.schema.schema, &t.schema.table);
                b.extend_from_slice(b" WHERE ");
                b.extend_from_slice(cond.as_bytes());
            });
        }
        let mut keys = found.only_in_source.clone();
        keys.extend(found.different.iter().cloned());
        let rows = source.rows_by_key(s, &keys).await?;
        self.insert_rows(t, "REPLACE", &rows)
            .map_err(|m| SourceError::NeedsOperator {
                server: source.server.clone(),
                message: format!("{}: repair SQL: {m}", s.name()),
            })
    }

    fn statement(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.body);
        self.body.extend_from_slice(b";\n");
        self.statements += 1;
    }

    fn insert_rows(
        &mut self,
        t: &DiffTable,
        verb: &str,
        rows: &[Vec<Value>],
    ) -> Result<(), String> {
        let cols = t
            .schema
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(",");
        for batch in rows.chunks(ROWS_PER_STATEMENT) {
            let mut b = Vec::new();
            b.extend_from_slice(verb.as_bytes());
            b.extend_from_slice(b" INTO ");
            push_table(&mut b, &t.schema.schema, &t.schema.table);
            b.extend_from_slice(format!(" ({cols}) VALUES ").as_bytes());
            for (i, row) in batch.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                push_row(&mut b, row).map_err(|e| e.to_string())?;
            }
            self.statement(|body| body.extend_from_slice(&b));
        }
        Ok(())
    }

    /// Deletes one copy of a keyless row, matching every column exactly (`<=>` also
    /// matches NULLs; string literals are binary under `SET NAMES binary`).
    fn delete_row(&mut self, t: &DiffTable, row: &[Value]) -> Result<(), String> {
        let mut b = Vec::new();
        b.extend_from_slice(b"DELETE FROM ");
        push_table(&mut b, &t.schema.schema, &t.schema.table);
        b.extend_from_slice(b" WHERE ");
        for (i, (c, v)) in t.schema.columns.iter().zip(row).enumerate() {
            if i > 0 {
                b.extend_from_slice(b" AND ");
            }
            b.extend_from_slice(ident(&c.name).as_bytes());
            b.extend_from_slice(b" <=> ");
            push_value(&mut b, v).map_err(|e| e.to_string())?;
        }
        b.extend_from_slice(b" LIMIT 1");
        self.statement(|body| body.extend_from_slice(&b));
        Ok(())
    }
}
