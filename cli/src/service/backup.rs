//! `backup create` and `backup verify`; shared by `fleetsync backup create|verify` and the
//! `backup_create` / `backup_verify` jobs. A cancelled create stops between key ranges and
//! removes its directory (never listed, not even as failed); a cancelled verify stops between
//! files (it only reads).

use std::sync::Arc;

use anyhow::{anyhow, Context};
use fleetsync_agent::backup::{dump, manifest, verify, BackupError, Settings};
use fleetsync_config::{Config, TableFilter};
use fleetsync_proto::jobs::{BackupCreateReport, BackupVerifyReport};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::opts::opts_by_name;

/// Exit code of a failed backup command.
pub const EXIT_ERROR: u8 = 1;

/// Back up a server.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCreateRequest {
    /// `[[servers]] name`.
    pub server: String,
    /// `schema.table` regexes to include (default: every table of every user database).
    #[serde(default)]
    pub include: Vec<String>,
}

/// Verify a stored backup.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupVerifyRequest {
    /// The backup's id (as listed).
    pub id: String,
}

fn cancelled_or(e: BackupError) -> ServiceError {
    match e {
        BackupError::Cancelled => ServiceError::Cancelled,
        other => ServiceError::Failed(other.into()),
    }
}

pub async fn create(
    config: &Config,
    req: &BackupCreateRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupCreateReport> {
    let settings = Settings::from_config(&config.backup).map_err(cancelled_or)?;
    let opts = opts_by_name(config, &req.server)?;
    let filter = TableFilter::new(&req.include, &[])
        .map_err(|(i, e)| anyhow!("--include #{}: {e}", i + 1))?;
    let dump_req = dump::CreateRequest {
        server: req.server.clone(),
        opts,
        filter,
        settings,
        progress: tracker.clone(),
        cancel: cancel.clone(),
    };
    tracker.phase(format!("backing up server {}", req.server));
    let m = dump::create(&dump_req).await.map_err(cancelled_or)?;
    tracker.bytes(m.total_bytes);
    tracker.log(&format!("backup {} complete", m.id));
    Ok(BackupCreateReport {
        id: m.id.clone(),
        server: m.server.clone(),
        status: serde_json::to_value(m.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        dir: dump_req.settings.dir.join(&m.id).display().to_string(),
        tables: m.tables.len(),
        views: m.views.len(),
        rows: m.total_rows,
        bytes: m.total_bytes,
        files: m.files().count(),
        duration_seconds: m.duration_seconds,
        position: m.position.clone(),
        encrypted: m.encrypted,
        compression: m.compression.clone(),
    })
}

pub async fn verify(
    config: &Config,
    req: &BackupVerifyRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupVerifyReport> {
    let settings = Settings::from_config(&config.backup).map_err(cancelled_or)?;
    let m = manifest::read(&settings.dir, &req.id).map_err(cancelled_or)?;
    tracker.phase(format!("verifying backup {}", req.id));
    tracker.planned(None, Some(m.total_rows.max(1)));
    let cancel = cancel.clone();
    let report = tokio::task::spawn_blocking(move || {
        verify::verify_with(&settings.dir, &m, &settings, &|| cancel.is_cancelled())
    })
    .await
    .context("verification stopped")?
    .map_err(cancelled_or)?;
    tracker.rows(report.rows);
    tracker.bytes(report.bytes);
    Ok(BackupVerifyReport {
        id: req.id.clone(),
        files: report.files,
        bytes: report.bytes,
        statements: report.statements,
        rows: report.rows,
    })
}

/// Backups have no verdict: success is 0.
pub fn exit_code<T>(_: &T) -> u8 {
    0
}
