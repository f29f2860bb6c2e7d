//! Health reports: what `fleetsync health` prints (`--json`) and what the agent's periodic
//! health task exports as metrics.
//!
//! Invariants:
//! * A report has one [`CheckResult`] per check name, always in the same order, also when the
//!   server is unreachable (then every check after `connection` is `skipped`).
//! * [`HealthReport::status`] is derived from the checks by [`Overall::from_checks`]: any `fail`
//!   makes the server `critical`, else any `warn` makes it `degraded`; `pass` and `skipped`
//!   leave it `healthy`.
//! * `evidence` is structured JSON meant for people and scripts; it never holds a password or
//!   a password hash.
//! * A [`Fix`] with `safe = false` is printed for review and never applied automatically.

use serde::{Deserialize, Serialize};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Nothing wrong found.
    Pass,
    /// The check could not run (no connection, a privilege it needs is missing, the server is
    /// remote, a limit was hit); `summary` says why. Does not change the overall status.
    Skipped,
    /// Something to look at; the server works.
    Warn,
    /// Something is broken (or fleetsync cannot work with the server as it is).
    Fail,
}

impl CheckStatus {
    /// The value of the `fleetsync_health_check_status` gauge: 0 pass, 1 warn, 2 fail,
    /// -1 skipped (so that a skipped check does not keep showing its last real result).
    pub fn gauge(self) -> f64 {
        match self {
            CheckStatus::Pass => 0.0,
            CheckStatus::Warn => 1.0,
            CheckStatus::Fail => 2.0,
            CheckStatus::Skipped => -1.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }
}

/// The server's overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Healthy,
    Degraded,
    Critical,
}

impl Overall {
    /// `critical` if any check failed, else `degraded` if any warned, else `healthy`.
    pub fn from_checks(checks: &[CheckResult]) -> Overall {
        let worst = checks.iter().map(|c| c.status).max();
        match worst {
            Some(CheckStatus::Fail) => Overall::Critical,
            Some(CheckStatus::Warn) => Overall::Degraded,
            _ => Overall::Healthy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "healthy",
            Overall::Degraded => "degraded",
            Overall::Critical => "critical",
        }
    }
}

/// SQL that would fix what a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Statements, in order, each complete (no trailing `;`).
    pub sql: Vec<String>,
    /// Whether `fleetsync health --fix` may apply it (after confirmation). Unsafe fixes are
    /// shown for review only.
    pub safe: bool,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable check name (`connection`, `privileges`, ...): the metric's `check` label.
    pub name: String,
    /// Family of checks (`connection`, `access`, `cdc`, `schema`, `data`, `performance`,
    /// `storage`, `replication`).
    pub category: String,
    pub status: CheckStatus,
    /// One line for people.
    pub summary: String,
    /// What was measured or found, as structured JSON.
    pub evidence: serde_json::Value,
    /// Optimisation or repair advice, one sentence each.
    pub suggestions: Vec<String>,
    pub fix: Option<Fix>,
}

/// What happened to one fix statement under `--fix` (or `--fix --dry-run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixOutcome {
    /// The check whose fix this is.
    pub check: String,
    pub sql: String,
    /// True when the statement ran and succeeded.
    pub applied: bool,
    /// Why it was not applied (dry run, unsafe, the server's error).
    pub note: Option<String>,
}

/// The health of one server at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `[[servers]] name`.
    pub server: String,
    pub status: Overall,
    /// RFC 3339 UTC time the checks started.
    pub checked_at: String,
    /// Wall time the checks took, milliseconds.
    pub duration_ms: u64,
    pub checks: Vec<CheckResult>,
    /// Fixes attempted or previewed (only with `--fix`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<FixOutcome>,
}

impl HealthReport {
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: CheckStatus) -> CheckResult {
        CheckResult {
            name: "x".into(),
            category: "y".into(),
            status,
            summary: String::new(),
            evidence: serde_json::Value::Null,
            suggestions: vec![],
            fix: None,
        }
    }

    #[test]
    fn overall_is_the_worst_check_and_skipped_does_not_count() {
        use CheckStatus::*;
        assert_eq!(Overall::from_checks(&[]), Overall::Healthy);
        assert_eq!(
            Overall::from_checks(&[check(Pass), check(Skipped)]),
            Overall::Healthy
        );
        assert_eq!(
            Overall::from_checks(&[check(Warn), check(Pass)]),
            Overall::Degraded
        );
        assert_eq!(
            Overall::from_checks(&[check(Warn), check(Fail), check(Skipped)]),
            Overall::Critical
        );
    }

    #[test]
    fn json_uses_lowercase_names() {
        let json = serde_json::to_value(check(CheckStatus::Warn)).unwrap_or_default();
        assert_eq!(json["status"], "warn");
        assert_eq!(
            serde_json::to_value(Overall::Critical).unwrap_or_default(),
            "critical"
        );
    }
}
