//! `fleetsync conflicts list` and `fleetsync conflicts resolve`: the manual-strategy queue,
//! `fleetsync.conflicts` on each target.
//!
//! Conflict ids are per target (AUTO_INCREMENT on each server): `resolve ID` looks the id up
//! on every target and needs `--target` only when two targets hold an open conflict with it.
//! Resolving with `--take <origin>` runs the parked incoming version on the target (an upsert
//! of the incoming row, or a delete by key when the incoming change deleted it) and marks the
//! conflict resolved, in one transaction; that write is not marked skip_replication, so it
//! replicates onward like an application write (servers that already hold that version see
//! no conflict: their row equals the change's final image). `--take <target>` keeps the local
//! row and only marks the conflict resolved.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use fleetsync_config::Config;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde_json::{json, Value};

use crate::opts::opts_by_name;

/// Every server that is a target of some sync, in name order.
fn targets(config: &Config) -> BTreeSet<String> {
    config
        .syncs
        .iter()
        .flat_map(|s| s.targets.iter().cloned())
        .collect()
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<Vec<u8>>, _>(i)
        .and_then(Result::ok)
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn json_col(row: &Row, i: usize) -> Value {
    text(row, i)
        .map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
        .unwrap_or(Value::Null)
}

const NO_TABLE: &[u16] = &[1049, 1146];

async fn open_conflicts(conn: &mut Conn, id: Option<u64>) -> Result<Vec<Row>> {
    let mut q = "SELECT `id`,`sync_name`,`schema_name`,`table_name`,`key_json`,`incoming_json`,\
        `local_json`,`origin_server`,`source_position`,CAST(`detected_at` AS CHAR) \
        FROM `fleetsync`.`conflicts` WHERE `status`='open'"
        .to_string();
    if let Some(id) = id {
        q.push_str(&format!(" AND `id`={id}"));
    }
    q.push_str(" ORDER BY `id`");
    match conn.query(q).await {
        Ok(rows) => Ok(rows),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn to_json(target: &str, row: &Row) -> Value {
    json!({
        "target": target,
        "id": row.get_opt::<u64, _>(0).and_then(Result::ok),
        "sync": text(row, 1),
        "schema": text(row, 2),
        "table": text(row, 3),
        "key": json_col(row, 4),
        "incoming": json_col(row, 5),
        "local": json_col(row, 6),
        "origin": text(row, 7),
        "source_position": text(row, 8),
        "detected_at": text(row, 9),
    })
}

async fn connect(config: &Config, server: &str) -> Result<Conn> {
    let opts = opts_by_name(config, server)?;
    Conn::new(opts)
        .await
        .with_context(|| format!("connecting to server {server:?}"))
}

pub async fn list(path: &Path, as_json: bool) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let mut all = Vec::new();
    for target in targets(&config) {
        let mut conn = connect(&config, &target).await?;
        for row in open_conflicts(&mut conn, None).await? {
            all.push(to_json(&target, &row));
        }
        let _ = conn.disconnect().await;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(all))?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no open conflicts");
    }
    for c in &all {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        println!(
            "{} #{} sync {} {}.{} key {} from {} at {} (detected {})\n  incoming: {}\n  local:    {}",
            s("target"),
            c["id"],
            s("sync"),
            s("schema"),
            s("table"),
            c["key"],
            s("origin"),
            s("source_position"),
            s("detected_at"),
            c["incoming"],
            c["local"],
        );
    }
    Ok(())
}

pub async fn resolve(path: &Path, id: u64, take: &str, only: Option<&str>) -> Result<()> {
    let config = crate::opts::load_config(path).await?;
    let mut found: Vec<(String, String)> = Vec::new(); // (target, origin)
    for target in targets(&config) {
        if only.is_some_and(|t| t != target) {
            continue;
        }
        let mut conn = connect(&config, &target).await?;
        if let Some(row) = open_conflicts(&mut conn, Some(id)).await?.first() {
            found.push((target.clone(), text(row, 7).unwrap_or_default()));
        }
        let _ = conn.disconnect().await;
    }
    let (target, origin) = match found.as_slice() {
        [] => bail!("no open conflict with id {id}"),
        [one] => one.clone(),
        _ => bail!(
            "open conflict {id} exists on several targets ({}): add --target",
            found
                .iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if take != origin && take != target {
        bail!("--take must be {origin:?} (the incoming version) or {target:?} (the local one)");
    }
    let mut conn = connect(&config, &target).await?;
    conn.query_drop(
        "SET NAMES binary; SET time_zone='+00:00'; SET foreign_key_checks=0; \
         SET sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'; START TRANSACTION",
    )
    .await?;
    let apply: Option<Vec<u8>> = conn
        .query_first(format!(
            "SELECT `apply_sql` FROM `fleetsync`.`conflicts` WHERE `id`={id} AND `status`='open' FOR UPDATE"
        ))
        .await?;
    let apply = apply.ok_or_else(|| anyhow!("conflict {id} on {target} is no longer open"))?;
    let resolution = if take == origin {
        conn.query_drop(apply.as_slice()).await.with_context(|| {
            format!("applying the incoming version of conflict {id} on {target}")
        })?;
        format!("took {origin} (incoming)")
    } else {
        format!("kept {target} (local)")
    };
    conn.query_drop(format!(
        "UPDATE `fleetsync`.`conflicts` SET `status`='resolved', `resolution`='{}', \
         `resolved_at`=NOW(6) WHERE `id`={id}; COMMIT",
        resolution.replace('\'', "")
    ))
    .await?;
    let _ = conn.disconnect().await;
    println!("conflict {id} on {target}: {resolution}");
    Ok(())
}
