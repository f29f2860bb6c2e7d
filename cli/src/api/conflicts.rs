//! `/api/v1/conflicts`: the manual conflict queue of every target (list, get with both
//! versions, resolve), through [`crate::service::conflicts`] like `fleetsync conflicts`, and
//! the `conflict` event of `/api/v1/events` ([`spawn_events`]: the open conflicts of every
//! target are polled, as `sync_state` polls the pipelines).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::DryRun;
use super::problem::{from_json_rejection, from_query_rejection, problem_responses, Problem};
use super::ApiState;
use crate::service::conflicts::{self as service, ConflictError, ConflictFilter, Take};

/// How often the targets' open conflicts are compared for `conflict` events.
pub const CONFLICT_EVENTS_EVERY: Duration = Duration::from_secs(2);

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(list_conflicts))
        .routes(routes!(get_conflict))
        .routes(routes!(resolve_conflict))
}

/// A parked conflict (`fleetsync_proto::conflicts::Conflict`).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
struct ConflictDoc {
    /// The server holding it (ids are per target).
    target: String,
    id: u64,
    sync: String,
    schema: String,
    table: String,
    /// The row's key, column → value.
    #[schema(value_type = Object)]
    key: serde_json::Value,
    /// The incoming change's final image (null: the change deleted the row).
    #[schema(value_type = Option<Object>)]
    incoming: serde_json::Value,
    /// The target's row when the change arrived (null: it had none).
    #[schema(value_type = Option<Object>)]
    local: serde_json::Value,
    /// The before image both sides started from: the incoming change's expected row (null:
    /// the change created the row, or `before_recorded` is false).
    #[schema(value_type = Option<Object>)]
    before: serde_json::Value,
    /// False for conflicts parked before fleetsync recorded the before image.
    before_recorded: bool,
    /// The server the incoming change came from.
    origin: String,
    source_position: String,
    detected_at: String,
    /// `open` or `resolved`.
    status: String,
    resolution: Option<String>,
    resolved_at: Option<String>,
}

/// What a resolution did or would do (`fleetsync_proto::conflicts::ConflictResolution`).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
struct ResolutionDoc {
    target: String,
    id: u64,
    /// `incoming`, `local` or `merged`.
    take: String,
    origin: String,
    resolution: String,
    /// The statement run on the target when taking the incoming version or a merged row
    /// (null: keeping the local row writes nothing but the conflict's status).
    statement: Option<String>,
    dry_run: bool,
}

/// Filters of `GET /api/v1/conflicts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConflictQuery {
    /// Only conflicts of this sync.
    sync: Option<String>,
    /// Only this target server.
    target: Option<String>,
    /// Only this table (`schema.table`, or a table name in any schema).
    table: Option<String>,
    /// `open` (default), `resolved` or `all`.
    #[param(inline)]
    status: Option<StatusFilter>,
}

/// Which conflicts a listing shows.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum StatusFilter {
    Open,
    Resolved,
    All,
}

/// The body of a resolution: which version to keep (`take`). Its schema is written by hand
/// (`tagged_body`): the derived one would let each variant carry any other field.
#[derive(Debug, Deserialize)]
#[serde(tag = "take", rename_all = "lowercase", deny_unknown_fields)]
enum ResolveRequest {
    /// Apply the parked incoming version on the target.
    Incoming {},
    /// Keep the target's own row.
    Local {},
    /// Write `row` on the target: column → value as in `incoming` and `local` (every
    /// writable column of the table, the key columns with the conflict's key).
    Merged {
        row: serde_json::Map<String, serde_json::Value>,
    },
}

impl utoipa::PartialSchema for ResolveRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let row = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some(
                "The row to write: column → value as in `incoming` and `local` (every writable \
                 column of the table, the key columns with the conflict's key).",
            ))
            .into();
        super::conflicts_bulk::tagged_body(
            "The body of a resolution: which version to keep.",
            vec![
                (
                    "incoming",
                    "Apply the parked incoming version on the target.",
                    vec![],
                ),
                ("local", "Keep the target's own row.", vec![]),
                ("merged", "Write `row` on the target.", vec![("row", row)]),
            ],
        )
    }
}

impl ToSchema for ResolveRequest {
    fn name() -> std::borrow::Cow<'static, str> {
        "ResolveRequest".into()
    }
}

impl ResolveRequest {
    fn choice(self) -> service::Choice {
        match self {
            ResolveRequest::Incoming {} => service::Choice::Take(Take::Incoming),
            ResolveRequest::Local {} => service::Choice::Take(Take::Local),
            ResolveRequest::Merged { row } => service::Choice::Merged(row),
        }
    }
}

pub(super) fn problem(e: ConflictError) -> Problem {
    let detail = match &e {
        ConflictError::Other(inner) => crate::exit::one_line(inner.as_ref()),
        other => other.to_string(),
    };
    match e {
        ConflictError::UnknownTarget(_) => Problem::not_found(detail).field("target"),
        ConflictError::NotFound { .. } => Problem::not_found(detail).field("id"),
        ConflictError::NotOpen { .. } => {
            Problem::new(StatusCode::CONFLICT, "conflict-not-open", detail)
        }
        ConflictError::Invalid { field, .. } => Problem::bad_request(detail).field(field),
        ConflictError::Unreachable { .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "target-unreachable", detail)
        }
        ConflictError::Other(_) => Problem::new(StatusCode::BAD_GATEWAY, "target-error", detail),
    }
}

problem_answers! {
    /// Reading conflicts (502: a target could not be read).
    ReadProblems: 400, 401, 403, 404, 502;
    /// Resolving a conflict (409: no longer open; 502: the target failed).
    ResolveProblems: 400, 401, 403, 404, 409, 413, 415, 422, 502;
}

/// The conflicts of every target (open ones unless `status` says otherwise), by target then
/// id; at most 1000 per target (the newest). 502 when a target cannot be read.
#[utoipa::path(get, path = "/api/v1/conflicts", operation_id = "list_conflicts", tag = "conflicts",
    security(("bearer" = ["syncs:read"])),
    params(ConflictQuery),
    responses((status = 200, body = Vec<ConflictDoc>), ReadProblems))]
async fn list_conflicts(
    State(s): State<ApiState>,
    q: Result<Query<ConflictQuery>, QueryRejection>,
) -> Result<Json<Vec<fleetsync_proto::conflicts::Conflict>>, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    let filter = ConflictFilter {
        sync: q.sync,
        target: q.target,
        table: q.table,
        status: q.status.map(|s| {
            match s {
                StatusFilter::Open => "open",
                StatusFilter::Resolved => "resolved",
                StatusFilter::All => "all",
            }
            .to_string()
        }),
    };
    let all = service::list(&s.live(), &filter).await.map_err(problem)?;
    Ok(Json(all))
}

/// One conflict with both versions: the incoming change's image and the target's row.
#[utoipa::path(get, path = "/api/v1/conflicts/{target}/{id}", operation_id = "get_conflict", tag = "conflicts",
    security(("bearer" = ["syncs:read"])),
    params(("target" = String, Path, description = "The target server holding it"),
        ("id" = u64, Path, description = "The conflict's id on that target")),
    responses((status = 200, body = ConflictDoc), ReadProblems))]
async fn get_conflict(
    State(s): State<ApiState>,
    Path((target, id)): Path<(String, String)>,
) -> Result<Json<fleetsync_proto::conflicts::Conflict>, Problem> {
    let id = conflict_id(&id)?;
    let c = service::get(&s.live(), &target, id)
        .await
        .map_err(problem)?;
    Ok(Json(c))
}

fn conflict_id(id: &str) -> Result<u64, Problem> {
    id.parse().map_err(|_| {
        Problem::bad_request(format!("id {id:?}: must be a conflict id (a number)")).field("id")
    })
}

/// Resolve an open conflict: `incoming` applies the parked incoming version on the target
/// (it replicates onward like an application write), `local` keeps the target's row, `merged`
/// writes `row` (checked against the target table's columns; the key must stay) in the same
/// transaction as the conflict's status. A dry run checks the same and answers the statement
/// that would run. 409 when the conflict is no longer open.
#[utoipa::path(post, path = "/api/v1/conflicts/{target}/{id}/resolve", operation_id = "resolve_conflict", tag = "conflicts",
    security(("bearer" = ["conflicts:resolve"])),
    params(("target" = String, Path, description = "The target server holding it"),
        ("id" = u64, Path, description = "The conflict's id on that target"), DryRun),
    request_body(content = ResolveRequest, example = json!({"take": "incoming"})),
    responses((status = 200, body = ResolutionDoc), ResolveProblems))]
async fn resolve_conflict(
    State(s): State<ApiState>,
    Path((target, id)): Path<(String, String)>,
    q: Result<Query<DryRun>, QueryRejection>,
    body: Result<Json<ResolveRequest>, JsonRejection>,
) -> Result<Json<fleetsync_proto::conflicts::ConflictResolution>, Problem> {
    let dry_run = q.map_err(from_query_rejection)?.0.dry_run;
    let req = body.map_err(from_json_rejection)?.0;
    let id = conflict_id(&id)?;
    let choice = req.choice();
    let done = service::resolve_choice(&s.live(), &target, id, &choice, dry_run)
        .await
        .map_err(problem)?;
    Ok(Json(done))
}

/// Publishes `conflict` events: every `every`, each target's conflicts newer than the last
/// look and those open at the last look are read; a new one is `{"event": "recorded", ...the
/// conflict}`, one that left the open queue `{"event": "resolved", ...the conflict}` (one
/// recorded and resolved between two looks gets both). The first look is the baseline (no
/// events). A target that cannot be read is retried at the next look; nothing is lost, as the
/// look is by id.
pub fn spawn_events(s: ApiState, every: Duration, cancel: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        // Per target: (highest id seen, ids open at the last look).
        let mut seen: BTreeMap<String, (u64, BTreeSet<u64>)> = BTreeMap::new();
        let mut conns: BTreeMap<String, mysql_async::Conn> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // The targets now (syncs made or deleted over the API change them).
            let config = s.live();
            let targets = service::targets(&config);
            conns.retain(|t, _| targets.contains(t));
            seen.retain(|t, _| targets.contains(t));
            for target in &targets {
                let mut conn = match conns.remove(target) {
                    Some(c) => c,
                    None => match service::connect(&config, target).await {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let Some((max, open)) = seen.get(target).cloned() else {
                    let baseline = async {
                        let max = service::max_id(&mut conn, target).await?;
                        let open =
                            service::query(&mut conn, target, &ConflictFilter::default()).await?;
                        Ok::<_, ConflictError>((max, open.iter().map(|c| c.id).collect()))
                    };
                    if let Ok(b) = baseline.await {
                        seen.insert(target.clone(), b);
                        conns.insert(target.clone(), conn);
                    }
                    continue;
                };
                let Ok(changed) = service::watch(&mut conn, target, max, &open).await else {
                    continue;
                };
                conns.insert(target.clone(), conn);
                let mut now_open = open.clone();
                let mut new_max = max;
                for c in &changed {
                    new_max = new_max.max(c.id);
                    let recorded = c.id > max;
                    let resolved = c.status != "open" && (recorded || open.contains(&c.id));
                    if recorded {
                        publish(&s, "recorded", c);
                    }
                    if resolved {
                        publish(&s, "resolved", c);
                        now_open.remove(&c.id);
                    } else if c.status == "open" {
                        now_open.insert(c.id);
                    }
                }
                seen.insert(target.clone(), (new_max, now_open));
            }
        }
    });
}

fn publish(s: &ApiState, what: &str, c: &fleetsync_proto::conflicts::Conflict) {
    if let Ok(serde_json::Value::Object(mut data)) = serde_json::to_value(c) {
        data.insert("event".into(), what.into());
        s.jobs.publish("conflict", serde_json::Value::Object(data));
    }
}
