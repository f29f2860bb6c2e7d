//! `[backup]`: where backups and the binlog archive live, how chunks are compressed and
//! encrypted, how many to keep and when to take them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

/// Rows per chunk file: big enough that per-file overhead vanishes, small enough that a
/// table of a few million rows splits across every thread.
pub const DEFAULT_BACKUP_CHUNK_ROWS: usize = 100_000;
/// zstd level 3: zstd's own default; within a few percent of level 9's size at several times
/// the speed.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Chunk compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl Compression {
    /// File-name suffix of a chunk written with this compression.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }
}

/// `retention`: keep the last N backups, or those younger than D days, or both (a backup is
/// pruned when it is outside every rule given).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub keep_last: Option<usize>,
    #[serde(default)]
    pub max_age_days: Option<u64>,
}

/// `[backup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where backups (one sub-directory or key prefix per backup) and `binlog-archive/`
    /// live: a local directory, or `s3://bucket/prefix` (see [`BackupConfig::location`]).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// S3 endpoint for an `s3://` dir (an S3-compatible server: SeaweedFS, MinIO, Ceph...);
    /// AWS's regional endpoint when unset. `AWS_ENDPOINT_URL` is read when this is unset.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// S3 region (default `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    pub s3_region: Option<String>,
    /// Path-style addressing (`http://endpoint/bucket/key`) instead of virtual-hosted
    /// (`http://bucket.endpoint/key`): most self-hosted S3 servers want `true`.
    #[serde(default)]
    pub s3_path_style: bool,
    /// A file with the S3 credentials (AWS's shared-credentials format, profile `default`, or
    /// `aws_access_key_id = ...` / `aws_secret_access_key = ...` lines). Without it the
    /// environment's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub s3_credentials_file: Option<PathBuf>,
    #[serde(default)]
    pub compression: Compression,
    /// zstd level (1-19) when `compression = "zstd"`.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Encrypt every file with the key in this file (created by `fleetsync backup keygen`).
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    /// Or with the key in this environment variable.
    #[serde(default)]
    pub encryption_key_env: Option<String>,
    #[serde(default)]
    pub retention: Retention,
    /// Parallel connections for dump and load (default: the number of CPUs, at least 2).
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// Cron expression: the agent takes a backup of every server it runs for on this schedule.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Archive each server's binlog continuously (in `fleetsync agent`/`run`) for
    /// point-in-time recovery.
    #[serde(default)]
    pub archive_binlog: bool,
    /// With an `s3://` dir: the local directory where the archiver writes the open segment
    /// and keeps finished segments until they are uploaded (one sub-directory per server).
    /// Default `<state_dir>/`[`DEFAULT_ARCHIVE_SPOOL_SUBDIR`]; see [`BackupConfig::archive_spool`].
    #[serde(default)]
    pub archive_spool_dir: Option<PathBuf>,
    /// The archiver deletes the archive's segments that no backup of its server needs: those
    /// before the segment a replay from the oldest complete backup starts in (checked about
    /// once a minute). Off by default: an operator may replay the archive onto a server
    /// restored by other means, from a position older than every backup.
    #[serde(default)]
    pub archive_prune: bool,
}

/// The archive spool's directory under `state_dir` when `archive_spool_dir` is unset: local
/// state of this host (like checkpoints), only needed until segments reach the bucket.
pub const DEFAULT_ARCHIVE_SPOOL_SUBDIR: &str = "binlog-archive-spool";

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_credentials_file: None,
            compression: Compression::Zstd,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            encryption_key_file: None,
            encryption_key_env: None,
            retention: Retention::default(),
            threads: None,
            chunk_rows: DEFAULT_BACKUP_CHUNK_ROWS,
            schedule: None,
            archive_binlog: false,
            archive_spool_dir: None,
            archive_prune: false,
        }
    }
}

fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

fn default_chunk_rows() -> usize {
    DEFAULT_BACKUP_CHUNK_ROWS
}

/// Where `[backup] dir` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupLocation {
    /// A local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix`: `prefix` has no leading or trailing `/` and may be empty.
    S3 { bucket: String, prefix: String },
}

impl BackupLocation {
    /// Parses a `dir` value: `s3://bucket[/prefix]` or a local path.
    pub fn parse(dir: &std::path::Path) -> Result<BackupLocation, String> {
        let text = dir.to_string_lossy();
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.contains("://") {
                return Err(format!(
                    "{text}: only local paths and s3://bucket/prefix locations are supported"
                ));
            }
            return Ok(BackupLocation::Local(dir.to_path_buf()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "s3://{bucket}: a bucket name is 3 to 63 lowercase letters, digits, '-' or '.'"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "s3://{rest}: the prefix has an empty, '.' or '..' part"
            ));
        }
        Ok(BackupLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// How the location is shown to people (never with credentials).
    pub fn display(&self) -> String {
        match self {
            BackupLocation::Local(p) => p.display().to_string(),
            BackupLocation::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            BackupLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

impl BackupConfig {
    /// `dir` when it is a local directory; an error naming the key when backups are used
    /// without it, or when it is an object-storage location (callers that support one use
    /// [`BackupConfig::location`]).
    pub fn dir(&self) -> Result<&PathBuf, ConfigError> {
        let dir = self.dir.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "backup.dir",
                "required for backups (set [backup] dir = \"...\")",
            )
        })?;
        match BackupLocation::parse(dir) {
            Ok(BackupLocation::Local(_)) => Ok(dir),
            Ok(l) => Err(ConfigError::invalid(
                "backup.dir",
                format!("{}: this operation needs a local directory", l.display()),
            )),
            Err(e) => Err(ConfigError::invalid("backup.dir", e)),
        }
    }

    /// Where backups live: a local directory or an `s3://` location.
    pub fn location(&self) -> Result<BackupLocation, ConfigError> {
        let dir = self.dir.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "backup.dir",
                "required for backups (set [backup] dir = \"...\")",
            )
        })?;
        BackupLocation::parse(dir).map_err(|e| ConfigError::invalid("backup.dir", e))
    }

    /// The archive spool (used with an `s3://` dir): `archive_spool_dir`, else
    /// `<state_dir>/binlog-archive-spool`.
    pub fn archive_spool(&self, state_dir: &std::path::Path) -> PathBuf {
        self.archive_spool_dir
            .clone()
            .unwrap_or_else(|| state_dir.join(DEFAULT_ARCHIVE_SPOOL_SUBDIR))
    }

    /// Parallel connections to use.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=19).contains(&self.zstd_level) {
            return Err(ConfigError::invalid("backup.zstd_level", "must be 1 to 19"));
        }
        if self.encryption_key_file.is_some() && self.encryption_key_env.is_some() {
            return Err(ConfigError::invalid(
                "backup",
                "set at most one of encryption_key_file and encryption_key_env",
            ));
        }
        if self.chunk_rows == 0 {
            return Err(ConfigError::invalid(
                "backup.chunk_rows",
                "must be at least 1",
            ));
        }
        if self.threads == Some(0) {
            return Err(ConfigError::invalid("backup.threads", "must be at least 1"));
        }
        if self.retention.keep_last == Some(0) {
            return Err(ConfigError::invalid(
                "backup.retention.keep_last",
                "must be at least 1 (omit it to keep every backup)",
            ));
        }
        if let Some(s) = &self.schedule {
            crate::parse_schedule(s).map_err(|e| ConfigError::invalid("backup.schedule", e))?;
        }
        let s3 = match &self.dir {
            Some(d) => matches!(
                BackupLocation::parse(d).map_err(|e| ConfigError::invalid("backup.dir", e))?,
                BackupLocation::S3 { .. }
            ),
            None => false,
        };
        if !s3 {
            let stray = [
                ("backup.s3_endpoint", self.s3_endpoint.is_some()),
                ("backup.s3_region", self.s3_region.is_some()),
                ("backup.s3_path_style", self.s3_path_style),
                (
                    "backup.s3_credentials_file",
                    self.s3_credentials_file.is_some(),
                ),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    *key,
                    "only applies when [backup] dir is an s3://bucket/prefix location",
                ));
            }
        }
        if let Some(e) = &self.s3_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "backup.s3_endpoint",
                    "must start with http:// or https://",
                ));
            }
        }
        Ok(())
    }
}
