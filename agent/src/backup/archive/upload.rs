//! Uploading the binlog archive to object storage (`[backup] dir = "s3://..."`).
//!
//! The [`ArchiveWriter`](super::ArchiveWriter) writes to a local spool
//! (`[backup] archive_spool_dir`, one sub-directory per server) exactly as it writes a local
//! archive; the [`Uploader`] runs beside it and copies each finished segment to
//! `binlog-archive/<server>/` in the bucket, **then** the bucket's `index.json` listing it, and
//! then deletes the spool's copy. A segment is eligible for PITR once the uploaded index lists
//! it, so a reader never sees an index entry without its object.
//!
//! Invariants (what makes the bucket's archive gap- and duplicate-free across crashes):
//! * The bucket's index is always a prefix of the spool's index (same entries, same order),
//!   once the spool's entries below the bucket's first are set aside: with
//!   `[backup] archive_prune` the uploader also prunes the bucket's index from the front (see
//!   [`super::prune`]); the spool's index keeps those entries (their files left the spool
//!   when they were uploaded).
//!   An entry is appended to the bucket's index only after its object is uploaded, and only if
//!   its sequence number is after the bucket's last: uploading a segment twice (a crash
//!   between the object and the index, or an index PUT whose reply was lost) overwrites the
//!   same object and writes the same index, never a duplicate entry.
//! * The spool's copy of a segment is deleted only after the bucket's index lists it; so
//!   every segment the bucket lacks is still in the spool.
//! * [`Uploader::reconcile`] runs before the writer opens the spool: it fetches the bucket's
//!   index; if the spool's index is behind it (a new or lost spool disk), the spool is seeded
//!   with the bucket's index, so the writer resumes from the bucket's end (re-reading the
//!   binlog from the server from there); if the two disagree, it refuses (two archivers, or a
//!   spool of another archive) rather than guess.
//! * Failures (bucket down, network) are retried with backoff for ever while the writer keeps
//!   spooling; each one is logged and counted ([`METRIC_ARCHIVE_UPLOAD_FAILURES`]), the
//!   backlog is a gauge ([`METRIC_ARCHIVE_PENDING_SEGMENTS`]) and both are written to the
//!   spool's [`UPLOAD_STATUS_FILE`], which `fleetsync backup archive status` shows.
//!
//! Memory: a segment is sent with `Store::put_file` (streamed in parts); the index is held
//! in memory (about 450 bytes per segment).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetsync_mysql::archive::format::INDEX_FILE;
use fleetsync_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::prune::{self, Floor, FloorRx};
use super::{ArchiveError, Covered, Index, IndexEntry};
use crate::source::stream::now_ms;

/// Counter: failed upload attempts (a segment or the index). Label `server`.
pub const METRIC_ARCHIVE_UPLOAD_FAILURES: &str = "fleetsync_pitr_archive_upload_failures_total";
/// Gauge: finished segments in the spool not yet in the bucket. Label `server`.
pub const METRIC_ARCHIVE_PENDING_SEGMENTS: &str = "fleetsync_pitr_archive_pending_segments";
/// The uploader's state in the spool directory, for `archive status`.
pub const UPLOAD_STATUS_FILE: &str = "upload-status.json";
/// How often the spool's index is checked for newly finished segments.
const UPLOAD_POLL: Duration = Duration::from_secs(1);
/// Retry delays after a failed upload: 1 s doubling to this.
const MAX_UPLOAD_BACKOFF: Duration = Duration::from_secs(30);
/// At shutdown, how long a last upload of finished segments may take.
const FINAL_UPLOAD: Duration = Duration::from_secs(5);

/// What `archive status` shows about uploading (no credentials: errors are the store's
/// scrubbed one-liners).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadStatus {
    /// Finished segments waiting in the spool.
    pub pending_segments: usize,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub last_upload_ms: Option<u64>,
    /// Commit time of the newest record in the bucket.
    pub uploaded_commit_ms: u64,
    pub updated_ms: u64,
}

impl UploadStatus {
    /// Reads `spool/upload-status.json`; `None` when absent or unreadable.
    pub fn load(spool: &Path) -> Option<UploadStatus> {
        let text = std::fs::read(spool.join(UPLOAD_STATUS_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Copies finished segments from the spool to the bucket. See the module docs.
pub struct Uploader {
    store: Store,
    spool: PathBuf,
    server: String,
    /// The bucket's index as last uploaded (or fetched by [`Uploader::reconcile`]).
    bucket: Index,
    uploaded: Arc<Covered>,
    status: UploadStatus,
    /// The spool index's (mtime, length) when last read with nothing pending.
    seen: Option<(SystemTime, u64)>,
    failures: metrics::Counter,
    pending: metrics::Gauge,
    /// `[backup] archive_prune`: the oldest backup's position, and whether a pass is due
    /// (see [`super::prune`]).
    prune: Option<(FloorRx, bool)>,
}

impl Uploader {
    /// `store` is the server's archive prefix in the bucket; `spool` its spool directory.
    pub fn new(store: Store, spool: &Path, server: &str) -> Uploader {
        let labels = [("server", server.to_string())];
        Uploader {
            store,
            spool: spool.to_path_buf(),
            server: server.to_string(),
            bucket: Index::empty(server),
            uploaded: Arc::new(Covered::default()),
            status: UploadStatus::default(),
            seen: None,
            failures: metrics::counter!(METRIC_ARCHIVE_UPLOAD_FAILURES, &labels),
            pending: metrics::gauge!(METRIC_ARCHIVE_PENDING_SEGMENTS, &labels),
            prune: None,
        }
    }

    /// Prunes the bucket's archive behind the floors `rx` publishes: a pass after the first
    /// upload round, then one per published floor (see [`super::prune`]).
    pub fn prune_with(&mut self, rx: FloorRx) {
        self.prune = Some((rx, true));
    }

    /// A pruning pass when one is due. A failure is logged; uploading goes on.
    pub async fn prune_if_due(&mut self) {
        let Some((rx, due)) = self.prune.as_mut() else {
            return;
        };
        let Some(floor) = prune::take_floor(rx, due) else {
            return;
        };
        if let Err(e) = self.prune_to(&floor).await {
            tracing::warn!(server = %self.server, bucket = %self.store.describe(), error = %e, "binlog archive prune failed (retried at the next pass)");
        }
    }

    /// Shortens the bucket's index to what a replay from `floor` needs, then deletes the
    /// segments it no longer lists, then orphans below its first entry.
    pub async fn prune_to(&mut self, floor: &Floor) -> Result<(), ArchiveError> {
        let n = prune::prunable(&self.bucket.segments, &floor.position.binlog)
            .map_err(ArchiveError::Invalid)?;
        let mut gone = Vec::new();
        if n > 0 {
            let mut next = self.bucket.clone();
            gone = next.segments.drain(..n).collect::<Vec<_>>();
            let text = serde_json::to_vec_pretty(&next)
                .map_err(|err| ArchiveError::Invalid(format!("encoding the index: {err}")))?;
            self.store.put(INDEX_FILE, text.into()).await?;
            self.bucket = next;
            for e in &gone {
                self.store.delete(&e.file).await?;
            }
        }
        let names = self.store.list("").await?;
        let orphans = prune::orphans(names.iter().map(|e| e.key.as_str()), &self.bucket);
        for name in &orphans {
            self.store.delete(name).await?;
        }
        prune::report(
            &self.server,
            &self.store.describe(),
            floor,
            &gone,
            orphans.len(),
            &self.bucket,
        );
        Ok(())
    }

    /// The commit time of the newest record in the bucket (the lag gauge's source).
    pub fn uploaded(&self) -> Arc<Covered> {
        self.uploaded.clone()
    }

    /// Makes the spool agree with the bucket before the writer opens it (see the module
    /// docs); removes spool copies of segments the bucket already has.
    pub async fn reconcile(&mut self) -> Result<(), ArchiveError> {
        crate::owner_only::create_dir_all(&self.spool)
            .map_err(|e| ArchiveError::io(&self.spool, e))?;
        let bucket = self.fetch_index().await?;
        let local = Index::load(&self.spool, &self.server).map_err(ArchiveError::Invalid)?;
        // A pruned bucket's index starts later than the spool's: compare from its first entry.
        let pruned = bucket.segments.first().map_or(0, |b| {
            local.segments.iter().take_while(|l| l.seq < b.seq).count()
        });
        let local_tail = &local.segments[pruned..];
        let common = local_tail
            .iter()
            .zip(&bucket.segments)
            .take_while(|(a, b)| a == b)
            .count();
        if common < local_tail.len() && common < bucket.segments.len() {
            return Err(ArchiveError::Invalid(format!(
                "the archive spool {} and {} disagree at segment {}: another archiver writes there, or the spool belongs to another archive; move the spool away to resume from the bucket",
                self.spool.display(),
                self.store.describe(),
                local_tail[common].seq
            )));
        }
        if bucket.segments.len() > local_tail.len() {
            tracing::warn!(server = %self.server, spool = %self.spool.display(), bucket = %self.store.describe(), local = local.segments.len(), uploaded = bucket.segments.len(), "the archive spool is behind the bucket (a new or lost spool): resuming from the bucket's end");
            super::writer::store_index(&bucket, &self.spool)
                .map_err(|e| ArchiveError::io(&self.spool.join(INDEX_FILE), e))?;
        }
        if let Some(last) = bucket.segments.last() {
            self.uploaded.set(last.last_commit_ms);
            self.status.uploaded_commit_ms = last.last_commit_ms;
        }
        self.bucket = bucket;
        self.remove_uploaded(&self.bucket.segments)?;
        // A segment upload killed mid-way (multipart, above 16 MiB) is redone from the spool;
        // release the parts the server keeps for the abandoned one.
        let aborted = self.store.abort_dangling("").await?;
        if aborted > 0 {
            tracing::info!(server = %self.server, aborted, "aborted multipart uploads left by an interrupted run");
        }
        Ok(())
    }

    async fn fetch_index(&self) -> Result<Index, ArchiveError> {
        match self.store.get(INDEX_FILE).await {
            Ok(bytes) => {
                let place = self.store.describe_key(INDEX_FILE);
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ArchiveError::Invalid(format!("{place}: not UTF-8 text")))?;
                Index::parse(text, &place, &self.server).map_err(ArchiveError::Invalid)
            }
            Err(e) if e.is_not_found() => Ok(Index::empty(&self.server)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the spool's copies of `uploaded` segments (absent ones are fine).
    fn remove_uploaded(&self, uploaded: &[IndexEntry]) -> Result<(), ArchiveError> {
        for e in uploaded {
            let path = self.spool.join(&e.file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(ArchiveError::io(&path, err)),
            }
        }
        Ok(())
    }

    /// Uploads every finished segment the bucket lacks, each followed by the index.
    pub async fn upload_pending(&mut self) -> Result<(), ArchiveError> {
        let index_path = self.spool.join(INDEX_FILE);
        let meta = std::fs::metadata(&index_path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if meta.is_some() && meta == self.seen && self.status.pending_segments == 0 {
            return Ok(());
        }
        let local = Index::load(&self.spool, &self.server).map_err(ArchiveError::Invalid)?;
        let done = self.bucket.segments.last().map_or(0, |e| e.seq);
        let pending: Vec<IndexEntry> = local
            .segments
            .into_iter()
            .filter(|e| e.seq > done)
            .collect();
        self.set_pending(pending.len());
        for e in pending {
            if let Some(prev) = self.bucket.segments.last() {
                if prev.last != e.start {
                    return Err(ArchiveError::Invalid(format!(
                        "{}: segment {} starts at {} but the bucket's archive ends at {}",
                        self.spool.display(),
                        e.seq,
                        e.start,
                        prev.last
                    )));
                }
            }
            let path = self.spool.join(&e.file);
            self.store.put_file(&e.file, &path).await?;
            let mut next = self.bucket.clone();
            next.segments.push(e.clone());
            let text = serde_json::to_vec_pretty(&next)
                .map_err(|err| ArchiveError::Invalid(format!("encoding the index: {err}")))?;
            self.store.put(INDEX_FILE, text.into()).await?;
            self.bucket = next;
            self.uploaded.set(e.last_commit_ms);
            self.status.uploaded_commit_ms = e.last_commit_ms;
            self.status.last_upload_ms = Some(now_ms());
            self.remove_uploaded(std::slice::from_ref(&e))?;
            self.set_pending(self.status.pending_segments.saturating_sub(1));
            tracing::info!(server = %self.server, segment = e.seq, bytes = e.bytes, last = %e.last, bucket = %self.store.describe(), "archive segment uploaded");
        }
        self.seen = meta;
        Ok(())
    }

    fn set_pending(&mut self, n: usize) {
        self.status.pending_segments = n;
        self.pending.set(n as f64);
    }

    /// Uploads until cancelled (then once more, briefly), retrying failures with backoff.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.upload_pending().await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    self.status.consecutive_failures = 0;
                    self.status.last_error = None;
                    self.prune_if_due().await;
                    UPLOAD_POLL
                }
                Err(e) => {
                    self.failed(&e, backoff);
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_UPLOAD_BACKOFF);
                    wait
                }
            };
            self.write_status();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match tokio::time::timeout(FINAL_UPLOAD, self.upload_pending()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed(&e, Duration::ZERO),
            Err(_) => {
                tracing::warn!(server = %self.server, pending = self.status.pending_segments, "stopping with segments not yet uploaded (they are uploaded at the next start)")
            }
        }
        self.write_status();
    }

    /// The one place an upload failure is logged and counted.
    fn failed(&mut self, e: &ArchiveError, retry_in: Duration) {
        self.failures.increment(1);
        self.status.consecutive_failures += 1;
        self.status.last_error = Some(e.to_string());
        self.status.last_error_ms = Some(now_ms());
        tracing::warn!(server = %self.server, error = %e, pending = self.status.pending_segments, ?retry_in, "binlog archive upload failed, retrying (the archiver keeps spooling)");
    }

    fn write_status(&mut self) {
        self.status.updated_ms = now_ms();
        let path = self.spool.join(UPLOAD_STATUS_FILE);
        let written = serde_json::to_vec(&self.status)
            .map_err(std::io::Error::other)
            .and_then(|text| crate::owner_only::write(&path, text));
        if let Err(e) = written {
            tracing::debug!(file = %path.display(), error = %e, "cannot write the upload status");
        }
    }
}

/// Whether an archiver error needs an operator (stop) rather than a retry: a damaged or
/// disagreeing archive, or a bucket that does not exist or refuses the credentials.
pub fn is_fatal(e: &ArchiveError) -> bool {
    matches!(
        e,
        ArchiveError::Invalid(_)
            | ArchiveError::Store(
                StoreError::Denied { .. } | StoreError::NoBucket { .. } | StoreError::Config(_)
            )
    )
}
