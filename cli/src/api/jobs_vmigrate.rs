//! Versioned migrations as jobs: `migrate-up` (`migration:execute`) and `migrate-undo`
//! (`migration:rollback`), the reports of `fleetsync migrate up|undo --dir --json`. Same
//! pattern as [`super::jobs2`]: validate, then start the job (202; it waits for approval when
//! `[api] require_approval` names the route's permission) or answer the plan
//! (`?dry_run=true`, 200). The folder is relative to `[migrations] dir` and may not leave it
//! ([`crate::service::vmigrate::jobs::resolve_dir`]); without that key both are refused (409).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use fleetsync_coordinator::migrate::fleet;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::{start, DryRun, JobDoc, JobPlan};
use super::problem::{ConfirmBodyProblems, Problem};
use super::tokens::TokenRecord;
use super::ApiState;
use crate::service::vmigrate::jobs::{
    history, resolve_dir, DirRefused, MigrateUndoRequest, MigrateUpRequest,
};

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(start_migrate_up_job))
        .routes(routes!(start_migrate_undo_job))
}

/// The checks both jobs share: the folder, the servers, the history mode, `confirm`.
fn check_queue(
    s: &ApiState,
    dir: &str,
    servers: Option<&str>,
    history_text: Option<&str>,
    confirm: bool,
    what: &str,
) -> Result<(), Problem> {
    resolve_dir(&s.config, dir).map_err(|e| match e {
        DirRefused::NoRoot => {
            Problem::new(StatusCode::CONFLICT, "not-configured", e.to_string()).field("dir")
        }
        DirRefused::Outside(_) => Problem::bad_request(e.to_string()).field("dir"),
        DirRefused::Missing(_) => Problem::not_found(e.to_string()).field("dir"),
    })?;
    let live = s.live();
    fleet::select(servers, live.servers.iter().map(|s| s.name.as_str()))
        .map_err(|e| Problem::bad_request(format!("servers: {e}")).field("servers"))?;
    history(history_text).map_err(|e| Problem::bad_request(e).field("history"))?;
    if !confirm {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "confirm-needed",
            format!("{what}: send \"confirm\": true"),
        )
        .field("confirm"));
    }
    Ok(())
}

/// Start running a versioned-migration folder's pending files over the fleet (the report of
/// `fleetsync migrate up --dir --yes --json`): canaries one at a time, then waves; progress
/// per server and file. `dir` is relative to `[migrations] dir` (409 when that key is unset,
/// 400 for a path that leaves it). Needs `"confirm": true` (409 otherwise).
#[utoipa::path(post, path = "/api/v1/jobs/migrate-up", operation_id = "start_migrate_up_job", tag = "jobs",
    security(("bearer" = ["migration:execute"])),
    params(DryRun),
    request_body(content = MigrateUpRequest, example = json!({"dir": "app", "servers": "dst", "confirm": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_migrate_up_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<MigrateUpRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        if r.canary == 0 && r.wave == 0 {
            return Err(Problem::bad_request("wave must be at least 1").field("wave"));
        }
        check_queue(
            &s,
            &r.dir,
            r.servers.as_deref(),
            r.history.as_deref(),
            r.confirm,
            "migrate up runs the folder's files on the servers",
        )
    })
}

/// Start undoing the newest applied versioned migration (or every one above `to`) on the
/// selected servers (the report of `fleetsync migrate undo --dir --yes --json`). `dir` as for
/// `migrate-up`. Needs `"confirm": true` (409 otherwise).
#[utoipa::path(post, path = "/api/v1/jobs/migrate-undo", operation_id = "start_migrate_undo_job", tag = "jobs",
    security(("bearer" = ["migration:rollback"])),
    params(DryRun),
    request_body(content = MigrateUndoRequest, example = json!({"dir": "app", "servers": "dst", "confirm": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), ConfirmBodyProblems))]
async fn start_migrate_undo_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<MigrateUndoRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        check_queue(
            &s,
            &r.dir,
            r.servers.as_deref(),
            r.history.as_deref(),
            r.confirm,
            "migrate undo runs the undo files on the servers",
        )
    })
}
