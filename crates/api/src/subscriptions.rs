//! `/subscriptions` (§6.10, §6.11 of V1.8): create, query, retrieve, update, delete. The
//! subscription semantics live in `hanbat-notify`; this module only does the HTTP binding
//! (negotiation, @context, tenant, paging) around [`hanbat_notify::Notifier`].

use crate::AppState;
use crate::query::{add_page_links_at, page};
use crate::request::{Accept, Ngsi};
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use axum::response::Response;
use hanbat_model::{NgsiError, Result, parse};
use hanbat_notify::Notifier;
use http::{HeaderValue, StatusCode};
use serde_json::Value;
use std::sync::Arc;

const COLLECTION: &str = "/ngsi-ld/v1/subscriptions";

fn notifier(state: &AppState) -> Result<&Arc<Notifier>> {
    state.notifier.as_ref().ok_or_else(|| NgsiError::not_supported("subscriptions are not enabled on this broker"))
}

/// A resource id of the path (`what`: subscription, registration), which must be a URI.
pub fn uri_id<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    if parse::is_uri(id) {
        Ok(id)
    } else {
        Err(NgsiError::bad_data(format!("'{id}' is not a valid {what} id: it must be a URI")))
    }
}

/// `POST /subscriptions`
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let notifier = notifier(&state)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let id = notifier.create(&ngsi.tenant, &body, rc.ctx.clone(), rc.value.clone()).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(response::created(&format!("{COLLECTION}/{id}")))
}

/// `GET /subscriptions` (§6.10.3.2): a page of the tenant's subscriptions in creation order.
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset", "count", "options"])?;
    ngsi.params.options(&["count", "sysAttrs"])?;
    let notifier = notifier(&state)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let (limit, offset) = page(&state, &ngsi.params)?;
    let count = ngsi.params.flag("count")? || ngsi.params.list("options").iter().any(|o| o == "count");
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true").into());
    }
    state.require_tenant(&ngsi.tenant).await?;
    let (subs, total) = notifier.list(&ngsi.tenant, offset, limit);
    let body = Value::Array(subs.iter().map(|s| Value::Object(notifier.render(s, &rc.ctx))).collect());
    let mut response = response::body(&rc, accept, StatusCode::OK, body, false);
    if count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    add_page_links_at(&mut response, COLLECTION, accept, &ngsi, subs.len(), limit, offset, Some(total as u64));
    Ok(response)
}

/// `GET /subscriptions/{id}`
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["options"])?;
    ngsi.params.options(&["sysAttrs"])?;
    let notifier = notifier(&state)?;
    let id = uri_id("subscription", &id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let sub = notifier
        .get(&ngsi.tenant, id)
        .ok_or_else(|| NgsiError::not_found(format!("subscription '{id}' does not exist")))?;
    let body = Value::Object(notifier.render(&sub, &rc.ctx));
    let mut response = response::body(&rc, accept, StatusCode::OK, body, false);
    // §4.3.6.8: version fallbacks concern entity data only; a subscription is served as it is,
    // and the preference is acknowledged as applied (with nothing to alter).
    if let Some(version) = preferred_version(&ngsi)
        && let Ok(v) = HeaderValue::from_str(&format!("ngsi-ld={version}"))
    {
        response.headers_mut().insert("Preference-Applied", v);
    }
    Ok(response)
}

/// The `ngsi-ld` preference of `Prefer` headers (RFC 7240: case-insensitive name, optionally
/// quoted value, parameters after `;`, several preferences per header).
fn preferred_version(ngsi: &Ngsi) -> Option<String> {
    ngsi.headers
        .get_all("Prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|pref| {
            let token = pref.split(';').next()?.trim();
            let (name, value) = token.split_once('=')?;
            name.trim().eq_ignore_ascii_case("ngsi-ld").then(|| value.trim().trim_matches('"').to_string())
        })
        .filter(|v| !v.is_empty())
}

/// `PATCH /subscriptions/{id}` (§6.11.3.2)
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let notifier = notifier(&state)?;
    let id = uri_id("subscription", &id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    notifier.update(&ngsi.tenant, id, &body, rc.ctx.clone()).await?;
    Ok(response::no_content())
}

/// `DELETE /subscriptions/{id}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult<Response> {
    ngsi.params.allow(&[])?;
    let notifier = notifier(&state)?;
    let id = uri_id("subscription", &id)?;
    state.require_tenant(&ngsi.tenant).await?;
    notifier.delete(&ngsi.tenant, id).await?;
    Ok(response::no_content())
}
