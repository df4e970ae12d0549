//! `/csourceRegistrations` (§6.8, §6.9) and `/csourceSubscriptions` (§6.11-6.13 of V1.8.1):
//! the HTTP binding around [`hanbat_csource::CSources`], which holds the semantics. Negotiation,
//! @context, tenant and paging work as for `/subscriptions`.

use crate::AppState;
use crate::query::{add_page_links_at, page};
use crate::request::{Accept, Ngsi};
use crate::response::{self, ApiResult};
use crate::subscriptions::uri_id;
use axum::extract::{Path, State};
use hanbat_csource::CSources;
use hanbat_csource::matching::{RegQuery, TimeQuery};
use hanbat_model::{NgsiError, Result, parse};
use hanbat_query::{GeoQuery, Query, ScopeQuery, TypeQuery, compile_id_pattern};
use hanbat_store::EntitySelector;
use hanbat_temporal::{TimeProperty, TimeRel};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};
use std::sync::Arc;

const REGISTRATIONS: &str = "/ngsi-ld/v1/csourceRegistrations";
const SUBSCRIPTIONS: &str = "/ngsi-ld/v1/csourceSubscriptions";

fn csources(state: &AppState) -> Result<&Arc<CSources>> {
    state.csources.as_ref().ok_or_else(|| NgsiError::not_supported("context source registrations are not enabled"))
}

/// `count=true` or `options=count`.
fn wants_count(ngsi: &Ngsi) -> Result<bool> {
    Ok(ngsi.params.flag("count")? || ngsi.params.list("options").iter().any(|o| o == "count"))
}

/// A JSON array page with `NGSILD-Results-Count` and `prev`/`next` links.
#[allow(clippy::too_many_arguments)]
fn page_response(
    ngsi: &Ngsi,
    rc: &crate::request::RequestContext,
    accept: Accept,
    path: &str,
    items: Vec<Map<String, Value>>,
    total: usize,
    limit: usize,
    offset: usize,
) -> Result<axum::response::Response> {
    let count = wants_count(ngsi)?;
    let returned = items.len();
    let body = Value::Array(items.into_iter().map(Value::Object).collect());
    let mut response = response::body(rc, accept, StatusCode::OK, body, false);
    if count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    add_page_links_at(&mut response, path, accept, ngsi, returned, limit, offset, Some(total as u64));
    Ok(response)
}

/// Page bounds, refusing `limit=0` without a count (nothing to answer).
fn page_of(state: &AppState, ngsi: &Ngsi) -> Result<(usize, usize)> {
    let (limit, offset) = page(state, &ngsi.params)?;
    if limit == 0 && !wants_count(ngsi)? {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true"));
    }
    Ok((limit, offset))
}

// ---- registrations --------------------------------------------------------------------------

/// `POST /csourceRegistrations` (§6.8.3.1)
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let id = csources.create(&ngsi.tenant, &body, &rc.ctx).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(response::created(&format!("{REGISTRATIONS}/{id}")))
}

const QUERY_PARAMS: [&str; 20] = [
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timeproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "scopeQ",
    "limit",
    "offset",
    "count",
    "options",
    "lang",
];

/// The discovery query of the parameters (§6.8.3.2, §5.10.2). A query must say what it looks
/// for: an entity type, id or id pattern, attributes, or a filter (the conformance suite refuses
/// a bare `GET /csourceRegistrations` with BadRequestData).
fn reg_query(ngsi: &Ngsi, ctx: &hanbat_model::Context) -> Result<RegQuery> {
    let p = &ngsi.params;
    let mut selector = EntitySelector::default();
    for id in p.list("id") {
        if !parse::is_uri(&id) {
            return Err(NgsiError::bad_data(format!("id '{id}' is not a URI")));
        }
        selector.ids.push(id);
    }
    selector.id_pattern = p.get("idPattern").map(compile_id_pattern).transpose()?;
    selector.types = p.get("type").map(|t| TypeQuery::parse(t, ctx)).transpose()?;
    let mut filters = Vec::new();
    for name in ["q", "csf"] {
        if let Some(text) = p.get(name) {
            filters.push(Query::parse(text, ctx).map_err(|e| NgsiError::bad_data(format!("{name}: {}", e.detail)))?);
        }
    }
    let geo =
        GeoQuery::from_params(p.get("georel"), p.get("geometry"), p.get("coordinates"), p.get("geoproperty"), ctx)?;
    let time = TimeRel::from_params(p.get("timerel"), p.get("timeAt"), p.get("endTimeAt"))?
        .map(|rel| -> Result<TimeQuery> {
            let property = p.get("timeproperty").map(TimeProperty::parse).transpose()?.unwrap_or_default();
            Ok(TimeQuery { property, rel })
        })
        .transpose()?;
    let query = RegQuery {
        entities: if selector.is_empty() { Vec::new() } else { vec![selector] },
        attrs: p.names("attrs", ctx)?,
        filters,
        scope: p.get("scopeQ").map(ScopeQuery::parse).transpose()?,
        geo,
        time,
    };
    let says_what = !query.entities.is_empty()
        || p.has("attrs")
        || !query.filters.is_empty()
        || query.scope.is_some()
        || query.geo.is_some();
    if !says_what {
        return Err(NgsiError::bad_data(
            "a registration query needs at least one of type, id, idPattern, attrs, q, csf, scopeQ or a geo-query",
        ));
    }
    Ok(query)
}

/// `GET /csourceRegistrations` (§6.8.3.2)
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&QUERY_PARAMS)?;
    let sys_attrs = ngsi.params.options(&["count", "sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let csources = csources(&state)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let query = reg_query(&ngsi, &rc.ctx)?;
    let (limit, offset) = page_of(&state, &ngsi)?;
    state.require_tenant(&ngsi.tenant).await?;
    let all = csources.query(&ngsi.tenant, &query).await;
    let total = all.len();
    let items = all.iter().skip(offset).take(limit).map(|r| r.render(&rc.ctx, sys_attrs)).collect();
    Ok(page_response(&ngsi, &rc, accept, REGISTRATIONS, items, total, limit, offset)?)
}

/// `GET /csourceRegistrations/{id}` (§6.9.3.1)
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["options"])?;
    let sys_attrs = ngsi.params.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let csources = csources(&state)?;
    let id = uri_id("registration", &id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let reg = csources
        .get(&ngsi.tenant, id)
        .await
        .ok_or_else(|| NgsiError::not_found(format!("registration '{id}' does not exist")))?;
    Ok(response::body(&rc, accept, StatusCode::OK, Value::Object(reg.render(&rc.ctx, sys_attrs)), false))
}

/// `PATCH /csourceRegistrations/{id}` (§6.9.3.2)
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let id = uri_id("registration", &id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    csources.update(&ngsi.tenant, id, &body, &rc.ctx).await?;
    Ok(response::no_content())
}

/// `DELETE /csourceRegistrations/{id}` (§6.9.3.3)
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let id = uri_id("registration", &id)?;
    state.require_tenant(&ngsi.tenant).await?;
    csources.delete(&ngsi.tenant, id).await?;
    Ok(response::no_content())
}

// ---- registration subscriptions -------------------------------------------------------------

/// `POST /csourceSubscriptions` (§6.11.3.1)
pub async fn subscribe(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let id = csources.subscribe(&ngsi.tenant, &body, rc.ctx.clone(), rc.value.clone()).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(response::created(&format!("{SUBSCRIPTIONS}/{id}")))
}

/// `GET /csourceSubscriptions` (§6.11.3.2)
pub async fn subscriptions(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset", "count", "options"])?;
    ngsi.params.options(&["count", "sysAttrs"])?;
    let csources = csources(&state)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let (limit, offset) = page_of(&state, &ngsi)?;
    state.require_tenant(&ngsi.tenant).await?;
    let (items, total) = csources.subscriptions(&ngsi.tenant, offset, limit, &rc.ctx);
    Ok(page_response(&ngsi, &rc, accept, SUBSCRIPTIONS, items, total, limit, offset)?)
}

/// `GET /csourceSubscriptions/{id}` (§6.12.3.1)
pub async fn subscription(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["options"])?;
    ngsi.params.options(&["sysAttrs"])?;
    let csources = csources(&state)?;
    let id = uri_id("subscription", &id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let body = csources
        .subscription(&ngsi.tenant, id, &rc.ctx)
        .ok_or_else(|| NgsiError::not_found(format!("subscription '{id}' does not exist")))?;
    Ok(response::body(&rc, accept, StatusCode::OK, Value::Object(body), false))
}

/// `PATCH /csourceSubscriptions/{id}` (§6.12.3.2)
pub async fn update_subscription(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let id = uri_id("subscription", &id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    csources.update_subscription(&ngsi.tenant, id, &body, rc.ctx.clone()).await?;
    Ok(response::no_content())
}

/// `DELETE /csourceSubscriptions/{id}` (§6.12.3.3)
pub async fn unsubscribe(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[])?;
    let csources = csources(&state)?;
    let id = uri_id("subscription", &id)?;
    state.require_tenant(&ngsi.tenant).await?;
    csources.unsubscribe(&ngsi.tenant, id).await?;
    Ok(response::no_content())
}
