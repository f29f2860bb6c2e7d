//! `fleetsync sync once|pause|resume|cancel`.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::preflight::preflight_all;
use crate::run::{run_once, Shared};

/// `fleetsync sync ...` (parsed in `main.rs`, run by [`sync`]).
#[derive(clap::Subcommand)]
pub enum SyncAction {
    /// Run SYNC once: every target until it reaches the source's position at start, then exit.
    Once {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: std::path::PathBuf,
        sync: String,
    },
    /// Pause SYNC in the running `fleetsync run`/`coordinator`, through its API (`[api] listen`).
    Pause {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: std::path::PathBuf,
        sync: String,
    },
    /// Resume a paused or cancelled SYNC (through the API, like `pause`).
    Resume {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: std::path::PathBuf,
        sync: String,
    },
    /// Stop SYNC's pipelines (a scheduled sync runs again at its next occurrence).
    Cancel {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: std::path::PathBuf,
        sync: String,
    },
}

pub async fn sync(action: SyncAction, api: crate::api::client::ApiArgs) -> Result<()> {
    match action {
        SyncAction::Once { config, sync } => once(&config, &sync).await,
        SyncAction::Pause { config, sync } => control(&config, &sync, "pause", &api).await,
        SyncAction::Resume { config, sync } => control(&config, &sync, "resume", &api).await,
        SyncAction::Cancel { config, sync } => control(&config, &sync, "cancel", &api).await,
    }
}

async fn once(path: &std::path::Path, name: &str) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    // A group's name runs every member's sync (`group.member` names one of them).
    let syncs: Vec<_> = config
        .syncs
        .iter()
        .filter(|s| s.name == name || s.group.as_deref() == Some(name))
        .cloned()
        .collect();
    if syncs.is_empty() {
        return Err(anyhow!("no sync named {name:?}"));
    }
    preflight_all(&config).await?;
    crate::group::prepare(&config, crate::group::Mode::Install).await?;
    fleetsync_agent::owner_only::private_dir(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let shared = Shared {
        checkpoints: Some(CheckpointStore::open(&config.state_dir)?),
        registry: Arc::new(Mutex::new(Default::default())),
        controls: Controls::default(),
        evictions: Default::default(),
    };
    // A one-shot run refuses evicted members' pipelines too (it runs no GC rounds).
    fleetsync_coordinator::gc::load(&crate::group::gc_groups(&config)?, &shared.evictions).await;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        crate::run::shutdown_signal().await;
        c2.cancel();
    });
    let mut index = 0;
    for sync in &syncs {
        run_once(&config, sync, index, &shared, &cancel).await?;
        index += sync.targets.len();
    }
    let states: Vec<_> = shared
        .registry
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    let mut failed = Vec::new();
    for s in &states {
        println!(
            "target {}: {} at {} ({} rows applied)",
            s.target,
            s.state,
            s.applied_position.as_deref().unwrap_or("-"),
            s.rows_applied
        );
        if s.state != "done" {
            failed.push(format!(
                "{}: {}",
                s.target,
                s.error.clone().unwrap_or_else(|| s.state.clone())
            ));
        }
    }
    if let Some(store) = &shared.checkpoints {
        store.flush()?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "sync {name} did not finish on every target: {}",
            failed.join("; ")
        ))
    }
}

/// Sends `POST /api/v1/syncs/{sync}/{action}` to the running process's API (`[api] listen`).
async fn control(
    path: &std::path::Path,
    sync: &str,
    action: &str,
    api: &crate::api::client::ApiArgs,
) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let what = format!("fleetsync sync {action}");
    let route = format!("/api/v1/syncs/{sync}/{action}");
    let (status, body) = crate::api::client::post(&config, &what, &route, api).await?;
    if status == 200 {
        println!("sync {sync}: {action} requested");
        return Ok(());
    }
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or(body);
    Err(anyhow!("the API refused ({status}): {detail}"))
}
