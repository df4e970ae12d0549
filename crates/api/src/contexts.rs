//! `/jsonldContexts` (§5.13, §6.29 of V1.8): list, serve, add and delete the @contexts this
//! broker hosts or has cached.

use crate::AppState;
use crate::request::Ngsi;
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use hanbat_context::ContextKind;
use hanbat_model::jsonld;
use hanbat_model::{NgsiError, Result};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};

fn details(ngsi: &Ngsi) -> Result<bool> {
    ngsi.params.flag("details")
}

/// `GET /jsonldContexts`
pub async fn list(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["details", "kind"])?;
    let details = details(&ngsi)?;
    let kind =
        match ngsi.params.get("kind") {
            None => None,
            Some(k) => Some(ContextKind::parse(k).ok_or_else(|| {
                NgsiError::bad_data(format!("kind={k} is not one of Hosted, Cached, ImplicitlyCreated"))
            })?),
        };
    let known = state.broker.contexts.list(&ngsi.tenant, kind);
    let mut items: Vec<Value> = Vec::new();
    if kind.is_none() || kind == Some(ContextKind::Cached) {
        // The core context is always available; it is listed as a cached one.
        items.push(if details { state.broker.contexts.core_details() } else { json!(jsonld::CORE_CONTEXT_URL) });
    }
    items.extend(known.iter().map(|k| if details { k.details() } else { json!(k.url) }));
    Ok(response::plain_json(StatusCode::OK, &Value::Array(items)))
}

/// `GET /jsonldContexts/{contextId}`
pub async fn serve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["details"])?;
    let details = details(&ngsi)?;
    if id == "ngsi-ld-core-context" || jsonld::is_core_context_url(&id) {
        let body = if details { state.broker.contexts.core_details() } else { jsonld::core_context_document().clone() };
        return Ok(context_json(&body));
    }
    let known = state
        .broker
        .contexts
        .get(&ngsi.tenant, &id)
        .ok_or_else(|| NgsiError::not_found(format!("no @context '{id}' is hosted or cached here")))?;
    let body = if details { known.details() } else { known.document.clone() };
    // Serving is a use too: numberOfHits counts it after reporting (§5.13.4).
    known.touch();
    Ok(context_json(&body))
}

/// A served @context or its details: plain JSON, as the ETSI suite expects for both.
fn context_json(body: &Value) -> axum::response::Response {
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `POST /jsonldContexts`
pub async fn add(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    ngsi.body_type()?;
    let document = ngsi.json()?;
    if !document.as_object().is_some_and(|o| o.contains_key("@context")) {
        return Err(NgsiError::invalid_request("the body must be a JSON object with a @context member").into());
    }
    let known = state.broker.contexts.add_hosted(&ngsi.tenant, document).await?;
    Ok(response::created(&format!("{}{}", hanbat_context::HOSTED_PATH, known.local_id)))
}

/// `DELETE /jsonldContexts/{contextId}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["reload"])?;
    let reload = ngsi.params.flag("reload")?;
    if id == "ngsi-ld-core-context" || jsonld::is_core_context_url(&id) {
        // The core @context is built in: reloading it is a no-op, deleting it is refused.
        if reload {
            return Ok(response::no_content());
        }
        return Err(NgsiError::bad_data("the NGSI-LD core @context cannot be deleted").into());
    }
    state.broker.contexts.delete(&ngsi.tenant, &id, reload).await?;
    Ok(response::no_content())
}
