//! RFC 9457 problem details (`application/problem+json`): every 4xx/5xx of `/api/v1`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Base of the `type` URIs: names, not links (no site documents them yet; the README's "API"
/// section lists the cases).
const TYPE_BASE: &str = "urn:fleetsync:problem:";

/// A problem (RFC 9457).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem (`urn:fleetsync:problem:not-found`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending field or parameter, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{TYPE_BASE}{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = vec![(header::CONTENT_TYPE, "application/problem+json")];
        if status == StatusCode::UNAUTHORIZED {
            headers.push((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        for (k, v) in headers {
            resp.headers_mut()
                .insert(k, axum::http::HeaderValue::from_static(v));
        }
        resp
    }
}

/// Turns axum's own rejections (bad JSON, wrong types, a body over the limit, a bad query)
/// into problems naming what was wrong.
pub fn from_json_rejection(r: axum::extract::rejection::JsonRejection) -> Problem {
    let status = r.status();
    let slug = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body-too-large"
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "unsupported-media-type"
    } else {
        "invalid-body"
    };
    let detail = r.body_text();
    let field = field_of(&detail);
    let mut p = Problem::new(status, slug, detail);
    p.field = field;
    p
}

pub fn from_query_rejection(r: axum::extract::rejection::QueryRejection) -> Problem {
    let detail = r.body_text();
    let field = field_of(&detail);
    let mut p = Problem::new(StatusCode::BAD_REQUEST, "invalid-query", detail);
    p.field = field;
    p
}

/// The field serde names in a message such as "unknown field `x`" or "missing field `x`", or
/// the path prefix "syncs[0]: invalid type…".
fn field_of(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    let after = ["target type: ", "query string: "]
        .iter()
        .find_map(|prefix| detail.split_once(prefix).map(|(_, rest)| rest))
        .unwrap_or(detail);
    let (path, _) = after.split_once(": ")?;
    (!path.contains(' ') && !path.is_empty()).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_from_serde_messages() {
        assert_eq!(
            super::field_of("Failed to deserialize the JSON body into the target type: unknown field `sync`, expected `syncs` at line 1 column 7").as_deref(),
            Some("sync")
        );
        assert_eq!(
            super::field_of("Failed to deserialize the JSON body into the target type: syncs[0]: invalid type: integer `1`, expected a string at line 1 column 11").as_deref(),
            Some("syncs[0]")
        );
        assert_eq!(
            super::field_of("Failed to deserialize query string: dry_run: provided string was not `true` or `false`").as_deref(),
            Some("dry_run")
        );
    }
}

/// Declares a type listing the problem answers (`application/problem+json`, body
/// [`Problem`]) that routes share, for their `responses(...)` in the OpenAPI document.
macro_rules! problem_answers {
    ($($(#[$doc:meta])* $name:ident: $($code:literal),+;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                problem_responses(&[$($code),+])
            }
        }
    )+};
}

pub(super) fn problem_responses(
    codes: &[u16],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    codes
        .iter()
        .map(|&code| {
            let reason = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Problem");
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(reason)
                .content("application/problem+json", content)
                .build();
            (code.to_string(), response.into())
        })
        .collect()
}

problem_answers! {
    /// A route that only needs a token.
    AuthProblems: 401;
    /// Reading one named resource.
    LookupProblems: 401, 404;
    /// A route that needs a permission.
    DeniedProblems: 401, 403;
    /// Reading one named resource that needs a permission.
    DeniedLookupProblems: 401, 403, 404;
    /// A control action without a body.
    ControlProblems: 400, 401, 403;
    /// A control action on a named resource.
    ControlLookupProblems: 400, 401, 403, 404, 409;
    /// A call with a JSON body.
    BodyProblems: 400, 401, 403, 404, 413, 415, 422;
    /// A call with a JSON body whose destructive form needs `"confirm": true`.
    ConfirmBodyProblems: 400, 401, 403, 404, 409, 413, 415, 422;
    /// Downloading a named file (a bad name is 400, an unknown one 404).
    DownloadProblems: 400, 401, 403, 404;
}
