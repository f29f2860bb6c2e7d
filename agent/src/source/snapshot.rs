//! The consistent initial snapshot.
//!
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` on MariaDB pins a read view together with the
//! binlog coordinate it corresponds to (`binlog_snapshot_file/position`), with no FLUSH TABLES
//! WITH READ LOCK. Every included table is read in that view, chunked by key (keyset
//! pagination, so each chunk is one short indexed query); tables without a key are streamed in
//! one query. The binlog stream then starts exactly at that coordinate: no gap, no duplicate.
//!
//! Published shape: a marker transaction (`snapshot`, `txn_id` 0, every table's schema, no
//! rows) so the consumer can prepare targets; one transaction per chunk (`Op::Snapshot` rows);
//! a final transaction with `snapshot_done`. All carry the snapshot's position.

use std::time::Instant;

use fleetsync_proto::{
    BinlogPosition, GtidSet, KeyKind, Op, Position, RowChange, TableSchema, Transaction, Value,
};
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use super::decode::from_mysql;
use super::schema::{list_tables, load_table};
use super::stream::now_ms;
use super::{connect, ServerInfo, SourceSpec};
use crate::publish::Publisher;
use crate::SourceError;
use fleetsync_proto::sql::ident as quote;

pub const METRIC_SNAPSHOT_ROWS: &str = "fleetsync_snapshot_rows_total";

/// Takes the snapshot and publishes it; returns the position to stream from afterwards.
pub async fn snapshot<P: Publisher>(
    spec: &SourceSpec,
    info: &ServerInfo,
    publisher: &mut P,
    cancel: &CancellationToken,
) -> Result<Option<Position>, SourceError> {
    let name = spec.name.as_str();
    let err = |ctx: &'static str| move |e| SourceError::from_mysql(name, ctx, e);
    let mut conn = connect(spec).await?;
    let mut meta = connect(spec).await?;
    conn.query_drop("SET NAMES binary, time_zone = '+00:00'")
        .await
        .map_err(err("preparing snapshot session"))?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(err("preparing snapshot session"))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(err("starting the consistent snapshot"))?;
    let position = snapshot_position(&mut conn, name).await?;
    let tables = list_tables(&mut meta, name, |s, t| spec.filter.matches(s, t)).await?;
    let mut schemas = Vec::with_capacity(tables.len());
    for (s, t) in &tables {
        if let Some(info) = load_table(&mut meta, name, s, t).await? {
            schemas.push(info.to_schema());
        }
    }
    tracing::info!(server = name, sync = %spec.sync, %position, tables = schemas.len(), "initial snapshot started");
    let mut chunk_no = 0u64;
    let marker = snapshot_txn(
        info,
        &position,
        chunk_no,
        schemas.clone(),
        Vec::new(),
        false,
    );
    publisher.publish(marker).await?;
    let started = Instant::now();
    let mut total = 0u64;
    for schema in &schemas {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let rows = copy_table(
            &mut conn,
            spec,
            info,
            &position,
            schema,
            &mut chunk_no,
            publisher,
            cancel,
        )
        .await?;
        total += rows;
        tracing::info!(server = name, table = %format!("{}.{}", schema.schema, schema.table), rows, "snapshot table copied");
    }
    chunk_no += 1;
    publisher
        .publish(snapshot_txn(
            info,
            &position,
            chunk_no,
            Vec::new(),
            Vec::new(),
            true,
        ))
        .await?;
    conn.query_drop("COMMIT")
        .await
        .map_err(err("ending the snapshot"))?;
    tracing::info!(
        server = name,
        rows = total,
        seconds = started.elapsed().as_secs_f64(),
        "initial snapshot done"
    );
    Ok(Some(position))
}

pub(crate) async fn snapshot_position(
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<Position, SourceError> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| SourceError::from_mysql(name, "reading the snapshot's binlog position", e))?;
    let get = |k: &[u8]| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let (Some(file), Some(pos)) = (
        get(b"binlog_snapshot_file"),
        get(b"binlog_snapshot_position"),
    ) else {
        return Err(SourceError::NeedsOperator {
            server: name.to_string(),
            message: "the server does not report binlog_snapshot_file/position (MariaDB is required for the lock-free initial snapshot)".into(),
        });
    };
    if file.is_empty() {
        return Err(SourceError::NeedsOperator {
            server: name.to_string(),
            message: "the binary log is off: a consistent snapshot records its binlog position (start the server with --log-bin)".into(),
        });
    }
    let pos: u64 = pos.parse().map_err(|_| SourceError::NeedsOperator {
        server: name.to_string(),
        message: format!("unexpected binlog_snapshot_position {pos:?}"),
    })?;
    let gtid: Option<Option<Vec<u8>>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), pos))
        .await
        .map_err(|e| SourceError::from_mysql(name, "BINLOG_GTID_POS", e))?;
    let gtid = gtid
        .flatten()
        .and_then(|g| String::from_utf8_lossy(&g).parse::<GtidSet>().ok())
        .filter(|g| !g.is_empty());
    Ok(Position {
        binlog: BinlogPosition { file, pos },
        gtid,
    })
}

fn snapshot_txn(
    info: &ServerInfo,
    position: &Position,
    chunk: u64,
    tables: Vec<TableSchema>,
    changes: Vec<RowChange>,
    done: bool,
) -> Transaction {
    Transaction {
        origin: info.origin.clone(),
        gtid: None,
        position: position.clone(),
        txn_id: chunk,
        commit_ts_ms: now_ms(),
        snapshot: true,
        snapshot_done: done,
        tables,
        changes,
        ddl: None,
    }
}

/// Copies one table in key order, one published transaction per chunk; returns rows copied.
#[allow(clippy::too_many_arguments)]
async fn copy_table<P: Publisher>(
    conn: &mut mysql_async::Conn,
    spec: &SourceSpec,
    info: &ServerInfo,
    position: &Position,
    schema: &TableSchema,
    chunk_no: &mut u64,
    publisher: &mut P,
    cancel: &CancellationToken,
) -> Result<u64, SourceError> {
    let table = format!("{}.{}", quote(&schema.schema), quote(&schema.table));
    let select: Vec<String> = schema
        .columns
        .iter()
        .map(|c| match c.ty {
            fleetsync_proto::ColumnType::Enum | fleetsync_proto::ColumnType::Set => {
                format!("{}+0", quote(&c.name))
            }
            _ => quote(&c.name),
        })
        .collect();
    let select = select.join(", ");
    let key: Vec<usize> = schema.key.iter().map(|&k| k as usize).collect();
    let chunk = spec.snapshot_chunk_rows;
    let name = spec.name.as_str();
    let rows_metric = metrics::counter!(METRIC_SNAPSHOT_ROWS, "server" => spec.name.clone());
    let mut copied = 0u64;
    if schema.key_kind == KeyKind::None || key.is_empty() {
        // No key to page by: one streamed query inside the snapshot.
        let sql = format!("SELECT {select} FROM {table}");
        let mut result = conn
            .exec_iter(sql, ())
            .await
            .map_err(|e| SourceError::from_mysql(name, &format!("reading {table}"), e))?;
        let mut changes = Vec::with_capacity(chunk.min(4096));
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| SourceError::from_mysql(name, &format!("reading {table}"), e))?
        {
            changes.push(row_change(schema, row.unwrap())?);
            if changes.len() >= chunk {
                copied += changes.len() as u64;
                rows_metric.increment(changes.len() as u64);
                *chunk_no += 1;
                let txn = snapshot_txn(
                    info,
                    position,
                    *chunk_no,
                    vec![schema.clone()],
                    std::mem::take(&mut changes),
                    false,
                );
                publisher.publish(txn).await?;
                if cancel.is_cancelled() {
                    return Ok(copied);
                }
            }
        }
        drop(result);
        if !changes.is_empty() {
            copied += changes.len() as u64;
            rows_metric.increment(changes.len() as u64);
            *chunk_no += 1;
            publisher
                .publish(snapshot_txn(
                    info,
                    position,
                    *chunk_no,
                    vec![schema.clone()],
                    changes,
                    false,
                ))
                .await?;
        }
        return Ok(copied);
    }
    let order: Vec<String> = key
        .iter()
        .map(|&k| quote(&schema.columns[k].name))
        .collect();
    let first = format!(
        "SELECT {select} FROM {table} ORDER BY {} LIMIT {chunk}",
        order.join(", ")
    );
    let next = format!(
        "SELECT {select} FROM {table} WHERE {} ORDER BY {} LIMIT {chunk}",
        after_key(&order),
        order.join(", ")
    );
    let mut last: Option<Vec<mysql_async::Value>> = None;
    loop {
        if cancel.is_cancelled() {
            return Ok(copied);
        }
        let rows: Vec<mysql_async::Row> = match &last {
            None => conn.exec(first.as_str(), ()).await,
            Some(k) => conn.exec(next.as_str(), keyset_params(k)).await,
        }
        .map_err(|e| SourceError::from_mysql(name, &format!("reading {table}"), e))?;
        let n = rows.len();
        let mut changes = Vec::with_capacity(n);
        for row in rows {
            let values = row.unwrap();
            last = Some(
                key.iter()
                    .map(|&k| values.get(k).cloned().unwrap_or(mysql_async::Value::NULL))
                    .collect(),
            );
            changes.push(row_change(schema, values)?);
        }
        if n > 0 {
            copied += n as u64;
            rows_metric.increment(n as u64);
            *chunk_no += 1;
            publisher
                .publish(snapshot_txn(
                    info,
                    position,
                    *chunk_no,
                    vec![schema.clone()],
                    changes,
                    false,
                ))
                .await?;
        }
        if n < chunk {
            return Ok(copied);
        }
    }
}

/// `(k1 > ?) OR (k1 = ? AND k2 > ?) OR ...`: a keyset condition the range optimizer uses.
fn after_key(cols: &[String]) -> String {
    let mut terms = Vec::with_capacity(cols.len());
    for i in 0..cols.len() {
        let mut t: Vec<String> = cols[..i].iter().map(|c| format!("{c} = ?")).collect();
        t.push(format!("{} > ?", cols[i]));
        terms.push(format!("({})", t.join(" AND ")));
    }
    terms.join(" OR ")
}

/// Parameters for [`after_key`]: for term i, the first i key values then value i.
fn keyset_params(last: &[mysql_async::Value]) -> Vec<mysql_async::Value> {
    let mut out = Vec::new();
    for i in 0..last.len() {
        out.extend(last[..=i].iter().cloned());
    }
    out
}

fn row_change(
    schema: &TableSchema,
    values: Vec<mysql_async::Value>,
) -> Result<RowChange, SourceError> {
    let mut after: Vec<Value> = Vec::with_capacity(values.len());
    for (col, v) in schema.columns.iter().zip(values) {
        let v = from_mysql(col.ty, col.unsigned, v).map_err(|e| SourceError::Decode {
            server: String::new(),
            position: "snapshot".into(),
            what: format!("{}.{}.{}", schema.schema, schema.table, col.name),
            message: e.to_string(),
        })?;
        after.push(v);
    }
    Ok(RowChange {
        table: 0,
        op: Op::Snapshot,
        before: None,
        after: Some(after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_condition() {
        let cols = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(after_key(&cols), "(`a` > ?) OR (`a` = ? AND `b` > ?)");
        let p = keyset_params(&[mysql_async::Value::Int(1), mysql_async::Value::Int(2)]);
        assert_eq!(
            p,
            vec![
                mysql_async::Value::Int(1),
                mysql_async::Value::Int(1),
                mysql_async::Value::Int(2)
            ]
        );
    }
}
