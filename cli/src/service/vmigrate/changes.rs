//! `migrate undo`, `repair` and `baseline` over the selected servers (see the parent module).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::runfile;
use fleetsync_coordinator::migrate::versioned::{self, FileState, HistoryMode};
use fleetsync_coordinator::migrate::{self as cmigrate};
use serde::Serialize;

use super::{applied_by, locked_state, read_state, QueueRequest};
use crate::diff_cmd::connect;

/// What `undo`, `repair` or `baseline` did on one server.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ServerChange {
    pub server: String,
    /// The files undone / repaired / baselined (TrinityCore), in the order done.
    pub files: Vec<String>,
    pub at_version: Option<String>,
    pub error: Option<String>,
}

/// The report of `undo`, `repair` and `baseline`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ChangeReport {
    pub action: String,
    pub servers: Vec<ServerChange>,
}

impl ChangeReport {
    pub fn failed(&self) -> bool {
        self.servers.iter().any(|s| s.error.is_some())
    }
}

fn has_statements(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| !cmigrate::sqlfile::split(&t).is_empty())
        .unwrap_or(false)
}

/// `migrate undo [--to VERSION]`: runs the U files of the newest applied file (or of every
/// applied file above VERSION), newest first, on each server; refused everywhere when one
/// is missing.
pub async fn undo(config: &Config, req: &QueueRequest, to: Option<&str>) -> Result<ChangeReport> {
    let queue = req.queue()?;
    let store = req.store()?;
    let to = to.map(|t| req.version(t)).transpose()?;
    let mut plans = Vec::new();
    for server in req.servers(config)? {
        let st = read_state(config, &server, &queue, &store).await?;
        let idx = versioned::plan_undo(&queue, &st, to.as_ref(), has_statements)
            .map_err(|e| anyhow!("server {server}: {e}; nothing undone on any server"))?;
        plans.push((server, idx));
    }
    let database = req.database();
    let mut servers = Vec::new();
    for (server, idx) in plans {
        let mut change = ServerChange {
            server: server.clone(),
            files: Vec::new(),
            at_version: None,
            error: None,
        };
        let mut conn = connect(config, &server).await?;
        if let Err(e) = locked_state(&mut conn, &store, &queue).await {
            change.error = Some(e);
            servers.push(change);
            continue;
        }
        for i in idx {
            let f = &queue.files[i];
            let Some(undo) = &f.undo else { continue };
            let text = std::fs::read_to_string(undo)
                .with_context(|| format!("reading {}", undo.display()))?;
            match runfile::run_file(&mut conn, database.as_deref(), &text).await {
                Ok(_) => {
                    store.undone(&mut conn, f).await?;
                    change.files.push(f.file_name.clone());
                }
                Err(e) => {
                    change.error = Some(format!(
                        "undo of {} failed: {e}; its history row stays applied",
                        f.file_name
                    ));
                    break;
                }
            }
        }
        let _ = conn.disconnect().await;
        change.at_version = read_state(config, &server, &queue, &store)
            .await?
            .at_version(&queue)
            .map(|v| v.to_string());
        servers.push(change);
    }
    Ok(ChangeReport {
        action: "undo".into(),
        servers,
    })
}

/// `migrate repair`: every applied file whose checksum changed takes its current checksum
/// (after a reviewed edit); nothing runs.
pub async fn repair(config: &Config, req: &QueueRequest) -> Result<ChangeReport> {
    let queue = req.queue()?;
    let store = req.store()?;
    let mut servers = Vec::new();
    for server in req.servers(config)? {
        let st = read_state(config, &server, &queue, &store).await?;
        let mut conn = connect(config, &server).await?;
        let mut files = Vec::new();
        for (f, s) in queue.files.iter().zip(&st.files) {
            if matches!(s, FileState::Edited { .. }) {
                store.repair(&mut conn, f).await?;
                files.push(f.file_name.clone());
            }
        }
        let _ = conn.disconnect().await;
        servers.push(ServerChange {
            server,
            files,
            at_version: st.at_version(&queue).map(|v| v.to_string()),
            error: None,
        });
    }
    Ok(ChangeReport {
        action: "repair".into(),
        servers,
    })
}

/// `migrate baseline VERSION`: marks everything up to VERSION applied without running it
/// (for a server that already has that schema). fleetsync mode refuses a server that already
/// has versioned history.
pub async fn baseline(config: &Config, req: &QueueRequest, version: &str) -> Result<ChangeReport> {
    let queue = req.queue()?;
    let store = req.store()?;
    let version = req.version(version)?;
    let mut states = Vec::new();
    for server in req.servers(config)? {
        let st = read_state(config, &server, &queue, &store).await?;
        if req.history == HistoryMode::Fleetsync
            && (st.baseline.is_some() || st.files.iter().any(|s| *s != FileState::Pending))
        {
            bail!("server {server} already has versioned history (at version {}); baseline is for a server without it; nothing changed",
                st.at_version(&queue).map_or_else(|| "none".into(), |v| v.to_string()));
        }
        states.push((server, st));
    }
    let by = applied_by();
    let mut servers = Vec::new();
    for (server, st) in states {
        let files: Vec<&versioned::MigrationFile> = queue
            .files
            .iter()
            .zip(&st.files)
            .filter(|(f, s)| f.version <= version && **s == FileState::Pending)
            .map(|(f, _)| f)
            .collect();
        let mut conn = connect(config, &server).await?;
        store.prepare(&mut conn).await?;
        store.baseline(&mut conn, &version, &files, &by).await?;
        let _ = conn.disconnect().await;
        servers.push(ServerChange {
            server: server.clone(),
            files: files.iter().map(|f| f.file_name.clone()).collect(),
            at_version: read_state(config, &server, &queue, &store)
                .await?
                .at_version(&queue)
                .map(|v| v.to_string()),
            error: None,
        });
    }
    Ok(ChangeReport {
        action: "baseline".into(),
        servers,
    })
}
