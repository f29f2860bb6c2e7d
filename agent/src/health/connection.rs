//! The `connection` check: the server is reachable with the configured credentials within
//! [`CONNECT_TIMEOUT`], its version, connect and round-trip latency, and how close it is to
//! `max_connections`. Also prepares the session the other checks use (statement timeouts,
//! `sql_mode=''` so that zero dates can be read).
//!
//! A refused connection, a timeout or a wrong password is a `fail` with the driver's message
//! (which never contains the password) and no connection: every later check is skipped.

use std::time::{Duration, Instant};

use fleetsync_config::HealthConfig;
use fleetsync_proto::health::{CheckResult, CheckStatus};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::json;

use super::{result, HealthTarget};

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Round trip above which the connection check warns (a sync over such a link is slow).
const SLOW_PING_MS: f64 = 100.0;
/// Share of `max_connections` in use above which the check warns.
const CONNECTIONS_WARN_RATIO: f64 = 0.9;

/// Connects and returns the `connection` check, plus the connection and server version when
/// it succeeded.
pub async fn connect(
    target: &HealthTarget,
    cfg: &HealthConfig,
) -> (CheckResult, Option<(Conn, String)>) {
    let opts = &target.opts;
    let endpoint =
        json!({"host": opts.ip_or_hostname(), "port": opts.tcp_port(), "user": opts.user()});
    let started = Instant::now();
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (
                unreachable(target, endpoint, &e.to_string(), error_code(&e)),
                None,
            )
        }
        Err(_) => {
            let msg = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
            return (unreachable(target, endpoint, &msg, None), None);
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut conn = conn;
    match describe(&mut conn, cfg).await {
        Ok(info) => {
            let check = assess(endpoint, connect_ms, &info);
            (check, Some((conn, info.version)))
        }
        Err(e) => {
            let _ = conn.disconnect().await;
            (
                unreachable(target, endpoint, &e.to_string(), error_code(&e)),
                None,
            )
        }
    }
}

fn error_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

fn unreachable(
    target: &HealthTarget,
    endpoint: serde_json::Value,
    message: &str,
    code: Option<u16>,
) -> CheckResult {
    let mut evidence = endpoint;
    evidence["error"] = json!(message);
    evidence["error_code"] = json!(code);
    let hint = match code {
        Some(1045) => "check the user and password configured for this server",
        Some(1130) => {
            "the server does not accept this user from this host: check the user's host part"
        }
        _ => "check that the server is running and that host:port in its url is right",
    };
    let mut r = result(
        "connection",
        CheckStatus::Fail,
        format!("cannot connect to server {}: {message}", target.name),
        evidence,
    );
    r.suggestions.push(hint.to_string());
    r
}

struct ServerInfo {
    version: String,
    ping_ms: f64,
    uptime_secs: u64,
    threads_connected: u64,
    max_connections: u64,
}

async fn describe(conn: &mut Conn, cfg: &HealthConfig) -> Result<ServerInfo, mysql_async::Error> {
    let started = Instant::now();
    conn.query_drop("SELECT 1").await?;
    let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
    let row: Option<(String, u64)> = conn
        .query_first("SELECT @@version, @@max_connections")
        .await?;
    let (version, max_connections) = row.unwrap_or_default();
    let status = global_status(conn, &["Uptime", "Threads_connected"]).await?;
    prepare_session(conn, cfg, version.to_ascii_lowercase().contains("mariadb")).await;
    Ok(ServerInfo {
        version,
        ping_ms,
        uptime_secs: status.first().copied().unwrap_or(0),
        threads_connected: status.get(1).copied().unwrap_or(0),
        max_connections,
    })
}

/// Session settings for the checks; ones a server does not know are ignored.
async fn prepare_session(conn: &mut Conn, cfg: &HealthConfig, is_mariadb: bool) {
    let mut stmts = vec![
        "SET SESSION sql_mode = ''".to_string(),
        "SET SESSION lock_wait_timeout = 10".to_string(),
        "SET SESSION innodb_lock_wait_timeout = 5".to_string(),
        "SET SESSION TRANSACTION READ ONLY".to_string(),
    ];
    if is_mariadb {
        stmts.push(format!(
            "SET SESSION max_statement_time = {}",
            cfg.statement_timeout_secs
        ));
    } else {
        stmts.push(format!(
            "SET SESSION max_execution_time = {}",
            cfg.statement_timeout_secs * 1000
        ));
    }
    for s in stmts {
        if let Err(e) = conn.query_drop(&s).await {
            tracing::debug!(statement = %s, error = %e, "health: session setting not applied");
        }
    }
}

/// Integer values of global status variables, in the order asked (0 when missing).
pub async fn global_status(
    conn: &mut Conn,
    names: &[&str],
) -> Result<Vec<u64>, mysql_async::Error> {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ({list})"
        ))
        .await?;
    Ok(names
        .iter()
        .map(|n| {
            rows.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .collect())
}

fn assess(endpoint: serde_json::Value, connect_ms: f64, info: &ServerInfo) -> CheckResult {
    let mut evidence = endpoint;
    let used = if info.max_connections > 0 {
        info.threads_connected as f64 / info.max_connections as f64
    } else {
        0.0
    };
    evidence["version"] = json!(info.version);
    evidence["connect_ms"] = json!(round2(connect_ms));
    evidence["ping_ms"] = json!(round2(info.ping_ms));
    evidence["uptime_secs"] = json!(info.uptime_secs);
    evidence["threads_connected"] = json!(info.threads_connected);
    evidence["max_connections"] = json!(info.max_connections);
    let mut problems = Vec::new();
    let mut suggestions = Vec::new();
    if info.ping_ms > SLOW_PING_MS {
        problems.push(format!("round trip {:.0} ms", info.ping_ms));
        suggestions
            .push("run the agent close to the server: every query pays the round trip".to_string());
    }
    if used > CONNECTIONS_WARN_RATIO {
        problems.push(format!(
            "{} of max_connections={} in use",
            info.threads_connected, info.max_connections
        ));
        suggestions
            .push("raise max_connections or find the client holding idle connections".to_string());
    }
    let summary = format!(
        "reachable, {} , connect {:.1} ms, round trip {:.2} ms",
        info.version, connect_ms, info.ping_ms
    )
    .replace(" ,", ",");
    let (status, summary) = if problems.is_empty() {
        (CheckStatus::Pass, summary)
    } else {
        (
            CheckStatus::Warn,
            format!("{summary}; {}", problems.join("; ")),
        )
    };
    let mut r = result("connection", status, summary, evidence);
    r.suggestions = suggestions;
    r
}

pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
