//! `backup restore`: verify, plan, check, then load in parallel.
//!
//! [`prepare`] changes nothing: it reads and verifies the whole backup from the store (every
//! checksum, every file decrypted and decompressed: [`super::verify`]; from a bucket each
//! object is downloaded once for this and once for the load, never kept on local disk), maps databases through `--rename-db`,
//! lists the target objects a restore would replace, and checks the target user's privileges
//! (CREATE, INSERT, DROP when something is replaced, CREATE VIEW when there are views). Any
//! problem is an error naming the file, database or privilege, with the target untouched.
//! A dry run stops there and prints the [`RestorePlan`].
//!
//! [`execute`] refuses to replace existing tables or views unless told to
//! (`drop_existing`: `--yes` or a y/N answer). It then creates the databases that are missing,
//! creates every table under a staging name beside the target ([`super::stage`]), loads every
//! data file into the staging tables (one file per transaction, N connections, session
//! `SET NAMES binary`, `time_zone='+00:00'`, no foreign-key or unique checks, a non-strict
//! sql_mode so zero dates load; each line's `INSERT INTO` is pointed at the staging name),
//! each file downloaded by the connection that loads it, checked against the manifest again),
//! and only when all of it has loaded swaps the staging tables in (one atomic RENAME TABLE),
//! drops the replaced objects and creates views last.
//!
//! Invariant: a failure before the swap (server out of space, a server error, a lost
//! connection, a bad file) drops the staging tables and the databases the restore created, and
//! the error names the file (and line) and says the target was left unchanged; existing tables
//! are never touched before every table has loaded. Failures after the swap (dropping the
//! replaced tables, adding foreign keys back, creating views) say what is in place. The
//! [`RestoreReport`] carries the backup's binlog position, from which point-in-time recovery
//! replays.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use fleetsync_proto::Position;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio_util::sync::CancellationToken;

use super::chunk::quote;
use fleetsync_store::Store;

use super::files::{read_plain, Codec};
use super::manifest::{self, FileEntry, Manifest};
use super::stage::{self, StagedTable, Staging};
use super::{pool, snapshot, verify, BackupError, Progress, Settings};
use crate::SourceError;

/// The load session. `NO_AUTO_VALUE_ON_ZERO` keeps explicit 0 in AUTO_INCREMENT columns;
/// no STRICT/NO_ZERO_DATE so every value the dump holds loads as it was.
const SESSION: &str = "SET NAMES binary, time_zone = '+00:00', foreign_key_checks = 0, unique_checks = 0, sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";
const DDL_SESSION: &str = "SET NAMES utf8mb4, foreign_key_checks = 0, sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

pub struct RestoreRequest {
    pub id: String,
    /// `[[servers]] name` of the target (for messages).
    pub target: String,
    pub opts: Opts,
    /// `--rename-db OLD=NEW` pairs.
    pub renames: Vec<(String, String)>,
    pub settings: Settings,
    pub progress: Arc<dyn Progress>,
    /// Checked between data files and before the swap: once cancelled, the staging tables
    /// are dropped and the target is left unchanged ([`BackupError::Cancelled`]). After the
    /// swap a restore runs to its end.
    pub cancel: CancellationToken,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedTable {
    pub database: String,
    pub target_database: String,
    pub table: String,
    pub rows: u64,
    pub files: usize,
}

/// What a restore would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestorePlan {
    pub id: String,
    pub target: String,
    pub position: Option<String>,
    /// (database in the backup, database on the target)
    pub databases: Vec<(String, String)>,
    pub tables: Vec<PlannedTable>,
    /// (target database, view)
    pub views: Vec<(String, String)>,
    /// Target objects (database, name, `BASE TABLE` or `VIEW`) that would be dropped.
    pub existing: Vec<(String, String, String)>,
    pub rows: u64,
    pub bytes: u64,
}

/// A verified backup and a checked target, ready to load.
pub struct Prepared {
    pub plan: RestorePlan,
    /// The verified backup's manifest (its server, start time and databases are what a
    /// point-in-time replay needs).
    pub manifest: Manifest,
    codec: Codec,
    req_opts: Opts,
    threads: usize,
    /// The store rooted at the backup.
    root: Store,
    progress: Arc<dyn Progress>,
    position: Option<Position>,
    cancel: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub id: String,
    /// The backup's snapshot position: replay the binlog from here to roll forward.
    pub position: Option<Position>,
    pub tables: usize,
    pub rows: u64,
    pub seconds: f64,
}

fn mysql_err(server: &str, ctx: String) -> impl Fn(mysql_async::Error) -> BackupError + '_ {
    move |e| BackupError::Source(SourceError::from_mysql(server, &ctx, e))
}

/// Verifies the backup and checks the target; changes nothing.
pub async fn prepare(req: &RestoreRequest) -> Result<Prepared, BackupError> {
    let m = manifest::read(&req.settings.store, &req.id).await?;
    let root = req.settings.backup(&m.id)?;
    let position = m
        .position()
        .map_err(|e| BackupError::object(&root, manifest::MANIFEST_FILE, e))?;
    verify::verify(&m, &req.settings).await?;
    let codec = req.settings.codec_for(&m)?;
    let map = rename_map(&m, &req.renames)?;
    let target_db = |db: &str| map.get(db).cloned().unwrap_or_else(|| db.to_string());
    let mut conn = snapshot::connect(&req.opts, &req.target).await?;
    conn.query_drop(DDL_SESSION).await.map_err(mysql_err(
        &req.target,
        "preparing the restore session".into(),
    ))?;
    let existing = existing_objects(&mut conn, &req.target, &m, &target_db).await?;
    let mut plan = RestorePlan {
        id: m.id.clone(),
        target: req.target.clone(),
        position: m.position.clone(),
        databases: m
            .databases
            .iter()
            .map(|d| (d.name.clone(), target_db(&d.name)))
            .collect(),
        tables: m
            .tables
            .iter()
            .map(|t| PlannedTable {
                database: t.database.clone(),
                target_database: target_db(&t.database),
                table: t.table.clone(),
                rows: t.rows,
                files: t.files.len(),
            })
            .collect(),
        views: m
            .views
            .iter()
            .map(|v| (target_db(&v.database), v.view.clone()))
            .collect(),
        existing,
        rows: m.total_rows,
        bytes: m.total_bytes,
    };
    plan.existing.sort();
    check_privileges(&mut conn, &req.target, &plan).await?;
    let _ = conn.disconnect().await;
    Ok(Prepared {
        root,
        plan,
        manifest: m,
        codec,
        req_opts: req.opts.clone(),
        threads: req.settings.threads,
        progress: req.progress.clone(),
        position,
        cancel: req.cancel.clone(),
    })
}

/// `OLD=NEW` pairs as a map, each OLD a database of the backup.
fn rename_map(
    m: &Manifest,
    renames: &[(String, String)],
) -> Result<BTreeMap<String, String>, BackupError> {
    let mut map = BTreeMap::new();
    for (old, new) in renames {
        if !m.databases.iter().any(|d| &d.name == old) {
            let have: Vec<&str> = m.databases.iter().map(|d| d.name.as_str()).collect();
            return Err(BackupError::Refused(format!(
                "--rename-db {old}={new}: backup {} has no database {old:?} (it has {have:?})",
                m.id
            )));
        }
        if new.is_empty() || new.len() > 64 {
            return Err(BackupError::Refused(format!(
                "--rename-db {old}={new}: invalid database name"
            )));
        }
        map.insert(old.clone(), new.clone());
    }
    Ok(map)
}

async fn existing_objects(
    conn: &mut Conn,
    server: &str,
    m: &Manifest,
    target_db: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<(String, String, String)>, BackupError> {
    let rows: Vec<(String, String, String)> = conn
        .query("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys')")
        .await
        .map_err(mysql_err(server, "listing the target's tables".into()))?;
    let wanted: std::collections::HashSet<(String, String)> = m
        .tables
        .iter()
        .map(|t| (target_db(&t.database), t.table.clone()))
        .chain(
            m.views
                .iter()
                .map(|v| (target_db(&v.database), v.view.clone())),
        )
        .collect();
    Ok(rows
        .into_iter()
        .filter(|(d, t, _)| wanted.contains(&(d.clone(), t.clone())))
        .collect())
}

/// Refuses, naming the grant, when the target user lacks a privilege the restore needs.
async fn check_privileges(
    conn: &mut Conn,
    server: &str,
    plan: &RestorePlan,
) -> Result<(), BackupError> {
    let err = |ctx: &str| mysql_err(server, ctx.to_string());
    let who: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(err("reading the current user"))?;
    let who = who.unwrap_or_default();
    let (user, host) = who.rsplit_once('@').unwrap_or((who.as_str(), ""));
    let mut grantees = vec![format!("'{user}'@'{host}'")];
    let role: Option<Option<String>> = conn
        .query_first("SELECT CURRENT_ROLE()")
        .await
        .map_err(err("reading the current role"))?;
    if let Some(r) = role.flatten() {
        grantees.push(format!("'{r}'"));
        grantees.push(format!("'{r}'@''"));
    }
    let mut missing = Vec::new();
    let dbs: std::collections::BTreeSet<&str> =
        plan.databases.iter().map(|(_, t)| t.as_str()).collect();
    for db in dbs {
        let mut have: Vec<String> = Vec::new();
        for g in &grantees {
            let global: Vec<String> = conn
                .exec("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?", (g,))
                .await
                .map_err(err("reading privileges"))?;
            let schema: Vec<String> = conn
                .exec("SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND ? LIKE TABLE_SCHEMA", (g, db))
                .await
                .map_err(err("reading privileges"))?;
            have.extend(global);
            have.extend(schema);
        }
        // DROP and ALTER: staging tables are dropped on failure and renamed into place.
        let mut need = vec!["CREATE", "INSERT", "DROP", "ALTER"];
        if plan.views.iter().any(|(d, _)| d == db) {
            need.push("CREATE VIEW");
        }
        for p in need {
            if !have.iter().any(|h| h.eq_ignore_ascii_case(p)) {
                missing.push(format!("{p} ON `{db}`.*"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(BackupError::Refused(format!(
        "server {server}: user {who} lacks privileges the restore needs: {} (GRANT them, or restore as another user); nothing was changed",
        missing.join(", ")
    )))
}

/// Loads a prepared restore. `drop_existing` must be true when the plan lists existing
/// target objects, which are then dropped and recreated.
pub async fn execute(p: Prepared, drop_existing: bool) -> Result<RestoreReport, BackupError> {
    let server = p.plan.target.clone();
    if !p.plan.existing.is_empty() && !drop_existing {
        let names: Vec<String> = p
            .plan
            .existing
            .iter()
            .map(|(d, t, _)| format!("{d}.{t}"))
            .collect();
        return Err(BackupError::Refused(format!(
            "server {server}: {} table(s)/view(s) of the backup already exist on the target: {}; pass --yes to drop and replace them (nothing was changed)",
            names.len(),
            names.join(", ")
        )));
    }
    let started = Instant::now();
    tracing::info!(server, backup = %p.plan.id, tables = p.plan.tables.len(), rows = p.plan.rows, "restore started");
    let mut conn = snapshot::connect(&p.req_opts, &server).await?;
    conn.query_drop(DDL_SESSION)
        .await
        .map_err(mysql_err(&server, "preparing the restore session".into()))?;
    let staging = plan_staging(&p, &mut conn).await?;
    if staging.fk_mode {
        tracing::warn!(server, "the restore replaces tables tied to foreign keys: staging tables are loaded without their foreign keys, which are added back after the swap (the final drop-rename step is not atomic)");
    }
    p.progress.planned(p.plan.tables.len(), p.plan.rows);
    let loaded = async {
        create_databases(&p, &mut conn).await?;
        staging.create(&mut conn).await?;
        load_data(&p, &staging).await?;
        if p.cancel.is_cancelled() {
            return Err(BackupError::Cancelled);
        }
        Ok(())
    }
    .await;
    if let Err(e) = loaded {
        return Err(staging.abandon(&p.req_opts, e).await);
    }
    if let Err(e) = staging.swap(&mut conn).await {
        return Err(match e {
            // A failed multi-table RENAME changed nothing: clean up as before the swap.
            BackupError::Server { ref message, .. }
                if !staging.fk_mode && message.starts_with("renaming the loaded") =>
            {
                staging.abandon(&p.req_opts, e).await
            }
            other => other,
        });
    }
    let _ = conn.disconnect().await;
    create_views(&p).await?;
    p.progress.finish();
    let report = RestoreReport {
        id: p.plan.id.clone(),
        position: p.position.clone(),
        tables: p.plan.tables.len(),
        rows: p.plan.rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(server, backup = %report.id, rows = report.rows, seconds = report.seconds, "restore complete");
    Ok(report)
}

/// [`prepare`] then [`execute`]: for callers that decided already (e.g. point-in-time
/// recovery, which replays from the returned position afterwards).
pub async fn restore(
    req: &RestoreRequest,
    drop_existing: bool,
) -> Result<RestoreReport, BackupError> {
    let p = prepare(req).await?;
    execute(p, drop_existing).await
}

fn target_of<'a>(p: &'a Prepared, db: &'a str) -> &'a str {
    p.plan
        .databases
        .iter()
        .find(|(s, _)| s == db)
        .map_or(db, |(_, t)| t.as_str())
}

/// Reads every table definition and decides staging names and the swap mode; changes nothing.
async fn plan_staging(p: &Prepared, conn: &mut Conn) -> Result<Staging, BackupError> {
    let server = p.plan.target.as_str();
    let tag = stage::tag_of(&p.plan.id);
    let replaced: HashSet<(String, String)> = p
        .plan
        .existing
        .iter()
        .filter(|(_, _, k)| k != "VIEW")
        .map(|(d, t, _)| (d.clone(), t.clone()))
        .collect();
    let mut defs = Vec::with_capacity(p.manifest.tables.len());
    for t in &p.manifest.tables {
        let sql = read_plain(&p.root, &t.schema_file, &p.codec, false).await?;
        defs.push((t, sql));
    }
    let ddl_has_fk = defs
        .iter()
        .any(|(_, sql)| String::from_utf8_lossy(sql).contains(" FOREIGN KEY ("));
    let fk_mode = !replaced.is_empty()
        && (ddl_has_fk || stage::existing_fks_touch(conn, server, &replaced).await?);
    let before = stage::databases(conn, server).await?;
    let mut created_dbs: Vec<String> = p
        .plan
        .databases
        .iter()
        .map(|(_, to)| to.clone())
        .filter(|to| !before.contains(to))
        .collect();
    created_dbs.sort();
    created_dbs.dedup();
    let mut tables = Vec::with_capacity(defs.len());
    for (t, sql) in defs {
        let path = p.root.describe_key(&t.schema_file.name);
        let staged = stage::aside_name('s', &tag, &t.table);
        let (ddl, fks) = stage::staging_ddl(&sql, &t.table, &staged, fk_mode)
            .map_err(|e| BackupError::object(&p.root, &t.schema_file.name, e))?;
        tables.push(StagedTable {
            database: target_of(p, &t.database).to_string(),
            table: t.table.clone(),
            stage: staged,
            ddl,
            fks,
            schema_path: path,
        });
    }
    Ok(Staging {
        server: server.to_string(),
        tag,
        fk_mode,
        tables,
        existing: p.plan.existing.clone(),
        created_dbs,
    })
}

async fn create_databases(p: &Prepared, conn: &mut Conn) -> Result<(), BackupError> {
    let server = p.plan.target.as_str();
    for d in &p.manifest.databases {
        let to = target_of(p, &d.name);
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET {} COLLATE {}",
            quote(to),
            d.charset,
            d.collation
        );
        conn.query_drop(sql)
            .await
            .map_err(mysql_err(server, format!("creating database {to}")))?;
    }
    Ok(())
}

struct LoadUnit {
    database: String,
    table: String,
    /// The staging table the rows go to.
    stage: String,
    file: FileEntry,
}

async fn load_data(p: &Prepared, staging: &Staging) -> Result<(), BackupError> {
    let server = p.plan.target.clone();
    let mut units: Vec<LoadUnit> = p
        .manifest
        .tables
        .iter()
        .zip(&staging.tables)
        .flat_map(|(t, s)| {
            t.files.iter().map(move |f| LoadUnit {
                database: s.database.clone(),
                table: t.table.clone(),
                stage: s.stage.clone(),
                file: f.clone(),
            })
        })
        .collect();
    units.sort_by_key(|u| std::cmp::Reverse(u.file.bytes));
    let n = p.threads.max(1).min(units.len().max(1));
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = snapshot::connect(&p.req_opts, &server).await?;
        c.query_drop(SESSION)
            .await
            .map_err(mysql_err(&server, "preparing a restore session".into()))?;
        conns.push(c);
    }
    let ctx = Arc::new((server, p.root.clone(), p.codec.clone(), p.progress.clone()));
    let cancel = p.cancel.clone();
    let worker = move |conn: Conn, unit: LoadUnit| {
        let (ctx, cancel) = (ctx.clone(), cancel.clone());
        async move {
            if cancel.is_cancelled() {
                return Err(BackupError::Cancelled);
            }
            load_file(conn, &ctx.0, &ctx.1, &ctx.2, &*ctx.3, unit).await
        }
    };
    let conns = pool::run(conns, units, worker).await?;
    for c in conns {
        let _ = c.disconnect().await;
    }
    Ok(())
}

/// Loads one data file in one transaction.
async fn load_file(
    mut conn: Conn,
    server: &str,
    root: &Store,
    codec: &Codec,
    progress: &dyn Progress,
    unit: LoadUnit,
) -> Result<Conn, BackupError> {
    let path = root.describe_key(&unit.file.name);
    let plain = read_plain(root, &unit.file, codec, true).await?;
    let fail = |line: usize, e: String| BackupError::File {
        path: path.clone(),
        message: format!(
            "line {line}: loading into {}.{} (staging name {}) on server {server}: {e}",
            unit.database, unit.table, unit.stage
        ),
    };
    let mut from = b"INSERT INTO ".to_vec();
    fleetsync_proto::sql::push_ident(&mut from, &unit.table);
    let mut to = b"INSERT INTO ".to_vec();
    fleetsync_proto::sql::push_ident(&mut to, &unit.stage);
    conn.query_drop(format!("USE {}", quote(&unit.database)))
        .await
        .map_err(|e| fail(0, e.to_string()))?;
    // Parallel loads into one table can deadlock (InnoDB picks a victim and rolls its whole
    // transaction back) or time out on a lock: the file is one transaction, so it is simply
    // loaded again. Any other error ends the restore.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match load_lines(&mut conn, &plain, &from, &to).await {
            Ok(()) => break,
            Err((line, e)) => {
                let _ = conn.query_drop("ROLLBACK").await;
                let retry = matches!(&e, LoadError::Server(e) if is_lock_conflict(e));
                if retry && attempt < LOCK_CONFLICT_ATTEMPTS {
                    tracing::warn!(file = %path, attempt, "lock conflict while loading: retrying the file");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                    continue;
                }
                return Err(fail(line, e.to_string()));
            }
        }
    }
    progress.rows(unit.file.rows);
    Ok(conn)
}

/// Loads of one file tried before a deadlock or lock wait timeout ends the restore.
const LOCK_CONFLICT_ATTEMPTS: u64 = 5;

/// Why loading a file's lines failed.
enum LoadError {
    /// A line that is not an INSERT into the file's table.
    NotInsert,
    Server(mysql_async::Error),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotInsert => f.write_str("not an INSERT into this table"),
            LoadError::Server(e) => write!(f, "{e}"),
        }
    }
}

/// ER_LOCK_DEADLOCK (1213) or ER_LOCK_WAIT_TIMEOUT (1205).
fn is_lock_conflict(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205)
}

/// One transaction: every line of `plain` with its `INSERT INTO from` rewritten to
/// `INSERT INTO to`, then COMMIT. The error carries the 1-based line (0: the COMMIT).
async fn load_lines(
    conn: &mut Conn,
    plain: &[u8],
    from: &[u8],
    to: &[u8],
) -> Result<(), (usize, LoadError)> {
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(|e| (0, LoadError::Server(e)))?;
    let mut stmt = Vec::new();
    for (i, line) in plain.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.strip_prefix(from) else {
            return Err((i + 1, LoadError::NotInsert));
        };
        stmt.clear();
        stmt.extend_from_slice(to);
        stmt.extend_from_slice(rest);
        conn.query_drop(stmt.as_slice())
            .await
            .map_err(|e| (i + 1, LoadError::Server(e)))?;
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| (0, LoadError::Server(e)))
}

/// Creates the views, retrying those that depend on views not created yet.
async fn create_views(p: &Prepared) -> Result<(), BackupError> {
    if p.manifest.views.is_empty() {
        return Ok(());
    }
    let server = p.plan.target.as_str();
    let mut conn = snapshot::connect(&p.req_opts, server).await?;
    conn.query_drop(DDL_SESSION)
        .await
        .map_err(mysql_err(server, "preparing the restore session".into()))?;
    let mut pending: Vec<(String, String, Vec<u8>, String)> = Vec::new();
    for v in &p.manifest.views {
        let mut sql = read_plain(&p.root, &v.schema_file, &p.codec, false).await?;
        for (from, to) in &p.plan.databases {
            if from != to {
                sql = replace_all(
                    &sql,
                    format!("{}.", quote(from)).as_bytes(),
                    format!("{}.", quote(to)).as_bytes(),
                );
            }
        }
        let path = p.root.describe_key(&v.schema_file.name);
        pending.push((
            target_of(p, &v.database).to_string(),
            v.view.clone(),
            sql,
            path,
        ));
    }
    while !pending.is_empty() {
        let mut left = Vec::new();
        let mut last_err = None;
        let before = pending.len();
        for (db, view, sql, path) in pending {
            conn.query_drop(format!("USE {}", quote(&db)))
                .await
                .map_err(mysql_err(server, format!("using database {db}")))?;
            match conn.query_drop(sql.as_slice()).await {
                Ok(()) => {}
                Err(e) => {
                    last_err = Some(format!(
                        "{path}: creating view {db}.{view} on server {server}: {e}"
                    ));
                    left.push((db, view, sql, path));
                }
            }
        }
        if left.len() == before {
            return Err(BackupError::Refused(last_err.unwrap_or_default()));
        }
        pending = left;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_rename() {
        let sql =
            b"CREATE VIEW `v` AS select `app`.`t`.`a` AS `a` from `app`.`t` where `x` = 'app'";
        let out = replace_all(sql, b"`app`.", b"`app2`.");
        assert_eq!(
            out,
            b"CREATE VIEW `v` AS select `app2`.`t`.`a` AS `a` from `app2`.`t` where `x` = 'app'"
                .to_vec()
        );
    }
}
