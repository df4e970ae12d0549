//! Building responses: bodies with their @context (in the body for JSON-LD, in a `Link` header
//! for JSON and GeoJSON, §6.3.6), ProblemDetails errors.

use crate::request::{Accept, RequestContext};
use axum::response::{IntoResponse, Response};
use hanbat_model::NgsiError;
use http::header::{CONTENT_TYPE, LINK, LOCATION};
use http::{HeaderValue, StatusCode};
use serde_json::Value;

/// Any error of a handler, rendered as ProblemDetails.
#[derive(Debug)]
pub struct ApiError(pub NgsiError);

impl From<NgsiError> for ApiError {
    fn from(e: NgsiError) -> Self {
        Self(e)
    }
}

pub type ApiResult<T = Response> = std::result::Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(detail = %self.0.detail, "request failed");
        }
        let body = self.0.to_problem_details().to_string();
        (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }
}

pub fn link_header(url: &str) -> HeaderValue {
    let text = format!(r#"<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json""#);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A JSON response in the negotiated media type (§6.3.6). JSON-LD carries the request's
/// `@context` in each top-level object; GeoJSON carries it in the top-level object too, unless
/// the client sent `Prefer: body=json` (`context_in_link`); otherwise the context goes in a
/// `Link` header.
pub fn body(
    rc: &RequestContext,
    accept: Accept,
    status: StatusCode,
    mut body: Value,
    context_in_link: bool,
) -> Response {
    let in_body = match accept {
        Accept::JsonLd => true,
        Accept::GeoJson => !context_in_link,
        Accept::Json => false,
    };
    if in_body {
        match &mut body {
            Value::Object(o) => insert_context(o, &rc.value),
            Value::Array(items) => {
                items.iter_mut().filter_map(Value::as_object_mut).for_each(|o| insert_context(o, &rc.value))
            }
            _ => {}
        }
    }
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(accept.media_type()));
    if !in_body {
        headers.insert(LINK, link_header(&rc.link_url));
    }
    response
}

fn insert_context(object: &mut serde_json::Map<String, Value>, context: &Value) {
    // @context goes first, where JSON-LD readers expect it.
    let mut with = serde_json::Map::with_capacity(object.len() + 1);
    with.insert("@context".into(), context.clone());
    with.append(object);
    *object = with;
}

/// A body-less response (`204`), with the tenant header echoed when the request named one.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `201 Created` with a `Location`.
pub fn created(location: &str) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

/// A JSON body with no @context handling (batch results, ProblemDetails-like documents).
pub fn plain_json(status: StatusCode, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}
