//! Reading an archive: what it covers, and its transactions in order, verified.
//!
//! Invariants checked (each failure is an [`ArchiveError::Invalid`] naming the file):
//! * every indexed segment file exists and its SHA-256 matches the index (checked when the
//!   segment is read, so a scan that starts late skips older files unread);
//! * the chain is unbroken: each segment starts where the previous one ended, and its header
//!   agrees with its index entry;
//! * every frame's check matches. The open segment may end in a torn frame while the writer is
//!   appending: the scan ends before it.
//!
//! A reader may run beside a live writer: [`Archive::open`] pins the open segment's file
//! handle and retries if the writer rolled it in between, or pruned the archive's front
//! (`[backup] archive_prune`) between reading the index and checking its files (likewise
//! [`Archive::open_store`] for a bucket). A pruned segment is one no replay from a backup
//! reads.
//!
//! An archive in object storage ([`Archive::open_store`] on an `s3://` location) is read the
//! same way: its `index.json` is fetched once; a segment is downloaded when a scan reaches it
//! (never the ones a scan skips), into a private temporary file that is checked against the
//! index's SHA-256, read, and removed before the next one is fetched: at most one segment
//! (compressed) on local disk and one download buffer in memory at a time. Only uploaded
//! segments are in a bucket's index (no open segment): a segment is eligible for PITR once
//! the uploaded index lists it. Scanning a remote archive blocks on the download: call
//! [`Archive::scan`] from a blocking thread (`tokio::task::spawn_blocking`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fleetsync_store::Store;
use futures_util::StreamExt;

use fleetsync_proto::{BinlogPosition, Position, Transaction};

use super::format::{
    decode_record, file_sha256, open_name, read_frame, FrameEnd, Index, IndexEntry, Record,
    INDEX_FILE,
};
use super::ArchiveError;

/// What an archive covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    pub server: String,
    /// Where archiving started (or, pruned, where its first segment starts): every
    /// transaction after it is in the archive.
    pub start: Position,
    /// Commit time (ms since the epoch) of the first stored record; 0 when there is none.
    pub start_commit_ms: u64,
    /// Position after the last stored record (transaction or heartbeat).
    pub end: Position,
    /// Commit time (ms since the epoch) of the last stored record; 0 when there is none.
    pub end_commit_ms: u64,
    pub finished_segments: usize,
    pub transactions: u64,
    pub bytes: u64,
}

/// The open segment as found by [`Archive::open`].
struct OpenPart {
    path: PathBuf,
    file: File,
    start: Position,
    last: Position,
    first_commit_ms: u64,
    last_commit_ms: u64,
    transactions: u64,
    bytes: u64,
}

/// A read-only view of one server's archive: a local directory or a bucket's prefix.
pub struct Archive {
    dir: PathBuf,
    /// The directory or `s3://bucket/prefix`, for messages.
    place: String,
    server: String,
    index: Index,
    open: Option<OpenPart>,
    remote: Option<Remote>,
}

/// An archive in object storage: segments are fetched when a scan needs them.
struct Remote {
    store: Store,
    /// Object names present when the archive was opened.
    present: BTreeSet<String>,
    handle: tokio::runtime::Handle,
}

/// A segment file to read: the archive's own file, or a downloaded copy removed on drop.
struct SegmentFile {
    path: PathBuf,
    temporary: bool,
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a scan callback wants next.
pub enum Flow {
    Continue,
    Stop,
}

impl Archive {
    /// Opens the archive of `server` in `dir`; fails when there is none.
    pub fn open(dir: &Path, server: &str) -> Result<Archive, ArchiveError> {
        if !dir.is_dir() {
            return Err(ArchiveError::Invalid(format!(
                "no binlog archive of server {server} at {} (run `fleetsync backup archive --server {server}` or set [backup] archive_binlog = true)",
                dir.display()
            )));
        }
        for _ in 0..5 {
            let index = Index::load(dir, server).map_err(ArchiveError::Invalid)?;
            let next = index.segments.last().map_or(1, |e| e.seq + 1);
            let path = dir.join(open_name(next));
            let file = match File::open(&path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(ArchiveError::io(&path, e)),
            };
            // The writer may have rolled between the two reads: then start again.
            let again = Index::load(dir, server).map_err(ArchiveError::Invalid)?;
            if ends(&again) != ends(&index) {
                continue;
            }
            let open = match file {
                Some(f) => Some(read_open(&path, f)?),
                None => None,
            };
            let archive = Archive {
                dir: dir.to_path_buf(),
                place: dir.display().to_string(),
                server: server.to_string(),
                index,
                open,
                remote: None,
            };
            if let Err(e) = archive.check_chain() {
                // A pruning pass between reading the index and checking its files: read again.
                let now = Index::load(dir, server).map_err(ArchiveError::Invalid)?;
                if ends(&now) != ends(&archive.index) {
                    continue;
                }
                return Err(e);
            }
            if archive.index.segments.is_empty() && archive.open.is_none() {
                return Err(ArchiveError::Invalid(format!(
                    "the binlog archive of server {server} at {} is empty",
                    dir.display()
                )));
            }
            return Ok(archive);
        }
        Err(ArchiveError::Invalid(format!(
            "{}: the archive kept changing while being opened; try again",
            dir.display()
        )))
    }

    /// Opens the archive of `server` in `store` (`<backup.dir>/binlog-archive/<server>`): a
    /// local directory as [`Archive::open`], or a bucket's prefix (see the module docs).
    pub async fn open_store(store: &Store, server: &str) -> Result<Archive, ArchiveError> {
        if let Some(dir) = store.local_root() {
            return Archive::open(dir, server);
        }
        let mut tries = 0;
        loop {
            let archive = Archive::open_remote(store, server).await?;
            if let Err(e) = archive.check_chain() {
                // A pruning pass between reading the index and listing the objects: again.
                tries += 1;
                let now = Archive::open_remote(store, server).await?;
                if tries < 3 && ends(&now.index) != ends(&archive.index) {
                    continue;
                }
                return Err(e);
            }
            if archive.index.segments.is_empty() {
                return Err(ArchiveError::Invalid(format!(
                    "the binlog archive of server {server} at {} has no uploaded segment yet",
                    archive.place
                )));
            }
            return Ok(archive);
        }
    }

    /// The bucket's index and object names, unchecked.
    async fn open_remote(store: &Store, server: &str) -> Result<Archive, ArchiveError> {
        let place = store.describe();
        let text = match store.get(INDEX_FILE).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                return Err(ArchiveError::Invalid(format!(
                    "no binlog archive of server {server} at {place} (run `fleetsync backup archive --server {server}` or set [backup] archive_binlog = true)"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let index_name = store.describe_key(INDEX_FILE);
        let text = std::str::from_utf8(&text)
            .map_err(|_| ArchiveError::Invalid(format!("{index_name}: not UTF-8 text")))?;
        let index = Index::parse(text, &index_name, server).map_err(ArchiveError::Invalid)?;
        let present = store.list("").await?.into_iter().map(|e| e.key).collect();
        let archive = Archive {
            dir: PathBuf::new(),
            place,
            server: server.to_string(),
            index,
            open: None,
            remote: Some(Remote {
                store: store.clone(),
                present,
                handle: tokio::runtime::Handle::current(),
            }),
        };
        Ok(archive)
    }

    /// The finished segments listed in the index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// How `file` of the archive is named in messages.
    fn name_of(&self, file: &str) -> String {
        match &self.remote {
            Some(r) => r.store.describe_key(file),
            None => self.dir.join(file).display().to_string(),
        }
    }

    fn has(&self, file: &str) -> bool {
        match &self.remote {
            Some(r) => r.present.contains(file),
            None => self.dir.join(file).is_file(),
        }
    }

    /// The segment `e` as a local file: the archive's own, or a fresh download.
    fn fetch(&self, e: &IndexEntry) -> Result<SegmentFile, ArchiveError> {
        let Some(r) = &self.remote else {
            return Ok(SegmentFile {
                path: self.dir.join(&e.file),
                temporary: false,
            });
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "fleetsync-pitr-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            e.file
        ));
        let seg = SegmentFile {
            path,
            temporary: true,
        };
        let mut out = private_file(&seg.path).map_err(|err| ArchiveError::io(&seg.path, err))?;
        r.handle.block_on(async {
            let mut stream = match r.store.get_stream(&e.file).await {
                Err(err) if err.is_not_found() => return Err(self.missing(e)),
                other => other?,
            };
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)
                    .map_err(|err| ArchiveError::io(&seg.path, err))?;
            }
            Ok(())
        })?;
        out.flush()
            .map_err(|err| ArchiveError::io(&seg.path, err))?;
        Ok(seg)
    }

    fn missing(&self, e: &IndexEntry) -> ArchiveError {
        ArchiveError::Invalid(format!(
            "{}: archive segment missing (listed in {}); the archive has a gap from {}",
            self.name_of(&e.file),
            self.name_of(INDEX_FILE),
            e.start
        ))
    }

    fn check_chain(&self) -> Result<(), ArchiveError> {
        let mut prev: Option<(&IndexEntry, Position)> = None;
        for e in &self.index.segments {
            let start = e.start_pos().map_err(ArchiveError::Invalid)?;
            if let Some((p, last)) = &prev {
                if last.binlog != start.binlog {
                    return Err(self.gap(&p.file, &e.file, last, &start));
                }
            }
            if !self.has(&e.file) {
                return Err(self.missing(e));
            }
            prev = Some((e, e.last_pos().map_err(ArchiveError::Invalid)?));
        }
        if let (Some((p, last)), Some(open)) = (&prev, &self.open) {
            if last.binlog != open.start.binlog {
                let name = open.path.to_string_lossy();
                return Err(self.gap(&p.file, &name, last, &open.start));
            }
        }
        Ok(())
    }

    fn gap(&self, a: &str, b: &str, end: &Position, start: &Position) -> ArchiveError {
        ArchiveError::Invalid(format!(
            "{}: gap in the archive: {a} ends at {end} but {b} starts at {start}",
            self.place
        ))
    }

    pub fn coverage(&self) -> Result<Coverage, ArchiveError> {
        let (first_start, start_ms) = match (self.index.segments.first(), &self.open) {
            (Some(e), _) => (
                e.start_pos().map_err(ArchiveError::Invalid)?,
                e.first_commit_ms,
            ),
            (None, Some(o)) => (o.start.clone(), o.first_commit_ms),
            (None, None) => return Err(ArchiveError::Invalid("empty archive".into())),
        };
        let (mut end, mut end_ms) = match self.index.segments.last() {
            Some(e) => (
                e.last_pos().map_err(ArchiveError::Invalid)?,
                e.last_commit_ms,
            ),
            None => (first_start.clone(), 0),
        };
        let mut txns: u64 = self.index.segments.iter().map(|e| e.transactions).sum();
        let mut bytes: u64 = self.index.segments.iter().map(|e| e.bytes).sum();
        if let Some(o) = &self.open {
            end = o.last.clone();
            end_ms = end_ms.max(o.last_commit_ms);
            txns += o.transactions;
            bytes += o.bytes;
        }
        Ok(Coverage {
            server: self.server.clone(),
            start: first_start,
            start_commit_ms: start_ms,
            end,
            end_commit_ms: end_ms,
            finished_segments: self.index.segments.len(),
            transactions: txns,
            bytes,
        })
    }

    /// The last record's commit time among segments that end at or before `pos` and are
    /// skipped by a scan from `pos` (0 when none).
    pub fn commit_ms_before(&self, pos: &BinlogPosition) -> u64 {
        self.index
            .segments
            .iter()
            .filter(|e| e.last_pos().is_ok_and(|l| l.binlog <= *pos))
            .map(|e| e.last_commit_ms)
            .max()
            .unwrap_or(0)
    }

    /// Calls `f` with every stored record (transactions and heartbeats) in order, skipping
    /// segments that end at or before `after` (the caller filters records inside the first
    /// segment read). Verifies each segment it reads; see the module docs.
    pub fn scan(
        &self,
        after: &BinlogPosition,
        mut f: impl FnMut(Transaction) -> Result<Flow, ArchiveError>,
    ) -> Result<(), ArchiveError> {
        for e in &self.index.segments {
            let last = e.last_pos().map_err(ArchiveError::Invalid)?;
            if last.binlog <= *after {
                continue;
            }
            let seg = self.fetch(e)?;
            let path = &seg.path;
            let (sha, _) = file_sha256(path).map_err(|err| ArchiveError::io(path, err))?;
            if sha != e.sha256 {
                return Err(ArchiveError::Invalid(format!(
                    "{}: checksum mismatch (SHA-256 {sha}, index says {}): the segment is damaged",
                    self.name_of(&e.file),
                    e.sha256
                )));
            }
            let file = File::open(path).map_err(|err| ArchiveError::io(path, err))?;
            let dec =
                zstd::stream::Decoder::new(file).map_err(|err| ArchiveError::io(path, err))?;
            let mut input = BufReader::new(dec);
            let shown = PathBuf::from(self.name_of(&e.file));
            if let Flow::Stop = scan_frames(&shown, &mut input, Some(e), false, &mut f)? {
                return Ok(());
            }
        }
        if let Some(o) = &self.open {
            // Only the bytes seen by `open`: the writer may be appending beyond them.
            let mut file = o
                .file
                .try_clone()
                .map_err(|err| ArchiveError::io(&o.path, err))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|err| ArchiveError::io(&o.path, err))?;
            let mut input = BufReader::new(file.take(o.bytes));
            scan_frames(&o.path, &mut input, None, true, &mut f)?;
        }
        Ok(())
    }
}

/// The first and last segment numbers of an index: they change when a segment is rolled or
/// the archive is pruned.
fn ends(i: &Index) -> (Option<u64>, Option<u64>) {
    (
        i.segments.first().map(|e| e.seq),
        i.segments.last().map(|e| e.seq),
    )
}

/// Creates `path` readable by its owner only (a downloaded segment holds row data).
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Reads the open segment once: its header and how far it reaches.
fn read_open(path: &Path, file: File) -> Result<OpenPart, ArchiveError> {
    let len = file
        .metadata()
        .map_err(|e| ArchiveError::io(path, e))?
        .len();
    let mut part = OpenPart {
        path: path.to_path_buf(),
        file: file.try_clone().map_err(|e| ArchiveError::io(path, e))?,
        start: Position::new("", 0),
        last: Position::new("", 0),
        first_commit_ms: 0,
        last_commit_ms: 0,
        transactions: 0,
        bytes: len,
    };
    let mut header_start = None;
    let mut input = BufReader::new(file.take(len));
    let mut on_header = |s: Position| header_start = Some(s);
    scan_open_frames(path, &mut input, &mut on_header, &mut |t: Transaction| {
        if !t.is_empty() {
            part.transactions += 1;
        }
        if part.first_commit_ms == 0 {
            part.first_commit_ms = t.commit_ts_ms;
        }
        part.last = t.position;
        part.last_commit_ms = t.commit_ts_ms;
        Ok(Flow::Continue)
    })?;
    let Some(start) = header_start else {
        return Err(ArchiveError::Invalid(format!(
            "{}: open segment without a header",
            path.display()
        )));
    };
    if part.last.binlog.file.is_empty() {
        part.last = start.clone();
    }
    part.start = start;
    Ok(part)
}

fn scan_open_frames(
    path: &Path,
    input: &mut impl Read,
    on_header: &mut impl FnMut(Position),
    f: &mut impl FnMut(Transaction) -> Result<Flow, ArchiveError>,
) -> Result<Flow, ArchiveError> {
    let mut header = |h: Position| {
        on_header(h);
    };
    scan_frames_inner(path, input, None, true, &mut header, f)
}

fn scan_frames(
    path: &Path,
    input: &mut impl Read,
    entry: Option<&IndexEntry>,
    tail_may_tear: bool,
    f: &mut impl FnMut(Transaction) -> Result<Flow, ArchiveError>,
) -> Result<Flow, ArchiveError> {
    scan_frames_inner(path, input, entry, tail_may_tear, &mut |_| {}, f)
}

/// Reads frames: the header first (checked against `entry`), then transactions for `f`.
/// `tail_may_tear`: a torn or damaged last frame ends the scan (the open segment).
fn scan_frames_inner(
    path: &Path,
    input: &mut impl Read,
    entry: Option<&IndexEntry>,
    tail_may_tear: bool,
    on_header: &mut impl FnMut(Position),
    f: &mut impl FnMut(Transaction) -> Result<Flow, ArchiveError>,
) -> Result<Flow, ArchiveError> {
    let bad = |m: String| ArchiveError::Invalid(format!("{}: {m}", path.display()));
    let mut seen_header = false;
    let mut count = 0u64;
    loop {
        let payload = match read_frame(input) {
            Ok(p) => p,
            Err(FrameEnd::Eof) => break,
            Err(FrameEnd::Torn) | Err(FrameEnd::Corrupt(_)) if tail_may_tear => {
                // Only valid at the very end: anything after a damaged frame is corruption.
                let mut rest = [0u8; 1];
                if input
                    .read(&mut rest)
                    .map_err(|e| ArchiveError::io(path, e))?
                    == 0
                {
                    break;
                }
                return Err(bad(format!("damaged record after {count} records")));
            }
            Err(FrameEnd::Torn) => return Err(bad(format!("truncated after {count} records"))),
            Err(FrameEnd::Corrupt(m)) => return Err(bad(format!("{m} after {count} records"))),
            Err(FrameEnd::Io(e)) => return Err(ArchiveError::io(path, e)),
        };
        match decode_record(&payload).map_err(&bad)? {
            Record::Header(h) if !seen_header => {
                seen_header = true;
                if let Some(e) = entry {
                    if h.seq != e.seq || h.start != e.start {
                        return Err(bad(format!(
                            "header (segment {}, start {}) disagrees with the index (segment {}, start {})",
                            h.seq, h.start, e.seq, e.start
                        )));
                    }
                }
                let start = h.start.parse().map_err(|e| bad(format!("{e}")))?;
                on_header(start);
            }
            Record::Txn(t) if seen_header => {
                count += 1;
                if let Flow::Stop = f(*t)? {
                    return Ok(Flow::Stop);
                }
            }
            _ => return Err(bad(format!("records out of order after {count} records"))),
        }
    }
    if let Some(e) = entry {
        if count != e.records {
            return Err(bad(format!(
                "{count} records, the index says {}",
                e.records
            )));
        }
    }
    Ok(Flow::Continue)
}
