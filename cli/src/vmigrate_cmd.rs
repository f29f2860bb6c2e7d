//! `fleetsync migrate new|status --dir|up|undo|repair|baseline`: versioned migrations, thin
//! adapters around [`crate::service::vmigrate`]. Exit 0 when done (or the dry-run plan was
//! printed), 2 on an error, a refusal, a server that failed or (status) could not be read
//! (the fleet's state is printed first).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use fleetsync_coordinator::migrate::versioned::{FileState, HistoryMode};

use crate::diff_cmd::{Exit, EXIT_ERROR};
use crate::service::vmigrate::{
    self as service, ChangeReport, FleetReport, Outcome, QueueRequest, QueueStatus, Route,
    UndoRequest, UpRequest,
};
use crate::service::{Bar, Quiet, Tracker};

/// Default `--canary`: one server first, alone.
pub const DEFAULT_CANARY: usize = 1;
/// Default `--wave`: then one server at a time (the cautious choice; raise it for speed).
pub const DEFAULT_WAVE: usize = 1;

fn parse_history(s: &str) -> Result<HistoryMode, String> {
    s.parse()
}

/// The flags every versioned command takes.
#[derive(Args, Clone)]
pub struct QueueArgs {
    /// Needed unless `--remote` (then the coordinator's config is used).
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// The migrations folder (V<version>__<name>.sql, or TrinityCore's sql/updates/<db>).
    #[arg(long)]
    pub dir: PathBuf,
    /// Servers by name: globs (`realm-*`), comma-separated; default every server.
    #[arg(long)]
    pub servers: Option<String>,
    /// Where the history is kept: fleetsync (fleetsync.schema_migrations) or trinitycore
    /// (the database's `updates` table).
    #[arg(long, default_value = "fleetsync", value_parser = parse_history)]
    pub history: HistoryMode,
    /// The database the files run in (and the history's scope); TrinityCore mode defaults
    /// to the folder's name.
    #[arg(long)]
    pub database: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl QueueArgs {
    fn config(&self) -> Result<&std::path::Path> {
        self.config
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--config (or FLEETSYNC_CONFIG) is needed"))
    }

    fn request(&self) -> QueueRequest {
        QueueRequest {
            dir: self.dir.clone(),
            servers: self.servers.clone(),
            history: self.history,
            database: self.database.clone(),
        }
    }
}

#[derive(Args)]
pub struct NewArgs {
    /// What the migration does (`add_index`): becomes the file name's end.
    pub name: String,
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Apply up to and including this version.
    #[arg(long)]
    pub to: Option<String>,
    /// The first N servers with pending files (by name) run first, one at a time, and are
    /// checked before the rest.
    #[arg(long, default_value_t = DEFAULT_CANARY)]
    pub canary: usize,
    /// Then M servers at once.
    #[arg(long, default_value_t = DEFAULT_WAVE)]
    pub wave: usize,
    /// Stop after a wave in which a server failed (a canary failure always stops).
    #[arg(long)]
    pub halt_on_error: bool,
    /// Apply; without it the plan is printed and nothing changes.
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for a server that receives the database through a sync to have the
    /// files (its sync caught up past the origin's run, schema equal) before giving up.
    #[arg(long, value_name = "SECS", default_value_t = service::DEFAULT_SYNC_TIMEOUT.as_secs())]
    pub sync_timeout: u64,
}

#[derive(Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Undo every applied version above this one (default: only the newest).
    #[arg(long)]
    pub to: Option<String>,
    /// How long to wait for a server that receives the database through a sync to have the
    /// undo (its sync caught up past the origin's undo, schema equal) before giving up.
    #[arg(long, value_name = "SECS", default_value_t = service::DEFAULT_SYNC_TIMEOUT.as_secs())]
    pub sync_timeout: u64,
}

#[derive(Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Args)]
pub struct BaselineArgs {
    /// Everything up to this version counts as applied (never run).
    pub version: String,
    #[command(flatten)]
    pub queue: QueueArgs,
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn done(failed: bool) -> Result<()> {
    if failed {
        Err(Exit(EXIT_ERROR).into())
    } else {
        Ok(())
    }
}

pub async fn new(a: &NewArgs) -> Result<()> {
    let r = service::new_file(&a.queue.request(), &a.name)?;
    if a.queue.json {
        print_json(&r);
        return Ok(());
    }
    println!("created {}", r.file.display());
    if let Some(u) = &r.undo {
        println!(
            "created {} (its undo: fill it in, or `migrate undo` refuses)",
            u.display()
        );
    }
    Ok(())
}

pub async fn status(a: &QueueArgs) -> Result<()> {
    let config = crate::opts::load_config(a.config()?).await?;
    let st = service::status(&config, &a.request()).await?;
    if a.json {
        print_json(&st);
    } else {
        print_status(&st);
    }
    // A server that could not be read makes the answer incomplete.
    done(st.servers.iter().any(|s| s.error.is_some()))
}

fn print_status(st: &QueueStatus) {
    let db = st
        .database
        .as_deref()
        .map(|d| format!(", database {d}"))
        .unwrap_or_default();
    println!(
        "{}: {} file(s), history {}{db}",
        st.dir.display(),
        st.files,
        st.history
    );
    for s in &st.servers {
        if let Some(e) = &s.error {
            println!("{}: cannot read: {e}", s.server);
            continue;
        }
        let extra = if s.applied_without_file > 0 {
            format!(", {} recorded without a file here", s.applied_without_file)
        } else {
            String::new()
        };
        println!(
            "{}: at version {}; {} applied, {} pending, {} failed, {} edited{extra}",
            s.server,
            s.at_version.as_deref().unwrap_or("none"),
            s.applied,
            s.pending,
            s.failed,
            s.edited
        );
        for f in &s.files {
            let line = match &f.state {
                FileState::Applied => format!("applied   {}", f.file),
                FileState::Baseline => format!("baseline  {}", f.file),
                FileState::Pending => format!("pending   {}", f.file),
                FileState::Failed { error } => format!("FAILED    {}: {error}", f.file),
                FileState::Edited { recorded, current } => format!(
                    "EDITED    {}: checksum recorded {recorded}, file now {current} (review, then `migrate repair`)",
                    f.file
                ),
            };
            println!("  {line}");
        }
    }
}

pub async fn up(a: &UpArgs) -> Result<()> {
    let config = crate::opts::load_config(a.queue.config()?).await?;
    let req = UpRequest {
        queue: a.queue.request(),
        to: a.to.clone(),
        canary: a.canary,
        wave: a.wave,
        halt_on_error: a.halt_on_error,
        yes: a.yes,
        sync_timeout: std::time::Duration::from_secs(a.sync_timeout),
    };
    let (tracker, never) = cli_run(a.queue.json);
    let report = service::up(&config, &req, &tracker, &never).await?;
    drop(tracker);
    if a.queue.json {
        print_json(&report);
    } else {
        print_fleet(&report);
    }
    done(report.failed())
}

pub fn print_fleet(r: &FleetReport) {
    if r.dry_run {
        println!("plan (dry run: nothing changed; add --yes to apply)");
    }
    if !r.canaries.is_empty() || !r.waves.is_empty() {
        let waves: Vec<String> = r.waves.iter().map(|w| w.join(", ")).collect();
        println!(
            "canaries: {}; waves: {}",
            if r.canaries.is_empty() {
                "none".into()
            } else {
                r.canaries.join(", ")
            },
            if waves.is_empty() {
                "none".into()
            } else {
                format!("[{}]", waves.join("] ["))
            }
        );
    }
    for s in &r.servers {
        let role = match (&s.via, s.role.as_deref()) {
            (Some(v), _) if v.from == v.origin => {
                format!(" (via sync {} from {})", v.sync, v.origin)
            }
            (Some(v), _) => format!(
                " (via sync {} from {}, origin {})",
                v.sync, v.from, v.origin
            ),
            (None, Some(r)) => format!(" ({r})"),
            (None, None) => String::new(),
        };
        let at = s.at_version.as_deref().unwrap_or("none");
        let line = match s.outcome {
            Outcome::UpToDate => format!("up to date (at version {at})"),
            Outcome::Planned if s.via.is_some() => format!(
                "will receive {} through the sync (never run here)",
                s.planned.join(", ")
            ),
            Outcome::Planned => format!("will run {}", s.planned.join(", ")),
            Outcome::NotStarted => format!(
                "not started (at version {at}; pending {})",
                s.planned.join(", ")
            ),
            Outcome::Cancelled => format!(
                "CANCELLED after {} (at version {at}; not run: {})",
                if s.applied.is_empty() {
                    "nothing".into()
                } else {
                    s.applied.join(", ")
                },
                s.planned
                    .iter()
                    .filter(|f| !s.applied.contains(f))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Outcome::Applied if s.via.is_some() => format!(
                "received {} through the sync, history written (at version {at}; schema vs origin: {} difference(s))",
                s.applied.join(", "),
                s.schema_differences.unwrap_or(0)
            ),
            Outcome::Applied => {
                let check = s
                    .schema_differences
                    .map(|d| format!("; schema vs first canary: {d} difference(s)"))
                    .unwrap_or_default();
                format!("applied {} (at version {at}){check}", s.applied.join(", "))
            }
            Outcome::Failed => {
                let f = s.failed.as_ref();
                format!(
                    "FAILED at {}: {} (at version {at}; applied before it: {})",
                    f.map_or("", |f| f.file.as_str()),
                    f.map_or("", |f| f.error.as_str()),
                    if s.applied.is_empty() {
                        "none".into()
                    } else {
                        s.applied.join(", ")
                    }
                )
            }
        };
        println!("{}{role}: {line}", s.server);
    }
    for d in &r.downstream {
        let how = match &d.error {
            Some(e) => format!("FAILED: {e}"),
            None => "its history is written by a `migrate up` that selects it".into(),
        };
        println!(
            "{}: not selected, receives the files via sync {} from {} ({how})",
            d.server, d.via.sync, d.via.from
        );
    }
    if let Some(h) = &r.halted {
        println!("halted: {h}; run `migrate up` again to continue where each server stands");
    }
}

/// A rollout's tracker on the command line (a progress bar on a terminal, nothing with
/// `--json`) and its cancel token: the CLI is stopped by Ctrl-C, so nobody fires it.
fn cli_run(json: bool) -> (std::sync::Arc<Tracker>, tokio_util::sync::CancellationToken) {
    let sink = if json {
        Quiet::arc()
    } else {
        Bar::for_terminal()
    };
    (
        Tracker::new(sink),
        tokio_util::sync::CancellationToken::new(),
    )
}

pub async fn undo(a: &UndoArgs) -> Result<()> {
    let config = crate::opts::load_config(a.queue.config()?).await?;
    let req = UndoRequest {
        queue: a.queue.request(),
        to: a.to.clone(),
        sync_timeout: std::time::Duration::from_secs(a.sync_timeout),
    };
    let (tracker, never) = cli_run(a.queue.json);
    let r = service::undo(&config, &req, &tracker, &never).await?;
    drop(tracker);
    print_change(&r, a.queue.json)
}

pub async fn repair(a: &RepairArgs) -> Result<()> {
    let config = crate::opts::load_config(a.queue.config()?).await?;
    let r = service::repair(&config, &a.queue.request()).await?;
    print_change(&r, a.queue.json)
}

pub async fn baseline(a: &BaselineArgs) -> Result<()> {
    let config = crate::opts::load_config(a.queue.config()?).await?;
    let r = service::baseline(&config, &a.queue.request(), &a.version).await?;
    print_change(&r, a.queue.json)
}

pub fn print_change(r: &ChangeReport, json: bool) -> Result<()> {
    if json {
        print_json(r);
    } else {
        for s in &r.servers {
            let files = if s.files.is_empty() {
                "nothing".to_string()
            } else {
                s.files.join(", ")
            };
            let err = s
                .error
                .as_deref()
                .map(|e| format!("; FAILED: {e}"))
                .unwrap_or_default();
            let (how, received) = match (&s.route, &s.via) {
                (Some(Route::ViaSync), Some(v)) => (
                    format!(" (via sync {} from {})", v.sync, v.from),
                    if s.error.is_none() && !s.files.is_empty() {
                        " received through the sync, history written"
                    } else {
                        ""
                    },
                ),
                _ => (String::new(), ""),
            };
            println!(
                "{}{how}: {} {files}{received} (at version {}){err}",
                s.server,
                r.action,
                s.at_version.as_deref().unwrap_or("none")
            );
        }
        for d in &r.downstream {
            let how = match &d.error {
                Some(e) => format!("FAILED: {e}"),
                None => "its history is written by an `undo` that selects it".into(),
            };
            println!(
                "{}: not selected, receives the {} via sync {} from {} ({how})",
                d.server, r.action, d.via.sync, d.via.from
            );
        }
        if r.cancelled {
            println!("cancelled: stopped between files (none interrupted)");
        }
    }
    done(r.failed())
}

/// `--dir` as a job names it: relative to the coordinator's `[migrations] dir`.
fn remote_dir(q: &QueueArgs) -> Result<String> {
    q.dir
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("--dir {}: not UTF-8", q.dir.display()))
}

fn history_name(h: HistoryMode) -> String {
    match h {
        HistoryMode::Fleetsync => "fleetsync",
        HistoryMode::TrinityCore => "trinitycore",
    }
    .to_string()
}

/// `migrate up --yes --remote`: the `migrate_up` job.
pub async fn remote_up(remote: &crate::remote::Remote, a: &UpArgs) -> Result<()> {
    let q = &a.queue;
    let req = service::jobs::MigrateUpRequest {
        dir: remote_dir(q)?,
        servers: q.servers.clone(),
        history: Some(history_name(q.history)),
        database: q.database.clone(),
        to: a.to.clone(),
        canary: a.canary as u64,
        wave: a.wave as u64,
        halt_on_error: a.halt_on_error,
        confirm: true,
    };
    let json = q.json;
    remote
        .run_job(&req, move |r: &FleetReport| {
            if json {
                print_json(r);
            } else {
                print_fleet(r);
            }
        })
        .await
}

/// `migrate undo --remote`: the `migrate_undo` job.
pub async fn remote_undo(remote: &crate::remote::Remote, a: &UndoArgs) -> Result<()> {
    let q = &a.queue;
    let req = service::jobs::MigrateUndoRequest {
        dir: remote_dir(q)?,
        servers: q.servers.clone(),
        history: Some(history_name(q.history)),
        database: q.database.clone(),
        to: a.to.clone(),
        confirm: true,
    };
    let json = q.json;
    remote
        .run_job(&req, move |r: &ChangeReport| {
            let _ = print_change(r, json);
        })
        .await
}
