//! Retention: which backups `fleetsync backup prune` deletes.
//!
//! Rules (`[backup.retention]`): `keep_last = N` keeps the N newest complete backups,
//! `max_age_days = D` keeps complete backups started less than D days ago. A complete backup
//! is deleted only when it is outside every rule given; with no rule nothing is deleted.
//! A failed backup is deleted once a newer complete backup exists. A running backup (maybe
//! in progress in another process) and a directory whose manifest cannot be read are never
//! deleted here: they are reported for the operator.

use std::path::Path;

use chrono::{DateTime, Utc};
use fleetsync_config::Retention;

use super::manifest::{self, Manifest, Status};
use super::BackupError;

/// One backup to delete and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub id: String,
    pub reason: String,
}

/// Decides what to delete among `backups` (any order). Pure: unit-tested.
pub fn plan(backups: &[Manifest], retention: &Retention, now: DateTime<Utc>) -> Vec<Doomed> {
    if retention.keep_last.is_none() && retention.max_age_days.is_none() {
        return Vec::new();
    }
    let started = |m: &Manifest| {
        DateTime::parse_from_rfc3339(&m.started)
            .map(|d| d.with_timezone(&Utc))
            .ok()
    };
    let mut complete: Vec<&Manifest> = backups
        .iter()
        .filter(|m| m.status == Status::Complete)
        .collect();
    // Newest first: by start time, then by the id's `-N` suffix (backups started in the same
    // second get `-2`, `-3`... in the order they were taken).
    complete.sort_by_key(|m| std::cmp::Reverse((started(m), id_seq(&m.id))));
    let mut out = Vec::new();
    for (rank, m) in complete.iter().enumerate() {
        let by_count = retention.keep_last.is_some_and(|n| rank < n);
        let age_days = started(m).map(|s| (now - s).num_seconds() as f64 / 86_400.0);
        let by_age = match (retention.max_age_days, age_days) {
            (Some(d), Some(age)) => age < d as f64,
            // An unparsable start time: keep it rather than guess.
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !by_count && !by_age {
            let mut why = Vec::new();
            if let Some(n) = retention.keep_last {
                why.push(format!("not among the {n} newest"));
            }
            if let (Some(d), Some(age)) = (retention.max_age_days, age_days) {
                why.push(format!("{age:.1} days old (max_age_days = {d})"));
            }
            out.push(Doomed {
                id: m.id.clone(),
                reason: why.join(", "),
            });
        }
    }
    if let Some(newest) = complete.first() {
        for m in backups
            .iter()
            .filter(|m| m.status == Status::Failed && m.started < newest.started)
        {
            out.push(Doomed {
                id: m.id.clone(),
                reason: format!("failed backup, superseded by {}", newest.id),
            });
        }
    }
    out
}

/// The `N` of an id ending in `Z-N` (taken in the same second as an earlier one), else 1.
fn id_seq(id: &str) -> u32 {
    id.rsplit_once("Z-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// What a prune run found: deleted (or, dry-run, to delete) and left for the operator.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<Doomed>,
    /// Backups never deleted automatically (unreadable manifest, still running).
    pub skipped: Vec<(String, String)>,
}

/// Applies [`plan`] to the backups in `dir`.
pub fn prune(dir: &Path, retention: &Retention, dry_run: bool) -> Result<PruneReport, BackupError> {
    let mut report = PruneReport::default();
    let mut good = Vec::new();
    for r in manifest::list(dir)? {
        match r {
            Ok(m) if m.status == Status::Running => {
                report.skipped.push((
                    m.id.clone(),
                    "status running (in progress or crashed)".into(),
                ));
                good.push(m);
            }
            Ok(m) => good.push(m),
            Err((id, e)) => report.skipped.push((id, e)),
        }
    }
    for d in plan(&good, retention, Utc::now()) {
        if !dry_run {
            let path = manifest::backup_dir(dir, &d.id)?;
            // The manifest goes first: an interrupted delete leaves no complete-looking backup.
            let _ = std::fs::remove_file(path.join(manifest::MANIFEST_FILE));
            std::fs::remove_dir_all(&path)
                .map_err(|e| BackupError::file(&path, format!("cannot delete: {e}")))?;
            tracing::info!(backup = %d.id, reason = %d.reason, "backup pruned");
        }
        report.deleted.push(d);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::sample;
    use super::*;

    fn at(id: &str, day: u32, status: Status) -> Manifest {
        let mut m = sample(id, &format!("2024-01-{day:02}T00:00:00Z"));
        m.status = status;
        m
    }

    fn ids(d: &[Doomed]) -> Vec<&str> {
        d.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn keep_last_and_age() {
        let now = DateTime::parse_from_rfc3339("2024-01-11T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let all = vec![
            at("a", 1, Status::Complete),
            at("b", 2, Status::Failed),
            at("c", 5, Status::Complete),
            at("d", 9, Status::Complete),
            at("e", 10, Status::Running),
        ];
        let none = Retention::default();
        assert!(plan(&all, &none, now).is_empty());
        let last2 = Retention {
            keep_last: Some(2),
            max_age_days: None,
        };
        assert_eq!(ids(&plan(&all, &last2, now)), vec!["a", "b"]);
        let last1 = Retention {
            keep_last: Some(1),
            max_age_days: None,
        };
        assert_eq!(ids(&plan(&all, &last1, now)), vec!["c", "a", "b"]);
        // Kept by either rule: c is 6 days old, a is 10.
        let both = Retention {
            keep_last: Some(1),
            max_age_days: Some(7),
        };
        assert_eq!(ids(&plan(&all, &both, now)), vec!["a", "b"]);
    }

    #[test]
    fn same_second_backups_keep_the_later_ones() {
        let now = DateTime::parse_from_rfc3339("2024-01-11T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        // Listed in directory order; all started in the same second.
        let all = vec![
            at("s-20240110T000000Z", 10, Status::Complete),
            at("s-20240110T000000Z-10", 10, Status::Complete),
            at("s-20240110T000000Z-2", 10, Status::Complete),
        ];
        let last2 = Retention {
            keep_last: Some(2),
            max_age_days: None,
        };
        assert_eq!(ids(&plan(&all, &last2, now)), vec!["s-20240110T000000Z"]);
    }
}
