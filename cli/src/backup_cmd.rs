//! `fleetsync backup ...`: the CLI side of the agent's backup tasks (fleetsync_agent::backup).
//! `create` and `verify` run [`crate::service::backup`] (shared with the API's jobs; with
//! `--remote` they run as jobs on a coordinator).
//!
//! Output: human-readable lines on stdout (or JSON with `--json`), a progress bar on stderr
//! when it is a terminal, structured logs otherwise. Errors are one line (rendered in main).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use fleetsync_agent::backup::{manifest, Key, Settings};
use fleetsync_config::Config;
use fleetsync_proto::jobs::BackupListEntry;
use fleetsync_proto::jobs::{
    BackupCreateReport, BackupPruneReport, BackupRestoreReport, BackupVerifyReport,
    RestorePlanReport,
};
use tokio_util::sync::CancellationToken;

use crate::service::backup::{
    self as service, BackupCreateRequest, BackupPruneRequest, BackupRestoreRequest,
    BackupVerifyRequest,
};
use crate::service::Tracker;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of a server.
    Create {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        server: String,
        /// `schema.table` regexes to include (default: every table of every user database).
        #[arg(long)]
        include: Vec<String>,
        /// A name for the backup (unique; accepted wherever an id is).
        #[arg(long)]
        name: Option<String>,
        /// Pin the backup: retention never deletes it (until `backup unpin`).
        #[arg(long)]
        pin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one backup: its summary, pin and last verification (`--json`: as `list --json`).
    Show {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        /// The backup's id or name.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Pin a backup (id or name): retention never deletes it.
    Pin {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Unpin a backup (id or name): retention applies to it again.
    Unpin {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write one backup (id or name) as a tar stream (`<id>/manifest.json`, `<id>/data/...`)
    /// to FILE or stdout (`-`), streamed from the directory or bucket.
    Download {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        id: String,
        /// The tar file to write (it must not exist), or `-` for stdout.
        #[arg(long)]
        out: String,
    },
    /// List the backups in `[backup] dir`.
    List {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-read every file of a backup: checksums, decryption, decompression.
    Verify {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup (verified first), optionally to a point in time.
    Restore {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        id: String,
        #[arg(long)]
        to_server: String,
        /// `OLD=NEW`: restore database OLD as NEW (repeatable).
        #[arg(long)]
        rename_db: Vec<String>,
        /// Replay the archived binlog up to this time (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC).
        #[arg(long, conflicts_with = "to_gtid")]
        to_time: Option<String>,
        /// Replay the archived binlog up to and including this GTID position (`D-S-N[,...]`).
        #[arg(long)]
        to_gtid: Option<String>,
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask before dropping tables that exist on the target.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Archive a server's binlog continuously for point-in-time recovery (runs until
    /// stopped); `status` and `replay` read the archive.
    Archive(crate::archive_cmd::ArchiveArgs),
    /// Delete the backups outside `[backup] retention`.
    Prune {
        #[arg(long, env = "FLEETSYNC_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write a new random encryption key (64 hex digits) to FILE, readable by the owner only.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(command: BackupCommand, remote: Option<crate::remote::Remote>) -> Result<()> {
    if let Some(remote) = remote {
        return match command {
            BackupCommand::Create {
                server,
                include,
                name,
                pin,
                json,
                ..
            } => {
                let req = BackupCreateRequest {
                    server,
                    include,
                    name,
                    pin,
                };
                let print = move |r: &BackupCreateReport| print_created(r, json);
                remote.run_job(&req, print).await
            }
            BackupCommand::Verify { id, json, .. } => {
                let req = BackupVerifyRequest { id };
                let print = move |r: &BackupVerifyReport| print_verified(r, json);
                remote.run_job(&req, print).await
            }
            BackupCommand::Restore {
                id,
                to_server,
                rename_db,
                to_time,
                to_gtid,
                dry_run,
                yes,
                json,
                ..
            } => {
                let req = BackupRestoreRequest {
                    id,
                    to_server,
                    rename_db,
                    to_time,
                    to_gtid,
                    plan_only: dry_run,
                    confirm: yes,
                };
                let print = move |r: &BackupRestoreReport| print_restored(r, json);
                remote.run_job(&req, print).await
            }
            BackupCommand::Prune { dry_run, json, .. } => {
                // The command line is the confirmation, as locally.
                let req = BackupPruneRequest {
                    plan_only: dry_run,
                    confirm: true,
                };
                let print = move |r: &BackupPruneReport| print_pruned(r, json);
                remote.run_job(&req, print).await
            }
            _ => Err(anyhow!(
                "with --remote, only `backup create`, `verify`, `restore` and `prune` are available"
            )),
        };
    }
    match command {
        BackupCommand::Create {
            config,
            server,
            include,
            name,
            pin,
            json,
        } => {
            let req = BackupCreateRequest {
                server,
                include,
                name,
                pin,
            };
            create(crate::opts::need_config(&config)?, req, json).await
        }
        BackupCommand::List { config, json } => list(&config, json).await,
        BackupCommand::Show { config, id, json } => {
            show(crate::opts::need_config(&config)?, &id, json).await
        }
        BackupCommand::Pin { config, id, json } => {
            pin_cmd(crate::opts::need_config(&config)?, &id, true, json).await
        }
        BackupCommand::Unpin { config, id, json } => {
            pin_cmd(crate::opts::need_config(&config)?, &id, false, json).await
        }
        BackupCommand::Download { config, id, out } => {
            download(crate::opts::need_config(&config)?, &id, &out).await
        }
        BackupCommand::Verify { config, id, json } => {
            verify_cmd(crate::opts::need_config(&config)?, &id, json).await
        }
        BackupCommand::Restore {
            config,
            id,
            to_server,
            rename_db,
            to_time,
            to_gtid,
            dry_run,
            yes,
            json,
        } => {
            let req = BackupRestoreRequest {
                id,
                to_server,
                rename_db,
                to_time,
                to_gtid,
                plan_only: dry_run,
                confirm: yes,
            };
            restore_cmd(crate::opts::need_config(&config)?, &req, yes, json).await
        }
        BackupCommand::Archive(args) => crate::archive_cmd::run(args).await,
        BackupCommand::Prune {
            config,
            dry_run,
            json,
        } => prune_cmd(crate::opts::need_config(&config)?, dry_run, json).await,
        BackupCommand::Keygen { out } => keygen(&out),
    }
}

/// The config, with `[backup]` resolved and its location checked (a missing bucket or refused
/// credentials: one line, before any work).
async fn load(config: &Path) -> Result<(Config, Settings)> {
    let config = Config::load(config)?;
    let settings = service::checked_settings(&config)
        .await
        .map_err(crate::service::into_anyhow)?;
    Ok((config, settings))
}

/// [`load`] for the commands that connect to a server (the `preferred` TLS probe runs).
async fn load_connecting(config: &Path) -> Result<(Config, Settings)> {
    let config = crate::opts::load_config(config).await?;
    let settings = service::checked_settings(&config)
        .await
        .map_err(crate::service::into_anyhow)?;
    Ok((config, settings))
}

async fn create(config: &Path, req: BackupCreateRequest, json: bool) -> Result<()> {
    let (config, _) = load_connecting(config).await?;
    let tracker = Tracker::new(crate::service::Bar::for_terminal());
    let report = service::create(&config, &req, &tracker, &CancellationToken::new())
        .await
        .map_err(crate::service::into_anyhow)?;
    drop(tracker);
    print_created(&report, json);
    Ok(())
}

/// `backup create`'s output (one JSON line with `--json`).
pub fn print_created(m: &BackupCreateReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(m).unwrap_or_default());
    } else {
        println!(
            "backup {}{}{} complete: {} tables, {} views, {} rows, {} bytes in {:.1}s at {}",
            m.id,
            m.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            if m.pinned { ", pinned," } else { "" },
            m.tables,
            m.views,
            m.rows,
            m.bytes,
            m.duration_seconds.unwrap_or_default(),
            m.position.as_deref().unwrap_or("-")
        );
    }
}

async fn list(config: &Path, json: bool) -> Result<()> {
    let (config, settings) = load(config).await?;
    let all = service::list(&config).await?;
    if json {
        println!("{}", serde_json::to_value(all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no backups in {}", settings.store.describe());
    }
    for e in &all {
        println!("{}", list_line(e));
    }
    Ok(())
}

/// One line of `backup list`.
fn list_line(e: &BackupListEntry) -> String {
    if e.status == "unreadable" {
        return format!("{}  unreadable  {}", e.id, e.error.as_deref().unwrap_or(""));
    }
    format!(
        "{}  {:<8}  {}  {} tables  {} rows  {} bytes{}{}{}  {}",
        e.id,
        e.status,
        e.started.as_deref().unwrap_or("-"),
        e.tables.unwrap_or(0),
        e.rows.unwrap_or(0),
        e.bytes.unwrap_or(0),
        if e.encrypted == Some(true) {
            "  encrypted"
        } else {
            ""
        },
        if e.pinned { "  pinned" } else { "" },
        e.name
            .as_deref()
            .map(|n| format!("  name={n}"))
            .unwrap_or_default(),
        e.position.as_deref().unwrap_or("-")
    )
}

async fn show(config: &Path, id: &str, json: bool) -> Result<()> {
    let (config, settings) = load(config).await?;
    let id = manifest::resolve(&settings.store, id).await?;
    let all = service::list(&config).await?;
    let Some(e) = all.into_iter().find(|e| e.id == id) else {
        // Not listed: say why (no such backup, or leftovers without a manifest).
        manifest::read(&settings.store, &id).await?;
        bail!("backup {id} is not listed");
    };
    if json {
        println!("{}", serde_json::to_value(&e)?);
        return Ok(());
    }
    println!("{}", list_line(&e));
    println!("location: {}", settings.store.describe_key(&e.id));
    println!("pinned: {}", if e.pinned { "yes" } else { "no" });
    println!(
        "verified: {}{}",
        e.verified.state,
        e.verified
            .at
            .as_deref()
            .map(|a| format!(" at {a}"))
            .unwrap_or_default()
    );
    Ok(())
}

async fn pin_cmd(config: &Path, id: &str, pin: bool, json: bool) -> Result<()> {
    let (config, _) = load(config).await?;
    let r = service::set_pinned(&config, id, pin)
        .await
        .map_err(crate::service::into_anyhow)?;
    if json {
        println!("{}", serde_json::to_value(&r)?);
    } else {
        println!(
            "backup {} {}",
            r.id,
            if r.pinned {
                "pinned: retention will not delete it"
            } else {
                "unpinned: retention applies to it again"
            }
        );
    }
    Ok(())
}

/// Streams the tar of a backup to `out` (`-`: stdout). A file is written beside as
/// `FILE.part` and renamed when complete, so a failed download leaves no complete-looking tar.
async fn download(config: &Path, id: &str, out: &str) -> Result<()> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let (config, _) = load(config).await?;
    let (id, mut stream) = service::download(&config, id)
        .await
        .map_err(crate::service::into_anyhow)?;
    let mut bytes = 0u64;
    if out == "-" {
        let mut w = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("downloading backup {id}"))?;
            w.write_all(&chunk).context("writing to stdout")?;
        }
        w.flush().context("writing to stdout")?;
        return Ok(());
    }
    let path = PathBuf::from(out);
    if path.exists() {
        bail!("{out}: exists already (the download does not overwrite files)");
    }
    let part = PathBuf::from(format!("{out}.part"));
    let write = async {
        let mut f = tokio::fs::File::create(&part)
            .await
            .with_context(|| format!("cannot create {}", part.display()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("downloading backup {id}"))?;
            bytes += chunk.len() as u64;
            f.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", part.display()))?;
        }
        f.sync_all()
            .await
            .with_context(|| format!("cannot write {}", part.display()))?;
        tokio::fs::rename(&part, &path)
            .await
            .with_context(|| format!("cannot rename {} to {out}", part.display()))
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    eprintln!("backup {id} written to {out} ({bytes} bytes, tar)");
    Ok(())
}

async fn verify_cmd(config: &Path, id: &str, json: bool) -> Result<()> {
    let (config, _) = load(config).await?;
    let req = BackupVerifyRequest { id: id.to_string() };
    let tracker = Tracker::new(crate::service::Quiet::arc());
    let report = service::verify(&config, &req, &tracker, &CancellationToken::new())
        .await
        .map_err(crate::service::into_anyhow)?;
    print_verified(&report, json);
    Ok(())
}

/// `backup verify`'s output.
pub fn print_verified(r: &BackupVerifyReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
    } else {
        println!(
            "backup {} verified: {} files, {} bytes, {} statements, {} rows: checksums match, every file decrypts and decompresses",
            r.id, r.files, r.bytes, r.statements, r.rows
        );
    }
}

async fn restore_cmd(
    config: &Path,
    req: &BackupRestoreRequest,
    yes: bool,
    json: bool,
) -> Result<()> {
    let (config, _) = load_connecting(config).await?;
    let decide = |plan: &RestorePlanReport| {
        if yes || plan.existing.is_empty() || !std::io::stdin().is_terminal() {
            return Ok(yes);
        }
        if confirm(plan)? {
            Ok(true)
        } else {
            bail!("restore cancelled: nothing was changed")
        }
    };
    let tracker = Tracker::new(crate::service::Bar::for_terminal());
    let report = service::restore(&config, req, decide, &tracker, &CancellationToken::new())
        .await
        .map_err(crate::service::into_anyhow)?;
    drop(tracker);
    print_restored(&report, json);
    Ok(())
}

/// `backup restore`'s output: the replay plan (point-in-time), then the dry run's plan, or
/// what was restored and replayed.
pub fn print_restored(r: &BackupRestoreReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    if let Some(p) = &r.replay_plan {
        crate::archive_cmd::print_replay_plan(p);
    }
    if r.dry_run {
        print_plan(&r.plan);
        return;
    }
    if let Some(done) = &r.restored {
        println!(
            "backup {} restored to {}: {} tables, {} rows in {:.1}s (backup position {})",
            r.id,
            r.target,
            done.tables,
            done.rows,
            done.seconds,
            done.position.as_deref().unwrap_or("-")
        );
    }
    if let (Some(x), Some(p)) = (&r.replayed, &r.replay_plan) {
        crate::archive_cmd::print_replayed(
            x.transactions,
            x.rows,
            &r.target,
            x.position.as_deref().unwrap_or(&p.start),
        );
    }
}

fn print_plan(plan: &RestorePlanReport) {
    println!(
        "dry run: restore backup {} to server {} (nothing changed)",
        plan.id, plan.target
    );
    println!("position: {}", plan.position.as_deref().unwrap_or("-"));
    for (from, to) in &plan.databases {
        if from == to {
            println!("database {to}");
        } else {
            println!("database {from} -> {to}");
        }
    }
    for t in &plan.tables {
        println!(
            "table {}.{}: {} rows in {} files",
            t.target_database, t.table, t.rows, t.files
        );
    }
    for (db, v) in &plan.views {
        println!("view {db}.{v}");
    }
    for (db, name, kind) in &plan.existing {
        println!("would drop existing {} {db}.{name}", kind.to_lowercase());
    }
    println!(
        "total: {} tables, {} views, {} rows, {} bytes stored; {} existing object(s) to drop",
        plan.tables.len(),
        plan.views.len(),
        plan.rows,
        plan.bytes,
        plan.existing.len()
    );
}

fn confirm(plan: &RestorePlanReport) -> Result<bool> {
    let names: Vec<String> = plan
        .existing
        .iter()
        .map(|(d, t, _)| format!("{d}.{t}"))
        .collect();
    eprint!(
        "{} existing table(s)/view(s) on {} will be dropped and replaced: {}\nProceed? [y/N] ",
        names.len(),
        plan.target,
        names.join(", ")
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn prune_cmd(config: &Path, dry_run: bool, json: bool) -> Result<()> {
    let (config, _) = load(config).await?;
    let req = BackupPruneRequest {
        plan_only: dry_run,
        confirm: true,
    };
    let tracker = Tracker::new(crate::service::Quiet::arc());
    let report = service::prune(&config, &req, &tracker, &CancellationToken::new())
        .await
        .map_err(crate::service::into_anyhow)?;
    print_pruned(&report, json);
    Ok(())
}

/// `backup prune`'s output.
pub fn print_pruned(report: &BackupPruneReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for d in &report.deleted {
        println!("{verb} {}: {}", d.id, d.reason);
    }
    if !report.rules {
        println!(
            "no [backup.retention] rule (keep_last, max_age_days) configured: only leftovers of unfinished backups are deleted"
        );
        return;
    }
    for (id, why) in &report.skipped {
        println!("kept {id}: {why}");
    }
    if report.deleted.is_empty() {
        println!("nothing to prune");
    }
}

fn keygen(out: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create key file {} (it must not exist yet)",
                out.display()
            )
        })?;
    writeln!(f, "{}", Key::generate_hex())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write key file {}", out.display()))?;
    println!(
        "wrote a new encryption key to {} (mode 0600); set [backup] encryption_key_file to it and keep a copy somewhere safe: backups cannot be restored without it",
        out.display()
    );
    Ok(())
}
