//! Running migrations: [`run_steps`] (with a database-name mapping), schema files loaded into
//! scratch databases ([`load_schema_file`]), and [`verify`]: a migration proven on scratch
//! copies of the target before anyone runs it.
//!
//! Scratch databases are named `fleetsync_scratch_<tag>_<n>` (never part of a server
//! snapshot) on the target's server; they are dropped when the work is done, also after a
//! failure. Creating them needs CREATE and DROP on `fleetsync_scratch\_%`; copying rows needs
//! SELECT on the target and INSERT on the copies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fleetsync_mysql::inspect::{self, SCRATCH_PREFIX};
use fleetsync_proto::schema_model::{DatabaseSchema, SchemaSnapshot};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;

use super::render::ident;
use super::{diff, pair_databases, sqlfile, Hints, Pairing, Step};

/// A step that failed: its 1-based number, its SQL and the server's message.
#[derive(Debug, Clone)]
pub struct StepError {
    pub number: usize,
    pub sql: String,
    pub message: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.sql.lines().next().unwrap_or("");
        write!(
            f,
            "step {} ({first} ...) failed: {}",
            self.number, self.message
        )
    }
}

/// Runs `steps` in order on `conn`; database names go through `map`.
pub async fn run_steps(
    conn: &mut Conn,
    steps: &[Step],
    map: &(dyn Fn(&str) -> String + Sync),
) -> Result<(), StepError> {
    let mut current: Option<String> = None;
    for (i, step) in steps.iter().enumerate() {
        let text = match step {
            Step::Sql { database, sql, .. } => {
                let db = map(database);
                if current.as_deref() != Some(db.as_str()) {
                    exec(conn, i, &format!("USE {}", ident(&db))).await?;
                    current = Some(db);
                }
                sql.clone()
            }
            Step::CreateDatabase {
                name,
                charset,
                collation,
            } => create_database_sql(&map(name), charset.as_deref(), collation.as_deref()),
            Step::DropDatabase { name } => {
                let db = map(name);
                if current.as_deref() == Some(db.as_str()) {
                    current = None;
                }
                format!("DROP DATABASE {}", ident(&db))
            }
        };
        exec(conn, i, &text).await?;
    }
    Ok(())
}

async fn exec(conn: &mut Conn, i: usize, sql: &str) -> Result<(), StepError> {
    conn.query_drop(sql).await.map_err(|e| StepError {
        number: i + 1,
        sql: sql.to_string(),
        message: e.to_string(),
    })
}

fn create_database_sql(name: &str, charset: Option<&str>, collation: Option<&str>) -> String {
    let mut sql = format!("CREATE DATABASE {}", ident(name));
    if let Some(cs) = charset {
        sql.push_str(&format!(" CHARACTER SET {cs}"));
    }
    if let Some(c) = collation {
        sql.push_str(&format!(" COLLATE {c}"));
    }
    sql
}

/// A tag unique enough for this process's scratch databases.
fn scratch_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

async fn drop_databases(conn: &mut Conn, names: impl Iterator<Item = &String>) {
    for n in names {
        // Best effort: a leftover scratch database is harmless and clearly named.
        let _ = conn
            .query_drop(format!("DROP DATABASE IF EXISTS {}", ident(n)))
            .await;
    }
}

/// Loads a `.sql` schema file into a scratch database on `conn`'s server, snapshots it and
/// drops it. `USE` / `CREATE DATABASE` / `DROP DATABASE` statements are skipped (a schema
/// file is one database). The result is named after the file's stem and has no database
/// options. Errors name the file and line.
pub async fn load_schema_file(conn: &mut Conn, path: &Path) -> Result<DatabaseSchema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read schema file {}: {e}", path.display()))?;
    let scratch = format!("{SCRATCH_PREFIX}{}_file", scratch_tag());
    let result = load_into(conn, path, &text, &scratch).await;
    drop_databases(conn, std::iter::once(&scratch)).await;
    let mut schema = result?;
    schema.name = path
        .file_stem()
        .map_or("schema".into(), |s| s.to_string_lossy().into_owned());
    schema.charset = None;
    schema.collation = None;
    Ok(schema)
}

async fn load_into(
    conn: &mut Conn,
    path: &Path,
    text: &str,
    scratch: &str,
) -> Result<DatabaseSchema, String> {
    let setup = format!("CREATE DATABASE {0}; USE {0}", ident(scratch));
    conn.query_drop(setup).await.map_err(|e| {
        format!(
            "cannot create scratch database {scratch} for {}: {e}",
            path.display()
        )
    })?;
    for st in sqlfile::split(text) {
        if sqlfile::is_database_statement(&st.sql) {
            continue;
        }
        conn.query_drop(&st.sql)
            .await
            .map_err(|e| format!("{}:{}: {e}", path.display(), st.line))?;
    }
    inspect::snapshot_database(conn, scratch)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "scratch database {scratch} disappeared while loading {}",
                path.display()
            )
        })
}

/// What [`verify`] needs.
pub struct VerifyInput<'a> {
    pub source: &'a SchemaSnapshot,
    pub target: &'a SchemaSnapshot,
    pub pairing: Pairing,
    pub up: &'a [Step],
    pub down: &'a [Step],
    /// Tables (by estimate) with at most this many rows are copied with their rows.
    pub rows_limit: u64,
}

/// The verdict of [`verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub verified: bool,
    /// Why it is not verified (empty when verified).
    pub problems: Vec<String>,
    /// What the verification could not cover (tables copied without their rows).
    pub warnings: Vec<String>,
}

/// Proves a migration on scratch copies of the target, on the target's server: copy the
/// target's schema (and the rows of tables within `rows_limit`), check the copy equals the
/// target, apply up and re-diff against the source, apply down and re-diff against the
/// target. Every scratch database is dropped afterwards.
pub async fn verify(conn: &mut Conn, input: &VerifyInput<'_>) -> Verification {
    let tag = scratch_tag();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let dbs: Vec<&DatabaseSchema> = match input.pairing {
        // One database: its steps all run in the target's database.
        Pairing::Single => input.target.databases.iter().take(1).collect(),
        Pairing::ByName => input
            .target
            .databases
            .iter()
            .chain(&input.source.databases)
            .collect(),
    };
    for db in dbs {
        let n = names.len();
        names
            .entry(db.name.clone())
            .or_insert_with(|| format!("{SCRATCH_PREFIX}{tag}_{n}"));
    }
    let mut out = Verification::default();
    if let Err(problem) = verify_on(conn, input, &names, &mut out.warnings).await {
        out.problems.push(problem);
    }
    drop_databases(conn, names.values()).await;
    out.verified = out.problems.is_empty();
    out
}

async fn verify_on(
    conn: &mut Conn,
    input: &VerifyInput<'_>,
    names: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let changed = changed_tables(input);
    for db in &input.target.databases {
        let scratch = &names[&db.name];
        copy_database(conn, db, scratch, input.rows_limit, &changed, warnings).await?;
    }
    let copy = snapshot_mapped(conn, names).await?;
    expect_equal(
        input.target,
        &copy,
        input.pairing,
        "the scratch copy of the target",
    )
    .map_err(|e| format!("cannot verify: {e}: the copy does not reproduce the target"))?;
    let map = |n: &str| names.get(n).cloned().unwrap_or_else(|| n.to_string());
    run_steps(conn, input.up, &map)
        .await
        .map_err(|e| format!("up migration on the scratch copy: {e}"))?;
    let after_up = snapshot_mapped(conn, names).await?;
    expect_equal(
        input.source,
        &after_up,
        input.pairing,
        "after up, the scratch copy",
    )?;
    run_steps(conn, input.down, &map)
        .await
        .map_err(|e| format!("down migration on the scratch copy: {e}"))?;
    let after_down = snapshot_mapped(conn, names).await?;
    expect_equal(
        input.target,
        &after_down,
        input.pairing,
        "after down, the scratch copy",
    )
}

/// `Err` naming the first differences when `actual` differs from `expected`.
fn expect_equal(
    expected: &SchemaSnapshot,
    actual: &SchemaSnapshot,
    pairing: Pairing,
    what: &str,
) -> Result<(), String> {
    let d = diff(expected, actual, pairing, &Hints::default());
    if d.equal {
        return Ok(());
    }
    let first: Vec<String> = d
        .differences
        .iter()
        .take(5)
        .map(|x| x.to_string())
        .collect();
    Err(format!(
        "{what} still differs in {} ways (source = expected, target = copy): {}",
        d.differences.len(),
        first.join("; ")
    ))
}

/// Snapshots the scratch databases and names them back after the originals.
async fn snapshot_mapped(
    conn: &mut Conn,
    names: &BTreeMap<String, String>,
) -> Result<SchemaSnapshot, String> {
    let scratch: Vec<String> = names.values().cloned().collect();
    let mut snap = inspect::snapshot(conn, &scratch)
        .await
        .map_err(|e| format!("snapshot of the scratch copy: {e}"))?;
    for db in &mut snap.databases {
        if let Some((orig, _)) = names.iter().find(|(_, s)| **s == db.name) {
            db.name = orig.clone();
        }
    }
    snap.databases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(snap)
}

/// (database, table) of every target table the migration changes.
fn changed_tables(input: &VerifyInput<'_>) -> BTreeSet<(String, String)> {
    let d = diff(input.source, input.target, input.pairing, &Hints::default());
    let dbs = pair_databases(input.source, input.target, input.pairing);
    let target_db = |source_db: &str| {
        dbs.pairs
            .iter()
            .find(|(s, _)| s.name == source_db)
            .map_or(source_db.to_string(), |(_, t)| t.name.clone())
    };
    d.differences
        .iter()
        .filter_map(|x| Some((target_db(&x.database), x.table.clone()?)))
        .collect()
}

/// Copies one database's schema (SHOW CREATE TABLE, foreign key checks off) and the rows of
/// its small tables into `scratch`, then its views and triggers (after the rows, so triggers
/// do not fire on the copy).
async fn copy_database(
    conn: &mut Conn,
    db: &DatabaseSchema,
    scratch: &str,
    rows_limit: u64,
    changed: &BTreeSet<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let fail = |what: String| move |e: mysql_async::Error| format!("cannot verify: {what}: {e}");
    let create = create_database_sql(scratch, db.charset.as_deref(), db.collation.as_deref());
    conn.query_drop(format!(
        "{create}; USE {}; SET SESSION foreign_key_checks = 0; SET SESSION sql_mode = ''",
        ident(scratch)
    ))
    .await
    .map_err(fail(format!(
        "creating scratch database {scratch} (needs CREATE and DROP on `fleetsync_scratch\\_%`)"
    )))?;
    let rows = table_rows(conn, &db.name)
        .await
        .map_err(fail("reading table sizes".into()))?;
    for t in &db.tables {
        let from = format!("{}.{}", ident(&db.name), ident(&t.name));
        let ddl: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE {from}"))
            .await
            .map_err(fail(format!("SHOW CREATE TABLE {from}")))?;
        let Some((_, ddl)) = ddl else {
            return Err(format!("cannot verify: table {from} disappeared"));
        };
        conn.query_drop(ddl)
            .await
            .map_err(fail(format!("copying table {from}")))?;
        let n = rows.get(&t.name).copied().unwrap_or(0);
        let is_changed = changed.contains(&(db.name.clone(), t.name.clone()));
        if n > rows_limit {
            if is_changed {
                warnings.push(format!(
                    "table {}.{} (~{n} rows) is over the verification limit of {rows_limit} rows and was copied without rows: data-dependent steps on it (NOT NULL, UNIQUE, narrower types, foreign keys) were not checked against its data",
                    db.name, t.name
                ));
            }
            continue;
        }
        let cols: Vec<String> = t
            .columns
            .iter()
            .filter(|c| c.generated.is_none())
            .map(|c| ident(&c.name))
            .collect();
        let list = cols.join(", ");
        let copy = format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {from}",
            ident(&t.name)
        );
        if let Err(e) = conn.query_drop(copy).await {
            warnings.push(format!("rows of {}.{} not copied: {e}", db.name, t.name));
        }
    }
    conn.query_drop("SET SESSION foreign_key_checks = 1; SET SESSION sql_mode = @@GLOBAL.sql_mode")
        .await
        .map_err(fail("restoring session settings".into()))?;
    let empty = DatabaseSchema::default();
    let objects = super::plan(
        &SchemaSnapshot {
            databases: vec![only_views_and_triggers(db)],
        },
        &SchemaSnapshot {
            databases: vec![DatabaseSchema {
                tables: db.tables.clone(),
                ..empty
            }],
        },
        Pairing::Single,
        &Hints::default(),
    );
    for step in objects {
        if let Step::Sql { sql, .. } = step {
            conn.query_drop(&sql)
                .await
                .map_err(fail(format!("copying {}", first_line(&sql))))?;
        }
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `db` with its tables, views and triggers: planning it against the same tables without
/// views and triggers yields exactly the CREATE VIEW / CREATE TRIGGER steps, in order.
fn only_views_and_triggers(db: &DatabaseSchema) -> DatabaseSchema {
    DatabaseSchema {
        name: String::new(),
        charset: None,
        collation: None,
        tables: db.tables.clone(),
        views: db.views.clone(),
        triggers: db.triggers.clone(),
    }
}

/// Estimated rows per table (information_schema; exact enough to choose what to copy).
async fn table_rows(
    conn: &mut Conn,
    db: &str,
) -> Result<BTreeMap<String, u64>, mysql_async::Error> {
    let rows: Vec<(String, Option<u64>)> = conn
        .exec(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
            (db,),
        )
        .await?;
    Ok(rows.into_iter().map(|(t, n)| (t, n.unwrap_or(0))).collect())
}

/// `up.sql` / `down.sql` text: `USE` lines between databases, triggers inside `DELIMITER ;;`
/// so that `mariadb < up.sql` runs the same statements.
pub fn render_sql(steps: &[Step], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("-- {line}\n"));
    }
    out.push('\n');
    let mut current: Option<&str> = None;
    for step in steps {
        match step {
            Step::Sql {
                database,
                sql,
                warning,
            } => {
                if current != Some(database.as_str()) {
                    out.push_str(&format!("USE {};\n\n", ident(database)));
                    current = Some(database.as_str());
                }
                if let Some(w) = warning {
                    out.push_str(&format!("-- WARNING: {w}\n"));
                }
                if sql.starts_with("CREATE TRIGGER") {
                    out.push_str(&format!("DELIMITER ;;\n{sql};;\nDELIMITER ;\n\n"));
                } else {
                    out.push_str(&format!("{sql};\n\n"));
                }
            }
            Step::CreateDatabase {
                name,
                charset,
                collation,
            } => {
                let sql = create_database_sql(name, charset.as_deref(), collation.as_deref());
                out.push_str(&format!("{sql};\n\n"));
            }
            Step::DropDatabase { name } => {
                out.push_str(&format!(
                    "-- WARNING: drops database {name} and all its data\n"
                ));
                out.push_str(&format!("DROP DATABASE {};\n\n", ident(name)));
                if current == Some(name.as_str()) {
                    current = None;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_sql_splits_back_into_the_steps() {
        let steps = vec![
            Step::Sql {
                database: "d".into(),
                sql: "ALTER TABLE `t`\n  ADD COLUMN `c` int(11) NULL DEFAULT NULL".into(),
                warning: Some("w".into()),
            },
            Step::Sql {
                database: "d".into(),
                sql: "CREATE TRIGGER `x` BEFORE INSERT ON `t` FOR EACH ROW BEGIN SET @a = 1; END"
                    .into(),
                warning: None,
            },
        ];
        let text = render_sql(&steps, "header");
        let st = sqlfile::split(&text);
        let sqls: Vec<&str> = st.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sqls.len(), 3, "{sqls:?}");
        assert_eq!(sqls[0], "USE `d`");
        assert!(sqls[1].starts_with("ALTER TABLE `t`"));
        assert!(sqls[2].ends_with("END"));
    }
}
