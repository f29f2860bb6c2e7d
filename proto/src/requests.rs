//! The typed requests of the operations that the CLI runs and the API starts as jobs
//! (`POST /api/v1/jobs/{kind}`): one struct per operation, the same for both, so a remote
//! `fleetsync --remote ...` sends exactly what a local run passes to the service layer. The
//! reports they produce are in [`crate::jobs`], [`crate::health`] and [`crate::datadiff`].
//!
//! Unknown fields are refused (`deny_unknown_fields`); defaults are named constants. With the
//! `openapi` feature each request also derives utoipa's `ToSchema` (the API's OpenAPI
//! document); without it this crate stays free of it.

use serde::{Deserialize, Serialize};

/// Default target time of one data diff chunk, milliseconds.
pub const DEFAULT_CHUNK_TIME_MS: u64 = 500;
/// Default: pause while a side's replication lag exceeds this many seconds.
pub const DEFAULT_MAX_LAG: u64 = 10;
/// Default: pause while a side's Threads_running exceeds this.
pub const DEFAULT_MAX_THREADS_RUNNING: u64 = 50;
/// Tables with at most this many rows are copied with their rows for verification.
pub const DEFAULT_VERIFY_ROWS: u64 = 100_000;

fn default_chunk_time_ms() -> u64 {
    DEFAULT_CHUNK_TIME_MS
}
fn default_max_lag() -> u64 {
    DEFAULT_MAX_LAG
}
fn default_max_threads_running() -> u64 {
    DEFAULT_MAX_THREADS_RUNNING
}
fn default_verify_rows() -> u64 {
    DEFAULT_VERIFY_ROWS
}

/// JSON counts as the API documents them (`integer`, `format: int64`, at least 0): any whole
/// JSON number 0..=i64::MAX, also written as `5.0` (JSON Schema's integers include it).
pub mod count {
    use serde::{Deserialize, Deserializer};

    fn whole(n: serde_json::Number) -> Option<u64> {
        let v = match n.as_u64() {
            Some(v) => v,
            None => {
                let f = n.as_f64()?;
                if f.fract() != 0.0 || !(0.0..=i64::MAX as f64).contains(&f) {
                    return None;
                }
                f as u64
            }
        };
        (v <= i64::MAX as u64).then_some(v)
    }

    fn refuse<E: serde::de::Error>(n: &serde_json::Number) -> E {
        E::custom(format!(
            "{n}: must be a whole number from 0 to {}",
            i64::MAX
        ))
    }

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        whole(n.clone()).ok_or_else(|| refuse(&n))
    }

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => whole(n.clone()).map(Some).ok_or_else(|| refuse(&n)),
        }
    }
}

/// Check one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    /// The server to check (`[[servers]] name`).
    pub server: String,
}

/// Check one server and apply the safe fixes (as `fleetsync health --fix`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthFixRequest {
    /// The server to check and fix (`[[servers]] name`).
    pub server: String,
    /// List the fix statements, change nothing (as `--fix --dry-run`).
    #[serde(default)]
    pub plan_only: bool,
    /// Apply the safe fixes (as `--yes`); needed unless `plan_only`.
    #[serde(default)]
    pub confirm: bool,
}

/// Compare two schemas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SchemaDiffRequest {
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file (on the coordinator's machine).
    pub source: String,
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file.
    pub target: String,
    /// `OLD=NEW`: table OLD on the target is table NEW on the source.
    #[serde(default)]
    pub rename_table: Vec<String>,
    /// `TABLE.OLD=NEW`: column OLD on the target is column NEW of source table TABLE.
    #[serde(default)]
    pub rename_column: Vec<String>,
    /// Server that loads a `.sql` side into a scratch database (default: the other side's).
    #[serde(default)]
    pub scratch_server: Option<String>,
}

/// Per-row strength of chunk checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    /// One CRC32 per row, as pt-table-checksum.
    #[default]
    Crc32,
    /// CRC32 and CRC32C (about 2^-64 for a changed row to go unnoticed).
    Crc64,
}

/// Compare two servers' (or databases') rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DataDiffRequest {
    /// `SERVER` or `SERVER/DATABASE`.
    pub source: String,
    /// `SERVER` or `SERVER/DATABASE`.
    pub target: String,
    /// Only tables whose `database.table` (source names) matches one of these anchored regexes.
    #[serde(default)]
    pub include: Vec<String>,
    /// Target time of one chunk in milliseconds (at least 1).
    #[serde(default = "default_chunk_time_ms", deserialize_with = "count::one")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 9223372036854775807_i64)
    )]
    pub chunk_time_ms: u64,
    /// Pause while a side's replication lag exceeds this many seconds (0 = no check).
    #[serde(default = "default_max_lag", deserialize_with = "count::one")]
    pub max_lag: u64,
    /// Pause while a side's Threads_running exceeds this (0 = no check).
    #[serde(
        default = "default_max_threads_running",
        deserialize_with = "count::one"
    )]
    pub max_threads_running: u64,
    /// Skip tables estimated to hold more rows than this on either side.
    #[serde(default, deserialize_with = "count::opt")]
    pub max_table_rows: Option<u64>,
    /// Stop comparing a table after this many seconds (it is reported as skipped).
    #[serde(default, deserialize_with = "count::opt")]
    pub max_table_seconds: Option<u64>,
    #[serde(default)]
    pub checksum: Checksum,
    /// As a job: also write the SQL that makes the target equal the source to the job's
    /// file `repair.sql` (`GET /api/v1/jobs/{id}/files/repair.sql`). The CLI's
    /// `--repair-sql FILE` names its own file.
    #[serde(default)]
    pub repair_sql: bool,
}

/// Back up a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupCreateRequest {
    /// `[[servers]] name`.
    pub server: String,
    /// `schema.table` regexes to include (default: every table of every user database).
    #[serde(default)]
    pub include: Vec<String>,
    /// A name for the backup, unique among the backups, accepted wherever an id is.
    #[serde(default)]
    pub name: Option<String>,
    /// Pin the backup: retention never deletes it (until `backup unpin`).
    #[serde(default)]
    pub pin: bool,
}

/// Verify a stored backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupVerifyRequest {
    /// The backup's id (as listed).
    pub id: String,
}

/// Restore a backup to a server, optionally rolled forward to a point in time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupRestoreRequest {
    /// The backup's id (as listed).
    pub id: String,
    /// `[[servers]] name` of the target.
    pub to_server: String,
    /// `OLD=NEW`: restore database OLD as NEW.
    #[serde(default)]
    pub rename_db: Vec<String>,
    /// Replay the archived binlog up to this time (`YYYY-MM-DD HH:MM:SS`, UTC).
    #[serde(default)]
    pub to_time: Option<String>,
    /// Replay the archived binlog up to and including this GTID position (`D-S-N[,...]`).
    #[serde(default)]
    pub to_gtid: Option<String>,
    /// Verify and plan only (as `--dry-run`): change nothing.
    #[serde(default)]
    pub plan_only: bool,
    /// Drop and replace target tables/views that already exist (as `--yes`); without it a
    /// restore that would replace something fails and changes nothing.
    #[serde(default)]
    pub confirm: bool,
}

/// Delete the backups outside `[backup.retention]` (`fleetsync backup prune`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupPruneRequest {
    /// Report what would be deleted and delete nothing (as `--dry-run`).
    #[serde(default)]
    pub plan_only: bool,
    /// Needed to delete anything (the API's `"confirm": true`; the CLI's own run sets it).
    #[serde(default)]
    pub confirm: bool,
}

/// The file format of an export or import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Sql,
    Json,
    Csv,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 3] = [Format::Sql, Format::Json, Format::Csv];

    /// The name in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown format {s:?} (sql, json or csv)"))
    }
}

/// What an import does with a row whose key exists on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    Skip,
    Replace,
    Update,
    #[default]
    Error,
}

impl OnConflict {
    /// Every choice, in the order the CLI lists them.
    pub const ALL: [OnConflict; 4] = [
        OnConflict::Skip,
        OnConflict::Replace,
        OnConflict::Update,
        OnConflict::Error,
    ];

    /// The name in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Skip => "skip",
            OnConflict::Replace => "replace",
            OnConflict::Update => "update",
            OnConflict::Error => "error",
        }
    }
}

impl std::str::FromStr for OnConflict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OnConflict::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown on_conflict {s:?} (skip, replace, update or error)"))
    }
}

/// Export tables of a server into files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `[[servers]] name`.
    pub server: String,
    pub format: Format,
    /// `schema.table` regexes to include (default: every user table).
    #[serde(default)]
    pub include: Vec<String>,
    /// `schema.table` regexes to exclude.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Only the table definitions.
    #[serde(default)]
    pub schema_only: bool,
    /// Only the rows.
    #[serde(default)]
    pub data_only: bool,
}

impl ExportRequest {
    /// The field (`include[i]` or `exclude[j]`) of pattern `i` of `include` then `exclude`
    /// (the order a table filter is built in), for an error that names it.
    pub fn pattern_field(&self, i: usize) -> String {
        if i < self.include.len() {
            format!("include[{i}]")
        } else {
            format!("exclude[{}]", i - self.include.len())
        }
    }
}

/// Import an export directory into a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// `[[servers]] name`.
    pub server: String,
    pub format: Format,
    /// `OLD=NEW`: import database OLD as NEW.
    #[serde(default)]
    pub rename_db: Vec<String>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Validate and report; change nothing (as `--dry-run`).
    #[serde(default)]
    pub plan_only: bool,
    /// Keep foreign-key checks on during the load.
    #[serde(default)]
    pub fk_checks: bool,
}

/// Write (and verify on scratch copies) the migration that makes TARGET's schema equal
/// SOURCE's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateGenerateRequest {
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file (on the coordinator's machine).
    pub source: String,
    /// `SERVER` or `SERVER/DATABASE`.
    pub target: String,
    /// Copy tables with at most this many rows (estimated) with their rows for verification.
    #[serde(default = "default_verify_rows", deserialize_with = "count::one")]
    pub verify_rows: u64,
    /// `OLD=NEW`: table OLD on the target is table NEW on the source.
    #[serde(default)]
    pub rename_table: Vec<String>,
    /// `TABLE.OLD=NEW`: column OLD on the target is column NEW of source table TABLE.
    #[serde(default)]
    pub rename_column: Vec<String>,
    /// Server that loads a `.sql` side into a scratch database (default: the other side's).
    #[serde(default)]
    pub scratch_server: Option<String>,
}

/// Apply a generated, verified migration to TARGET.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateApplyRequest {
    /// `SERVER` or `SERVER/DATABASE`.
    pub target: String,
    /// The id of the succeeded `migrate_generate` job whose migration is applied.
    pub migration_job: String,
    /// Apply (as `--yes`): needed.
    #[serde(default)]
    pub confirm: bool,
}

/// Undo TARGET's latest applied migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateRollbackRequest {
    /// `SERVER` or `SERVER/DATABASE`.
    pub target: String,
    /// Roll back (as `--yes`): needed.
    #[serde(default)]
    pub confirm: bool,
}

/// Default `canary` of a `migrate-up` job (as the CLI's `--canary`): one server first, alone.
pub const DEFAULT_MIGRATE_CANARY: u64 = 1;
/// Default `wave` of a `migrate-up` job (as the CLI's `--wave`): then one server at a time.
pub const DEFAULT_MIGRATE_WAVE: u64 = 1;

fn default_canary() -> u64 {
    DEFAULT_MIGRATE_CANARY
}

fn default_wave() -> u64 {
    DEFAULT_MIGRATE_WAVE
}

/// Run a versioned-migration folder's pending files over the fleet (`fleetsync migrate up
/// --dir`): canaries one at a time, then waves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateUpRequest {
    /// The folder, relative to the coordinator's `[migrations] dir` (no `..`, not absolute).
    pub dir: String,
    /// Globs over server names, comma-separated; default: every server.
    #[serde(default)]
    pub servers: Option<String>,
    /// `fleetsync` (default) or `trinitycore`.
    #[serde(default)]
    pub history: Option<String>,
    /// The database the files run in (and the history scope).
    #[serde(default)]
    pub database: Option<String>,
    /// Stop at this version (default: the last file).
    #[serde(default)]
    pub to: Option<String>,
    /// The first N servers with work are canaries (one at a time, then checked).
    #[serde(default = "default_canary", deserialize_with = "count::one")]
    pub canary: u64,
    /// The rest run this many at once (at least 1).
    #[serde(default = "default_wave", deserialize_with = "count::one")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 9223372036854775807_i64)
    )]
    pub wave: u64,
    /// A failure in a wave stops the rollout after that wave.
    #[serde(default)]
    pub halt_on_error: bool,
    /// Run (as `--yes`): needed.
    #[serde(default)]
    pub confirm: bool,
}

/// Undo the latest applied versioned migration (or down to `to`) on the selected servers
/// (`fleetsync migrate undo --dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateUndoRequest {
    /// The folder, relative to the coordinator's `[migrations] dir` (no `..`, not absolute).
    pub dir: String,
    /// Globs over server names, comma-separated; default: every server.
    #[serde(default)]
    pub servers: Option<String>,
    /// `fleetsync` (default; TrinityCore's history has no undo files).
    #[serde(default)]
    pub history: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    /// Undo down to (not including) this version; default: the latest only.
    #[serde(default)]
    pub to: Option<String>,
    /// Undo (as `--yes`): needed.
    #[serde(default)]
    pub confirm: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
            assert_eq!(serde_json::to_value(f).ok(), Some(f.as_str().into()));
        }
        for c in OnConflict::ALL {
            assert_eq!(c.as_str().parse::<OnConflict>(), Ok(c));
            assert_eq!(serde_json::to_value(c).ok(), Some(c.as_str().into()));
        }
        assert!("xml".parse::<Format>().is_err());
        assert!("ignore".parse::<OnConflict>().is_err());
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let r: DataDiffRequest =
            serde_json::from_str(r#"{"source":"a","target":"b","max_lag":5.0}"#).expect("parse");
        assert_eq!(r.chunk_time_ms, DEFAULT_CHUNK_TIME_MS);
        assert_eq!(r.max_lag, 5);
        assert_eq!(r.max_threads_running, DEFAULT_MAX_THREADS_RUNNING);
        assert_eq!(r.checksum, Checksum::Crc32);
        assert!(serde_json::from_str::<DataDiffRequest>(
            r#"{"source":"a","target":"b","max_lag":1.5}"#
        )
        .is_err());
        assert!(serde_json::from_str::<HealthRequest>(r#"{"server":"a","x":1}"#).is_err());
        let m: MigrateGenerateRequest =
            serde_json::from_str(r#"{"source":"a","target":"b"}"#).expect("parse");
        assert_eq!(m.verify_rows, DEFAULT_VERIFY_ROWS);
        let e = ExportRequest {
            server: "s".into(),
            format: Format::Csv,
            include: vec!["a".into()],
            exclude: vec!["b".into(), "c".into()],
            schema_only: false,
            data_only: false,
        };
        assert_eq!(e.pattern_field(0), "include[0]");
        assert_eq!(e.pattern_field(2), "exclude[1]");
    }
}
