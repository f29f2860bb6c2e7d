//! `fleetsync export`: every selected table, read in one consistent snapshot, into files.
//!
//! One connection runs `START TRANSACTION WITH CONSISTENT SNAPSHOT` (REPEATABLE READ) and
//! records the snapshot's binlog coordinate (`binlog_snapshot_file/position`, MariaDB), then
//! streams each table with one `SELECT ... ORDER BY <key>` over the binary protocol (rows
//! arrive one at a time, so memory is one row plus the writer's buffer; ENUM/SET are selected
//! as `col+0` so they arrive as numbers, as the value model wants). A second connection reads
//! the definitions (`information_schema`, `SHOW CREATE TABLE`); DDL that runs during an
//! export is not isolated by the snapshot. Generated columns are not exported.
//!
//! The output directory must be new or empty (an export never overwrites files); the manifest
//! is written last, so a directory without `export.json` is an incomplete export.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fleetsync_config::TableFilter;
use fleetsync_proto::sql::push_ident;
use fleetsync_proto::{ColumnType, KeyKind, TableSchema, Value};
use mysql_async::prelude::Queryable;

use super::csv::CsvWriter;
use super::json::JsonWriter;
use super::manifest::{Manifest, SnapshotPosition, TableEntry};
use super::sql::SqlWriter;
use super::{
    table_files, Content, Format, TableHeader, TableWriter, TransferError, FORMAT_VERSION,
    METRIC_EXPORT_ROWS,
};
use crate::source::decode::from_mysql;
use crate::source::schema::{list_tables, load_table};
use crate::source::snapshot::snapshot_position;

pub struct ExportOptions {
    /// `[[servers]] name`, for messages and the manifest.
    pub server: String,
    pub opts: mysql_async::Opts,
    pub format: Format,
    pub out: PathBuf,
    pub filter: TableFilter,
    pub content: Content,
    /// Told the table count, then each table done.
    pub progress: Option<std::sync::Arc<dyn super::Progress>>,
    /// Checked between tables.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// Runs the export; returns the manifest it wrote.
pub async fn export(o: &ExportOptions) -> Result<Manifest, TransferError> {
    // Created only once there is something to export: a refused export leaves no trace.
    let create_out = check_out_dir(&o.out)?;
    let name = o.server.as_str();
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let connect = || async {
        mysql_async::Conn::new(o.opts.clone())
            .await
            .map_err(|e| TransferError::server(name, "connecting", e))
    };
    let mut conn = connect().await?;
    let mut meta = connect().await?;
    let srv =
        |what: &'static str| move |e: mysql_async::Error| TransferError::server(name, what, e);
    conn.query_drop(
        "SET NAMES binary, time_zone = '+00:00'; \
         SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         START TRANSACTION WITH CONSISTENT SNAPSHOT",
    )
    .await
    .map_err(srv("starting the consistent snapshot"))?;
    let position = snapshot_position(&mut conn, name)
        .await
        .map_err(|e| TransferError::Server(e.to_string()))?;
    let tables = list_tables(&mut meta, name, |s, t| o.filter.matches(s, t))
        .await
        .map_err(|e| TransferError::Server(e.to_string()))?;
    if tables.is_empty() {
        let include = o.filter.unmatched_includes(&[]);
        let include = match include.is_empty() {
            true => "every table".to_string(),
            false => format!("{include:?}"),
        };
        return Err(TransferError::Server(format!(
            "server {name}: no table matches the include/exclude patterns (include: {include})"
        )));
    }
    if create_out {
        crate::owner_only::create_dir_all(&o.out).map_err(|e| TransferError::io(&o.out, e))?;
    }
    let mut entries = Vec::with_capacity(tables.len());
    let (mut total_rows, mut total_bytes) = (0u64, 0u64);
    if let Some(p) = &o.progress {
        p.tables(tables.len());
    }
    for (schema, table) in &tables {
        if o.cancel.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let Some(info) = load_table(&mut meta, name, schema, table)
            .await
            .map_err(|e| TransferError::Server(e.to_string()))?
        else {
            continue; // dropped since it was listed
        };
        let header = TableHeader {
            table: info.to_schema(),
            create_sql: match o.content.schema() {
                true => Some(show_create(&mut meta, name, schema, table).await?),
                false => None,
            },
        };
        let (rows, bytes, files) = export_table(&mut conn, o, &header).await?;
        tracing::info!(server = name, table = %format!("{schema}.{table}"), rows, bytes, "exported");
        total_rows += rows;
        total_bytes += bytes;
        if let Some(p) = &o.progress {
            p.table_done(rows, bytes);
        }
        entries.push(TableEntry {
            schema: schema.clone(),
            table: table.clone(),
            rows,
            files,
        });
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(srv("ending the snapshot"))?;
    let manifest = Manifest {
        fleetsync_export: FORMAT_VERSION,
        server: o.server.clone(),
        format: o.format,
        content: o.content,
        position: SnapshotPosition {
            file: position.binlog.file.clone(),
            pos: position.binlog.pos,
            gtid: position.gtid.as_ref().map(ToString::to_string),
        },
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339(),
        rows: total_rows,
        bytes: total_bytes,
        tables: entries,
    };
    manifest.write(&o.out)?;
    tracing::info!(
        server = name,
        tables = manifest.tables.len(),
        rows = total_rows,
        seconds = started.elapsed().as_secs_f64(),
        "export done"
    );
    Ok(manifest)
}

/// Refuses a non-empty `dir`; whether it must still be created.
fn check_out_dir(dir: &Path) -> Result<bool, TransferError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| TransferError::io(dir, e))?;
        if entries.next().is_some() {
            return Err(TransferError::io(
                dir,
                "the output directory is not empty (an export never overwrites files)",
            ));
        }
        return Ok(false);
    }
    Ok(true)
}

async fn show_create(
    conn: &mut mysql_async::Conn,
    server: &str,
    schema: &str,
    table: &str,
) -> Result<String, TransferError> {
    let mut sql = b"SHOW CREATE TABLE ".to_vec();
    fleetsync_proto::sql::push_table(&mut sql, schema, table);
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_first(String::from_utf8_lossy(&sql).as_ref())
        .await
        .map_err(|e| {
            TransferError::server(server, &format!("SHOW CREATE TABLE {schema}.{table}"), e)
        })?;
    let Some((_, text)) = row else {
        return Err(TransferError::Server(format!(
            "server {server}: SHOW CREATE TABLE {schema}.{table} returned nothing"
        )));
    };
    String::from_utf8(text).map_err(|_| {
        TransferError::Server(format!(
            "server {server}: the definition of {schema}.{table} is not UTF-8"
        ))
    })
}

/// Writes one table's file(s); returns (rows, bytes, file names).
async fn export_table(
    conn: &mut mysql_async::Conn,
    o: &ExportOptions,
    header: &TableHeader,
) -> Result<(u64, u64, Vec<String>), TransferError> {
    let t = &header.table;
    let mut files = table_files(o.format, &t.schema, &t.table);
    let data = o.content.data();
    let paths: Vec<PathBuf> = files.iter().map(|f| o.out.join(f)).collect();
    let path = |i: usize| paths[i].clone();
    let writer: Option<Box<dyn TableWriter>> = match o.format {
        Format::Sql => Some(Box::new(SqlWriter::create(&path(0), header)?)),
        Format::Json => Some(Box::new(JsonWriter::create(&path(0), header)?)),
        Format::Csv => CsvWriter::create(&path(0), &path(1), header, data)?
            .map(|w| Box::new(w) as Box<dyn TableWriter>),
    };
    if o.format == Format::Csv && !data {
        files.truncate(1);
    }
    let Some(mut writer) = writer else {
        let bytes = std::fs::metadata(path(0)).map(|m| m.len()).unwrap_or(0);
        return Ok((0, bytes, files));
    };
    let rows = if data {
        copy_rows(conn, &o.server, t, writer.as_mut()).await?
    } else {
        0
    };
    let bytes = writer.finish()?;
    Ok((rows, bytes, files))
}

/// `SELECT` of the exported columns, ENUM/SET as numbers, in key order when there is a key.
fn select_sql(t: &TableSchema) -> String {
    let mut sql = b"SELECT ".to_vec();
    for (i, c) in t.columns.iter().enumerate() {
        if i > 0 {
            sql.push(b',');
        }
        push_ident(&mut sql, &c.name);
        if matches!(c.ty, ColumnType::Enum | ColumnType::Set) {
            sql.extend_from_slice(b"+0");
        }
    }
    sql.extend_from_slice(b" FROM ");
    fleetsync_proto::sql::push_table(&mut sql, &t.schema, &t.table);
    if t.key_kind != KeyKind::None && !t.key.is_empty() {
        sql.extend_from_slice(b" ORDER BY ");
        for (i, &k) in t.key.iter().enumerate() {
            if i > 0 {
                sql.push(b',');
            }
            if let Some(c) = t.columns.get(usize::from(k)) {
                push_ident(&mut sql, &c.name);
            }
        }
    }
    String::from_utf8_lossy(&sql).into_owned()
}

async fn copy_rows(
    conn: &mut mysql_async::Conn,
    server: &str,
    t: &TableSchema,
    writer: &mut dyn TableWriter,
) -> Result<u64, TransferError> {
    let what = format!("reading {}.{}", t.schema, t.table);
    let counter = metrics::counter!(METRIC_EXPORT_ROWS, "server" => server.to_string());
    let mut result = conn
        .exec_iter(select_sql(t), ())
        .await
        .map_err(|e| TransferError::server(server, &what, e))?;
    let mut rows = 0u64;
    let mut values: Vec<Value> = Vec::with_capacity(t.columns.len());
    while let Some(row) = result
        .next()
        .await
        .map_err(|e| TransferError::server(server, &what, e))?
    {
        values.clear();
        for (col, v) in t.columns.iter().zip(row.unwrap()) {
            let v = from_mysql(col.ty, col.unsigned, v).map_err(|e| {
                TransferError::Server(format!(
                    "server {server}: {}.{} column {}: cannot decode: {e}",
                    t.schema, t.table, col.name
                ))
            })?;
            values.push(v);
        }
        writer.write_row(&values)?;
        rows += 1;
        if rows.is_multiple_of(4096) {
            counter.increment(4096);
        }
    }
    counter.increment(rows % 4096);
    Ok(rows)
}
