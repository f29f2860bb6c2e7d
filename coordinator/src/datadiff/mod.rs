//! The coordinator side of the data diff: pairs the tables of two sides, walks each keyed
//! table in chunks of key ranges (checksummed on both sides at once), drills into differing
//! chunks down to rows, and builds the report and the repair rows.
//!
//! Invariants:
//! * both [`Session`]s hold their consistent snapshot for the whole diff, so every chunk,
//!   drill-down and repair row of a side comes from one point in time;
//! * ranges are cut from one side's real keys and applied unchanged to both (see
//!   [`fleetsync_proto::datadiff::KeyRange`]), so the chunks cover the whole key space of
//!   both sides, including keys only one side has;
//! * a table is `equal` only when it was compared completely; a table over a limit is
//!   `skipped` with the reason, never silently passed.

mod repair;
mod walk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetsync_mysql::datadiff::{DiffTable, Session};
use fleetsync_mysql::SourceError;
use fleetsync_proto::datadiff::{DataDiffReport, DiffMethod, TableReport, TableStatus};
use tokio_util::sync::CancellationToken;

pub use repair::RepairSql;

/// Default target time of one chunk (both sides).
pub const DEFAULT_CHUNK_TIME: Duration = Duration::from_millis(500);
/// Rows of the first chunk of a table, before the size adapts to the chunk time.
pub const INITIAL_CHUNK_ROWS: u64 = 1_000;
/// Metric: chunks checksummed.
pub const METRIC_CHUNKS: &str = "fleetsync_datadiff_chunks_total";

/// How the diff runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunk sizes adapt so one chunk takes about this long.
    pub chunk_time: Duration,
    /// Tables estimated to hold more rows (on either side) are skipped.
    pub max_table_rows: Option<u64>,
    /// A table still being compared after this long is skipped (differences found so far
    /// are kept and reported).
    pub max_table_time: Option<Duration>,
    /// Read the source rows needed for repair SQL.
    pub repair: bool,
    /// Checked between chunks and tables: once cancelled, the table in hand is reported as
    /// skipped and no further table is compared (the caller tells a cancelled diff apart).
    pub cancel: CancellationToken,
    /// Told about each table once it is compared (progress of a job).
    pub on_table: Option<TableDone>,
}

/// A callback for each compared table.
#[derive(Clone)]
pub struct TableDone(pub Arc<dyn Fn(&TableReport) + Send + Sync>);

impl std::fmt::Debug for TableDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableDone")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_time: DEFAULT_CHUNK_TIME,
            max_table_rows: None,
            max_table_time: None,
            repair: false,
            cancel: CancellationToken::new(),
            on_table: None,
        }
    }
}

/// Which databases to compare: one on each side (names may differ) or every user database
/// of both servers, paired by name.
#[derive(Debug, Clone)]
pub enum Scope {
    Databases { source: String, target: String },
    Servers,
}

/// Compares every selected table; `repair` collects the SQL that makes the target equal.
pub async fn diff(
    source: &mut Session,
    target: &mut Session,
    scope: &Scope,
    keep: &(dyn Fn(&str, &str) -> bool + Sync),
    opts: &Options,
    repair: &mut RepairSql,
) -> Result<Vec<TableReport>, SourceError> {
    let (sdb, tdb) = match scope {
        Scope::Databases {
            source: s,
            target: t,
        } => {
            for (sess, db) in [(&mut *source, s), (&mut *target, t)] {
                if !sess.has_database(db).await? {
                    return Err(SourceError::NeedsOperator {
                        server: sess.server.clone(),
                        message: format!("database {db} does not exist"),
                    });
                }
            }
            (Some(s.as_str()), Some(t.as_str()))
        }
        Scope::Servers => (None, None),
    };
    let src_tables = source.tables(sdb, keep).await?;
    // Target tables are selected by the name they would have on the source.
    let tgt_tables = target
        .tables(tdb, &|s, t| keep(sdb.unwrap_or(s), t))
        .await?;
    let to_source = |db: &str| sdb.map_or(db.to_string(), str::to_string);
    let mut reports = Vec::new();
    for (db, table) in &src_tables {
        if opts.cancel.is_cancelled() {
            break;
        }
        let tdb_name = tdb.map_or(db.clone(), str::to_string);
        let on_target = tgt_tables.iter().any(|(d, t)| *d == tdb_name && t == table);
        let mut report = if on_target {
            diff_table(
                source,
                target,
                (db, table),
                (&tdb_name, table),
                opts,
                repair,
            )
            .await?
        } else {
            let mut r = TableReport::new(db, table, DiffMethod::None);
            r.status = TableStatus::OnlyInSource;
            r
        };
        if tdb_name != *db {
            report.target_schema = Some(tdb_name);
        }
        log_table(&report);
        if let Some(done) = &opts.on_table {
            (done.0)(&report);
        }
        reports.push(report);
    }
    for (db, table) in &tgt_tables {
        let sname = to_source(db);
        if !src_tables.iter().any(|(d, t)| *d == sname && t == table) {
            let mut r = TableReport::new(&sname, table, DiffMethod::None);
            r.status = TableStatus::OnlyInTarget;
            if *db != sname {
                r.target_schema = Some(db.clone());
            }
            reports.push(r);
        }
    }
    Ok(reports)
}

fn log_table(r: &TableReport) {
    tracing::info!(
        table = %format!("{}.{}", r.schema, r.table),
        status = ?r.status,
        chunks = r.chunks,
        rows_source = r.rows_source,
        rows_target = r.rows_target,
        differing = r.differing_rows(),
        seconds = r.seconds,
        "table compared"
    );
}

/// Compares one table present on both sides.
async fn diff_table(
    source: &mut Session,
    target: &mut Session,
    (sdb, stable): (&str, &str),
    (tdb, ttable): (&str, &str),
    opts: &Options,
    repair: &mut RepairSql,
) -> Result<TableReport, SourceError> {
    let started = Instant::now();
    let (s, t) = tokio::join!(source.table(sdb, stable), target.table(tdb, ttable));
    let (Some(s), Some(t)) = (s?, t?) else {
        let mut r = TableReport::new(sdb, stable, DiffMethod::None);
        r.status = TableStatus::Skipped;
        r.skipped = Some("skipped: the table disappeared during the diff".into());
        return Ok(r);
    };
    let method = match (s.has_key(), s.schema.key_kind) {
        (false, _) => DiffMethod::WholeTable,
        (true, fleetsync_proto::KeyKind::Primary) => DiffMethod::PrimaryKey,
        (true, _) => DiffMethod::UniqueKey,
    };
    let mut report = TableReport::new(sdb, stable, method);
    if let Some(reason) = precheck(&s, &t, opts) {
        report.status = TableStatus::Skipped;
        report.skipped = Some(reason);
        return Ok(report);
    }
    let mut w = walk::Walk::new(source, target, &s, &t, opts, started);
    if method == DiffMethod::WholeTable {
        w.whole_table(&mut report).await?;
    } else {
        w.chunks(&mut report).await?;
    }
    let found = w.into_found();
    report.status = match (&report.skipped, found.is_empty()) {
        (_, false) => TableStatus::Different,
        (Some(_), true) => TableStatus::Skipped,
        (None, true) => TableStatus::Equal,
    };
    if opts.repair && !found.is_empty() {
        repair.table(source, &s, &t, &found).await?;
    }
    found.report_into(&s, &t, &mut report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Why a table is not compared at all: different shapes, or too large.
fn precheck(s: &DiffTable, t: &DiffTable, opts: &Options) -> Option<String> {
    if s.shape() != t.shape() {
        return Some(
            "skipped: the columns differ between the sides (run `fleetsync diff schema`)".into(),
        );
    }
    if s.schema.key != t.schema.key || s.has_key() != t.has_key() {
        return Some("skipped: the sides use different keys (run `fleetsync diff schema`)".into());
    }
    let rows = s.estimated_rows.max(t.estimated_rows);
    match opts.max_table_rows {
        Some(max) if rows > max => Some(format!(
            "skipped: {rows} rows (estimated) > --max-table-rows {max}"
        )),
        _ => None,
    }
}

/// The summary of the whole diff.
pub fn report(
    source: &str,
    target: &str,
    tables: Vec<TableReport>,
    pauses: u64,
    seconds: f64,
) -> DataDiffReport {
    let mut r = DataDiffReport {
        source: source.to_string(),
        target: target.to_string(),
        equal: false,
        complete: false,
        tables,
        chunks: 0,
        differing_rows: 0,
        skipped_tables: Vec::new(),
        pauses,
        seconds: 0.0,
    };
    r.finish(seconds);
    r
}
