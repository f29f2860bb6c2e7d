//! `health`: the checks of one server ([`run`]) and their safe fixes ([`fix`]); shared by
//! `fleetsync health [--fix]` and the `health` / `health_fix` jobs. Whether to apply the
//! fixes is the caller's `decide` (the CLI asks on a terminal; a job has `confirm`).

use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_agent::health::{self as checks, HealthTarget, TargetOf};
use fleetsync_agent::source;
use fleetsync_config::{Config, TableFilter};
use fleetsync_proto::health::{FixOutcome, HealthReport, Overall};
pub use fleetsync_proto::requests::{HealthFixRequest, HealthRequest};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::opts::{opts_by_name, server_opts};

/// How long reading a sync source's position (for the target's lag) may take.
const SOURCE_POSITION_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code when the command could not do its job (the Nagios convention's UNKNOWN).
pub const EXIT_ERROR: u8 = 3;

/// Runs every check of `req.server`. The checks only read; a cancel drops them between
/// nothing and everything, which leaves nothing behind.
pub async fn run(
    config: &Config,
    req: &HealthRequest,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<HealthReport> {
    tracker.phase(format!("checking server {}", req.server));
    let target = build_target(config, &req.server).await?;
    let report = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(ServiceError::Cancelled),
        r = checks::run_checks(&target, &config.health) => r,
    };
    tracker.log(&format!("overall: {}", report.status.as_str()));
    Ok(report)
}

/// 0 healthy, 1 degraded, 2 critical.
pub fn exit_code(report: &HealthReport) -> u8 {
    match report.status {
        Overall::Healthy => 0,
        Overall::Degraded => 1,
        Overall::Critical => 2,
    }
}

/// The server and its roles in the configured syncs; reads each source's binlog end for the
/// lag of the syncs that target this server (unreadable sources leave the lag unknown).
pub async fn build_target(config: &Config, name: &str) -> Result<HealthTarget> {
    let server = config
        .server(name)
        .ok_or_else(|| anyhow!("no server named {name:?} in [[servers]]"))?;
    let mut source_filters = Vec::new();
    let mut target_filters = Vec::new();
    let mut target_of = Vec::new();
    for sync in &config.syncs {
        if sync.source == name {
            source_filters.push(sync.filter()?);
        }
        if sync.targets.iter().any(|t| t == name) {
            target_filters.push(sync.filter()?);
            target_of.push(TargetOf {
                sync: sync.name.clone(),
                source: sync.source.clone(),
                source_position: source_position(config, &sync.source).await,
            });
        }
    }
    let any = |f: Vec<TableFilter>| (!f.is_empty()).then(|| TableFilter::any_of(f));
    Ok(HealthTarget {
        name: name.to_string(),
        opts: server_opts(server)?,
        source_filter: any(source_filters),
        target_filter: any(target_filters),
        target_of,
        // A bucket has no free space to measure: only a local backup directory is checked.
        backup_dir: match config.backup.location() {
            Ok(fleetsync_config::BackupLocation::Local(p)) => Some(p),
            _ => None,
        },
    })
}

async fn source_position(config: &Config, source: &str) -> Option<fleetsync_proto::Position> {
    let opts = opts_by_name(config, source).ok()?;
    let read = async {
        let mut conn = mysql_async::Conn::new(opts).await.ok()?;
        let pos = source::current_position(&mut conn, source).await.ok();
        let _ = conn.disconnect().await;
        pos
    };
    tokio::time::timeout(SOURCE_POSITION_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// Runs the checks, previews the safe fixes, and unless `plan_only` (or none is safe) asks
/// `decide` and applies them, then checks again: the report's `fixes` say what ran (or, not
/// applied, why). A cancel before the fixes leaves the server unchanged; once they run
/// (online index additions) they run to their end.
pub async fn fix(
    config: &Config,
    req: &HealthFixRequest,
    decide: impl Fn(&[FixOutcome]) -> Result<bool>,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<HealthReport> {
    let check = HealthRequest {
        server: req.server.clone(),
    };
    let report = run(config, &check, tracker, cancel).await?;
    let target = build_target(config, &req.server).await?;
    let preview = checks::apply_fixes(&target, &report, false)
        .await
        .map_err(|e| anyhow!(e))?;
    let safe = preview
        .iter()
        .filter(|f| f.note.as_deref() == Some("dry run"))
        .count();
    if req.plan_only || safe == 0 || !decide(&preview)? {
        return Ok(HealthReport {
            fixes: preview,
            ..report
        });
    }
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase(format!("applying {safe} fix(es) on server {}", req.server));
    let outcomes = checks::apply_fixes(&target, &report, true)
        .await
        .map_err(|e| anyhow!(e))?;
    tracker.phase(format!("checking server {} again", req.server));
    let after = checks::run_checks(&target, &config.health).await;
    Ok(HealthReport {
        fixes: outcomes,
        ..after
    })
}

/// Whether a fix statement failed (the CLI then exits [`EXIT_ERROR`]).
pub fn fix_failed(report: &HealthReport) -> bool {
    report
        .fixes
        .iter()
        .any(|f| f.note.as_deref().is_some_and(|n| n.starts_with("failed")))
}

/// The exit code of `health --fix`: [`EXIT_ERROR`] when a fix failed, else the verdict's.
pub fn fix_exit_code(report: &HealthReport) -> u8 {
    if fix_failed(report) {
        EXIT_ERROR
    } else {
        exit_code(report)
    }
}
