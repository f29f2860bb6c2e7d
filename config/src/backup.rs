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
    /// Directory holding one sub-directory per backup (and `binlog-archive/`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
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
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            compression: Compression::Zstd,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            encryption_key_file: None,
            encryption_key_env: None,
            retention: Retention::default(),
            threads: None,
            chunk_rows: DEFAULT_BACKUP_CHUNK_ROWS,
            schedule: None,
            archive_binlog: false,
        }
    }
}

fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

fn default_chunk_rows() -> usize {
    DEFAULT_BACKUP_CHUNK_ROWS
}

impl BackupConfig {
    /// `dir`, or an error naming the key when backups are used without it.
    pub fn dir(&self) -> Result<&PathBuf, ConfigError> {
        self.dir.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "backup.dir",
                "required for backups (set [backup] dir = \"...\")",
            )
        })
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
        Ok(())
    }
}
