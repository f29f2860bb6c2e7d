//! `GET /api/v1/migrations?server=NAME[&database=DB]`: the migration history of a target,
//! what `fleetsync migrate status --json` reports (the rows of `fleetsync.schema_migrations`
//! for the target's scope and whether its schema is still the one the last applied migration
//! left). Reads only; the migrations themselves run as jobs (`migrate-generate|apply|
//! rollback`, see [`super::jobs2`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::server_exists;
use super::problem::{from_query_rejection, problem_responses, Problem};
use super::ApiState;
use crate::service::migrate::NoDatabase;

/// Longest database name MariaDB accepts.
const MAX_DATABASE_NAME: usize = 64;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(list_migrations))
}

/// The target whose history is read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MigrationsQuery {
    /// `[[servers]] name` of the target.
    #[param(example = "dst")]
    server: String,
    /// The database the migrations were applied to (`SERVER/DATABASE` targets); none: the
    /// whole-server migrations (`SERVER` targets).
    #[serde(default)]
    #[param(example = "app", min_length = 1, max_length = 64)]
    database: Option<String>,
}

/// One applied (or attempted) migration (`fleetsync.schema_migrations`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct MigrationRowDoc {
    id: u64,
    /// The database it was applied to (`*`: a whole-server migration).
    scope: String,
    /// The migration's name (a job's: the `migrate_generate` job's id).
    name: String,
    checksum: String,
    before_fingerprint: String,
    after_fingerprint: String,
    /// `running`, `applied`, `failed`, `rolled_back` or `rollback_failed`.
    status: String,
    error: Option<String>,
    applied_at: String,
    rolled_back_at: Option<String>,
}

/// `fleetsync migrate status --json`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct MigrationStatusDoc {
    /// `SERVER` or `SERVER/DATABASE`.
    target: String,
    /// The fingerprint of the target's schema now.
    current_fingerprint: String,
    /// Whether the schema is the one the last applied migration left (null: none applied).
    matches_last_applied: Option<bool>,
    /// Oldest first.
    migrations: Vec<MigrationRowDoc>,
}

/// 400 bad query, 401, 403, 404 unknown server or database, 502 the server cannot be read.
struct MigrationsProblems;

impl utoipa::IntoResponses for MigrationsProblems {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        problem_responses(&[400, 401, 403, 404, 502])
    }
}

/// The migration history of a target (`fleetsync migrate status --json`): every row of
/// `fleetsync.schema_migrations` for the target's scope, oldest first, and whether the
/// schema still is the one the last applied migration left. `migrate-rollback` rolls back the
/// latest `applied` row.
#[utoipa::path(get, path = "/api/v1/migrations", operation_id = "list_migrations", tag = "jobs",
    security(("bearer" = ["migration:read"])),
    params(MigrationsQuery),
    responses((status = 200, body = MigrationStatusDoc), MigrationsProblems))]
async fn list_migrations(
    State(s): State<ApiState>,
    q: Result<Query<MigrationsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = q.map_err(from_query_rejection)?.0;
    server_exists(&s, &q.server, "server")?;
    if let Some(db) = q.database.as_deref() {
        if db.is_empty() || db.chars().count() > MAX_DATABASE_NAME {
            return Err(Problem::bad_request(format!(
                "database {db:?}: expected a database name (1 to {MAX_DATABASE_NAME} characters)"
            ))
            .field("database"));
        }
        // MariaDB's names are utf8mb3 (no NUL, nothing beyond U+FFFF): no such database can
        // exist (and comparing such a name with the catalog is an error on the server).
        if db.chars().any(|c| c == '\0' || u32::from(c) > 0xFFFF) {
            return Err(Problem::not_found(format!(
                "database {db:?} does not exist on server {} (not a valid MariaDB name)",
                q.server
            ))
            .field("database"));
        }
    }
    let target = match &q.database {
        Some(db) => format!("{}/{db}", q.server),
        None => q.server.clone(),
    };
    let config = s.live();
    match crate::service::migrate::status_at(&config, &q.server, q.database.as_deref()).await {
        Ok(st) => Ok(Json(st).into_response()),
        Err(e) if e.downcast_ref::<NoDatabase>().is_some() => {
            Err(Problem::not_found(e.to_string()).field("database"))
        }
        Err(e) => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "server-unreachable",
            format!(
                "cannot read the migration history of {target}: {}",
                crate::exit::one_line(e.as_ref())
            ),
        )),
    }
}
