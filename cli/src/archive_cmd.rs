//! `fleetsync backup archive`: the binlog archiver for point-in-time recovery, its status,
//! and replay of the archive onto a server; plus the hook that runs archivers inside
//! `fleetsync run` / `fleetsync agent` when `[backup] archive_binlog = true`, and the replay
//! step of `fleetsync backup restore --to-time/--to-gtid`.
//!
//! The archive lives in `<backup.dir>/binlog-archive/<server>/` (see
//! fleetsync_agent::backup::archive), a local directory or a bucket's prefix; with a bucket
//! the archiver writes to a local spool (`[backup] archive_spool_dir`) and uploads finished
//! segments. Replay is fleetsync_coordinator::pitr, from either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use fleetsync_agent::backup::archive::{
    archive_spec, run_archiver, server_key, Archive, ArchiveOptions, UploadStatus,
    DEFAULT_SEGMENT_AGE, DEFAULT_SEGMENT_AGE_BUCKET,
};
use fleetsync_config::{Config, TableMap};
use fleetsync_coordinator::pitr::{self, ReplaySpec, ReplayTarget, Stop};
use fleetsync_proto::{GtidSet, Position};
use fleetsync_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http;
use crate::opts::{opts_by_name, server_opts};
use crate::run::shutdown_signal;

#[derive(Args)]
pub struct ArchiveArgs {
    #[arg(long, env = "FLEETSYNC_CONFIG")]
    pub config: PathBuf,
    /// The server whose binlog is archived (or read).
    #[arg(long)]
    pub server: String,
    /// Roll a new segment after this many MiB (uncompressed).
    #[arg(long, default_value_t = 64)]
    pub segment_mb: u64,
    /// Roll a new segment after this many seconds (default 300 for a local dir, 60 for a
    /// bucket: only finished segments are uploaded).
    #[arg(long)]
    pub segment_seconds: Option<u64>,
    /// With `[backup] archive_prune = true`: list the backups for pruning every this many
    /// seconds instead of every 60 (for tests).
    #[arg(long, hide = true)]
    pub prune_seconds: Option<u64>,
    /// Without a subcommand: run the archiver until SIGINT/SIGTERM.
    #[command(subcommand)]
    pub action: Option<ArchiveAction>,
}

#[derive(Subcommand)]
pub enum ArchiveAction {
    /// Show what the archive covers (after verifying its chain of segments).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Replay archived transactions after a position onto a server (which must already hold
    /// the data as of that position, e.g. restored by other means).
    Replay {
        #[arg(long)]
        to_server: String,
        /// Start after this position (`file:pos[@gtid]`, as in a backup's manifest).
        #[arg(long)]
        from: String,
        #[command(flatten)]
        to: ReplayTo,
        /// Only these source databases (repeatable; default: all).
        #[arg(long)]
        db: Vec<String>,
        /// `OLD=NEW`: apply changes of database OLD to NEW (repeatable).
        #[arg(long)]
        rename_db: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        /// Required to change the target.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

/// The stop point options shared with `backup restore`.
#[derive(Args, Clone, Default)]
pub struct ReplayTo {
    /// Up to this time (`YYYY-MM-DD HH:MM:SS`, UTC; one-second resolution).
    #[arg(long, conflicts_with = "to_gtid")]
    pub to_time: Option<String>,
    /// Up to and including this GTID position (`D-S-N[,...]`).
    #[arg(long)]
    pub to_gtid: Option<String>,
}

impl ArchiveArgs {
    fn options(&self, store: &Store) -> ArchiveOptions {
        let age = match self.segment_seconds {
            Some(s) => Duration::from_secs(s.max(1)),
            None => default_options(store).segment_age,
        };
        let defaults = ArchiveOptions::default();
        ArchiveOptions {
            segment_bytes: self.segment_mb.max(1) << 20,
            segment_age: age,
            prune_every: self
                .prune_seconds
                .map_or(defaults.prune_every, |s| Duration::from_secs(s.max(1))),
            ..defaults
        }
    }
}

/// The defaults for an archive in `store`: shorter segments in a bucket.
fn default_options(store: &Store) -> ArchiveOptions {
    ArchiveOptions {
        segment_age: if store.is_remote() {
            DEFAULT_SEGMENT_AGE_BUCKET
        } else {
            DEFAULT_SEGMENT_AGE
        },
        ..ArchiveOptions::default()
    }
}

/// The archive of `server`: `<backup.dir>/binlog-archive/<server>`, a directory or a bucket's
/// prefix.
pub fn archive_store(config: &Config, server: &str) -> Result<Store> {
    Ok(Store::open(&config.backup)?.child(&server_key(server)))
}

/// Where the archiver writes: the archive directory itself, or for a bucket the server's
/// spool directory (and the store to upload to).
fn archive_target(config: &Config, server: &str, store: &Store) -> (PathBuf, Option<Store>) {
    match store.local_root() {
        Some(dir) => (dir.to_path_buf(), None),
        None => (spool_dir(config, server), Some(store.clone())),
    }
}

/// The backups' root when `[backup] archive_prune` is on: the archiver prunes behind the
/// oldest backup found there.
fn prune_root(config: &Config) -> Result<Option<Store>> {
    if !config.backup.archive_prune {
        return Ok(None);
    }
    Ok(Some(Store::open(&config.backup)?))
}

fn spool_dir(config: &Config, server: &str) -> PathBuf {
    config.backup.archive_spool(&config.state_dir).join(server)
}

pub async fn run(args: ArchiveArgs) -> Result<()> {
    let config = crate::opts::load_config(&args.config).await?;
    let store = archive_store(&config, &args.server)?;
    if config.server(&args.server).is_none() {
        bail!(
            "no server named {:?} in {}",
            args.server,
            args.config.display()
        );
    }
    match &args.action {
        None => archive(&config, &args.server, &store, args.options(&store)).await,
        Some(ArchiveAction::Status { json }) => status(&config, &args.server, &store, *json).await,
        Some(ArchiveAction::Replay {
            to_server,
            from,
            to,
            db,
            rename_db,
            dry_run,
            yes,
            json,
        }) => {
            let start: Position = from.parse().map_err(|e| anyhow!("--from: {e}"))?;
            let schemas = (!db.is_empty()).then(|| db.iter().cloned().collect());
            let req = PitrRequest {
                server: &args.server,
                start,
                start_time_ms: None,
                to: to.clone(),
                schemas,
                to_server,
                rename_db,
            };
            let Some((spec, target)) = prepare(&config, &req)? else {
                bail!("give --to-time or --to-gtid")
            };
            replay_planned(&spec, &target, *dry_run, *yes, *json).await
        }
    }
}

/// Runs the archiver of `server` in the foreground, with the metrics endpoint.
async fn archive(config: &Config, server: &str, store: &Store, opts: ArchiveOptions) -> Result<()> {
    let s = config
        .server(server)
        .ok_or_else(|| anyhow!("no server named {server:?}"))?;
    let spec = archive_spec(s, server_opts(s)?)?;
    // A missing bucket or refused credentials: one line now, not a retry loop.
    store.check().await?;
    let (dir, upload) = archive_target(config, server, store);
    let prune = prune_root(config)?;
    let cancel = CancellationToken::new();
    let addr = http::serve(
        config.metrics_addr()?,
        Arc::new(Mutex::new(Default::default())),
        cancel.clone(),
    )
    .await?;
    tracing::info!(metrics = %addr, server, "fleetsync binlog archiver running");
    let task = tokio::spawn(run_archiver(spec, dir, upload, prune, opts, cancel.clone()));
    tokio::pin!(task);
    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut task => {
            cancel.cancel();
            return r.map_err(|e| anyhow!("archiver task failed: {e}"))?.map_err(Into::into);
        }
    }
    cancel.cancel();
    match tokio::time::timeout(Duration::from_secs(15), task).await {
        Ok(r) => r
            .map_err(|e| anyhow!("archiver task failed: {e}"))?
            .map_err(Into::into),
        Err(_) => bail!("the archiver did not stop within 15 s"),
    }
}

/// Starts an archiver for each of `servers` (default: every server that is a sync's source)
/// when `[backup] archive_binlog` is on. They stop when `cancel` fires; a failing archiver
/// logs its error (and its lag metric grows) without stopping the process.
pub fn spawn_archivers(
    config: &Config,
    servers: Option<&[&str]>,
    cancel: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    if !config.backup.archive_binlog {
        return Ok(Vec::new());
    }
    let mut names: Vec<&str> = match servers {
        Some(s) => s.to_vec(),
        None => config.syncs.iter().map(|s| s.source.as_str()).collect(),
    };
    names.sort_unstable();
    names.dedup();
    let mut handles = Vec::new();
    for name in names {
        let s = config
            .server(name)
            .ok_or_else(|| anyhow!("no server named {name:?}"))?;
        let spec = archive_spec(s, server_opts(s)?)?;
        let store = archive_store(config, name)?;
        let opts = default_options(&store);
        let (dir, upload) = archive_target(config, name, &store);
        let prune = prune_root(config)?;
        let cancel = cancel.child_token();
        handles.push(tokio::spawn(async move {
            // run_archiver logs its own failure.
            let _ = run_archiver(spec, dir, upload, prune, opts, cancel).await;
        }));
    }
    Ok(handles)
}

/// `archive status`: what the archive covers (in a bucket: what is uploaded), and for a bucket
/// the uploader's state from this host's spool, when there is one.
async fn status(config: &Config, server: &str, store: &Store, json: bool) -> Result<()> {
    let archive = Archive::open_store(store, server).await?;
    let cov = archive.coverage()?;
    let upload = store
        .is_remote()
        .then(|| UploadStatus::load(&spool_dir(config, server)))
        .flatten();
    let lag_ms = fleetsync_agent::source::stream::now_ms().saturating_sub(cov.end_commit_ms);
    if json {
        let mut out = serde_json::json!({
            "server": cov.server,
            "location": store.describe(),
            "start": cov.start.to_string(),
            "start_commit_ms": cov.start_commit_ms,
            "first_segment": archive.index().segments.first().map(|e| e.seq),
            "end": cov.end.to_string(),
            "end_gtid": cov.end.gtid.as_ref().map(|g| g.to_string()),
            "end_commit_ms": cov.end_commit_ms,
            "lag_seconds": lag_ms as f64 / 1000.0,
            "finished_segments": cov.finished_segments,
            "transactions": cov.transactions,
            "bytes": cov.bytes,
        });
        if let Some(u) = &upload {
            out["upload"] = serde_json::to_value(u)?;
        }
        println!("{out}");
        return Ok(());
    }
    println!("binlog archive of {server} in {}", store.describe());
    let first = match cov.start_commit_ms {
        0 => "none yet".to_string(),
        ms => show_ms(ms),
    };
    println!("  from       {} (first commit {first})", cov.start);
    println!(
        "  to         {} (last commit {})",
        cov.end,
        show_ms(cov.end_commit_ms)
    );
    println!(
        "  {} transactions, {} finished segments, {} bytes",
        cov.transactions, cov.finished_segments, cov.bytes
    );
    if let Some(u) = &upload {
        println!(
            "  upload     {} segments waiting in the spool, {} failed attempts since the last success{}",
            u.pending_segments,
            u.consecutive_failures,
            u.last_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (last: {e})"))
        );
    }
    Ok(())
}

/// A point-in-time replay request, from `backup restore` or `archive replay`.
pub struct PitrRequest<'a> {
    /// The archived server (the backup's server).
    pub server: &'a str,
    /// The base's position (the backup manifest's binlog position).
    pub start: Position,
    /// When the base was taken (ms since the epoch), if known.
    pub start_time_ms: Option<u64>,
    pub to: ReplayTo,
    /// Source databases to replay (the backup's); `None` for all.
    pub schemas: Option<BTreeSet<String>>,
    pub to_server: &'a str,
    pub rename_db: &'a [String],
}

/// The replay step of `backup restore ID --to-time/--to-gtid`, from the backup's manifest:
/// its server, snapshot position (`file:pos@gtid`), start time (RFC 3339) and databases
/// (source names). `None` when neither option is given. Call [`plan_only`] on the result
/// after the backup is verified and before it is loaded (so a refusal changes nothing), and
/// [`apply_planned`] after the load.
#[allow(clippy::too_many_arguments)]
pub fn pitr_for_backup(
    config: &Config,
    server: &str,
    position: Option<&str>,
    started: &str,
    databases: &[String],
    to: ReplayTo,
    to_server: &str,
    rename_db: &[String],
) -> Result<Option<(ReplaySpec, ReplayTarget)>> {
    if to.to_time.is_none() && to.to_gtid.is_none() {
        return Ok(None);
    }
    let Some(position) = position else {
        bail!("the backup records no binlog position: it cannot be the base of a point-in-time restore");
    };
    let start: Position = position
        .parse()
        .map_err(|e| anyhow!("backup manifest position: {e}"))?;
    let start_time_ms = chrono::DateTime::parse_from_rfc3339(started)
        .ok()
        .map(|d| d.timestamp_millis().max(0) as u64);
    let req = PitrRequest {
        server,
        start,
        start_time_ms,
        to,
        schemas: Some(databases.iter().cloned().collect()),
        to_server,
        rename_db,
    };
    prepare(config, &req)
}

/// Builds and checks the replay of `req` without touching any server: `None` when neither
/// `--to-time` nor `--to-gtid` is given. Errors are the one-line refusals.
pub fn prepare(
    config: &Config,
    req: &PitrRequest<'_>,
) -> Result<Option<(ReplaySpec, ReplayTarget)>> {
    let stop = match (&req.to.to_time, &req.to.to_gtid) {
        (Some(t), None) => Stop::Time(parse_time(t)?),
        (None, Some(g)) => {
            let set: GtidSet = g.parse().map_err(|e| anyhow!("--to-gtid: {e}"))?;
            if set.is_empty() {
                bail!("--to-gtid: empty GTID position");
            }
            Stop::Gtid(set)
        }
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("give either --to-time or --to-gtid, not both"),
    };
    let spec = ReplaySpec {
        archive: archive_store(config, req.server)?,
        server: req.server.to_string(),
        start: req.start.clone(),
        start_time_ms: req.start_time_ms,
        stop,
        schemas: req.schemas.clone(),
    };
    let target = ReplayTarget {
        name: req.to_server.to_string(),
        opts: opts_by_name(config, req.to_server)?,
        map: rename_map(req.rename_db)?,
    };
    Ok(Some((spec, target)))
}

/// Plans (verifying the archive covers the range), prints the plan, and unless `dry_run`
/// applies it. For `backup restore`, call [`plan_only`] before the base restore and
/// [`apply_planned`] after it.
async fn replay_planned(
    spec: &ReplaySpec,
    target: &ReplayTarget,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> Result<()> {
    let plan = plan_only(spec, json).await?;
    if dry_run {
        return Ok(());
    }
    if !yes {
        bail!(
            "replaying changes server {}: add --yes to go ahead (or --dry-run to only check)",
            target.name
        );
    }
    apply_planned(spec, &plan, target, json).await
}

/// Checks the archive covers the replay and prints what it would apply.
pub async fn plan_only(spec: &ReplaySpec, json: bool) -> Result<pitr::ReplayPlan> {
    let plan = pitr::plan(spec).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "plan": &plan }))?
        );
    } else {
        print_replay_plan(&serde_json::from_value(serde_json::to_value(&plan)?)?);
    }
    Ok(plan)
}

/// The text line of a replay plan (also printed by `backup restore --to-time/--to-gtid`).
pub fn print_replay_plan(plan: &fleetsync_proto::jobs::ReplayPlanReport) {
    println!(
        "point-in-time replay of {}: {} transactions ({} row changes, {} DDL) after {} up to {} (commits {} .. {}); archive covers {} .. {}",
        plan.server,
        plan.transactions,
        plan.rows,
        plan.ddl,
        plan.start,
        plan.last.as_deref().unwrap_or("(nothing to apply)"),
        plan.first_commit_ms.map_or("-".into(), show_ms),
        plan.last_commit_ms.map_or("-".into(), show_ms),
        plan.archive_start,
        plan.archive_end,
    );
}

/// The text line of an applied replay.
pub fn print_replayed(transactions: u64, rows: u64, target: &str, now_at: &str) {
    println!(
        "replayed {transactions} transactions ({rows} row changes) onto {target}; now at {now_at}"
    );
}

/// Applies a plan made by [`plan_only`].
pub async fn apply_planned(
    spec: &ReplaySpec,
    plan: &pitr::ReplayPlan,
    target: &ReplayTarget,
    json: bool,
) -> Result<()> {
    let report = pitr::replay(spec, plan, target).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "replayed": &report }))?
        );
    } else {
        print_replayed(
            report.transactions,
            report.rows,
            &target.name,
            report.position.as_deref().unwrap_or(&plan.start),
        );
    }
    Ok(())
}

/// `OLD=NEW` pairs as a database map.
pub fn rename_map(pairs: &[String]) -> Result<TableMap> {
    let mut map = BTreeMap::new();
    for p in pairs {
        let Some((old, new)) = p.split_once('=') else {
            bail!("--rename-db {p:?}: expected OLD=NEW");
        };
        if old.is_empty() || new.is_empty() || old.contains('.') || new.contains('.') {
            bail!("--rename-db {p:?}: expected OLD=NEW with two database names");
        }
        map.insert(old.to_string(), new.to_string());
    }
    TableMap::new(&map).map_err(|e| anyhow!("--rename-db: {e}"))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`, optionally ending in `Z`), UTC, to Unix
/// seconds. Fractions are accepted and dropped: binlog times are whole seconds.
pub fn parse_time(s: &str) -> Result<i64> {
    let t = s.trim().trim_end_matches('Z').trim_end_matches(" UTC");
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.and_utc().timestamp());
        }
    }
    bail!("--to-time {s:?}: expected `YYYY-MM-DD HH:MM:SS` (UTC)")
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn show_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_seconds() {
        assert_eq!(parse_time("1970-01-01 00:00:10").ok(), Some(10));
        assert_eq!(parse_time("1970-01-01T00:01:00.75Z").ok(), Some(60));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn rename_pairs_are_checked() {
        assert!(rename_map(&["a=b".into()]).is_ok());
        assert!(rename_map(&["a".into()]).is_err());
        assert!(rename_map(&["a.t=b".into()]).is_err());
    }
}
