//! Replication checks: `replication` (the server's own native replica channels, from
//! `SHOW ALL SLAVES STATUS` on MariaDB or `SHOW REPLICA STATUS` on MySQL) and `sync_lag`
//! (how far this server, as a fleetsync target, is behind each sync's source, from the
//! progress row fleetsync stores in `fleetsync.sync_state`).
//!
//! Sync lag: 0 when the applied position is at or past the source's current binlog end
//! (given by the caller, who reads it from the source); otherwise now minus the source commit
//! time of the last applied transaction. Unknown (warn) when the source could not be read.

use fleetsync_proto::health::{CheckResult, CheckStatus};
use fleetsync_proto::Position;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde_json::{json, Value};

use super::{result, Ctx};

/// The first of `names` present in `row`, as text.
fn field(row: &Row, names: &[&str]) -> Option<String> {
    let cols = row.columns_ref();
    for n in names {
        if let Some(i) = cols
            .iter()
            .position(|c| c.name_str().eq_ignore_ascii_case(n))
        {
            return match row.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(mysql_async::Value::Int(v)) => Some(v.to_string()),
                Some(mysql_async::Value::UInt(v)) => Some(v.to_string()),
                _ => None,
            };
        }
    }
    None
}

fn lag_status(lag: Option<u64>, ctx: &Ctx<'_>) -> CheckStatus {
    match lag {
        Some(l) if l >= ctx.cfg.lag_fail_secs => CheckStatus::Fail,
        Some(l) if l >= ctx.cfg.lag_warn_secs => CheckStatus::Warn,
        _ => CheckStatus::Pass,
    }
}

/// `replication`: every native replica channel of this server.
pub async fn replication(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    if !ctx.grants.has("SLAVE MONITOR", None, None) {
        return Ok(result(
            "replication",
            CheckStatus::Skipped,
            "skipped: needs the SLAVE MONITOR privilege (REPLICATION CLIENT on MySQL) to read replica status",
            json!({"missing_privilege": "SLAVE MONITOR"}),
        ));
    }
    let rows: Vec<Row> = if ctx.is_mariadb {
        conn.query("SHOW ALL SLAVES STATUS").await?
    } else {
        match conn.query("SHOW REPLICA STATUS").await {
            Ok(r) => r,
            Err(_) => conn.query("SHOW SLAVE STATUS").await?,
        }
    };
    if rows.is_empty() {
        return Ok(result(
            "replication",
            CheckStatus::Pass,
            "not a replica (no replication channels)",
            json!({"channels": []}),
        ));
    }
    let mut worst = CheckStatus::Pass;
    let mut channels = Vec::new();
    let mut findings = Vec::new();
    for row in &rows {
        let name = field(row, &["Connection_name", "Channel_Name"]).unwrap_or_default();
        let io = field(row, &["Slave_IO_Running", "Replica_IO_Running"]).unwrap_or_default();
        let sql = field(row, &["Slave_SQL_Running", "Replica_SQL_Running"]).unwrap_or_default();
        let lag = field(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
            .and_then(|v| v.parse::<u64>().ok());
        let io_error = field(row, &["Last_IO_Error"]).unwrap_or_default();
        let sql_error = field(row, &["Last_SQL_Error"]).unwrap_or_default();
        let running = io.eq_ignore_ascii_case("Yes") && sql.eq_ignore_ascii_case("Yes");
        let status = if running {
            lag_status(lag, ctx)
        } else {
            CheckStatus::Fail
        };
        let label = if name.is_empty() {
            "default".to_string()
        } else {
            name.clone()
        };
        if !running {
            findings.push(
                format!(
                    "channel {label}: IO thread {io}, SQL thread {sql} {}{}",
                    io_error, sql_error
                )
                .trim()
                .to_string(),
            );
        } else if status != CheckStatus::Pass {
            findings.push(format!("channel {label}: {} s behind", lag.unwrap_or(0)));
        }
        worst = worst.max(status);
        channels.push(json!({
            "channel": name,
            "source_host": field(row, &["Master_Host", "Source_Host"]),
            "io_running": io, "sql_running": sql, "seconds_behind": lag,
            "last_io_error": io_error, "last_sql_error": sql_error, "status": status,
        }));
    }
    let summary = if findings.is_empty() {
        format!(
            "{} replication channel(s) running within {}s",
            channels.len(),
            ctx.cfg.lag_warn_secs
        )
    } else {
        findings.join("; ")
    };
    let mut r = result("replication", worst, summary, json!({"channels": channels}));
    if worst == CheckStatus::Fail {
        r.suggestions.push("see Last_IO_Error / Last_SQL_Error; fix the cause, then START SLAVE (or START ALL SLAVES)".into());
    }
    Ok(r)
}

type StateRow = (String, String, String, String, u64, String);

/// `sync_lag`: per sync that targets this server.
pub async fn sync_lag(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<CheckResult, mysql_async::Error> {
    let target_of = &ctx.target.target_of;
    let rows: Vec<StateRow> = match conn
        .query(
            "SELECT sync_name, source_name, position, snapshot_state, source_commit_ts_ms, CAST(updated_at AS CHAR) \
             FROM fleetsync.sync_state ORDER BY 1, 2",
        )
        .await
    {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1049 | 1146) => Vec::new(),
        // Not a target in the configuration, and no access to fleetsync's tables: nothing to judge.
        Err(mysql_async::Error::Server(e)) if target_of.is_empty() && matches!(e.code, 1044 | 1142) => Vec::new(),
        Err(e) => return Err(e),
    };
    if target_of.is_empty() && rows.is_empty() {
        return Ok(result(
            "sync_lag",
            CheckStatus::Pass,
            "not a fleetsync target",
            json!({"syncs": []}),
        ));
    }
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut worst = CheckStatus::Pass;
    let mut syncs: Vec<Value> = Vec::new();
    let mut findings = Vec::new();
    for t in target_of {
        let row = rows.iter().find(|r| r.0 == t.sync && r.1 == t.source);
        let (status, entry, finding) = one_sync(t, row, now_ms, ctx);
        worst = worst.max(status);
        syncs.push(entry);
        findings.extend(finding);
    }
    let unknown: Vec<Value> = rows
        .iter()
        .filter(|r| !target_of.iter().any(|t| t.sync == r.0 && t.source == r.1))
        .map(|r| json!({"sync": r.0, "source": r.1, "position": r.2, "updated_at": r.5}))
        .collect();
    let summary = if findings.is_empty() {
        format!(
            "{} sync(s) within {}s of their source",
            syncs.len(),
            ctx.cfg.lag_warn_secs
        )
    } else {
        findings.join("; ")
    };
    let evidence = json!({"syncs": syncs, "not_in_configuration": unknown,
                          "warn_secs": ctx.cfg.lag_warn_secs, "fail_secs": ctx.cfg.lag_fail_secs});
    let mut r = result("sync_lag", worst, summary, evidence);
    if worst != CheckStatus::Pass {
        r.suggestions.push("see `fleetsync status` for the pipeline's state and error; a target far behind catches up faster with larger batch_rows".into());
    }
    Ok(r)
}

fn one_sync(
    t: &super::TargetOf,
    row: Option<&StateRow>,
    now_ms: u64,
    ctx: &Ctx<'_>,
) -> (CheckStatus, Value, Option<String>) {
    let Some((_, _, position, snapshot, commit_ts, updated_at)) = row else {
        let entry = json!({"sync": t.sync, "source": t.source, "state": "not started"});
        return (
            CheckStatus::Warn,
            entry,
            Some(format!(
                "sync {}: no progress stored on this target yet",
                t.sync
            )),
        );
    };
    let applied: Option<Position> = position.parse().ok();
    let caught_up = match (&applied, &t.source_position) {
        (Some(a), Some(s)) => Some(a.binlog >= s.binlog),
        _ => None,
    };
    let lag = match caught_up {
        Some(true) => Some(0),
        Some(false) if *commit_ts > 0 => Some(now_ms.saturating_sub(*commit_ts) / 1000),
        _ => None,
    };
    let entry = json!({
        "sync": t.sync, "source": t.source, "applied_position": position, "snapshot_state": snapshot,
        "source_position": t.source_position.as_ref().map(|p| p.to_string()),
        "lag_seconds": lag, "updated_at": updated_at,
    });
    if snapshot == "running" {
        return (CheckStatus::Pass, entry, None);
    }
    if t.source_position.is_none() {
        return (
            CheckStatus::Warn,
            entry,
            Some(format!(
                "sync {}: source {} not readable, lag unknown",
                t.sync, t.source
            )),
        );
    }
    let status = lag_status(lag, ctx);
    let finding = (status != CheckStatus::Pass)
        .then(|| format!("sync {}: {}s behind {}", t.sync, lag.unwrap_or(0), t.source));
    (status, entry, finding)
}
