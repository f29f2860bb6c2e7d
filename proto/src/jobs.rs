//! Control-plane jobs: what a job is (kind, state, progress, log, result) and the reports of
//! the tasks that run as jobs and that the CLI prints with `--json` (the health and data diff
//! reports live in [`crate::health`] and [`crate::datadiff`]). The same structs travel in the
//! API's answers, so a remote `fleetsync --remote ...` prints exactly what a local run prints.

use serde::{Deserialize, Serialize};

/// The kinds of job (the path segment of `POST /api/v1/jobs/{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Health,
    SchemaDiff,
    DataDiff,
    BackupCreate,
    BackupVerify,
    BackupRestore,
    BackupPrune,
    Export,
    Import,
    HealthFix,
    MigrateGenerate,
    MigrateApply,
    MigrateRollback,
    /// Versioned migrations (`migrate up` over the fleet).
    MigrateUp,
    /// Versioned migrations (`migrate undo`).
    MigrateUndo,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Health => "health",
            JobKind::SchemaDiff => "schema_diff",
            JobKind::DataDiff => "data_diff",
            JobKind::BackupCreate => "backup_create",
            JobKind::BackupVerify => "backup_verify",
            JobKind::BackupRestore => "backup_restore",
            JobKind::BackupPrune => "backup_prune",
            JobKind::Export => "export",
            JobKind::Import => "import",
            JobKind::HealthFix => "health_fix",
            JobKind::MigrateGenerate => "migrate_generate",
            JobKind::MigrateApply => "migrate_apply",
            JobKind::MigrateRollback => "migrate_rollback",
            JobKind::MigrateUp => "migrate_up",
            JobKind::MigrateUndo => "migrate_undo",
        }
    }
}

/// A job's life: (`awaiting_approval` →) `queued` → `running` → one of the final states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waits for a second person's approval (`[api] require_approval`); nothing has run.
    AwaitingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// How far a job is. Counts are what the task counts (rows, bytes, tables); `percent` and
/// `eta_seconds` only when the total is known (estimated row counts for a backup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// What the job is doing now, e.g. `dumping 3 tables`, `comparing app.items`.
    pub phase: String,
    pub rows: u64,
    /// Rows expected in all (an estimate), when known.
    #[serde(default)]
    pub rows_total: Option<u64>,
    pub bytes: u64,
    pub tables_done: u64,
    #[serde(default)]
    pub tables_total: Option<u64>,
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub eta_seconds: Option<f64>,
}

/// One job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub state: JobState,
    /// The name of the token that started it (`cli` for none).
    pub created_by: String,
    /// The request, as given (no secrets: requests name servers, never credentials).
    pub params: serde_json::Value,
    /// RFC 3339 times.
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub progress: JobProgress,
    /// Why it failed (one line), when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The exit code the CLI gives the same outcome (0 success; per kind otherwise).
    #[serde(default)]
    pub exit_code: Option<u8>,
    /// The report (the kind's `--json` report), when the task produced one.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Set when the job needed a second person's approval (`[api] require_approval`).
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// The approval a job needed, and who gave or refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The permission of the route that started the job; the approver must hold it.
    pub permission: String,
    /// The token that approved it (never the one that started it).
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<String>,
    /// The token that rejected it (the job ended `cancelled` without running).
    #[serde(default)]
    pub rejected_by: Option<String>,
    #[serde(default)]
    pub rejected_at: Option<String>,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLogLine {
    pub time: String,
    pub message: String,
}

/// `diff schema --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaDiffReport {
    pub source: String,
    pub target: String,
    pub equal: bool,
    pub differences: Vec<SchemaDifference>,
    pub notes: Vec<String>,
}

/// One difference of a schema diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaDifference {
    pub database: String,
    /// `database`, `table`, `column`, `index`, `foreign_key`, `check`, `table_option`,
    /// `partitioning`, `view` or `trigger`.
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub name: String,
    /// `only_in_source`, `only_in_target`, `changed`, `renamed` or `moved`.
    pub kind: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

impl std::fmt::Display for SchemaDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match &self.table {
            Some(t) => format!("{}.{}", self.database, t),
            None => self.database.clone(),
        };
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        match self.kind.as_str() {
            "only_in_source" => write!(f, "{place}: {} {} only in source", self.object, self.name),
            "only_in_target" => write!(f, "{place}: {} {} only in target", self.object, self.name),
            _ => write!(
                f,
                "{place}: {} {} {}: source {} / target {}",
                self.object,
                self.name,
                self.kind,
                show(&self.source),
                show(&self.target)
            ),
        }
    }
}

/// `backup create --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupCreateReport {
    pub id: String,
    pub server: String,
    /// `complete` (a backup that is not complete is an error, not a report).
    pub status: String,
    pub dir: String,
    pub tables: usize,
    pub views: usize,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub duration_seconds: Option<f64>,
    pub position: Option<String>,
    pub encrypted: bool,
    pub compression: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pinned: bool,
}

/// `backup pin|unpin --json`, `POST /api/v1/backups/{id}/pin|unpin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupPinReport {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub pinned: bool,
}

/// `backup verify --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupVerifyReport {
    pub id: String,
    pub files: usize,
    pub bytes: u64,
    pub statements: u64,
    pub rows: u64,
}

/// `backup restore --json`: the plan (always), the point-in-time replay's plan (with
/// `--to-time`/`--to-gtid`), and what was restored and replayed (not in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRestoreReport {
    pub id: String,
    pub target: String,
    pub dry_run: bool,
    pub plan: RestorePlanReport,
    #[serde(default)]
    pub replay_plan: Option<ReplayPlanReport>,
    #[serde(default)]
    pub restored: Option<RestoredReport>,
    #[serde(default)]
    pub replayed: Option<ReplayedReport>,
}

/// What a restore does (checked before anything changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlanReport {
    pub id: String,
    pub target: String,
    pub position: Option<String>,
    /// (database in the backup, database on the target)
    pub databases: Vec<(String, String)>,
    pub tables: Vec<RestorePlanTable>,
    /// (target database, view)
    pub views: Vec<(String, String)>,
    /// Target objects (database, name, `BASE TABLE` or `VIEW`) that are dropped and replaced.
    pub existing: Vec<(String, String, String)>,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlanTable {
    pub database: String,
    pub target_database: String,
    pub table: String,
    pub rows: u64,
    pub files: usize,
}

/// What a point-in-time replay applies (from the binlog archive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayPlanReport {
    pub server: String,
    pub start: String,
    pub last: Option<String>,
    pub transactions: u64,
    pub rows: u64,
    pub ddl: u64,
    pub first_commit_ms: Option<u64>,
    pub last_commit_ms: Option<u64>,
    pub archive_start: String,
    pub archive_end: String,
    pub archive_end_commit_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredReport {
    pub tables: usize,
    pub rows: u64,
    pub seconds: f64,
    /// The backup's snapshot position.
    pub position: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayedReport {
    pub transactions: u64,
    pub rows: u64,
    pub position: Option<String>,
}

/// One backup of `backup list --json` and `GET /api/v1/backups`: a readable manifest's
/// summary, or (`status: "unreadable"`) the id of a directory whose manifest cannot be read
/// and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupListEntry {
    pub id: String,
    /// `backup create --name`.
    #[serde(default)]
    pub name: Option<String>,
    /// Pinned backups are never deleted by retention.
    #[serde(default)]
    pub pinned: bool,
    /// `running`, `complete`, `failed` or `unreadable`.
    pub status: String,
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub started: Option<String>,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub tables: Option<usize>,
    #[serde(default)]
    pub rows: Option<u64>,
    /// Bytes stored (compressed, encrypted).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// The binlog position of the backup's snapshot.
    #[serde(default)]
    pub position: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// The outcome of the last `backup verify` of this backup (`never` when none was recorded).
    #[serde(default)]
    pub verified: BackupVerified,
}

/// The last verification of a backup, as `backup verify` recorded it beside the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupVerified {
    /// `verified`, `failed` or `never`.
    pub state: String,
    /// When it ended (RFC 3339, UTC); none when `never`.
    #[serde(default)]
    pub at: Option<String>,
    /// Why it failed (one line).
    #[serde(default)]
    pub error: Option<String>,
}

impl Default for BackupVerified {
    fn default() -> Self {
        BackupVerified {
            state: "never".into(),
            at: None,
            error: None,
        }
    }
}

/// `backup prune --json`: what was (or, in a dry run, would be) deleted, and what was kept
/// for the operator to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupPruneReport {
    pub dry_run: bool,
    /// False: no `[backup.retention]` rule is configured, nothing is ever deleted.
    pub rules: bool,
    pub deleted: Vec<PrunedBackup>,
    /// (id, why it was kept although it looks prunable: running, unreadable).
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunedBackup {
    pub id: String,
    pub reason: String,
}

/// `export --json`: the export's manifest summary (`export.json` holds the whole manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    pub server: String,
    /// `sql`, `json` or `csv`.
    pub format: String,
    /// `both`, `schema_only` or `data_only`.
    pub content: String,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The binlog coordinate of the snapshot the rows were read in.
    pub binlog_file: String,
    pub binlog_pos: u64,
    pub gtid: Option<String>,
    /// The files written (the manifest first), relative to the export directory.
    pub files: Vec<String>,
}

/// `import --json`: what was (or would be) loaded, and every problem found in the input
/// (when there is one, nothing was written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub server: String,
    pub dry_run: bool,
    pub tables: Vec<ImportedTable>,
    pub rows: u64,
    pub errors: Vec<ImportProblem>,
    /// Problems beyond the listed ones (counted only).
    pub more_errors: u64,
    pub warnings: u64,
    pub first_warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedTable {
    pub file: String,
    pub source: String,
    pub target: String,
    pub rows: u64,
    /// The table does not exist on the target and is (to be) created.
    pub create: bool,
}

/// One problem of an import's input: file, line (and CSV data row), column, message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportProblem {
    pub file: String,
    pub line: Option<u64>,
    pub row: Option<u64>,
    pub column: Option<String>,
    pub message: String,
    /// The one-line rendering the CLI prints.
    pub text: String,
}

/// `migrate generate --json`: what was written (`up.sql`, `down.sql`, `migration.json`,
/// `report.txt`) and whether it was verified on scratch copies (exit code 3 when not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateGenerateReport {
    pub source: String,
    pub target: String,
    pub verified: bool,
    /// Why it is not verified.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub differences: Vec<SchemaDifference>,
    pub notes: Vec<String>,
    pub up_steps: usize,
    pub down_steps: usize,
    pub files: Vec<String>,
}

/// `migrate apply --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateApplyReport {
    pub target: String,
    /// The migration's name (its directory's name; a job's: the generate job's id).
    pub migration: String,
    /// The schema the target now equals.
    pub source: String,
    pub steps: usize,
    pub warnings: Vec<String>,
    /// Its row in `fleetsync.schema_migrations`.
    pub history_id: u64,
}

/// `migrate rollback --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateRollbackReport {
    pub target: String,
    pub migration: String,
    pub history_id: u64,
    pub steps: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_and_states_are_snake_case() {
        let job = Job {
            id: "j1".into(),
            kind: JobKind::BackupCreate,
            state: JobState::Running,
            created_by: "ci".into(),
            params: serde_json::json!({"server": "a"}),
            created_at: "2026-01-01T00:00:00Z".into(),
            started_at: None,
            finished_at: None,
            progress: JobProgress::default(),
            error: None,
            exit_code: None,
            result: None,
            approval: None,
        };
        let text = serde_json::to_string(&job).expect("serializes");
        assert!(text.contains("\"backup_create\"") && text.contains("\"running\""));
        let back: Job = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, job);
        assert!(JobState::Cancelled.is_final() && !JobState::Queued.is_final());
    }
}
