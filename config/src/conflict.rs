//! Conflict settings of a sync: what the applier does when a change from the source meets a
//! target row that was changed concurrently (see the coordinator's `apply::conflict`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::{Config, ConfigError, SyncConfig};

/// How a conflict is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictStrategy {
    /// No detection: changes are applied as they come (the fast path).
    #[default]
    None,
    /// The change wins iff its origin server is earlier in `priority` than the target.
    SourceWins,
    /// The target's row is kept: the incoming change is skipped.
    TargetWins,
    /// The version with the greater (`newest_column`, server id) wins.
    NewestWins,
    /// The incoming change is skipped and both versions are parked in `fleetsync.conflicts`.
    Manual,
}

impl ConflictStrategy {
    pub const NAMES: &'static str =
        "none, source_wins, target_wins, newest_wins or manual (or with hyphens: source-wins, ...)";

    /// Parses a strategy name; `_` and `-` are the same (`newest_wins` = `newest-wins`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.replace('_', "-").as_str() {
            "none" => ConflictStrategy::None,
            "source-wins" => ConflictStrategy::SourceWins,
            "target-wins" => ConflictStrategy::TargetWins,
            "newest-wins" => ConflictStrategy::NewestWins,
            "manual" => ConflictStrategy::Manual,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConflictStrategy::None => "none",
            ConflictStrategy::SourceWins => "source-wins",
            ConflictStrategy::TargetWins => "target-wins",
            ConflictStrategy::NewestWins => "newest-wins",
            ConflictStrategy::Manual => "manual",
        }
    }
}

impl fmt::Display for ConflictStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[syncs.tables]]`: per-table conflict overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConflictConfig {
    /// Source `schema.table` (exact, case-sensitive).
    pub name: String,
    /// Overrides the sync's `conflict`.
    #[serde(default)]
    pub conflict: Option<String>,
    /// Overrides the sync's `newest_column`.
    #[serde(default)]
    pub newest_column: Option<String>,
}

/// The resolved strategy of one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TablePolicy {
    pub strategy: ConflictStrategy,
    /// For newest-wins: the column compared.
    pub newest_column: Option<String>,
}

/// The resolved conflict settings of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictPolicy {
    pub default: TablePolicy,
    /// Source `schema.table` -> its override.
    pub tables: BTreeMap<String, TablePolicy>,
    /// For source-wins: server names, earliest wins. Servers not listed come after every
    /// listed one, ordered by name.
    pub priority: Vec<String>,
    /// A member's sync of a bidirectional group: conflicts are decided by rank (row versions
    /// and tombstones), not by before images.
    pub group: bool,
}

impl ConflictPolicy {
    /// The policy of source table `schema`.`table`.
    pub fn table(&self, schema: &str, table: &str) -> &TablePolicy {
        self.tables
            .get(&format!("{schema}.{table}"))
            .unwrap_or(&self.default)
    }

    /// The policy of source table `name` (`schema.table`).
    pub fn table_of(&self, name: &str) -> &TablePolicy {
        self.tables.get(name).unwrap_or(&self.default)
    }

    /// True when no table has detection on: the applier's fast path.
    pub fn is_none(&self) -> bool {
        self.default.strategy == ConflictStrategy::None
            && self
                .tables
                .values()
                .all(|t| t.strategy == ConflictStrategy::None)
    }

    /// Rank of `server` in `priority`: listed servers by position, others after them by name.
    pub fn rank<'a>(&self, server: &'a str) -> (usize, &'a str) {
        match self.priority.iter().position(|p| p == server) {
            Some(i) => (i, ""),
            None => (self.priority.len(), server),
        }
    }
}

fn strategy(field: &str, s: &str) -> Result<ConflictStrategy, ConfigError> {
    ConflictStrategy::parse(s).ok_or_else(|| {
        ConfigError::invalid(
            field,
            format!(
                "unknown conflict strategy {s:?} (expected {})",
                ConflictStrategy::NAMES
            ),
        )
    })
}

impl SyncConfig {
    /// The resolved conflict settings; errors name the field.
    pub fn conflict_policy(&self) -> Result<ConflictPolicy, ConfigError> {
        let field = format!("syncs.{}", self.name);
        let default_strategy = match &self.conflict {
            Some(s) => strategy(&format!("{field}.conflict"), s)?,
            None => ConflictStrategy::None,
        };
        let check = |p: &TablePolicy, at: &str| -> Result<(), ConfigError> {
            if p.strategy == ConflictStrategy::NewestWins {
                match p.newest_column.as_deref() {
                    None => {
                        return Err(ConfigError::invalid(
                            format!("{at}.newest_column"),
                            "required with conflict = \"newest-wins\"",
                        ))
                    }
                    Some("") => {
                        return Err(ConfigError::invalid(
                            format!("{at}.newest_column"),
                            "must not be empty",
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        };
        let default = TablePolicy {
            strategy: default_strategy,
            newest_column: self.newest_column.clone(),
        };
        check(&default, &field)?;
        let mut tables = BTreeMap::new();
        for (i, t) in self.tables.iter().enumerate() {
            let at = format!("{field}.tables[{i}]");
            if t.name.split('.').count() != 2 || t.name.split('.').any(str::is_empty) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("{:?} must be schema.table", t.name),
                ));
            }
            let p = TablePolicy {
                strategy: match &t.conflict {
                    Some(s) => strategy(&format!("{at}.conflict"), s)?,
                    None => default.strategy,
                },
                newest_column: t
                    .newest_column
                    .clone()
                    .or_else(|| default.newest_column.clone()),
            };
            check(&p, &at)?;
            if tables.insert(t.name.clone(), p).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("{:?} listed twice", t.name),
                ));
            }
        }
        Ok(ConflictPolicy {
            default,
            tables,
            priority: self.priority.clone(),
            group: self.group.is_some(),
        })
    }
}

impl Config {
    /// Checks the conflict settings of every sync (part of [`Config::validate`]).
    pub(crate) fn validate_conflicts(&self) -> Result<(), ConfigError> {
        for s in &self.syncs {
            let policy = s.conflict_policy()?;
            let mut seen = std::collections::HashSet::new();
            for p in &policy.priority {
                if self.server(p).is_none() {
                    return Err(ConfigError::invalid(
                        format!("syncs.{}.priority", s.name),
                        format!("no server named {p:?} in [[servers]]"),
                    ));
                }
                if !seen.insert(p) {
                    return Err(ConfigError::invalid(
                        format!("syncs.{}.priority", s.name),
                        format!("{p:?} listed twice"),
                    ));
                }
            }
            // Other servers may be listed (one fleet-wide order shared by several syncs), but a
            // list naming none of this sync's own servers cannot order them: source-wins would
            // silently fall back to ordering by name.
            // (A bidirectional group, before it is expanded, has members instead.)
            let member =
                |p: &String| *p == s.source || s.targets.contains(p) || s.members.contains(p);
            if !policy.priority.is_empty() && !policy.priority.iter().any(member) {
                return Err(ConfigError::invalid(
                    format!("syncs.{}.priority", s.name),
                    format!(
                        "names none of the sync's servers ({} and {}): list its source or targets",
                        s.source,
                        s.targets.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}
