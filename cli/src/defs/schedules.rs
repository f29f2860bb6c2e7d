//! Schedules made over the API: cron entries that run a backup, the health checks of a
//! server, or a scheduled sync (run by `fleetsync run`, see `run::Schedules`).

use fleetsync_config::Config;
use serde::{Deserialize, Serialize};

use super::DefsError;

/// What a schedule runs at each occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// A backup of the server `target` (as `[backup] schedule` does, with its retention).
    Backup,
    /// A run of the scheduled sync `target` to the source's current end (as `once`).
    Sync,
    /// The health checks of the server `target` (metrics and log, as `[health]
    /// interval_secs` does).
    Health,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Backup => "backup",
            ScheduleKind::Sync => "sync",
            ScheduleKind::Health => "health",
        }
    }
}

/// A cron entry made over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// Cron expression, 5 fields or 6 with seconds (UTC).
    pub cron: String,
    pub kind: ScheduleKind,
    /// A server (`backup`, `health`) or a scheduled sync (`sync`).
    pub target: String,
}

/// Schedules checked against the effective configuration: names, cron expressions, targets.
pub(super) fn check_schedules(config: &Config, schedules: &[Schedule]) -> Result<(), DefsError> {
    let mut names = std::collections::HashSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let field = |f: &str| format!("schedules.{}.{f}", s.name);
        let valid = (1..=64).contains(&s.name.len())
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(DefsError::invalid(
                format!("schedules[{i}].name"),
                "must be 1-64 characters of letters, digits, '_' or '-'",
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(DefsError::invalid(
                format!("schedules[{i}].name"),
                format!("duplicate schedule name {:?}", s.name),
            ));
        }
        fleetsync_config::parse_schedule(&s.cron)
            .map_err(|e| DefsError::invalid(field("cron"), e))?;
        match s.kind {
            ScheduleKind::Backup | ScheduleKind::Health => {
                if config.server(&s.target).is_none() {
                    return Err(DefsError::invalid(
                        field("target"),
                        format!("no server named {:?}", s.target),
                    ));
                }
                if s.kind == ScheduleKind::Backup {
                    fleetsync_agent::backup::Settings::from_config(&config.backup).map_err(|e| {
                        DefsError::invalid(field("kind"), format!("[backup] is unusable: {e}"))
                    })?;
                }
            }
            ScheduleKind::Sync => match config.syncs.iter().find(|y| y.name == s.target) {
                None => {
                    return Err(DefsError::invalid(
                        field("target"),
                        format!("no sync named {:?}", s.target),
                    ))
                }
                Some(y) if y.schedule.is_none() => {
                    return Err(DefsError::invalid(
                        field("target"),
                        format!("sync {:?} runs continuously: a schedule can only run a scheduled sync (one with `schedule`)", s.target),
                    ))
                }
                Some(_) => {}
            },
        }
    }
    Ok(())
}
