//! `fleetsync export` / `fleetsync import`: thin adapters around [`crate::service::transfer`]
//! (shared with the API's `export` / `import` jobs). File formats and guarantees:
//! fleetsync_agent::transfer and docs/transfer.md.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::builder::TypedValueParser as _;
use clap::Args;
use fleetsync_proto::jobs::{ExportReport, ImportReport};
use tokio_util::sync::CancellationToken;

use crate::service::transfer::{self as service, ExportRequest, ImportRequest};
pub use crate::service::transfer::{Format, OnConflict};
use crate::service::{into_anyhow, Quiet, Tracker};

/// `--format`: one of the request's formats (listed in `--help` and in the error).
fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::as_str))
        .try_map(|s| s.parse::<Format>())
}

/// `--on-conflict`: one of the request's choices (listed in `--help` and in the error).
fn on_conflict_parser() -> impl clap::builder::TypedValueParser<Value = OnConflict> {
    clap::builder::PossibleValuesParser::new(OnConflict::ALL.map(OnConflict::as_str))
        .try_map(|s| s.parse::<OnConflict>())
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub server: String,
    #[arg(long, value_parser = format_parser())]
    pub format: Format,
    #[arg(long)]
    pub out: PathBuf,
    /// `schema.table` regexes to include (default: every user table).
    #[arg(long)]
    pub include: Vec<String>,
    /// `schema.table` regexes to exclude.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Only the table definitions.
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Only the rows.
    #[arg(long)]
    pub data_only: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub server: String,
    #[arg(long, value_parser = format_parser())]
    pub format: Format,
    #[arg(long = "in")]
    pub input: PathBuf,
    /// `OLD=NEW`: import database OLD as NEW (repeatable).
    #[arg(long)]
    pub rename_db: Vec<String>,
    #[arg(long, value_parser = on_conflict_parser(), default_value = "error")]
    pub on_conflict: OnConflict,
    /// Validate and report; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep foreign-key checks on during the load (default: off, as dumps load parents and
    /// children in any order).
    #[arg(long)]
    pub fk_checks: bool,
    /// Print the report as JSON (problems included; exit code 1 when there are any).
    #[arg(long)]
    pub json: bool,
}

/// The error line of `import --json` when the input has problems (listed in the report).
const INPUT_PROBLEMS: &str = "the input has problems; nothing was changed";

/// With `--remote`: the `export` job runs on the coordinator, its files are downloaded into
/// `--out`.
pub async fn export(args: ExportArgs, remote: Option<crate::remote::Remote>) -> Result<()> {
    let req = ExportRequest {
        server: args.server.clone(),
        format: args.format,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        schema_only: args.schema_only,
        data_only: args.data_only,
    };
    // The flags' names in a bad pattern's error, as before.
    service::export_filter(&req).map_err(|(field, m)| {
        let flag = if field.starts_with("include") {
            "--include"
        } else {
            "--exclude"
        };
        anyhow!("{flag}: {m}")
    })?;
    if let Some(remote) = remote {
        let dir = args.out.display().to_string();
        let print = move |r: &ExportReport| print_exported(r, &dir, args.json);
        return remote.run_job_into(&req, &args.out, false, print).await;
    }
    let config = crate::opts::load_config(crate::opts::need_config(&args.config)?).await?;
    let tracker = Tracker::new(Quiet::arc());
    let report = service::export(
        &config,
        &req,
        &args.out,
        &tracker,
        &CancellationToken::new(),
    )
    .await
    .map_err(into_anyhow)?;
    print_exported(&report, &args.out.display().to_string(), args.json);
    Ok(())
}

/// `export`'s output (`dir`: where the files are, for the text line).
pub fn print_exported(r: &ExportReport, dir: &str, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    let gtid = r.gtid.as_deref().unwrap_or("-");
    println!(
        "exported {} tables, {} rows, {} bytes from {} to {dir} (snapshot at {}:{}, gtid {gtid})",
        r.tables, r.rows, r.bytes, r.server, r.binlog_file, r.binlog_pos
    );
}

/// With `--remote`: `--in` is uploaded (a tar) and imported by the `import` job on the
/// coordinator.
pub async fn import(args: ImportArgs, remote: Option<crate::remote::Remote>) -> Result<()> {
    let req = ImportRequest {
        server: args.server.clone(),
        format: args.format,
        rename_db: args.rename_db.clone(),
        on_conflict: args.on_conflict,
        plan_only: args.dry_run,
        fk_checks: args.fk_checks,
    };
    if let Some(remote) = remote {
        let input = args.input.display().to_string();
        let json = args.json;
        let print = move |r: &ImportReport| {
            print_imported(r, &input, json);
            // What the local command says on stderr (its exit code comes from the job).
            match (json, r.errors.is_empty()) {
                (_, true) => {}
                (true, false) => eprintln!("error: {INPUT_PROBLEMS}"),
                (false, false) => eprintln!("error: {}", input_errors(r)),
            }
        };
        return remote.run_import(&req, &args.input, print).await;
    }
    let config = crate::opts::load_config(crate::opts::need_config(&args.config)?).await?;
    let tracker = Tracker::new(Quiet::arc());
    let report = service::import(
        &config,
        &req,
        &args.input,
        &tracker,
        &CancellationToken::new(),
    )
    .await
    .map_err(into_anyhow)?;
    print_imported(&report, &args.input.display().to_string(), args.json);
    match service::import_exit_code(&report) {
        0 => Ok(()),
        code if args.json => crate::exit::fail(code, INPUT_PROBLEMS),
        _ => Err(input_errors(&report)),
    }
}

/// `import`'s output (`input`: where the files came from, for the text line). The text
/// form prints nothing here when the input has problems (they are the error).
pub fn print_imported(r: &ImportReport, input: &str, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    if !r.errors.is_empty() {
        return;
    }
    let mode = if r.dry_run {
        "dry run: nothing changed"
    } else {
        "imported"
    };
    println!(
        "{mode}: {} tables, {} rows from {input} into server {}",
        r.tables.len(),
        r.rows,
        r.server
    );
    for t in &r.tables {
        let create = if t.create { " (new table)" } else { "" };
        println!(
            "  {} -> {}: {} rows{create} [{}]",
            t.source, t.target, t.rows, t.file
        );
    }
    if r.warnings > 0 {
        let first = r.first_warning.as_deref().unwrap_or("");
        println!(
            "server warnings while loading: {} (first: {first})",
            r.warnings
        );
    }
}

/// One problem is the error line itself; several are listed on stderr, then summarised.
pub fn input_errors(r: &ImportReport) -> anyhow::Error {
    if let ([one], 0) = (r.errors.as_slice(), r.more_errors) {
        return anyhow!("{}", one.text);
    }
    for e in &r.errors {
        eprintln!("error: {}", e.text);
    }
    let total = r.errors.len() as u64 + r.more_errors;
    let unlisted = if r.more_errors > 0 {
        format!(" ({} not listed)", r.more_errors)
    } else {
        String::new()
    };
    anyhow!("{total} problems in the input{unlisted}; nothing was changed")
}
