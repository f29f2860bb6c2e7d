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
