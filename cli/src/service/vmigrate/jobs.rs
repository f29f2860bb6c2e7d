//! `migrate up` / `migrate undo` as control-plane jobs (`POST /api/v1/jobs/migrate-up|undo`).
//!
//! A token holder must not run SQL from an arbitrary path on the coordinator's host: the
//! request's `dir` is relative to `[migrations] dir` (the root), may not be absolute nor
//! hold `..`, and must still be inside the root once symlinks are resolved. Without the key
//! the jobs are refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use fleetsync_config::Config;
use fleetsync_coordinator::migrate::versioned::HistoryMode;
use fleetsync_proto::jobs::JobKind;
pub use fleetsync_proto::requests::{MigrateUndoRequest, MigrateUpRequest};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{
    ChangeReport, FleetReport, QueueRequest, UndoRequest, UpRequest, DEFAULT_SYNC_TIMEOUT,
};
use crate::diff_cmd::EXIT_ERROR;
use crate::service::{JobRequest, ServiceResult, Tracker};

/// Why a job's folder is refused; `field` is the request field (or config key) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DirRefused {
    #[error("versioned migrations over the API need `[migrations] dir` in the coordinator's config (the root of the folders a job may run)")]
    NoRoot,
    #[error(
        "dir {0:?}: must be a relative path inside `[migrations] dir` (no `..`, not absolute)"
    )]
    Outside(String),
    #[error("dir {0:?}: no such folder under `[migrations] dir`")]
    Missing(String),
}

/// The folder `rel` names under the root `[migrations] dir`, refused when it could leave the
/// root (absolute, `..`, a symlink pointing out) or is not a folder.
pub fn resolve_dir(config: &Config, rel: &str) -> Result<PathBuf, DirRefused> {
    let root = config.migrations.dir.as_ref().ok_or(DirRefused::NoRoot)?;
    let path = Path::new(rel);
    let plain = !rel.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(DirRefused::Outside(rel.into()));
    }
    let root = root
        .canonicalize()
        .map_err(|_| DirRefused::Missing(rel.into()))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|_| DirRefused::Missing(rel.into()))?;
    if !full.starts_with(&root) {
        return Err(DirRefused::Outside(rel.into()));
    }
    if !full.is_dir() {
        return Err(DirRefused::Missing(rel.into()));
    }
    Ok(full)
}

/// The history mode a request names (`None`: fleetsync).
pub fn history(text: Option<&str>) -> Result<HistoryMode, String> {
    text.map_or(Ok(HistoryMode::Fleetsync), str::parse)
}

fn queue_request(
    config: &Config,
    dir: &str,
    servers: &Option<String>,
    history_text: &Option<String>,
    database: &Option<String>,
) -> anyhow::Result<QueueRequest> {
    Ok(QueueRequest {
        dir: resolve_dir(config, dir)?,
        servers: servers.clone(),
        history: history(history_text.as_deref()).map_err(anyhow::Error::msg)?,
        database: database.clone(),
    })
}

/// Runs the pending files over the fleet (progress per server and file); only with
/// `confirm` (the plan is the CLI's `migrate up` without `--yes`). A cancel stops it between
/// files, servers and waves (never mid-file): the job ends `cancelled` with the report of
/// what ran.
impl JobRequest for MigrateUpRequest {
    const KIND: JobKind = JobKind::MigrateUp;
    const EXIT_ERROR: u8 = EXIT_ERROR;
    type Report = FleetReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            let queue = queue_request(
                config,
                &self.dir,
                &self.servers,
                &self.history,
                &self.database,
            )?;
            let req = UpRequest {
                queue,
                to: self.to.clone(),
                canary: usize::try_from(self.canary).unwrap_or(usize::MAX),
                wave: usize::try_from(self.wave).unwrap_or(usize::MAX),
                halt_on_error: self.halt_on_error,
                yes: self.confirm,
                sync_timeout: DEFAULT_SYNC_TIMEOUT,
            };
            let report = super::up(config, &req, tracker, cancel).await?;
            for s in &report.servers {
                tracker.log(&format!(
                    "{}: {:?}, at {}",
                    s.server,
                    s.outcome,
                    s.at_version.as_deref().unwrap_or("-")
                ));
            }
            Ok(report)
        })
    }
    fn exit_code(report: &Self::Report) -> u8 {
        if report.failed() {
            EXIT_ERROR
        } else {
            0
        }
    }
    fn cancelled(report: &Self::Report) -> bool {
        report.cancelled
    }
}

/// Runs the undo files of the newest applied file (or down to `to`) on each selected server
/// (sync-aware: once, at an origin); only with `confirm`. A cancel stops it between files and
/// servers: the job ends `cancelled` with the report of what was undone.
impl JobRequest for MigrateUndoRequest {
    const KIND: JobKind = JobKind::MigrateUndo;
    const EXIT_ERROR: u8 = EXIT_ERROR;
    type Report = ChangeReport;
    fn run<'a>(
        &'a self,
        config: &'a Config,
        tracker: &'a Arc<Tracker>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ServiceResult<Self::Report>> {
        Box::pin(async move {
            if !self.confirm {
                return Err(anyhow::anyhow!("migrate undo needs confirm").into());
            }
            let queue = queue_request(
                config,
                &self.dir,
                &self.servers,
                &self.history,
                &self.database,
            )?;
            tracker.phase("undo");
            let req = UndoRequest {
                queue,
                to: self.to.clone(),
                sync_timeout: DEFAULT_SYNC_TIMEOUT,
            };
            let report = super::undo(config, &req, tracker, cancel).await?;
            for s in &report.servers {
                tracker.log(&format!(
                    "{}: undone {}, at {}{}",
                    s.server,
                    if s.files.is_empty() {
                        "nothing".to_string()
                    } else {
                        s.files.join(", ")
                    },
                    s.at_version.as_deref().unwrap_or("-"),
                    s.error
                        .as_deref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                ));
            }
            Ok(report)
        })
    }
    fn exit_code(report: &Self::Report) -> u8 {
        if report.failed() {
            EXIT_ERROR
        } else {
            0
        }
    }
    fn cancelled(report: &Self::Report) -> bool {
        report.cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: Option<&Path>) -> Config {
        let mut c = Config::parse("").expect("empty config");
        c.migrations.dir = root.map(Path::to_path_buf);
        c
    }

    #[test]
    fn dir_stays_inside_the_root() {
        let tmp = std::env::temp_dir().join(format!("fleetsync-vmig-jobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("app")).expect("mkdir");
        std::fs::create_dir_all(tmp.join("outside")).expect("mkdir");
        let c = config(Some(&root));
        assert!(resolve_dir(&c, "app").is_ok());
        assert!(matches!(
            resolve_dir(&c, "../outside"),
            Err(DirRefused::Outside(_))
        ));
        assert!(matches!(
            resolve_dir(&c, "app/../app"),
            Err(DirRefused::Outside(_))
        ));
        assert!(matches!(
            resolve_dir(&c, &tmp.join("outside").to_string_lossy()),
            Err(DirRefused::Outside(_))
        ));
        assert!(matches!(resolve_dir(&c, ""), Err(DirRefused::Outside(_))));
        assert!(matches!(
            resolve_dir(&c, "nope"),
            Err(DirRefused::Missing(_))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.join("outside"), root.join("link")).expect("symlink");
            assert!(matches!(
                resolve_dir(&c, "link"),
                Err(DirRefused::Outside(_))
            ));
        }
        assert!(matches!(
            resolve_dir(&config(None), "app"),
            Err(DirRefused::NoRoot)
        ));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
