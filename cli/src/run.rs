//! `fleetsync run`: every configured sync in one process on the embedded bus.
//!
//! Start-up refuses (non-zero exit, one line) on any preflight failure before anything is
//! written. Then one [`Pipeline`] per (sync, target) runs until SIGINT/SIGTERM; shutdown
//! cancels them, waits up to [`GRACE`] for in-flight batches to commit, then aborts.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_config::Config;
use fleetsync_coordinator::apply::ApplierOptions;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::http;
use crate::opts::opts_by_name;
use crate::pipeline::{Pipeline, Registry};
use crate::preflight::{preflight_all, source_spec};

/// How long shutdown waits for pipelines to finish their current batch.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    preflight_all(&config).await?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let checkpoints = CheckpointStore::open(&config.state_dir)?;
    let registry: Registry = Arc::new(Mutex::new(Default::default()));
    let cancel = CancellationToken::new();
    let metrics_addr = config.metrics_addr()?;
    let server = http::serve(metrics_addr, registry.clone(), cancel.clone()).await?;
    let mut tasks = JoinSet::new();
    let mut index = 0usize;
    for sync in &config.syncs {
        for target in &sync.targets {
            let pipeline = Pipeline {
                spec: source_spec(&config, sync, target, index)?,
                target_opts: opts_by_name(&config, target)?,
                applier: ApplierOptions {
                    sync: sync.name.clone(),
                    source: sync.source.clone(),
                    target: target.clone(),
                    map: sync.table_map()?,
                    create_missing: sync.create_missing,
                    apply_ddl: sync.apply_ddl,
                    mark_writes: config.loop_prevention(sync, target),
                    conflicts: sync.conflict_policy()?,
                },
                batch_rows: sync.batch_rows,
                batch_wait: Duration::from_millis(sync.batch_wait_ms),
                queue: sync.queue_transactions,
                queue_rows: sync.queue_rows,
                checkpoints: Some(checkpoints.clone()),
                kafka: None,
                registry: registry.clone(),
            };
            index += 1;
            tasks.spawn(pipeline.run(cancel.child_token()));
        }
    }
    tracing::info!(syncs = config.syncs.len(), pipelines = index, metrics = %server, "fleetsync running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    let drained =
        tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("pipelines did not stop within {GRACE:?}; aborting them");
        tasks.abort_all();
    }
    checkpoints.flush()?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
