//! `export` and `import` (fleetsync_agent::transfer); shared by `fleetsync export|import` and
//! the `export` / `import` jobs.
//!
//! * An export writes into a directory that must be new or empty: the CLI's `--out`, or the
//!   job's own directory (`<state_dir>/jobs/<id>/`, downloadable with
//!   `GET /api/v1/jobs/{id}/files/{file}`). A cancelled export (checked between tables)
//!   removes what it wrote.
//! * An import reads an export directory: the CLI's `--in`, or the job's unpacked upload.
//!   Everything is validated before anything is written; the problems (file, line, column)
//!   are in the report, and then nothing was written. A cancel before or during the load
//!   (between tables) rolls it back and drops what it created.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use fleetsync_agent::transfer::{self, Content, ExportOptions, ImportOptions, TransferError};
use fleetsync_config::{Config, TableFilter};
use fleetsync_proto::jobs::{ExportReport, ImportProblem, ImportReport, ImportedTable};
pub use fleetsync_proto::requests::{ExportRequest, Format, ImportRequest, OnConflict};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::opts::opts_by_name;

/// Exit code of a failed export or import (and of an import whose input has problems).
pub const EXIT_ERROR: u8 = 1;

/// The include/exclude patterns of an export compiled; the error names the field
/// (`include[i]`, `exclude[j]`).
pub fn export_filter(req: &ExportRequest) -> Result<TableFilter, (String, String)> {
    TableFilter::new(&req.include, &req.exclude).map_err(|(i, m)| (req.pattern_field(i), m))
}

/// The agent's format for a request's.
fn agent_format(f: Format) -> transfer::Format {
    match f {
        Format::Sql => transfer::Format::Sql,
        Format::Json => transfer::Format::Json,
        Format::Csv => transfer::Format::Csv,
    }
}

/// The agent's conflict choice for a request's.
fn agent_on_conflict(c: OnConflict) -> transfer::OnConflict {
    match c {
        OnConflict::Skip => transfer::OnConflict::Skip,
        OnConflict::Replace => transfer::OnConflict::Replace,
        OnConflict::Update => transfer::OnConflict::Update,
        OnConflict::Error => transfer::OnConflict::Error,
    }
}

impl transfer::Progress for Tracker {
    fn tables(&self, n: usize) {
        Tracker::planned(self, Some(n as u64), None);
    }
    fn table_done(&self, rows: u64, bytes: u64) {
        Tracker::table_done(self, rows);
        if bytes > 0 {
            Tracker::add_bytes(self, bytes);
        }
    }
}

fn failed(e: TransferError) -> ServiceError {
    match e {
        TransferError::Cancelled => ServiceError::Cancelled,
        other => ServiceError::Failed(other.into()),
    }
}

/// Exports into `out` (new or empty). A failed or cancelled export removes `out` when it
/// created it (a job's directory always); in a directory that existed (empty), a cancel
/// removes what it wrote, a failure leaves the incomplete files (no `export.json`).
pub async fn export(
    config: &Config,
    req: &ExportRequest,
    out: &Path,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<ExportReport> {
    let opts = opts_by_name(config, &req.server)?;
    let filter = export_filter(req).map_err(|(f, m)| anyhow!("{f}: {m}"))?;
    let content = match (req.schema_only, req.data_only) {
        (true, true) => {
            return Err(anyhow!("schema_only and data_only exclude each other").into());
        }
        (true, _) => Content::SchemaOnly,
        (_, true) => Content::DataOnly,
        _ => Content::Both,
    };
    let existed = out.exists();
    let options = ExportOptions {
        server: req.server.clone(),
        opts,
        format: agent_format(req.format),
        out: out.to_path_buf(),
        filter,
        content,
        progress: Some(tracker.clone()),
        cancel: cancel.clone(),
    };
    tracker.phase(format!("exporting from server {}", req.server));
    let m = match transfer::export(&options).await {
        Ok(m) => m,
        Err(e) => {
            // Refused before writing (a non-empty directory) leaves the directory alone.
            if !existed || matches!(e, TransferError::Cancelled) {
                remove_export(out, existed);
            }
            return Err(failed(e));
        }
    };
    let mut files = vec![transfer::MANIFEST_FILE.to_string()];
    files.extend(m.tables.iter().flat_map(|t| t.files.iter().cloned()));
    tracker.log(&format!(
        "exported {} tables, {} rows",
        m.tables.len(),
        m.rows
    ));
    Ok(ExportReport {
        server: m.server.clone(),
        format: m.format.name().to_string(),
        content: serde_json::to_value(m.content)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        tables: m.tables.len(),
        rows: m.rows,
        bytes: m.bytes,
        binlog_file: m.position.file.clone(),
        binlog_pos: m.position.pos,
        gtid: m.position.gtid.clone(),
        files,
    })
}

/// Removes a cancelled export's files: the directory itself when the export created it,
/// else its contents (it was empty before).
fn remove_export(out: &Path, existed: bool) {
    let result = if existed {
        std::fs::read_dir(out).and_then(|entries| {
            entries.flatten().try_for_each(|e| {
                let p = e.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                }
            })
        })
    } else if out.exists() {
        std::fs::remove_dir_all(out)
    } else {
        Ok(())
    };
    if let Err(e) = result {
        tracing::warn!(dir = %out.display(), error = %e, "cannot remove a stopped export's files");
    }
}

/// Imports the export directory `input`. Problems with the input are in the report (and
/// nothing was written); a server failure during the load is an error (rolled back).
pub async fn import(
    config: &Config,
    req: &ImportRequest,
    input: &Path,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<ImportReport> {
    let opts = opts_by_name(config, &req.server)?;
    let options = ImportOptions {
        server: req.server.clone(),
        opts,
        format: agent_format(req.format),
        input: input.to_path_buf(),
        rename: req.rename_db.clone(),
        on_conflict: agent_on_conflict(req.on_conflict),
        dry_run: req.plan_only,
        fk_checks: req.fk_checks,
        progress: Some(tracker.clone()),
        cancel: cancel.clone(),
    };
    tracker.phase(format!("validating the input for server {}", req.server));
    let r = match transfer::import(&options).await {
        Ok(r) => r,
        Err(TransferError::Input(errors)) => transfer::ImportReport {
            dry_run: req.plan_only,
            errors,
            ..Default::default()
        },
        Err(e) => return Err(failed(e)),
    };
    let report = ImportReport {
        server: req.server.clone(),
        dry_run: r.dry_run,
        tables: r
            .tables
            .iter()
            .map(|t| ImportedTable {
                file: t.file.clone(),
                source: t.source.clone(),
                target: t.target.clone(),
                rows: t.rows,
                create: t.create,
            })
            .collect(),
        rows: r.rows,
        errors: r.errors.iter().map(problem).collect(),
        more_errors: r.more_errors,
        warnings: r.warnings,
        first_warning: r.first_warning.clone(),
    };
    if report.errors.is_empty() {
        tracker.log(&format!(
            "{}: {} tables, {} rows",
            if report.dry_run {
                "validated"
            } else {
                "imported"
            },
            report.tables.len(),
            report.rows
        ));
    } else {
        for e in &report.errors {
            tracker.log(&e.text);
        }
    }
    Ok(report)
}

fn problem(e: &transfer::InputError) -> ImportProblem {
    let (line, row) = match e.loc {
        transfer::Loc::File => (None, None),
        transfer::Loc::Line(l) => (Some(l), None),
        transfer::Loc::Row { row, line } => (Some(line), Some(row)),
    };
    ImportProblem {
        file: e.file.clone(),
        line,
        row,
        column: e.column.clone(),
        message: e.message.clone(),
        text: e.to_string(),
    }
}

/// The CLI's exit code: 1 when the input has problems (nothing was written).
pub fn import_exit_code(r: &ImportReport) -> u8 {
    if r.errors.is_empty() {
        0
    } else {
        EXIT_ERROR
    }
}
