//! `fleetsync migrate generate|apply|status|rollback`: thin adapters around
//! [`crate::service::migrate`] (shared with the API's `migrate_*` jobs), which says what each
//! does. `generate` exits 0 when the migration is verified, 3 when it was written but could
//! not be verified (the report says why), 2 on an error. `apply` and `rollback` ask for
//! confirmation on a terminal unless `--yes`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use fleetsync_proto::jobs::{MigrateApplyReport, MigrateGenerateReport, MigrateRollbackReport};
use tokio_util::sync::CancellationToken;

use crate::diff_cmd::{Exit, SideArgs, EXIT_ERROR};
use crate::service::migrate::{
    self as service, MigrateGenerateRequest, Pending, DEFAULT_VERIFY_ROWS,
};
use crate::service::{into_anyhow, Quiet, Tracker};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Write (and verify on scratch copies) the migration that makes TARGET's schema equal
    /// SOURCE's.
    Generate(GenerateArgs),
    /// Apply a generated, verified migration to TARGET.
    Apply(ApplyArgs),
    /// Show TARGET's migration history (--target), or where each server stands against a
    /// versioned migrations folder (--dir).
    Status(StatusArgs),
    /// Undo TARGET's latest applied migration.
    Rollback(RollbackArgs),
    /// Versioned: create the next migration file (and its undo file) in --dir.
    New(crate::vmigrate_cmd::NewArgs),
    /// Versioned: apply the pending files of --dir to the servers (plan only without --yes;
    /// canaries, then waves).
    Up(crate::vmigrate_cmd::UpArgs),
    /// Versioned: run the undo (U) files of the newest applied file, or of every applied file
    /// above --to.
    Undo(crate::vmigrate_cmd::UndoArgs),
    /// Versioned: record the current checksum of applied files edited since (after review).
    Repair(crate::vmigrate_cmd::RepairArgs),
    /// Versioned: mark everything up to VERSION applied without running it.
    Baseline(crate::vmigrate_cmd::BaselineArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    /// Generated migrations: the history of SERVER or SERVER/DATABASE.
    #[arg(long, required_unless_present = "dir", conflicts_with = "dir")]
    pub target: Option<String>,
    /// Versioned migrations: where each server stands against this folder.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// With --dir: servers by name (globs, comma-separated); default every server.
    #[arg(long, requires = "dir")]
    pub servers: Option<String>,
    /// With --dir: fleetsync or trinitycore.
    #[arg(long, requires = "dir", default_value = "fleetsync", value_parser = |s: &str| s.parse::<fleetsync_coordinator::migrate::versioned::HistoryMode>())]
    pub history: fleetsync_coordinator::migrate::versioned::HistoryMode,
    /// With --dir: the database the files run in.
    #[arg(long, requires = "dir")]
    pub database: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RollbackArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub yes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// With `--remote`: `generate` runs as the `migrate_generate` job (its files downloaded into
/// `--out`), `rollback --yes` as the `migrate_rollback` job, versioned `up --yes` and `undo`
/// as the `migrate_up` / `migrate_undo` jobs (`--dir` relative to the coordinator's
/// `[migrations] dir`); `apply` (a local directory)
/// and `status` are local only (over the API: `POST /api/v1/jobs/migrate-apply` names the
/// generate job).
pub async fn run(cmd: MigrateCommand, remote: Option<crate::remote::Remote>) -> Result<()> {
    if let Some(remote) = remote {
        return match cmd {
            MigrateCommand::Generate(a) => {
                let req = request(&a);
                let (out, json) = (a.out.clone(), a.json);
                let print = move |r: &MigrateGenerateReport| {
                    let dir = out.display().to_string();
                    print_generated(r, &service::report_text(&out), &dir, json)
                };
                remote.run_job_into(&req, &a.out, true, print).await
            }
            MigrateCommand::Rollback(a) if a.yes => {
                let req = service::MigrateRollbackRequest {
                    target: a.target.clone(),
                    confirm: true,
                };
                let json = a.json;
                remote
                    .run_job(&req, move |r: &MigrateRollbackReport| {
                        print_rolled_back(r, json)
                    })
                    .await
            }
            MigrateCommand::Rollback(_) => crate::exit::fail(
                EXIT_ERROR,
                "migrate rollback with --remote cannot ask: add --yes",
            ),
            MigrateCommand::Up(a) if a.yes => crate::vmigrate_cmd::remote_up(&remote, &a).await,
            MigrateCommand::Up(_) => crate::exit::fail(
                EXIT_ERROR,
                "migrate up with --remote runs the files: add --yes (the plan: migrate up without --yes on the coordinator's machine)",
            ),
            MigrateCommand::Undo(a) => crate::vmigrate_cmd::remote_undo(&remote, &a).await,
            _ => crate::exit::fail(
                EXIT_ERROR,
                "with --remote, only `migrate generate`, `migrate rollback --yes`, `migrate up --yes` and `migrate undo` are available (apply over the API: POST /api/v1/jobs/migrate-apply)",
            ),
        };
    }
    let result = match cmd {
        MigrateCommand::Generate(a) => generate(&a).await,
        MigrateCommand::Apply(a) => apply(&a).await,
        MigrateCommand::Status(a) => match &a.dir {
            Some(dir) => {
                crate::vmigrate_cmd::status(&crate::vmigrate_cmd::QueueArgs {
                    config: Some(a.config.clone()),
                    dir: dir.clone(),
                    servers: a.servers.clone(),
                    history: a.history,
                    database: a.database.clone(),
                    json: a.json,
                })
                .await
            }
            None => status(&a).await,
        },
        MigrateCommand::Rollback(a) => rollback(&a).await,
        MigrateCommand::New(a) => crate::vmigrate_cmd::new(&a).await,
        MigrateCommand::Up(a) => crate::vmigrate_cmd::up(&a).await,
        MigrateCommand::Undo(a) => crate::vmigrate_cmd::undo(&a).await,
        MigrateCommand::Repair(a) => crate::vmigrate_cmd::repair(&a).await,
        MigrateCommand::Baseline(a) => crate::vmigrate_cmd::baseline(&a).await,
    };
    match result {
        Err(e) if e.downcast_ref::<Exit>().is_none() => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
        other => other,
    }
}

fn request(a: &GenerateArgs) -> MigrateGenerateRequest {
    MigrateGenerateRequest {
        source: a.source.clone(),
        target: a.target.clone(),
        verify_rows: a.verify_rows,
        rename_table: a.sides.rename_table.clone(),
        rename_column: a.sides.rename_column.clone(),
        scratch_server: a.sides.scratch_server.clone(),
    }
}

async fn generate(a: &GenerateArgs) -> Result<()> {
    let config = crate::opts::load_config(crate::opts::need_config(&a.config)?).await?;
    let req = request(a);
    let tracker = Tracker::new(Quiet::arc());
    let report = service::generate(&config, &req, &a.out, &tracker, &CancellationToken::new())
        .await
        .map_err(into_anyhow)?;
    print_generated(
        &report,
        &service::report_text(&a.out),
        &a.out.display().to_string(),
        a.json,
    );
    match service::generate_exit_code(&report) {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}

/// `generate`'s output: the report text (DIR/report.txt) and where it was written, or JSON.
pub fn print_generated(r: &MigrateGenerateReport, text: &str, dir: &str, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    print!("{text}");
    println!("written to {dir}");
}

/// The question before `apply`/`rollback` (on stderr with `--json`, whose stdout is the
/// report): `--yes` or a terminal's `yes`.
fn decide(p: &Pending, yes: bool, json: bool) -> Result<bool> {
    let lines = match p.history_id {
        None => {
            let mut l = vec![format!(
                "migration {}: {} step(s) on {}",
                p.name, p.steps, p.target
            )];
            l.extend(p.warnings.iter().map(|w| format!("warning: {w}")));
            l
        }
        Some(id) => vec![format!(
            "rollback of migration {} (id {id}): {} step(s) on {}",
            p.name, p.steps, p.target
        )],
    };
    for l in &lines {
        if json {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    }
    if yes {
        return Ok(true);
    }
    let question = match p.history_id {
        None => format!(
            "Apply migration {} to {}? Type 'yes' to continue: ",
            p.name, p.target
        ),
        Some(_) => "Type 'yes' to continue: ".to_string(),
    };
    confirm(&question)
}

async fn apply(a: &ApplyArgs) -> Result<()> {
    let config = crate::opts::load_config(&a.config).await?;
    let name = a
        .dir
        .file_name()
        .map_or("migration".into(), |n| n.to_string_lossy().into_owned());
    let tracker = Tracker::new(Quiet::arc());
    let report = service::apply(
        &config,
        &a.target,
        &a.dir,
        &name,
        |p| decide(p, a.yes, a.json),
        &tracker,
        &CancellationToken::new(),
    )
    .await
    .map_err(into_anyhow)?;
    print_applied(&report, a.json);
    Ok(())
}

/// `apply`'s output after the migration ran.
pub fn print_applied(r: &MigrateApplyReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    println!(
        "applied migration {} to {} (history id {}); the schema now equals {}",
        r.migration, r.target, r.history_id, r.source
    );
}

async fn rollback(a: &RollbackArgs) -> Result<()> {
    let config = crate::opts::load_config(crate::opts::need_config(&a.config)?).await?;
    let tracker = Tracker::new(Quiet::arc());
    let report = service::rollback(
        &config,
        &a.target,
        |p| decide(p, a.yes, a.json),
        &tracker,
        &CancellationToken::new(),
    )
    .await
    .map_err(into_anyhow)?;
    print_rolled_back(&report, a.json);
    Ok(())
}

/// `rollback`'s output.
pub fn print_rolled_back(r: &MigrateRollbackReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    println!(
        "rolled back migration {} (id {}) on {}",
        r.migration, r.history_id, r.target
    );
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

async fn status(a: &StatusArgs) -> Result<()> {
    let config = crate::opts::load_config(&a.config).await?;
    let target = a.target.as_deref().unwrap_or_default();
    let st = crate::service::migrate::status(&config, target).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    let (rows, matches_last) = (&st.migrations, st.matches_last_applied);
    let last = rows
        .iter()
        .rev()
        .find(|r| r.status == "applied" && !r.after_fingerprint.is_empty());
    if rows.is_empty() {
        println!("{target}: no migrations recorded");
    }
    for r in rows {
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
