//! The manual conflict queue (`conflict = "manual"`): `fleetsync.conflicts` on each target,
//! read and resolved for `fleetsync conflicts list|resolve` and for `/api/v1/conflicts`.
//!
//! Conflict ids are per target (AUTO_INCREMENT on each server). Resolving by taking the
//! incoming version runs the parked statement on the target (an upsert of the incoming row,
//! or a delete by key when the incoming change deleted it) and marks the conflict resolved, in
//! one transaction; that write is not marked skip_replication, so it replicates onward like an
//! application write (servers that already hold that version see no conflict: their row equals
//! the change's final image). Keeping the local row only marks the conflict resolved.

use std::collections::BTreeSet;

use anyhow::Context;
use fleetsync_config::Config;
use fleetsync_proto::conflicts::{Conflict, ConflictResolution};
pub use fleetsync_proto::conflicts::{ConflictFilter, Take};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde_json::Value;

use crate::opts::opts_by_name;

/// Most conflicts listed per target (the newest of a long resolved history are enough).
pub const LIST_LIMIT: usize = 1000;

/// Server errors meaning "no `fleetsync.conflicts` there yet" (no database, no table): no
/// conflict was ever parked on that target.
const NO_TABLE: &[u16] = &[1049, 1146];

/// Why a conflict call did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    #[error("{0:?} is not the target of any sync")]
    UnknownTarget(String),
    #[error("no conflict {id} on {target}")]
    NotFound { target: String, id: u64 },
    #[error("conflict {id} on {target} is {status}, not open")]
    NotOpen {
        target: String,
        id: u64,
        status: String,
    },
    #[error("{field} {value:?}: {rule}")]
    Invalid {
        field: &'static str,
        value: String,
        rule: String,
    },
    #[error("cannot reach target {target}: {message}")]
    Unreachable { target: String, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Every server that is a target of some sync, in name order.
pub fn targets(config: &Config) -> BTreeSet<String> {
    config
        .syncs
        .iter()
        .flat_map(|s| s.targets.iter().cloned())
        .collect()
}

fn known_target(config: &Config, target: &str) -> Result<(), ConflictError> {
    if targets(config).contains(target) {
        Ok(())
    } else {
        Err(ConflictError::UnknownTarget(target.to_string()))
    }
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

const COLUMNS: &str = "`id`,`sync_name`,`schema_name`,`table_name`,`key_json`,`incoming_json`,\
    `local_json`,`origin_server`,`source_position`,CAST(`detected_at` AS CHAR),`status`,\
    `resolution`,CAST(`resolved_at` AS CHAR)";

fn conflict(target: &str, row: &Row) -> Conflict {
    Conflict {
        target: target.to_string(),
        id: row.get_opt::<u64, _>(0).and_then(Result::ok).unwrap_or(0),
        sync: text(row, 1).unwrap_or_default(),
        schema: text(row, 2).unwrap_or_default(),
        table: text(row, 3).unwrap_or_default(),
        key: json_col(row, 4),
        incoming: json_col(row, 5),
        local: json_col(row, 6),
        origin: text(row, 7).unwrap_or_default(),
        source_position: text(row, 8).unwrap_or_default(),
        detected_at: text(row, 9).unwrap_or_default(),
        status: text(row, 10).unwrap_or_default(),
        resolution: text(row, 11),
        resolved_at: text(row, 12),
    }
}

/// A connection to `target` (its server's options from the file).
pub async fn connect(config: &Config, target: &str) -> Result<Conn, ConflictError> {
    let opts = opts_by_name(config, target)?;
    Conn::new(opts)
        .await
        .map_err(|e| ConflictError::Unreachable {
            target: target.to_string(),
            message: e.to_string(),
        })
}

/// The conflicts of `target` matching `filter` (sync, table, status), oldest first.
pub async fn query(
    conn: &mut Conn,
    target: &str,
    filter: &ConflictFilter,
) -> Result<Vec<Conflict>, ConflictError> {
    let mut q = format!("SELECT {COLUMNS} FROM `fleetsync`.`conflicts` WHERE 1=1");
    let mut params: Vec<mysql_async::Value> = Vec::new();
    match filter.status.as_deref().unwrap_or("open") {
        "all" => {}
        s @ ("open" | "resolved") => {
            q.push_str(" AND `status`=?");
            params.push(s.into());
        }
        other => {
            return Err(ConflictError::Invalid {
                field: "status",
                value: other.to_string(),
                rule: "must be open, resolved or all".into(),
            })
        }
    }
    if let Some(sync) = &filter.sync {
        q.push_str(" AND `sync_name`=?");
        params.push(sync.as_str().into());
    }
    if let Some(table) = &filter.table {
        match table.split_once('.') {
            Some((schema, name)) => {
                q.push_str(" AND `schema_name`=? AND `table_name`=?");
                params.push(schema.into());
                params.push(name.into());
            }
            None => {
                q.push_str(" AND `table_name`=?");
                params.push(table.as_str().into());
            }
        }
    }
    // The newest LIST_LIMIT, shown oldest first.
    let q = format!("SELECT * FROM ({q} ORDER BY `id` DESC LIMIT {LIST_LIMIT}) AS c ORDER BY 1");
    match conn.exec::<Row, _, _>(q, params).await {
        Ok(rows) => Ok(rows.iter().map(|r| conflict(target, r)).collect()),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("reading the conflicts of {target}"))
            .into()),
    }
}

/// The conflicts of every target (or `filter.target`) matching `filter`, by target then id.
pub async fn list(
    config: &Config,
    filter: &ConflictFilter,
) -> Result<Vec<Conflict>, ConflictError> {
    if let Some(t) = &filter.target {
        known_target(config, t)?;
    }
    let mut all = Vec::new();
    for target in targets(config) {
        if filter.target.as_ref().is_some_and(|t| *t != target) {
            continue;
        }
        let mut conn = connect(config, &target).await?;
        all.extend(query(&mut conn, &target, filter).await?);
        let _ = conn.disconnect().await;
    }
    Ok(all)
}

/// The highest conflict id of `target` (0: none, or no table yet).
pub async fn max_id(conn: &mut Conn, target: &str) -> Result<u64, ConflictError> {
    match conn
        .query_first::<Option<u64>, _>("SELECT MAX(`id`) FROM `fleetsync`.`conflicts`")
        .await
    {
        Ok(v) => Ok(v.flatten().unwrap_or(0)),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(0),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("reading the conflicts of {target}"))
            .into()),
    }
}

/// For a watcher: the conflicts of `target` with an id above `after` (whatever their status)
/// and the current state of those of `ids`, by id.
pub async fn watch(
    conn: &mut Conn,
    target: &str,
    after: u64,
    ids: &BTreeSet<u64>,
) -> Result<Vec<Conflict>, ConflictError> {
    let mut q = format!("SELECT {COLUMNS} FROM `fleetsync`.`conflicts` WHERE `id`>{after}");
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        q.push_str(&format!(" OR `id` IN ({})", list.join(",")));
    }
    q.push_str(&format!(" ORDER BY `id` LIMIT {LIST_LIMIT}"));
    match conn.query::<Row, _>(q).await {
        Ok(rows) => Ok(rows.iter().map(|r| conflict(target, r)).collect()),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("reading the conflicts of {target}"))
            .into()),
    }
}

async fn one(conn: &mut Conn, target: &str, id: u64) -> Result<Option<Conflict>, ConflictError> {
    let q = format!("SELECT {COLUMNS} FROM `fleetsync`.`conflicts` WHERE `id`=?");
    match conn.exec_first::<Row, _, _>(q, (id,)).await {
        Ok(row) => Ok(row.map(|r| conflict(target, &r))),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(None),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("reading conflict {id} of {target}"))
            .into()),
    }
}

/// Conflict `id` of `target`, open or resolved.
pub async fn get(config: &Config, target: &str, id: u64) -> Result<Conflict, ConflictError> {
    known_target(config, target)?;
    let mut conn = connect(config, target).await?;
    let found = one(&mut conn, target, id).await;
    let _ = conn.disconnect().await;
    found?.ok_or_else(|| ConflictError::NotFound {
        target: target.to_string(),
        id,
    })
}

/// The open conflicts with `id` on every target (or only `only`): the CLI's lookup, which
/// needs `--target` only when several targets hold one.
pub async fn find_open(
    config: &Config,
    id: u64,
    only: Option<&str>,
) -> Result<Vec<Conflict>, ConflictError> {
    if let Some(t) = only {
        known_target(config, t)?;
    }
    let mut found = Vec::new();
    for target in targets(config) {
        if only.is_some_and(|t| t != target) {
            continue;
        }
        let mut conn = connect(config, &target).await?;
        let c = one(&mut conn, &target, id).await;
        let _ = conn.disconnect().await;
        found.extend(c?.filter(|c| c.status == "open"));
    }
    Ok(found)
}

/// Resolves open conflict `id` of `target` by `take`; a dry run reads only and answers what
/// would be written.
pub async fn resolve(
    config: &Config,
    target: &str,
    id: u64,
    take: Take,
    dry_run: bool,
) -> Result<ConflictResolution, ConflictError> {
    known_target(config, target)?;
    let mut conn = connect(config, target).await?;
    let out = resolve_on(&mut conn, target, id, take, dry_run).await;
    if out.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    let _ = conn.disconnect().await;
    out
}

async fn resolve_on(
    conn: &mut Conn,
    target: &str,
    id: u64,
    take: Take,
    dry_run: bool,
) -> Result<ConflictResolution, ConflictError> {
    let sql = |e: mysql_async::Error, what: &str| -> ConflictError {
        anyhow::Error::from(e)
            .context(format!("{what} conflict {id} on {target}"))
            .into()
    };
    if !dry_run {
        conn.query_drop(
            "SET NAMES binary; SET time_zone='+00:00'; SET foreign_key_checks=0; \
             SET sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'; START TRANSACTION",
        )
        .await
        .map_err(|e| sql(e, "starting to resolve"))?;
    }
    let lock = if dry_run { "" } else { " FOR UPDATE" };
    let row: Option<(Vec<u8>, String, String)> = match conn
        .exec_first(
            format!(
                "SELECT `apply_sql`,`origin_server`,`status` FROM `fleetsync`.`conflicts` WHERE `id`=?{lock}"
            ),
            (id,),
        )
        .await
    {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => None,
        Err(e) => return Err(sql(e, "reading")),
    };
    let (apply, origin, status) = row.ok_or_else(|| ConflictError::NotFound {
        target: target.to_string(),
        id,
    })?;
    if status != "open" {
        return Err(ConflictError::NotOpen {
            target: target.to_string(),
            id,
            status,
        });
    }
    let resolution = match take {
        Take::Incoming => format!("took {origin} (incoming)"),
        Take::Local => format!("kept {target} (local)"),
    };
    let statement = (take == Take::Incoming).then(|| String::from_utf8_lossy(&apply).into_owned());
    if !dry_run {
        if take == Take::Incoming {
            conn.query_drop(apply.as_slice()).await.with_context(|| {
                format!("applying the incoming version of conflict {id} on {target}")
            })?;
        }
        conn.exec_drop(
            "UPDATE `fleetsync`.`conflicts` SET `status`='resolved', `resolution`=?, \
             `resolved_at`=NOW(6) WHERE `id`=?",
            (resolution.as_str(), id),
        )
        .await
        .map_err(|e| sql(e, "marking resolved"))?;
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| sql(e, "committing"))?;
        tracing::info!(target_server = target, conflict = id, take = take.as_str(), %resolution, "conflict resolved");
    }
    Ok(ConflictResolution {
        target: target.to_string(),
        id,
        take: take.as_str().to_string(),
        origin,
        resolution,
        statement,
        dry_run,
    })
}
