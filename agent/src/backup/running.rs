//! The in-progress object of a backup (`<id>/running.json`) and the cleanup of leftovers.
//!
//! A backup writes `running.json` before anything else (its owner's host and pid, the start
//! time and a heartbeat), refreshes the heartbeat every [`HEARTBEAT_SECS`] while it runs and
//! deletes it after the manifest is written. Since the manifest is written last, a backup
//! directory without `manifest.json` is one of:
//! * **running**: its `running.json` is live (heartbeat younger than [`STALE_SECS`], and, when
//!   the owner is on this host, its pid still exists);
//! * **leftovers**: its owner is dead (killed, lost the store mid-upload, crashed) or its
//!   heartbeat is stale, or it has no `running.json` but holds backup objects (`schema/`,
//!   `data/`, an interrupted delete). [`clean_leftovers`] deletes them with
//!   [`Store::delete_prefix`], which aborts their dangling multipart uploads too.
//!
//! Directories with neither a manifest, a `running.json` nor backup objects (e.g.
//! `binlog-archive/`) are not backups and are never touched.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleetsync_store::Store;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::manifest::MANIFEST_FILE;
use super::BackupError;

/// The in-progress object's name, beside where the manifest will be.
pub const RUNNING_FILE: &str = "running.json";
/// How often a running backup refreshes its heartbeat: often enough that [`STALE_SECS`] can
/// be short, rarely enough to cost nothing (one small PUT).
pub const HEARTBEAT_SECS: u64 = 10;
/// A heartbeat older than this marks a backup of another host as dead: six missed beats
/// (a store outage shorter than this does not get a live backup deleted under it).
pub const STALE_SECS: i64 = 60;

/// `running.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub id: String,
    pub server: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC: refreshed every [`HEARTBEAT_SECS`].
    pub heartbeat: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// This machine's host name (for the owner of a running backup).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Running {
    pub fn new(id: &str, server: &str, name: Option<String>) -> Running {
        let now = now_rfc3339();
        Running {
            id: id.to_string(),
            server: server.to_string(),
            host: hostname(),
            pid: std::process::id(),
            started: now.clone(),
            heartbeat: now,
            name,
        }
    }

    /// Why the owner is considered dead, `None` while it is alive.
    pub fn dead(&self, now: DateTime<Utc>) -> Option<String> {
        if !self.host.is_empty() && self.host == hostname() {
            let alive = std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
            if !alive {
                return Some(format!("its owner (pid {} on this host) is gone", self.pid));
            }
        }
        let beat = DateTime::parse_from_rfc3339(&self.heartbeat)
            .map(|d| d.with_timezone(&Utc))
            .ok();
        match beat {
            Some(b) if (now - b).num_seconds() <= STALE_SECS => None,
            Some(b) => Some(format!(
                "no heartbeat for {} s (owner {} pid {})",
                (now - b).num_seconds(),
                self.host,
                self.pid
            )),
            None => Some("unreadable heartbeat".into()),
        }
    }
}

/// Writes `running.json` of `r` into `backup` (the store rooted at the backup).
pub async fn write(backup: &Store, r: &Running) -> Result<(), BackupError> {
    let json = serde_json::to_vec_pretty(r)
        .map_err(|e| BackupError::object(backup, RUNNING_FILE, e.to_string()))?;
    backup.put(RUNNING_FILE, Bytes::from(json)).await?;
    Ok(())
}

/// Reads `running.json` of a backup, `None` when there is none (or it cannot be parsed).
pub async fn read(backup: &Store) -> Result<Option<Running>, BackupError> {
    match backup.get(RUNNING_FILE).await {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Refreshes the heartbeat until `stop` fires. A failed refresh is logged (the upload that
/// fails with it ends the backup).
pub fn spawn_heartbeat(backup: Store, mut r: Running, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)) => {}
            }
            r.heartbeat = now_rfc3339();
            if let Err(e) = write(&backup, &r).await {
                tracing::warn!(backup = %r.id, error = %e, "cannot refresh the running backup's heartbeat");
            }
        }
    });
}

/// What a directory without a manifest is.
#[derive(Debug, Clone)]
pub enum Unfinished {
    /// A live backup.
    Running(Running),
    /// Leftovers to delete, and why.
    Leftovers(String),
    /// Not a backup directory.
    Other,
}

/// Classifies directory `id` of `root`, known to have no manifest.
pub async fn classify(root: &Store, id: &str) -> Result<Unfinished, BackupError> {
    let backup = root.child(id);
    if let Some(r) = read(&backup).await? {
        return Ok(match r.dead(Utc::now()) {
            None => Unfinished::Running(r),
            Some(why) => Unfinished::Leftovers(format!("unfinished backup: {why}")),
        });
    }
    let objects = backup.list("").await?;
    let backupish = objects.iter().any(|e| {
        e.key.starts_with("schema/")
            || e.key.starts_with("data/")
            || e.key == super::manifest::PIN_FILE
            || e.key == "verified.json"
    });
    Ok(if backupish {
        Unfinished::Leftovers("backup objects without a manifest or a running owner".into())
    } else {
        Unfinished::Other
    })
}

/// Deletes the leftovers of dead backups under `root` (skipping `except`, the caller's own
/// backup); returns (id, why) of each deleted. `dry_run` only reports.
pub async fn clean_leftovers(
    root: &Store,
    except: Option<&str>,
    dry_run: bool,
) -> Result<Vec<(String, String)>, BackupError> {
    let mut out = Vec::new();
    for id in root.list_dirs("").await? {
        if Some(id.as_str()) == except {
            continue;
        }
        let backup = root.child(&id);
        if backup.size(MANIFEST_FILE).await?.is_some() {
            continue;
        }
        if let Unfinished::Leftovers(why) = classify(root, &id).await? {
            if !dry_run {
                let n = root.delete_prefix(&id).await?;
                tracing::info!(backup = %id, objects = n, reason = %why, "leftovers of an unfinished backup deleted");
            }
            out.push((id, why));
        }
    }
    Ok(out)
}
