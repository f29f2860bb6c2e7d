//! `fleetsync sync once|pause|resume|cancel`.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::preflight::preflight_all;
use crate::run::{run_once, Shared};
use crate::SyncAction;

pub async fn sync(action: SyncAction) -> Result<()> {
    match action {
        SyncAction::Once { config, sync } => once(&config, &sync).await,
        SyncAction::Pause { config, sync } => control(&config, &sync, "pause").await,
        SyncAction::Resume { config, sync } => control(&config, &sync, "resume").await,
        SyncAction::Cancel { config, sync } => control(&config, &sync, "cancel").await,
    }
}

async fn once(path: &std::path::Path, name: &str) -> Result<()> {
    let config = Config::load(path)?;
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
    };
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

/// Sends `POST /api/syncs/{sync}/{action}` to the running process at `[metrics] listen`.
async fn control(path: &std::path::Path, sync: &str, action: &str) -> Result<()> {
    let config = Config::load(path)?;
    let addr = config.metrics_addr()?;
    if addr.port() == 0 {
        return Err(anyhow!("metrics.listen has port 0: set a fixed port so `fleetsync sync {action}` can reach the running process"));
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow!("cannot reach the running fleetsync at {addr} (metrics.listen): {e}")
    })?;
    let request = format!("POST /api/syncs/{sync}/{action} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status == "200" {
        println!("sync {sync}: {action} requested");
        Ok(())
    } else {
        Err(anyhow!("fleetsync at {addr} refused: {body}"))
    }
}
