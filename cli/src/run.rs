//! `fleetsync run`: every configured sync in one process on the embedded bus.
//!
//! Start-up refuses (non-zero exit, one line) on any preflight failure before anything is
//! written. Then one [`Pipeline`] per (sync, target) runs until SIGINT/SIGTERM (continuous
//! syncs), or at each occurrence of the sync's `schedule` until the targets reach the source's
//! position of that moment (scheduled syncs). Shutdown cancels them, waits up to [`GRACE`] for
//! in-flight batches to commit, then aborts.

use fleetsync_coordinator::gc::Evictions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::source;
use fleetsync_config::{parse_schedule, Config, SyncConfig};
use fleetsync_coordinator::apply::ApplierOptions;
use fleetsync_proto::Position;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::http;
use crate::opts::opts_by_name;
use crate::pipeline::{Pipeline, Registry};
use crate::preflight::{preflight_all, source_spec};

/// How long shutdown waits for pipelines to finish their current batch.
const GRACE: Duration = Duration::from_secs(10);

/// What a pipeline shares with the process: its checkpoint store, status registry, controls.
#[derive(Clone)]
pub struct Shared {
    pub checkpoints: Option<CheckpointStore>,
    pub registry: Registry,
    pub controls: Controls,
    /// Members evicted from their group's tombstone GC: their pipelines are refused.
    pub evictions: Evictions,
}

/// The pipeline of (`sync`, `target`); `index` keeps replica server ids distinct.
pub fn build_pipeline(
    config: &Config,
    sync: &SyncConfig,
    target: &str,
    index: usize,
    shared: &Shared,
    until: Option<Position>,
) -> Result<Pipeline> {
    let mut spec = source_spec(config, sync, target, index)?;
    spec.until.clone_from(&until);
    Ok(Pipeline {
        spec,
        target_opts: opts_by_name(config, target)?,
        applier: ApplierOptions {
            sync: sync.name.clone(),
            source: sync.source.clone(),
            target: target.to_string(),
            map: sync.table_map()?,
            create_missing: sync.create_missing,
            apply_ddl: sync.apply_ddl,
            mark_writes: config.loop_prevention(sync, target),
            loop_prevention: sync.loop_prevention,
            conflicts: sync.conflict_policy()?,
        },
        batch_rows: sync.batch_rows,
        batch_wait: Duration::from_millis(sync.batch_wait_ms),
        queue: sync.queue_transactions,
        queue_rows: sync.queue_rows,
        checkpoints: shared.checkpoints.clone(),
        registry: shared.registry.clone(),
        group: sync.group.clone(),
        evictions: shared.evictions.clone(),
        kafka: None,
        control: shared.controls.watch(sync.control_name()),
        until,
        finished: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    })
}

/// The source's current binlog end: what a one-shot run must reach.
pub async fn source_end(config: &Config, sync: &SyncConfig) -> Result<Position> {
    let spec = source_spec(config, sync, "", 0)?;
    let mut conn = source::connect(&spec).await?;
    let pos = source::current_position(&mut conn, &spec.name).await?;
    let _ = conn.disconnect().await;
    Ok(pos)
}

pub async fn run(path: &Path, metrics_listen: Option<&str>) -> Result<()> {
    let config = crate::opts::load_serving(path, metrics_listen).await?;
    if let Some(api) = &config.api {
        crate::api::check(&config, api)?;
    }
    preflight_all(&config).await?;
    let installed = crate::group::prepare(&config, crate::group::Mode::Install).await?;
    fleetsync_agent::owner_only::private_dir(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let shared = Shared {
        checkpoints: Some(CheckpointStore::open(&config.state_dir)?),
        registry: Arc::new(Mutex::new(Default::default())),
        controls: Controls::default(),
        evictions: Evictions::default(),
    };
    let cancel = CancellationToken::new();
    crate::group::start_gc(&config, &shared.evictions, &cancel).await?;
    let server = http::serve(
        config.metrics_addr()?,
        shared.registry.clone(),
        cancel.clone(),
    )
    .await?;
    if let Some(api) = &config.api {
        let (registry, controls) = (shared.registry.clone(), shared.controls.clone());
        let snapshot = Arc::new(config.clone());
        crate::api::serve(snapshot, api, registry, controls, cancel.clone()).await?;
    }
    let all: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
    crate::health_cmd::spawn_periodic(&config, all, cancel.child_token());
    crate::group::spawn_tombstone_gauge(&config, installed, cancel.child_token());
    let mut tasks = JoinSet::new();
    let _archivers = crate::archive_cmd::spawn_archivers(&config, None, &cancel)?;
    let mut index = 0usize;
    let config = Arc::new(config);
    for sync in &config.syncs {
        if let Some(expr) = &sync.schedule {
            let cron =
                parse_schedule(expr).map_err(|e| anyhow!("syncs.{}.schedule: {e}", sync.name))?;
            tasks.spawn(scheduled(
                config.clone(),
                sync.clone(),
                cron,
                index,
                shared.clone(),
                cancel.child_token(),
            ));
            index += sync.targets.len();
            continue;
        }
        for target in &sync.targets {
            let pipeline = build_pipeline(&config, sync, target, index, &shared, None)?;
            index += 1;
            tasks.spawn(pipeline.run(cancel.child_token()));
        }
    }
    let servers = config.servers.iter().map(|s| s.name.clone()).collect();
    let _backups = crate::tasks::spawn_backups(config.clone(), servers, cancel.child_token())?;
    tracing::info!(syncs = config.syncs.len(), metrics = %server, "fleetsync running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    let drained =
        tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("pipelines did not stop within {GRACE:?}; aborting them");
        tasks.abort_all();
    }
    if let Some(store) = &shared.checkpoints {
        store.flush()?;
    }
    Ok(())
}

/// Runs `sync` at each occurrence of `cron` until the targets reach the source's position of
/// that moment. A failing run is logged and retried at the next occurrence.
async fn scheduled(
    config: Arc<Config>,
    sync: SyncConfig,
    cron: croner::Cron,
    index: usize,
    shared: Shared,
    cancel: CancellationToken,
) {
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            tracing::error!(sync = %sync.name, "schedule has no next occurrence; stopping it");
            return;
        };
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        tracing::info!(sync = %sync.name, next = %next, "scheduled sync waiting");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // A cancel from the sync manager applies to one run: the next occurrence runs again.
        shared
            .controls
            .set(&sync.name, crate::control::Control::Running);
        if let Err(e) = run_once(&config, &sync, index, &shared, &cancel).await {
            tracing::warn!(sync = %sync.name, error = %crate::exit::one_line(e.as_ref()), "scheduled run failed");
        }
    }
}

/// One run of `sync`: every target until it reaches the source's current position.
pub async fn run_once(
    config: &Config,
    sync: &SyncConfig,
    index: usize,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Result<()> {
    let until = source_end(config, sync).await?;
    tracing::info!(sync = %sync.name, until = %until, "sync run started");
    let mut runs = JoinSet::new();
    for (i, target) in sync.targets.iter().enumerate() {
        let pipeline =
            build_pipeline(config, sync, target, index + i, shared, Some(until.clone()))?;
        runs.spawn(pipeline.run(cancel.child_token()));
    }
    while runs.join_next().await.is_some() {}
    tracing::info!(sync = %sync.name, "sync run finished");
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
