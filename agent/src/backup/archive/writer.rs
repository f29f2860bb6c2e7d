//! The archive writer: a [`Publisher`] that appends the binlog stream's transactions to the
//! open segment and rolls finished segments into zstd files listed in the index.
//!
//! Invariants (what makes the archive its own checkpoint):
//! * Frames are appended and written through to the file (no user-space buffer survives a
//!   `publish`), so after a SIGKILL the file holds every accepted record, possibly followed
//!   by a torn frame. [`ArchiveWriter::open`] truncates that tail and resumes after the last
//!   complete record: no gap (the source is read again from there), no duplicate.
//! * Rolling a segment: compress to `seg-N.zst.tmp`, fsync, rename to `seg-N.zst`; add its
//!   entry to `index.json` (atomic replace: the commit point); remove `seg-N.open`. Recovery
//!   removes a `.zst` without an index entry and a `.open` that has one, so a crash at any
//!   step leaves exactly one copy of every record.
//! * Every segment starts with a header naming the position it continues from, equal to the
//!   previous segment's last position; readers check that chain.
//! * Pruning (`[backup] archive_prune`, see [`super::prune`]) happens here too, between two
//!   appends, so the index has one writer: the shortened index is stored first, then the
//!   files it no longer lists are removed.
//! * Heartbeats (position-only transactions) advance the covered position and time used for
//!   the lag metric at once, but are stored at most every `heartbeat_every`, so an idle server
//!   costs a record every few seconds while a reader can still see how far the archive reaches.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fleetsync_proto::{codec, Position, Transaction};

use super::format::{
    decode_record, file_sha256, finished_name, open_name, parse_name, read_frame, sync_dir,
    write_frame, FrameEnd, Index, IndexEntry, Record, SegmentHeader, ARCHIVE_FORMAT, INDEX_FILE,
    KIND_HEADER, KIND_TXN,
};
use super::prune::{self, Floor, FloorRx};
use super::{ArchiveError, ArchiveOptions, METRIC_ARCHIVED_BYTES, METRIC_ARCHIVED_TRANSACTIONS};
use crate::publish::Publisher;
use crate::SourceError;

/// The segment being written.
struct OpenSegment {
    seq: u64,
    path: PathBuf,
    file: File,
    start: Position,
    first: Option<(Position, u64)>,
    last: Position,
    last_commit_ms: u64,
    records: u64,
    transactions: u64,
    bytes: u64,
    opened: Instant,
}

/// How far the archive reaches: the commit time (ms since the epoch) of the newest archived
/// transaction or heartbeat, shared with the lag gauge.
#[derive(Debug, Default)]
pub struct Covered(AtomicU64);

impl Covered {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Appends to one server's archive directory. See the module docs.
pub struct ArchiveWriter {
    dir: PathBuf,
    server: String,
    opts: ArchiveOptions,
    index: Index,
    open: Option<OpenSegment>,
    next_seq: u64,
    last_stored: Instant,
    covered: Arc<Covered>,
    txns: metrics::Counter,
    bytes: metrics::Counter,
    /// `[backup] archive_prune`: the oldest backup's position, and whether a pass is due
    /// (see [`super::prune`]).
    prune: Option<(FloorRx, bool)>,
}

impl ArchiveWriter {
    /// Opens (creating) `dir`, recovering from an interrupted run: see the module docs.
    pub fn open(dir: &Path, server: &str, opts: ArchiveOptions) -> Result<Self, ArchiveError> {
        crate::owner_only::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
        let index = Index::load(dir, server).map_err(ArchiveError::Invalid)?;
        let indexed: Vec<u64> = index.segments.iter().map(|s| s.seq).collect();
        let mut open_seqs = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ArchiveError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let stale = name.ends_with(".tmp")
                || match parse_name(&name) {
                    Some((seq, true)) => !indexed.contains(&seq),
                    Some((seq, false)) if indexed.contains(&seq) => true,
                    Some((seq, false)) => {
                        open_seqs.push(seq);
                        false
                    }
                    None => false,
                };
            if stale {
                tracing::info!(server, file = %path.display(), "removing a leftover of an interrupted segment roll");
                std::fs::remove_file(&path).map_err(|e| ArchiveError::io(&path, e))?;
            }
        }
        open_seqs.sort_unstable();
        if open_seqs.len() > 1 {
            return Err(ArchiveError::Invalid(format!(
                "{}: several open segments ({open_seqs:?}); only the newest can be current: move the others away",
                dir.display()
            )));
        }
        let covered = Arc::new(Covered::default());
        if let Some(last) = index.segments.last() {
            covered.set(last.last_commit_ms);
        }
        let next_seq = indexed
            .iter()
            .chain(open_seqs.iter())
            .max()
            .map_or(1, |m| m + 1);
        let labels = [("server", server.to_string())];
        let mut writer = ArchiveWriter {
            dir: dir.to_path_buf(),
            server: server.to_string(),
            opts,
            index,
            open: None,
            next_seq,
            last_stored: Instant::now(),
            covered,
            txns: metrics::counter!(METRIC_ARCHIVED_TRANSACTIONS, &labels),
            bytes: metrics::counter!(METRIC_ARCHIVED_BYTES, &labels),
            prune: None,
        };
        if let Some(&seq) = open_seqs.first() {
            writer.open = writer.recover_open(seq)?;
        }
        Ok(writer)
    }

    /// Where the archive ends: the stream resumes here. `None` for an empty archive.
    pub fn resume_position(&self) -> Result<Option<Position>, ArchiveError> {
        if let Some(open) = &self.open {
            return Ok(Some(open.last.clone()));
        }
        match self.index.segments.last() {
            Some(e) => e.last_pos().map(Some).map_err(ArchiveError::Invalid),
            None => Ok(None),
        }
    }

    /// Prunes this (local) archive behind the floors `rx` publishes: a pass at the first
    /// append, then one per published floor (see [`super::prune`]).
    pub fn prune_with(&mut self, rx: FloorRx) {
        self.prune = Some((rx, true));
    }

    /// A pruning pass when one is due: the shortened index first, then the files; then
    /// orphans below the index's first entry. A failure is logged; archiving goes on.
    fn prune_if_due(&mut self) {
        let Some((rx, due)) = self.prune.as_mut() else {
            return;
        };
        let Some(floor) = prune::take_floor(rx, due) else {
            return;
        };
        if let Err(e) = self.prune_to(&floor) {
            tracing::warn!(server = %self.server, dir = %self.dir.display(), error = %e, "binlog archive prune failed (retried at the next pass)");
        }
    }

    fn prune_to(&mut self, floor: &Floor) -> Result<(), ArchiveError> {
        let n = prune::prunable(&self.index.segments, &floor.position.binlog)
            .map_err(ArchiveError::Invalid)?;
        let mut gone = Vec::new();
        if n > 0 {
            let mut next = self.index.clone();
            gone = next.segments.drain(..n).collect::<Vec<_>>();
            store_index(&next, &self.dir)
                .map_err(|e| ArchiveError::io(&self.dir.join(INDEX_FILE), e))?;
            self.index = next;
            for e in &gone {
                remove_if_present(&self.dir.join(&e.file))?;
            }
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| ArchiveError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| ArchiveError::io(&self.dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let orphans = prune::orphans(names.iter().map(String::as_str), &self.index);
        for name in &orphans {
            remove_if_present(&self.dir.join(name))?;
        }
        prune::report(
            &self.server,
            &self.dir.display().to_string(),
            floor,
            &gone,
            orphans.len(),
            &self.index,
        );
        Ok(())
    }

    /// The shared "covered up to" time, for the lag gauge.
    pub fn covered(&self) -> Arc<Covered> {
        self.covered.clone()
    }

    /// Prepares to receive the stream read from `from` (which must be
    /// [`ArchiveWriter::resume_position`] when the archive is not empty).
    pub fn begin(&mut self, from: &Position, now_ms: u64) -> Result<(), ArchiveError> {
        let resume = self.resume_position()?;
        if let Some(r) = &resume {
            if r.binlog != from.binlog {
                return Err(ArchiveError::Invalid(format!(
                    "archive {} ends at {r} but the stream starts at {from}: that would leave a gap",
                    self.dir.display()
                )));
            }
        } else {
            // A new archive starts at the server's current end: it covers "now".
            self.covered.set(now_ms);
        }
        if self.open.is_none() {
            self.open = Some(self.create_segment(from.clone())?);
        }
        Ok(())
    }

    /// Scans `seg-N.open`, truncating a torn or damaged tail. `None` (file removed) when not
    /// even its header survived.
    fn recover_open(&mut self, seq: u64) -> Result<Option<OpenSegment>, ArchiveError> {
        let path = self.dir.join(open_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ArchiveError::io(&path, e))?;
        let mut reader = BufReader::new(&file);
        let mut good = 0u64;
        let mut seg: Option<OpenSegment> = None;
        let cut_reason = loop {
            let payload = match read_frame(&mut reader) {
                Ok(p) => p,
                Err(FrameEnd::Eof) => break None,
                Err(FrameEnd::Torn) => break Some("torn record".to_string()),
                Err(FrameEnd::Corrupt(m)) => break Some(m),
                Err(FrameEnd::Io(e)) => return Err(ArchiveError::io(&path, e)),
            };
            let record = match decode_record(&payload) {
                Ok(r) => r,
                Err(m) => break Some(m),
            };
            match (record, seg.as_mut()) {
                (Record::Header(h), None) => {
                    seg = Some(self.segment_from_header(&path, &file, &h)?);
                }
                (Record::Txn(t), Some(s)) => s.note(&t, payload.len() as u64 + 12),
                _ => break Some("records out of order".to_string()),
            }
            good += payload.len() as u64 + 12;
        };
        drop(reader);
        let total = file
            .metadata()
            .map_err(|e| ArchiveError::io(&path, e))?
            .len();
        if let Some(reason) = cut_reason {
            tracing::warn!(server = %self.server, file = %path.display(), kept_bytes = good, dropped_bytes = total - good, %reason, "truncating the archive's torn tail (those transactions are read from the server again)");
        }
        let Some(mut seg) = seg else {
            std::fs::remove_file(&path).map_err(|e| ArchiveError::io(&path, e))?;
            return Ok(None);
        };
        if good < total {
            file.set_len(good).map_err(|e| ArchiveError::io(&path, e))?;
            file.sync_all().map_err(|e| ArchiveError::io(&path, e))?;
        }
        seg.file
            .seek(SeekFrom::Start(good))
            .map_err(|e| ArchiveError::io(&path, e))?;
        self.covered.set(seg.last_commit_ms);
        Ok(Some(seg))
    }

    fn segment_from_header(
        &self,
        path: &Path,
        file: &File,
        h: &SegmentHeader,
    ) -> Result<OpenSegment, ArchiveError> {
        let start: Position = h.start.parse().map_err(|e| {
            ArchiveError::Invalid(format!("{}: bad header position: {e}", path.display()))
        })?;
        if h.server != self.server {
            return Err(ArchiveError::Invalid(format!(
                "{}: segment of server {:?}, not {:?}",
                path.display(),
                h.server,
                self.server
            )));
        }
        Ok(OpenSegment {
            seq: h.seq,
            path: path.to_path_buf(),
            file: file.try_clone().map_err(|e| ArchiveError::io(path, e))?,
            last: start.clone(),
            start,
            first: None,
            last_commit_ms: 0,
            records: 0,
            transactions: 0,
            bytes: 0,
            opened: Instant::now(),
        })
    }

    fn create_segment(&mut self, start: Position) -> Result<OpenSegment, ArchiveError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(open_name(seq));
        let mut file = crate::owner_only::options()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(|e| ArchiveError::io(&path, e))?;
        let header = SegmentHeader {
            format: ARCHIVE_FORMAT,
            server: self.server.clone(),
            seq,
            start: start.to_string(),
        };
        let body = serde_json::to_vec(&header).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        write_frame(&mut file, KIND_HEADER, &body).map_err(|e| ArchiveError::io(&path, e))?;
        sync_dir(&self.dir).map_err(|e| ArchiveError::io(&self.dir, e))?;
        Ok(OpenSegment {
            seq,
            path,
            file,
            last: start.clone(),
            start,
            first: None,
            last_commit_ms: 0,
            records: 0,
            transactions: 0,
            bytes: 0,
            opened: Instant::now(),
        })
    }

    /// Appends one transaction (or heartbeat); rolls the segment when it is big or old enough.
    pub async fn append(&mut self, txn: Transaction) -> Result<(), ArchiveError> {
        self.prune_if_due();
        let heartbeat = txn.is_empty();
        self.covered.set(txn.commit_ts_ms);
        if heartbeat && self.last_stored.elapsed() < self.opts.heartbeat_every {
            return Ok(());
        }
        let body = codec::encode_transaction(&txn)
            .map_err(|e| ArchiveError::Invalid(format!("encoding a transaction: {e}")))?;
        let Some(seg) = self.open.as_mut() else {
            return Err(ArchiveError::Invalid(
                "archive writer used before begin()".into(),
            ));
        };
        // One write() per frame: unbuffered, so an accepted record is in the file.
        let mut frame = Vec::with_capacity(body.len() + 13);
        let n =
            write_frame(&mut frame, KIND_TXN, &body).map_err(|e| ArchiveError::io(&seg.path, e))?;
        seg.file
            .write_all(&frame)
            .map_err(|e| ArchiveError::io(&seg.path, e))?;
        seg.note(&txn, n);
        self.last_stored = Instant::now();
        if !heartbeat {
            self.txns.increment(1);
        }
        self.bytes.increment(n);
        let roll =
            seg.bytes >= self.opts.segment_bytes || seg.opened.elapsed() >= self.opts.segment_age;
        if roll {
            self.roll().await?;
        }
        Ok(())
    }

    /// Finishes the open segment (see the module docs) and opens the next one.
    async fn roll(&mut self) -> Result<(), ArchiveError> {
        let Some(seg) = self.open.take() else {
            return Ok(());
        };
        let Some((first, first_ms)) = seg.first.clone() else {
            self.open = Some(seg);
            return Ok(());
        };
        seg.file
            .sync_all()
            .map_err(|e| ArchiveError::io(&seg.path, e))?;
        let (src, dir, level) = (seg.path.clone(), self.dir.clone(), self.opts.zstd_level);
        let name = finished_name(seg.seq);
        let dst = self.dir.join(&name);
        let compressed = tokio::task::spawn_blocking(move || compress(&src, &dir, &name, level))
            .await
            .map_err(|e| ArchiveError::Invalid(format!("compression task failed: {e}")))?;
        let (sha256, bytes) = compressed.map_err(|e| ArchiveError::io(&dst, e))?;
        self.index.segments.push(IndexEntry {
            seq: seg.seq,
            file: finished_name(seg.seq),
            start: seg.start.to_string(),
            first: first.to_string(),
            last: seg.last.to_string(),
            first_commit_ms: first_ms,
            last_commit_ms: seg.last_commit_ms,
            records: seg.records,
            transactions: seg.transactions,
            raw_bytes: seg.bytes,
            bytes,
            sha256,
        });
        if let Err(e) = store_index(&self.index, &self.dir) {
            self.index.segments.pop();
            return Err(ArchiveError::io(&self.dir.join("index.json"), e));
        }
        std::fs::remove_file(&seg.path).map_err(|e| ArchiveError::io(&seg.path, e))?;
        tracing::info!(server = %self.server, segment = seg.seq, records = seg.records, raw_bytes = seg.bytes, bytes, last = %seg.last, "archive segment finished");
        let last = seg.last.clone();
        drop(seg);
        self.open = Some(self.create_segment(last)?);
        Ok(())
    }
}

impl OpenSegment {
    fn note(&mut self, txn: &Transaction, bytes: u64) {
        if self.first.is_none() {
            self.first = Some((txn.position.clone(), txn.commit_ts_ms));
        }
        self.last = txn.position.clone();
        self.last_commit_ms = txn.commit_ts_ms;
        self.records += 1;
        if !txn.is_empty() {
            self.transactions += 1;
        }
        self.bytes += bytes;
    }
}

/// Removes `path`; an absent file is fine.
fn remove_if_present(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ArchiveError::io(path, e)),
    }
}

/// zstd-compresses `src` into `dir/name` via a temp file; returns (sha256 hex, size).
fn compress(src: &Path, dir: &Path, name: &str, level: i32) -> std::io::Result<(String, u64)> {
    let tmp = dir.join(format!("{name}.tmp"));
    let input = File::open(src)?;
    let out = crate::owner_only::create(&tmp)?;
    let mut enc = zstd::stream::Encoder::new(out, level)?;
    std::io::copy(&mut BufReader::new(input), &mut enc)?;
    let out = enc.finish()?;
    out.sync_all()?;
    drop(out);
    let dst = dir.join(name);
    std::fs::rename(&tmp, &dst)?;
    sync_dir(dir)?;
    file_sha256(&dst)
}

impl Publisher for ArchiveWriter {
    async fn publish(&mut self, txn: Transaction) -> Result<(), SourceError> {
        self.append(txn)
            .await
            .map_err(|e| SourceError::NeedsOperator {
                server: self.server.clone(),
                message: format!("binlog archive: {e}"),
            })
    }
}

/// Replaces `dir/index.json` atomically (temp file, fsync, rename, fsync of the dir), owner-only.
/// Here rather than beside [`Index::load`] in `fleetsync_mysql::archive::format`: only the
/// writer stores an index, and the owner-only file helpers are the agent's.
pub(super) fn store_index(index: &Index, dir: &Path) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    let mut f = crate::owner_only::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(INDEX_FILE))?;
    sync_dir(dir)
}

/// Options for a writer in tests: tiny segments.
#[cfg(test)]
pub(super) fn test_options() -> ArchiveOptions {
    ArchiveOptions {
        segment_bytes: 300,
        segment_age: std::time::Duration::from_secs(3600),
        heartbeat_every: std::time::Duration::ZERO,
        zstd_level: 3,
        prune_every: super::prune::DEFAULT_PRUNE_EVERY,
    }
}
