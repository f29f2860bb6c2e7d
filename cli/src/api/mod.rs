//! The control-plane REST API: `/api/v1` on `[api] listen` (HTTP, or HTTPS with `[api]
//! tls_cert`/`tls_key`), served by `fleetsync run` and `fleetsync coordinator`.
//!
//! * Routes are registered through utoipa-axum ([`routes::router`]), so each one is in the
//!   OpenAPI 3.1 document (`GET /api/v1/openapi.json`) by construction.
//! * Every route needs a bearer token ([`tokens`]). The permission a route needs is its
//!   security requirement's scope in that document; [`auth::guard`] reads it from there
//!   ([`auth::RouteTable`]), so what is documented is what is enforced. A route without a
//!   security requirement is refused to everyone (fail closed).
//! * Every mutating call and every denied call is audited ([`audit`]).
//! * With no active token, the listener must be a loopback address (checked at start).

mod approvals;
pub mod audit;
mod auth;
mod backup_settings;
mod backups;
pub mod dash;
mod defs;
pub use auth::{route_permissions, METRIC_API_REQUESTS, METRIC_API_SECONDS};
pub mod client;
mod jobs;
mod jobs2;
mod jobs_vmigrate;
pub mod kstate;
mod migrations;
#[macro_use]
pub mod problem;
pub mod roles;
mod routes;
mod schedules;
pub mod tls;
pub mod tokens;
// After `problem`, whose `problem_answers!` they use.
mod conflicts;
mod conflicts_bulk;
mod overview;
mod summary;
mod syncs_dash;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use fleetsync_config::{ApiConfig, Config};
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::control::Controls;
use crate::pipeline::Registry;

/// Largest request body: the API's bodies are small JSON documents (a list of sync names).
pub const BODY_LIMIT: usize = 64 * 1024;

/// How often the pipelines' states are compared for `sync_state` events.
const SYNC_EVENTS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the handlers share.
pub struct Inner {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub controls: Controls,
    pub tokens: tokens::TokenCache,
    pub audit: audit::AuditLog,
    pub routes: auth::RouteTable,
    pub openapi_json: String,
    pub throughput: routes::Throughput,
    /// The chart feed of `/metrics/summary`, filled by the throughput sampler.
    pub history: summary::History,
    pub jobs: Arc<crate::jobs::JobManager>,
    /// The definition store and the effective configuration (file + API definitions).
    pub defs: Arc<crate::defs::Defs>,
}

pub type ApiState = Arc<Inner>;

impl Inner {
    /// The effective configuration now: the file's definitions and those made over the API
    /// since the start (`config` is the start-up one, for `[api]` and `state_dir`).
    pub fn live(&self) -> Arc<Config> {
        self.defs.effective()
    }
}

/// The routes of approvals, conflicts and the metrics summary (one call at the end of
/// [`routes::router`]).
fn gov_routes(
    r: utoipa_axum::router::OpenApiRouter<ApiState>,
) -> utoipa_axum::router::OpenApiRouter<ApiState> {
    summary::routes(conflicts::routes(approvals::routes(r)))
}

/// Checks `[api]` against the token store without changing anything (call it before a
/// command writes anything): the listen address (non-loopback only with an active token), the
/// TLS files, the secret key file. Returns the TLS configuration, if any.
pub fn check(config: &Config, api: &ApiConfig) -> Result<Option<Arc<ServerConfig>>> {
    check_with(api, &tokens::TokenCache::new(&config.state_dir))
}

/// [`check`] against the token store `tokens` (the Kafka one of `fleetsync coordinator`).
pub fn check_with(
    api: &ApiConfig,
    tokens: &tokens::TokenCache,
) -> Result<Option<Arc<ServerConfig>>> {
    let addr = api.addr()?;
    if !tokens.any_active() && !addr.ip().is_loopback() {
        return Err(anyhow!(
            "api.listen {addr}: no API token exists, so the API may only listen on a loopback address (create one with `fleetsync token create`, or listen on 127.0.0.1)"
        ));
    }
    if let Some(file) = &api.secret_key_file {
        std::fs::metadata(file)
            .with_context(|| format!("api.secret_key_file: cannot read {}", file.display()))?;
    }
    match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::server_config(cert, key)?)),
        _ => Ok(None),
    }
}

/// [`check`]s `[api]` and binds the listener; serves until cancelled. `kafka`: the tokens and
/// the audit log are on the Kafka bus ([`kstate`]), else under `state_dir`.
/// Returns the bound address.
pub async fn serve(
    config: Arc<Config>,
    api: &ApiConfig,
    registry: Registry,
    controls: Controls,
    defs: Arc<crate::defs::Defs>,
    kafka: Option<Arc<kstate::KafkaState>>,
    cancel: CancellationToken,
) -> Result<SocketAddr> {
    let addr = api.addr()?;
    let (tokens, audit) = match &kafka {
        Some(k) => (
            tokens::TokenCache::kafka(k.clone()),
            audit::AuditLog::kafka(k.clone()),
        ),
        None => (
            tokens::TokenCache::new(&config.state_dir),
            audit::AuditLog::open(&config.state_dir)?,
        ),
    };
    let tls = check_with(api, &tokens)?;
    let jobs = crate::jobs::JobManager::open(config.clone())?;
    jobs.follow(defs.clone());
    if let Some(k) = kafka {
        jobs.share(k);
    }
    let (router, openapi) = routes::router().split_for_parts();
    let routes = auth::RouteTable::from_openapi(&openapi)?;
    let openapi_json = openapi
        .to_json()
        .context("rendering the OpenAPI document")?;
    let state: ApiState = Arc::new(Inner {
        config,
        registry,
        controls,
        tokens,
        audit,
        routes,
        openapi_json,
        throughput: routes::Throughput::default(),
        history: summary::History::default(),
        jobs,
        defs,
    });
    routes::spawn_throughput(state.clone(), cancel.clone());
    jobs::spawn_sync_events(state.clone(), SYNC_EVENTS_EVERY, cancel.clone());
    conflicts::spawn_events(
        state.clone(),
        conflicts::CONFLICT_EVENTS_EVERY,
        cancel.clone(),
    );
    summary::spawn_health_events(state.clone(), summary::HEALTH_EVENTS_EVERY, cancel.clone());
    {
        let (jobs, cancel) = (state.jobs.clone(), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            jobs.cancel_all();
        });
    }
    let app = auth::wrap(router, state.clone()).merge(dash::assets());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("api.listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if state.tokens.any_active() {
        tracing::info!(api = %format!("{scheme}://{bound}/api/v1"), "API listening");
    } else {
        tracing::warn!(api = %format!("{scheme}://{bound}/api/v1"), "API listening on loopback only: no API token exists yet, every call answers 401 until `fleetsync token create`");
    }
    match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls, cancel.clone());
            tokio::spawn(async move {
                let make = app.into_make_service_with_connect_info::<tls::ClientAddr>();
                let served = axum::serve(listener, make)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "API listener failed");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                let make = app.into_make_service_with_connect_info::<tls::ClientAddr>();
                let served = axum::serve(listener, make)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "API listener failed");
                }
            });
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is documented with an operationId and a permission the role table knows.
    #[test]
    fn every_route_declares_a_permission() {
        let (_, openapi) = routes::router().split_for_parts();
        let table = auth::RouteTable::from_openapi(&openapi).expect("route table");
        let doc = serde_json::to_value(&openapi).expect("json");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.keys().all(|p| p.starts_with("/api/v1/")));
        assert!(table.len() >= 11, "{} routes", table.len());
    }

    /// Every operation answers 401 with a problem (the shared answer lists), and the
    /// `Problem` schema they refer to is in the document.
    #[test]
    fn every_route_answers_problems() {
        let (_, openapi) = routes::router().split_for_parts();
        let doc = serde_json::to_value(&openapi).expect("json");
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                operations += 1;
                let answer = &op["responses"]["401"]["content"]["application/problem+json"];
                assert_eq!(
                    answer["schema"]["$ref"].as_str(),
                    Some("#/components/schemas/Problem"),
                    "{method} {path}: {}",
                    op["responses"]
                );
            }
        }
        assert!(operations >= 11, "{operations} operations");
    }
}
