//! Backups: consistent parallel dumps, manifests, verification, restore and point-in-time
//! recovery from the binlog archive.
//!
//! Every backup file goes through a [`fleetsync_store::Store`]: `[backup] dir` is a local
//! directory or `s3://bucket/prefix`, and create, list, verify, restore, prune and download
//! are the same code for both.
//!
//! Layout of a backup `<dir>/<id>/` (id = `<server>-<UTC yyyymmddThhmmssZ>`, `-N` appended
//! when taken):
//! * `running.json` ([`running`]): while the backup runs, its owner (host, pid), start time
//!   and a heartbeat refreshed every [`running::HEARTBEAT_SECS`]; deleted when it ends.
//! * `schema/<db>.<table>.sql`: `CREATE TABLE` (and `CREATE VIEW`) statements.
//! * `data/<db>.<table>.<NNNNNN>.sql.zst`: multi-row `INSERT` statements of about 1 MiB, one
//!   per line, values rendered by [`fleetsync_proto::sql::push_value`]. An unencrypted file
//!   loads with `zstd -dc FILE | mariadb DB`. Each is uploaded as soon as it is encoded.
//! * `pin.json`: present while the backup is pinned (retention never deletes it).
//! * `manifest.json` ([`manifest`]): written **last**, only when every file is stored, with
//!   per-file sizes and SHA-256, row counts and the snapshot's binlog position. A backup
//!   without it is never listed, verified or restored as complete: it is running (a live
//!   `running.json`) or the leftovers of a dead run, which the next `backup create` or
//!   `backup prune` deletes ([`running::clean_leftovers`]). A failed or cancelled backup
//!   deletes its own objects.
//! * `verified.json`: the outcome of the last `backup verify`.
//!
//! Modules: [`snapshot`] (one read view over N connections), [`chunk`] (splitting tables
//! into key ranges), [`dump`] (`backup create`), [`files`] + [`crypto`] (compression,
//! encryption, checksums), [`verify`], [`restore`], [`prune`], [`running`].

pub mod archive;
pub mod chunk;
pub mod crypto;
pub mod dump;
pub mod files;
pub mod manifest;
mod pool;
pub mod prune;
pub mod restore;
pub mod running;
pub mod snapshot;
mod stage;
pub mod verify;

use std::path::{Path, PathBuf};

use fleetsync_config::{BackupConfig, Compression};
use fleetsync_store::{Store, StoreError};

use crate::SourceError;
pub use crypto::Key;
pub use manifest::Manifest;

/// Unix time of the last complete backup, per server.
pub const METRIC_BACKUP_LAST_SUCCESS: &str = "fleetsync_backup_last_success_timestamp_seconds";
/// Duration of the last complete backup, per server.
pub const METRIC_BACKUP_DURATION: &str = "fleetsync_backup_duration_seconds";
/// Bytes stored by the last complete backup, per server.
pub const METRIC_BACKUP_BYTES: &str = "fleetsync_backup_bytes";
/// Rows in the last complete backup, per server.
pub const METRIC_BACKUP_ROWS: &str = "fleetsync_backup_rows";
/// Backups that failed, per server.
pub const METRIC_BACKUP_FAILURES: &str = "fleetsync_backup_failures_total";

/// Why a backup operation failed. Every variant renders as one line naming what is wrong
/// (the file, table or setting), never a key or password.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A file is missing, damaged or unreadable.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// The operation refuses to go on until the operator changes something.
    #[error("{0}")]
    Refused(String),
    /// The server rejected a statement.
    #[error("server {server}: {message}")]
    Server { server: String, message: String },
    /// The operation was cancelled (its `cancel` token fired); it left nothing behind.
    #[error("cancelled")]
    Cancelled,
    /// The backup location failed (one line naming the location and object, never a
    /// credential).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    pub fn file(path: &Path, message: impl Into<String>) -> BackupError {
        BackupError::File {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// A problem with object `key` of `store` (named as `dir/key` or `s3://bucket/key`).
    pub fn object(store: &Store, key: &str, message: impl Into<String>) -> BackupError {
        BackupError::File {
            path: store.describe_key(key),
            message: message.into(),
        }
    }

    pub fn server(server: &str, message: impl Into<String>) -> BackupError {
        BackupError::Server {
            server: server.to_string(),
            message: message.into(),
        }
    }
}

/// Where the encryption key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    None,
    File(PathBuf),
    Env(String),
}

impl KeySource {
    /// The key, `None` when encryption is not configured.
    pub fn load(&self) -> Result<Option<Key>, BackupError> {
        match self {
            KeySource::None => Ok(None),
            KeySource::File(p) => Key::from_file(p).map(Some).map_err(BackupError::Refused),
            KeySource::Env(v) => Key::from_env(v).map(Some).map_err(BackupError::Refused),
        }
    }

    /// The key needed to read an encrypted backup `id`.
    pub fn require(&self, id: &str) -> Result<Key, BackupError> {
        match self.load()? {
            Some(k) => Ok(k),
            None => Err(BackupError::Refused(format!(
                "backup {id} is encrypted and no key is configured: set [backup] encryption_key_file or encryption_key_env"
            ))),
        }
    }
}

/// `[backup]` resolved for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[backup] dir`: a local directory or a bucket.
    pub store: Store,
    pub compression: Compression,
    pub zstd_level: i32,
    pub key: KeySource,
    pub threads: usize,
    pub chunk_rows: usize,
}

impl Settings {
    pub fn from_config(c: &BackupConfig) -> Result<Settings, BackupError> {
        let store = Store::open(c).map_err(|e| BackupError::Refused(e.to_string()))?;
        let key = match (&c.encryption_key_file, &c.encryption_key_env) {
            (Some(f), _) => KeySource::File(f.clone()),
            (None, Some(v)) => KeySource::Env(v.clone()),
            (None, None) => KeySource::None,
        };
        Ok(Settings {
            store,
            compression: c.compression,
            zstd_level: c.zstd_level,
            key,
            threads: c.threads(),
            chunk_rows: c.chunk_rows,
        })
    }

    /// Checks the location at once (bucket exists, credentials accepted, directory usable):
    /// every command runs this first, so a wrong setting is one line before any work.
    pub async fn check(&self) -> Result<(), BackupError> {
        self.store.check().await.map_err(BackupError::from)
    }

    /// The store rooted at backup `id` (refusing ids that could leave the root).
    pub fn backup(&self, id: &str) -> Result<Store, BackupError> {
        manifest::check_id(id)?;
        Ok(self.store.child(id))
    }

    /// The codec for reading backup `m` (its own compression; the key if it is encrypted).
    pub fn codec_for(&self, m: &Manifest) -> Result<files::Codec, BackupError> {
        let compression = m.compression().map_err(BackupError::Refused)?;
        let key = if m.encrypted {
            Some(self.key.require(&m.id)?)
        } else {
            None
        };
        Ok(files::Codec {
            compression,
            zstd_level: self.zstd_level,
            key,
        })
    }
}

/// Progress of a long operation, for a progress bar (the CLI) or nothing (logs only).
pub trait Progress: Send + Sync {
    /// The work is planned: about `rows` rows in `tables` tables.
    fn planned(&self, tables: usize, rows: u64);
    /// `rows` more rows done.
    fn rows(&self, rows: u64);
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: usize, _: u64) {}
    fn rows(&self, _: u64) {}
    fn finish(&self) {}
}
