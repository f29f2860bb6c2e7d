//! `schema diff`: compares two schemas (servers, databases or `.sql` files); shared by
//! `fleetsync diff schema` and the `schema_diff` job.

use fleetsync_config::Config;
use fleetsync_coordinator::migrate;
use fleetsync_proto::jobs::{SchemaDiffReport, SchemaDifference};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ServiceError, ServiceResult, Tracker};
use crate::diff_cmd::{compare_loaded, Side, SideArgs};

pub use crate::diff_cmd::{EXIT_DIFFERENT, EXIT_ERROR};

/// Compare two schemas.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaDiffRequest {
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file (on the coordinator's machine).
    pub source: String,
    /// `SERVER`, `SERVER/DATABASE` or a `.sql` file.
    pub target: String,
    /// `OLD=NEW`: table OLD on the target is table NEW on the source.
    #[serde(default)]
    pub rename_table: Vec<String>,
    /// `TABLE.OLD=NEW`: column OLD on the target is column NEW of source table TABLE.
    #[serde(default)]
    pub rename_column: Vec<String>,
    /// Server that loads a `.sql` side into a scratch database (default: the other side's).
    #[serde(default)]
    pub scratch_server: Option<String>,
}

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
