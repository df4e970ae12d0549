//! Query entities: `GET /entities` and `POST /entityOperations/query` (§6.4.3.2, §6.23 of V1.8),
//! with pagination (§4.12: `limit`, `offset`, `prev`/`next` Link headers) and counting (§4.13).

use crate::AppState;
use crate::params::Params;
use crate::render::View;
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::extract::State;
use axum::response::Response;
use hanbat_model::{Context, NgsiError, Result};
use hanbat_store::{EntityQuery, EntitySelector};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

const QUERY_PARAMS: &[&str] = &[
    "id",
    "idPattern",
    "type",
    "attrs",
    "pick",
    "omit",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "lang",
    "options",
    "format",
    "limit",
    "offset",
    "count",
    "local",
    "csf",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
    "collation",
    "via",
];

const RENDER_OPTIONS: &[&str] = &["keyValues", "concise", "sysAttrs", "simplified", "count"];

/// Compiles an `idPattern` with bounded size: the regex engine is linear-time, and the bound keeps
/// a hostile pattern from costing memory.
pub fn id_pattern(pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| NgsiError::bad_data(format!("idPattern '{pattern}' is not a valid regular expression: {e}")))
}

/// Page bounds: `limit` defaults to the broker's page size; above the maximum is an error,
/// never a silent cut.
pub fn page(state: &AppState, params: &Params) -> Result<(usize, usize)> {
    let limits = &state.broker.limits;
    let limit = params.usize("limit")?.unwrap_or(limits.default_page);
    if limit > limits.max_page {
        return Err(NgsiError::bad_data(format!("limit={limit} exceeds the maximum page size of {}", limits.max_page)));
    }
    let offset = params.usize("offset")?.unwrap_or(0);
    Ok((limit, offset))
}

/// The pieces of a query, whether from URI parameters or a Query body.
struct QuerySpec {
    selector: EntitySelector,
    has_filter: bool,
}

fn selector_from_params(params: &Params, ctx: &Context) -> Result<QuerySpec> {
    let mut selector = EntitySelector::default();
    for id in params.list("id") {
        if !hanbat_model::parse::is_uri(&id) {
            return Err(NgsiError::bad_data(format!("id '{id}' is not a URI")));
        }
        selector.ids.push(id);
    }
    if let Some(p) = params.get("idPattern") {
        selector.id_pattern = Some(id_pattern(p)?);
    }
    for t in params.list("type") {
        hanbat_model::parse::validate_name(&t)?;
        selector.types.push(ctx.expand(&t));
    }
    let with_attrs = params.names("attrs", ctx)?;
    for unsupported in ["q", "scopeQ", "georel"] {
        if params.has(unsupported) {
            return Err(NgsiError::not_supported(format!("{unsupported} is not supported by this build")));
        }
    }
    let has_filter = !selector.ids.is_empty()
        || selector.id_pattern.is_some()
        || !selector.types.is_empty()
        || !with_attrs.is_empty()
        || params.flag("local")?;
    selector.with_any_attr = with_attrs;
    Ok(QuerySpec { selector, has_filter })
}

/// `GET /entities`
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let rc = ngsi.context(&state).await?;
    let spec = selector_from_params(&ngsi.params, &rc.ctx)?;
    if !spec.has_filter {
        return Err(NgsiError::bad_data(
            "a query needs at least one of: id, idPattern, type, attrs, q, geoQ, local=true",
        )
        .into());
    }
    run(&state, &ngsi, rc, accept, spec.selector).await
}

/// `POST /entityOperations/query`
pub async fn query_post(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset", "count", "options", "format", "lang", "local", "geometryProperty"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let selector = selector_from_body(&body, &rc.ctx)?;
    run(&state, &ngsi, rc, accept, selector).await
}

fn selector_from_body(body: &Map<String, Value>, ctx: &Context) -> Result<EntitySelector> {
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(NgsiError::bad_data("the body of a query must be a Query object (\"type\": \"Query\")"));
    }
    let mut selector = EntitySelector::default();
    if let Some(entities) = body.get("entities") {
        let Value::Array(entities) = entities else {
            return Err(NgsiError::bad_data("Query.entities must be an array of EntitySelectors"));
        };
        for e in entities {
            if let Some(id) = e.get("id").and_then(Value::as_str) {
                selector.ids.push(id.to_string());
            }
            if let Some(p) = e.get("idPattern").and_then(Value::as_str) {
                selector.id_pattern = Some(id_pattern(p)?);
            }
            if let Some(t) = e.get("type").and_then(Value::as_str) {
                selector.types.extend(t.split(',').map(|t| ctx.expand(t.trim())));
            }
        }
    }
    if let Some(Value::Array(attrs)) = body.get("attrs") {
        selector.with_any_attr = attrs.iter().filter_map(Value::as_str).map(|a| ctx.expand(a)).collect();
    }
    for unsupported in ["q", "geoQ", "scopeQ"] {
        if body.contains_key(unsupported) {
            return Err(NgsiError::not_supported(format!("{unsupported} is not supported by this build")));
        }
    }
    Ok(selector)
}

async fn run(state: &AppState, ngsi: &Ngsi, rc: RequestContext, accept: Accept, selector: EntitySelector) -> ApiResult {
    let view = View::from_params(&ngsi.params, &rc.ctx, RENDER_OPTIONS)?;
    let (limit, offset) = page(state, &ngsi.params)?;
    let count = ngsi.params.flag("count")? || ngsi.params.list("options").iter().any(|o| o == "count");
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true").into());
    }
    if !state.tenant_exists(&ngsi.tenant).await? {
        return Err(crate::nonexistent_tenant(&ngsi.tenant).into());
    }
    let query = EntityQuery { selector, limit, offset, count };
    let page = state.broker.query(&ngsi.tenant, &query, None).await?;
    let geometry = view.geometry_property(&ngsi.params, &rc.ctx);
    let body = view.render_all(&page.entities, &rc.ctx, accept, &geometry);
    let mut response = response::body(&rc, accept, StatusCode::OK, body);
    if let Some(total) = page.count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    add_page_links(&mut response, ngsi, page.entities.len(), limit, offset, page.count);
    Ok(response)
}

/// `prev`/`next` Link headers (§5.5.9): `next` when the page is full and more may follow.
pub fn add_page_links(
    response: &mut Response,
    ngsi: &Ngsi,
    returned: usize,
    limit: usize,
    offset: usize,
    total: Option<u64>,
) {
    if limit == 0 {
        return;
    }
    let path = "/ngsi-ld/v1/entities";
    let more = match total {
        Some(t) => (offset + returned) < t as usize,
        None => returned == limit,
    };
    if offset > 0 {
        let prev = offset.saturating_sub(limit);
        let link = format!(r#"<{path}?{}>; rel="prev";type="application/json""#, ngsi.params.with_page(limit, prev));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().append(http::header::LINK, v);
        }
    }
    if more {
        let link =
            format!(r#"<{path}?{}>; rel="next";type="application/json""#, ngsi.params.with_page(limit, offset + limit));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().append(http::header::LINK, v);
        }
    }
}
