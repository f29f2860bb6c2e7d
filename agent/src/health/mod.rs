//! Health checks of one server (an agent task, also run on demand by `fleetsync health`).
//!
//! [`run_checks`] connects, loads the catalog of user tables once ([`catalog::Catalog`]) and
//! runs every check in a fixed order, each producing one [`CheckResult`]:
//!
//! | check | category | file |
//! |---|---|---|
//! | `connection` | connection | [`connection`] |
//! | `privileges` | access | [`privileges`] |
//! | `binlog` | cdc | [`server`] |
//! | `tables`, `indexes` | schema | [`schema`] |
//! | `foreign_keys`, `data_integrity` | data | [`data`] |
//! | `buffer_pool`, `slow_queries`, `long_transactions`, `history_list` | performance | [`server`] |
//! | `disk_space` | storage | [`disk`] |
//! | `replication`, `sync_lag` | replication | [`replication`] |
//!
//! Invariants:
//! * A check never ends the run: an unreachable server or wrong password is a failed
//!   `connection` check (the rest are `skipped`); a query error inside a check (a missing
//!   privilege, a timeout) makes that check `skipped` (access denied, naming the privilege) or
//!   `warn` (anything else), with the server's message.
//! * The checks only read. Every statement runs with MariaDB's `max_statement_time` and a
//!   short `lock_wait_timeout`; row scans are bounded by `[health] scan_max_rows` (bigger tables
//!   are skipped with a warning) and CHECK TABLE by a table size and a time budget.
//! * Fixes are only proposed here; [`apply_fixes`] runs the `safe` ones when the operator asks.

pub mod catalog;
pub mod connection;
pub mod data;
pub mod disk;
pub mod privileges;
pub mod replication;
pub mod schema;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use fleetsync_config::{HealthConfig, TableFilter};
use fleetsync_proto::health::{CheckResult, CheckStatus, FixOutcome, HealthReport, Overall};
use fleetsync_proto::Position;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

/// Gauge per (server, check): 0 pass, 1 warn, 2 fail, -1 skipped.
pub const HEALTH_CHECK_STATUS: &str = "fleetsync_health_check_status";

/// Session settings of the connection that applies fixes.
const FIX_SESSION: &str = "SET SESSION lock_wait_timeout = 30";

/// Every check, in report order: (name, category).
pub const CHECKS: &[(&str, &str)] = &[
    ("connection", "connection"),
    ("privileges", "access"),
    ("binlog", "cdc"),
    ("tables", "schema"),
    ("indexes", "schema"),
    ("foreign_keys", "data"),
    ("data_integrity", "data"),
    ("buffer_pool", "performance"),
    ("slow_queries", "performance"),
    ("long_transactions", "performance"),
    ("history_list", "performance"),
    ("disk_space", "storage"),
    ("replication", "replication"),
    ("sync_lag", "replication"),
];

/// A sync that applies to this server (this server is one of its targets).
#[derive(Debug, Clone)]
pub struct TargetOf {
    pub sync: String,
    pub source: String,
    /// The source's current binlog end, when it could be read: the applied position is
    /// compared with it (at or past it = no lag).
    pub source_position: Option<Position>,
}

/// What the checks need to know about the server and its place in the configuration.
#[derive(Debug, Clone)]
pub struct HealthTarget {
    /// `[[servers]] name`.
    pub name: String,
    pub opts: mysql_async::Opts,
    /// The tables syncs read from this server (`None`: it is no sync's source).
    pub source_filter: Option<TableFilter>,
    /// The tables syncs write to this server (their include patterns; `None`: no target).
    pub target_filter: Option<TableFilter>,
    pub target_of: Vec<TargetOf>,
    /// `[backup] dir`: its free space is checked too (it is on this machine).
    pub backup_dir: Option<PathBuf>,
}

/// Shared by the checks of one run.
pub struct Ctx<'a> {
    pub target: &'a HealthTarget,
    pub cfg: &'a HealthConfig,
    pub version: String,
    pub is_mariadb: bool,
    pub catalog: catalog::Catalog,
    /// Effective grants of the connected user (for checks that need an optional privilege).
    pub grants: privileges::Grants,
}

/// A check result with its name and category from [`CHECKS`].
pub fn result(
    name: &str,
    status: CheckStatus,
    summary: impl Into<String>,
    evidence: Value,
) -> CheckResult {
    let category = CHECKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .unwrap_or("other");
    CheckResult {
        name: name.to_string(),
        category: category.to_string(),
        status,
        summary: summary.into(),
        evidence,
        suggestions: Vec::new(),
        fix: None,
    }
}

/// The result of a check whose queries failed: skipped when access was denied (the server's
/// message names the privilege), warn otherwise.
pub fn errored(name: &str, e: &mysql_async::Error) -> CheckResult {
    let (status, summary) = match e {
        mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1142 | 1143 | 1227 | 1045) => (
            CheckStatus::Skipped,
            format!("cannot run: access denied: {}", s.message),
        ),
        _ => (CheckStatus::Warn, format!("check did not complete: {e}")),
    };
    result(name, status, summary, json!({"error": e.to_string()}))
}

/// Runs every check against `target`. Never fails: problems are in the report.
pub async fn run_checks(target: &HealthTarget, cfg: &HealthConfig) -> HealthReport {
    let started = Instant::now();
    let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (conn_check, conn) = connection::connect(target, cfg).await;
    let mut checks = vec![conn_check];
    match conn {
        Some((mut conn, version)) => {
            checks.extend(run_connected(&mut conn, target, cfg, version).await);
            let _ = conn.disconnect().await;
        }
        None => {
            for (name, _) in &CHECKS[1..] {
                checks.push(result(
                    name,
                    CheckStatus::Skipped,
                    "skipped: no connection to the server",
                    Value::Null,
                ));
            }
        }
    }
    HealthReport {
        server: target.name.clone(),
        status: Overall::from_checks(&checks),
        checked_at,
        duration_ms: started.elapsed().as_millis() as u64,
        checks,
        fixes: Vec::new(),
    }
}

async fn run_connected(
    conn: &mut mysql_async::Conn,
    target: &HealthTarget,
    cfg: &HealthConfig,
    version: String,
) -> Vec<CheckResult> {
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    let catalog = catalog::Catalog::load(conn).await;
    let grants = privileges::Grants::load(conn).await;
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => {
            // Without the catalog only the server-wide checks can run.
            tracing::warn!(server = %target.name, error = %e, "health: cannot read information_schema");
            catalog::Catalog::default()
        }
    };
    let ctx = Ctx {
        target,
        cfg,
        version,
        is_mariadb,
        catalog,
        grants: grants.unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(CHECKS.len() - 1);
    out.push(privileges::check(conn, &ctx).await);
    out.push(or_errored("binlog", server::binlog(conn, &ctx).await));
    out.push(or_errored("tables", schema::tables(conn, &ctx).await));
    out.push(schema::indexes(&ctx));
    out.push(or_errored(
        "foreign_keys",
        data::foreign_keys(conn, &ctx).await,
    ));
    out.push(or_errored(
        "data_integrity",
        data::integrity(conn, &ctx).await,
    ));
    out.push(or_errored(
        "buffer_pool",
        server::buffer_pool(conn, &ctx).await,
    ));
    out.push(or_errored(
        "slow_queries",
        server::slow_queries(conn, &ctx).await,
    ));
    out.push(or_errored(
        "long_transactions",
        server::long_transactions(conn, &ctx).await,
    ));
    out.push(or_errored(
        "history_list",
        server::history_list(conn, &ctx).await,
    ));
    out.push(or_errored("disk_space", disk::disk_space(conn, &ctx).await));
    out.push(or_errored(
        "replication",
        replication::replication(conn, &ctx).await,
    ));
    out.push(or_errored(
        "sync_lag",
        replication::sync_lag(conn, &ctx).await,
    ));
    out
}

fn or_errored(name: &str, r: Result<CheckResult, mysql_async::Error>) -> CheckResult {
    r.unwrap_or_else(|e| errored(name, &e))
}

/// Runs the fixes of `report` on the server: the `safe` ones when `apply` is true (each
/// statement on its own; a failing one is recorded and the rest still run), none when false
/// (a dry run). Unsafe fixes are listed, never run. Returns one outcome per statement.
pub async fn apply_fixes(
    target: &HealthTarget,
    report: &HealthReport,
    apply: bool,
) -> Result<Vec<FixOutcome>, String> {
    let mut planned = Vec::new();
    for check in &report.checks {
        if let Some(fix) = &check.fix {
            for sql in &fix.sql {
                planned.push((check.name.clone(), sql.clone(), fix.safe));
            }
        }
    }
    let mut conn = None;
    if apply && planned.iter().any(|(_, _, safe)| *safe) {
        let c = mysql_async::Conn::new(target.opts.clone())
            .await
            .map_err(|e| crate::source::connect_error(&target.name, e).to_string())?;
        let mut c = c;
        // An ALTER waits for the table's metadata lock: give up rather than queue behind a
        // long transaction (and block every query queued behind the ALTER).
        let _ = c.query_drop(FIX_SESSION).await;
        conn = Some(c);
    }
    let mut out = Vec::with_capacity(planned.len());
    for (check, sql, safe) in planned {
        let (applied, note) = match (&mut conn, safe) {
            (_, false) => (
                false,
                Some("not safe to apply automatically: review and run it yourself".to_string()),
            ),
            (None, true) => (false, Some("dry run".to_string())),
            (Some(c), true) => match c.query_drop(&sql).await {
                Ok(()) => (true, None),
                Err(e) => (false, Some(format!("failed: {e}"))),
            },
        };
        out.push(FixOutcome {
            check,
            sql,
            applied,
            note,
        });
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
    Ok(out)
}

/// Sets `fleetsync_health_check_status{server,check}` from a report.
pub fn record_metrics(report: &HealthReport) {
    for c in &report.checks {
        metrics::gauge!(HEALTH_CHECK_STATUS, "server" => report.server.clone(), "check" => c.name.clone())
            .set(c.status.gauge());
    }
}

/// Describes the health metric for the exporter (call after the recorder is installed).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        HEALTH_CHECK_STATUS,
        "Health check result per server and check: 0 pass, 1 warn, 2 fail, -1 skipped."
    );
}

/// Per-status counts of a report (for logs): `{"pass": n, ...}`.
pub fn counts(report: &HealthReport) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for c in &report.checks {
        *m.entry(c.status.as_str()).or_insert(0) += 1;
    }
    m
}
