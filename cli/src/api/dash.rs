//! The web dashboard (docs/dashboard.md): its static assets at `/` on `[api] listen`, and
//! `GET /api/v1/whoami`, from which the dashboard learns what the token's role may do.
//!
//! The assets (`web/dist`, embedded by `cli/build.rs`) hold no data and need no token; every
//! data call of the dashboard goes through `/api/v1` with the token the user entered. Without
//! a built `web/dist`, `/` answers a placeholder page saying how to build it.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::AuthProblems;
use super::roles::Role;
use super::tokens::TokenRecord;
use super::ApiState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));
}

/// Served at `/` when the binary was built without `web/dist`.
const PLACEHOLDER: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fleetsync</title></head><body><h1>fleetsync</h1><p>This binary was built without the dashboard. Build it with <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then <code>cargo build</code> again. The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p></body></html>";

/// What every dashboard answer carries: no framing by other sites, no sniffing, scripts and
/// data calls only from this origin (the assets need no CDN).
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The caller's token: its name, role and permissions.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WhoAmI {
    /// The token's name (never the token).
    name: String,
    role: Role,
    /// Every permission of the role (the scopes of the OpenAPI document's `bearer`).
    permissions: Vec<String>,
}

/// The caller's token name, role and permissions (what a user interface may offer).
#[utoipa::path(get, path = "/api/v1/whoami", operation_id = "whoami", tag = "meta",
    security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), AuthProblems))]
async fn whoami(Extension(token): Extension<TokenRecord>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: token.name.clone(),
        role: token.role,
        permissions: token
            .role
            .permissions()
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
    })
}

/// The dashboard's documented routes (one call at the end of `routes::router`).
pub(super) fn routes(r: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    r.routes(routes!(whoami))
}

/// The dashboard's assets: `/` (its page) and `/assets/...` (Vite's hashed files), outside
/// `/api` and without a token.
pub fn assets() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*file}", get(asset))
}

async fn index() -> Response {
    match find("index.html") {
        Some(bytes) => answer(bytes, "text/html; charset=utf-8", "no-cache"),
        None => answer(
            PLACEHOLDER.as_bytes(),
            "text/html; charset=utf-8",
            "no-cache",
        ),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match find(&format!("assets/{file}")) {
        // Vite names assets by their content hash: they never change under one name.
        Some(bytes) => answer(
            bytes,
            content_type(&file),
            "public, max-age=31536000, immutable",
        ),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// An asset: embedded, or read from `$FLEETSYNC_WEB_DIR` when a developer set it (a built
/// `web/dist` served from disk, so a UI change needs `npm run build` but no new binary; the
/// tests and releases serve the embedded copy).
fn find(path: &str) -> Option<Cow<'static, [u8]>> {
    if let Some(dir) = std::env::var_os("FLEETSYNC_WEB_DIR") {
        // Only plain names below the directory: no `..`, no absolute path.
        let safe = std::path::Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        return safe
            .then(|| std::fs::read(std::path::Path::new(&dir).join(path)).ok())
            .flatten()
            .map(Cow::Owned);
    }
    embedded::ASSETS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, bytes)| Cow::Borrowed(*bytes))
}

/// True when this binary embeds a built dashboard (not the placeholder).
pub fn built() -> bool {
    find("index.html").is_some()
}

fn answer(
    bytes: impl Into<Cow<'static, [u8]>>,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let bytes: Cow<'static, [u8]> = bytes.into();
    let mut resp = Response::new(match bytes {
        Cow::Borrowed(b) => Body::from(b),
        Cow::Owned(v) => Body::from(v),
    });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The OpenAPI document as `GET /api/v1/openapi.json` serves it, without a server
/// (`fleetsync api openapi`: the dashboard's typed client is generated from it).
pub fn openapi_document() -> anyhow::Result<String> {
    let (_, openapi) = super::routes::router().split_for_parts();
    Ok(openapi.to_pretty_json()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_is_documented_for_any_token() {
        let doc: serde_json::Value =
            serde_json::from_str(&openapi_document().expect("document")).expect("json");
        let op = &doc["paths"]["/api/v1/whoami"]["get"];
        assert_eq!(op["operationId"], "whoami");
        assert_eq!(op["security"][0]["bearer"], serde_json::json!([]));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
