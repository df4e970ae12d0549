//! Query entities: `GET /entities` and `POST /entityOperations/query` (§6.4.3.2, §6.23 of V1.8),
//! with pagination (§4.12: `limit`, `offset`, `prev`/`next` Link headers) and counting (§4.13).

use crate::AppState;
use crate::params::Params;
use crate::render::View;
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::extract::State;
use axum::response::Response;
use hanbat_model::parse;
use hanbat_model::{Context, NgsiError, Result};
use hanbat_query::{GeoQuery, Query, QueryOptions, ScopeQuery, TypeQuery, compile_id_pattern};
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

fn check_id(id: &str) -> Result<()> {
    if parse::is_uri(id) { Ok(()) } else { Err(NgsiError::bad_data(format!("id '{id}' is not a URI"))) }
}

/// The query of `GET /entities` parameters (§6.4.3.2).
fn query_from_params(params: &Params, ctx: &Context) -> Result<EntityQuery> {
    let mut selector = EntitySelector::default();
    for id in params.list("id") {
        check_id(&id)?;
        selector.ids.push(id);
    }
    if let Some(p) = params.get("idPattern") {
        selector.id_pattern = Some(compile_id_pattern(p)?);
    }
    if let Some(t) = params.get("type") {
        selector.types = Some(TypeQuery::parse(t, ctx)?);
    }
    let options = params.get("expandValues").map(QueryOptions::with_expand_values).unwrap_or_default();
    let q = params.get("q").map(|q| Query::parse_with(q, ctx, &options)).transpose()?;
    let geo = GeoQuery::from_params(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
        ctx,
    )?;
    let scope = params.get("scopeQ").map(ScopeQuery::parse).transpose()?;
    let with_any_attr = params.names("attrs", ctx)?;
    let has_filter = !selector.is_empty()
        || q.is_some()
        || geo.is_some()
        || scope.is_some()
        || !with_any_attr.is_empty()
        || params.flag("local")?;
    if !has_filter {
        return Err(NgsiError::bad_data(
            "a query needs at least one of: id, idPattern, type, attrs, q, georel (geo-query), scopeQ, local=true",
        ));
    }
    let entities = if selector.is_empty() { Vec::new() } else { vec![selector] };
    Ok(EntityQuery { entities, with_any_attr, q, scope, geo, ..EntityQuery::default() })
}

/// `GET /entities`
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let rc = ngsi.context(&state).await?;
    let query = query_from_params(&ngsi.params, &rc.ctx)?;
    run(&state, &ngsi, rc, accept, query).await
}

/// `POST /entityOperations/query`
pub async fn query_post(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset", "count", "options", "format", "lang", "local", "geometryProperty"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let query = query_from_body(&body, &rc.ctx)?;
    run(&state, &ngsi, rc, accept, query).await
}

fn string_member<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(NgsiError::bad_data(format!("Query.{name} must be a string, not {other}"))),
    }
}

/// The query of a Query body (§5.2.23).
pub fn query_from_body(body: &Map<String, Value>, ctx: &Context) -> Result<EntityQuery> {
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(NgsiError::bad_data("the body of a query must be a Query object (\"type\": \"Query\")"));
    }
    let mut query = EntityQuery::default();
    if let Some(entities) = body.get("entities") {
        let Value::Array(entities) = entities else {
            return Err(NgsiError::bad_data("Query.entities must be an array of EntitySelectors"));
        };
        for e in entities {
            query.entities.push(selector_from_json(e, ctx)?);
        }
    }
    if let Some(attrs) = body.get("attrs") {
        let Value::Array(attrs) = attrs else {
            return Err(NgsiError::bad_data("Query.attrs must be an array of attribute names"));
        };
        for a in attrs {
            let name = a.as_str().ok_or_else(|| NgsiError::bad_data(format!("Query.attrs: {a} is not a name")))?;
            query.with_any_attr.push(ctx.expand(name));
        }
    }
    query.q = string_member(body, "q")?.map(|q| Query::parse(q, ctx)).transpose()?;
    query.scope = string_member(body, "scopeQ")?.map(ScopeQuery::parse).transpose()?;
    query.geo = body.get("geoQ").map(|g| GeoQuery::from_json(g, ctx)).transpose()?;
    Ok(query)
}

/// An EntitySelector object (§5.2.33): `{"id"?, "idPattern"?, "type"}`.
pub fn selector_from_json(e: &Value, ctx: &Context) -> Result<EntitySelector> {
    let Some(o) = e.as_object() else {
        return Err(NgsiError::bad_data(format!("an EntitySelector must be an object, not {e}")));
    };
    let mut selector = EntitySelector::default();
    if let Some(id) = string_member(o, "id")? {
        check_id(id)?;
        selector.ids.push(id.to_string());
    }
    if let Some(p) = string_member(o, "idPattern")? {
        selector.id_pattern = Some(compile_id_pattern(p)?);
    }
    if let Some(t) = string_member(o, "type")? {
        selector.types = Some(TypeQuery::parse(t, ctx)?);
    }
    Ok(selector)
}

async fn run(state: &AppState, ngsi: &Ngsi, rc: RequestContext, accept: Accept, mut query: EntityQuery) -> ApiResult {
    let view = View::from_params(&ngsi.params, &rc.ctx, RENDER_OPTIONS)?;
    let (limit, offset) = page(state, &ngsi.params)?;
    let count = ngsi.params.flag("count")? || ngsi.params.list("options").iter().any(|o| o == "count");
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true").into());
    }
    if !state.tenant_exists(&ngsi.tenant).await? {
        return Err(crate::nonexistent_tenant(&ngsi.tenant).into());
    }
    (query.limit, query.offset, query.count) = (limit, offset, count);
    let page = state.broker.query(&ngsi.tenant, &query).await?;
    let geometry = view.geometry_property(&ngsi.params, &rc.ctx);
    let body = view.render_all(&page.entities, &rc.ctx, accept, &geometry);
    let mut response = response::body(&rc, accept, StatusCode::OK, body);
    if let Some(total) = page.count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    add_page_links(&mut response, ngsi, page.entities.len(), limit, offset, page.count);
    Ok(response)
}

/// `prev`/`next` Link headers (§5.5.9) of entity queries.
pub fn add_page_links(
    response: &mut Response,
    ngsi: &Ngsi,
    returned: usize,
    limit: usize,
    offset: usize,
    total: Option<u64>,
) {
    add_page_links_at(response, "/ngsi-ld/v1/entities", Accept::Json, ngsi, returned, limit, offset, total);
}

/// `prev`/`next` Link headers of a paged collection at `path`, typed with the media type of the
/// response: `next` when more may follow (the page is full, or `total` says so).
#[allow(clippy::too_many_arguments)]
pub fn add_page_links_at(
    response: &mut Response,
    path: &str,
    accept: Accept,
    ngsi: &Ngsi,
    returned: usize,
    limit: usize,
    offset: usize,
    total: Option<u64>,
) {
    if limit == 0 {
        return;
    }
    let media = accept.media_type();
    let more = match total {
        Some(t) => (offset + returned) < t as usize,
        None => returned == limit,
    };
    if offset > 0 {
        let prev = offset.saturating_sub(limit);
        let link = format!(r#"<{path}?{}>; rel="prev";type="{media}""#, ngsi.params.with_page(limit, prev));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().append(http::header::LINK, v);
        }
    }
    if more {
        let link = format!(r#"<{path}?{}>; rel="next";type="{media}""#, ngsi.params.with_page(limit, offset + limit));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().append(http::header::LINK, v);
        }
    }
}
