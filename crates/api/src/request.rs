//! What every NGSI-LD request carries besides its path: tenant, query parameters, the @context
//! (Link header or JSON-LD body, §6.3.5), the media type it sends and the one it accepts (§6.3.4,
//! §6.3.6).

use crate::AppState;
use crate::params::Params;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use hanbat_context::context_from_link;
use hanbat_model::jsonld::{self, CORE_CONTEXT_URL};
use hanbat_model::{Context, ErrorKind, NgsiError, Result};
use http::header::{ACCEPT, CONTENT_TYPE, LINK};
use http::{HeaderMap, Method};
use serde_json::Value;
use std::sync::Arc;

/// The tenant header of §6.3.14.
pub const TENANT_HEADER: &str = "NGSILD-Tenant";

/// A response media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    JsonLd,
    GeoJson,
}

impl Accept {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLd => "application/ld+json",
            Self::GeoJson => "application/geo+json",
        }
    }
}

/// A request body's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    JsonLd,
    MergePatch,
}

/// The @context that applies to a request, and how to refer to it in the response.
#[derive(Clone)]
pub struct RequestContext {
    pub ctx: Arc<Context>,
    /// The `@context` member for JSON-LD responses: what the request used.
    pub value: Value,
    /// The URL for the `Link` header of JSON responses.
    pub link_url: String,
}

impl RequestContext {
    pub fn core() -> Self {
        Self {
            ctx: jsonld::core_context(),
            value: Value::String(CORE_CONTEXT_URL.into()),
            link_url: CORE_CONTEXT_URL.into(),
        }
    }
}

/// An NGSI-LD request, as extracted before any handler runs.
#[derive(Clone)]
pub struct Ngsi {
    pub method: Method,
    pub tenant: String,
    pub tenant_given: bool,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FromRequest<AppState> for Ngsi {
    type Rejection = crate::response::ApiError;

    async fn from_request(req: Request, state: &AppState) -> std::result::Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let headers = req.headers().clone();
        let scoped = req.extensions().get::<crate::snapshots::ScopedTenant>().cloned();
        let params = Params::parse(req.uri().query().unwrap_or(""))?;
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                NgsiError::new(
                    ErrorKind::PayloadTooLarge,
                    format!("the body exceeds the limit of {} bytes", state.max_body),
                )
            } else {
                NgsiError::invalid_request(format!("reading the request body: {e}"))
            }
        })?;
        let (tenant, tenant_given) = match scoped {
            Some(crate::snapshots::ScopedTenant(tenant)) => (tenant, true),
            None => tenant_of(&headers)?,
        };
        Ok(Self { method, tenant, tenant_given, params, headers, body })
    }
}

/// The tenant a request names (§6.3.14), and whether it named one: the default tenant
/// without `NGSILD-Tenant`. A name with control characters is refused (snapshots' data tenants
/// have them, so that no client reaches those directly).
pub fn tenant_of(headers: &HeaderMap) -> Result<(String, bool)> {
    match headers.get(TENANT_HEADER) {
        Some(v) => {
            let t = v.to_str().map_err(|_| NgsiError::bad_data("the NGSILD-Tenant header is not ASCII"))?.trim();
            if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_control()) {
                return Err(NgsiError::bad_data(format!("'{t}' is not a valid tenant name")));
            }
            Ok((t.to_string(), true))
        }
        None => Ok((hanbat_store::DEFAULT_TENANT.to_string(), false)),
    }
}

fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

impl Ngsi {
    /// Chooses the response media type from `Accept` among `offered` (§6.3.4): each offered
    /// type takes the weight of the most specific range that matches it (RFC 9110 §12.5.1;
    /// `q=0` refuses it); the highest weight wins, ties going to the first of the list
    /// json, ld+json, geo+json. No `Accept` means JSON.
    pub fn accept(&self, offered: &[Accept]) -> Result<Accept> {
        let Some(header) = self.headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Ok(Accept::Json);
        };
        if header.trim().is_empty() {
            return Ok(Accept::Json);
        }
        // (range, weight); a weight that does not parse keeps the default 1 (RFC 9110).
        let ranges: Vec<(String, f32)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let range = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                    .unwrap_or(1.0);
                (!range.is_empty()).then_some((range, q))
            })
            .collect();
        let weight = |media: &str| -> f32 {
            let main = media.split('/').next().unwrap_or("");
            let specificity = |range: &str| -> Option<u8> {
                if range == media {
                    Some(3)
                } else if range.strip_suffix("/*") == Some(main) {
                    Some(2)
                } else if range == "*/*" {
                    Some(1)
                } else {
                    None
                }
            };
            ranges
                .iter()
                .filter_map(|(r, q)| specificity(r).map(|s| (s, *q)))
                .max_by_key(|(s, _)| *s)
                .map_or(0.0, |(_, q)| q)
        };
        let mut best: Option<(Accept, f32)> = None;
        for candidate in [Accept::Json, Accept::JsonLd, Accept::GeoJson] {
            if !offered.contains(&candidate) {
                continue;
            }
            let q = weight(candidate.media_type());
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((candidate, q));
            }
        }
        best.map(|(a, _)| a).ok_or_else(|| {
            NgsiError::new(
                ErrorKind::NotAcceptable,
                format!(
                    "Accept '{header}' matches none of {}",
                    offered.iter().map(|a| a.media_type()).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// `Prefer: body=json` (§6.3.6): a GeoJSON body without its @context, which goes in `Link`.
    pub fn prefers_json_body(&self) -> bool {
        self.headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .any(|p| p.trim().eq_ignore_ascii_case("body=json"))
    }

    /// The @context URL of the `Link` header, if any.
    fn link_context(&self) -> Result<Option<String>> {
        let mut found = None;
        for value in self.headers.get_all(LINK) {
            let text = value.to_str().map_err(|_| NgsiError::bad_data("the Link header is not ASCII"))?;
            if let Some(url) = context_from_link(text)? {
                found = Some(url);
            }
        }
        Ok(found)
    }

    /// The context of a request without a body (GET, DELETE): `Link` header or the core context.
    pub async fn context(&self, state: &AppState) -> Result<RequestContext> {
        match self.link_context()? {
            Some(url) => {
                let ctx = state.broker.contexts.resolve(&Value::String(url.clone())).await?;
                Ok(RequestContext { ctx, value: Value::String(url.clone()), link_url: url })
            }
            None => Ok(RequestContext::core()),
        }
    }

    /// The body's media type, checked against what the method allows (§6.3.4).
    pub fn body_type(&self) -> Result<BodyType> {
        let Some(ct) = self.headers.get(CONTENT_TYPE) else {
            return Err(NgsiError::new(
                ErrorKind::UnsupportedMediaType,
                "a request body needs Content-Type application/json or application/ld+json",
            ));
        };
        let ct = media_type(ct.to_str().unwrap_or(""));
        match ct.as_str() {
            "application/json" => Ok(BodyType::Json),
            "application/ld+json" => Ok(BodyType::JsonLd),
            "application/merge-patch+json" if self.method == Method::PATCH => Ok(BodyType::MergePatch),
            other => Err(NgsiError::new(
                ErrorKind::UnsupportedMediaType,
                format!("Content-Type '{other}' is not supported: use application/json or application/ld+json"),
            )),
        }
    }

    /// Parses the body as JSON (any value).
    pub fn json(&self) -> Result<Value> {
        if self.body.is_empty() {
            return Err(NgsiError::invalid_request("the request has no body"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| NgsiError::invalid_request(format!("the body is not valid JSON: {e}")))
    }

    /// The body as a JSON object with its @context resolved and removed, applying §6.3.5: a
    /// JSON-LD body carries its @context (and then no Link header may), a JSON body takes it from
    /// the Link header and may not carry one.
    pub async fn object_body(&self, state: &AppState) -> Result<(RequestContext, serde_json::Map<String, Value>)> {
        let body_type = self.body_type()?;
        let Value::Object(mut object) = self.json()? else {
            return Err(NgsiError::invalid_request("the body must be a JSON object"));
        };
        let rc = self.body_context(state, body_type, object.remove("@context")).await?;
        Ok((rc, object))
    }

    /// The @context URL of the `Link` header, refused with a JSON-LD body (§6.3.5: that body
    /// carries its own @context).
    pub fn link_for_body(&self, body_type: BodyType) -> Result<Option<String>> {
        let link = self.link_context()?;
        if body_type == BodyType::JsonLd && link.is_some() {
            return Err(NgsiError::bad_data(
                "a JSON-LD body (application/ld+json) must not come with a @context Link header",
            ));
        }
        Ok(link)
    }

    /// The context for one JSON value of a body whose `@context` member (if any) is given.
    pub async fn body_context(
        &self,
        state: &AppState,
        body_type: BodyType,
        member: Option<Value>,
    ) -> Result<RequestContext> {
        let link = self.link_for_body(body_type)?;
        match body_type {
            BodyType::JsonLd => {
                let Some(value) = member else {
                    return Err(NgsiError::bad_data("a JSON-LD body (application/ld+json) must carry a @context"));
                };
                let ctx = state.broker.contexts.resolve(&value).await?;
                let link_url = match &value {
                    Value::String(url) => url.clone(),
                    other => state.broker.contexts.implicit_url(other),
                };
                Ok(RequestContext { ctx, value, link_url })
            }
            BodyType::Json | BodyType::MergePatch => {
                if member.is_some() {
                    return Err(NgsiError::bad_data(
                        "a JSON body (application/json) must not carry @context: send it as a Link header or use application/ld+json",
                    ));
                }
                match link {
                    Some(url) => {
                        let ctx = state.broker.contexts.resolve(&Value::String(url.clone())).await?;
                        Ok(RequestContext { ctx, value: Value::String(url.clone()), link_url: url })
                    }
                    None => Ok(RequestContext::core()),
                }
            }
        }
    }
}
