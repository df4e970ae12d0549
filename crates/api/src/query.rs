//! Query entities: `GET /entities` and `POST /entityOperations/query` (§6.4.3.2, §6.23 of V1.8),
//! with pagination (§4.12: `limit`, `offset`, `prev`/`next` Link headers) and counting (§4.13).

use crate::AppState;
use crate::params::Params;
use crate::render::{Linked, View};
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::extract::State;
use axum::response::Response;
use hanbat_model::Entity;
use hanbat_model::{Context, NgsiError, Result};
use hanbat_store::{EntityQuery, EntitySelector};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};
use std::collections::HashMap;

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
    "orderBy",
];

/// `options` a query or retrieval accepts.
pub const RENDER_OPTIONS: &[&str] = &["keyValues", "concise", "sysAttrs", "simplified", "normalized", "count"];

/// System attributes: naming only these in `attrs` selects every entity (§5.7.2.4: too wide).
const SYSTEM_ATTRS: [&str; 4] = ["createdAt", "modifiedAt", "deletedAt", "expiresAt"];

/// Core members that are not attributes: `attrs` cannot name them.
const CORE_NON_ATTRS: [&str; 4] = ["id", "type", "@id", "@type"];

/// Compiles an `idPattern` with bounded size: the regex engine is linear-time, and the bound keeps
/// a hostile pattern from costing memory.
pub fn id_pattern(pattern: &str) -> Result<regex::Regex> {
    // A quantifier of a quantifier is an error in the POSIX and PCRE dialects clients write;
    // Rust's engine would accept it silently.
    if pattern.contains("**") {
        return Err(NgsiError::bad_data(format!("idPattern '{pattern}' is not a valid regular expression: '**'")));
    }
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
pub struct QuerySpec {
    pub selector: EntitySelector,
    /// The query narrows the entities down (type, attrs, q, geoQ, local): §5.7.2.4 refuses a
    /// query by `id`/`idPattern` alone, or by system attributes only, as too wide.
    pub narrowed: bool,
}

/// Checks `attrs` used as a filter: no core members; returns whether it narrows the query.
fn attrs_filter(names: &[String]) -> Result<bool> {
    if let Some(core) = names.iter().find(|n| CORE_NON_ATTRS.contains(&n.as_str())) {
        return Err(NgsiError::bad_data(format!("attrs: '{core}' is an entity member, not an attribute")));
    }
    Ok(names.iter().any(|n| !SYSTEM_ATTRS.contains(&n.as_str())))
}

pub fn selector_from_params(params: &Params, ctx: &Context) -> Result<QuerySpec> {
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
    let mut any_type = false;
    for t in params.list("type") {
        if t == "*" {
            // Every type (§4.17 of V1.9).
            any_type = true;
            continue;
        }
        hanbat_model::parse::validate_name(&t)?;
        selector.types.push(ctx.expand(&t));
    }
    if any_type {
        selector.types.clear();
    }
    let raw_attrs = params.list("attrs");
    let attrs_narrow = attrs_filter(&raw_attrs)?;
    let with_attrs = params.names("attrs", ctx)?;
    for unsupported in ["q", "scopeQ", "georel"] {
        if params.has(unsupported) {
            return Err(NgsiError::not_supported(format!("{unsupported} is not supported by this build")));
        }
    }
    let narrowed = any_type || !selector.types.is_empty() || attrs_narrow || params.flag("local")?;
    // System attributes are on every entity: as a filter they select nothing out.
    selector.with_any_attr = with_attrs
        .into_iter()
        .zip(&raw_attrs)
        .filter(|(_, raw)| !SYSTEM_ATTRS.contains(&raw.as_str()))
        .map(|(iri, _)| iri)
        .collect();
    Ok(QuerySpec { selector, narrowed })
}

/// `geometryProperty` only shapes GeoJSON (§6.3.15): with another representation it is an error.
fn check_geometry_property(params: &Params, accept: Accept) -> Result<()> {
    if params.has("geometryProperty") && accept != Accept::GeoJson {
        return Err(NgsiError::bad_data("geometryProperty applies to GeoJSON only: send Accept: application/geo+json"));
    }
    Ok(())
}

/// `GET /entities`
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    check_geometry_property(&ngsi.params, accept)?;
    let rc = ngsi.context(&state).await?;
    let spec = selector_from_params(&ngsi.params, &rc.ctx)?;
    if !spec.narrowed {
        return Err(NgsiError::bad_data(
            "a query needs at least one of: type, attrs (other than system attributes), q, geoQ, local=true",
        )
        .into());
    }
    run(&state, &ngsi, &ngsi.params, rc, accept, spec.selector).await
}

/// `POST /entityOperations/query`
pub async fn query_post(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["limit", "offset", "count", "options", "format", "lang", "local", "geometryProperty"])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let mut params = ngsi.params.clone();
    let selector = selector_from_body(&body, &rc.ctx, &mut params)?;
    check_geometry_property(&params, accept)?;
    run(&state, &ngsi, &params, rc, accept, selector).await
}

/// A list member of a Query body (`attrs`, `pick`, `omit`): a non-empty array of strings, or
/// a string in the URI-parameter syntax.
fn body_list(body: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")))
        }
        Some(other) => {
            Err(NgsiError::bad_data(format!("Query.{name} must be a non-empty array of strings, not {other}")))
        }
    }
}

/// Reads a Query (§5.2.23): the selector, and the members that shape the answer into `params`.
fn selector_from_body(body: &Map<String, Value>, ctx: &Context, params: &mut Params) -> Result<EntitySelector> {
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(NgsiError::bad_data("the body of a query must be a Query object (\"type\": \"Query\")"));
    }
    if body.contains_key("temporalQ") {
        return Err(NgsiError::bad_data(
            "temporalQ belongs to the temporal query (§5.7.4), not to a Query of entities",
        ));
    }
    let mut selector = EntitySelector::default();
    if let Some(entities) = body.get("entities") {
        let Value::Array(entities) = entities else {
            return Err(NgsiError::bad_data("Query.entities must be an array of EntitySelectors"));
        };
        if entities.is_empty() {
            return Err(NgsiError::bad_data("Query.entities must hold at least one EntitySelector"));
        }
        for e in entities {
            entity_selector(e, ctx, &mut selector)?;
        }
    }
    if let Some(attrs) = body_list(body, "attrs")? {
        selector.with_any_attr = attrs.split(',').map(|a| ctx.expand(a.trim())).collect();
    }
    for member in ["q", "geoQ", "scopeQ", "csf"] {
        match body.get(member) {
            None => {}
            Some(Value::String(_)) if member != "geoQ" => {
                return Err(NgsiError::not_supported(format!("{member} is not supported by this build")));
            }
            Some(Value::Object(_)) if member == "geoQ" => {
                return Err(NgsiError::not_supported("geoQ is not supported by this build"));
            }
            Some(other) => return Err(NgsiError::bad_data(format!("Query.{member} has the wrong type: {other}"))),
        }
    }
    for member in ["pick", "omit"] {
        if let Some(list) = body_list(body, member)? {
            params.set(member, list);
        }
    }
    match body.get("join") {
        None => {}
        Some(Value::String(j)) => params.set("join", j.clone()),
        Some(other) => return Err(NgsiError::bad_data(format!("Query.join must be a string, not {other}"))),
    }
    match body.get("joinLevel") {
        None => {}
        Some(Value::Number(n)) => params.set("joinLevel", n.to_string()),
        Some(other) => {
            return Err(NgsiError::bad_data(format!("Query.joinLevel must be a positive integer, not {other}")));
        }
    }
    if let Some(Value::String(lang)) = body.get("lang") {
        params.set("lang", lang.clone());
    }
    Ok(selector)
}

/// One EntitySelector (§5.2.33): `type` mandatory, `id` (which takes precedence over
/// `idPattern`) a URI or an array of URIs.
fn entity_selector(e: &Value, ctx: &Context, selector: &mut EntitySelector) -> Result<()> {
    let Value::Object(e) = e else {
        return Err(NgsiError::bad_data(format!("an EntitySelector must be an object, not {e}")));
    };
    let Some(Value::String(types)) = e.get("type") else {
        return Err(NgsiError::bad_data("an EntitySelector needs a 'type' (a type name or expression)"));
    };
    for t in types.split([',', '|']).map(str::trim).filter(|t| !t.is_empty()) {
        hanbat_model::parse::validate_name(t)?;
        selector.types.push(ctx.expand(t));
    }
    let ids: Vec<&Value> = match e.get("id") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
    };
    for id in &ids {
        match id.as_str() {
            Some(s) if hanbat_model::parse::is_uri(s) => selector.ids.push(s.to_string()),
            _ => return Err(NgsiError::bad_data(format!("EntitySelector id {id} is not a URI"))),
        }
    }
    if ids.is_empty()
        && let Some(p) = e.get("idPattern")
    {
        let p = p.as_str().ok_or_else(|| NgsiError::bad_data("EntitySelector idPattern must be a string"))?;
        selector.id_pattern = Some(id_pattern(p)?);
    }
    Ok(())
}

/// Fetches the entities linked from `roots` (§4.5.23), level by level up to the views' join
/// levels, one store query per level.
pub async fn fetch_linked<'v>(state: &AppState, tenant: &str, view: &'v View, roots: &[Entity]) -> Result<Linked<'v>> {
    let mut linked = Linked::default();
    if view.join.is_none() {
        return Ok(linked);
    }
    let mut frontier: Vec<(&'v View, Entity)> = roots.iter().map(|e| (view, e.clone())).collect();
    while !frontier.is_empty() {
        let mut wanted: Vec<(String, &'v View)> = Vec::new();
        for (v, e) in &frontier {
            let projected = v.project(e);
            for (name, instances) in &projected.attrs {
                let Some(child) = v.link(name) else { continue };
                for id in instances.iter().flat_map(|a| crate::render::targets(&a.value)) {
                    let known = linked.entities.contains_key(id) || wanted.iter().any(|(w, _)| w == id);
                    if !known && !roots.iter().any(|r| r.id == id) {
                        wanted.push((id.to_string(), child));
                    }
                }
            }
        }
        if wanted.is_empty() {
            break;
        }
        let query = EntityQuery {
            selector: EntitySelector {
                ids: wanted.iter().map(|(id, _)| id.clone()).collect(),
                ..EntitySelector::default()
            },
            limit: wanted.len(),
            offset: 0,
            count: false,
        };
        let found: HashMap<String, Entity> =
            state.broker.query(tenant, &query, None).await?.entities.into_iter().map(|e| (e.id.clone(), e)).collect();
        frontier = Vec::new();
        for (id, child) in wanted {
            if let Some(entity) = found.get(&id) {
                linked.order.push(id.clone());
                linked.entities.insert(id, (entity.clone(), child));
                frontier.push((child, entity.clone()));
            }
        }
    }
    Ok(linked)
}

async fn run(
    state: &AppState,
    ngsi: &Ngsi,
    params: &Params,
    rc: RequestContext,
    accept: Accept,
    selector: EntitySelector,
) -> ApiResult {
    let view = View::from_params(params, &rc.ctx, RENDER_OPTIONS)?;
    let (limit, offset) = page(state, params)?;
    let count = params.flag("count")? || params.list("options").iter().any(|o| o == "count");
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true").into());
    }
    if !state.tenant_exists(&ngsi.tenant).await? {
        return Err(crate::nonexistent_tenant(&ngsi.tenant).into());
    }
    let query = EntityQuery { selector, limit, offset, count };
    let page = state.broker.query(&ngsi.tenant, &query, None).await?;
    let geometry = view.geometry_property(params, &rc.ctx);
    let linked = fetch_linked(state, &ngsi.tenant, &view, &page.entities).await?;
    let body = view.render_all(&page.entities, &rc.ctx, accept, &geometry, &linked);
    let mut response = response::body(&rc, accept, StatusCode::OK, body, ngsi.prefers_json_body());
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
