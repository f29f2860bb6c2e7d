//! `fleetsync sync once|pause|resume|cancel`.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::preflight::preflight_all;
use crate::run::{run_once, Shared};
use crate::SyncAction;

pub async fn sync(action: SyncAction) -> Result<()> {
    match action {
        SyncAction::Once { config, sync } => once(&config, &sync).await,
        SyncAction::Pause {
            config,
            sync,
            token,
        } => control(&config, &sync, "pause", token.as_deref()).await,
        SyncAction::Resume {
            config,
            sync,
            token,
        } => control(&config, &sync, "resume", token.as_deref()).await,
        SyncAction::Cancel {
            config,
            sync,
            token,
        } => control(&config, &sync, "cancel", token.as_deref()).await,
    }
}

async fn once(path: &std::path::Path, name: &str) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let sync = config
        .syncs
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("no sync named {name:?}"))?
        .clone();
    preflight_all(&config).await?;
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
    run_once(&config, &sync, 0, &shared, &cancel).await?;
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

/// Sends `POST /api/v1/syncs/{sync}/{action}` to the running process's API (`[api] listen`)
/// with the bearer token from `--token` or `FLEETSYNC_TOKEN`.
async fn control(
    path: &std::path::Path,
    sync: &str,
    action: &str,
    token: Option<&str>,
) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let Some(api) = &config.api else {
        return Err(anyhow!("the config has no [api] section: `fleetsync sync {action}` goes through the API of the running process (set [api] listen to a fixed port)"));
    };
    let mut addr = api.addr()?;
    if addr.port() == 0 {
        return Err(anyhow!("api.listen has port 0: set a fixed port so `fleetsync sync {action}` can reach the running process"));
    }
    if api.tls_cert.is_some() {
        return Err(anyhow!("api.tls_cert is set: `fleetsync sync {action}` speaks plain HTTP only for now; call POST /api/v1/syncs/{sync}/{action} over HTTPS (e.g. with curl)"));
    }
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow!("`fleetsync sync {action}` needs an API token: --token or FLEETSYNC_TOKEN (see `fleetsync token create`)")
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow!("cannot reach the running fleetsync's API at {addr} (api.listen): {e}")
    })?;
    let request = format!(
        "POST /api/v1/syncs/{sync}/{action} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).unwrap_or("");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status == "200" {
        println!("sync {sync}: {action} requested");
        return Ok(());
    }
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    Err(anyhow!("fleetsync at {addr} refused ({status}): {detail}"))
}
