//! `fleetsync migrate generate|apply|status|rollback`.
//!
//! `generate` writes DIR/up.sql, DIR/down.sql, DIR/migration.json (the steps, the target's
//! schema before and the expected schema after, the verification) and DIR/report.txt. It
//! exits 0 when the migration is verified, 3 when it was written but could not be verified
//! (the report says why), 2 on an error.
//!
//! `apply` refuses (changing nothing) a migration that is not verified, whose SQL files were
//! edited after generation, or whose target schema is no longer the one it was generated
//! for; it asks for confirmation unless `--yes`, records the migration in
//! `fleetsync.schema_migrations` and checks the schema after. `rollback` runs the down steps
//! of the target's latest applied migration (kept in the history row).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use fleetsync_agent::inspect;
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::{
    self, exec, fingerprint, history, plan::retarget, Pairing, Step,
};
use fleetsync_proto::schema_model::SchemaSnapshot;
use serde::{Deserialize, Serialize};

use crate::diff_cmd::{self, connect, Exit, Side, SideArgs, EXIT_ERROR};

/// `generate` wrote the migration but could not verify it.
pub const EXIT_UNVERIFIED: u8 = 3;
/// Tables with at most this many rows are copied with their rows for verification.
pub const DEFAULT_VERIFY_ROWS: u64 = 100_000;

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Write (and verify on scratch copies) the migration that makes TARGET's schema equal
    /// SOURCE's.
    Generate(GenerateArgs),
    /// Apply a generated, verified migration to TARGET.
    Apply(ApplyArgs),
    /// Show TARGET's migration history.
    Status(StatusArgs),
    /// Undo TARGET's latest applied migration.
    Rollback(RollbackArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub source: String,
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Copy tables with at most this many rows (estimated) with their rows for verification.
    #[arg(long, default_value_t = DEFAULT_VERIFY_ROWS)]
    pub verify_rows: u64,
    #[command(flatten)]
    pub sides: SideArgs,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub target: String,
    /// The directory `migrate generate` wrote.
    pub dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RollbackArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub yes: bool,
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

pub async fn run(cmd: MigrateCommand) -> Result<()> {
    let result = match cmd {
        MigrateCommand::Generate(a) => generate(&a).await,
        MigrateCommand::Apply(a) => apply(&a).await,
        MigrateCommand::Status(a) => status(&a).await,
        MigrateCommand::Rollback(a) => rollback(&a).await,
    };
    match result {
        Err(e) if e.downcast_ref::<Exit>().is_none() => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
        other => other,
    }
}

fn text_checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

async fn generate(a: &GenerateArgs) -> Result<()> {
    let c = diff_cmd::compare(&a.config, &a.source, &a.target, &a.sides).await?;
    let Some(server) = c.target.server().map(str::to_string) else {
        bail!("the target of a migration must be a server (SERVER or SERVER/DATABASE), not a file");
    };
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
    let mut conn = connect(&c.config, &server).await?;
    let verification = exec::verify(
        &mut conn,
        &exec::VerifyInput {
            source: &c.source_schema,
            target: &c.target_schema,
            pairing: c.pairing,
            up: &up,
            down: &down,
            rows_limit: a.verify_rows,
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
    write_dir(&a.out, &m, &up_sql, &down_sql, &d)?;
    print!("{}", report(&m, &d));
    println!("written to {}", a.out.display());
    if m.verified {
        Ok(())
    } else {
        Err(Exit(EXIT_UNVERIFIED).into())
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

fn write_dir(
    dir: &Path,
    m: &Migration,
    up: &str,
    down: &str,
    d: &migrate::SchemaDiff,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("up.sql", up)?;
    write("down.sql", down)?;
    write("migration.json", &serde_json::to_string_pretty(m)?)?;
    write("report.txt", &report(m, d))
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
struct Target {
    config: Config,
    side: Side,
    server: String,
    scope: String,
}

async fn target(config: &Path, arg: &str) -> Result<Target> {
    let config = crate::opts::load_config(config).await?;
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

async fn snapshot_target(conn: &mut mysql_async::Conn, t: &Target) -> Result<SchemaSnapshot> {
    let dbs = match &t.side {
        Side::Database(_, d) => vec![d.clone()],
        _ => inspect::user_databases(conn).await?,
    };
    let snap = inspect::snapshot(conn, &dbs).await?;
    if matches!(t.side, Side::Database(..)) && snap.databases.is_empty() {
        bail!("database {} does not exist on server {}", t.scope, t.server);
    }
    Ok(snap)
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
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

async fn apply(a: &ApplyArgs) -> Result<()> {
    let m = read_dir(&a.dir)?;
    if !m.verified {
        bail!(
            "migration {} is NOT verified ({}); nothing applied",
            a.dir.display(),
            m.problems.join("; ")
        );
    }
    let t = target(&a.config, &a.target).await?;
    let pairing = match &t.side {
        Side::Server(_) => Pairing::ByName,
        _ => Pairing::Single,
    };
    if pairing != m.pairing {
        bail!(
            "migration {} was generated for {}; the target must be the same kind of side",
            a.dir.display(),
            m.target
        );
    }
    let mut up = m.up.clone();
    let mut down = m.down.clone();
    if pairing == Pairing::Single {
        retarget(&mut up, &t.scope);
        retarget(&mut down, &t.scope);
    }
    let mut conn = connect(&t.config, &t.server).await?;
    let before = snapshot_target(&mut conn, &t).await?;
    if let Some(d) = differs(&m.before, &before, pairing) {
        bail!("the schema of {} is not the one the migration was generated for ({d}); nothing applied", a.target);
    }
    let name = a
        .dir
        .file_name()
        .map_or("migration".into(), |n| n.to_string_lossy().into_owned());
    println!("migration {name}: {} step(s) on {}", up.len(), a.target);
    for w in &m.warnings {
        println!("warning: {w}");
    }
    if !a.yes
        && !confirm(&format!(
            "Apply migration {name} to {}? Type 'yes' to continue: ",
            a.target
        ))?
    {
        bail!("not confirmed; nothing changed (use --yes to skip the question)");
    }
    history::ensure_table(&mut conn)
        .await
        .context("creating the history table")?;
    let id = history::insert(
        &mut conn,
        &t.scope,
        &name,
        &m.up_sql_checksum,
        &fingerprint(&before, pairing),
        "",
        &serde_json::to_string(&up)?,
        &serde_json::to_string(&down)?,
    )
    .await
    .context("recording the migration")?;
    if let Err(e) = exec::run_steps(&mut conn, &up, &|d: &str| d.to_string()).await {
        let msg = e.to_string();
        history::set_status(&mut conn, id, "failed", Some(&msg), None).await?;
        bail!("{msg}; the target may be partly migrated (DDL is not transactional): see `migrate status`; down.sql has the reverse steps");
    }
    let after = snapshot_target(&mut conn, &t).await?;
    history::set_status(
        &mut conn,
        id,
        "applied",
        None,
        Some(&fingerprint(&after, pairing)),
    )
    .await?;
    let _ = conn.disconnect().await;
    if let Some(d) = differs(&m.after, &after, pairing) {
        bail!("migration {name} applied (history id {id}) but the schema is not the expected one: {d}");
    }
    println!(
        "applied migration {name} to {} (history id {id}); the schema now equals {}",
        a.target, m.source
    );
    Ok(())
}

async fn rollback(a: &RollbackArgs) -> Result<()> {
    let t = target(&a.config, &a.target).await?;
    let pairing = if t.scope == "*" {
        Pairing::ByName
    } else {
        Pairing::Single
    };
    let mut conn = connect(&t.config, &t.server).await?;
    let Some((row, down_json)) = history::last_applied(&mut conn, &t.scope).await? else {
        bail!("no applied migration to roll back on {}", a.target);
    };
    let down: Vec<Step> = serde_json::from_str(&down_json)
        .map_err(|e| anyhow!("history row {}: unreadable down steps: {e}", row.id))?;
    let current = snapshot_target(&mut conn, &t).await?;
    if fingerprint(&current, pairing) != row.after_fingerprint {
        bail!(
            "the schema of {} changed since migration {} (id {}) was applied; nothing rolled back",
            a.target,
            row.name,
            row.id
        );
    }
    println!(
        "rollback of migration {} (id {}): {} step(s) on {}",
        row.name,
        row.id,
        down.len(),
        a.target
    );
    if !a.yes && !confirm("Type 'yes' to continue: ")? {
        bail!("not confirmed; nothing changed (use --yes to skip the question)");
    }
    if let Err(e) = exec::run_steps(&mut conn, &down, &|d: &str| d.to_string()).await {
        let msg = e.to_string();
        history::set_status(&mut conn, row.id, "rollback_failed", Some(&msg), None).await?;
        bail!("{msg}; the target may be partly rolled back");
    }
    let after = snapshot_target(&mut conn, &t).await?;
    history::set_status(&mut conn, row.id, "rolled_back", None, None).await?;
    let _ = conn.disconnect().await;
    if fingerprint(&after, pairing) != row.before_fingerprint {
        bail!(
            "rolled back migration {} (id {}) but the schema differs from the one before it",
            row.name,
            row.id
        );
    }
    println!(
        "rolled back migration {} (id {}) on {}",
        row.name, row.id, a.target
    );
    Ok(())
}

async fn status(a: &StatusArgs) -> Result<()> {
    let t = target(&a.config, &a.target).await?;
    let pairing = if t.scope == "*" {
        Pairing::ByName
    } else {
        Pairing::Single
    };
    let mut conn = connect(&t.config, &t.server).await?;
    let rows = history::list(&mut conn, Some(&t.scope)).await?;
    let current = fingerprint(&snapshot_target(&mut conn, &t).await?, pairing);
    let _ = conn.disconnect().await;
    let last = rows.iter().rev().find(|r| r.status == "applied");
    let matches_last = last.map(|r| r.after_fingerprint == current);
    if a.json {
        let out = serde_json::json!({
            "target": a.target,
            "current_fingerprint": current,
            "matches_last_applied": matches_last,
            "migrations": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("{}: no migrations recorded", a.target);
    }
    for r in &rows {
        let extra = r
            .error
            .as_deref()
            .map(|e| format!(" error: {e}"))
            .unwrap_or_default();
        let rb = r
            .rolled_back_at
            .as_deref()
            .map(|t| format!(" rolled back {t}"))
            .unwrap_or_default();
        println!(
            "{:>4}  {:<12} {}  applied {}{rb}{extra}",
            r.id, r.status, r.name, r.applied_at
        );
    }
    match (last, matches_last) {
        (Some(r), Some(true)) => println!(
            "current schema: as left by migration {} (id {})",
            r.name, r.id
        ),
        (Some(r), _) => println!(
            "current schema: CHANGED since migration {} (id {})",
            r.name, r.id
        ),
        _ => {}
    }
    Ok(())
}
