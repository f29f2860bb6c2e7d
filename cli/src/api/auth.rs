//! Authentication, authorisation and auditing of every `/api/v1` call: one middleware
//! ([`guard`]) around every documented route, and a fallback for the rest.
//!
//! Order of checks: the token (401 when missing, unknown, expired or revoked), then the
//! route's permission for the token's role (403). Both refusals are audited. Allowed calls that
//! may change something (any method but GET/HEAD) are audited after the handler ran, with its
//! outcome; their body is read here first (bounded by [`super::BODY_LIMIT`]) so that its
//! parameters can be recorded, secrets redacted.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use anyhow::{anyhow, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use super::audit::{redact, AuditEntry};
use super::problem::Problem;
use super::roles::Permission;
use super::tls::ClientAddr;
use super::ApiState;

/// API calls answered by a documented route, per operation and HTTP status (refusals too).
pub const METRIC_API_REQUESTS: &str = "fleetsync_api_requests_total";
/// Time to answer an API call, per operation.
pub const METRIC_API_SECONDS: &str = "fleetsync_api_request_seconds";

/// The security scheme every route names in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "bearer";

/// Set on a response by a handler that started or cancelled a job: its id goes into the
/// audit entry.
#[derive(Debug, Clone)]
pub struct JobId(pub String);

/// Set on a response by a handler whose audit entry needs more than the request (e.g. an
/// approval: the job's creator next to the approving token): merged into the entry's
/// `parameters` under `"detail"`.
#[derive(Debug, Clone)]
pub struct AuditDetail(pub Value);

tokio::task_local! {
    /// The permissions of the route being served, for code that a handler calls (the job
    /// manager keys approvals on them).
    static ROUTE_PERMISSIONS: Vec<Permission>;
}

/// The permissions the route being served needs (empty outside a route's handler).
pub fn route_permissions() -> Vec<Permission> {
    ROUTE_PERMISSIONS.try_with(Clone::clone).unwrap_or_default()
}

/// What a documented route needs.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub operation_id: String,
    /// All of these (none: any valid token).
    pub permissions: Vec<Permission>,
}

/// (method, path template) → what the route needs, read from the OpenAPI document.
#[derive(Debug, Default)]
pub struct RouteTable(HashMap<(String, String), RouteInfo>);

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

impl RouteTable {
    /// Every operation of `openapi` must name its operationId and a `bearer` security
    /// requirement whose scopes are permissions: a route that does not is an error at start.
    pub fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> Result<RouteTable> {
        let doc = serde_json::to_value(openapi)?;
        let mut table = HashMap::new();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let id = op["operationId"]
                    .as_str()
                    .ok_or_else(|| anyhow!("API route {method} {path} has no operationId"))?;
                let scopes = op["security"]
                    .as_array()
                    .and_then(|reqs| reqs.iter().find_map(|r| r.get(SECURITY_SCHEME)))
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        anyhow!("API route {method} {path} has no `{SECURITY_SCHEME}` security requirement")
                    })?;
                let permissions = scopes
                    .iter()
                    .map(|s| {
                        s.as_str().and_then(Permission::parse).ok_or_else(|| {
                            anyhow!("API route {method} {path}: unknown permission {s}")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                table.insert(
                    (method.to_ascii_uppercase(), path.clone()),
                    RouteInfo {
                        operation_id: id.to_string(),
                        permissions,
                    },
                );
            }
        }
        Ok(RouteTable(table))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, method: &Method, path: &str) -> Option<&RouteInfo> {
        self.0.get(&(method.as_str().to_string(), path.to_string()))
    }
}

/// `router` with the guard on every route, problem+json fallbacks, and the state.
pub fn wrap(router: Router<ApiState>, state: ApiState) -> Router {
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(super::BODY_LIMIT))
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn entry(client: SocketAddr, req: &Request, action: &str) -> AuditEntry {
    let query = Query::<BTreeMap<String, String>>::try_from_uri(req.uri())
        .map(|q| serde_json::to_value(q.0).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    AuditEntry {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        token: None,
        role: None,
        client: client.to_string(),
        method: req.method().to_string(),
        action: action.to_string(),
        resource: req.uri().path().to_string(),
        parameters: redact(serde_json::json!({ "query": query })),
        outcome: String::new(),
        status: 0,
        job_id: None,
    }
}

/// Appends `entry` to the audit log off the async threads (the file is flushed to disk per
/// entry); the answer leaves after it is written. A failure to write is logged.
async fn record(state: &ApiState, entry: AuditEntry) {
    let state = state.clone();
    let written = tokio::task::spawn_blocking(move || state.audit.record(&entry)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
        Err(e) => tracing::error!(error = %e, "audit log writer failed"),
    }
}

/// Records `entry` with `problem`'s status, then answers with the problem.
async fn refuse(
    state: &ApiState,
    mut entry: AuditEntry,
    outcome: &str,
    problem: Problem,
) -> Response {
    entry.outcome = outcome.to_string();
    entry.status = problem.status;
    record(state, entry).await;
    problem.into_response()
}

/// [`checked`], counted and timed per operation (operationIds: a bounded label set).
pub async fn guard(
    State(state): State<ApiState>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let route = state.routes.get(req.method(), &template).cloned();
    let operation = route
        .as_ref()
        .map_or_else(|| "undocumented".to_string(), |r| r.operation_id.clone());
    // The audit's action: the operationId, or the route template if undocumented.
    let action = route.as_ref().map_or(template, |r| r.operation_id.clone());
    let resp = checked(state, client, route, &action, req, next).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(METRIC_API_REQUESTS, "operation" => operation.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(METRIC_API_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Token, then permission (both refusals audited), then the handler (audited when the
/// method may change something).
async fn checked(
    state: ApiState,
    client: SocketAddr,
    route: Option<RouteInfo>,
    action: &str,
    mut req: Request,
    next: Next,
) -> Response {
    let mut audit = entry(client, &req, action);
    let token = match state.tokens.check(bearer(req.headers())) {
        Ok(t) => t,
        Err(rejection) => {
            return refuse(
                &state,
                audit,
                "unauthenticated",
                Problem::unauthorized(rejection.detail()),
            )
            .await
        }
    };
    audit.token = Some(token.name.clone());
    audit.role = Some(token.role.as_str().to_string());
    let Some(route) = route else {
        // Not in the document: cannot happen for routes added through `routes::router`.
        return refuse(
            &state,
            audit,
            "denied",
            Problem::forbidden("this route declares no permission"),
        )
        .await;
    };
    if let Some(p) = route.permissions.iter().find(|p| !token.role.allows(**p)) {
        let detail = format!(
            "role {} lacks the permission {} that {} needs",
            token.role.as_str(),
            p.as_str(),
            route.operation_id
        );
        return refuse(&state, audit, "denied", Problem::forbidden(detail)).await;
    }
    // The handlers learn who calls (a job's `created_by`).
    req.extensions_mut().insert(token.clone());
    let permissions = route.permissions.clone();
    if !is_mutating(req.method()) {
        return ROUTE_PERMISSIONS.scope(permissions, next.run(req)).await;
    }
    let dry_run = audit.parameters["query"]["dry_run"].as_str() == Some("true");
    let (parts, body) = req.into_parts();
    let limit = super::jobs2::body_limit(&route.operation_id);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let p = Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the request body is over {limit} bytes"),
            );
            return refuse(&state, audit, "failed", p).await;
        }
    };
    if !bytes.is_empty() {
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(format!("({} bytes, not JSON)", bytes.len())));
        audit.parameters["body"] = redact(body);
    }
    let resp = ROUTE_PERMISSIONS
        .scope(
            permissions,
            next.run(Request::from_parts(parts, Body::from(bytes))),
        )
        .await;
    let status = resp.status();
    audit.status = status.as_u16();
    audit.job_id = resp.extensions().get::<JobId>().map(|j| j.0.clone());
    if let Some(detail) = resp.extensions().get::<AuditDetail>() {
        audit.parameters["detail"] = redact(detail.0.clone());
    }
    audit.outcome = match (status.is_success(), dry_run) {
        (true, true) => "dry_run",
        (true, false) => "ok",
        // A handler's own refusal (e.g. approving one's own job) is a denial too.
        _ if status == StatusCode::FORBIDDEN => "denied",
        _ => "failed",
    }
    .to_string();
    record(&state, audit).await;
    resp
}

/// Unknown routes: under `/api`, a token is needed even to learn that a route does not exist.
async fn fallback(
    State(state): State<ApiState>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/api") {
        if let Err(rejection) = state.tokens.check(bearer(req.headers())) {
            let audit = entry(client, &req, &path);
            return refuse(
                &state,
                audit,
                "unauthenticated",
                Problem::unauthorized(rejection.detail()),
            )
            .await;
        }
    }
    Problem::not_found(format!("no route {path} (see /api/v1/openapi.json)")).into_response()
}

/// A known route with another method: like [`fallback`], the token comes first.
async fn method_not_allowed(
    State(state): State<ApiState>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    req: Request,
) -> Response {
    if let Err(rejection) = state.tokens.check(bearer(req.headers())) {
        let path = req.uri().path().to_string();
        let audit = entry(client, &req, &path);
        return refuse(
            &state,
            audit,
            "unauthenticated",
            Problem::unauthorized(rejection.detail()),
        )
        .await;
    }
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}
