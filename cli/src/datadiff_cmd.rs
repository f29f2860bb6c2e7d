//! `fleetsync diff data --config F SOURCE TARGET [--include REGEX] [--json]`: a thin adapter
//! around [`crate::service::data_diff`] (shared with the API's `data_diff` job; `--remote` runs
//! that job on a coordinator) that writes the repair SQL and prints the report.
//!
//! Sides are `SERVER` (every user database, paired by name) or `SERVER/DATABASE`. Both sides
//! open a consistent snapshot and are checksummed concurrently (see
//! `fleetsync_coordinator::datadiff`).
//!
//! Exit codes: 0 = every table compared and equal; 1 = some difference (rows, or a table on
//! one side only, or different columns); 3 = no difference found but some table was skipped
//! (over `--max-table-rows` / `--max-table-seconds`), so equality is not claimed;
//! 2 = error.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use fleetsync_proto::datadiff::{DataDiffReport, TableStatus};
use tokio_util::sync::CancellationToken;

use crate::diff_cmd::{Exit, EXIT_ERROR};
use crate::service::data_diff::{self, Checksum, DataDiffRequest};
use crate::service::{Quiet, Tracker};

#[derive(Args)]
pub struct DataArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// `SERVER` or `SERVER/DATABASE`.
    pub source: String,
    /// `SERVER` or `SERVER/DATABASE`.
    pub target: String,
    /// Only tables whose `database.table` (source names) matches this anchored regex
    /// (repeatable).
    #[arg(long, alias = "tables")]
    pub include: Vec<String>,
    #[arg(long)]
    pub json: bool,
    /// Target time of one chunk in milliseconds (chunk sizes adapt toward it).
    #[arg(long, default_value_t = data_diff::DEFAULT_CHUNK_TIME_MS)]
    pub chunk_time_ms: u64,
    /// Pause while a side's replication lag exceeds this many seconds (0 = no check).
    #[arg(long, default_value_t = data_diff::DEFAULT_MAX_LAG)]
    pub max_lag: u64,
    /// Pause while a side's Threads_running exceeds this (0 = no check).
    #[arg(long, default_value_t = data_diff::DEFAULT_MAX_THREADS_RUNNING)]
    pub max_threads_running: u64,
    /// Skip tables estimated to hold more rows than this on either side.
    #[arg(long)]
    pub max_table_rows: Option<u64>,
    /// Stop comparing a table after this many seconds (it is reported as skipped).
    #[arg(long)]
    pub max_table_seconds: Option<u64>,
    /// Per-row strength of chunk checksums: `crc32` (one CRC per row, as pt-table-checksum)
    /// or `crc64` (CRC32 and CRC32C: about 2^-64 instead of 2^-32 for a changed row to go
    /// unnoticed, at about 1.5x the server CPU).
    #[arg(long, default_value = "crc32", value_parser = ["crc32", "crc64"])]
    pub checksum: String,
    /// Write SQL that makes the target equal the source to this file.
    #[arg(long)]
    pub repair_sql: Option<PathBuf>,
}

impl DataArgs {
    fn request(&self) -> DataDiffRequest {
        DataDiffRequest {
            source: self.source.clone(),
            target: self.target.clone(),
            include: self.include.clone(),
            chunk_time_ms: self.chunk_time_ms,
            max_lag: self.max_lag,
            max_threads_running: self.max_threads_running,
            max_table_rows: self.max_table_rows,
            max_table_seconds: self.max_table_seconds,
            checksum: if self.checksum == "crc64" {
                Checksum::Crc64
            } else {
                Checksum::Crc32
            },
            repair_sql: false,
        }
    }
}

pub async fn run(args: DataArgs, remote: Option<crate::remote::Remote>) -> Result<()> {
    if let Some(remote) = remote {
        if args.repair_sql.is_some() {
            return crate::exit::fail(EXIT_ERROR, "--repair-sql is not available with --remote");
        }
        return remote
            .run_job(
                &args.request(),
                crate::service::pretty_or(args.json, print_report),
            )
            .await;
    }
    match diff_data(&args).await {
        Ok(report) => match data_diff::exit_code(&report) {
            0 => Ok(()),
            code => Err(Exit(code).into()),
        },
        Err(e) => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
    }
}

async fn diff_data(args: &DataArgs) -> Result<DataDiffReport> {
    let config = crate::opts::load_config(crate::opts::need_config(&args.config)?).await?;
    let tracker = Tracker::new(Arc::new(Quiet));
    let out = data_diff::run(
        &config,
        &args.request(),
        args.repair_sql.is_some(),
        &tracker,
        &CancellationToken::new(),
    )
    .await
    .map_err(crate::service::into_anyhow)?;
    let (report, repair) = (out.report, out.repair);
    if let Some(path) = &args.repair_sql {
        fleetsync_agent::owner_only::write(path, repair.render(&report.source, &report.target))
            .with_context(|| format!("writing the repair SQL to {}", path.display()))?;
        if !args.json {
            println!(
                "repair SQL: {} statement(s) written to {}",
                repair.statements,
                path.display()
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report)
}

/// Keys printed per kind and table in the text output (`--json` lists them all).
const KEYS_SHOWN: usize = 20;

pub fn print_report(r: &DataDiffReport) {
    for t in &r.tables {
        let name = format!("{}.{}", t.schema, t.table);
        let status = match t.status {
            TableStatus::Equal => "equal".to_string(),
            TableStatus::Different => format!(
                "DIFFERENT: {} only in source, {} only in target, {} different",
                t.only_in_source.len(),
                t.only_in_target.len(),
                t.different.len()
            ),
            TableStatus::Skipped => "SKIPPED".to_string(),
            TableStatus::OnlyInSource => "only in source".to_string(),
            TableStatus::OnlyInTarget => "only in target".to_string(),
        };
        println!(
            "{name}: {status} ({:?}, {} chunks, {} / {} rows, {:.2} s)",
            t.method, t.chunks, t.rows_source, t.rows_target, t.seconds
        );
        if let Some(s) = &t.skipped {
            println!("  {s}");
        }
        for (label, keys) in [
            ("only in source", &t.only_in_source),
            ("only in target", &t.only_in_target),
            ("different", &t.different),
        ] {
            for k in keys.iter().take(KEYS_SHOWN) {
                println!("  {label}: {k}");
            }
            if keys.len() > KEYS_SHOWN {
                println!(
                    "  {label}: ... {} more (see --json)",
                    keys.len() - KEYS_SHOWN
                );
            }
        }
    }
    let verdict = if r.equal {
        "EQUAL"
    } else if !r.complete && r.differing_rows == 0 {
        "INCOMPLETE (skipped tables: equality not claimed)"
    } else {
        "DIFFERENT"
    };
    println!(
        "{verdict}: {} table(s), {} chunk(s), {} differing row(s), {} skipped, {} pause(s), {:.2} s",
        r.tables.len(),
        r.chunks,
        r.differing_rows,
        r.skipped_tables.len(),
        r.pauses,
        r.seconds
    );
}
