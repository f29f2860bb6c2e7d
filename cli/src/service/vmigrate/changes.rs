//! The report of `undo` (see [`super::undo`]), `repair` and `baseline`; `repair` and
//! `baseline` over the selected servers (see the parent module).

use anyhow::{bail, Result};
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::versioned::{self, FileState, HistoryMode};
use serde::Serialize;

use super::{applied_by, read_state, Downstream, QueueRequest, ViaSync};
use crate::diff_cmd::connect;

/// How an undo reached a server: its U files ran there, or at its origin and came through a
/// sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    Direct,
    ViaSync,
}

/// What `undo`, `repair` or `baseline` did on one server.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ServerChange {
    pub server: String,
    /// The files undone / repaired / baselined (TrinityCore), in the order done.
    pub files: Vec<String>,
    pub at_version: Option<String>,
    pub error: Option<String>,
    /// `undo`: whether the U files ran here (`direct`) or reached it through a sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// `undo` through a sync: which one, from where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ViaSync>,
    /// `undo` through a sync: differences between its schema and its origin's, after its
    /// sync caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_differences: Option<usize>,
}

impl ServerChange {
    pub fn new(server: &str) -> ServerChange {
        ServerChange {
            server: server.to_string(),
            files: Vec::new(),
            at_version: None,
            error: None,
            route: None,
            via: None,
            schema_differences: None,
        }
    }
}

/// The report of `undo`, `repair` and `baseline`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ChangeReport {
    pub action: String,
    pub servers: Vec<ServerChange>,
    /// `undo`: receivers `--servers` does not select (the undo reaches them through the sync;
    /// their history is not written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstream: Vec<Downstream>,
    /// `undo` as a job: a cancel stopped it between files or servers (`servers` says what
    /// was undone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

impl ChangeReport {
    pub fn failed(&self) -> bool {
        self.cancelled
            || self.servers.iter().any(|s| s.error.is_some())
            || self.downstream.iter().any(|d| d.error.is_some())
    }
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
            files,
            at_version: st.at_version(&queue).map(|v| v.to_string()),
            ..ServerChange::new(&server)
        });
    }
    Ok(ChangeReport {
        action: "repair".into(),
        servers,
        downstream: Vec::new(),
        cancelled: false,
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
            files: files.iter().map(|f| f.file_name.clone()).collect(),
            at_version: read_state(config, &server, &queue, &store)
                .await?
                .at_version(&queue)
                .map(|v| v.to_string()),
            ..ServerChange::new(&server)
        });
    }
    Ok(ChangeReport {
        action: "baseline".into(),
        servers,
        downstream: Vec::new(),
        cancelled: false,
    })
}
