//! Versioned migrations over a fleet: `migrate new|status --dir|up|undo|repair|baseline`
//! (the CLI renders what these return). The queue, the per-server state and the plans are
//! [`fleetsync_coordinator::migrate::versioned`]; this layer connects, reads each server's
//! history ([`Store`]), runs files ([`runfile`]) and rolls out over servers
//! ([`fleet`]: canaries, then waves).
//!
//! Every command first reads every selected server; a server that cannot be read, or whose
//! plan is refused (an applied file edited since, a missing undo file), stops the command
//! before anything runs anywhere.
//!
//! `up` works from a plan per server ([`ServerPlan`]: the files it will run); [`apply_server`]
//! runs one plan. A server that receives the migrated database through a sync is not run
//! directly: the files run at its component's origin and reach it through the sync
//! ([`via_sync`]); `undo` likewise ([`undo`]). A job's cancel stops `up` and `undo` between
//! files, never inside one.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_agent::inspect;
use fleetsync_config::Config;
use fleetsync_coordinator::migrate::queue_store::Store;
use fleetsync_coordinator::migrate::runfile::{self, FileFailure};
use fleetsync_coordinator::migrate::versioned::{
    self, FileState, HistoryMode, Queue, Recorded, ServerState, Version,
};
use fleetsync_coordinator::migrate::{self as cmigrate, fleet, Pairing};
use fleetsync_proto::schema_model::SchemaSnapshot;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Tracker;

mod changes;
pub mod jobs;
mod rollout;
mod undo;
mod via_sync;
use crate::diff_cmd::connect;
pub use changes::{baseline, repair, ChangeReport, Route, ServerChange};
pub use rollout::up;
pub use undo::{undo, UndoRequest};
pub use via_sync::{Downstream, ViaSync, DEFAULT_SYNC_TIMEOUT};

/// What every queue command names: the folder, the servers, the history, the database.
#[derive(Debug, Clone)]
pub struct QueueRequest {
    pub dir: PathBuf,
    /// `--servers`: globs over server names, comma-separated; `None`: every server.
    pub servers: Option<String>,
    pub history: HistoryMode,
    /// The database the files run in (and the history scope). TrinityCore mode defaults to
    /// the folder's name (`sql/updates/auth` → `auth`).
    pub database: Option<String>,
}

impl QueueRequest {
    /// The database the files run in.
    pub fn database(&self) -> Option<String> {
        self.database.clone().or_else(|| match self.history {
            HistoryMode::TrinityCore => self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            HistoryMode::Fleetsync => None,
        })
    }

    fn store(&self) -> Result<Store> {
        match (self.history, self.database()) {
            (HistoryMode::Fleetsync, db) => Ok(Store::Fleetsync {
                scope: db.unwrap_or_else(|| "*".into()),
            }),
            (HistoryMode::TrinityCore, Some(database)) => Ok(Store::TrinityCore { database }),
            (HistoryMode::TrinityCore, None) => {
                bail!(
                    "--history trinitycore needs --database (the database with the updates table)"
                )
            }
        }
    }

    fn queue(&self) -> Result<Queue> {
        Ok(versioned::load(&self.dir, self.history)?)
    }

    fn servers(&self, config: &Config) -> Result<Vec<String>> {
        fleet::select(
            self.servers.as_deref(),
            config.servers.iter().map(|s| s.name.as_str()),
        )
        .map_err(|e| anyhow!(e))
    }

    fn version(&self, text: &str) -> Result<Version> {
        Version::parse(text, self.history).map_err(|e| anyhow!(e))
    }
}

/// `user@host`, for `applied_by`.
pub fn applied_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

async fn read_state(
    config: &Config,
    server: &str,
    queue: &Queue,
    store: &Store,
) -> Result<ServerState> {
    Ok(read_history(config, server, queue, store).await?.0)
}

/// A server's state and the rows it comes from (the latest per version: `undo` tells a file
/// rolled back from one never applied).
async fn read_history(
    config: &Config,
    server: &str,
    queue: &Queue,
    store: &Store,
) -> Result<(ServerState, Vec<Recorded>)> {
    let mut conn = connect(config, server).await?;
    let rows = store
        .recorded(&mut conn)
        .await
        .with_context(|| format!("server {server}"))?;
    let _ = conn.disconnect().await;
    Ok((versioned::server_state(queue, &rows), rows))
}

// ---------------------------------------------------------------- new

/// `migrate new NAME`: the files written.
#[derive(Debug, Serialize)]
pub struct NewReport {
    pub file: PathBuf,
    pub undo: Option<PathBuf>,
}

/// Creates the next migration file (and, in fleetsync mode, its undo file) in the folder.
pub fn new_file(req: &QueueRequest, name: &str) -> Result<NewReport> {
    std::fs::create_dir_all(&req.dir).with_context(|| format!("creating {}", req.dir.display()))?;
    let queue = req.queue()?;
    let today = chrono::Utc::now().format("%Y_%m_%d").to_string();
    let file_name = versioned::next_file_name(&queue, name, &today).map_err(|e| anyhow!(e))?;
    let file = req.dir.join(&file_name);
    let header = format!("-- {file_name}: written by `fleetsync migrate new`; `;`-terminated statements (DELIMITER blocks allowed).\n");
    write_new(&file, &header)?;
    let undo = match req.history {
        HistoryMode::Fleetsync => {
            let u = req.dir.join(format!("U{}", &file_name[1..]));
            write_new(
                &u,
                &format!("-- Undo of {file_name}: the statements that reverse it. `migrate undo` refuses while this file has none.\n"),
            )?;
            Some(u)
        }
        HistoryMode::TrinityCore => None,
    };
    Ok(NewReport { file, undo })
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------- status

/// One file's standing on a server.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    pub file: String,
    pub version: String,
    #[serde(flatten)]
    pub state: FileState,
}

/// A server's standing against the queue.
#[derive(Debug, Serialize)]
pub struct ServerStatus {
    pub server: String,
    pub at_version: Option<String>,
    pub baseline: Option<String>,
    pub applied: usize,
    pub pending: usize,
    pub failed: usize,
    pub edited: usize,
    pub files: Vec<FileStatus>,
    /// Applied rows whose file is not in the folder (TrinityCore: archived updates).
    pub applied_without_file: usize,
    /// The server could not be read.
    pub error: Option<String>,
}

/// `migrate status --dir`.
#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub dir: PathBuf,
    pub history: HistoryMode,
    pub database: Option<String>,
    pub files: usize,
    pub servers: Vec<ServerStatus>,
}

fn server_status(server: &str, queue: &Queue, st: &ServerState) -> ServerStatus {
    let count = |f: &dyn Fn(&FileState) -> bool| st.files.iter().filter(|s| f(s)).count();
    ServerStatus {
        server: server.to_string(),
        at_version: st.at_version(queue).map(|v| v.to_string()),
        baseline: st.baseline.as_ref().map(Version::to_string),
        applied: count(&|s| matches!(s, FileState::Applied | FileState::Baseline)),
        pending: count(&|s| *s == FileState::Pending),
        failed: count(&|s| matches!(s, FileState::Failed { .. })),
        edited: count(&|s| matches!(s, FileState::Edited { .. })),
        files: queue
            .files
            .iter()
            .zip(&st.files)
            .map(|(f, s)| FileStatus {
                file: f.file_name.clone(),
                version: f.version.to_string(),
                state: s.clone(),
            })
            .collect(),
        applied_without_file: st.applied_without_file.len(),
        error: None,
    }
}

/// Where each selected server stands (a server that cannot be read says why).
pub async fn status(config: &Config, req: &QueueRequest) -> Result<QueueStatus> {
    let queue = req.queue()?;
    let store = req.store()?;
    let mut servers = Vec::new();
    for server in req.servers(config)? {
        servers.push(match read_state(config, &server, &queue, &store).await {
            Ok(st) => server_status(&server, &queue, &st),
            Err(e) => ServerStatus {
                server: server.clone(),
                at_version: None,
                baseline: None,
                applied: 0,
                pending: 0,
                failed: 0,
                edited: 0,
                files: Vec::new(),
                applied_without_file: 0,
                error: Some(crate::exit::one_line(e.as_ref())),
            },
        });
    }
    Ok(QueueStatus {
        dir: req.dir.clone(),
        history: req.history,
        database: req.database(),
        files: queue.files.len(),
        servers,
    })
}

// ---------------------------------------------------------------- up

/// `migrate up`'s options beyond the queue.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub queue: QueueRequest,
    pub to: Option<String>,
    /// The first N servers with work are canaries (one at a time, then checked).
    pub canary: usize,
    /// The rest run M at once.
    pub wave: usize,
    /// A failure in a wave stops the rollout after that wave (a canary failure always does).
    pub halt_on_error: bool,
    /// Without it: the plan only, nothing changes.
    pub yes: bool,
    /// How long to wait for a receiver's sync to bring the files (see [`via_sync`]).
    pub sync_timeout: std::time::Duration,
}

/// What `up` will run on one server.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub server: String,
    pub before: Option<Version>,
    /// Indexes into the queue's files, in order.
    pub files: Vec<usize>,
    /// Files applied (or baselined) there already.
    pub applied: Vec<usize>,
}

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    UpToDate,
    /// Dry run: would run `planned`.
    Planned,
    Applied,
    Failed,
    NotStarted,
    /// A cancel (the job's) stopped its queue between two files: `applied` ran, `planned`
    /// minus those did not.
    Cancelled,
}

/// The file a server stopped at.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FailedFile {
    pub file: String,
    pub version: String,
    /// 1-based statement index (0: before the first), and the file's statement count.
    pub statement: usize,
    pub statements: usize,
    pub error: String,
}

/// One server in the fleet report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServerRun {
    pub server: String,
    /// `canary` or `wave N`; none when up to date.
    pub role: Option<String>,
    pub outcome: Outcome,
    pub version_before: Option<String>,
    pub at_version: Option<String>,
    pub planned: Vec<String>,
    pub applied: Vec<String>,
    pub failed: Option<FailedFile>,
    /// Canaries: differences between this canary's schema and the first canary's, after;
    /// receivers: between its schema and its origin's, after its sync caught up.
    pub schema_differences: Option<usize>,
    /// A receiver: the files reach it through this sync from its origin (never run there).
    pub via: Option<ViaSync>,
}

/// `migrate up`'s report (`--json`).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct FleetReport {
    pub dir: PathBuf,
    pub history: HistoryMode,
    pub database: Option<String>,
    pub dry_run: bool,
    pub canaries: Vec<String>,
    pub waves: Vec<Vec<String>>,
    /// Why the rollout stopped early.
    pub halted: Option<String>,
    pub servers: Vec<ServerRun>,
    /// Receivers that `--servers` does not select: they get the files through the sync
    /// anyway; their history is written by a `migrate up` that selects them.
    pub downstream: Vec<Downstream>,
    /// The job was cancelled: the rollout stopped between files (`halted` says where).
    #[serde(default)]
    pub cancelled: bool,
}

impl FleetReport {
    pub fn failed(&self) -> bool {
        self.cancelled
            || self.halted.is_some()
            || self.servers.iter().any(|s| s.outcome == Outcome::Failed)
            || self.downstream.iter().any(|d| d.error.is_some())
    }
}

/// Reads every server and plans what `up` runs on each (refused as a whole when one server
/// cannot be read or planned).
pub async fn plan_fleet(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    to: Option<&Version>,
) -> Result<Vec<ServerPlan>> {
    let store = req.store()?;
    let mut plans = Vec::new();
    for server in req.servers(config)? {
        let st = read_state(config, &server, queue, &store).await?;
        let files = versioned::plan_up(queue, &st, to)
            .map_err(|e| anyhow!("server {server}: {e}; nothing applied on any server"))?;
        plans.push(ServerPlan {
            before: st.at_version(queue),
            applied: (0..st.files.len())
                .filter(|&i| st.files[i].is_applied())
                .collect(),
            server,
            files,
        });
    }
    Ok(plans)
}

fn names(queue: &Queue, idx: &[usize]) -> Vec<String> {
    idx.iter()
        .map(|&i| queue.files[i].file_name.clone())
        .collect()
}

fn run_of(queue: &Queue, p: &ServerPlan, role: Option<String>, outcome: Outcome) -> ServerRun {
    let v = p.before.as_ref().map(Version::to_string);
    ServerRun {
        server: p.server.clone(),
        role,
        outcome,
        version_before: v.clone(),
        at_version: v,
        planned: names(queue, &p.files),
        applied: Vec::new(),
        failed: None,
        schema_differences: None,
        via: None,
    }
}

/// Applies `plan` on its server: each file in order, recorded in the history; stops at the
/// first failure (recorded with the statement index and what was left half-done), or before
/// the next file once `cancel` fires (never mid-file: outcome `cancelled`).
pub async fn apply_server(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    plan: &ServerPlan,
    role: Option<String>,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServerRun {
    let mut run = run_of(queue, plan, role, Outcome::Applied);
    let fail = |run: &mut ServerRun, file: Option<usize>, f: FileFailure| {
        run.outcome = Outcome::Failed;
        run.failed = Some(FailedFile {
            file: file.map_or_else(String::new, |i| queue.files[i].file_name.clone()),
            version: file.map_or_else(String::new, |i| queue.files[i].version.to_string()),
            statement: f.statement,
            statements: f.total,
            error: f.to_string(),
        });
    };
    let setup_failure = |e: String| FileFailure {
        statement: 0,
        total: 0,
        line: 0,
        error: e,
        rolled_back: false,
        duration_ms: 0,
    };
    let store = match req.store() {
        Ok(s) => s,
        Err(e) => {
            fail(&mut run, None, setup_failure(e.to_string()));
            return run;
        }
    };
    let mut conn = match connect(config, &plan.server).await {
        Ok(c) => c,
        Err(e) => {
            fail(
                &mut run,
                None,
                setup_failure(crate::exit::one_line(e.as_ref())),
            );
            return run;
        }
    };
    if let Err(e) = store.prepare(&mut conn).await {
        fail(&mut run, None, setup_failure(e.to_string()));
        return run;
    }
    // Under the lock, the files still to run (another run may have applied some since the
    // plan was made).
    let todo = match locked_state(&mut conn, &store, queue).await {
        Ok(st) => plan
            .files
            .iter()
            .copied()
            .filter(|&i| matches!(st.files[i], FileState::Pending | FileState::Failed { .. }))
            .collect::<Vec<usize>>(),
        Err(e) => {
            fail(&mut run, None, setup_failure(e));
            return run;
        }
    };
    let database = req.database();
    let by = applied_by();
    for &i in &todo {
        if cancel.is_cancelled() {
            run.outcome = Outcome::Cancelled;
            break;
        }
        let file = &queue.files[i];
        tracker.phase(format!("{}: {}", plan.server, file.file_name));
        // The bytes that run are the bytes whose checksum is recorded.
        let text = match std::fs::read(&file.path) {
            Ok(b) if versioned::checksum(queue.mode, &b) == file.checksum => {
                match String::from_utf8(b) {
                    Ok(t) => t,
                    Err(_) => {
                        fail(
                            &mut run,
                            Some(i),
                            setup_failure("the file is not UTF-8".into()),
                        );
                        break;
                    }
                }
            }
            Ok(_) => {
                fail(
                    &mut run,
                    Some(i),
                    setup_failure("the file changed during the rollout".into()),
                );
                break;
            }
            Err(e) => {
                fail(
                    &mut run,
                    Some(i),
                    setup_failure(format!("cannot read it: {e}")),
                );
                break;
            }
        };
        let id = match store.start(&mut conn, file, &by).await {
            Ok(id) => id,
            Err(e) => {
                fail(&mut run, Some(i), setup_failure(e.to_string()));
                break;
            }
        };
        match runfile::run_file(&mut conn, database.as_deref(), &text).await {
            Ok(done) => {
                if let Err(e) = store.applied(&mut conn, id, file, done.duration_ms).await {
                    fail(
                        &mut run,
                        Some(i),
                        setup_failure(format!("the file ran but {e}")),
                    );
                    break;
                }
                run.applied.push(file.file_name.clone());
                run.at_version = Some(file.version.to_string());
                tracker.table_done(0);
            }
            Err(f) => {
                let _ = store
                    .failed(&mut conn, id, &f.to_string(), f.duration_ms)
                    .await;
                fail(&mut run, Some(i), f);
                break;
            }
        }
    }
    let _ = conn.disconnect().await;
    run
}

/// Takes the queue's lock on `conn`, then reads the server's state.
async fn locked_state(
    conn: &mut mysql_async::Conn,
    store: &Store,
    queue: &Queue,
) -> Result<ServerState, String> {
    if !store.lock(conn).await.map_err(|e| e.to_string())? {
        return Err(
            "another `migrate up` or `migrate undo` is running on this server (its lock is held); nothing run"
                .into(),
        );
    }
    let rows = store.recorded(conn).await.map_err(|e| e.to_string())?;
    Ok(versioned::server_state(queue, &rows))
}

async fn snapshot(config: &Config, server: &str, database: Option<&str>) -> Result<SchemaSnapshot> {
    let mut conn = connect(config, server).await?;
    let dbs = match database {
        Some(d) => vec![d.to_string()],
        None => inspect::user_databases(&mut conn).await?,
    };
    let snap = inspect::snapshot(&mut conn, &dbs).await?;
    let _ = conn.disconnect().await;
    Ok(snap)
}

/// Checks the canaries after they ran: each one's history shows every planned file applied,
/// and its schema equals the first canary's. `Err` says why the rollout must stop.
async fn check_canaries(
    config: &Config,
    req: &QueueRequest,
    queue: &Queue,
    runs: &mut [ServerRun],
) -> Result<(), String> {
    let store = req.store().map_err(|e| e.to_string())?;
    for run in runs.iter() {
        let st = read_state(config, &run.server, queue, &store)
            .await
            .map_err(|e| {
                format!(
                    "canary {}: {}",
                    run.server,
                    crate::exit::one_line(e.as_ref())
                )
            })?;
        for name in &run.applied {
            let applied = queue
                .files
                .iter()
                .zip(&st.files)
                .any(|(f, s)| f.file_name == *name && *s == FileState::Applied);
            if !applied {
                return Err(format!(
                    "canary {}: {name} ran but its history row does not show it applied",
                    run.server
                ));
            }
        }
    }
    let database = req.database();
    let pairing = if database.is_some() {
        Pairing::Single
    } else {
        Pairing::ByName
    };
    let Some(first) = runs.first().map(|r| r.server.clone()) else {
        return Ok(());
    };
    let reference = snapshot(config, &first, database.as_deref())
        .await
        .map_err(|e| format!("canary {first}: reading its schema: {e}"))?;
    for run in runs.iter_mut() {
        let snap = snapshot(config, &run.server, database.as_deref())
            .await
            .map_err(|e| format!("canary {}: reading its schema: {e}", run.server))?;
        let d = cmigrate::diff(&reference, &snap, pairing, &cmigrate::Hints::default());
        run.schema_differences = Some(d.differences.len());
        if !d.equal {
            let first3: Vec<String> = d
                .differences
                .iter()
                .take(3)
                .map(|x| x.to_string())
                .collect();
            return Err(format!(
                "canary {}'s schema differs from canary {first}'s after the migration: {} difference(s): {}",
                run.server,
                d.differences.len(),
                first3.join("; ")
            ));
        }
    }
    Ok(())
}
