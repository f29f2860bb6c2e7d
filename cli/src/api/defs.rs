//! Definitions over the API: servers and syncs created, changed and deleted (kept in the
//! definition store, see `crate::defs`), a server's connectivity test, and the export of the
//! API's definitions as TOML.
//!
//! Every mutating route takes `?dry_run=true` (the change is checked, preflight included, and
//! nothing is stored). Definitions from the configuration file are read-only (409).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{
    from_json_rejection, from_query_rejection, ConfirmBodyProblems, ControlLookupProblems,
    DeniedLookupProblems, DeniedProblems, Problem,
};
use super::routes::{server_view, ServerView};
use super::ApiState;
use crate::defs::{without_nulls, Change, DefsError, Plan};

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(get_server))
        .routes(routes!(create_server))
        .routes(routes!(update_server))
        .routes(routes!(delete_server))
        .routes(routes!(test_server))
        .routes(routes!(create_sync))
        .routes(routes!(update_sync))
        .routes(routes!(delete_sync))
        .routes(routes!(export_config))
        .routes(routes!(sync_once))
        .routes(routes!(resnapshot_sync))
}

/// `?dry_run=true`: answer with the plan, change nothing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DryRun {
    /// Check the change (preflight included) and answer with what would change; store nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `DELETE /syncs/{name}`, `POST /syncs/{name}/resnapshot`: `?confirm=true` (required) and
/// `?dry_run=true`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Required (409 without) unless `dry_run`: the action stops the sync's pipelines.
    #[serde(default)]
    confirm: bool,
    /// Answer with what would change; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// A server definition. `password` is write-only: stored encrypted with `[api]
/// secret_key_file` (refused without one), never returned. On an update, no `password` keeps
/// the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ServerBody {
    /// Required on create; on an update, if given, the path's name.
    name: Option<String>,
    /// `mysql://user@host:port` (no password in the URL: use `password`).
    url: String,
    #[schema(write_only, format = Password, min_length = 1)]
    password: Option<String>,
    /// `disabled`, `preferred` (default), `required`, `verify_ca` or `verify_identity`.
    tls: Option<String>,
    /// PEM file of the CA(s), on the fleetsync host.
    tls_ca: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    replica_server_id: Option<u32>,
}

pub(super) fn dry(q: Result<Query<DryRun>, QueryRejection>) -> Result<bool, Problem> {
    Ok(q.map_err(from_query_rejection)?.0.dry_run)
}

pub(super) fn problem(e: DefsError) -> Problem {
    let detail = e.to_string();
    match e {
        DefsError::NotFound { .. } => Problem::not_found(detail).field("name"),
        DefsError::ReadOnly { .. } => {
            Problem::new(StatusCode::CONFLICT, "read-only", detail).field("name")
        }
        DefsError::Exists { .. } => {
            Problem::new(StatusCode::CONFLICT, "name-taken", detail).field("name")
        }
        DefsError::InUse { .. } => Problem::new(StatusCode::CONFLICT, "in-use", detail),
        DefsError::Invalid { field, .. } => {
            let p = Problem::new(StatusCode::BAD_REQUEST, "invalid-definition", detail);
            if field.is_empty() {
                p
            } else {
                p.field(field)
            }
        }
        DefsError::Preflight(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "preflight-failed", detail)
        }
        DefsError::NotSnapshotted { .. } => {
            Problem::new(StatusCode::CONFLICT, "not-snapshotted", detail).field("include")
        }
        DefsError::AddsTables { .. } => {
            Problem::new(StatusCode::CONFLICT, "adds-tables", detail).field("resnapshot")
        }
        DefsError::Store { .. } => Problem::internal(detail),
        DefsError::Conflict(_) => Problem::new(StatusCode::CONFLICT, "conflict", detail),
    }
}

/// The body's name, or the path's: they must agree.
pub(super) fn named(body: Option<String>, path: Option<&str>) -> Result<String, Problem> {
    match (body, path) {
        (Some(b), Some(p)) if b != p => Err(Problem::bad_request(format!(
            "name {b:?} differs from the path's {p:?} (a rename is a delete and a create)"
        ))
        .field("name")),
        (Some(b), _) => Ok(b),
        (None, Some(p)) => Ok(p.to_string()),
        (None, None) => Err(Problem::bad_request("name is required").field("name")),
    }
}

fn server_change(body: ServerBody, path: Option<&str>) -> Result<Change, Problem> {
    let name = named(body.name, path)?;
    if fleetsync_config::redact_url(&body.url) != body.url {
        return Err(Problem::bad_request(
            "url holds a password: give it in `password` (stored encrypted), not in the URL",
        )
        .field("url"));
    }
    let mut fields = Map::new();
    fields.insert("name".into(), name.into());
    fields.insert("url".into(), body.url.into());
    for (k, v) in [
        ("tls", body.tls),
        ("tls_ca", body.tls_ca),
        ("tls_cert", body.tls_cert),
        ("tls_key", body.tls_key),
    ] {
        if let Some(v) = v {
            fields.insert(k.into(), v.into());
        }
    }
    if let Some(id) = body.replica_server_id {
        fields.insert("replica_server_id".into(), id.into());
    }
    // The same parse as the file's, so a bad `tls` is refused here with its field.
    serde_json::from_value::<fleetsync_config::Server>(Value::Object(fields.clone()))
        .map_err(|e| Problem::bad_request(e.to_string()).field("tls"))?;
    if body.password.as_deref() == Some("") {
        return Err(Problem::bad_request("password is empty (omit it for none)").field("password"));
    }
    Ok(Change::PutServer {
        create: path.is_none(),
        fields,
        password: body.password,
    })
}

/// One server (password shown as `"***"`).
#[utoipa::path(get, path = "/api/v1/servers/{name}", operation_id = "get_server", tag = "servers",
    security(("bearer" = ["servers:read"])),
    params(("name" = String, Path, description = "The server's name")),
    responses((status = 200, body = ServerView), DeniedLookupProblems))]
async fn get_server(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, Problem> {
    let config = s.defs.effective();
    let srv = config
        .server(&name)
        .ok_or_else(|| Problem::not_found(format!("no server named {name:?}")).field("name"))?;
    Ok(Json(server_view(srv, s.defs.server_origin(&name).as_str())))
}

/// Create a server (stored by the API; `"origin": "api"`).
#[utoipa::path(post, path = "/api/v1/servers", operation_id = "create_server", tag = "servers",
    security(("bearer" = ["servers:write"])),
    params(DryRun),
    request_body(content = ServerBody, example = json!({"name": "db9", "url": "mysql://fleetsync@127.0.0.1:3306", "tls": "disabled"})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn create_server(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ServerBody>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = server_change(body.map_err(from_json_rejection)?.0, None)?;
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Replace an API-made server's definition (no `password`: the stored one is kept). The
/// syncs using it restart with it.
#[utoipa::path(put, path = "/api/v1/servers/{name}", operation_id = "update_server", tag = "servers",
    security(("bearer" = ["servers:write"])),
    params(("name" = String, Path, description = "The server's name"), DryRun),
    request_body(content = ServerBody, example = json!({"url": "mysql://fleetsync@127.0.0.1:3306", "tls": "disabled"})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn update_server(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ServerBody>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = server_change(body.map_err(from_json_rejection)?.0, Some(&name))?;
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Delete an API-made server (409 while a sync uses it).
#[utoipa::path(delete, path = "/api/v1/servers/{name}", operation_id = "delete_server", tag = "servers",
    security(("bearer" = ["servers:write"])),
    params(("name" = String, Path, description = "The server's name"), DryRun),
    responses((status = 200, body = Plan), ControlLookupProblems))]
async fn delete_server(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = Change::DeleteServer(name);
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// One check of a server test.
#[derive(Debug, Serialize, ToSchema)]
struct Check {
    /// `connect` (reachable, credentials, TLS), `binlog` (log_bin, ROW format, FULL row
    /// image and metadata, privileges to read the binlog: what a sync's source needs).
    check: String,
    ok: bool,
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct TestResult {
    server: String,
    /// True when every check passed.
    ok: bool,
    checks: Vec<Check>,
}

/// Test a server: the preflight checks of `fleetsync run` (connectivity, binlog settings,
/// privileges), answered check by check. Changes nothing (`dry_run` is accepted and ignored).
#[utoipa::path(post, path = "/api/v1/servers/{name}/test", operation_id = "test_server", tag = "servers",
    security(("bearer" = ["servers:write"])),
    params(("name" = String, Path, description = "The server's name"), DryRun),
    responses((status = 200, body = TestResult), ControlLookupProblems))]
async fn test_server(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<TestResult>, Problem> {
    dry(q)?;
    let config = s.defs.effective();
    let srv = config
        .server(&name)
        .ok_or_else(|| Problem::not_found(format!("no server named {name:?}")).field("name"))?;
    let mut checks = Vec::new();
    let spec = crate::opts::server_opts(srv).map(|opts| fleetsync_agent::source::SourceSpec {
        name: srv.name.clone(),
        opts,
        replica_id: srv.replica_id("test"),
        filter: fleetsync_config::TableFilter::new(&[], &[])
            .unwrap_or_else(|_| fleetsync_config::TableFilter::any_of(Vec::new())),
        sync: "test".into(),
        snapshot_chunk_rows: 1,
        include_marked: false,
        until: None,
    });
    match spec {
        Err(e) => checks.push(Check {
            check: "connect".into(),
            ok: false,
            message: e.to_string(),
        }),
        Ok(spec) => match fleetsync_agent::source::connect(&spec).await {
            Err(e) => checks.push(Check {
                check: "connect".into(),
                ok: false,
                message: e.to_string(),
            }),
            Ok(mut conn) => {
                checks.push(Check {
                    check: "connect".into(),
                    ok: true,
                    message: "connected".into(),
                });
                let r = fleetsync_agent::source::preflight(&mut conn, &spec).await;
                checks.push(Check {
                    check: "binlog".into(),
                    ok: r.is_ok(),
                    message: match r {
                        Ok(_) => "binlog settings and privileges fit a sync's source".into(),
                        Err(e) => e.to_string(),
                    },
                });
                let _ = conn.disconnect().await;
            }
        },
    }
    Ok(Json(TestResult {
        server: name,
        ok: checks.iter().all(|c| c.ok),
        checks,
    }))
}

/// A one-way sync's definition: the keys of a `[[syncs]]` entry of the configuration file
/// (README, configuration reference), as JSON. Only for the OpenAPI document: the body is
/// parsed by the configuration's own `SyncConfig`, so the file and the API cannot differ.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    /// Required on create; on an update, if given, the path's name.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: Option<String>,
    /// Only `one_way` (groups are defined in the file).
    #[schema(pattern = "^one_way$")]
    mode: Option<String>,
    /// The source server.
    source: String,
    #[schema(min_items = 1)]
    targets: Vec<String>,
    /// `schema.table` regexes (anchored); none: every non-system table.
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    /// `"schema" = "other"` or `"schema.table" = "schema2.table2"`.
    map: Option<std::collections::BTreeMap<String, String>>,
    create_missing: Option<bool>,
    apply_ddl: Option<bool>,
    #[schema(minimum = 1, maximum = 1000000)]
    batch_rows: Option<u64>,
    batch_wait_ms: Option<u64>,
    #[schema(minimum = 1)]
    queue_transactions: Option<u64>,
    #[schema(minimum = 1)]
    queue_rows: Option<u64>,
    #[schema(minimum = 1)]
    snapshot_chunk_rows: Option<u64>,
    /// Cron expression: run at each occurrence instead of continuously.
    schedule: Option<String>,
    /// `none`, `source-wins`, `target-wins`, `newest-wins` or `manual`.
    conflict: Option<String>,
    priority: Option<Vec<String>>,
    newest_column: Option<String>,
    /// `[[syncs.tables]]` entries: `{"name": "schema.table", "conflict": ..., "newest_column": ...}`.
    tables: Option<Vec<Map<String, Value>>>,
    /// `skip_replication` or `marker`.
    loop_prevention: Option<String>,
}

/// A sync body: the fields of a `[[syncs]]` entry (README, configuration reference), as JSON.
fn sync_change(
    body: Result<Json<Map<String, Value>>, JsonRejection>,
    path: Option<&str>,
) -> Result<Change, Problem> {
    let mut fields = without_nulls(body.map_err(from_json_rejection)?.0);
    let given = match fields.remove("name") {
        Some(Value::String(n)) => Some(n),
        Some(_) => return Err(Problem::bad_request("name must be a string").field("name")),
        None => None,
    };
    let name = named(given, path)?;
    fields.insert("name".into(), name.into());
    // The same parse as the file's: unknown fields and wrong types are refused here.
    let parsed: fleetsync_config::SyncConfig =
        serde_json::from_value(Value::Object(fields.clone())).map_err(|e| {
            let detail = e.to_string();
            let field = detail
                .split("field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
                .filter(|f| !f.is_empty())
                .map(str::to_string);
            // As axum's own rejection of a body of the wrong shape (README: 422).
            let p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", detail);
            match field {
                Some(f) => p.field(f),
                None => p,
            }
        })?;
    if parsed.mode == fleetsync_config::SyncMode::Bidirectional {
        return Err(Problem::bad_request(
            "bidirectional groups are defined in the configuration file only",
        )
        .field("mode"));
    }
    Ok(Change::PutSync {
        create: path.is_none(),
        fields,
    })
}

/// Create a sync (the fields of a `[[syncs]]` entry of the file, as JSON), checked like the
/// file and preflighted; `fleetsync run` starts its pipelines at once.
#[utoipa::path(post, path = "/api/v1/syncs", operation_id = "create_sync", tag = "syncs",
    security(("bearer" = ["syncs:write"])),
    params(DryRun),
    request_body(content = SyncBody,
        example = json!({"name": "s9", "source": "src", "targets": ["dst"], "include": ["app\\..*"]})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn create_sync(
    State(s): State<ApiState>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let dry_run = dry(q)?;
    let change = sync_change(body, None)?;
    Ok(Json(s.defs.apply(change, dry_run).await.map_err(problem)?))
}

/// Replace an API-made sync's definition; `fleetsync run` restarts its pipelines with it,
/// from their stored progress.
#[utoipa::path(put, path = "/api/v1/syncs/{name}", operation_id = "update_sync", tag = "syncs",
    security(("bearer" = ["syncs:write"])),
    params(("name" = String, Path, description = "The sync's name"), UpdateSyncQuery),
    request_body(content = SyncBody,
        example = json!({"source": "src", "targets": ["dst"], "include": ["app\\..*"]})),
    responses((status = 200, body = Plan), ConfirmBodyProblems))]
async fn update_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<UpdateSyncQuery>, QueryRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Plan>, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    let change = sync_change(body, Some(&name))?;
    let plan = s
        .defs
        .apply_with(change, q.dry_run, q.resnapshot)
        .await
        .map_err(problem)?;
    if q.resnapshot && !q.dry_run {
        let what = format!("sync {name}: re-snapshot after its update");
        let _ = sync_op(
            &s,
            name,
            crate::run::SyncOp::Resnapshot,
            "resnapshot",
            false,
            what,
        )
        .await?;
    }
    Ok(Json(plan))
}

/// `PUT /syncs/{name}`: `?dry_run=true`, `?resnapshot=true`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UpdateSyncQuery {
    /// Check the change (preflight included) and answer with what would change; store nothing.
    #[serde(default)]
    dry_run: bool,
    /// The update may make the filter select tables it did not (refused otherwise, 409: the
    /// sync's snapshot did not copy them): after the update, the sync is re-snapshotted (its
    /// tables' rows replaced on every target, as `POST /syncs/{name}/resnapshot`).
    #[serde(default)]
    resnapshot: bool,
}

/// Delete an API-made sync: its pipelines stop. Needs `?confirm=true` (409 without). The
/// targets' progress rows and the checkpoints are kept (a sync created again under the same
/// name resumes from them).
#[utoipa::path(delete, path = "/api/v1/syncs/{name}", operation_id = "delete_sync", tag = "syncs",
    security(("bearer" = ["syncs:write"])),
    params(("name" = String, Path, description = "The sync's name"), DeleteQuery),
    responses((status = 200, body = Plan), ControlLookupProblems))]
async fn delete_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Plan>, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    if !q.confirm && !q.dry_run {
        // Checked after the lookup, so an unknown name is a 404 either way.
        s.defs
            .apply(Change::DeleteSync(name.clone()), true)
            .await
            .map_err(problem)?;
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "confirm-required",
            format!("deleting sync {name:?} stops its pipelines: add ?confirm=true"),
        )
        .field("confirm"));
    }
    let change = Change::DeleteSync(name);
    Ok(Json(
        s.defs.apply(change, q.dry_run).await.map_err(problem)?,
    ))
}

/// The API-made definitions as TOML (`[[servers]]`, `[[syncs]]`), for the configuration
/// file. Passwords are omitted (a comment marks each server that has one).
#[utoipa::path(get, path = "/api/v1/config/export", operation_id = "export_config", tag = "config",
    security(("bearer" = ["servers:read", "syncs:read"])),
    responses((status = 200, description = "TOML", content_type = "application/toml", body = String), DeniedProblems))]
async fn export_config(State(s): State<ApiState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/toml")],
        s.defs.export_toml(),
    )
        .into_response()
}

/// The answer of `once` and `resnapshot`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OpResult {
    /// The sync (the schedule, for `trigger`).
    sync: String,
    /// `once`, `resnapshot` or `trigger`.
    action: String,
    /// True: nothing was done; `message` says what would be.
    dry_run: bool,
    message: String,
}

/// Sends `op` for `name` to the supervisor of `fleetsync run` and waits for its answer.
async fn sync_op(
    s: &ApiState,
    name: String,
    op: crate::run::SyncOp,
    action: &str,
    dry_run: bool,
    plan: String,
) -> Result<Json<OpResult>, Problem> {
    let config = s.defs.effective();
    if !config.syncs.iter().any(|y| y.name == name) {
        return Err(Problem::not_found(format!("no sync named {name:?}")).field("name"));
    }
    send_op(s, name, op, action, dry_run, plan).await
}

/// Sends `op` to the supervisor of `fleetsync run` (after the lookup) and waits for its answer.
pub(super) async fn send_op(
    s: &ApiState,
    name: String,
    op: crate::run::SyncOp,
    action: &str,
    dry_run: bool,
    plan: String,
) -> Result<Json<OpResult>, Problem> {
    if dry_run {
        return Ok(Json(OpResult {
            sync: name,
            action: action.into(),
            dry_run,
            message: plan,
        }));
    }
    let conflict = |m: String| Problem::new(StatusCode::CONFLICT, "not-possible", m);
    let ops = s.defs.ops().ok_or_else(|| {
        conflict(format!(
            "{action}: only `fleetsync run` runs syncs in-process (with the Kafka bus, use the CLI on the agent's host)"
        ))
    })?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = crate::run::SyncRequest {
        sync: name.clone(),
        op,
        reply,
    };
    ops.send(req)
        .await
        .map_err(|_| conflict("the process is shutting down".into()))?;
    let message = answer
        .await
        .map_err(|_| conflict("the process is shutting down".into()))?
        .map_err(|e| match e {
            crate::run::OpRefused::Conflict(m) => conflict(m),
            crate::run::OpRefused::Failed(m) => Problem::internal(m),
        })?;
    Ok(Json(OpResult {
        sync: name,
        action: action.into(),
        dry_run,
        message,
    }))
}

/// Run a scheduled sync now, to the source's current end (as `fleetsync sync once`; a run in
/// progress finishes first). A continuous sync answers 409.
#[utoipa::path(post, path = "/api/v1/syncs/{name}/once", operation_id = "sync_once", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(("name" = String, Path, description = "The sync's name"), DryRun),
    responses((status = 200, body = OpResult), ControlLookupProblems))]
async fn sync_once(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<OpResult>, Problem> {
    let dry_run = dry(q)?;
    let plan =
        format!("sync {name} would run now to the source's current end (scheduled syncs only)");
    sync_op(&s, name, crate::run::SyncOp::Once, "once", dry_run, plan).await
}

/// Re-snapshot a sync (destructive: `?confirm=true`, 409 without): its pipelines stop, its
/// targets' progress is reset, and it starts again with a new initial snapshot that replaces
/// the rows of its tables on every target (as `fleetsync resnapshot`).
#[utoipa::path(post, path = "/api/v1/syncs/{name}/resnapshot", operation_id = "resnapshot_sync", tag = "syncs",
    security(("bearer" = ["syncs:control"])),
    params(("name" = String, Path, description = "The sync's name"), DeleteQuery),
    responses((status = 200, body = OpResult), ControlLookupProblems))]
async fn resnapshot_sync(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<OpResult>, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    let config = s.defs.effective();
    let sync = config
        .syncs
        .iter()
        .find(|y| y.name == name)
        .ok_or_else(|| Problem::not_found(format!("no sync named {name:?}")).field("name"))?;
    let plan = format!(
        "sync {name}: every table would be reloaded on {} from {} (their rows replaced)",
        sync.targets.join(", "),
        sync.source
    );
    if !q.confirm && !q.dry_run {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "confirm-required",
            format!("{plan}: add ?confirm=true"),
        )
        .field("confirm"));
    }
    sync_op(
        &s,
        name,
        crate::run::SyncOp::Resnapshot,
        "resnapshot",
        q.dry_run,
        plan,
    )
    .await
}
