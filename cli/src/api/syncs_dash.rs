//! What the dashboard's Syncs page needs beyond the definition routes (`api::defs`): a sync's
//! definition as JSON (the form of its edit), and the snapshot progress of a target in
//! `TargetView`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{DeniedLookupProblems, Problem};
use super::ApiState;
use crate::pipeline::SnapshotProgress;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(get_sync_definition))
}

/// A target's initial snapshot, while it is applied.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SnapshotView {
    tables_done: u64,
    tables_total: u64,
    /// The table being copied (`schema.table`).
    table: Option<String>,
    /// Snapshot rows applied so far.
    rows: u64,
    /// The source's estimate of the snapshot's rows (InnoDB's estimate: may be off).
    rows_estimate: Option<u64>,
    /// Seconds left at the rate so far (null: not known yet).
    eta_seconds: Option<f64>,
}

pub(super) fn snapshot_view(p: &SnapshotProgress) -> SnapshotView {
    SnapshotView {
        tables_done: p.tables_done,
        tables_total: p.tables_total,
        table: p.table.clone(),
        rows: p.rows,
        rows_estimate: p.rows_estimate,
        eta_seconds: p.eta_seconds(fleetsync_agent::source::stream::now_ms()),
    }
}

/// A sync's definition: the keys of its `[[syncs]]` entry as JSON (the body of `PUT
/// /syncs/{name}` for an API-made one).
#[derive(Debug, Serialize, ToSchema)]
struct SyncDefinition {
    name: String,
    /// `file` (read-only over the API) or `api`.
    origin: String,
    /// For an API-made sync, its fields as stored; for a file's, its main keys.
    #[schema(value_type = Object)]
    fields: Map<String, Value>,
}

/// A sync's definition (its `[[syncs]]` keys as JSON), for an edit form.
#[utoipa::path(get, path = "/api/v1/syncs/{name}/definition", operation_id = "get_sync_definition", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    params(("name" = String, Path, description = "The sync's name")),
    responses((status = 200, body = SyncDefinition), DeniedLookupProblems))]
async fn get_sync_definition(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SyncDefinition>, Problem> {
    let config = s.defs.effective();
    let sync = config
        .syncs
        .iter()
        .find(|y| y.name == name)
        .ok_or_else(|| Problem::not_found(format!("no sync named {name:?}")).field("name"))?;
    let origin = s.defs.sync_origin(&name);
    let fields = match s.defs.api_sync_fields(&name) {
        Some(f) => f,
        None => {
            let v = json!({
                "name": sync.name,
                "source": sync.source,
                "targets": sync.targets,
                "include": sync.include,
                "exclude": sync.exclude,
                "map": sync.map,
                "create_missing": sync.create_missing,
                "apply_ddl": sync.apply_ddl,
                "batch_rows": sync.batch_rows,
                "batch_wait_ms": sync.batch_wait_ms,
                "snapshot_chunk_rows": sync.snapshot_chunk_rows,
                "schedule": sync.schedule,
                "conflict": sync.conflict,
            });
            crate::defs::without_nulls(v.as_object().cloned().unwrap_or_default())
        }
    };
    Ok(Json(SyncDefinition {
        name,
        origin: origin.as_str().into(),
        fields,
    }))
}
