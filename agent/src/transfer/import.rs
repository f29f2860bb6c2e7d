//! `fleetsync import`: validate everything, then load in one transaction.
//!
//! # Phases
//!
//! 1. **Validate, writing nothing.** The manifest is read; every file in the directory must
//!    be listed in it and every listed file present. Every file is parsed to the end: each row
//!    must have the table's columns, each value must fit its column type (and the text must
//!    be UTF-8 where the format is text), NULL only where allowed. The `--rename-db` map is
//!    applied and each `OLD` must be a database of the export. On the target, an existing
//!    table must have the same columns (names, order, types, character sets); a missing one
//!    needs a `CREATE TABLE` in the export, which the server parses with `PREPARE` (nothing
//!    is created). Every problem is collected (up to [`MAX_ERRORS_PER_FILE`] per file).
//!    `--dry-run` stops here and reports tables, rows and problems.
//! 2. **Create** the missing databases and tables (DDL commits implicitly in MariaDB).
//! 3. **Load** all rows of all tables in **one transaction**, as multi-row `INSERT`s of about
//!    1 MiB, with the conflict mode's statement form. Any failure rolls the transaction back
//!    and drops the tables and databases phase 2 created.
//!
//! # Guarantee
//!
//! A bad input file, a type mismatch or a table that does not fit is found in phase 1, and
//! the target is not touched. A failure during the load (a duplicate key with
//! `--on-conflict error`, a lost connection, a full disk) leaves transactional (InnoDB)
//! tables as they were and removes what the import created. Rows already written to an
//! existing non-transactional table (MyISAM, Aria) cannot be rolled back: they stay.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fleetsync_proto::sql::{push_ident, push_row, push_table};
use mysql_async::prelude::Queryable;

use super::csv::CsvReader;
use super::json::JsonReader;
use super::manifest::{Manifest, TableEntry};
use super::sql::{SqlReader, INSERT_BYTES};
use super::target::{self, InsertSql, SESSION_SETUP};
use super::{
    Format, InputError, Loc, OnConflict, RowReader, TableHeader, TransferError, MANIFEST_FILE,
    MAX_ERRORS_PER_FILE, METRIC_IMPORT_ROWS,
};

pub struct ImportOptions {
    pub server: String,
    pub opts: mysql_async::Opts,
    pub format: Format,
    pub input: PathBuf,
    /// `OLD=NEW` database renames, as given.
    pub rename: Vec<String>,
    pub on_conflict: OnConflict,
    pub dry_run: bool,
    /// Keep foreign-key checks on while loading.
    pub fk_checks: bool,
    /// Told the table count, then each table loaded.
    pub progress: Option<std::sync::Arc<dyn super::Progress>>,
    /// Checked before the load and between tables (a cancel rolls the load back).
    pub cancel: tokio_util::sync::CancellationToken,
}

/// One table of the import.
#[derive(Debug, Clone)]
pub struct TableReport {
    /// The data file (CSV: the `.csv`, or the schema file in a schema-only export).
    pub file: String,
    pub source: String,
    pub target: String,
    /// Rows in the file (counted while validating).
    pub rows: u64,
    /// Whether the table does not exist on the target and is (to be) created.
    pub create: bool,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub dry_run: bool,
    pub tables: Vec<TableReport>,
    /// Every problem found; when not empty, nothing was written.
    pub errors: Vec<InputError>,
    /// Errors beyond [`MAX_ERRORS_PER_FILE`] per file, counted only.
    pub more_errors: u64,
    pub rows: u64,
    /// Server warnings while loading, and the first of them.
    pub warnings: u64,
    pub first_warning: Option<String>,
    pub seconds: f64,
}

/// A table file opened for reading.
struct Opened {
    header: TableHeader,
    reader: Option<Box<dyn RowReader>>,
    /// The file the rows (or the definition) are in, for messages.
    file: String,
}

fn open(format: Format, dir: &Path, entry: &TableEntry) -> Result<Opened, InputError> {
    let first = entry.files.first().map(String::as_str).unwrap_or_default();
    let path = dir.join(first);
    Ok(match format {
        Format::Sql => {
            let (header, r) = SqlReader::open(&path)?;
            Opened {
                header,
                reader: Some(Box::new(r)),
                file: first.to_string(),
            }
        }
        Format::Json => {
            let (header, r) = JsonReader::open(&path)?;
            Opened {
                header,
                reader: Some(Box::new(r)),
                file: first.to_string(),
            }
        }
        Format::Csv => {
            let rows = entry.files.get(1);
            let (header, r) = CsvReader::open(&path, rows.map(|f| dir.join(f)).as_deref())?;
            Opened {
                header,
                reader: r.map(|r| Box::new(r) as Box<dyn RowReader>),
                file: rows.map_or(first, String::as_str).to_string(),
            }
        }
    })
}

/// A table ready to load.
struct Plan {
    entry: TableEntry,
    header: TableHeader,
    db: String,
    table: String,
    create: bool,
}

pub async fn import(o: &ImportOptions) -> Result<ImportReport, TransferError> {
    let started = Instant::now();
    let mut report = ImportReport {
        dry_run: o.dry_run,
        ..Default::default()
    };
    let manifest = Manifest::read(&o.input, o.format)?;
    let renames = parse_renames(&o.rename, &manifest, &mut report.errors);
    check_files(&o.input, &manifest, &mut report.errors)?;
    let mut plans = Vec::new();
    for entry in &manifest.tables {
        if let Some(plan) = validate_file(o, entry, &renames, &mut report) {
            plans.push(plan);
        }
    }
    let mut conn = mysql_async::Conn::new(o.opts.clone())
        .await
        .map_err(|e| TransferError::server(&o.server, "connecting", e))?;
    check_target(&mut conn, o, &mut plans, &mut report).await?;
    for p in &plans {
        if let Some(t) = report
            .tables
            .iter_mut()
            .find(|t| t.source == format!("{}.{}", p.entry.schema, p.entry.table))
        {
            t.create = p.create;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    if !report.errors.is_empty() || o.dry_run {
        return Ok(report);
    }
    if o.cancel.is_cancelled() {
        return Err(TransferError::Cancelled);
    }
    if let Some(p) = &o.progress {
        p.tables(plans.len());
    }
    load(&mut conn, o, &plans, &mut report).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `OLD=NEW` pairs; each OLD must be a database of the export.
fn parse_renames(
    args: &[String],
    manifest: &Manifest,
    errors: &mut Vec<InputError>,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for a in args {
        let bad = |m: String| InputError::new("--rename-db", Loc::File, m);
        match a.split_once('=') {
            Some((old, new)) if !old.is_empty() && !new.is_empty() => {
                if !manifest.tables.iter().any(|t| t.schema == old) {
                    errors.push(bad(format!("{a:?}: the export has no database `{old}`")));
                }
                if map.insert(old.to_string(), new.to_string()).is_some() {
                    errors.push(bad(format!("{a:?}: `{old}` is renamed twice")));
                }
            }
            _ => errors.push(bad(format!("{a:?}: expected OLD=NEW"))),
        }
    }
    map
}

/// Every file in the directory is listed in the manifest and every listed file is there.
fn check_files(
    dir: &Path,
    manifest: &Manifest,
    errors: &mut Vec<InputError>,
) -> Result<(), TransferError> {
    let listed: BTreeSet<&str> = manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter().map(String::as_str))
        .collect();
    let mut present = BTreeSet::new();
    for e in std::fs::read_dir(dir).map_err(|e| TransferError::io(dir, e))? {
        let e = e.map_err(|e| TransferError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_FILE && !listed.contains(name.as_str()) {
            errors.push(InputError::new(&name, Loc::File, format!("unknown file: not listed in {MANIFEST_FILE} (remove it or use the directory of one export)")));
        }
        present.insert(name);
    }
    for f in listed.iter().filter(|f| !present.contains(**f)) {
        errors.push(InputError::new(
            f,
            Loc::File,
            format!("listed in {MANIFEST_FILE} but missing"),
        ));
    }
    Ok(())
}

/// Opens and reads one table's file(s) to the end, collecting problems.
fn validate_file(
    o: &ImportOptions,
    entry: &TableEntry,
    renames: &BTreeMap<String, String>,
    report: &mut ImportReport,
) -> Option<Plan> {
    if entry.files.iter().any(|f| !o.input.join(f).is_file()) {
        return None; // reported by check_files
    }
    let mut opened = match open(o.format, &o.input, entry) {
        Ok(op) => op,
        Err(e) => {
            report.errors.push(e);
            return None;
        }
    };
    let t = &opened.header.table;
    if t.schema != entry.schema || t.table != entry.table {
        let msg = format!(
            "holds `{}`.`{}`, but {MANIFEST_FILE} lists it for `{}`.`{}`",
            t.schema, t.table, entry.schema, entry.table
        );
        report
            .errors
            .push(InputError::new(&opened.file, Loc::File, msg));
        return None;
    }
    let (mut rows, mut errors) = (0u64, 0usize);
    if let Some(r) = opened.reader.as_mut() {
        while let Some(row) = r.next_row() {
            match row {
                Ok(_) => rows += 1,
                Err(e) if errors < MAX_ERRORS_PER_FILE => {
                    errors += 1;
                    report.errors.push(e);
                }
                Err(_) => report.more_errors += 1,
            }
        }
    }
    let db = renames
        .get(&entry.schema)
        .cloned()
        .unwrap_or_else(|| entry.schema.clone());
    report.tables.push(TableReport {
        file: opened.file.clone(),
        source: format!("{}.{}", entry.schema, entry.table),
        target: format!("{db}.{}", entry.table),
        rows,
        create: false,
    });
    report.rows += rows;
    Some(Plan {
        entry: entry.clone(),
        header: opened.header,
        table: entry.table.clone(),
        db,
        create: false,
    })
}

/// Existing target tables must fit; missing ones need a definition that parses.
async fn check_target(
    conn: &mut mysql_async::Conn,
    o: &ImportOptions,
    plans: &mut [Plan],
    report: &mut ImportReport,
) -> Result<(), TransferError> {
    let mut seen = BTreeSet::new();
    for p in plans.iter_mut() {
        let file = p.entry.files.first().cloned().unwrap_or_default();
        let err = |m: String| InputError::new(&file, Loc::File, m);
        if !seen.insert((p.db.clone(), p.table.clone())) {
            report.errors.push(err(format!(
                "a second table imports into `{}`.`{}`",
                p.db, p.table
            )));
            continue;
        }
        match target::existing_table(conn, &o.server, &p.db, &p.table).await? {
            Some(existing) => {
                for (col, m) in target::mismatches(&p.header.table, &existing) {
                    let e = err(format!("target table `{}`.`{}`: {m}", p.db, p.table));
                    report.errors.push(match col {
                        Some(c) => e.column(&c),
                        None => e,
                    });
                }
            }
            None => {
                p.create = true;
                match &p.header.create_sql {
                    None => report.errors.push(err(format!("the target has no table `{}`.`{}` and the export has no definition (it was made with --data-only)", p.db, p.table))),
                    Some(sql) => {
                        if let Err(m) = target::check_create(conn, &p.db, sql).await {
                            report.errors.push(err(format!("CREATE TABLE `{}`: {m}", p.table)));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// What phase 2 created, to be dropped again if the load fails.
#[derive(Default)]
struct Created {
    dbs: Vec<String>,
    tables: Vec<(String, String)>,
}

async fn load(
    conn: &mut mysql_async::Conn,
    o: &ImportOptions,
    plans: &[Plan],
    report: &mut ImportReport,
) -> Result<(), TransferError> {
    let srv = |what: &str, e: mysql_async::Error| TransferError::server(&o.server, what, e);
    conn.query_drop(SESSION_SETUP)
        .await
        .map_err(|e| srv("preparing the session", e))?;
    let mut created = Created::default();
    let result = async {
        create_missing(conn, o, plans, &mut created).await?;
        let fk = if o.fk_checks {
            "SET foreign_key_checks = 1; "
        } else {
            ""
        };
        conn.query_drop(format!("{fk}START TRANSACTION"))
            .await
            .map_err(|e| srv("starting the transaction", e))?;
        for p in plans {
            if o.cancel.is_cancelled() {
                return Err(TransferError::Cancelled);
            }
            load_table(conn, o, p, report).await?;
            if let Some(progress) = &o.progress {
                progress.table_done(p.entry.rows, 0);
            }
        }
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| srv("committing", e))
    }
    .await;
    if let Err(e) = result {
        let _ = conn.query_drop("ROLLBACK").await;
        drop_created(conn, &created).await;
        return Err(e);
    }
    Ok(())
}

async fn create_missing(
    conn: &mut mysql_async::Conn,
    o: &ImportOptions,
    plans: &[Plan],
    created: &mut Created,
) -> Result<(), TransferError> {
    for p in plans.iter().filter(|p| p.create) {
        let Some(create_sql) = &p.header.create_sql else {
            continue;
        };
        if !target::database_exists(conn, &o.server, &p.db).await? {
            let mut sql = b"CREATE DATABASE ".to_vec();
            push_ident(&mut sql, &p.db);
            conn.query_drop(sql.as_slice()).await.map_err(|e| {
                TransferError::server(&o.server, &format!("creating database {}", p.db), e)
            })?;
            created.dbs.push(p.db.clone());
        }
        let mut sql = b"SET NAMES utf8mb4; USE ".to_vec();
        push_ident(&mut sql, &p.db);
        sql.extend_from_slice(b"; ");
        sql.extend_from_slice(create_sql.as_bytes());
        let r = conn.query_drop(sql.as_slice()).await;
        let _ = conn.query_drop("SET NAMES binary").await;
        r.map_err(|e| {
            TransferError::server(
                &o.server,
                &format!("{}: creating table {}.{}", p.entry.files[0], p.db, p.table),
                e,
            )
        })?;
        created.tables.push((p.db.clone(), p.table.clone()));
    }
    Ok(())
}

async fn drop_created(conn: &mut mysql_async::Conn, created: &Created) {
    for (db, t) in &created.tables {
        let mut sql = b"DROP TABLE IF EXISTS ".to_vec();
        push_table(&mut sql, db, t);
        if let Err(e) = conn.query_drop(sql.as_slice()).await {
            tracing::warn!(table = %format!("{db}.{t}"), error = %e, "could not drop a table the failed import created");
        }
    }
    for db in &created.dbs {
        let mut sql = b"DROP DATABASE IF EXISTS ".to_vec();
        push_ident(&mut sql, db);
        if let Err(e) = conn.query_drop(sql.as_slice()).await {
            tracing::warn!(database = %db, error = %e, "could not drop a database the failed import created");
        }
    }
}

/// Streams one table's rows into multi-row statements inside the open transaction.
async fn load_table(
    conn: &mut mysql_async::Conn,
    o: &ImportOptions,
    p: &Plan,
    report: &mut ImportReport,
) -> Result<(), TransferError> {
    let mut opened =
        open(o.format, &o.input, &p.entry).map_err(|e| TransferError::Input(vec![e]))?;
    let Some(reader) = opened.reader.as_mut() else {
        return Ok(());
    };
    let stmt = InsertSql::new(&p.header.table, &p.db, &p.table, o.on_conflict);
    let counter = metrics::counter!(METRIC_IMPORT_ROWS, "server" => o.server.clone());
    let mut buf = Vec::with_capacity(INSERT_BYTES + (64 << 10));
    let mut first: Option<Loc> = None;
    let target = format!("{}.{}", p.db, p.table);
    let mut pending = 0u64;
    while let Some(row) = reader.next_row() {
        let row = row.map_err(|e| TransferError::Input(vec![e]))?;
        pending += 1;
        if first.is_none() {
            buf.clear();
            buf.extend_from_slice(&stmt.prefix);
            first = Some(reader.loc());
        } else {
            buf.push(b',');
        }
        push_row(&mut buf, &row).map_err(|e| {
            TransferError::Input(vec![InputError::new(
                &opened.file,
                reader.loc(),
                e.to_string(),
            )])
        })?;
        if buf.len() >= INSERT_BYTES {
            let from = first.take().unwrap_or(Loc::File);
            flush(
                conn,
                o,
                &opened.file,
                &stmt,
                &mut buf,
                (from, reader.loc()),
                &target,
                report,
            )
            .await?;
            counter.increment(pending);
            pending = 0;
        }
    }
    if let Some(from) = first.take() {
        flush(
            conn,
            o,
            &opened.file,
            &stmt,
            &mut buf,
            (from, reader.loc()),
            &target,
            report,
        )
        .await?;
        counter.increment(pending);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn flush(
    conn: &mut mysql_async::Conn,
    o: &ImportOptions,
    file: &str,
    stmt: &InsertSql,
    buf: &mut Vec<u8>,
    (from, to): (Loc, Loc),
    target: &str,
    report: &mut ImportReport,
) -> Result<(), TransferError> {
    buf.extend_from_slice(&stmt.suffix);
    let r = conn.query_drop(buf.as_slice()).await;
    buf.clear();
    if let Err(e) = r {
        let place = match (from, to) {
            (Loc::Line(a), Loc::Line(b)) => format!("lines {a}-{b}"),
            (Loc::Row { row: a, .. }, Loc::Row { row: b, .. }) => format!("rows {a}-{b}"),
            _ => "rows".to_string(),
        };
        return Err(TransferError::Server(format!(
            "server {}: {file}: {place} into {target}: {e}; the import was rolled back",
            o.server
        )));
    }
    let w = u64::from(conn.get_warnings());
    if w > 0 {
        report.warnings += w;
        if report.first_warning.is_none() {
            let first: Option<(String, u32, String)> = conn
                .query_first("SHOW WARNINGS LIMIT 1")
                .await
                .unwrap_or(None);
            report.first_warning = first.map(|(l, c, m)| format!("{file}: {l} {c}: {m}"));
        }
    }
    Ok(())
}
