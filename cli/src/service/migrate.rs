//! `migrate generate|apply|rollback`; shared by `fleetsync migrate ...` and the
//! `migrate_generate` / `migrate_apply` / `migrate_rollback` jobs (`migrate status` reads
//! only and stays in the command).
//!
//! `generate` writes DIR/up.sql, DIR/down.sql, DIR/migration.json (the steps, the target's
//! schema before and the expected schema after, the verification) and DIR/report.txt: the
//! CLI's `--out`, or the job's own directory. `apply` refuses (changing nothing) a migration
//! that is not verified, whose SQL files were edited after generation, or whose target schema
//! is no longer the one it was generated for; then asks `decide` (the CLI asks on a terminal
//! unless `--yes`; a job has `confirm`), records the migration in
//! `fleetsync.schema_migrations` and checks the schema after. `rollback` runs the down steps
//! of the target's latest applied migration (kept in the history row). A cancel is honoured
//! before the first statement; DDL that started runs to its end (it is not transactional).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_agent::inspect;
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::{
    self, exec, fingerprint, history, plan::retarget, Pairing, Step,
};
use fleetsync_proto::jobs::{
    MigrateApplyReport, MigrateGenerateReport, MigrateRollbackReport, SchemaDifference,
};
pub use fleetsync_proto::requests::{
    MigrateApplyRequest, MigrateGenerateRequest, MigrateRollbackRequest, DEFAULT_VERIFY_ROWS,
};
use fleetsync_proto::schema_model::SchemaSnapshot;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::diff_cmd::{compare_loaded, connect, Side, SideArgs};

pub use crate::diff_cmd::EXIT_ERROR;

/// `generate` wrote the migration but could not verify it.
pub const EXIT_UNVERIFIED: u8 = 3;
/// The files `generate` writes.
pub const FILES: [&str; 4] = ["migration.json", "up.sql", "down.sql", "report.txt"];

/// What `apply` or `rollback` is about to do (for `decide`).
pub struct Pending<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub steps: usize,
    pub warnings: &'a [String],
    /// The history row being rolled back.
    pub history_id: Option<u64>,
}

/// DIR/migration.json.
#[derive(Serialize, Deserialize)]
struct Migration {
    format: u32,
    source: String,
    target: String,
    pairing: Pairing,
    /// The target database the steps name (single-database migrations).
    target_database: Option<String>,
    verified: bool,
    problems: Vec<String>,
    warnings: Vec<String>,
    differences: usize,
    up: Vec<Step>,
    down: Vec<Step>,
    /// The target's schema when generated, and what it must be after up.
    before: SchemaSnapshot,
    after: SchemaSnapshot,
    up_sql_checksum: String,
    down_sql_checksum: String,
}

const FORMAT: u32 = 1;

fn text_checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Compares, plans, verifies on scratch copies and writes the migration to `out`.
pub async fn generate(
    config: &Config,
    req: &MigrateGenerateRequest,
    out: &Path,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<MigrateGenerateReport> {
    let sides = SideArgs {
        rename_table: req.rename_table.clone(),
        rename_column: req.rename_column.clone(),
        scratch_server: req.scratch_server.clone(),
    };
    tracker.phase(format!(
        "reading the schemas of {} and {}",
        req.source, req.target
    ));
    let c = compare_loaded(
        config.clone(),
        Side::parse(&req.source),
        Side::parse(&req.target),
        &sides,
    )
    .await?;
    let Some(server) = c.target.server().map(str::to_string) else {
        return Err(anyhow!(
            "the target of a migration must be a server (SERVER or SERVER/DATABASE), not a file"
        )
        .into());
    };
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    let d = migrate::diff(&c.source_schema, &c.target_schema, c.pairing, &c.hints);
    let up = migrate::plan(&c.source_schema, &c.target_schema, c.pairing, &c.hints);
    let mut down = migrate::plan(
        &c.target_schema,
        &c.source_schema,
        c.pairing,
        &c.hints.reversed(),
    );
    let target_database = match &c.target {
        Side::Database(_, db) => Some(db.clone()),
        _ => None,
    };
    if let Some(db) = &target_database {
        retarget(&mut down, db);
    }
    tracker.phase(format!("verifying on scratch copies on server {server}"));
    let mut conn = connect(&c.config, &server).await?;
    let verification = exec::verify(
        &mut conn,
        &exec::VerifyInput {
            source: &c.source_schema,
            target: &c.target_schema,
            pairing: c.pairing,
            up: &up,
            down: &down,
            rows_limit: req.verify_rows,
        },
    )
    .await;
    let _ = conn.disconnect().await;
    let mut warnings: Vec<String> = up.iter().filter_map(Step::warning).collect();
    warnings.extend(verification.warnings.iter().cloned());
    let header = format!(
        "fleetsync migration: makes {} equal {}\nverified: {}",
        c.target.label(),
        c.source.label(),
        if verification.verified { "yes" } else { "NO" }
    );
    let up_sql = exec::render_sql(&up, &format!("{header}\nup"));
    let down_sql = exec::render_sql(&down, &format!("{header}\ndown"));
    let m = Migration {
        format: FORMAT,
        source: c.source.label(),
        target: c.target.label(),
        pairing: c.pairing,
        target_database,
        verified: verification.verified,
        problems: verification.problems.clone(),
        warnings,
        differences: d.differences.len(),
        up,
        down,
        after: expected_after(&c.source_schema, &c.target_schema, c.pairing),
        before: c.target_schema.clone(),
        up_sql_checksum: text_checksum(&up_sql),
        down_sql_checksum: text_checksum(&down_sql),
    };
    let text = report(&m, &d);
    write_dir(out, &m, &up_sql, &down_sql, &text)?;
    tracker.log(&format!(
        "{} difference(s), verified: {}",
        m.differences, m.verified
    ));
    Ok(MigrateGenerateReport {
        source: m.source.clone(),
        target: m.target.clone(),
        verified: m.verified,
        problems: m.problems.clone(),
        warnings: m.warnings.clone(),
        differences: d.differences.iter().map(SchemaDifference::from).collect(),
        notes: d.notes.clone(),
        up_steps: m.up.len(),
        down_steps: m.down.len(),
        files: FILES.iter().map(|f| f.to_string()).collect(),
    })
}

/// 0 verified, [`EXIT_UNVERIFIED`] not.
pub fn generate_exit_code(r: &MigrateGenerateReport) -> u8 {
    if r.verified {
        0
    } else {
        EXIT_UNVERIFIED
    }
}

/// The schema the target must have after up: the source's, under the target's database
/// names, keeping the target's database options where the source has none (a file).
fn expected_after(
    source: &SchemaSnapshot,
    target: &SchemaSnapshot,
    pairing: Pairing,
) -> SchemaSnapshot {
    let mut after = source.clone();
    if pairing == Pairing::Single {
        if let (Some(a), Some(t)) = (after.databases.first_mut(), target.databases.first()) {
            a.name = t.name.clone();
            if a.collation.is_none() {
                a.charset = t.charset.clone();
                a.collation = t.collation.clone();
            }
        }
    }
    after
}

/// The text of DIR/report.txt (what `generate` prints).
pub fn report_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default()
}

fn report(m: &Migration, d: &migrate::SchemaDiff) -> String {
    let mut out = String::new();
    let status = if m.verified {
        "VERIFIED: applied up to a scratch copy of the target, the copy equals the source; applied down, it equals the target again".to_string()
    } else {
        format!("NOT VERIFIED (apply refuses it): {}", m.problems.join("; "))
    };
    out.push_str(&format!(
        "migration {} -> {}: {} difference(s), {} up step(s), {} down step(s)\n{status}\n",
        m.target,
        m.source,
        m.differences,
        m.up.len(),
        m.down.len()
    ));
    for w in &m.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for x in &d.differences {
        out.push_str(&format!("  {x}\n"));
    }
    for n in &d.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

fn write_dir(dir: &Path, m: &Migration, up: &str, down: &str, report: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("up.sql", up)?;
    write("down.sql", down)?;
    write("migration.json", &serde_json::to_string_pretty(m)?)?;
    write("report.txt", report)
}

fn read_dir(dir: &Path) -> Result<Migration> {
    let path = dir.join("migration.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (a directory written by migrate generate?)",
            path.display()
        )
    })?;
    let m: Migration = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: line {}: {e}", path.display(), e.line()))?;
    if m.format != FORMAT {
        bail!(
            "{}: format {} is not supported (expected {FORMAT})",
            path.display(),
            m.format
        );
    }
    for (name, sum) in [
        ("up.sql", &m.up_sql_checksum),
        ("down.sql", &m.down_sql_checksum),
    ] {
        let p = dir.join(name);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if text_checksum(&text) != *sum {
            bail!(
                "{} was edited after it was generated and verified; regenerate the migration (nothing applied)",
                p.display()
            );
        }
    }
    Ok(m)
}

/// The target side of apply/status/rollback: its pairing scope and history scope.
pub(crate) struct Target {
    pub(crate) config: Config,
    side: Side,
    pub(crate) server: String,
    pub(crate) scope: String,
}

pub(crate) fn target(config: &Config, arg: &str) -> Result<Target> {
    let config = config.clone();
    let side = Side::parse(arg);
    let (server, scope) = match &side {
        Side::Server(s) => (s.clone(), "*".to_string()),
        Side::Database(s, d) => (s.clone(), d.clone()),
        Side::File(p) => bail!("the target must be a server, not the file {}", p.display()),
    };
    if config.server(&server).is_none() {
        bail!("no server named {server:?} in the config");
    }
    Ok(Target {
        config,
        side,
        server,
        scope,
    })
}

pub(crate) async fn snapshot_target(
    conn: &mut mysql_async::Conn,
    t: &Target,
) -> Result<SchemaSnapshot> {
    let dbs = match &t.side {
        Side::Database(_, d) => vec![d.clone()],
        _ => inspect::user_databases(conn).await?,
    };
    let snap = inspect::snapshot(conn, &dbs).await?;
    if matches!(t.side, Side::Database(..)) && snap.databases.is_empty() {
        return Err(NoDatabase {
            database: t.scope.clone(),
            server: t.server.clone(),
        }
        .into());
    }
    Ok(snap)
}

/// The target names a database its server does not have (the API answers 404 for it).
#[derive(Debug, thiserror::Error)]
#[error("database {database} does not exist on server {server}")]
pub struct NoDatabase {
    pub database: String,
    pub server: String,
}

/// `migrate status --json` (and `GET /api/v1/migrations`): the history rows of the target's
/// scope, oldest first, and whether its schema is still the one the last applied migration
/// left.
#[derive(Debug, Serialize)]
pub struct MigrateStatus {
    pub target: String,
    pub current_fingerprint: String,
    /// None: no migration applied in this scope.
    pub matches_last_applied: Option<bool>,
    pub migrations: Vec<history::HistoryRow>,
}

/// Reads the history of `target_arg` (SERVER or SERVER/DATABASE) and its current schema.
pub async fn status(config: &Config, target_arg: &str) -> Result<MigrateStatus> {
    let t = target(config, target_arg)?;
    status_of(t, target_arg).await
}

/// [`status`] of a server and a database given apart (the API's query: never a file side).
pub async fn status_at(
    config: &Config,
    server: &str,
    database: Option<&str>,
) -> Result<MigrateStatus> {
    if config.server(server).is_none() {
        bail!("no server named {server:?} in the config");
    }
    let (side, scope, label) = match database {
        Some(db) => (
            Side::Database(server.to_string(), db.to_string()),
            db.to_string(),
            format!("{server}/{db}"),
        ),
        None => (
            Side::Server(server.to_string()),
            "*".to_string(),
            server.to_string(),
        ),
    };
    let t = Target {
        config: config.clone(),
        side,
        server: server.to_string(),
        scope,
    };
    status_of(t, &label).await
}

async fn status_of(t: Target, target_arg: &str) -> Result<MigrateStatus> {
    let pairing = if t.scope == "*" {
        Pairing::ByName
    } else {
        Pairing::Single
    };
    let mut conn = connect(&t.config, &t.server).await?;
    let rows = history::list(&mut conn, Some(&t.scope)).await?;
    let current = fingerprint(&snapshot_target(&mut conn, &t).await?, pairing);
    let _ = conn.disconnect().await;
    // Versioned rows (no fingerprints) do not say what the schema should be.
    let last = rows
        .iter()
        .rev()
        .find(|r| r.status == "applied" && !r.after_fingerprint.is_empty());
    Ok(MigrateStatus {
        target: target_arg.to_string(),
        matches_last_applied: last.map(|r| r.after_fingerprint == current),
        current_fingerprint: current,
        migrations: rows,
    })
}

fn differs(expected: &SchemaSnapshot, actual: &SchemaSnapshot, pairing: Pairing) -> Option<String> {
    let d = migrate::diff(expected, actual, pairing, &migrate::Hints::default());
    (!d.equal).then(|| {
        let first: Vec<String> = d
            .differences
            .iter()
            .take(5)
            .map(|x| x.to_string())
            .collect();
        format!(
            "{} difference(s): {}",
            d.differences.len(),
            first.join("; ")
        )
    })
}

/// Applies the migration in `dir` (named `name`) to `target` once `decide` agrees.
pub async fn apply(
    config: &Config,
    target_arg: &str,
    dir: &Path,
    name: &str,
    decide: impl Fn(&Pending) -> Result<bool>,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<MigrateApplyReport> {
    let m = read_dir(dir)?;
    if !m.verified {
        return Err(anyhow!(
            "migration {name} is NOT verified ({}); nothing applied",
            m.problems.join("; ")
        )
        .into());
    }
    let t = target(config, target_arg)?;
    let pairing = match &t.side {
        Side::Server(_) => Pairing::ByName,
        _ => Pairing::Single,
    };
    if pairing != m.pairing {
        return Err(anyhow!(
            "migration {name} was generated for {}; the target must be the same kind of side",
            m.target
        )
        .into());
    }
    let mut up = m.up.clone();
    let mut down = m.down.clone();
    if pairing == Pairing::Single {
        retarget(&mut up, &t.scope);
        retarget(&mut down, &t.scope);
    }
    tracker.phase(format!("checking the schema of {target_arg}"));
    let mut conn = connect(&t.config, &t.server).await?;
    let before = snapshot_target(&mut conn, &t).await?;
    if let Some(d) = differs(&m.before, &before, pairing) {
        return Err(anyhow!("the schema of {target_arg} is not the one the migration was generated for ({d}); nothing applied").into());
    }
    let pending = Pending {
        name,
        target: target_arg,
        steps: up.len(),
        warnings: &m.warnings,
        history_id: None,
    };
    if !decide(&pending)? {
        return Err(
            anyhow!("not confirmed; nothing changed (use --yes to skip the question)").into(),
        );
    }
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase(format!("applying {} step(s) to {target_arg}", up.len()));
    history::ensure_table(&mut conn)
        .await
        .context("creating the history table")?;
    let id = history::insert(
        &mut conn,
        &t.scope,
        name,
        &m.up_sql_checksum,
        &fingerprint(&before, pairing),
        "",
        &serde_json::to_string(&up).map_err(anyhow::Error::from)?,
        &serde_json::to_string(&down).map_err(anyhow::Error::from)?,
    )
    .await
    .context("recording the migration")?;
    let started = std::time::Instant::now();
    let ran = exec::run_steps(&mut conn, &up, &|d: &str| d.to_string()).await;
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    history::set_run_info(&mut conn, id, ms, &super::vmigrate::applied_by())
        .await
        .map_err(anyhow::Error::from)?;
    if let Err(e) = ran {
        let msg = e.to_string();
        history::set_status(&mut conn, id, "failed", Some(&msg), None)
            .await
            .map_err(anyhow::Error::from)?;
        return Err(anyhow!("{msg}; the target may be partly migrated (DDL is not transactional): see `migrate status`; down.sql has the reverse steps").into());
    }
    let after = snapshot_target(&mut conn, &t).await?;
    history::set_status(
        &mut conn,
        id,
        "applied",
        None,
        Some(&fingerprint(&after, pairing)),
    )
    .await
    .map_err(anyhow::Error::from)?;
    let _ = conn.disconnect().await;
    if let Some(d) = differs(&m.after, &after, pairing) {
        return Err(anyhow!("migration {name} applied (history id {id}) but the schema is not the expected one: {d}").into());
    }
    tracker.log(&format!("applied (history id {id})"));
    Ok(MigrateApplyReport {
        target: target_arg.to_string(),
        migration: name.to_string(),
        source: m.source.clone(),
        steps: up.len(),
        warnings: m.warnings.clone(),
        history_id: id,
    })
}

/// Rolls back the latest applied migration of `target` once `decide` agrees.
pub async fn rollback(
    config: &Config,
    target_arg: &str,
    decide: impl Fn(&Pending) -> Result<bool>,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<MigrateRollbackReport> {
    let t = target(config, target_arg)?;
    let pairing = if t.scope == "*" {
        Pairing::ByName
    } else {
        Pairing::Single
    };
    tracker.phase(format!("reading the migration history of {target_arg}"));
    let mut conn = connect(&t.config, &t.server).await?;
    let Some((row, down_json)) = history::last_applied(&mut conn, &t.scope)
        .await
        .map_err(anyhow::Error::from)?
    else {
        return Err(anyhow!("no applied migration to roll back on {target_arg}").into());
    };
    let down: Vec<Step> = serde_json::from_str(&down_json)
        .map_err(|e| anyhow!("history row {}: unreadable down steps: {e}", row.id))?;
    let current = snapshot_target(&mut conn, &t).await?;
    if fingerprint(&current, pairing) != row.after_fingerprint {
        return Err(anyhow!(
            "the schema of {target_arg} changed since migration {} (id {}) was applied; nothing rolled back",
            row.name,
            row.id
        )
        .into());
    }
    let pending = Pending {
        name: &row.name,
        target: target_arg,
        steps: down.len(),
        warnings: &[],
        history_id: Some(row.id),
    };
    if !decide(&pending)? {
        return Err(
            anyhow!("not confirmed; nothing changed (use --yes to skip the question)").into(),
        );
    }
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase(format!(
        "rolling back {} step(s) on {target_arg}",
        down.len()
    ));
    if let Err(e) = exec::run_steps(&mut conn, &down, &|d: &str| d.to_string()).await {
        let msg = e.to_string();
        history::set_status(&mut conn, row.id, "rollback_failed", Some(&msg), None)
            .await
            .map_err(anyhow::Error::from)?;
        return Err(anyhow!("{msg}; the target may be partly rolled back").into());
    }
    let after = snapshot_target(&mut conn, &t).await?;
    history::set_status(&mut conn, row.id, "rolled_back", None, None)
        .await
        .map_err(anyhow::Error::from)?;
    let _ = conn.disconnect().await;
    if fingerprint(&after, pairing) != row.before_fingerprint {
        return Err(anyhow!(
            "rolled back migration {} (id {}) but the schema differs from the one before it",
            row.name,
            row.id
        )
        .into());
    }
    Ok(MigrateRollbackReport {
        target: target_arg.to_string(),
        migration: row.name.clone(),
        history_id: row.id,
        steps: down.len(),
    })
}
