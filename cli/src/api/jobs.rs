//! The job routes (`/api/v1/jobs...`), `/api/v1/events` (Server-Sent Events) and
//! `/api/v1/status`. The handlers only validate and hand over: the jobs run in
//! [`crate::jobs::JobManager`], the work in [`crate::service`].
//!
//! One `POST /api/v1/jobs/{kind}` route per kind (not one route with `{kind, params}`): each
//! kind's permission is its route's security scope in the OpenAPI document, which is what
//! the guard enforces and the RBAC matrix checks, and each kind's body has its own schema.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{
    from_json_rejection, from_query_rejection, AuthProblems, BodyProblems, ControlLookupProblems,
    DeniedProblems, LookupProblems, Problem,
};
use super::tokens::TokenRecord;
use super::ApiState;
use crate::diff_cmd::Side;
use crate::service::backup::{BackupCreateRequest, BackupRestoreRequest, BackupVerifyRequest};
use crate::service::data_diff::DataDiffRequest;
use crate::service::health::HealthRequest;
use crate::service::schema_diff::SchemaDiffRequest;
use crate::service::JobRequest;

/// How often `/events` sends a keep-alive comment when nothing happens.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `?dry_run=true`: answer with the plan, start nothing.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DryRun {
    /// Answer with what would be started, and start nothing.
    #[serde(default)]
    pub(super) dry_run: bool,
}

/// A job's progress (counts the task keeps; percent and ETA when a total is known).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct JobProgressDoc {
    phase: String,
    rows: u64,
    rows_total: Option<u64>,
    bytes: u64,
    tables_done: u64,
    tables_total: Option<u64>,
    percent: Option<f64>,
    eta_seconds: Option<f64>,
}

/// A job (`fleetsync_proto::jobs::Job`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct JobDoc {
    id: String,
    /// `health`, `health_fix`, `schema_diff`, `data_diff`, `backup_create`,
    /// `backup_verify`, `backup_restore`, `backup_prune`, `export`, `import`,
    /// `migrate_generate`, `migrate_apply`, `migrate_rollback`, `migrate_up` or
    /// `migrate_undo`.
    kind: String,
    /// `awaiting_approval`, `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    state: String,
    /// The name of the token that started it.
    created_by: String,
    /// The request as given.
    #[schema(value_type = Object)]
    params: serde_json::Value,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    progress: JobProgressDoc,
    error: Option<String>,
    /// The CLI's exit code for the same outcome.
    exit_code: Option<u8>,
    /// The kind's report (what the CLI prints with `--json`).
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    /// Set when the job needs (or needed) a second person's approval.
    approval: Option<ApprovalDoc>,
}

/// The approval a job needs (`fleetsync_proto::jobs::Approval`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct ApprovalDoc {
    /// The permission of the route that started the job; the approver must hold it.
    permission: String,
    approved_by: Option<String>,
    approved_at: Option<String>,
    rejected_by: Option<String>,
    rejected_at: Option<String>,
}

/// One line of a job's log.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct JobLogLineDoc {
    time: String,
    message: String,
}

/// What a dry run would start.
#[derive(Serialize, ToSchema)]
pub(super) struct JobPlan {
    dry_run: bool,
    kind: String,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    /// The permission whose approval the job would wait for (`[api] require_approval`).
    needs_approval: Option<String>,
}

/// The answer of a cancel.
#[derive(Serialize, ToSchema)]
struct CancelResult {
    id: String,
    /// True when the job was asked to stop (false for a dry run, which answers for a
    /// finished job too).
    cancelling: bool,
    dry_run: bool,
}

pub(super) fn server_exists(s: &ApiState, name: &str, field: &str) -> Result<(), Problem> {
    if s.live().server(name).is_none() {
        return Err(
            Problem::not_found(format!("no server named {name:?} in the configuration"))
                .field(field),
        );
    }
    Ok(())
}

pub(super) fn side_exists(s: &ApiState, side: &str, field: &str) -> Result<(), Problem> {
    match Side::parse(side) {
        Side::File(_) => Ok(()),
        other => server_exists(s, other.server().unwrap_or_default(), field),
    }
}

/// Validates, then starts the job (202) or answers the plan (dry run, 200).
pub(super) fn start<R: JobRequest>(
    s: &ApiState,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<R>, JsonRejection>,
    check: impl FnOnce(&R) -> Result<(), Problem>,
) -> Result<Response, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    let req = body.map_err(from_json_rejection)?.0;
    check(&req)?;
    if q.dry_run {
        let plan = JobPlan {
            dry_run: true,
            kind: R::KIND.as_str().to_string(),
            params: serde_json::to_value(&req).map_err(|e| Problem::internal(e.to_string()))?,
            needs_approval: s.jobs.approval_needed(),
        };
        return Ok(Json(plan).into_response());
    }
    accepted(s, req, token)
}

/// Starts the job of `req` for `token`: 202 with the job, its id recorded for the audit.
pub(super) fn accepted<R: JobRequest>(
    s: &ApiState,
    req: R,
    token: Option<Extension<TokenRecord>>,
) -> Result<Response, Problem> {
    let by = token.map_or_else(|| "unknown".to_string(), |t| t.0.name.clone());
    let job = s
        .jobs
        .start(req, &by)
        .map_err(|e| Problem::internal(crate::exit::one_line(e.as_ref())))?;
    let mut resp = (StatusCode::ACCEPTED, Json(&job)).into_response();
    resp.extensions_mut()
        .insert(super::auth::JobId(job.id.clone()));
    Ok(resp)
}

/// Start a health check of a server (the report of `fleetsync health --json`).
#[utoipa::path(post, path = "/api/v1/jobs/health", operation_id = "start_health_job", tag = "jobs",
    security(("bearer" = ["validation:run"])),
    params(DryRun),
    request_body(content = HealthRequest, example = json!({"server": "src"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_health_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<HealthRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        server_exists(&s, &r.server, "server")
    })
}

/// Start a schema diff (the report of `fleetsync diff schema --json`).
#[utoipa::path(post, path = "/api/v1/jobs/schema-diff", operation_id = "start_schema_diff_job", tag = "jobs",
    security(("bearer" = ["migration:read"])),
    params(DryRun),
    request_body(content = SchemaDiffRequest, example = json!({"source": "src/app", "target": "dst/app"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_schema_diff_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<SchemaDiffRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        side_exists(&s, &r.source, "source")?;
        side_exists(&s, &r.target, "target")
    })
}

/// Start a data diff (the report of `fleetsync diff data --json`; with `"repair_sql": true`
/// the SQL that makes the target equal the source is the job's file `repair.sql`).
#[utoipa::path(post, path = "/api/v1/jobs/data-diff", operation_id = "start_data_diff_job", tag = "jobs",
    security(("bearer" = ["validation:run"])),
    params(DryRun),
    request_body(content = DataDiffRequest, example = json!({"source": "src/app", "target": "dst/app"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_data_diff_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<DataDiffRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        side_exists(&s, &r.source, "source")?;
        side_exists(&s, &r.target, "target")?;
        if r.chunk_time_ms == 0 {
            return Err(
                Problem::bad_request("chunk_time_ms must be at least 1").field("chunk_time_ms")
            );
        }
        Ok(())
    })
}

/// Start a backup of a server (the report of `fleetsync backup create --json`).
#[utoipa::path(post, path = "/api/v1/jobs/backup-create", operation_id = "start_backup_create_job", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(DryRun),
    request_body(content = BackupCreateRequest, example = json!({"server": "src"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_backup_create_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BackupCreateRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        server_exists(&s, &r.server, "server")
    })
}

/// Start the verification of a stored backup (the report of `fleetsync backup verify --json`).
#[utoipa::path(post, path = "/api/v1/jobs/backup-verify", operation_id = "start_backup_verify_job", tag = "jobs",
    security(("bearer" = ["backup:create"])),
    params(DryRun),
    request_body(content = BackupVerifyRequest, example = json!({"id": "src-20260101T000000Z"})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_backup_verify_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BackupVerifyRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |_| Ok(()))
}

/// Start a restore of a backup, optionally to a point in time (the report of `fleetsync
/// backup restore --json`). Without `"confirm": true` a restore that would replace existing
/// tables or views fails and changes nothing; `"plan_only": true` verifies and plans only.
#[utoipa::path(post, path = "/api/v1/jobs/backup-restore", operation_id = "start_backup_restore_job", tag = "jobs",
    security(("bearer" = ["backup:restore"])),
    params(DryRun),
    request_body(content = BackupRestoreRequest, example = json!({"id": "src-20260101T000000Z", "to_server": "dst", "plan_only": true})),
    responses((status = 202, body = JobDoc, description = "Started"), (status = 200, body = JobPlan, description = "Dry run"), BodyProblems))]
pub async fn start_backup_restore_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BackupRestoreRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    start(&s, token, q, body, |r| {
        server_exists(&s, &r.to_server, "to_server")
    })
}

/// Every job of this process (and finished ones from before a restart), newest first.
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", tag = "jobs",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<JobDoc>), AuthProblems))]
pub async fn list_jobs(State(s): State<ApiState>) -> Response {
    Json(s.jobs.list()).into_response()
}

pub(super) fn no_job(id: &str) -> Problem {
    Problem::not_found(format!("no job {id:?}")).field("id")
}

/// One job: state, progress, and its report once finished.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "get_job", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobDoc), LookupProblems))]
pub async fn get_job(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let job = s.jobs.get(&id).ok_or_else(|| no_job(&id))?;
    Ok(Json(job).into_response())
}

/// A job's log (the last lines; older ones are dropped).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/log", operation_id = "get_job_log", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = Vec<JobLogLineDoc>), LookupProblems))]
pub async fn get_job_log(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let log = s.jobs.log(&id).ok_or_else(|| no_job(&id))?;
    Ok(Json(log).into_response())
}

/// Cancel a queued or running job: it stops at its next step and leaves nothing half done
/// (a cancelled backup's directory is removed; a restore stops before its swap and drops its
/// staging tables; a point-in-time replay runs to its end). Needs `validation:run`.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs",
    security(("bearer" = ["validation:run"])),
    params(("id" = String, Path, description = "The job's id"), DryRun),
    responses((status = 200, body = CancelResult), ControlLookupProblems))]
pub async fn cancel_job(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    let job = s.jobs.get(&id).ok_or_else(|| no_job(&id))?;
    if job.state.is_final() && !q.dry_run {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "job-finished",
            format!("job {id} already {}", job.state.as_str()),
        ));
    }
    if !q.dry_run {
        if let Some(other) = s.jobs.elsewhere(&id) {
            // Another replica runs it: the cancel is sent to it (it stops at its next step).
            s.jobs
                .forward(&id, super::kstate::Action::Cancel, "api", false)
                .await
                .map_err(|e| {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "replica-unreachable",
                        format!("job {id} runs on replica {}: {e}", other.replica),
                    )
                })?;
        } else {
            s.jobs.cancel(&id);
        }
    }
    let mut resp = Json(CancelResult {
        id: id.clone(),
        cancelling: !q.dry_run && !job.state.is_final(),
        dry_run: q.dry_run,
    })
    .into_response();
    resp.extensions_mut().insert(super::auth::JobId(id));
    Ok(resp)
}

/// Server-Sent Events: `job_state` (a job changed state), `job_progress` (a running job's
/// progress, at most 4 a second per job), `sync_state` (a pipeline's state or a sync's
/// control changed), `conflict` (a manual conflict parked or resolved) and `health` (a
/// server's periodic health status changed). Each event's data is one JSON object.
/// Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/api/v1/events", operation_id = "events", tag = "events",
    security(("bearer" = [])),
    responses((status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String), AuthProblems))]
pub async fn events(State(s): State<ApiState>) -> Response {
    let rx = s.jobs.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(e) => SseEvent::default().event(e.event).data(e.data.to_string()),
            // A reader too slow for the buffer is told how many events it missed.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(serde_json::json!({ "missed": n }).to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The same document as `fleetsync status --json` on the coordinator's machine.
#[utoipa::path(get, path = "/api/v1/status", operation_id = "get_status", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    responses((status = 200, body = Object, description = "`fleetsync status --json`"), DeniedProblems))]
pub async fn get_status(State(s): State<ApiState>) -> Result<Response, Problem> {
    let doc = crate::status::report(&s.live())
        .await
        .map_err(|e| Problem::internal(crate::exit::one_line(e.as_ref())))?;
    Ok(Json(doc).into_response())
}

/// Publishes `sync_state` events: polls the pipelines and controls every `every` and sends
/// what changed.
pub fn spawn_sync_events(
    s: ApiState,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, String> = Default::default();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut now = std::collections::HashMap::new();
            for p in super::routes::pipelines(&s) {
                now.insert(format!("{}/{}", p.sync, p.target), p.state.clone());
            }
            for sync in &s.live().syncs {
                if let Some(c) = s.controls.get(&sync.name) {
                    let c = serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    now.insert(format!("{}#control", sync.name), c);
                }
            }
            for (key, state) in &now {
                if last.get(key) == Some(state) {
                    continue;
                }
                let previous = last.get(key).cloned();
                let data = match key.split_once('#') {
                    Some((sync, _)) => {
                        serde_json::json!({"sync": sync, "control": state, "previous": previous})
                    }
                    None => {
                        let (sync, target) = key.split_once('/').unwrap_or((key, ""));
                        serde_json::json!({"sync": sync, "target": target, "state": state, "previous": previous})
                    }
                };
                s.jobs.publish("sync_state", data);
            }
            last = now;
        }
    });
}
