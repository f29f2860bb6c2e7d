//! `[coordinator]`: coordinators that share a fleet's (sync, target) pairs through Kafka's
//! group protocol (see docs/scaling.md). Without `group` every coordinator runs every pair and
//! the target-side lock keeps all but one of them on standby (the behaviour before groups).

use serde::Deserialize;

use crate::ConfigError;

/// Kafka's own consumer default: a member silent for 10 s is declared dead and its pairs move.
/// Shorter means faster takeover but more false alarms on a busy machine.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;
/// The broker refuses sessions below `group.min.session.timeout.ms` (6 s by default).
pub const MIN_SESSION_TIMEOUT_MS: u64 = 6_000;
/// ... and above `group.max.session.timeout.ms` (30 min by default).
pub const MAX_SESSION_TIMEOUT_MS: u64 = 1_800_000;

/// `[coordinator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Coordinators with the same group share the fleet's pairs (`None`: no group).
    #[serde(default)]
    pub group: Option<String>,
    /// How long a member may stay silent before the group gives its pairs to others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
}

fn default_session_timeout_ms() -> u64 {
    DEFAULT_SESSION_TIMEOUT_MS
}

impl CoordinatorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(g) = &self.group {
            let ok = !g.is_empty()
                && g.len() <= 64
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::invalid(
                    "coordinator.group",
                    "must be 1-64 characters of letters, digits, '.', '_' or '-'",
                ));
            }
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&self.session_timeout_ms) {
            return Err(ConfigError::invalid(
                "coordinator.session_timeout_ms",
                format!(
                    "must be between {MIN_SESSION_TIMEOUT_MS} and {MAX_SESSION_TIMEOUT_MS} (the broker's default group.min/max.session.timeout.ms), got {}",
                    self.session_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// How often a member heartbeats: a third of the session, as Kafka recommends.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        (self.session_timeout_ms / 3).max(1)
    }
}

impl Default for CoordinatorConfig {
    /// The section as it is when absent from the file.
    fn default() -> Self {
        CoordinatorConfig {
            group: None,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
        }
    }
}
