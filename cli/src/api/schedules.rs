//! `/api/v1/schedules`: backup, health and sync cron entries kept in the definition store
//! (see `defs`), run by `fleetsync run`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::defs::{dry, named, problem, send_op, DryRun, OpResult};
use super::problem::{
    from_json_rejection, ConfirmBodyProblems, ControlLookupProblems, DeniedLookupProblems,
    DeniedProblems, Problem,
};
use super::ApiState;
use crate::defs::{Change, Plan, Schedule, ScheduleKind};

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(list_schedules))
        .routes(routes!(get_schedule))
        .routes(routes!(create_schedule))
        .routes(routes!(update_schedule))
        .routes(routes!(delete_schedule))
        .routes(routes!(trigger_schedule))
}

/// A schedule's body (`name` optional on an update: the path's).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: Option<String>,
    /// Cron expression, 5 fields or 6 with seconds (UTC).
    cron: String,
    kind: ScheduleKind,
    /// A server (`backup`, `health`) or a scheduled sync (`sync`).
    target: String,
}

fn schedule_change(
    body: Result<Json<ScheduleBody>, JsonRejection>,
    path: Option<&str>,
) -> Result<Change, Problem> {
    let body = body.map_err(from_json_rejection)?.0;
    let name = named(body.name, path)?;
    Ok(Change::PutSchedule {
        create: path.is_none(),
        schedule: Schedule {
            name,
            cron: body.cron,
            kind: body.kind,
            target: body.target,
        },
    })
}

/// The schedules made over the API (cron entries of backups, health checks and scheduled
/// syncs; the file's `[backup] schedule` and syncs' `schedule` are not listed here).
#[utoipa::path(get, path = "/api/v1/schedules", operation_id = "list_schedules", tag = "schedules",
    security(("bearer" = ["syncs:read"])),
    responses((status = 200, body = Vec<Schedule>), DeniedProblems))]
async fn list_schedules(State(s): State<ApiState>) -> Json<Vec<Schedule>> {
    Json(s.defs.schedules().as_ref().clone())
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", operation_id = "get_schedule", tag = "schedules",
    security(("bearer" = ["syncs:read"])),
    params(("name" = String, Path, description = "The schedule's name")),
    responses((status = 200, body = Schedule), DeniedLookupProblems))]
async fn get_schedule(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Schedule>, Problem> {
    s.defs
        .schedules()
        .iter()
        .find(|x| x.name == name)
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no schedule named {name:?}")).field("name"))
}

/// Create a schedule: `fleetsync run` starts it at once.
#[utoipa::path(post, path = "/api/v1/schedules", operation_id = "create_schedule", tag = "schedules",
    security(("bearer" = ["schedule:manage"])),
    params(DryRun),
    request_body(content = ScheduleBody, example = json!({"name": "nightly-health", "cron": "0 3 * * *", "kind": "health", "target": "src"})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn create_schedule(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ScheduleBody>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = schedule_change(body, None)?;
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Replace a schedule.
#[utoipa::path(put, path = "/api/v1/schedules/{name}", operation_id = "update_schedule", tag = "schedules",
    security(("bearer" = ["schedule:manage"])),
    params(("name" = String, Path, description = "The schedule's name"), DryRun),
    request_body(content = ScheduleBody, example = json!({"cron": "0 4 * * *", "kind": "health", "target": "src"})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn update_schedule(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ScheduleBody>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = schedule_change(body, Some(&name))?;
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Delete a schedule (a run in progress is stopped).
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", operation_id = "delete_schedule", tag = "schedules",
    security(("bearer" = ["schedule:manage"])),
    params(("name" = String, Path, description = "The schedule's name"), DryRun),
    responses((status = 200, body = Plan), ControlLookupProblems))]
async fn delete_schedule(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = Change::DeleteSchedule(name);
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Run a schedule now (a run in progress finishes first); 409 outside `fleetsync run`.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/trigger", operation_id = "trigger_schedule", tag = "schedules",
    security(("bearer" = ["schedule:manage"])),
    params(("name" = String, Path, description = "The schedule's name"), DryRun),
    responses((status = 200, body = OpResult), ControlLookupProblems))]
async fn trigger_schedule(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<OpResult>, Problem> {
    let dry_run = dry(q)?;
    let schedule = s
        .defs
        .schedules()
        .iter()
        .find(|x| x.name == name)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no schedule named {name:?}")).field("name"))?;
    let plan = format!(
        "schedule {name} would run now: {} of {}",
        schedule.kind.as_str(),
        schedule.target
    );
    send_op(
        &s,
        name,
        crate::run::SyncOp::Trigger,
        "trigger",
        dry_run,
        plan,
    )
    .await
}
