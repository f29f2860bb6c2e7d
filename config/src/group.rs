//! Bidirectional (multi-primary) groups: `mode = "bidirectional"` with `members`.
//!
//! A group is validated as written, then [`Config::expand_groups`] turns it into one one-way
//! sync per member (that member to every other member), so the pipeline, progress rows,
//! status, health and metrics work per (sync, target) as for any one-way sync. The expanded
//! syncs are named `<group>.<member>` (a `.` no user-written sync name can contain) and keep
//! the group's name in [`SyncConfig::group`]. Loop prevention applies as for any cycle
//! ([`Config::loop_prevention`]).
//!
//! Refused here (no server needed): fewer than two members, unknown or repeated members,
//! `source`/`targets` in a group, a `map` (every member holds the same tables under the same
//! names), a group without a converging conflict strategy (`none` or `target_wins` as the
//! group's strategy). Refused at start (they need the servers): a table in two groups, a table
//! in a group and in a one-way sync between two of its members, keyless tables with conflict
//! detection (see the CLI's preflight).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::{Config, ConfigError, ConflictStrategy, SyncConfig};

/// What a `[[syncs]]` entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// `source` to `targets`.
    #[default]
    #[serde(alias = "one-way")]
    OneWay,
    /// Every one of `members` to every other one.
    Bidirectional,
}

/// How often a tombstone GC round starts: a purge needs two completed rounds, so a tombstone
/// lives about two to three intervals once every member is caught up. Five minutes keeps the
/// round's cost (a few queries per member) negligible and tombstone tables small.
pub const DEFAULT_TOMBSTONE_GC_EVERY: &str = "5m";
/// How long a member may block GC (down, or its pipelines failing) before it is evicted: a
/// week covers a long weekend's outage plus the time to notice and repair it; past it the
/// other members' tombstones would grow without limit.
pub const DEFAULT_TOMBSTONE_GC_BOUND: &str = "7d";

/// Parses a duration written as a number and a unit: `ms`, `s`, `m`, `h` or `d` (`"90s"`,
/// `"5m"`, `"7d"`). `None` for anything else, or zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let d = Duration::from_millis(n.checked_mul(ms)?);
    (!d.is_zero()).then_some(d)
}

/// Longest sync name the state tables hold (`sync_name VARCHAR(64)`).
const MAX_SYNC_NAME: usize = 64;

impl Config {
    /// Checks one `mode = "bidirectional"` entry (part of [`Config::validate`]).
    pub(crate) fn validate_group(&self, field: &str, s: &SyncConfig) -> Result<(), ConfigError> {
        if !s.source.is_empty() || !s.targets.is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.source/targets"),
                "not used with mode = \"bidirectional\": list the servers in members",
            ));
        }
        if s.members.len() < 2 {
            return Err(ConfigError::invalid(
                format!("{field}.members"),
                "a bidirectional group needs at least 2 members",
            ));
        }
        let mut seen = HashSet::new();
        for m in &s.members {
            if self.server(m).is_none() {
                return Err(ConfigError::invalid(
                    format!("{field}.members"),
                    format!("no server named {m:?} in [[servers]]"),
                ));
            }
            if !seen.insert(m) {
                return Err(ConfigError::invalid(
                    format!("{field}.members"),
                    format!("{m:?} listed twice"),
                ));
            }
            if s.name.len() + 1 + m.len() > MAX_SYNC_NAME {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!(
                        "{:?} + member {m:?} is longer than {MAX_SYNC_NAME} characters \
                         (each member's pipeline is named group.member)",
                        s.name
                    ),
                ));
            }
        }
        if !s.map.is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.map"),
                "not supported with mode = \"bidirectional\": every member holds the same tables",
            ));
        }
        let policy = s.conflict_policy()?;
        match policy.default.strategy {
            ConflictStrategy::None => {
                return Err(ConfigError::invalid(
                    format!("{field}.conflict"),
                    "a bidirectional group needs newest_wins, source_wins or manual \
                     (without one, concurrent writes leave the members different)",
                ))
            }
            ConflictStrategy::TargetWins => return Err(target_wins(field)),
            _ => {}
        }
        for (i, t) in s.tables.iter().enumerate() {
            let p = policy.table_of(&t.name);
            if p.strategy == ConflictStrategy::TargetWins {
                return Err(target_wins(&format!("{field}.tables[{i}]")));
            }
        }
        for p in &policy.priority {
            if !s.members.contains(p) {
                return Err(ConfigError::invalid(
                    format!("{field}.priority"),
                    format!("{p:?} is not a member of the group"),
                ));
            }
        }
        let (every, bound) = s.tombstone_gc()?;
        if bound < every {
            return Err(ConfigError::invalid(
                format!("{field}.tombstone_gc_bound"),
                "must be at least tombstone_gc_every (a member is evicted only after blocking whole rounds)",
            ));
        }
        Ok(())
    }

    /// Replaces every bidirectional group by one one-way sync per member (see the module
    /// docs). Called by [`Config::load`] after [`Config::validate`].
    pub fn expand_groups(&mut self) {
        let mut out = Vec::with_capacity(self.syncs.len());
        for s in std::mem::take(&mut self.syncs) {
            if s.mode != SyncMode::Bidirectional {
                out.push(s);
                continue;
            }
            for m in &s.members {
                let mut one = s.clone();
                one.name = format!("{}.{m}", s.name);
                one.source = m.clone();
                one.targets = s.members.iter().filter(|t| *t != m).cloned().collect();
                one.group = Some(s.name.clone());
                if one.priority.is_empty() {
                    // source_wins in a group: the members' order unless priority says otherwise.
                    one.priority = s.members.clone();
                }
                out.push(one);
            }
        }
        self.syncs = out;
    }

    /// The bidirectional groups (after [`Config::expand_groups`]): group name -> the
    /// expanded syncs of its members, in member order.
    pub fn groups(&self) -> Vec<(&str, Vec<&SyncConfig>)> {
        let mut out: Vec<(&str, Vec<&SyncConfig>)> = Vec::new();
        for s in &self.syncs {
            let Some(g) = s.group.as_deref() else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| *n == g) {
                Some((_, v)) => v.push(s),
                None => out.push((g, vec![s])),
            }
        }
        out
    }
}

impl SyncConfig {
    /// The name `fleetsync sync pause|resume|cancel` uses: the group's for a group member.
    pub fn control_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// `(tombstone_gc_every, tombstone_gc_bound)`, defaults applied; an unreadable value is an
    /// error naming the key.
    pub fn tombstone_gc(&self) -> Result<(Duration, Duration), ConfigError> {
        let get = |v: &Option<String>, default: &str, key: &str| {
            let text = v.as_deref().unwrap_or(default);
            parse_duration(text).ok_or_else(|| {
                ConfigError::invalid(
                    format!("syncs.{}.{key}", self.control_name()),
                    format!("{text:?} is not a duration: a positive number and a unit (ms, s, m, h, d), e.g. \"5m\""),
                )
            })
        };
        Ok((
            get(
                &self.tombstone_gc_every,
                DEFAULT_TOMBSTONE_GC_EVERY,
                "tombstone_gc_every",
            )?,
            get(
                &self.tombstone_gc_bound,
                DEFAULT_TOMBSTONE_GC_BOUND,
                "tombstone_gc_bound",
            )?,
        ))
    }

    /// Whether this is a member's sync of a bidirectional group (after expansion).
    pub fn is_group(&self) -> bool {
        self.group.is_some()
    }
}

fn target_wins(field: &str) -> ConfigError {
    ConfigError::invalid(
        format!("{field}.conflict"),
        "target_wins cannot converge with several writers of a row (each member would keep \
         its own version): use newest_wins, source_wins or manual in a bidirectional group \
         (target_wins is for a one-way sync into a server whose local edits must survive)",
    )
}
