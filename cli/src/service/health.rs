//! `health`: the checks of one server ([`run`]); shared by `fleetsync health` and the
//! `health` job. Fixes (`--fix`) stay a CLI step: they ask on a terminal.

use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_agent::health::{self as checks, HealthTarget, TargetOf};
use fleetsync_agent::source;
use fleetsync_config::{Config, TableFilter};
use fleetsync_proto::health::{HealthReport, Overall};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::opts::{opts_by_name, server_opts};

/// How long reading a sync source's position (for the target's lag) may take.
const SOURCE_POSITION_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code when the command could not do its job (the Nagios convention's UNKNOWN).
pub const EXIT_ERROR: u8 = 3;

/// Check one server.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    /// The server to check (`[[servers]] name`).
    pub server: String,
}

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
        backup_dir: config.backup.dir.clone(),
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
