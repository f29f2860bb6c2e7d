//! Staging tables for `backup restore`: load beside the target, then swap in.
//!
//! Every restored table is created and loaded under a staging name in its target database
//! (`__fss<tag>_<table>`, `tag` = 8 hex digits of the backup id's SHA-256). Nothing the target
//! already has is touched until every table has loaded. Then:
//!
//! * **Swap mode** (the usual case): one multi-table `RENAME TABLE` statement renames each
//!   replaced table or view aside (`__fsd<tag>_<name>`) and each staging table to its real
//!   name. MariaDB's RENAME TABLE is atomic: all of it happens or none. The set-aside objects
//!   are dropped afterwards.
//! * **Foreign-key mode**, when the restore replaces existing tables and foreign keys are
//!   involved (a restored definition has a FOREIGN KEY, or an existing foreign key has a
//!   replaced table as child or parent). InnoDB makes this case different: renaming a table
//!   retargets every foreign key that references it (a staging child would end up pointing
//!   at the set-aside parent), and constraint names are unique per database (a staging copy
//!   of an existing child cannot be created with the same constraint names). So staging
//!   tables are created without their FOREIGN KEY clauses; after the load the replaced
//!   objects are dropped, the staging tables renamed in (one statement), and the foreign keys
//!   added back with `ALTER TABLE ... ADD CONSTRAINT` (foreign_key_checks = 0: metadata only).
//!   A load failure still leaves the target unchanged; only the short drop-rename-alter step
//!   at the end is not atomic.
//!
//! On any failure before the swap, [`Staging::abandon`] drops every staging name and every
//! database the restore created; existing objects were never touched. Staging names are
//! deterministic per backup, so a rerun of the same restore first drops leftovers of a crashed
//! run (`DROP TABLE IF EXISTS`). Two concurrent restores of the same backup into one server
//! would share names: not supported.
//!
//! Invariants: names are at most 64 characters (MariaDB's identifier limit; long table names
//! are cut and get a hash suffix, deterministically); each statement is run on a session with
//! `foreign_key_checks = 0`.

use std::collections::{BTreeSet, HashSet};

use fleetsync_proto::sql::{push_ident, table_name};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use sha2::{Digest, Sha256};

use super::chunk::quote;
use super::{snapshot, BackupError};
use crate::SourceError;

/// MariaDB's identifier limit, in characters.
const MAX_IDENT: usize = 64;
/// The prefix every staging (`s`) and set-aside (`d`) name starts with.
pub const PREFIX: &str = "__fs";

/// One restored table, staged.
#[derive(Debug, Clone)]
pub struct StagedTable {
    pub database: String,
    pub table: String,
    pub stage: String,
    /// The CREATE TABLE statement for the staging name.
    pub ddl: Vec<u8>,
    /// FOREIGN KEY clauses removed from `ddl` (foreign-key mode), added back after the swap.
    pub fks: Vec<String>,
    /// The schema file, for messages.
    pub schema_path: String,
}

/// What a restore staged and how it will swap.
#[derive(Debug)]
pub struct Staging {
    pub server: String,
    pub tag: String,
    pub fk_mode: bool,
    pub tables: Vec<StagedTable>,
    /// Existing (database, name, TABLE_TYPE) to replace.
    pub existing: Vec<(String, String, String)>,
    /// Target databases that did not exist before the restore.
    pub created_dbs: Vec<String>,
}

fn hex8(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// `__fs<kind><tag>_<name>`, cut to 64 characters with a hash of the full name when longer.
pub fn aside_name(kind: char, tag: &str, name: &str) -> String {
    let head = format!("{PREFIX}{kind}{tag}_");
    let room = MAX_IDENT - head.chars().count();
    if name.chars().count() <= room {
        return format!("{head}{name}");
    }
    let keep: String = name.chars().take(room - 9).collect();
    format!("{head}{keep}_{}", hex8(name))
}

/// The backup's tag in staging names.
pub fn tag_of(backup_id: &str) -> String {
    hex8(backup_id)
}

fn is_fk_line(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("CONSTRAINT `") && t.contains(" FOREIGN KEY (") && t.contains(" REFERENCES ")
}

/// Rewrites `CREATE TABLE `table` (...` (SHOW CREATE TABLE output) to create `stage`; with
/// `strip_fks`, without its FOREIGN KEY clauses, which are returned.
pub fn staging_ddl(
    sql: &[u8],
    table: &str,
    stage: &str,
    strip_fks: bool,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut head = b"CREATE TABLE ".to_vec();
    push_ident(&mut head, table);
    let Some(rest) = sql.strip_prefix(head.as_slice()) else {
        return Err(format!(
            "does not start with CREATE TABLE {}",
            String::from_utf8_lossy(&head[13..])
        ));
    };
    let mut out = b"CREATE TABLE ".to_vec();
    push_ident(&mut out, stage);
    let text = String::from_utf8_lossy(rest);
    if !strip_fks || !text.lines().any(is_fk_line) {
        out.extend_from_slice(rest);
        return Ok((out, Vec::new()));
    }
    // One definition per line between the opening line and the line starting with ")".
    let lines: Vec<&str> = text.split('\n').collect();
    let close = lines
        .iter()
        .skip(1)
        .position(|l| l.starts_with(')'))
        .map(|i| i + 1)
        .ok_or("no closing parenthesis line in CREATE TABLE")?;
    let mut items = Vec::new();
    let mut fks = Vec::new();
    for l in &lines[1..close] {
        let item = l.strip_suffix(',').unwrap_or(l);
        if is_fk_line(item) {
            fks.push(item.trim().to_string());
        } else {
            items.push(item);
        }
    }
    let mut body = format!("{}\n{}\n", lines[0], items.join(",\n"));
    body.push_str(&lines[close..].join("\n"));
    out.extend_from_slice(body.as_bytes());
    Ok((out, fks))
}

fn mysql_err(server: &str, ctx: String) -> impl Fn(mysql_async::Error) -> BackupError + '_ {
    move |e| BackupError::Source(SourceError::from_mysql(server, &ctx, e))
}

/// Whether a replaced table is tied to a foreign key on the target (as child or parent).
pub async fn existing_fks_touch(
    conn: &mut Conn,
    server: &str,
    replaced: &HashSet<(String, String)>,
) -> Result<bool, BackupError> {
    if replaced.is_empty() {
        return Ok(false);
    }
    let rows: Vec<(String, String, String, String)> = conn
        .query("SELECT TABLE_SCHEMA, TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL")
        .await
        .map_err(mysql_err(server, "listing the target's foreign keys".into()))?;
    Ok(rows
        .into_iter()
        .any(|(s, t, rs, rt)| replaced.contains(&(s, t)) || replaced.contains(&(rs, rt))))
}

/// The target's databases.
pub async fn databases(conn: &mut Conn, server: &str) -> Result<BTreeSet<String>, BackupError> {
    let rows: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .await
        .map_err(mysql_err(server, "listing the target's databases".into()))?;
    Ok(rows.into_iter().collect())
}

impl Staging {
    /// Creates every staging table (dropping leftovers of an earlier run of this restore).
    pub async fn create(&self, conn: &mut Conn) -> Result<(), BackupError> {
        for t in &self.tables {
            let drop = format!("DROP TABLE IF EXISTS {}", table_name(&t.database, &t.stage));
            conn.query_drop(drop)
                .await
                .map_err(mysql_err(&self.server, format!("dropping {}", t.stage)))?;
            conn.query_drop(format!("USE {}", quote(&t.database)))
                .await
                .map_err(mysql_err(
                    &self.server,
                    format!("using database {}", t.database),
                ))?;
            conn.query_drop(t.ddl.as_slice()).await.map_err(|e| {
                BackupError::file(
                    std::path::Path::new(&t.schema_path),
                    format!(
                        "creating table {}.{} (staging name {}) on server {}: {e}",
                        t.database, t.table, t.stage, self.server
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Puts the loaded tables in place of the existing objects (see the module doc).
    pub async fn swap(&self, conn: &mut Conn) -> Result<(), BackupError> {
        let server = self.server.as_str();
        let kind = |k: &str| if k == "VIEW" { "VIEW" } else { "TABLE" };
        let mut renames: Vec<String> = Vec::new();
        if !self.fk_mode {
            for (db, name, _) in &self.existing {
                let aside = aside_name('d', &self.tag, name);
                renames.push(format!(
                    "{} TO {}",
                    table_name(db, name),
                    table_name(db, &aside)
                ));
            }
        }
        for t in &self.tables {
            renames.push(format!(
                "{} TO {}",
                table_name(&t.database, &t.stage),
                table_name(&t.database, &t.table)
            ));
        }
        if self.fk_mode {
            for (db, name, k) in &self.existing {
                let sql = format!("DROP {} IF EXISTS {}", kind(k), table_name(db, name));
                conn.query_drop(sql).await.map_err(|e| {
                    BackupError::server(server, format!("dropping {db}.{name} after the load (foreign-key mode; objects listed before it were dropped already, the loaded data is in the {PREFIX}s{}_* tables): {e}", self.tag))
                })?;
            }
        }
        conn.query_drop(format!("RENAME TABLE {}", renames.join(", ")))
            .await
            .map_err(|e| {
                BackupError::server(
                    server,
                    format!("renaming the loaded tables into place: {e}"),
                )
            })?;
        tracing::info!(
            server,
            tables = self.tables.len(),
            replaced = self.existing.len(),
            fk_mode = self.fk_mode,
            "restored tables swapped in"
        );
        if !self.fk_mode {
            for (db, name, k) in &self.existing {
                let aside = aside_name('d', &self.tag, name);
                let sql = format!("DROP {} {}", kind(k), table_name(db, &aside));
                conn.query_drop(sql).await.map_err(|e| {
                    BackupError::server(server, format!("the restore is in place, but dropping the replaced {db}.{name} (now named {aside}) failed: {e}"))
                })?;
            }
        }
        self.add_foreign_keys(conn).await
    }

    async fn add_foreign_keys(&self, conn: &mut Conn) -> Result<(), BackupError> {
        for t in self.tables.iter().filter(|t| !t.fks.is_empty()) {
            conn.query_drop(format!("USE {}", quote(&t.database)))
                .await
                .map_err(mysql_err(
                    &self.server,
                    format!("using database {}", t.database),
                ))?;
            let adds: Vec<String> = t.fks.iter().map(|f| format!("ADD {f}")).collect();
            let sql = format!("ALTER TABLE {} {}", quote(&t.table), adds.join(", "));
            conn.query_drop(sql).await.map_err(|e| {
                BackupError::server(&self.server, format!("the restored data is in place, but adding the foreign keys of {}.{} back failed ({}): {e}", t.database, t.table, t.fks.join("; ")))
            })?;
        }
        Ok(())
    }

    /// After a failure before the swap: drops every staging table and every database the
    /// restore created, and returns `err` saying what state the target is in.
    pub async fn abandon(&self, opts: &Opts, err: BackupError) -> BackupError {
        let cleaned = self.clean(opts).await;
        if matches!(err, BackupError::Cancelled) && cleaned.is_ok() {
            return BackupError::Cancelled;
        }
        let note = match cleaned {
            Ok(()) => "; the target was left unchanged (staging tables dropped)".to_string(),
            Err(e) => format!(
                "; existing tables were not touched, but cleaning up failed ({e}): tables named {PREFIX}s{}_* may be left on the target (drop them by hand)",
                self.tag
            ),
        };
        match err {
            BackupError::File { path, message } => BackupError::File {
                path,
                message: format!("{message}{note}"),
            },
            other => BackupError::Refused(format!("{other}{note}")),
        }
    }

    async fn clean(&self, opts: &Opts) -> Result<(), BackupError> {
        let mut conn = snapshot::connect(opts, &self.server).await?;
        conn.query_drop("SET foreign_key_checks = 0")
            .await
            .map_err(mysql_err(
                &self.server,
                "preparing the clean-up session".into(),
            ))?;
        // Table by table first, also in databases about to be dropped: on a full tablespace
        // one DROP DATABASE of several tables can fail for lack of space where single drops,
        // each freeing space, succeed.
        let tables: Vec<(String, String)> = self
            .tables
            .iter()
            .map(|t| {
                let sql = format!("DROP TABLE IF EXISTS {}", table_name(&t.database, &t.stage));
                (sql, format!("dropping {}.{}", t.database, t.stage))
            })
            .collect();
        self.drop_all(&mut conn, tables).await?;
        let dbs: Vec<(String, String)> = self
            .created_dbs
            .iter()
            .map(|db| {
                let sql = format!("DROP DATABASE IF EXISTS {}", quote(db));
                (
                    sql,
                    format!("dropping database {db}, created by the restore"),
                )
            })
            .collect();
        self.drop_all(&mut conn, dbs).await?;
        let _ = conn.disconnect().await;
        tracing::info!(server = %self.server, "restore abandoned: staging tables dropped");
        Ok(())
    }

    /// Runs every (statement, context), retrying the failed ones for a few rounds: a DROP on
    /// a full InnoDB tablespace needs a little undo space, which other drops and the purge of
    /// the rolled-back load free.
    async fn drop_all(
        &self,
        conn: &mut Conn,
        mut todo: Vec<(String, String)>,
    ) -> Result<(), BackupError> {
        for round in 1..=CLEAN_ROUNDS {
            let mut failed = Vec::new();
            let mut last = None;
            for (sql, ctx) in todo {
                if let Err(e) = conn.query_drop(sql.as_str()).await {
                    tracing::warn!(server = %self.server, round, "{ctx}: {e}");
                    last = Some(mysql_err(&self.server, ctx.clone())(e));
                    failed.push((sql, ctx));
                }
            }
            match last {
                None => return Ok(()),
                Some(e) if round == CLEAN_ROUNDS => return Err(e),
                Some(_) => tokio::time::sleep(CLEAN_PAUSE).await,
            }
            todo = failed;
        }
        Ok(())
    }
}

/// Clean-up attempts after a failed load, [`CLEAN_PAUSE`] apart (about 5 s in all).
const CLEAN_ROUNDS: u32 = 10;
const CLEAN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_deterministic() {
        let tag = tag_of("src-20250101T000000Z");
        assert_eq!(tag.len(), 8);
        assert_eq!(aside_name('s', &tag, "t"), format!("__fss{tag}_t"));
        let long = "x".repeat(64);
        let a = aside_name('s', &tag, &long);
        assert_eq!(a.chars().count(), 64);
        assert_eq!(a, aside_name('s', &tag, &long));
        assert_ne!(a, aside_name('s', &tag, &"x".repeat(63)));
        let wide = "é".repeat(60);
        assert_eq!(aside_name('d', &tag, &wide).chars().count(), 64);
    }

    #[test]
    fn ddl_renamed_and_fks_stripped() {
        let sql = b"CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `fk_c` (`pid`),\n  CONSTRAINT `fk_c` FOREIGN KEY (`pid`) REFERENCES `p` (`id`) ON DELETE CASCADE,\n  CONSTRAINT `chk` CHECK (`id` > 0)\n) ENGINE=InnoDB;\n";
        let (ddl, fks) = staging_ddl(sql, "c", "__fss1_c", false).unwrap();
        assert!(ddl.starts_with(b"CREATE TABLE `__fss1_c` (\n"));
        assert!(fks.is_empty());
        assert_eq!(&ddl[22..], &sql[15..]);
        let (ddl, fks) = staging_ddl(sql, "c", "__fss1_c", true).unwrap();
        assert_eq!(
            fks,
            vec!["CONSTRAINT `fk_c` FOREIGN KEY (`pid`) REFERENCES `p` (`id`) ON DELETE CASCADE"]
        );
        assert_eq!(
            String::from_utf8(ddl).unwrap(),
            "CREATE TABLE `__fss1_c` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `fk_c` (`pid`),\n  CONSTRAINT `chk` CHECK (`id` > 0)\n) ENGINE=InnoDB;\n"
        );
        // The FOREIGN KEY last: the comma before it goes too.
        let sql = b"CREATE TABLE `c` (\n  `pid` int(11),\n  CONSTRAINT `f` FOREIGN KEY (`pid`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB;\n";
        let (ddl, fks) = staging_ddl(sql, "c", "s", true).unwrap();
        assert_eq!(fks.len(), 1);
        assert_eq!(
            String::from_utf8(ddl).unwrap(),
            "CREATE TABLE `s` (\n  `pid` int(11)\n) ENGINE=InnoDB;\n"
        );
        assert!(staging_ddl(b"CREATE TABLE `other` (\n", "c", "s", false).is_err());
    }
}
