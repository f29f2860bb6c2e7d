//! Scheduled backups inside `fleetsync run` and `fleetsync agent`.
//!
//! With `[backup] schedule` (a cron expression, seconds optional) set, one task waits for each
//! occurrence, then backs up each of its servers in turn (every table of every user
//! database) and applies `[backup.retention]`. A failed backup is logged (and counted in
//! `fleetsync_backup_failures_total`) and the next occurrence runs as usual; the metrics of a
//! success are set by the backup itself (fleetsync_agent::backup::METRIC_*). An occurrence
//! that comes while a backup is still running is skipped. On shutdown the task stops at once;
//! a backup cut short keeps `status: running` in its manifest and is never taken for complete.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use fleetsync_agent::backup::{self, dump, prune, NoProgress, Settings};
use fleetsync_config::{parse_schedule, Config, TableFilter};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::opts::opts_by_name;

/// Starts the scheduled backup task for `servers` if `[backup] schedule` is set.
pub fn spawn_backups(
    config: Arc<Config>,
    servers: Vec<String>,
    cancel: CancellationToken,
) -> Result<Option<JoinHandle<()>>> {
    let Some(expr) = config.backup.schedule.clone() else {
        return Ok(None);
    };
    let cron = parse_schedule(&expr).map_err(|e| anyhow!("backup.schedule: {e}"))?;
    // Refuse at start-up, not at the first occurrence, when [backup] is unusable.
    Settings::from_config(&config.backup)?;
    for s in &servers {
        opts_by_name(&config, s)?;
    }
    tracing::info!(schedule = %expr, servers = ?servers, "scheduled backups enabled");
    Ok(Some(tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now();
            let Ok(next) = cron.find_next_occurrence(&now, false) else {
                tracing::error!("backup schedule has no next occurrence; scheduled backups stop");
                return;
            };
            let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = run_once(&config, &servers) => {}
            }
        }
    })))
}

/// Backs up each server, then prunes. Errors are logged, never returned.
pub(crate) async fn run_once(config: &Config, servers: &[String]) {
    // A failure before the dump starts is counted here (the dump counts its own).
    let failed_early = |server: &str| {
        metrics::counter!(backup::METRIC_BACKUP_FAILURES, "server" => server.to_string())
            .increment(1);
    };
    let checked = match Settings::from_config(&config.backup) {
        Ok(s) => s.check().await.map(|()| s),
        Err(e) => Err(e),
    };
    let settings = match checked {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "scheduled backup: [backup] is unusable");
            servers.iter().for_each(|s| failed_early(s));
            return;
        }
    };
    for server in servers {
        let req = match (|| {
            Ok::<_, anyhow::Error>(dump::CreateRequest {
                server: server.clone(),
                opts: opts_by_name(config, server)?,
                filter: TableFilter::new(&[], &[]).map_err(|(_, e)| anyhow!(e))?,
                settings: settings.clone(),
                progress: Arc::new(NoProgress),
                // The occurrence's future is dropped on shutdown (see spawn_backups).
                cancel: CancellationToken::new(),
                name: None,
                pin: false,
            })
        })() {
            Ok(req) => req,
            Err(e) => {
                failed_early(server);
                tracing::error!(server, error = %crate::exit::one_line(e.as_ref()), "scheduled backup failed");
                continue;
            }
        };
        let result = dump::create(&req).await;
        match result {
            Ok(m) => {
                tracing::info!(server, backup = %m.id, rows = m.total_rows, bytes = m.total_bytes, "scheduled backup complete")
            }
            Err(e) => {
                tracing::error!(server, error = %crate::exit::one_line(&e), "scheduled backup failed")
            }
        }
    }
    let retention = config.backup.retention.clone();
    match prune::prune(&settings.store, &retention, false).await {
        Ok(r) => {
            for d in r.deleted {
                tracing::info!(backup = %d.id, reason = %d.reason, "old backup pruned");
            }
        }
        Err(e) => tracing::error!(error = %e, "pruning backups failed"),
    }
}
