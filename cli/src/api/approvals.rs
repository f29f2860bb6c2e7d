//! `POST /api/v1/jobs/{id}/approve` and `/reject`: the second person of `[api]
//! require_approval` (the waiting itself is the job manager's, [`crate::jobs`]).
//!
//! * The routes declare no permission of their own (any valid token may call them): the
//!   permission needed is the job's (`approval.permission`, the permission of the route that
//!   started it), checked here against the caller's role, 403 when it lacks it.
//! * Approving needs another token than the one that started the job (a different token
//!   name): the creator approving its own job gets 403, audited as denied. Rejecting is open to
//!   the creator too (withdrawing a request), and ends the job `cancelled` without running.
//! * Both are audited by the auth layer with the job id, and with the creator's token name
//!   next to the caller's (the entry's `parameters.detail`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::DryRun;
use super::problem::{from_query_rejection, ControlLookupProblems, Problem};
use super::roles::Permission;
use super::tokens::TokenRecord;
use super::ApiState;
use crate::jobs::ApprovalError;

pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(approve_job)).routes(routes!(reject_job))
}

/// The answer of an approval or a rejection.
#[derive(Serialize, ToSchema)]
struct Decision {
    id: String,
    /// `approve` or `reject`.
    decision: String,
    /// The job's state after the call (`queued` once approved, `cancelled` once rejected);
    /// for a dry run, its state now.
    state: String,
    /// The permission the job needs its approver to hold (null: the job needs no approval).
    permission: Option<String>,
    /// The token that started the job.
    created_by: String,
    /// The calling token.
    by: String,
    /// For a dry run: whether the call would be accepted now, and if not why.
    allowed: bool,
    reason: Option<String>,
    dry_run: bool,
}

/// Approve a job awaiting approval (`[api] require_approval`): it is queued and runs. Needs
/// a token other than the one that started it, holding the permission of the route that
/// started it (403 otherwise); 409 when the job is not awaiting approval.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/approve", operation_id = "approve_job", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id"), DryRun),
    responses((status = 200, body = Decision), ControlLookupProblems))]
async fn approve_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    Path(id): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Response, Problem> {
    decide(&s, token, id, q, true).await
}

/// Reject a job awaiting approval: it ends `cancelled` and never runs. Needs the permission
/// of the route that started it (its creator may withdraw it); 409 when the job is not
/// awaiting approval.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/reject", operation_id = "reject_job", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id"), DryRun),
    responses((status = 200, body = Decision), ControlLookupProblems))]
async fn reject_job(
    State(s): State<ApiState>,
    token: Option<Extension<TokenRecord>>,
    Path(id): Path<String>,
    q: Result<Query<DryRun>, QueryRejection>,
) -> Result<Response, Problem> {
    decide(&s, token, id, q, false).await
}

fn refusal(e: ApprovalError, id: &str) -> Problem {
    match e {
        ApprovalError::NoJob => Problem::not_found(format!("no job {id:?}")).field("id"),
        ApprovalError::NotAwaiting { .. } => {
            Problem::new(StatusCode::CONFLICT, "not-awaiting-approval", e.to_string())
        }
        ApprovalError::OwnJob { .. } => Problem::forbidden(e.to_string()),
    }
}

async fn decide(
    s: &ApiState,
    token: Option<Extension<TokenRecord>>,
    id: String,
    q: Result<Query<DryRun>, QueryRejection>,
    approve: bool,
) -> Result<Response, Problem> {
    let dry_run = q.map_err(from_query_rejection)?.0.dry_run;
    let token = token
        .map(|t| t.0)
        .ok_or_else(|| Problem::unauthorized("no token"))?;
    let job = s
        .jobs
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no job {id:?}")).field("id"))?;
    let permission = job.approval.as_ref().map(|a| a.permission.clone());
    // The job's permission, held by the caller's role.
    let role_check = match permission.as_deref().map(|p| (p, Permission::parse(p))) {
        Some((_, Some(p))) if token.role.allows(p) => Ok(()),
        Some((p, _)) => Err(Problem::forbidden(format!(
            "role {} lacks the permission {p} that job {id} needs its approver to hold",
            token.role.as_str()
        ))),
        None => Ok(()),
    };
    let check = role_check.and_then(|()| {
        s.jobs
            .check_decision(&id, &token.name, approve)
            .map(|_| ())
            .map_err(|e| refusal(e, &id))
    });
    let decision = if approve { "approve" } else { "reject" };
    let answer = |state: &str, allowed: bool, reason: Option<String>| Decision {
        id: id.clone(),
        decision: decision.to_string(),
        state: state.to_string(),
        permission: permission.clone(),
        created_by: job.created_by.clone(),
        by: token.name.clone(),
        allowed,
        reason,
        dry_run,
    };
    if dry_run {
        let (allowed, reason) = match &check {
            Ok(()) => (true, None),
            Err(p) => (false, Some(p.detail.clone())),
        };
        return Ok(Json(answer(job.state.as_str(), allowed, reason)).into_response());
    }
    let detail = serde_json::json!({
        "decision": decision,
        "created_by": job.created_by,
        "by": token.name,
        "permission": permission,
    });
    let result = match check {
        Err(p) => Err(p),
        // Another replica runs it (Kafka bus): the decision goes to it, which checks it again.
        Ok(()) if s.jobs.elsewhere(&id).is_some() => {
            let action = if approve {
                super::kstate::Action::Approve
            } else {
                super::kstate::Action::Reject
            };
            s.jobs
                .forward(&id, action, &token.name, true)
                .await
                .map_err(|e| {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "replica-unreachable",
                        format!("job {id}: {e}"),
                    )
                })
        }
        Ok(()) => {
            let decided = if approve {
                s.jobs.approve(&id, &token.name)
            } else {
                s.jobs.reject(&id, &token.name)
            };
            decided.map_err(|e| refusal(e, &id))
        }
    };
    let mut resp = match result {
        Ok(after) => Json(answer(after.state.as_str(), true, None)).into_response(),
        Err(p) => p.into_response(),
    };
    resp.extensions_mut().insert(super::auth::JobId(id.clone()));
    resp.extensions_mut()
        .insert(super::auth::AuditDetail(detail));
    Ok(resp)
}
