//! `data diff`: compares two servers' rows by chunk checksums; shared by `fleetsync diff
//! data` and the `data_diff` job. Both sides open a consistent snapshot and are checksummed
//! concurrently (see `fleetsync_coordinator::datadiff`). Read-only: a cancel stops between
//! chunks and closes both sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use fleetsync_agent::datadiff::{RowChecksum, Session, Throttle};
use fleetsync_config::{Config, TableFilter};
use fleetsync_coordinator::datadiff::{self as dd, RepairSql, Scope, TableDone};
use fleetsync_proto::datadiff::{DataDiffReport, TableReport, TableStatus};
pub use fleetsync_proto::requests::{
    Checksum, DataDiffRequest, DEFAULT_CHUNK_TIME_MS, DEFAULT_MAX_LAG, DEFAULT_MAX_THREADS_RUNNING,
};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::diff_cmd::{connect, Side};

/// Exit code when nothing differed but some table was not compared.
pub const EXIT_INCOMPLETE: u8 = 3;
pub use crate::diff_cmd::{EXIT_DIFFERENT, EXIT_ERROR};

/// The job's repair SQL file (in the job's own directory).
pub const REPAIR_SQL_FILE: &str = "repair.sql";

/// The report and, when asked for, the repair SQL.
pub struct DataDiffOutcome {
    pub report: DataDiffReport,
    pub repair: RepairSql,
}

fn scope(config: &Config, source: &Side, target: &Side) -> anyhow::Result<Scope> {
    for side in [source, target] {
        match side {
            Side::File(p) => bail!(
                "{}: diff data compares servers; a .sql file is only a schema",
                p.display()
            ),
            Side::Server(s) | Side::Database(s, _) if config.server(s).is_none() => {
                bail!("no server named {s:?} in the config ({})", side.label())
            }
            _ => {}
        }
    }
    match (source, target) {
        (Side::Server(_), Side::Server(_)) => Ok(Scope::Servers),
        (Side::Database(_, a), Side::Database(_, b)) => Ok(Scope::Databases {
            source: a.clone(),
            target: b.clone(),
        }),
        _ => bail!(
            "{} and {}: compare a whole server with a whole server, or SERVER/DATABASE with SERVER/DATABASE",
            source.label(),
            target.label()
        ),
    }
}

/// Runs the diff; `repair`: also collect the SQL that makes the target equal the source.
pub async fn run(
    config: &Config,
    req: &DataDiffRequest,
    repair: bool,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> ServiceResult<DataDiffOutcome> {
    let (source, target) = (Side::parse(&req.source), Side::parse(&req.target));
    let scope = scope(config, &source, &target)?;
    let filter = TableFilter::new(&req.include, &[]).map_err(|(_, m)| anyhow!("--include: {m}"))?;
    if req.chunk_time_ms == 0 {
        return Err(anyhow!("--chunk-time-ms must be at least 1").into());
    }
    let throttle = Throttle {
        max_lag: (req.max_lag > 0).then_some(req.max_lag),
        max_threads_running: (req.max_threads_running > 0).then_some(req.max_threads_running),
    };
    let progress = tracker.clone();
    let opts = dd::Options {
        chunk_time: Duration::from_millis(req.chunk_time_ms),
        max_table_rows: req.max_table_rows,
        max_table_time: req.max_table_seconds.map(Duration::from_secs),
        repair,
        cancel: cancel.clone(),
        on_table: Some(TableDone(Arc::new(move |t: &TableReport| {
            progress.table_done(t.rows_source);
            progress.phase(format!("compared {}.{}: {:?}", t.schema, t.table, t.status));
        }))),
    };
    let (sname, tname) = (
        source.server().unwrap_or_default(),
        target.server().unwrap_or_default(),
    );
    let started = Instant::now();
    tracker.phase(format!(
        "opening snapshots on {} and {}",
        source.label(),
        target.label()
    ));
    // Both snapshots are opened together so they are as close in time as possible.
    let (sc, tc) = tokio::join!(connect(config, sname), connect(config, tname));
    let (sc, tc) = (sc?, tc?);
    let (mut s, mut t) = match tokio::join!(
        Session::open(sname, sc, throttle),
        Session::open(tname, tc, throttle)
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => return Err(anyhow!(e).into()),
    };
    let kind = match req.checksum {
        Checksum::Crc64 => RowChecksum::Crc64,
        Checksum::Crc32 => RowChecksum::Crc32,
    };
    (s.checksum, t.checksum) = (kind, kind);
    let mut repair_sql = RepairSql::default();
    let keep = |db: &str, table: &str| filter.matches(db, table);
    tracker.phase("comparing tables");
    let tables = dd::diff(&mut s, &mut t, &scope, &keep, &opts, &mut repair_sql).await;
    let pauses = s.pauses + t.pauses;
    s.close().await;
    t.close().await;
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    let tables = tables.map_err(|e| anyhow!(e))?;
    let report = dd::report(
        &source.label(),
        &target.label(),
        tables,
        pauses,
        started.elapsed().as_secs_f64(),
    );
    Ok(DataDiffOutcome {
        report,
        repair: repair_sql,
    })
}

fn differs(t: &TableReport) -> bool {
    matches!(
        t.status,
        TableStatus::Different | TableStatus::OnlyInSource | TableStatus::OnlyInTarget
    ) || t.skipped.as_deref().is_some_and(|s| s.contains("differ"))
}

/// 0 equal, 1 different, 3 incomplete (some table skipped, nothing found different).
pub fn exit_code(report: &DataDiffReport) -> u8 {
    if report.equal {
        0
    } else if report.differing_rows > 0 || report.tables.iter().any(differs) {
        EXIT_DIFFERENT
    } else {
        EXIT_INCOMPLETE
    }
}
