//! Where backups and the binlog archive are kept: a local directory or an S3 bucket (any
//! S3-compatible server), behind one interface, so every backup, restore, verify, prune and
//! PITR path is the same code for both.
//!
//! Keys are `/`-separated paths relative to the store's root (`[backup] dir`: the directory,
//! or `s3://bucket/prefix`).
//!
//! Invariants:
//! * **A key is written whole or not at all.** Locally a file goes to `NAME.tmp`, is fsynced
//!   and renamed into place. In S3 an object appears only when its PUT (or the multipart
//!   upload's completion) succeeds.
//! * **No dangling multipart uploads.** Before the first part of a large object is sent, a
//!   marker `<dir>/.multipart-<name>` records the upload id; it is deleted once the upload
//!   completes or is aborted. [`Store::delete_prefix`] (the cleanup of a failed or killed
//!   backup) aborts the upload of every marker it finds before deleting, so parts an S3
//!   server keeps for an unfinished upload are released too.
//! * **Bounded memory.** An object is sent from one buffer the caller already holds, or from
//!   a local file in [`PART_BYTES`] parts with at most [`PARTS_IN_FLIGHT`] in flight.
//! * **Secrets stay secret.** Errors are rendered by this crate, one line each, naming the
//!   location and key; anything the server or client said is scrubbed of the access key id,
//!   the secret and the session token before it is shown.

mod credentials;
mod local;
mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use fleetsync_config::{BackupConfig, BackupLocation};
use futures_util::stream::BoxStream;

pub use credentials::Credentials;

/// Objects larger than this are sent as multipart uploads.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of one part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one upload sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// File-name prefix of a multipart-upload marker.
pub const MULTIPART_MARKER: &str = ".multipart-";

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key relative to the store's root.
    pub key: String,
    pub size: u64,
}

/// Why a storage operation failed: one line, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location}: {key} does not exist")]
    NotFound { location: String, key: String },
    #[error("{location}: access denied ({detail}): check the S3 credentials")]
    Denied { location: String, detail: String },
    #[error("{location}: the bucket does not exist")]
    NoBucket { location: String },
    #[error("{location}: {detail}")]
    Failed { location: String, detail: String },
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// True when the key is missing (as opposed to the store failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Local(local::Local),
    S3(s3::S3),
}

/// A backup location opened for use. Cheap to clone (shares one HTTP client).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    location: Arc<BackupLocation>,
}

impl Store {
    /// Opens `[backup] dir` with the `[backup] s3_*` settings and the environment's
    /// credentials. Does not contact the server: [`Store::check`] does.
    pub fn open(cfg: &BackupConfig) -> Result<Store, StoreError> {
        let location = cfg
            .location()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Store::open_location(location, cfg)
    }

    /// Opens `location` (which may differ from `cfg.dir`: an archive under the backup dir).
    pub fn open_location(
        location: BackupLocation,
        cfg: &BackupConfig,
    ) -> Result<Store, StoreError> {
        let backend = match &location {
            BackupLocation::Local(p) => Backend::Local(local::Local::new(p.clone())),
            BackupLocation::S3 { bucket, prefix } => {
                let creds = Credentials::resolve(cfg.s3_credentials_file.as_deref())
                    .map_err(StoreError::Config)?;
                Backend::S3(s3::S3::new(bucket, prefix, cfg, creds, location.display())?)
            }
        };
        Ok(Store {
            backend,
            location: Arc::new(location),
        })
    }

    /// A store for a local directory (tests, tools).
    pub fn local(dir: impl Into<PathBuf>) -> Store {
        let dir = dir.into();
        Store {
            backend: Backend::Local(local::Local::new(dir.clone())),
            location: Arc::new(BackupLocation::Local(dir)),
        }
    }

    /// The same store rooted at `sub` below this root (e.g. `binlog-archive/<server>`).
    pub fn child(&self, sub: &str) -> Store {
        let sub = sub.trim_matches('/');
        let (backend, location) = match &self.backend {
            Backend::Local(l) => {
                let p = l.root().join(sub);
                (
                    Backend::Local(local::Local::new(p.clone())),
                    BackupLocation::Local(p),
                )
            }
            Backend::S3(s) => {
                let s = s.child(sub);
                let loc = BackupLocation::S3 {
                    bucket: s.bucket().to_string(),
                    prefix: s.prefix().to_string(),
                };
                (Backend::S3(s), loc)
            }
        };
        Store {
            backend,
            location: Arc::new(location),
        }
    }

    pub fn location(&self) -> &BackupLocation {
        &self.location
    }

    /// `path` or `s3://bucket/prefix`: for messages and status (no credentials).
    pub fn describe(&self) -> String {
        self.location.display()
    }

    /// How `key` is shown in messages: the full path or `s3://bucket/prefix/key`.
    pub fn describe_key(&self, key: &str) -> String {
        format!("{}/{}", self.describe().trim_end_matches('/'), key)
    }

    /// True for object storage (not a local directory).
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::S3(_))
    }

    /// The local directory, for a local store.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Local(l) => Some(l.root()),
            Backend::S3(_) => None,
        }
    }

    /// Checks that the location can be used: for S3, that the bucket exists and the
    /// credentials may list it (one request); locally, that the directory exists or can be
    /// created. Run at start, so a wrong setting fails at once with one line.
    pub async fn check(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(l) => l.check().await,
            Backend::S3(s) => s.check().await,
        }
    }

    /// Stores `bytes` under `key`, replacing any object there; multipart above
    /// [`MULTIPART_THRESHOLD`].
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(l) => l.put(key, bytes).await,
            Backend::S3(s) => s.put(key, bytes).await,
        }
    }

    /// Stores the local file `path` under `key`, read in parts (never whole in memory).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(l) => l.put_file(key, path).await,
            Backend::S3(s) => s.put_file(key, path).await,
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(l) => l.get(key).await,
            Backend::S3(s) => s.get(key).await,
        }
    }

    /// The object as a stream of chunks (for downloads and large objects).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        match &self.backend {
            Backend::Local(l) => l.get_stream(key).await,
            Backend::S3(s) => s.get_stream(key).await,
        }
    }

    /// The size of `key`, `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Local(l) => l.size(key).await,
            Backend::S3(s) => s.size(key).await,
        }
    }

    /// Every object under `prefix` (recursively; `""` for all), sorted by key.
    /// Multipart markers are included (their names start with [`MULTIPART_MARKER`]).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let mut v = match &self.backend {
            Backend::Local(l) => l.list(prefix).await?,
            Backend::S3(s) => s.list(prefix).await?,
        };
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    /// The names directly below `prefix` that have objects under them (the "directories"),
    /// sorted.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut v = match &self.backend {
            Backend::Local(l) => l.list_dirs(prefix).await?,
            Backend::S3(s) => s.list_dirs(prefix).await?,
        };
        v.sort();
        Ok(v)
    }

    /// Deletes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(l) => l.delete(key).await,
            Backend::S3(s) => s.delete(key).await,
        }
    }

    /// Deletes everything under `prefix` (a backup's directory), first aborting any
    /// multipart upload a marker there records. Returns the number of objects deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Local(l) => l.delete_prefix(prefix).await,
            Backend::S3(s) => s.delete_prefix(prefix).await,
        }
    }
}

impl Store {
    /// Aborts the multipart upload recorded by every marker under `prefix` and deletes those
    /// markers, leaving the objects: the cleanup after a killed upload whose object is then
    /// written again (the binlog archive's uploader, at start). Locally a no-op (no markers).
    /// Returns the number of markers removed.
    pub async fn abort_dangling(&self, prefix: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Local(_) => Ok(0),
            Backend::S3(s) => s.abort_dangling(prefix).await,
        }
    }
}

/// Joins key parts with `/`, skipping empty ones.
pub fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Refuses keys that could leave the root (`..`, absolute paths, empty parts).
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!("invalid key {key:?}"));
    }
    Ok(())
}

/// The marker key recording the multipart upload of `key`.
pub(crate) fn marker_key(key: &str) -> String {
    match key.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{MULTIPART_MARKER}{name}"),
        None => format!("{MULTIPART_MARKER}{key}"),
    }
}

/// The key a marker records the upload of, `None` when `key` is not a marker.
pub(crate) fn marked_key(marker: &str) -> Option<String> {
    let (dir, name) = match marker.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, marker),
    };
    let name = name.strip_prefix(MULTIPART_MARKER)?;
    Some(match dir {
        Some(d) => format!("{d}/{name}"),
        None => name.to_string(),
    })
}

#[cfg(test)]
mod tests;
