//! The binlog archive for point-in-time recovery: a server's binlog, kept continuously beside
//! the backups as fleetsync change records.
//!
//! The archiver runs the ordinary binlog reader ([`crate::source::stream::stream`], every
//! non-system table, DDL included) into an [`ArchiveWriter`], which appends each transaction
//! to `<backup.dir>/binlog-archive/<server>/`: length-framed, checksummed records in a
//! segment file, rolled every `segment_bytes` or `segment_age` into a zstd file listed with
//! its first/last position, commit times and SHA-256 in `index.json` (see
//! `fleetsync_mysql::archive::format`). The format and the reader ([`Archive`]) live in
//! `fleetsync_mysql::archive`, which the coordinator shares for PITR; they are re-exported
//! here.
//!
//! Invariants:
//! * **The archive is its own checkpoint.** On start the archiver resumes the binlog stream
//!   at the position after the last complete record in the archive (a torn tail from a crash
//!   is truncated first): no gap, no duplicate. A new archive starts at the server's current
//!   binlog end; it covers transactions committed after that.
//! * Every record's position is after the previous one's; segments chain (each starts where
//!   the previous ended). [`Archive`] checks both and the checksums when reading.
//! * If the resume position has been purged from the server, the archiver stops with an error
//!   (an archive with a hole is useless for recovery past it); see docs/pitr.md.
//!
//! With an `s3://` backup dir the writer's directory is a local spool
//! (`[backup] archive_spool_dir`) and an [`Uploader`] copies each finished segment, then the
//! index, to `binlog-archive/<server>/` in the bucket (see [`upload`]).
//!
//! Metrics: [`METRIC_ARCHIVE_LAG`] (now minus the commit time of the newest archived
//! transaction or heartbeat, updated every second even while the stream is down; with a
//! bucket, of the newest one *in the bucket*, so it includes the upload lag),
//! [`METRIC_ARCHIVED_TRANSACTIONS`], [`METRIC_ARCHIVED_BYTES`], with pruning on
//! [`METRIC_ARCHIVE_PRUNED_SEGMENTS`], and with a bucket
//! [`upload::METRIC_ARCHIVE_UPLOAD_FAILURES`], [`upload::METRIC_ARCHIVE_PENDING_SEGMENTS`].
//!
//! With `[backup] archive_prune = true` the archiver also deletes the segments no backup of
//! its server needs (see [`prune`]): the writer of each index (the writer for a local
//! archive, the uploader for a bucket) applies it, so nothing else rewrites an index.

pub mod prune;
pub mod upload;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetsync_config::TableFilter;
use tokio_util::sync::CancellationToken;

use crate::source::{self, stream::now_ms, SourceSpec};
use crate::SourceError;

// The format and the reader are shared with the coordinator (PITR replays the archive):
// re-exported here at their old paths.
use fleetsync_mysql::archive::format;
pub use fleetsync_mysql::archive::{
    server_dir, server_key, Archive, ArchiveError, Coverage, Flow, Index, IndexEntry,
};
pub use upload::{UploadStatus, Uploader};
pub use writer::{ArchiveWriter, Covered};

/// Gauge: seconds between now and the commit time of the newest archived transaction or
/// heartbeat. Label `server`.
pub const METRIC_ARCHIVE_LAG: &str = "fleetsync_pitr_archive_lag_seconds";
/// Counter: transactions archived (heartbeats excluded). Label `server`.
pub const METRIC_ARCHIVED_TRANSACTIONS: &str = "fleetsync_pitr_archived_transactions_total";
/// Counter: bytes appended to archive segments, before compression. Label `server`.
pub const METRIC_ARCHIVED_BYTES: &str = "fleetsync_pitr_archived_bytes_total";
/// Counter: archive segments deleted by pruning (`[backup] archive_prune`; orphans left by an
/// interrupted pass included). Label `server`.
pub const METRIC_ARCHIVE_PRUNED_SEGMENTS: &str = "fleetsync_pitr_archive_pruned_segments_total";

/// Gauge: 1 while the archiver is failing (the same kind of non-transient error
/// [`FAIL_AFTER`] times in a row with nothing archived between them: a missing privilege, a
/// server setting such as `binlog_row_metadata`), 0 otherwise. It keeps retrying, so a fix is
/// picked up; the first transaction or heartbeat archived clears it. Label `server`.
pub const METRIC_ARCHIVE_FAILING: &str = "fleetsync_pitr_archive_failing";
/// Errors in a row after which the archiver counts as failing (about 15 s of retrying, as a
/// sync pipeline's `failed`).
pub const FAIL_AFTER: u32 = 5;

/// 64 MiB: a few seconds of a busy server's changes, and small enough to compress quickly
/// and to skip cheaply when a replay starts late.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// 5 minutes: an idle server still gets finished (checksummed, compressed) segments often.
pub const DEFAULT_SEGMENT_AGE: Duration = Duration::from_secs(300);
/// 1 minute with a bucket: only finished, uploaded segments are in the bucket, so this bounds
/// how far PITR from the bucket is behind (about a minute plus the upload time), at the cost
/// of an index entry (~450 bytes) and a small object a minute on an idle server.
pub const DEFAULT_SEGMENT_AGE_BUCKET: Duration = Duration::from_secs(60);
/// How often a heartbeat is stored while the server is idle: bounds how stale the archive's
/// visible end is for a restore to "a moment ago" (the reader needs a record after it).
pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// zstd level of finished segments (zstd's default).
pub const DEFAULT_ARCHIVE_ZSTD_LEVEL: i32 = 3;
/// Added to a configured `replica_server_id`: the archiver's binlog connection needs its own.
pub const ARCHIVE_REPLICA_OFFSET: u32 = 1000;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the writer rolls segments.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub heartbeat_every: Duration,
    pub zstd_level: i32,
    /// With pruning on: how often the backups are listed (see [`prune`]).
    pub prune_every: Duration,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_age: DEFAULT_SEGMENT_AGE,
            heartbeat_every: DEFAULT_HEARTBEAT_EVERY,
            zstd_level: DEFAULT_ARCHIVE_ZSTD_LEVEL,
            prune_every: prune::DEFAULT_PRUNE_EVERY,
        }
    }
}

/// The archiver's binlog reader spec for `server`: every non-system table.
pub fn archive_spec(
    server: &fleetsync_config::Server,
    opts: mysql_async::Opts,
) -> Result<SourceSpec, ArchiveError> {
    let filter = TableFilter::new(&[], &[])
        .map_err(|(_, e)| ArchiveError::Invalid(format!("table filter: {e}")))?;
    let replica_id = match server.replica_server_id {
        Some(base) => base.wrapping_add(ARCHIVE_REPLICA_OFFSET),
        None => server.replica_id("binlog-archive"),
    };
    Ok(SourceSpec {
        name: server.name.clone(),
        opts,
        replica_id,
        filter,
        sync: "binlog-archive".into(),
        snapshot_chunk_rows: 1,
        include_marked: true,
        until: None,
    })
}

/// Archives `spec`'s binlog into `dir` until cancelled; with `upload` (the server's archive
/// prefix in a bucket), `dir` is the spool and finished segments are uploaded there (see
/// [`upload`]); with `prune` (the backups' root, `[backup] dir`), segments older than the
/// oldest backup of the server needs are deleted (see [`prune`]). Transient failures (server
/// down, lost connection, bucket unreachable) are retried with backoff; a purged resume
/// position, a damaged archive directory, a missing bucket or refused credentials end it with
/// an error.
pub async fn run_archiver(
    spec: SourceSpec,
    dir: PathBuf,
    upload: Option<fleetsync_store::Store>,
    prune: Option<fleetsync_store::Store>,
    opts: ArchiveOptions,
    cancel: CancellationToken,
) -> Result<(), ArchiveError> {
    let covered = Arc::new(Covered::default());
    let mut uploader = None;
    let mut floor_task = None;
    let floors = prune.map(|root| {
        let (tx, rx) = tokio::sync::watch::channel(None);
        floor_task = Some(tokio::spawn(prune::watch_floor(
            root,
            spec.name.clone(),
            opts.prune_every,
            tx,
            cancel.clone(),
        )));
        rx
    });
    let lag_source = match upload {
        Some(store) => {
            let mut up = Uploader::new(store, &dir, &spec.name);
            if let Some(rx) = &floors {
                up.prune_with(rx.clone());
            }
            if let Err(e) = reconcile(&mut up, &spec.name, &cancel).await {
                tracing::error!(server = %spec.name, error = %e, "binlog archiver stopped");
                if let Some(t) = &floor_task {
                    t.abort();
                }
                return Err(e);
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
            let uploaded = up.uploaded();
            uploader = Some(tokio::spawn(up.run(cancel.clone())));
            uploaded
        }
        None => covered.clone(),
    };
    let ticker = tokio::spawn(lag_ticker(spec.name.clone(), lag_source, cancel.clone()));
    let mut backoff = Duration::from_secs(1);
    let failing = metrics::gauge!(METRIC_ARCHIVE_FAILING, "server" => spec.name.clone());
    failing.set(0.0);
    let clearer = tokio::spawn(clear_failing(
        covered.clone(),
        failing.clone(),
        cancel.clone(),
    ));
    let mut in_row = 0u32;
    // The uploader prunes a bucket's index; the writer prunes a local one.
    let local_floors = if uploader.is_none() { floors } else { None };
    let result = loop {
        let before = covered.get();
        let result =
            archive_once(&spec, &dir, &opts, &covered, local_floors.as_ref(), &cancel).await;
        if cancel.is_cancelled() {
            break Ok(());
        }
        if covered.get() != before {
            // Something was archived since the last error: a new row of errors starts.
            in_row = 0;
            failing.set(0.0);
        }
        match result {
            Err(e @ ArchiveError::Invalid(_)) => break Err(e),
            // A purged position, or a change the binlog does not carry (statement-format
            // DML, partial row image): replaying the archive would silently miss changes.
            Err(ArchiveError::Source(
                e @ (SourceError::Purged { .. } | SourceError::Unusable { .. }),
            )) => {
                break Err(ArchiveError::Invalid(format!(
                    "{e}: the binlog archive in {} cannot continue without a gap; move it away to start a new archive (backups taken before now need the old one)",
                    dir.display()
                )))
            }
            // A lost connection is retried for as long as it takes; the lag metric shows it.
            Err(e @ ArchiveError::Source(SourceError::Connection { .. })) => {
                tracing::warn!(server = %spec.name, error = %e, retry_in = ?backoff, "binlog archiver failed, retrying")
            }
            Err(e) => {
                in_row += 1;
                if in_row >= FAIL_AFTER {
                    failing.set(1.0);
                    tracing::error!(server = %spec.name, error = %e, errors_in_a_row = in_row, retry_in = ?backoff, "binlog archiver failing: nothing is archived until this is fixed (retrying, so a fix is picked up)");
                } else {
                    tracing::warn!(server = %spec.name, error = %e, retry_in = ?backoff, "binlog archiver failed, retrying");
                }
            }
            Ok(()) => tracing::warn!(server = %spec.name, "binlog stream ended, reconnecting"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    ticker.abort();
    clearer.abort();
    if let Some(t) = floor_task {
        t.abort();
    }
    if let Some(u) = uploader {
        // Stop it too when the archiver ends with an error; it finishes its last upload.
        cancel.cancel();
        let _ = u.await;
    }
    if let Err(e) = &result {
        tracing::error!(server = %spec.name, error = %e, "binlog archiver stopped");
    }
    result
}

/// Clears [`METRIC_ARCHIVE_FAILING`] as soon as anything is archived (the archiver's loop only
/// sees its errors: a fixed server just streams on).
async fn clear_failing(covered: Arc<Covered>, failing: metrics::Gauge, cancel: CancellationToken) {
    let mut last = covered.get();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = covered.get();
        if now != last {
            failing.set(0.0);
            last = now;
        }
    }
}

/// [`Uploader::reconcile`], retried with backoff while the bucket is unreachable.
async fn reconcile(
    up: &mut Uploader,
    server: &str,
    cancel: &CancellationToken,
) -> Result<(), ArchiveError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match up.reconcile().await {
            Ok(()) => return Ok(()),
            Err(e) if upload::is_fatal(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(server, error = %e, retry_in = ?backoff, "cannot read the binlog archive's index in the bucket, retrying")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn archive_once(
    spec: &SourceSpec,
    dir: &Path,
    opts: &ArchiveOptions,
    covered: &Covered,
    floors: Option<&prune::FloorRx>,
    cancel: &CancellationToken,
) -> Result<(), ArchiveError> {
    // Reopened on every attempt: recovery makes the files consistent after any failure.
    let mut writer = ArchiveWriter::open(dir, &spec.name, opts.clone())?;
    if let Some(rx) = floors {
        writer.prune_with(rx.clone());
    }
    let mut conn = source::connect(spec).await?;
    let info = source::preflight(&mut conn, spec).await?;
    let from = match writer.resume_position()? {
        Some(p) => {
            source::check_available(&mut conn, spec, &p).await?;
            p
        }
        None => source::current_position(&mut conn, &spec.name).await?,
    };
    let _ = conn.disconnect().await;
    writer.begin(&from, now_ms())?;
    tracing::info!(server = %spec.name, dir = %dir.display(), from = %from, "binlog archiver started");
    let mine = writer.covered();
    let relay = async {
        loop {
            covered.set(mine.get());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let streamed = tokio::select! {
        r = source::stream::stream(spec, &info, from, &mut writer, cancel) => r,
        _ = relay => Ok(()),
    };
    covered.set(mine.get());
    Ok(streamed?)
}

/// Sets the lag gauge every second from the shared covered time. Until anything is covered
/// (a new archive whose stream has not started, a bucket nothing reached yet) the lag counts
/// from the archiver's start, so an archiver that never gets going shows a rising lag, not 0.
async fn lag_ticker(server: String, covered: Arc<Covered>, cancel: CancellationToken) {
    let gauge = metrics::gauge!(METRIC_ARCHIVE_LAG, "server" => server);
    let started = now_ms();
    loop {
        let c = covered.get();
        let since = if c > 0 { c } else { started };
        gauge.set(now_ms().saturating_sub(since) as f64 / 1000.0);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
