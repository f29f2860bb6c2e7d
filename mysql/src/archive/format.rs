//! On-disk format of the binlog archive: record frames, segment headers and the index.
//!
//! A segment is a sequence of frames `[len: u32 LE][check: 8 bytes][payload: len bytes]`,
//! where `check` is the first 8 bytes of the payload's SHA-256 and the payload's first byte
//! is its kind: [`KIND_HEADER`] (JSON [`SegmentHeader`], always the first frame) or
//! [`KIND_TXN`] (a transaction as `fleetsync_proto::codec::encode_transaction`). The segment
//! being written (`seg-N.open`) holds the frames as is; a finished segment (`seg-N.zst`) is
//! the same bytes as one zstd stream. `index.json` lists the finished segments; a finished
//! segment exists only once its entry is in the index (the index is replaced atomically).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fleetsync_proto::{codec, Position, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the archive's file format (segment header and index).
pub const ARCHIVE_FORMAT: u32 = 1;
/// Frame payload kinds.
pub const KIND_HEADER: u8 = b'H';
pub const KIND_TXN: u8 = b'T';
/// Bytes before a frame's payload.
pub const FRAME_OVERHEAD: u64 = 12;
/// Largest payload accepted when reading: a larger length is corruption, not a transaction.
const MAX_PAYLOAD: u32 = 1 << 30;
pub const INDEX_FILE: &str = "index.json";

/// A finished segment's file name.
pub fn finished_name(seq: u64) -> String {
    format!("seg-{seq:010}.zst")
}

/// The segment being written.
pub fn open_name(seq: u64) -> String {
    format!("seg-{seq:010}.open")
}

/// `(seq, finished?)` of a segment file name; `None` for other files.
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("seg-")?;
    let (num, ext) = rest.split_once('.')?;
    if num.len() != 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq = num.parse().ok()?;
    match ext {
        "zst" => Some((seq, true)),
        "open" => Some((seq, false)),
        _ => None,
    }
}

/// First frame of every segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub format: u32,
    pub server: String,
    pub seq: u64,
    /// Source position the segment continues from: the previous segment's last position, or
    /// where archiving started. Every record in it is after this position.
    pub start: String,
}

/// One finished segment in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub seq: u64,
    pub file: String,
    /// Position the segment continues from (equal to the previous entry's `last`).
    pub start: String,
    /// Position after its first and last record.
    pub first: String,
    pub last: String,
    /// Commit times (ms since the epoch) of its first and last record.
    pub first_commit_ms: u64,
    pub last_commit_ms: u64,
    /// Records stored (transactions and heartbeats) and of those, transactions.
    pub records: u64,
    pub transactions: u64,
    /// Uncompressed and compressed sizes; SHA-256 (hex) of the compressed file.
    pub raw_bytes: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl IndexEntry {
    pub fn start_pos(&self) -> Result<Position, String> {
        parse_pos(&self.start, "start", self.seq)
    }

    pub fn last_pos(&self) -> Result<Position, String> {
        parse_pos(&self.last, "last", self.seq)
    }
}

fn parse_pos(s: &str, field: &str, seq: u64) -> Result<Position, String> {
    s.parse()
        .map_err(|e| format!("segment {seq}: invalid {field} position: {e}"))
}

/// `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    pub server: String,
    pub segments: Vec<IndexEntry>,
}

impl Index {
    /// Reads `dir/index.json`; an absent file is an empty index.
    pub fn load(dir: &Path, server: &str) -> Result<Index, String> {
        let path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Index::empty(server)),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Index::parse(&text, &path.display().to_string(), server)
    }

    /// An empty index of `server`.
    pub fn empty(server: &str) -> Index {
        Index {
            format: ARCHIVE_FORMAT,
            server: server.to_string(),
            segments: Vec::new(),
        }
    }

    /// Parses an index read from `place` (a path or object name, for messages).
    pub fn parse(text: &str, place: &str, server: &str) -> Result<Index, String> {
        let index: Index = serde_json::from_str(text).map_err(|e| {
            format!(
                "{place}: line {}: not a binlog archive index: {e}",
                e.line()
            )
        })?;
        if index.format != ARCHIVE_FORMAT {
            return Err(format!(
                "{place}: archive format {} is not supported (this fleetsync reads {ARCHIVE_FORMAT})",
                index.format
            ));
        }
        if index.server != server {
            return Err(format!(
                "{place}: archive of server {:?}, not {server:?}",
                index.server
            ));
        }
        Ok(index)
    }

    /// The position after the last finished segment (`None` when empty).
    pub fn end(&self) -> Result<Option<Position>, String> {
        self.segments.last().map(|e| e.last_pos()).transpose()
    }
}

/// fsync of a directory, so renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn check_of(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Appends one frame to `out`; returns the bytes written.
pub fn write_frame(out: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<u64> {
    let mut payload = Vec::with_capacity(body.len() + 1);
    payload.push(kind);
    payload.extend_from_slice(body);
    let len =
        u32::try_from(payload.len()).map_err(|_| io::Error::other("record larger than 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&check_of(&payload))?;
    out.write_all(&payload)?;
    Ok(FRAME_OVERHEAD + u64::from(len))
}

/// Why reading a frame stopped.
#[derive(Debug)]
pub enum FrameEnd {
    /// Clean end of data at a frame boundary.
    Eof,
    /// The data ends inside a frame (a torn write).
    Torn,
    /// A complete frame whose check does not match its payload.
    Corrupt(String),
    Io(io::Error),
}

/// Reads the next frame's payload (kind byte first).
pub fn read_frame(input: &mut impl Read) -> Result<Vec<u8>, FrameEnd> {
    let mut head = [0u8; FRAME_OVERHEAD as usize];
    match read_full(input, &mut head)? {
        0 => return Err(FrameEnd::Eof),
        n if n < head.len() => return Err(FrameEnd::Torn),
        _ => {}
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&head[..4]);
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(FrameEnd::Corrupt(format!("impossible record length {len}")));
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(input, &mut payload)? < payload.len() {
        return Err(FrameEnd::Torn);
    }
    if check_of(&payload) != head[4..12] {
        return Err(FrameEnd::Corrupt("record checksum mismatch".into()));
    }
    Ok(payload)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameEnd> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameEnd::Io(e)),
        }
    }
    Ok(got)
}

/// A decoded frame.
#[derive(Debug)]
pub enum Record {
    Header(SegmentHeader),
    Txn(Box<Transaction>),
}

/// Decodes a frame payload.
pub fn decode_record(payload: &[u8]) -> Result<Record, String> {
    match payload.split_first() {
        Some((&KIND_HEADER, body)) => serde_json::from_slice(body)
            .map(Record::Header)
            .map_err(|e| format!("invalid segment header: {e}")),
        Some((&KIND_TXN, body)) => codec::decode_transaction(body)
            .map(|t| Record::Txn(Box::new(t)))
            .map_err(|e| format!("invalid transaction record: {e}")),
        Some((k, _)) => Err(format!("unknown record kind {k}")),
        None => Err("empty record".into()),
    }
}

/// SHA-256 (hex) and length of a file.
pub fn file_sha256(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The archive's key prefix of `server` under `[backup] dir` (local or in a bucket).
pub fn server_key(server: &str) -> String {
    format!("binlog-archive/{server}")
}

/// The archive directory of `server` under `[backup] dir`.
pub fn server_dir(backup_dir: &Path, server: &str) -> PathBuf {
    backup_dir.join("binlog-archive").join(server)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        write_frame(&mut buf, KIND_TXN, b"hello").unwrap();
        write_frame(&mut buf, KIND_TXN, b"world!").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), b"Thello");
        assert_eq!(read_frame(&mut r).unwrap(), b"Tworld!");
        assert!(matches!(read_frame(&mut r), Err(FrameEnd::Eof)));
        // Every truncation inside the second frame is torn, never a record.
        let first = 12 + 6;
        for cut in first + 1..buf.len() {
            let mut r = &buf[first..cut];
            assert!(matches!(read_frame(&mut r), Err(FrameEnd::Torn)), "{cut}");
        }
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = &bad[first..];
        assert!(matches!(read_frame(&mut r), Err(FrameEnd::Corrupt(_))));
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name(&finished_name(7)), Some((7, true)));
        assert_eq!(parse_name(&open_name(12)), Some((12, false)));
        assert_eq!(parse_name("seg-1.zst"), None);
        assert_eq!(parse_name("index.json"), None);
    }
}
