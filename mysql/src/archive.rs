//! Reading the binlog archive for point-in-time recovery: its on-disk
//! [`format`](mod@format) and the verifying [`Archive`] reader.
//!
//! The archive is a server's binlog kept continuously beside the backups as fleetsync change
//! records, in `<backup.dir>/binlog-archive/<server>/`: length-framed, checksummed records in
//! a segment file, rolled into zstd files listed with their first/last position, commit times
//! and SHA-256 in `index.json` (see [`format`](mod@format)).
//!
//! Only the reading side (and the frame/index format the writer shares) lives here, so the
//! coordinator can replay an archive for PITR. Writing an archive (the archiver task, its
//! writer, segment rolling and owner-only files) is the agent's: `fleetsync_agent::backup::archive`.
//!
//! Invariants (checked by [`Archive`] when reading): every record's position is after the
//! previous one's; segments chain (each starts where the previous ended); every frame and
//! finished segment matches its checksum.

pub mod format;
mod reader;

use std::path::{Path, PathBuf};

use crate::SourceError;

pub use format::{server_dir, server_key, Index, IndexEntry};
pub use reader::{Archive, Coverage, Flow};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The archive is damaged, incomplete or not what was asked for; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The archive's object storage (or directory) failed; one line, never a credential.
    #[error(transparent)]
    Store(#[from] fleetsync_store::StoreError),
}

impl ArchiveError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
