//! `schema diff`: compares two schemas (servers, databases or `.sql` files); shared by
//! `fleetsync diff schema` and the `schema_diff` job.

use fleetsync_config::Config;
use fleetsync_coordinator::migrate;
use fleetsync_proto::jobs::{SchemaDiffReport, SchemaDifference};
pub use fleetsync_proto::requests::SchemaDiffRequest;
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::diff_cmd::{compare_loaded, Side, SideArgs};

pub use crate::diff_cmd::{EXIT_DIFFERENT, EXIT_ERROR};

/// Snapshots both sides and compares them. Cancellation is checked before and after the
/// snapshots (a `.sql` side's scratch database is always dropped by the snapshot itself).
pub async fn run(
    config: &Config,
    req: &SchemaDiffRequest,
    tracker: &Tracker,
    cancel: &CancellationToken,
) -> ServiceResult<SchemaDiffReport> {
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    let sides = SideArgs {
        rename_table: req.rename_table.clone(),
        rename_column: req.rename_column.clone(),
        scratch_server: req.scratch_server.clone(),
    };
    let (source, target) = (Side::parse(&req.source), Side::parse(&req.target));
    tracker.phase(format!(
        "reading the schemas of {} and {}",
        source.label(),
        target.label()
    ));
    let c = compare_loaded(config.clone(), source, target, &sides).await?;
    if cancel.is_cancelled() {
        return Err(ServiceError::Cancelled);
    }
    tracker.phase("comparing");
    let d = migrate::diff(&c.source_schema, &c.target_schema, c.pairing, &c.hints);
    let report = SchemaDiffReport {
        source: c.source.label(),
        target: c.target.label(),
        equal: d.equal,
        differences: d.differences.iter().map(SchemaDifference::from).collect(),
        notes: d.notes,
    };
    tracker.log(&format!("{} difference(s)", report.differences.len()));
    Ok(report)
}

/// 0 equal, 1 different.
pub fn exit_code(report: &SchemaDiffReport) -> u8 {
    if report.equal {
        0
    } else {
        EXIT_DIFFERENT
    }
}
