//! `backup create`, `verify`, `restore` (incl. point-in-time), `list` and `prune`; shared by
//! `fleetsync backup ...` and the `backup_*` jobs (and `GET /api/v1/backups`). A cancelled create stops between key ranges and
//! removes its directory (never listed, not even as failed); a cancelled verify stops between
//! files (it only reads).

use std::sync::Arc;

use anyhow::{anyhow, Context};
use fleetsync_agent::backup::{dump, manifest, prune, restore, verify, BackupError, Settings};
use fleetsync_config::{Config, TableFilter};
use fleetsync_coordinator::pitr;
use fleetsync_proto::jobs::{
    BackupCreateReport, BackupListEntry, BackupPruneReport, BackupRestoreReport, BackupVerified,
    BackupVerifyReport, PrunedBackup, RestorePlanReport, RestoredReport,
};
pub use fleetsync_proto::requests::{
    BackupCreateRequest, BackupPruneRequest, BackupRestoreRequest, BackupVerifyRequest,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::opts::opts_by_name;

/// Exit code of a failed backup command.
pub const EXIT_ERROR: u8 = 1;

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
    let dir = settings.dir.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        verify::verify_with(&settings.dir, &m, &settings, &|| cancel.is_cancelled())
    })
    .await
    .context("verification stopped")?;
    // Recorded beside the manifest for `backup list` (a cancelled verify proves nothing).
    match &outcome {
        Ok(_) => record_verified(&dir, &req.id, None),
        Err(BackupError::Cancelled) => {}
        Err(e) => record_verified(&dir, &req.id, Some(e.to_string())),
    }
    let report = outcome.map_err(cancelled_or)?;
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

fn convert<A: Serialize, B: serde::de::DeserializeOwned>(a: &A) -> anyhow::Result<B> {
    Ok(serde_json::from_value(serde_json::to_value(a)?)?)
}

/// Verifies the backup and checks the target (and the binlog archive's coverage for a
/// point-in-time restore) without changing anything; then, unless `plan_only`, asks `decide`
/// whether existing objects may be replaced, loads (cancellable until the swap: the staging
/// tables are dropped, the target is left unchanged) and replays (not cancellable).
pub async fn restore(
    config: &Config,
    req: &BackupRestoreRequest,
    decide: impl Fn(&RestorePlanReport) -> anyhow::Result<bool>,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupRestoreReport> {
    let settings = Settings::from_config(&config.backup).map_err(cancelled_or)?;
    let rreq = restore::RestoreRequest {
        id: req.id.clone(),
        target: req.to_server.clone(),
        opts: opts_by_name(config, &req.to_server)?,
        renames: parse_renames(&req.rename_db)?,
        settings,
        progress: tracker.clone(),
        cancel: cancel.clone(),
    };
    tracker.phase(format!(
        "verifying backup {} and checking {}",
        req.id, req.to_server
    ));
    let prepared = restore::prepare(&rreq).await.map_err(cancelled_or)?;
    let manifest = &prepared.manifest;
    let databases: Vec<String> = manifest.databases.iter().map(|d| d.name.clone()).collect();
    let to = crate::archive_cmd::ReplayTo {
        to_time: req.to_time.clone(),
        to_gtid: req.to_gtid.clone(),
    };
    let pitr = crate::archive_cmd::pitr_for_backup(
        config,
        &manifest.server,
        manifest.position.as_deref(),
        &manifest.started,
        &databases,
        to,
        &req.to_server,
        &req.rename_db,
    )?;
    let replay = match &pitr {
        Some((spec, _)) => Some(pitr::plan(spec).await.map_err(anyhow::Error::from)?),
        None => None,
    };
    let mut report = BackupRestoreReport {
        id: req.id.clone(),
        target: req.to_server.clone(),
        dry_run: req.plan_only,
        plan: convert(&prepared.plan)?,
        replay_plan: replay.as_ref().map(convert).transpose()?,
        restored: None,
        replayed: None,
    };
    if req.plan_only {
        return Ok(report);
    }
    let drop_existing = decide(&report.plan)?;
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase(format!("restoring backup {} to {}", req.id, req.to_server));
    let done = restore::execute(prepared, drop_existing)
        .await
        .map_err(cancelled_or)?;
    report.restored = Some(RestoredReport {
        tables: done.tables,
        rows: done.rows,
        seconds: done.seconds,
        position: done.position.map(|p| p.to_string()),
    });
    if let (Some((spec, target)), Some(plan)) = (&pitr, &replay) {
        tracker.phase(format!("replaying the binlog onto {}", req.to_server));
        let r = pitr::replay(spec, plan, target)
            .await
            .map_err(anyhow::Error::from)?;
        report.replayed = Some(convert(&r)?);
    }
    Ok(report)
}

/// `--rename-db OLD=NEW` pairs.
pub fn parse_renames(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("--rename-db {s:?}: expected OLD=NEW"))
        })
        .collect()
}

/// The file beside a backup's manifest that records its last verification.
pub const VERIFIED_FILE: &str = "verified.json";

/// Records the outcome of a verification of backup `id` (`error`: why it failed). Best
/// effort: a backup directory that cannot be written is logged, the verify's own outcome
/// stands.
fn record_verified(dir: &std::path::Path, id: &str, error: Option<String>) {
    let record = BackupVerified {
        state: if error.is_some() {
            "failed"
        } else {
            "verified"
        }
        .into(),
        at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        error,
    };
    let root = dir.join(id);
    let tmp = root.join(format!("{VERIFIED_FILE}.tmp"));
    let written = serde_json::to_vec_pretty(&record)
        .map_err(std::io::Error::other)
        .and_then(|json| fleetsync_agent::owner_only::write(&tmp, json))
        .and_then(|()| std::fs::rename(&tmp, root.join(VERIFIED_FILE)));
    if let Err(e) = written {
        tracing::warn!(backup = %id, error = %e, "cannot record the verification");
    }
}

/// The last recorded verification of backup `id` (`never` without a readable record).
fn read_verified(dir: &std::path::Path, id: &str) -> BackupVerified {
    std::fs::read(dir.join(id).join(VERIFIED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Every backup in `[backup] dir`, oldest first (`backup list --json`, `GET /api/v1/backups`).
pub fn list(config: &Config) -> anyhow::Result<Vec<BackupListEntry>> {
    let settings = Settings::from_config(&config.backup)?;
    Ok(manifest::list(&settings.dir)?
        .iter()
        .map(|r| list_entry(&settings.dir, r))
        .collect())
}

fn list_entry(dir: &std::path::Path, r: &manifest::Listed) -> BackupListEntry {
    match r {
        Ok(m) => BackupListEntry {
            id: m.id.clone(),
            status: serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            server: Some(m.server.clone()),
            started: Some(m.started.clone()),
            finished: m.finished.clone(),
            duration_seconds: m.duration_seconds,
            tables: Some(m.tables.len()),
            rows: Some(m.total_rows),
            bytes: Some(m.total_bytes),
            position: m.position.clone(),
            encrypted: Some(m.encrypted),
            compression: Some(m.compression.clone()),
            error: m.error.clone(),
            verified: read_verified(dir, &m.id),
        },
        Err((id, e)) => BackupListEntry {
            id: id.clone(),
            status: "unreadable".into(),
            server: None,
            started: None,
            finished: None,
            duration_seconds: None,
            tables: None,
            rows: None,
            bytes: None,
            position: None,
            encrypted: None,
            compression: None,
            error: Some(e.clone()),
            verified: BackupVerified::default(),
        },
    }
}

/// Applies the retention rules; without a rule nothing is deleted (`rules: false`). Not
/// cancellable once it deletes (each deletion is one directory, removed manifest first).
pub async fn prune(
    config: &Config,
    req: &BackupPruneRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupPruneReport> {
    let settings = Settings::from_config(&config.backup).map_err(cancelled_or)?;
    let retention = config.backup.retention.clone();
    let dry_run = req.plan_only;
    if !dry_run && !req.confirm {
        return Err(anyhow!("backup prune deletes backups: it needs \"confirm\": true").into());
    }
    let rules = retention.keep_last.is_some() || retention.max_age_days.is_some();
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase(if dry_run {
        "planning the prune"
    } else {
        "pruning backups"
    });
    let report = if rules {
        let dir = settings.dir.clone();
        tokio::task::spawn_blocking(move || prune::prune(&dir, &retention, dry_run))
            .await
            .context("prune stopped")?
            .map_err(cancelled_or)?
    } else {
        prune::PruneReport::default()
    };
    for d in &report.deleted {
        tracker.log(&format!(
            "{} {}: {}",
            if dry_run { "would delete" } else { "deleted" },
            d.id,
            d.reason
        ));
    }
    Ok(BackupPruneReport {
        dry_run,
        rules,
        deleted: report
            .deleted
            .into_iter()
            .map(|d| PrunedBackup {
                id: d.id,
                reason: d.reason,
            })
            .collect(),
        skipped: report.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_is_recorded_and_read_back() {
        let dir = std::env::temp_dir().join(format!("fs-verified-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("b1")).expect("temp dir");
        assert_eq!(read_verified(&dir, "b1"), BackupVerified::default());
        assert_eq!(read_verified(&dir, "b1").state, "never");
        record_verified(&dir, "b1", None);
        let ok = read_verified(&dir, "b1");
        assert_eq!((ok.state.as_str(), ok.error), ("verified", None));
        assert!(ok.at.is_some_and(|t| t.ends_with('Z')));
        record_verified(&dir, "b1", Some("data/x.sql.zst: checksum mismatch".into()));
        let bad = read_verified(&dir, "b1");
        assert_eq!(bad.state, "failed");
        assert_eq!(
            bad.error.as_deref(),
            Some("data/x.sql.zst: checksum mismatch")
        );
        // No leftover temporary file; an unreadable record reads as never verified.
        assert!(!dir.join("b1").join("verified.json.tmp").exists());
        std::fs::write(dir.join("b1").join(VERIFIED_FILE), "not json").expect("write");
        assert_eq!(read_verified(&dir, "b1").state, "never");
        // A backup directory that cannot be written: logged, no panic.
        record_verified(&dir, "missing", None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
