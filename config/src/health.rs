//! `[health]`: how often the agent runs the health checks, and the limits that keep the checks
//! cheap on a production server (every scan is bounded by a row count, every CHECK TABLE by a
//! table size and a time budget) and the thresholds between pass, warn and fail.

use serde::Deserialize;

use crate::ConfigError;

/// CHECK TABLE ... QUICK only on tables up to 256 MiB (data + indexes): a quick check of such
/// a table takes well under a second; bigger tables are listed as not checked.
pub const DEFAULT_CHECK_TABLE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Total time the tables check may spend in CHECK TABLE; the rest is listed as not checked.
pub const DEFAULT_CHECK_TABLE_BUDGET_SECS: u64 = 30;
/// Row scans (orphaned rows, invalid dates, NULLs) only on tables up to 1M rows (estimated):
/// a scan of that size takes about a second; bigger tables are skipped with a warning.
pub const DEFAULT_SCAN_MAX_ROWS: u64 = 1_000_000;
/// Example rows or items kept in the evidence of one finding.
pub const DEFAULT_SAMPLE_LIMIT: usize = 10;
/// A transaction open longer than this holds back purge and locks: warn.
pub const DEFAULT_LONG_TRANSACTION_SECS: u64 = 60;
/// InnoDB history list length above which purge is falling behind: warn (fail at 10x).
pub const DEFAULT_HISTORY_LIST_WARN: u64 = 100_000;
/// Buffer pool hit ratio below which the working set does not fit in memory: warn.
pub const DEFAULT_BUFFER_POOL_MIN_HIT_RATIO: f64 = 0.99;
/// Share of statements that were slow above which the slow-queries check warns.
pub const DEFAULT_SLOW_QUERY_WARN_RATIO: f64 = 0.01;
/// Free disk space below this percentage: warn.
pub const DEFAULT_DISK_WARN_FREE_PCT: f64 = 10.0;
/// Free disk space below this percentage: fail.
pub const DEFAULT_DISK_FAIL_FREE_PCT: f64 = 5.0;
/// Replication or sync lag above this many seconds: warn.
pub const DEFAULT_LAG_WARN_SECS: u64 = 60;
/// Replication or sync lag above this many seconds: fail.
pub const DEFAULT_LAG_FAIL_SECS: u64 = 600;
/// Longest any one statement of the checks may run (MariaDB `max_statement_time`).
pub const DEFAULT_STATEMENT_TIMEOUT_SECS: u64 = 60;

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// When set, `fleetsync run` and `fleetsync agent` run the checks for each of their
    /// servers every this many seconds and export `fleetsync_health_check_status`.
    #[serde(default)]
    pub interval_secs: Option<u64>,
    #[serde(default = "d_check_table_max_bytes")]
    pub check_table_max_bytes: u64,
    #[serde(default = "d_check_table_budget_secs")]
    pub check_table_budget_secs: u64,
    #[serde(default = "d_scan_max_rows")]
    pub scan_max_rows: u64,
    #[serde(default = "d_sample_limit")]
    pub sample_limit: usize,
    #[serde(default = "d_long_transaction_secs")]
    pub long_transaction_secs: u64,
    #[serde(default = "d_history_list_warn")]
    pub history_list_warn: u64,
    #[serde(default = "d_buffer_pool_min_hit_ratio")]
    pub buffer_pool_min_hit_ratio: f64,
    #[serde(default = "d_slow_query_warn_ratio")]
    pub slow_query_warn_ratio: f64,
    #[serde(default = "d_disk_warn_free_pct")]
    pub disk_warn_free_pct: f64,
    #[serde(default = "d_disk_fail_free_pct")]
    pub disk_fail_free_pct: f64,
    #[serde(default = "d_lag_warn_secs")]
    pub lag_warn_secs: u64,
    #[serde(default = "d_lag_fail_secs")]
    pub lag_fail_secs: u64,
    #[serde(default = "d_statement_timeout_secs")]
    pub statement_timeout_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_secs: None,
            check_table_max_bytes: DEFAULT_CHECK_TABLE_MAX_BYTES,
            check_table_budget_secs: DEFAULT_CHECK_TABLE_BUDGET_SECS,
            scan_max_rows: DEFAULT_SCAN_MAX_ROWS,
            sample_limit: DEFAULT_SAMPLE_LIMIT,
            long_transaction_secs: DEFAULT_LONG_TRANSACTION_SECS,
            history_list_warn: DEFAULT_HISTORY_LIST_WARN,
            buffer_pool_min_hit_ratio: DEFAULT_BUFFER_POOL_MIN_HIT_RATIO,
            slow_query_warn_ratio: DEFAULT_SLOW_QUERY_WARN_RATIO,
            disk_warn_free_pct: DEFAULT_DISK_WARN_FREE_PCT,
            disk_fail_free_pct: DEFAULT_DISK_FAIL_FREE_PCT,
            lag_warn_secs: DEFAULT_LAG_WARN_SECS,
            lag_fail_secs: DEFAULT_LAG_FAIL_SECS,
            statement_timeout_secs: DEFAULT_STATEMENT_TIMEOUT_SECS,
        }
    }
}

fn d_check_table_max_bytes() -> u64 {
    DEFAULT_CHECK_TABLE_MAX_BYTES
}
fn d_check_table_budget_secs() -> u64 {
    DEFAULT_CHECK_TABLE_BUDGET_SECS
}
fn d_scan_max_rows() -> u64 {
    DEFAULT_SCAN_MAX_ROWS
}
fn d_sample_limit() -> usize {
    DEFAULT_SAMPLE_LIMIT
}
fn d_long_transaction_secs() -> u64 {
    DEFAULT_LONG_TRANSACTION_SECS
}
fn d_history_list_warn() -> u64 {
    DEFAULT_HISTORY_LIST_WARN
}
fn d_buffer_pool_min_hit_ratio() -> f64 {
    DEFAULT_BUFFER_POOL_MIN_HIT_RATIO
}
fn d_slow_query_warn_ratio() -> f64 {
    DEFAULT_SLOW_QUERY_WARN_RATIO
}
fn d_disk_warn_free_pct() -> f64 {
    DEFAULT_DISK_WARN_FREE_PCT
}
fn d_disk_fail_free_pct() -> f64 {
    DEFAULT_DISK_FAIL_FREE_PCT
}
fn d_lag_warn_secs() -> u64 {
    DEFAULT_LAG_WARN_SECS
}
fn d_lag_fail_secs() -> u64 {
    DEFAULT_LAG_FAIL_SECS
}
fn d_statement_timeout_secs() -> u64 {
    DEFAULT_STATEMENT_TIMEOUT_SECS
}

impl HealthConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |field: &str, rule: &str| Err(ConfigError::invalid(format!("health.{field}"), rule));
        if self.interval_secs == Some(0) {
            return bad(
                "interval_secs",
                "must be at least 1 (omit it to turn the periodic checks off)",
            );
        }
        if self.sample_limit == 0 || self.sample_limit > 1000 {
            return bad("sample_limit", "must be between 1 and 1000");
        }
        if self.long_transaction_secs == 0 {
            return bad("long_transaction_secs", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.buffer_pool_min_hit_ratio) {
            return bad(
                "buffer_pool_min_hit_ratio",
                "must be between 0 and 1 (e.g. 0.99)",
            );
        }
        if !(0.0..=1.0).contains(&self.slow_query_warn_ratio) {
            return bad(
                "slow_query_warn_ratio",
                "must be between 0 and 1 (e.g. 0.01)",
            );
        }
        for (field, v) in [
            ("disk_warn_free_pct", self.disk_warn_free_pct),
            ("disk_fail_free_pct", self.disk_fail_free_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return bad(field, "must be a percentage between 0 and 100");
            }
        }
        if self.disk_fail_free_pct > self.disk_warn_free_pct {
            return bad("disk_fail_free_pct", "must not be above disk_warn_free_pct");
        }
        if self.lag_fail_secs < self.lag_warn_secs {
            return bad("lag_fail_secs", "must not be below lag_warn_secs");
        }
        if self.statement_timeout_secs == 0 {
            return bad("statement_timeout_secs", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.health.interval_secs, None);
        assert!(c.validate().is_ok());
        let c = Config::parse("[health]\ninterval_secs = 30\nscan_max_rows = 10\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.health.interval_secs, Some(30));
        assert_eq!(c.health.scan_max_rows, 10);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[health]\ninterval_secs = 0\n", "health.interval_secs"),
            (
                "[health]\nbuffer_pool_min_hit_ratio = 99.0\n",
                "health.buffer_pool_min_hit_ratio",
            ),
            (
                "[health]\ndisk_fail_free_pct = 20.0\n",
                "health.disk_fail_free_pct",
            ),
            (
                "[health]\nlag_warn_secs = 100\nlag_fail_secs = 10\n",
                "health.lag_fail_secs",
            ),
        ] {
            let c = Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
            let err = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = Config::parse("[health]\nintervall_secs = 5\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("intervall_secs"), "{err}");
    }
}
