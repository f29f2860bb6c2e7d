//! `fleetsync diff data --config F SOURCE TARGET [--include REGEX] [--json]`.
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
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use fleetsync_agent::datadiff::{RowChecksum, Session, Throttle};
use fleetsync_config::{Config, TableFilter};
use fleetsync_coordinator::datadiff::{self as dd, RepairSql, Scope};
use fleetsync_proto::datadiff::{DataDiffReport, TableStatus};

use crate::diff_cmd::{connect, Exit, Side, EXIT_DIFFERENT, EXIT_ERROR};

/// Exit code when nothing differed but some table was not compared.
pub const EXIT_INCOMPLETE: u8 = 3;

#[derive(Args)]
pub struct DataArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
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
    #[arg(long, default_value_t = 500)]
    pub chunk_time_ms: u64,
    /// Pause while a side's replication lag exceeds this many seconds (0 = no check).
    #[arg(long, default_value_t = 10)]
    pub max_lag: u64,
    /// Pause while a side's Threads_running exceeds this (0 = no check).
    #[arg(long, default_value_t = 50)]
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

pub async fn run(args: DataArgs) -> Result<()> {
    match diff_data(&args).await {
        Ok(report) if report.equal => Ok(()),
        Ok(report) if report.differing_rows > 0 || report.tables.iter().any(differs) => {
            Err(Exit(EXIT_DIFFERENT).into())
        }
        Ok(_) => Err(Exit(EXIT_INCOMPLETE).into()),
        Err(e) => {
            eprintln!("error: {}", crate::exit::one_line(e.as_ref()));
            Err(Exit(EXIT_ERROR).into())
        }
    }
}

fn differs(t: &fleetsync_proto::datadiff::TableReport) -> bool {
    matches!(
        t.status,
        TableStatus::Different | TableStatus::OnlyInSource | TableStatus::OnlyInTarget
    ) || t.skipped.as_deref().is_some_and(|s| s.contains("differ"))
}

/// Parses and checks the sides: `(source scope, labels)`.
fn scope(config: &Config, source: &Side, target: &Side) -> Result<Scope> {
    for side in [source, target] {
        match side {
            Side::File(p) => bail!(
                "{}: diff data compares servers; a .sql file is only a schema",
                p.display()
            ),
            Side::Server(s) | Side::Database(s, _) if config.server(s).is_none() => {
                bail!("no server named {s:?} in the config ({})", side.label())
            }
            _ => {}
        }
    }
    match (source, target) {
        (Side::Server(_), Side::Server(_)) => Ok(Scope::Servers),
        (Side::Database(_, a), Side::Database(_, b)) => Ok(Scope::Databases {
            source: a.clone(),
            target: b.clone(),
        }),
        _ => bail!(
            "{} and {}: compare a whole server with a whole server, or SERVER/DATABASE with SERVER/DATABASE",
            source.label(),
            target.label()
        ),
    }
}

async fn diff_data(args: &DataArgs) -> Result<DataDiffReport> {
    let config = crate::opts::load_config(&args.config).await?;
    let (source, target) = (Side::parse(&args.source), Side::parse(&args.target));
    let scope = scope(&config, &source, &target)?;
    let filter =
        TableFilter::new(&args.include, &[]).map_err(|(_, m)| anyhow!("--include: {m}"))?;
    if args.chunk_time_ms == 0 {
        bail!("--chunk-time-ms must be at least 1");
    }
    let throttle = Throttle {
        max_lag: (args.max_lag > 0).then_some(args.max_lag),
        max_threads_running: (args.max_threads_running > 0).then_some(args.max_threads_running),
    };
    let opts = dd::Options {
        chunk_time: Duration::from_millis(args.chunk_time_ms),
        max_table_rows: args.max_table_rows,
        max_table_time: args.max_table_seconds.map(Duration::from_secs),
        repair: args.repair_sql.is_some(),
    };
    let (sname, tname) = (
        source.server().unwrap_or_default(),
        target.server().unwrap_or_default(),
    );
    let started = Instant::now();
    // Both snapshots are opened together so they are as close in time as possible.
    let (sc, tc) = tokio::join!(connect(&config, sname), connect(&config, tname));
    let (sc, tc) = (sc?, tc?);
    let (mut s, mut t) = match tokio::join!(
        Session::open(sname, sc, throttle),
        Session::open(tname, tc, throttle)
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => return Err(anyhow!(e)),
    };
    let kind = if args.checksum == "crc64" {
        RowChecksum::Crc64
    } else {
        RowChecksum::Crc32
    };
    (s.checksum, t.checksum) = (kind, kind);
    let mut repair = RepairSql::default();
    let keep = |db: &str, table: &str| filter.matches(db, table);
    let tables = dd::diff(&mut s, &mut t, &scope, &keep, &opts, &mut repair).await;
    let pauses = s.pauses + t.pauses;
    s.close().await;
    t.close().await;
    let tables = tables.map_err(|e| anyhow!(e))?;
    let report = dd::report(
        &source.label(),
        &target.label(),
        tables,
        pauses,
        started.elapsed().as_secs_f64(),
    );
    if let Some(path) = &args.repair_sql {
        fleetsync_agent::owner_only::write(path, repair.render(&source.label(), &target.label()))
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

fn print_report(r: &DataDiffReport) {
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
