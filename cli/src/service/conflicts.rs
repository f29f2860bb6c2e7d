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
pub use fleetsync_proto::conflicts::{Choice, ConflictFilter, Take};
use fleetsync_proto::conflicts::{Conflict, ConflictResolution};
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
    `resolution`,CAST(`resolved_at` AS CHAR),`before_json`";

/// [`COLUMNS`] on a conflict table no applier has upgraded yet (no `before_json`).
const COLUMNS_OLD: &str = "`id`,`sync_name`,`schema_name`,`table_name`,`key_json`,`incoming_json`,\
    `local_json`,`origin_server`,`source_position`,CAST(`detected_at` AS CHAR),`status`,\
    `resolution`,CAST(`resolved_at` AS CHAR),NULL";

/// Server error "unknown column": the conflict table predates `before_json`.
const UNKNOWN_COLUMN: u16 = 1054;

/// Runs `q` with `{COLS}` replaced by [`COLUMNS`], or by [`COLUMNS_OLD`] on a table that
/// lacks `before_json`.
async fn fetch(
    conn: &mut Conn,
    q: &str,
    params: Vec<mysql_async::Value>,
) -> Result<Vec<Row>, mysql_async::Error> {
    match conn
        .exec::<Row, _, _>(q.replace("{COLS}", COLUMNS), params.clone())
        .await
    {
        Err(mysql_async::Error::Server(e)) if e.code == UNKNOWN_COLUMN => {
            conn.exec(q.replace("{COLS}", COLUMNS_OLD), params).await
        }
        other => other,
    }
}

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
        before_recorded: text(row, 13).is_some(),
        before: json_col(row, 13),
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
    let mut q = "SELECT {COLS} FROM `fleetsync`.`conflicts` WHERE 1=1".to_string();
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
    match fetch(conn, &q, params).await {
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
    let mut q = format!("SELECT {{COLS}} FROM `fleetsync`.`conflicts` WHERE `id`>{after}");
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        q.push_str(&format!(" OR `id` IN ({})", list.join(",")));
    }
    q.push_str(&format!(" ORDER BY `id` LIMIT {LIST_LIMIT}"));
    match fetch(conn, &q, Vec::new()).await {
        Ok(rows) => Ok(rows.iter().map(|r| conflict(target, r)).collect()),
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::from(e)
            .context(format!("reading the conflicts of {target}"))
            .into()),
    }
}

async fn one(conn: &mut Conn, target: &str, id: u64) -> Result<Option<Conflict>, ConflictError> {
    let q = "SELECT {COLS} FROM `fleetsync`.`conflicts` WHERE `id`=?";
    match fetch(conn, q, vec![id.into()]).await {
        Ok(rows) => Ok(rows.first().map(|r| conflict(target, r))),
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
    resolve_choice(config, target, id, &Choice::Take(take), dry_run).await
}

/// Resolves open conflict `id` of `target` by `choice` (a side, or a merged row checked
/// against the target table's columns); the write and the conflict's status change commit in
/// one transaction. A dry run reads only (and checks a merged row) and answers what would be
/// written.
pub async fn resolve_choice(
    config: &Config,
    target: &str,
    id: u64,
    choice: &Choice,
    dry_run: bool,
) -> Result<ConflictResolution, ConflictError> {
    known_target(config, target)?;
    let mut conn = connect(config, target).await?;
    let out = resolve_on(&mut conn, config, target, id, choice, dry_run).await;
    if out.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    let _ = conn.disconnect().await;
    out
}

/// The parked conflict's fields a resolution needs.
type Parked = (Vec<u8>, String, String, String, String, String, String);

async fn resolve_on(
    conn: &mut Conn,
    config: &Config,
    target: &str,
    id: u64,
    choice: &Choice,
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
    let row: Option<Parked> = match conn
        .exec_first(
            format!(
                "SELECT `apply_sql`,`origin_server`,`status`,`sync_name`,`schema_name`,\
                 `table_name`,`key_json` FROM `fleetsync`.`conflicts` WHERE `id`=?{lock}"
            ),
            (id,),
        )
        .await
    {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if NO_TABLE.contains(&e.code) => None,
        Err(e) => return Err(sql(e, "reading")),
    };
    let (apply, origin, status, sync_name, schema, table, key) =
        row.ok_or_else(|| ConflictError::NotFound {
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
    let (resolution, statement) = match choice {
        Choice::Take(Take::Incoming) => (
            format!("took {origin} (incoming)"),
            Some(String::from_utf8_lossy(&apply).into_owned()),
        ),
        Choice::Take(Take::Local) => (format!("kept {target} (local)"), None),
        Choice::Merged(row) => {
            let (ts, tt) = target_table(config, &sync_name, &schema, &table);
            let key: Value = serde_json::from_str(&key).unwrap_or(Value::Null);
            let cols = table_columns(conn, &ts, &tt)
                .await
                .map_err(|e| sql(e, "reading the table of"))?;
            let stmt = merged_upsert(&ts, &tt, &cols, &key, row)?;
            (format!("merged row written on {target}"), Some(stmt))
        }
    };
    if !dry_run {
        match (choice, &statement) {
            (Choice::Take(Take::Incoming), _) => {
                conn.query_drop(apply.as_slice()).await.with_context(|| {
                    format!("applying the incoming version of conflict {id} on {target}")
                })?;
            }
            (Choice::Merged(_), Some(stmt)) => {
                // Strict: a value the column cannot hold is refused, not truncated.
                conn.query_drop(
                    "SET sql_mode='STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
                )
                .await
                .map_err(|e| sql(e, "preparing the merged row of"))?;
                match conn.query_drop(stmt.as_str()).await {
                    Ok(()) => {}
                    Err(mysql_async::Error::Server(e)) if BAD_VALUE.contains(&e.code) => {
                        return Err(ConflictError::Invalid {
                            field: "row",
                            value: format!("{schema}.{table}"),
                            rule: format!("the target refused the merged row: {}", e.message),
                        })
                    }
                    Err(e) => return Err(sql(e, "writing the merged row of")),
                }
            }
            _ => {}
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
        tracing::info!(target_server = target, conflict = id, take = choice.as_str(), %resolution, "conflict resolved");
    }
    Ok(ConflictResolution {
        target: target.to_string(),
        id,
        take: choice.as_str().to_string(),
        origin,
        resolution,
        statement,
        dry_run,
    })
}

/// Server errors meaning "this value does not fit the column" (strict mode): bad input.
const BAD_VALUE: &[u16] = &[1048, 1264, 1265, 1292, 1366, 1367, 1406, 1452, 4025];

/// The target table of a parked conflict (its sync's `map`; unmapped: the same name).
fn target_table(config: &Config, sync: &str, schema: &str, table: &str) -> (String, String) {
    config
        .syncs
        .iter()
        .find(|s| s.name == sync)
        .and_then(|s| s.table_map().ok())
        .map(|m| m.target(schema, table))
        .unwrap_or_else(|| (schema.to_string(), table.to_string()))
}

/// One column of a target table: name, `DATA_TYPE`, generated.
#[derive(Debug, Clone, PartialEq)]
pub struct TableColumn {
    pub name: String,
    pub data_type: String,
    pub generated: bool,
}

async fn table_columns(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Vec<TableColumn>, mysql_async::Error> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(LOWER(DATA_TYPE) AS CHAR), \
             CAST(UPPER(EXTRA) AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA=? AND TABLE_NAME=? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, data_type, extra)| TableColumn {
            name,
            data_type,
            generated: extra.contains("GENERATED"),
        })
        .collect())
}

/// The upsert writing a merged row on `schema.table`: every writable column of the table must
/// be given (and nothing else), the key columns with the conflict's key values. Values are as
/// in a conflict's images: text and numbers as they are, binary columns in base64, JSON
/// columns as JSON, temporal values as text (`T` and a trailing `Z` accepted).
pub fn merged_upsert(
    schema: &str,
    table: &str,
    columns: &[TableColumn],
    key: &Value,
    row: &serde_json::Map<String, Value>,
) -> Result<String, ConflictError> {
    use base64::Engine as _;
    let bad = |value: &str, rule: String| ConflictError::Invalid {
        field: "row",
        value: value.to_string(),
        rule,
    };
    let name = format!("{}.{}", ident(schema), ident(table));
    if columns.is_empty() {
        return Err(bad(
            &format!("{schema}.{table}"),
            "the table does not exist on the target".into(),
        ));
    }
    for k in row.keys() {
        match columns.iter().find(|c| &c.name == k) {
            None => return Err(bad(k, format!("is not a column of {name}"))),
            Some(c) if c.generated => {
                return Err(bad(k, "is a generated column: it cannot be written".into()))
            }
            Some(_) => {}
        }
    }
    if let Value::Object(key) = key {
        for (k, v) in key {
            if row.get(k) != Some(v) {
                return Err(bad(k, format!("is a key column: it must stay {v}")));
            }
        }
    }
    let mut names = Vec::new();
    let mut values = Vec::new();
    for c in columns.iter().filter(|c| !c.generated) {
        let v = row
            .get(&c.name)
            .ok_or_else(|| bad(&c.name, "is missing from the merged row".into()))?;
        let binary = matches!(
            c.data_type.as_str(),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
        );
        let lit = match v {
            Value::Null => "NULL".to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(t) if binary => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|_| bad(&c.name, "must be base64 (a binary column)".into()))?;
                if bytes.is_empty() {
                    "''".to_string()
                } else {
                    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                    format!("X'{hex}'")
                }
            }
            Value::String(t) if matches!(c.data_type.as_str(), "datetime" | "timestamp") => {
                quote(t.trim_end_matches('Z').replacen('T', " ", 1).as_str())
            }
            Value::String(t) => quote(t),
            Value::Object(_) | Value::Array(_)
                if c.data_type == "json" || c.data_type == "longtext" =>
            {
                quote(&v.to_string())
            }
            Value::Object(_) | Value::Array(_) => {
                return Err(bad(
                    &c.name,
                    "must be a plain value, not a JSON object".into(),
                ))
            }
        };
        names.push(ident(&c.name));
        values.push(lit);
    }
    let updates: Vec<String> = names.iter().map(|n| format!("{n}=VALUES({n})")).collect();
    Ok(format!(
        "INSERT INTO {name} ({}) VALUES ({}) ON DUPLICATE KEY UPDATE {}",
        names.join(","),
        values.join(","),
        updates.join(",")
    ))
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A string literal (backslash escapes: the resolution's session keeps them on).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<TableColumn> {
        [
            "id:int",
            "val:varchar",
            "blob:varbinary",
            "updated_at:datetime",
            "g:int",
        ]
        .iter()
        .map(|s| {
            let (n, t) = s.split_once(':').unwrap_or_default();
            TableColumn {
                name: n.into(),
                data_type: t.into(),
                generated: n == "g",
            }
        })
        .collect()
    }

    fn row(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn merged_upsert_writes_every_column_quoted() {
        let key = serde_json::json!({"id": 7});
        let r = row(
            serde_json::json!({"id": 7, "val": "it's \\ ok", "blob": "AAE=",
            "updated_at": "2026-01-02T03:04:05.000001Z"}),
        );
        let q = merged_upsert("app", "t`x", &cols(), &key, &r).expect("valid");
        assert_eq!(
            q,
            "INSERT INTO `app`.`t``x` (`id`,`val`,`blob`,`updated_at`) VALUES (7,'it\\'s \\\\ ok',\
             X'0001','2026-01-02 03:04:05.000001') ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),\
             `val`=VALUES(`val`),`blob`=VALUES(`blob`),`updated_at`=VALUES(`updated_at`)"
        );
    }

    #[test]
    fn merged_upsert_refuses_bad_rows() {
        let key = serde_json::json!({"id": 7});
        let full = serde_json::json!({"id": 7, "val": "v", "blob": null, "updated_at": null});
        let cases = [
            (
                serde_json::json!({"id": 8, "val": "v", "blob": null, "updated_at": null}),
                "key column",
            ),
            (
                serde_json::json!({"id": 7, "val": "v", "blob": null}),
                "missing",
            ),
            (
                serde_json::json!({"id": 7, "val": "v", "blob": null, "updated_at": null, "zz": 1}),
                "not a column",
            ),
            (
                serde_json::json!({"id": 7, "val": "v", "blob": null, "updated_at": null, "g": 1}),
                "generated",
            ),
            (
                serde_json::json!({"id": 7, "val": "v", "blob": "!!", "updated_at": null}),
                "base64",
            ),
            (
                serde_json::json!({"id": 7, "val": {"a": 1}, "blob": null, "updated_at": null}),
                "plain value",
            ),
        ];
        for (r, want) in cases {
            let e = merged_upsert("app", "t", &cols(), &key, &row(r.clone()))
                .expect_err("must be refused")
                .to_string();
            assert!(e.contains(want), "{r}: {e}");
        }
        assert!(merged_upsert("app", "t", &cols(), &key, &row(full)).is_ok());
        assert!(merged_upsert("app", "t", &[], &key, &row(serde_json::json!({}))).is_err());
    }
}
