//! `fleetsync export` / `fleetsync import`: the CLI side of fleetsync_agent::transfer.
//! File formats and guarantees: fleetsync_agent::transfer and docs/transfer.md.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use fleetsync_agent::transfer::{
    self, Content, ExportOptions, ImportOptions, ImportReport, InputError, TransferError,
};
use fleetsync_config::TableFilter;

use crate::opts::opts_by_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Sql,
    Json,
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnConflict {
    Skip,
    Replace,
    Update,
    Error,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
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
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
    pub format: Format,
    #[arg(long = "in")]
    pub input: PathBuf,
    /// `OLD=NEW`: import database OLD as NEW (repeatable).
    #[arg(long)]
    pub rename_db: Vec<String>,
    #[arg(long, value_enum, default_value = "error")]
    pub on_conflict: OnConflict,
    /// Validate and report; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep foreign-key checks on during the load (default: off, as dumps load parents and
    /// children in any order).
    #[arg(long)]
    pub fk_checks: bool,
}

pub async fn export(args: ExportArgs) -> Result<()> {
    let config = crate::opts::load_config(&args.config).await?;
    let opts = opts_by_name(&config, &args.server)?;
    let filter = TableFilter::new(&args.include, &args.exclude).map_err(|(i, m)| {
        let flag = if i < args.include.len() {
            "--include"
        } else {
            "--exclude"
        };
        anyhow!("{flag}: {m}")
    })?;
    let content = match (args.schema_only, args.data_only) {
        (true, _) => Content::SchemaOnly,
        (_, true) => Content::DataOnly,
        _ => Content::Both,
    };
    let options = ExportOptions {
        server: args.server.clone(),
        opts,
        format: args.format.into(),
        out: args.out.clone(),
        filter,
        content,
    };
    let m = transfer::export(&options).await?;
    let gtid = m.position.gtid.as_deref().unwrap_or("-");
    println!(
        "exported {} tables, {} rows, {} bytes from {} to {} (snapshot at {}:{}, gtid {gtid})",
        m.tables.len(),
        m.rows,
        m.bytes,
        m.server,
        args.out.display(),
        m.position.file,
        m.position.pos
    );
    Ok(())
}

pub async fn import(args: ImportArgs) -> Result<()> {
    let config = crate::opts::load_config(&args.config).await?;
    let opts = opts_by_name(&config, &args.server)?;
    let options = ImportOptions {
        server: args.server.clone(),
        opts,
        format: args.format.into(),
        input: args.input.clone(),
        rename: args.rename_db.clone(),
        on_conflict: args.on_conflict.into(),
        dry_run: args.dry_run,
        fk_checks: args.fk_checks,
    };
    let report = match transfer::import(&options).await {
        Ok(r) => r,
        Err(TransferError::Input(errors)) => return Err(input_errors(errors, 0)),
        Err(e) => return Err(e.into()),
    };
    print_report(&args, &report);
    if !report.errors.is_empty() {
        return Err(input_errors(report.errors, report.more_errors));
    }
    Ok(())
}

fn print_report(args: &ImportArgs, r: &ImportReport) {
    let mode = if r.dry_run {
        "dry run: nothing changed"
    } else {
        "imported"
    };
    println!(
        "{mode}: {} tables, {} rows from {} into server {}",
        r.tables.len(),
        r.rows,
        args.input.display(),
        args.server
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
fn input_errors(mut errors: Vec<InputError>, more: u64) -> anyhow::Error {
    if errors.len() == 1 && more == 0 {
        if let Some(e) = errors.pop() {
            return anyhow!("{e}");
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    let total = errors.len() as u64 + more;
    let unlisted = if more > 0 {
        format!(" ({more} not listed)")
    } else {
        String::new()
    };
    anyhow!("{total} problems in the input{unlisted}; nothing was changed")
}

impl From<Format> for transfer::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Sql => transfer::Format::Sql,
            Format::Json => transfer::Format::Json,
            Format::Csv => transfer::Format::Csv,
        }
    }
}

impl From<OnConflict> for transfer::OnConflict {
    fn from(c: OnConflict) -> Self {
        match c {
            OnConflict::Skip => transfer::OnConflict::Skip,
            OnConflict::Replace => transfer::OnConflict::Replace,
            OnConflict::Update => transfer::OnConflict::Update,
            OnConflict::Error => transfer::OnConflict::Error,
        }
    }
}
