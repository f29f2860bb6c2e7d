//! `fleetsync status` (read-only: asks each source for its position and each target for its
//! stored progress) and `fleetsync resnapshot`.
//!
//! The stored progress cannot tell a pipeline that stopped on an error from one that is merely
//! behind, so `status` also asks a running fleetsync at `[metrics] listen` (when it answers
//! within [`LIVE_TIMEOUT`]) for its pipelines' states: a `failed` pipeline is shown as
//! `failed` with its reason, whatever its stored position says.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{anyhow, Result};
use fleetsync_agent::checkpoint::CheckpointStore;
use fleetsync_agent::source;
use fleetsync_agent::source::stream::now_ms;
use fleetsync_config::Config;
use fleetsync_coordinator::apply::{read_state, SnapshotState};
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::opts::opts_by_name;
use crate::preflight::source_spec;

/// How long `status` waits for a running fleetsync's `/health`.
const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn status(
    path: Option<&Path>,
    as_json: bool,
    remote: Option<crate::remote::Remote>,
) -> Result<()> {
    let out = match remote {
        Some(remote) => remote.get_json("/api/v1/status").await?,
        None => {
            let path = path.ok_or_else(|| {
                anyhow!("--config (or FLEETSYNC_CONFIG) is required (or run against a coordinator with --remote URL)")
            })?;
            let config = crate::opts::load_config(path).await?;
            report(&config).await?
        }
    };
    print(&out, as_json)
}

/// The status document (`status --json`, and `GET /api/v1/status`).
pub async fn report(config: &Config) -> Result<Value> {
    let live = live_pipelines(config).await;
    let mut syncs = Vec::new();
    for sync in &config.syncs {
        let mut s = sync_status(config, sync).await?;
        overlay_live(&mut s, &live);
        syncs.push(s);
    }
    Ok(json!({ "syncs": syncs }))
}

fn print(out: &Value, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(out);
    }
    Ok(())
}

async fn sync_status(config: &Config, sync: &fleetsync_config::SyncConfig) -> Result<Value> {
    let spec = source_spec(config, sync, "", 0)?;
    let mut source_error = None;
    let mut source_pos = None;
    let mut warnings = Vec::new();
    match source::connect(&spec).await {
        Ok(mut conn) => {
            match source::current_position(&mut conn, &spec.name).await {
                Ok(p) => source_pos = Some(p),
                Err(e) => source_error = Some(e.to_string()),
            }
            if let Ok(keyless) = keyless_tables(&mut conn).await {
                for (s, t) in keyless
                    .into_iter()
                    .filter(|(s, t)| spec.filter.matches(s, t))
                {
                    warnings.push(format!("{s}.{t} has no primary or unique key: rows are applied one by one, matched by their full before-image (slow)"));
                }
            }
            let _ = conn.disconnect().await;
        }
        Err(e) => source_error = Some(e.to_string()),
    }
    let mut targets = Vec::new();
    for target in &sync.targets {
        targets.push(target_status(config, sync, target, source_pos.as_ref(), &warnings).await);
    }
    Ok(json!({
        "name": sync.name,
        "source": sync.source,
        "source_position": source_pos.as_ref().map(|p| p.to_string()),
        "source_error": source_error,
        "targets": targets,
    }))
}

async fn target_status(
    config: &Config,
    sync: &fleetsync_config::SyncConfig,
    target: &str,
    source_pos: Option<&fleetsync_proto::Position>,
    warnings: &[String],
) -> Value {
    let mut warnings = warnings.to_vec();
    let opts = match opts_by_name(config, target) {
        Ok(o) => o,
        Err(e) => {
            return json!({"name": target, "state": "error", "error": e.to_string(), "warnings": warnings})
        }
    };
    let mut conn = match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => {
            return json!({"name": target, "state": "unreachable", "error": source::connect_error(target, e).to_string(), "warnings": warnings, "applied_position": null, "lag_seconds": null})
        }
    };
    let state = read_state(&mut conn, &sync.name, &sync.source).await;
    let paused: Vec<(String, String, String)> = conn
        .exec("SELECT schema_name, table_name, reason FROM fleetsync.paused_tables WHERE sync_name = ?", (sync.name.as_str(),))
        .await
        .unwrap_or_default();
    for (s, t, reason) in &paused {
        warnings.push(format!("{s}.{t} is paused: {reason}"));
    }
    // The coordinator applying this pair (coordinators on Kafka): `null` when none holds it.
    let owner = crate::kafka_cmds::owner_of(&mut conn, &sync.name, target).await;
    let _ = conn.disconnect().await;
    let mut out = match state {
        Err(e) => {
            json!({"name": target, "state": "error", "error": e.to_string(), "warnings": warnings, "applied_position": null, "lag_seconds": null})
        }
        Ok(None) => {
            json!({"name": target, "state": "not started", "applied_position": null, "lag_seconds": null, "warnings": warnings})
        }
        Ok(Some(s)) => {
            let caught_up = source_pos.is_some_and(|p| &s.position >= p);
            let lag = if caught_up {
                0.0
            } else {
                now_ms().saturating_sub(s.source_commit_ts_ms) as f64 / 1000.0
            };
            let state = match s.snapshot {
                SnapshotState::Running => "snapshotting",
                SnapshotState::Done if caught_up => "caught up",
                SnapshotState::Done => "behind",
            };
            json!({
                "name": target,
                "state": state,
                "applied_position": s.position.to_string(),
                "lag_seconds": lag,
                "rows_applied": s.rows,
                "transactions_applied": s.txns,
                "warnings": warnings,
            })
        }
    };
    out["owner"] = json!(owner);
    out
}

/// The pipelines of a fleetsync running with this config (`GET /health` at
/// `[metrics] listen`, which lists each pipeline's state and error); empty when none answers.
async fn live_pipelines(config: &Config) -> Vec<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut addr) = config.metrics_addr() else {
        return Vec::new();
    };
    if addr.port() == 0 {
        return Vec::new();
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        let body = text.split_once("\r\n\r\n")?.1;
        let health = serde_json::from_str::<Value>(body).ok()?;
        health["pipelines"].as_array().cloned()
    };
    tokio::time::timeout(LIVE_TIMEOUT, fetch)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Adds the running pipeline's state and error to each target of `sync`; a `failed` pipeline
/// makes the target's state `failed`.
fn overlay_live(sync: &mut Value, live: &[Value]) {
    let name = sync["name"].as_str().unwrap_or("").to_string();
    let Some(targets) = sync["targets"].as_array_mut() else {
        return;
    };
    for t in targets {
        let target = t["name"].as_str().unwrap_or("");
        let Some(p) = live.iter().find(|p| {
            p["sync"].as_str() == Some(name.as_str()) && p["target"].as_str() == Some(target)
        }) else {
            continue;
        };
        t["pipeline_state"] = p["state"].clone();
        // Coordinator groups: whether the member answering at `[metrics] listen` applies it.
        if !t["owner"].is_null() {
            t["owner_is_local"] = json!(p["owner"] == t["owner"]);
        }
        if p["state"].as_str() == Some("failed") {
            t["state"] = json!("failed");
        }
        if !p["error"].is_null() {
            t["error"] = p["error"].clone();
        }
        if !p["failure"].is_null() {
            t["failure"] = p["failure"].clone();
        }
    }
}

/// Base tables with no unique index at all.
async fn keyless_tables(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(String, String)>, mysql_async::Error> {
    conn.query(
        "SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t \
         WHERE t.TABLE_TYPE = 'BASE TABLE' AND t.TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys','fleetsync') \
         AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA \
         AND s.TABLE_NAME = t.TABLE_NAME AND s.NON_UNIQUE = 0) ORDER BY 1, 2",
    )
    .await
}

fn print_text(out: &Value) {
    let empty = Vec::new();
    for s in out["syncs"].as_array().unwrap_or(&empty) {
        println!(
            "sync {}: source {} at {}",
            s["name"].as_str().unwrap_or(""),
            s["source"].as_str().unwrap_or(""),
            s["source_position"].as_str().unwrap_or("?")
        );
        if let Some(e) = s["source_error"].as_str() {
            println!("  source error: {e}");
        }
        for t in s["targets"].as_array().unwrap_or(&empty) {
            println!(
                "  target {}: {}, applied {}, lag {}",
                t["name"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or(""),
                t["applied_position"].as_str().unwrap_or("-"),
                t["lag_seconds"]
                    .as_f64()
                    .map(|l| format!("{l:.1} s"))
                    .unwrap_or_else(|| "-".into())
            );
            if let Some(e) = t["error"].as_str() {
                println!("    error: {e}");
            }
            for w in t["warnings"].as_array().unwrap_or(&empty) {
                println!("    warning: {}", w.as_str().unwrap_or(""));
            }
        }
    }
}

pub async fn resnapshot(path: &Path, sync_name: &str, only: Option<&str>, yes: bool) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let sync = config
        .syncs
        .iter()
        .find(|s| s.name == sync_name)
        .ok_or_else(|| anyhow!("no sync named {sync_name:?}"))?;
    let targets: Vec<&String> = sync
        .targets
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.as_str()))
        .collect();
    if targets.is_empty() {
        return Err(anyhow!(
            "sync {sync_name} has no target named {:?}",
            only.unwrap_or("")
        ));
    }
    let names: Vec<&str> = targets.iter().map(|t| t.as_str()).collect();
    if !yes && !confirm(&format!(
        "The next run reloads every table of sync {sync_name} on {} from {} (their rows are replaced). Type 'yes' to continue: ",
        names.join(", "),
        sync.source
    ))? {
        return Err(anyhow!("not confirmed; nothing changed (use --yes to skip the question)"));
    }
    for target in targets {
        mark_for_resnapshot(&config, sync, target).await?;
        if let Ok(store) = CheckpointStore::open(&config.state_dir) {
            let _ = store.remove(&sync.name, target);
        }
        println!("target {target}: the next run re-snapshots sync {sync_name}");
    }
    Ok(())
}

/// Marks `sync`'s progress row on `target` so that its next run re-snapshots (no row yet:
/// nothing to do, the first run snapshots anyway). Its pipelines must not run meanwhile.
pub async fn mark_for_resnapshot(
    config: &Config,
    sync: &fleetsync_config::SyncConfig,
    target: &str,
) -> Result<()> {
    let mut conn = mysql_async::Conn::new(opts_by_name(config, target)?)
        .await
        .map_err(|e| anyhow!("{}", source::connect_error(target, e)))?;
    let r = conn
        .exec_drop(
            "UPDATE fleetsync.sync_state SET snapshot_state = 'running' WHERE sync_name = ? AND source_name = ?",
            (sync.name.as_str(), sync.source.as_str()),
        )
        .await;
    if let Err(e) = r {
        if !matches!(&e, mysql_async::Error::Server(s) if s.code == 1146 || s.code == 1049) {
            return Err(anyhow!("target {target}: {e}"));
        }
    }
    let _ = conn.disconnect().await;
    Ok(())
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
