//! Retention: which backups `fleetsync backup prune` deletes.
//!
//! Rules (`[backup.retention]`): `keep_last = N` keeps the N newest complete unpinned
//! backups, `max_age_days = D` keeps complete backups started less than D days ago. A
//! complete backup is deleted only when it is outside every rule given; with no rule nothing
//! is deleted. **A pinned backup is never deleted and does not count toward `keep_last`**
//! (pinning a backup keeps it in addition to the N newest). A failed backup (manifests of
//! older versions) is deleted once a newer complete backup exists. A running backup and a
//! directory whose manifest cannot be read are never deleted here: they are reported for the
//! operator. Leftovers of dead runs (no manifest, owner dead or heartbeat stale) are deleted
//! whatever the rules ([`super::running::clean_leftovers`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use fleetsync_config::Retention;
use fleetsync_store::Store;

use super::manifest::{self, Listed, Manifest, Status};
use super::{running, BackupError};

/// One backup to delete and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub id: String,
    pub reason: String,
}

/// Decides what to delete among `backups` (any order); `pinned` ids are never deleted nor
/// counted. Pure: unit-tested.
pub fn plan(
    backups: &[Manifest],
    pinned: &HashSet<String>,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Vec<Doomed> {
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
        .filter(|m| m.status == Status::Complete && !pinned.contains(&m.id))
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
        for m in backups.iter().filter(|m| {
            m.status == Status::Failed && m.started < newest.started && !pinned.contains(&m.id)
        }) {
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

/// Deletes the leftovers of dead runs, then applies [`plan`] to the backups in `root`
/// (`retention` without rules: leftovers only).
pub async fn prune(
    root: &Store,
    retention: &Retention,
    dry_run: bool,
) -> Result<PruneReport, BackupError> {
    let mut report = PruneReport::default();
    for (id, reason) in running::clean_leftovers(root, None, dry_run).await? {
        report.deleted.push(Doomed { id, reason });
    }
    let mut good = Vec::new();
    let mut pinned = HashSet::new();
    for l in manifest::list(root).await? {
        match l {
            Listed::Done {
                manifest: m,
                pinned: p,
            } => {
                if m.status == Status::Running {
                    report.skipped.push((
                        m.id.clone(),
                        "status running (written by an older version: in progress or crashed)"
                            .into(),
                    ));
                }
                if p {
                    pinned.insert(m.id.clone());
                }
                good.push(*m);
            }
            Listed::Running(r) => report.skipped.push((
                r.id.clone(),
                format!("running (owner {} pid {})", r.host, r.pid),
            )),
            Listed::Unreadable(id, e) => report.skipped.push((id, e)),
        }
    }
    for d in plan(&good, &pinned, retention, Utc::now()) {
        if !dry_run {
            delete(root, &d.id).await?;
            tracing::info!(backup = %d.id, reason = %d.reason, "backup pruned");
        }
        report.deleted.push(d);
    }
    Ok(report)
}

/// Deletes backup `id`: the manifest first (an interrupted delete leaves no complete-looking
/// backup, only leftovers the next run removes), then everything under it.
pub async fn delete(root: &Store, id: &str) -> Result<(), BackupError> {
    manifest::check_id(id)?;
    root.delete(&format!("{id}/{}", manifest::MANIFEST_FILE))
        .await?;
    root.delete_prefix(id).await?;
    Ok(())
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
        assert!(plan(&all, &HashSet::new(), &none, now).is_empty());
        let last2 = Retention {
            keep_last: Some(2),
            max_age_days: None,
        };
        assert_eq!(
            ids(&plan(&all, &HashSet::new(), &last2, now)),
            vec!["a", "b"]
        );
        let last1 = Retention {
            keep_last: Some(1),
            max_age_days: None,
        };
        assert_eq!(
            ids(&plan(&all, &HashSet::new(), &last1, now)),
            vec!["c", "a", "b"]
        );
        // Kept by either rule: c is 6 days old, a is 10.
        let both = Retention {
            keep_last: Some(1),
            max_age_days: Some(7),
        };
        assert_eq!(
            ids(&plan(&all, &HashSet::new(), &both, now)),
            vec!["a", "b"]
        );
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
        assert_eq!(
            ids(&plan(&all, &HashSet::new(), &last2, now)),
            vec!["s-20240110T000000Z"]
        );
    }

    #[test]
    fn pinned_backups_are_kept_and_not_counted() {
        let now = DateTime::parse_from_rfc3339("2024-01-11T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let all = vec![
            at("a", 1, Status::Complete),
            at("c", 5, Status::Complete),
            at("d", 9, Status::Complete),
            at("e", 10, Status::Complete),
        ];
        let last1 = Retention {
            keep_last: Some(1),
            max_age_days: None,
        };
        // `e` is pinned: it is kept, and the newest unpinned (`d`) is kept by keep_last.
        let pinned: HashSet<String> = ["e".to_string(), "a".to_string()].into();
        assert_eq!(ids(&plan(&all, &pinned, &last1, now)), vec!["c"]);
        let old = Retention {
            keep_last: None,
            max_age_days: Some(1),
        };
        assert_eq!(ids(&plan(&all, &pinned, &old, now)), vec!["d", "c"]);
    }
}
