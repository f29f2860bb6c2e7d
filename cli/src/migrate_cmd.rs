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
    /// Show TARGET's migration history.
    Status(StatusArgs),
    /// Undo TARGET's latest applied migration.
    Rollback(RollbackArgs),
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
    #[arg(long)]
    pub target: String,
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
/// `--out`) and `rollback --yes` as the `migrate_rollback` job; `apply` (a local directory)
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
            _ => crate::exit::fail(
                EXIT_ERROR,
                "with --remote, only `migrate generate` and `migrate rollback --yes` are available (apply over the API: POST /api/v1/jobs/migrate-apply)",
            ),
        };
    }
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
    let st = crate::service::migrate::status(&config, &a.target).await?;
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
        println!("{}: no migrations recorded", a.target);
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
