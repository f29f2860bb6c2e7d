//! `backup create`, `verify`, `restore` (incl. point-in-time), `list`, `prune`, `pin` and
//! `unpin`; shared by `fleetsync backup ...` and the `backup_*` jobs (and
//! `GET /api/v1/backups`, `POST /api/v1/backups/{id}/pin|unpin`). `[backup] dir` is a local
//! directory or `s3://bucket/prefix`: every operation checks the location first
//! ([`Settings::check`]: one line for a missing bucket or refused credentials, before any
//! work). A cancelled create stops between key ranges and deletes its objects (never listed,
//! not even as failed); a cancelled verify stops between files (it only reads). Wherever an
//! id is taken, a backup's name is accepted too.

use std::sync::Arc;

use anyhow::anyhow;
use fleetsync_agent::backup::{dump, manifest, prune, restore, verify, BackupError, Settings};
use fleetsync_config::{Config, TableFilter};
use fleetsync_coordinator::pitr;
use fleetsync_proto::jobs::{
    BackupCreateReport, BackupListEntry, BackupPinReport, BackupPruneReport, BackupRestoreReport,
    BackupVerified, BackupVerifyReport, PrunedBackup, RestorePlanReport, RestoredReport,
};
pub use fleetsync_proto::requests::{
    BackupCreateRequest, BackupPruneRequest, BackupRestoreRequest, BackupVerifyRequest,
};
use fleetsync_store::Store;
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
    let settings = checked_settings(config).await?;
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
        name: req.name.clone(),
        pin: req.pin,
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
        dir: dump_req.settings.store.describe_key(&m.id),
        tables: m.tables.len(),
        views: m.views.len(),
        rows: m.total_rows,
        bytes: m.total_bytes,
        files: m.files().count(),
        duration_seconds: m.duration_seconds,
        position: m.position.clone(),
        encrypted: m.encrypted,
        compression: m.compression.clone(),
        name: m.name.clone(),
        pinned: req.pin,
    })
}

/// `[backup]` resolved and its location checked (one line when the bucket is missing or the
/// credentials are refused).
pub async fn checked_settings(config: &Config) -> ServiceResult<Settings> {
    let settings = Settings::from_config(&config.backup).map_err(cancelled_or)?;
    settings.check().await.map_err(cancelled_or)?;
    Ok(settings)
}

pub async fn verify(
    config: &Config,
    req: &BackupVerifyRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupVerifyReport> {
    let settings = checked_settings(config).await?;
    let id = manifest::resolve(&settings.store, &req.id)
        .await
        .map_err(cancelled_or)?;
    let m = manifest::read(&settings.store, &id)
        .await
        .map_err(cancelled_or)?;
    tracker.phase(format!("verifying backup {id}"));
    tracker.planned(None, Some(m.total_rows.max(1)));
    let outcome = verify::verify_with(&m, &settings, &|| cancel.is_cancelled()).await;
    // Recorded beside the manifest for `backup list` (a cancelled verify proves nothing).
    let backup = settings.backup(&id).map_err(cancelled_or)?;
    match &outcome {
        Ok(_) => record_verified(&backup, &id, None).await,
        Err(BackupError::Cancelled) => {}
        Err(e) => record_verified(&backup, &id, Some(e.to_string())).await,
    }
    let report = outcome.map_err(cancelled_or)?;
    tracker.rows(report.rows);
    tracker.bytes(report.bytes);
    Ok(BackupVerifyReport {
        id,
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
    let settings = checked_settings(config).await?;
    let id = manifest::resolve(&settings.store, &req.id)
        .await
        .map_err(cancelled_or)?;
    let rreq = restore::RestoreRequest {
        id,
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
        Some((spec, _)) => Some(pitr::plan(spec).map_err(anyhow::Error::from)?),
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

/// Records the outcome of a verification of backup `id` (`error`: why it failed) as
/// `verified.json` of `backup` (the store rooted at it). Best effort: a record that cannot be
/// written is logged, the verify's own outcome stands.
async fn record_verified(backup: &Store, id: &str, error: Option<String>) {
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
    let written = match serde_json::to_vec_pretty(&record) {
        Ok(json) => backup
            .put(VERIFIED_FILE, json.into())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        tracing::warn!(backup = %id, error = %e, "cannot record the verification");
    }
}

/// The last recorded verification of a backup (`never` without a readable record).
async fn read_verified(backup: &Store) -> BackupVerified {
    backup
        .get(VERIFIED_FILE)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Every backup in `[backup] dir`, oldest first (`backup list --json`, `GET /api/v1/backups`):
/// complete ones and those running now; leftovers of dead runs are not listed.
pub async fn list(config: &Config) -> anyhow::Result<Vec<BackupListEntry>> {
    let settings = Settings::from_config(&config.backup)?;
    settings.check().await?;
    let mut out = Vec::new();
    for l in manifest::list(&settings.store).await? {
        let verified = match &l {
            manifest::Listed::Done { manifest, .. } => {
                read_verified(&settings.store.child(&manifest.id)).await
            }
            _ => BackupVerified::default(),
        };
        out.push(list_entry(&l, verified));
    }
    Ok(out)
}

fn empty_entry(id: &str, status: &str) -> BackupListEntry {
    BackupListEntry {
        id: id.to_string(),
        name: None,
        pinned: false,
        status: status.into(),
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
        error: None,
        verified: BackupVerified::default(),
    }
}

fn list_entry(l: &manifest::Listed, verified: BackupVerified) -> BackupListEntry {
    match l {
        manifest::Listed::Done {
            manifest: m,
            pinned,
        } => BackupListEntry {
            id: m.id.clone(),
            name: m.name.clone(),
            pinned: *pinned,
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
            verified,
        },
        manifest::Listed::Running(r) => BackupListEntry {
            name: r.name.clone(),
            server: Some(r.server.clone()),
            started: Some(r.started.clone()),
            ..empty_entry(&r.id, "running")
        },
        manifest::Listed::Unreadable(id, e) => BackupListEntry {
            error: Some(e.clone()),
            ..empty_entry(id, "unreadable")
        },
    }
}

/// Pins (`pin`) or unpins the backup `id_or_name`: a pinned backup is never deleted by
/// retention. Only a complete backup can be pinned.
pub async fn set_pinned(
    config: &Config,
    id_or_name: &str,
    pin: bool,
) -> ServiceResult<BackupPinReport> {
    let settings = checked_settings(config).await?;
    let id = manifest::resolve(&settings.store, id_or_name)
        .await
        .map_err(cancelled_or)?;
    let m = manifest::read(&settings.store, &id)
        .await
        .map_err(cancelled_or)?;
    let backup = settings.backup(&id).map_err(cancelled_or)?;
    manifest::set_pinned(&backup, pin)
        .await
        .map_err(cancelled_or)?;
    tracing::info!(backup = %id, pinned = pin, "backup {}", if pin { "pinned" } else { "unpinned" });
    Ok(BackupPinReport {
        id,
        name: m.name,
        pinned: pin,
    })
}

/// Applies the retention rules; without a rule nothing is deleted (`rules: false`). Not
/// cancellable once it deletes (each deletion is one directory, removed manifest first).
pub async fn prune(
    config: &Config,
    req: &BackupPruneRequest,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<BackupPruneReport> {
    let settings = checked_settings(config).await?;
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
    // Without rules only the leftovers of dead runs are deleted.
    let report = prune::prune(&settings.store, &retention, dry_run)
        .await
        .map_err(cancelled_or)?;
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

/// A byte stream (a download).
pub type ByteStream =
    futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// Backup `id_or_name` as one tar stream: `<id>/manifest.json` then every object the
/// manifest lists, under `<id>/` (unpack it into a local `[backup] dir` to restore from it).
/// Each object is streamed from the store as it is sent: memory is one chunk, no local copy.
/// Returns the backup's id and the stream.
pub async fn download(config: &Config, id_or_name: &str) -> ServiceResult<(String, ByteStream)> {
    use futures_util::{StreamExt, TryStreamExt};
    let settings = checked_settings(config).await?;
    let id = manifest::resolve(&settings.store, id_or_name)
        .await
        .map_err(cancelled_or)?;
    let m = manifest::read(&settings.store, &id)
        .await
        .map_err(cancelled_or)?;
    let backup = settings.backup(&id).map_err(cancelled_or)?;
    let names: Vec<String> = std::iter::once(manifest::MANIFEST_FILE.to_string())
        .chain(m.files().map(|f| f.name.clone()))
        .collect();
    let prefix = id.clone();
    let io = |e: fleetsync_store::StoreError| std::io::Error::other(e.to_string());
    let entries = futures_util::stream::iter(names)
        .then(move |name| {
            let (backup, prefix) = (backup.clone(), prefix.clone());
            async move {
                let size = backup.size(&name).await.map_err(io)?.ok_or_else(|| {
                    std::io::Error::other(format!("{}: missing", backup.describe_key(&name)))
                })?;
                let head = tar_header(&format!("{prefix}/{name}"), size)?;
                let body = backup.get_stream(&name).await.map_err(io)?.map_err(io);
                let pad = ((512 - size % 512) % 512) as usize;
                let tail = futures_util::stream::once(async move {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; pad]))
                });
                let head = futures_util::stream::once(async move {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(head))
                });
                Ok::<_, std::io::Error>(head.chain(body).chain(tail))
            }
        })
        .try_flatten();
    let end = futures_util::stream::once(async { Ok(bytes::Bytes::from(vec![0u8; 1024])) });
    Ok((id, entries.chain(end).boxed()))
}

/// The tar header(s) of a regular file `path` of `size` bytes (a GNU long-name entry first
/// when the path does not fit the header's 100 bytes).
fn tar_header(path: &str, size: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1536);
    let mtime = chrono::Utc::now().timestamp().max(0) as u64;
    if path.len() >= 100 {
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongName);
        long.as_gnu_mut()
            .ok_or_else(|| std::io::Error::other("tar header"))?
            .name[..13]
            .copy_from_slice(b"././@LongLink");
        long.set_size(path.len() as u64 + 1);
        long.set_mode(0o644);
        long.set_mtime(mtime);
        long.set_cksum();
        out.extend_from_slice(long.as_bytes());
        out.extend_from_slice(path.as_bytes());
        out.push(0);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    let short: String = path.chars().take(99).collect();
    h.set_path(&short)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_verification_is_recorded_and_read_back() {
        let dir = std::env::temp_dir().join(format!("fs-verified-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("b1")).expect("temp dir");
        let b1 = Store::local(dir.join("b1"));
        assert_eq!(read_verified(&b1).await, BackupVerified::default());
        assert_eq!(read_verified(&b1).await.state, "never");
        record_verified(&b1, "b1", None).await;
        let ok = read_verified(&b1).await;
        assert_eq!((ok.state.as_str(), ok.error), ("verified", None));
        assert!(ok.at.is_some_and(|t| t.ends_with('Z')));
        record_verified(&b1, "b1", Some("data/x.sql.zst: checksum mismatch".into())).await;
        // A tar header round-trips through the tar crate, long names included.
        for path in [
            "b1/manifest.json".to_string(),
            format!("b1/data/{}.sql.zst", "x".repeat(150)),
        ] {
            let mut t = tar_header(&path, 3).expect("header");
            t.extend_from_slice(b"abc");
            t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
            let mut a = tar::Archive::new(t.as_slice());
            let mut entries = a.entries().expect("entries");
            let e = entries.next().expect("one entry").expect("entry");
            assert_eq!(e.path().expect("path").to_string_lossy(), path);
            assert_eq!(e.size(), 3);
        }
        let bad = read_verified(&b1).await;
        assert_eq!(bad.state, "failed");
        assert_eq!(
            bad.error.as_deref(),
            Some("data/x.sql.zst: checksum mismatch")
        );
        // No leftover temporary file; an unreadable record reads as never verified.
        assert!(!dir.join("b1").join("verified.json.tmp").exists());
        std::fs::write(dir.join("b1").join(VERIFIED_FILE), "not json").expect("write");
        assert_eq!(read_verified(&b1).await.state, "never");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
