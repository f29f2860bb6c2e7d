//! Server-wide checks from variables and status counters: `binlog` (the settings CDC needs)
//! and the performance checks `buffer_pool`, `slow_queries`, `long_transactions`,
//! `history_list`.
//!
//! Counters are cumulative since the server started (`Uptime` is in the connection check's
//! evidence): a ratio reflects the whole uptime, not the last minutes.

use fleetsync_proto::health::{CheckResult, CheckStatus, Fix};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::json;

use super::connection::global_status;
use super::{result, Ctx};

/// log_bin, binlog_format, binlog_row_image, server_id.
type BinlogVars = (Option<String>, Option<String>, Option<String>, u64);
/// A row of INNODB_TRX joined with PROCESSLIST (see [`long_transactions`]).
type TrxRow = (
    u64,
    String,
    u64,
    String,
    u64,
    u64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Buffer pool read requests below which the hit ratio says nothing yet (a fresh server).
const MIN_READ_REQUESTS: u64 = 100_000;
/// Slow queries below which the ratio is not judged.
const MIN_SLOW_QUERIES: u64 = 10;
/// Long transactions listed in the evidence at most.
const MAX_LISTED_TRANSACTIONS: usize = 20;

/// `binlog`: `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`,
/// `binlog_row_metadata=FULL`. Wrong settings fail on a sync's source, warn elsewhere.
pub async fn binlog(conn: &mut Conn, ctx: &Ctx<'_>) -> Result<CheckResult, mysql_async::Error> {
    let row: Option<BinlogVars> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.server_id")
        .await?;
    let (log_bin, format, image, server_id) = row.unwrap_or_default();
    // binlog_row_metadata is missing on old servers: absent reads as not FULL.
    let metadata: Option<String> = conn
        .query_first::<Option<String>, _>("SELECT @@GLOBAL.binlog_row_metadata")
        .await
        .ok()
        .flatten()
        .flatten();
    let log_bin_on = matches!(log_bin.as_deref(), Some("1") | Some("ON"));
    let evidence = json!({
        "log_bin": if log_bin_on { "ON" } else { "OFF" },
        "binlog_format": format,
        "binlog_row_image": image,
        "binlog_row_metadata": metadata,
        "server_id": server_id,
        "sync_source": ctx.target.source_filter.is_some(),
    });
    let mut wrong = Vec::new();
    let mut fix = Vec::new();
    let mut suggestions = Vec::new();
    if !log_bin_on {
        wrong.push("log_bin is OFF".to_string());
        suggestions.push(
            "start the server with log_bin (e.g. log-bin=binlog in its config file) and restart it"
                .to_string(),
        );
    }
    for (var, value) in [
        ("binlog_format", &format),
        ("binlog_row_image", &image),
        ("binlog_row_metadata", &metadata),
    ] {
        let v = value.clone().unwrap_or_else(|| "(not set)".into());
        if !v.eq_ignore_ascii_case(if var == "binlog_format" {
            "ROW"
        } else {
            "FULL"
        }) {
            let want = if var == "binlog_format" {
                "ROW"
            } else {
                "FULL"
            };
            wrong.push(format!("{var} is {v}, CDC needs {want}"));
            fix.push(format!("SET GLOBAL {var} = '{want}'"));
        }
    }
    if wrong.is_empty() {
        return Ok(result(
            "binlog",
            CheckStatus::Pass,
            "binlog on, ROW format, FULL row image and metadata",
            evidence,
        ));
    }
    if !fix.is_empty() {
        suggestions.push(
            "SET GLOBAL affects new sessions only and is lost at restart: put the same settings in the server's config file; \
             sessions already open (replicas' dump threads, applications) keep the old format until they reconnect"
                .to_string(),
        );
    }
    let status = if ctx.target.source_filter.is_some() {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    let mut r = result("binlog", status, wrong.join("; "), evidence);
    r.suggestions = suggestions;
    // Changing the binlog format changes what every replica receives: for review only.
    r.fix = (!fix.is_empty()).then_some(Fix {
        sql: fix,
        safe: false,
    });
    Ok(r)
}

/// `buffer_pool`: InnoDB buffer pool hit ratio since start.
pub async fn buffer_pool(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    let v = global_status(
        conn,
        &[
            "Innodb_buffer_pool_read_requests",
            "Innodb_buffer_pool_reads",
        ],
    )
    .await?;
    let (requests, reads) = (v[0], v[1]);
    let size: Option<u64> = conn.query_first("SELECT @@innodb_buffer_pool_size").await?;
    let ratio = if requests > 0 {
        1.0 - reads as f64 / requests as f64
    } else {
        1.0
    };
    let evidence = json!({
        "read_requests": requests,
        "disk_reads": reads,
        "hit_ratio": (ratio * 10_000.0).round() / 10_000.0,
        "innodb_buffer_pool_size": size,
        "min_hit_ratio": ctx.cfg.buffer_pool_min_hit_ratio,
    });
    if requests < MIN_READ_REQUESTS {
        let s = format!("too little traffic to judge ({requests} read requests since start)");
        return Ok(result("buffer_pool", CheckStatus::Pass, s, evidence));
    }
    let summary = format!(
        "hit ratio {:.2}% ({reads} disk reads of {requests} requests)",
        ratio * 100.0
    );
    if ratio >= ctx.cfg.buffer_pool_min_hit_ratio {
        return Ok(result("buffer_pool", CheckStatus::Pass, summary, evidence));
    }
    let mut r = result("buffer_pool", CheckStatus::Warn, summary, evidence);
    r.suggestions.push(
        "the working set does not fit in memory: raise innodb_buffer_pool_size (commonly 50-75% of RAM on a dedicated server)".into(),
    );
    Ok(r)
}

/// `slow_queries`: share of statements slower than `long_query_time`.
pub async fn slow_queries(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    let v = global_status(conn, &["Slow_queries", "Questions"]).await?;
    let (slow, questions) = (v[0], v[1]);
    let row: Option<(Option<String>, Option<f64>)> = conn
        .query_first("SELECT @@GLOBAL.slow_query_log, @@GLOBAL.long_query_time")
        .await?;
    let (log, long_query_time) = row.unwrap_or_default();
    let log_on = matches!(log.as_deref(), Some("1") | Some("ON"));
    let ratio = if questions > 0 {
        slow as f64 / questions as f64
    } else {
        0.0
    };
    let evidence = json!({
        "slow_queries": slow,
        "questions": questions,
        "ratio": (ratio * 1_000_000.0).round() / 1_000_000.0,
        "long_query_time": long_query_time,
        "slow_query_log": log_on,
    });
    let summary = format!(
        "{slow} slow of {questions} statements since start (long_query_time {}s)",
        long_query_time.unwrap_or(0.0)
    );
    let status = if slow >= MIN_SLOW_QUERIES && ratio > ctx.cfg.slow_query_warn_ratio {
        CheckStatus::Warn
    } else {
        CheckStatus::Pass
    };
    let mut r = result("slow_queries", status, summary, evidence);
    if status == CheckStatus::Warn {
        r.suggestions.push("look at the slowest statements (slow query log, or performance_schema digests) and add the indexes they need".into());
        if !log_on {
            r.suggestions
                .push("turn on slow_query_log to see which statements are slow".into());
        }
    }
    Ok(r)
}

/// `long_transactions`: InnoDB transactions open longer than `long_transaction_secs`
/// (needs PROCESS; skipped without it).
pub async fn long_transactions(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    if !ctx.grants.has("PROCESS", None, None) {
        return Ok(result(
            "long_transactions",
            CheckStatus::Skipped,
            "skipped: needs the PROCESS privilege to read information_schema.INNODB_TRX",
            json!({"missing_privilege": "PROCESS"}),
        ));
    }
    let limit = ctx.cfg.long_transaction_secs;
    let rows: Vec<TrxRow> = conn
        .query(format!(
            "SELECT t.trx_mysql_thread_id, CAST(t.trx_started AS CHAR), TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), \
             t.trx_state, t.trx_rows_modified, t.trx_rows_locked, LEFT(t.trx_query, 200), p.USER, p.HOST \
             FROM information_schema.INNODB_TRX t LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_started < NOW() - INTERVAL {limit} SECOND ORDER BY t.trx_started LIMIT {MAX_LISTED_TRANSACTIONS}"
        ))
        .await?;
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|(id, started, secs, state, modified, locked, query, user, host)| {
            json!({"thread_id": id, "started": started, "age_secs": secs, "state": state,
                   "rows_modified": modified, "rows_locked": locked, "query": query, "user": user, "host": host})
        })
        .collect();
    let evidence = json!({"threshold_secs": limit, "transactions": list});
    if rows.is_empty() {
        return Ok(result(
            "long_transactions",
            CheckStatus::Pass,
            format!("no transaction open longer than {limit}s"),
            evidence,
        ));
    }
    let oldest = rows.first().map(|r| r.2).unwrap_or(0);
    let summary = format!(
        "{} transaction(s) open longer than {limit}s (oldest {oldest}s)",
        rows.len()
    );
    let mut r = result("long_transactions", CheckStatus::Warn, summary, evidence);
    r.suggestions.push(
        "long transactions hold locks and stop InnoDB purging old row versions: commit or roll them back in the client that owns them".into(),
    );
    // Killing someone else's session loses their work: for review only.
    r.fix = Some(Fix {
        sql: rows.iter().map(|row| format!("KILL {}", row.0)).collect(),
        safe: false,
    });
    Ok(r)
}

/// `history_list`: InnoDB undo history not yet purged (grows behind long transactions).
pub async fn history_list(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
) -> Result<CheckResult, mysql_async::Error> {
    let status: Option<(String, String)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'")
        .await?;
    let length = match status.and_then(|(_, v)| v.parse::<u64>().ok()) {
        Some(v) => Some(v),
        // MySQL: from the metrics table (enabled by default).
        None => conn
            .query_first::<u64, _>("SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'")
            .await?,
    };
    let Some(length) = length else {
        return Ok(result(
            "history_list",
            CheckStatus::Skipped,
            "the server reports no history list length",
            json!(null),
        ));
    };
    let warn = ctx.cfg.history_list_warn;
    let evidence =
        json!({"history_list_length": length, "warn_at": warn, "fail_at": warn.saturating_mul(10)});
    let status = if length >= warn.saturating_mul(10) {
        CheckStatus::Fail
    } else if length >= warn {
        CheckStatus::Warn
    } else {
        CheckStatus::Pass
    };
    let mut r = result(
        "history_list",
        status,
        format!("history list length {length}"),
        evidence,
    );
    if status != CheckStatus::Pass {
        r.suggestions.push("purge is falling behind: end long-running transactions (see long_transactions); consider more innodb_purge_threads".into());
    }
    Ok(r)
}
