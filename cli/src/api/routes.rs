//! The `/api/v1` routes. Each handler carries its `#[utoipa::path]` (method, path, the
//! permission it needs as its `bearer` scope, parameters, answers), and [`router`] registers
//! it through utoipa-axum: the OpenAPI document is generated from these, never kept by hand.
//!
//! Every mutating route takes `?dry_run=true`: it answers with what it would change and
//! changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{AuditEntry, AuditFilter, DEFAULT_LIMIT, MAX_LIMIT};
use super::problem::{
    from_json_rejection, from_query_rejection, AuthProblems, ConfirmBodyProblems,
    ControlLookupProblems, ControlProblems, DeniedLookupProblems, DeniedProblems, Problem,
};
use super::ApiState;
use crate::control::Control;
use crate::failure::Failure;
use crate::pipeline::PipelineStatus;

/// How often the throughput (rows/s per pipeline) is sampled.
pub(super) const THROUGHPUT_EVERY: Duration = Duration::from_secs(5);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetsync API",
        version = "1",
        description = "Control plane of fleetsync. Every route needs `Authorization: Bearer TOKEN`; the scope of a route's `bearer` requirement is the permission it needs (none: any valid token). Errors are RFC 9457 problem+json."
    ),
    modifiers(&BearerScheme),
    components(schemas(Problem))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            super::auth::SECURITY_SCHEME,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route. A route added here is documented and guarded by construction.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .routes(routes!(health))
        .routes(routes!(list_syncs))
        .routes(routes!(get_sync))
        .routes(routes!(pause_sync))
        .routes(routes!(resume_sync))
        .routes(routes!(cancel_sync))
        .routes(routes!(bulk_pause))
        .routes(routes!(bulk_resume))
        .routes(routes!(list_servers))
        .routes(routes!(list_audit))
        .routes(routes!(super::jobs::start_health_job))
        .routes(routes!(super::jobs::start_schema_diff_job))
        .routes(routes!(super::jobs::start_data_diff_job))
        .routes(routes!(super::jobs::start_backup_create_job))
        .routes(routes!(super::jobs::start_backup_verify_job))
        .routes(routes!(super::jobs::start_backup_restore_job))
        .routes(routes!(super::jobs::list_jobs))
        .routes(routes!(super::jobs::get_job))
        .routes(routes!(super::jobs::get_job_log))
        .routes(routes!(super::jobs::cancel_job))
        .routes(routes!(super::jobs::events))
        .routes(routes!(super::jobs::get_status))
        .merge(super::gov_routes(OpenApiRouter::new()))
        .merge(super::backups::routes(OpenApiRouter::new()))
        .merge(super::jobs2::routes(OpenApiRouter::new()))
        .merge(super::jobs_vmigrate::routes(OpenApiRouter::new()))
        .merge(super::defs::routes(OpenApiRouter::new()))
        .merge(super::schedules::routes(OpenApiRouter::new()))
        .merge(super::dash::routes(OpenApiRouter::new()))
        .merge(super::syncs_dash::routes(OpenApiRouter::new()))
        .merge(super::overview::routes(OpenApiRouter::new()))
        .merge(super::backup_settings::routes(OpenApiRouter::new()))
        .merge(super::migrations::routes(OpenApiRouter::new()))
        .merge(super::conflicts_bulk::routes(OpenApiRouter::new()))
}

type ApiResult<T> = Result<Json<T>, Problem>;

/// `?dry_run=true`: answer with the plan, change nothing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DryRun {
    /// Answer with what would change, and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "meta",
    security(("bearer" = [])),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"), AuthProblems))]
async fn openapi_json(State(s): State<ApiState>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        s.openapi_json.clone(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
struct PipelineHealth {
    sync: String,
    target: String,
    state: String,
    /// Coordinator groups: this member's id while it applies the pair (`standby`: another
    /// member does; `fleetsync status` names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct HealthView {
    /// `ok` (every pipeline starting, snapshotting or streaming), `degraded` or `failed`.
    status: String,
    pipelines: Vec<PipelineHealth>,
}

pub(super) fn pipelines(s: &ApiState) -> Vec<PipelineStatus> {
    s.registry
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default()
}

/// The process's health (the same verdict as `/health`, always answered with 200).
#[utoipa::path(get, path = "/api/v1/health", operation_id = "health", tag = "meta",
    security(("bearer" = [])),
    responses((status = 200, body = HealthView), AuthProblems))]
async fn health(State(s): State<ApiState>) -> Json<HealthView> {
    let list = pipelines(&s);
    let healthy = list.iter().all(|p| {
        matches!(
            p.state.as_str(),
            "streaming" | "snapshotting" | "starting" | "standby"
        )
    });
    let failed = list.iter().any(|p| p.state == "failed");
    Json(HealthView {
        status: if healthy {
            "ok"
        } else if failed {
            "failed"
        } else {
            "degraded"
        }
        .into(),
        pipelines: list
            .into_iter()
            .map(|p| PipelineHealth {
                sync: p.sync,
                target: p.target,
                state: p.state,
                owner: p.owner,
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
struct PausedTable {
    table: String,
    reason: String,
}

/// One target of a sync, as its pipeline in this process reports it.
#[derive(Debug, Serialize, ToSchema)]
struct TargetView {
    target: String,
    /// `starting`, `snapshotting`, `streaming`, `retrying`, `paused`, `cancelled`, `failed`,
    /// `stopped`, `done`, or `not_running` (no pipeline for it in this process).
    state: String,
    applied_position: Option<String>,
    /// Commit-time lag: source commit time to target apply time of the last applied
    /// transaction (0 when idle and caught up).
    lag_seconds: f64,
    /// Seconds since the last applied batch (null: none since the start).
    seconds_since_last_apply: Option<f64>,
    rows_applied: u64,
    /// Rows applied per second over the last sampling interval (5 s).
    rows_per_second: f64,
    failure: Option<Failure>,
    paused_tables: Vec<PausedTable>,
    slow_tables: Vec<String>,
    /// While the state is `snapshotting`: how far the initial snapshot is (null otherwise).
    snapshot: Option<super::syncs_dash::SnapshotView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SyncView {
    name: String,
    source: String,
    /// Cron expression of a scheduled sync.
    schedule: Option<String>,
    /// The sync manager's control (`null`: the sync does not run in this process).
    control: Option<Control>,
    /// Where the definition comes from: `file` (the TOML file; read-only over the API) or
    /// `api` (made over the API).
    origin: String,
    targets: Vec<TargetView>,
}

fn sync_view(s: &ApiState, sync: &fleetsync_config::SyncConfig) -> SyncView {
    let live = pipelines(s);
    let rates = s.throughput.rates();
    let targets = sync
        .targets
        .iter()
        .map(|t| {
            let p = live.iter().find(|p| p.sync == sync.name && &p.target == t);
            let key = format!("{}/{t}", sync.name);
            match p {
                Some(p) => TargetView {
                    target: t.clone(),
                    state: p.state.clone(),
                    applied_position: p.applied_position.clone(),
                    lag_seconds: p.lag_seconds,
                    seconds_since_last_apply: p.last_applied_ms.map(|t| {
                        fleetsync_agent::source::stream::now_ms().saturating_sub(t) as f64 / 1000.0
                    }),
                    rows_applied: p.rows_applied,
                    rows_per_second: rates.get(&key).copied().unwrap_or(0.0),
                    failure: p.failure.clone(),
                    paused_tables: p
                        .paused_tables
                        .iter()
                        .map(|(table, reason)| PausedTable {
                            table: table.clone(),
                            reason: reason.clone(),
                        })
                        .collect(),
                    slow_tables: p.slow_tables.clone(),
                    snapshot: p.snapshot.as_ref().map(super::syncs_dash::snapshot_view),
                },
                None => TargetView {
                    target: t.clone(),
                    state: "not_running".into(),
                    applied_position: None,
                    lag_seconds: 0.0,
                    seconds_since_last_apply: None,
                    rows_applied: 0,
                    rows_per_second: 0.0,
                    failure: None,
                    paused_tables: Vec::new(),
                    slow_tables: Vec::new(),
                    snapshot: None,
                },
            }
        })
        .collect();
    SyncView {
        name: sync.name.clone(),
        source: sync.source.clone(),
        schedule: sync.schedule.clone(),
        control: s.controls.get(&sync.name),
        origin: s.defs.sync_origin(&sync.name).as_str().into(),
        targets,
    }
}

/// Every sync with per-target state, lag, throughput and failure.
#[utoipa::path(get, path = "/api/v1/syncs", operation_id = "list_syncs", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    responses((status = 200, body = Vec<SyncView>), DeniedProblems))]
async fn list_syncs(State(s): State<ApiState>) -> Json<Vec<SyncView>> {
    let config = s.defs.effective();
    Json(config.syncs.iter().map(|y| sync_view(&s, y)).collect())
}

fn find_sync(
    s: &ApiState,
    name: &str,
    field: &str,
) -> Result<fleetsync_config::SyncConfig, Problem> {
    s.defs
        .effective()
        .syncs
        .iter()
        .find(|y| y.name == name)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no sync named {name:?}")).field(field))
}

/// One sync.
#[utoipa::path(get, path = "/api/v1/syncs/{name}", operation_id = "get_sync", tag = "syncs",
    security(("bearer" = ["syncs:read"])),
    params(("name" = String, Path, description = "The sync's name")),
    responses((status = 200, body = SyncView), DeniedLookupProblems))]
async fn get_sync(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<SyncView> {
    let sync = find_sync(&s, &name, "name")?;
    Ok(Json(sync_view(&s, &sync)))
}

/// One change of a sync's control.
#[derive(Debug, Serialize, ToSchema)]
struct ControlChange {
    sync: String,
    from: Control,
    to: Control,
}

#[derive(Debug, Serialize, ToSchema)]
struct ControlResult {
    /// True: nothing was changed, `changes` is the plan.
    dry_run: bool,
    changes: Vec<ControlChange>,
}

/// Sets the control of every sync in `names` (all or none: any unknown or not running here
/// refuses the whole call).
fn control(
    s: &ApiState,
    names: &[(String, String)],
    to: Control,
    dry_run: Result<Query<DryRun>, QueryRejection>,
) -> ApiResult<ControlResult> {
    let dry_run = dry_run.map_err(from_query_rejection)?.0.dry_run;
    let mut changes = Vec::new();
    for (name, field) in names {
        find_sync(s, name, field)?;
        let from = s.controls.get(name).ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "not-running",
                format!("sync {name:?} does not run in this process"),
            )
            .field(field.clone())
        })?;
        changes.push(ControlChange {
            sync: name.clone(),
            from,
            to,
        });
    }
    if !dry_run {
        for c in &changes {
            s.controls.set(&c.sync, to);
        }
    }
    Ok(Json(ControlResult { dry_run, changes }))
}

/// Pause a sync: its pipelines stop after their current batch.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/pause", operation_id = "pause_sync", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(("name" = String, Path, description = "The sync's name"), DryRun),
    responses((status = 200, body = ControlResult), ControlLookupProblems))]
async fn pause_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> ApiResult<ControlResult> {
    control(&s, &[(name, "name".into())], Control::Paused, q)
}

/// Resume a paused or cancelled sync.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/resume", operation_id = "resume_sync", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(("name" = String, Path, description = "The sync's name"), DryRun),
    responses((status = 200, body = ControlResult), ControlLookupProblems))]
async fn resume_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> ApiResult<ControlResult> {
    control(&s, &[(name, "name".into())], Control::Running, q)
}

/// Cancel a sync: its pipelines stop (a scheduled sync runs again at its next occurrence).
#[utoipa::path(post, path = "/api/v1/syncs/{name}/cancel", operation_id = "cancel_sync", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(("name" = String, Path, description = "The sync's name"), DryRun),
    responses((status = 200, body = ControlResult), ControlLookupProblems))]
async fn cancel_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> ApiResult<ControlResult> {
    control(&s, &[(name, "name".into())], Control::Cancelled, q)
}

/// The syncs of a bulk call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    /// Sync names (at least one); all must exist and run here, or nothing changes.
    #[schema(min_items = 1)]
    syncs: Vec<String>,
}

fn bulk(
    s: &ApiState,
    body: Result<Json<BulkRequest>, JsonRejection>,
    to: Control,
    q: Result<Query<DryRun>, QueryRejection>,
) -> ApiResult<ControlResult> {
    let body = body.map_err(from_json_rejection)?.0;
    if body.syncs.is_empty() {
        return Err(Problem::bad_request("name at least one sync").field("syncs"));
    }
    let names: Vec<(String, String)> = body
        .syncs
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, format!("syncs[{i}]")))
        .collect();
    control(s, &names, to, q)
}

/// Pause several syncs in one call (all or none).
#[utoipa::path(post, path = "/api/v1/bulk/syncs/pause", operation_id = "bulk_pause_syncs", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(DryRun),
    request_body(content = BulkRequest, example = json!({"syncs": ["s1"]})),
    responses((status = 200, body = ControlResult), ConfirmBodyProblems))]
async fn bulk_pause(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BulkRequest>, JsonRejection>,
) -> ApiResult<ControlResult> {
    bulk(&s, body, Control::Paused, q)
}

/// Resume several syncs in one call (all or none).
#[utoipa::path(post, path = "/api/v1/bulk/syncs/resume", operation_id = "bulk_resume_syncs", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(DryRun),
    request_body(content = BulkRequest, example = json!({"syncs": ["s1"]})),
    responses((status = 200, body = ControlResult), ConfirmBodyProblems))]
async fn bulk_resume(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<BulkRequest>, JsonRejection>,
) -> ApiResult<ControlResult> {
    bulk(&s, body, Control::Running, q)
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ServerView {
    name: String,
    /// The URL with any password shown as `***`.
    url: String,
    /// `"***"` when the server has a password (never the password), else null.
    password: Option<String>,
    tls: String,
    origin: String,
}

/// Every server (passwords shown as `"***"`).
#[utoipa::path(get, path = "/api/v1/servers", operation_id = "list_servers", tag = "servers",
    security(("bearer" = ["servers:read"])),
    responses((status = 200, body = Vec<ServerView>), DeniedProblems))]
async fn list_servers(State(s): State<ApiState>) -> Json<Vec<ServerView>> {
    let config = s.defs.effective();
    Json(
        config
            .servers
            .iter()
            .map(|srv| server_view(srv, s.defs.server_origin(&srv.name).as_str()))
            .collect(),
    )
}

/// A server as the API shows it: `origin` is `file` or `api`, any password `"***"`.
pub(super) fn server_view(srv: &fleetsync_config::Server, origin: &str) -> ServerView {
    let url = srv.redacted_url();
    let has_password = srv.password.is_some() || url != srv.url;
    ServerView {
        name: srv.name.clone(),
        url,
        password: has_password.then(|| "***".to_string()),
        tls: srv.tls.to_string(),
        origin: origin.into(),
    }
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only entries of this token name.
    token: Option<String>,
    /// Only this action (operationId), e.g. `pause_sync`.
    action: Option<String>,
    /// Only this outcome: `ok`, `failed`, `dry_run`, `unauthenticated` or `denied`.
    outcome: Option<String>,
    /// RFC 3339: only entries at or after this time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339: only entries before this time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Most entries to return (1-1000, default 100), newest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit", tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), ControlProblems))]
async fn list_audit(
    State(s): State<ApiState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Vec<AuditEntry>> {
    let q = q.map_err(from_query_rejection)?.0;
    let since = match &q.since {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    Problem::bad_request(format!(
                        "since {t:?}: must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"
                    ))
                    .field("since")
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let until = match &q.until {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    Problem::bad_request(format!(
                        "until {t:?}: must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"
                    ))
                    .field("until")
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            Problem::bad_request(format!("limit {limit}: must be 1-{MAX_LIMIT}")).field("limit"),
        );
    }
    let filter = AuditFilter {
        token: q.token,
        action: q.action,
        outcome: q.outcome,
        since,
        until,
        limit,
    };
    let entries = s
        .audit
        .query(&filter)
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(entries))
}

/// Rows per second per pipeline (`sync/target`), sampled every [`THROUGHPUT_EVERY`].
#[derive(Default)]
pub struct Throughput(Mutex<HashMap<String, (u64, Instant, f64)>>);

impl Throughput {
    fn rates(&self) -> HashMap<String, f64> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.2)).collect())
            .unwrap_or_default()
    }

    fn sample(&self, list: &[PipelineStatus]) {
        let now = Instant::now();
        let Ok(mut m) = self.0.lock() else { return };
        for p in list {
            let key = format!("{}/{}", p.sync, p.target);
            let e = m.entry(key).or_insert((p.rows_applied, now, 0.0));
            let secs = now.duration_since(e.1).as_secs_f64();
            if secs > 0.0 {
                *e = (
                    p.rows_applied,
                    now,
                    p.rows_applied.saturating_sub(e.0) as f64 / secs,
                );
            }
        }
    }
}

pub fn spawn_throughput(s: ApiState, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(THROUGHPUT_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let list = pipelines(&s);
                    s.throughput.sample(&list);
                    s.history.record(&list, &s.throughput.rates());
                }
            }
        }
    });
}
