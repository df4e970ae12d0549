//! Query entities: `GET /entities` and `POST /entityOperations/query` (§6.4.3.2, §6.23 of V1.8),
//! with pagination (§4.12: `limit`, `offset`, `prev`/`next` Link headers) and counting (§4.13).

use crate::AppState;
use crate::params::Params;
use crate::render::{Linked, View};
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use crate::{distributed, entity_maps};
use axum::extract::State;
use axum::response::Response;
use hanbat_csource::matching::RegQuery;
use hanbat_federation::{Leg, Operation, Request, Target};
use hanbat_model::parse;
use hanbat_model::{Context, Entity, NgsiError, Result};
use hanbat_query::{
    Collation, DistanceFrom, EntityOrder, GeoQuery, Query, QueryOptions, ScopeQuery, TypeQuery, compile_id_pattern,
};
use hanbat_store::{EntityQuery, EntitySelector, Order, Page};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub(crate) const QUERY_PARAMS: &[&str] = &[
    "orderBy",
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
    "splitEntities",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "entityMapLifetime",
    "expandValues",
    "collation",
    "via",
    "orderFrom",
    "orderGeometry",
];

/// `options` a query or retrieval accepts.
pub const RENDER_OPTIONS: &[&str] = &["keyValues", "concise", "sysAttrs", "simplified", "normalized", "count"];

/// System attributes: naming only these in `attrs` selects every entity (§5.7.2.4: too wide).
const SYSTEM_ATTRS: [&str; 4] = ["createdAt", "modifiedAt", "deletedAt", "expiresAt"];

/// Core members that are not attributes: `attrs` cannot name them.
const CORE_NON_ATTRS: [&str; 4] = ["id", "type", "@id", "@type"];

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

/// `attrs` used as a filter (§6.4.3.2): attribute names, never core members; system attributes
/// are on every entity, so they filter nothing out. Returns the expanded names that filter.
fn attrs_filter(raw: &[String], ctx: &Context) -> Result<Vec<String>> {
    if let Some(core) = raw.iter().find(|n| CORE_NON_ATTRS.contains(&n.as_str())) {
        return Err(NgsiError::bad_data(format!("attrs: '{core}' is an entity member, not an attribute")));
    }
    if let Some(bad) = raw.iter().find(|n| n.chars().any(|c| c.is_whitespace() || "<>\"'=;()".contains(c))) {
        return Err(NgsiError::bad_data(format!("attrs: '{bad}' is not a valid attribute name")));
    }
    Ok(raw.iter().filter(|n| !SYSTEM_ATTRS.contains(&n.as_str())).map(|n| ctx.expand(n)).collect())
}

/// The query of `GET /entities` (and purge) parameters (§6.4.3.2), and whether it narrows the
/// entities down: §5.7.2.4 refuses a query by `id`/`idPattern` alone, or by system attributes
/// only, as too wide — it needs a type, attributes, q, scopeQ, a geo-query or `local=true`.
pub fn query_from_params(params: &Params, ctx: &Context) -> Result<(EntityQuery, bool)> {
    let mut selector = EntitySelector::default();
    for id in params.list("id") {
        check_id(&id)?;
        selector.ids.push(id);
    }
    if let Some(p) = params.get("idPattern") {
        selector.id_pattern = Some(compile_id_pattern(p)?);
    }
    if let Some(t) = params.get("type") {
        if t == "*" && params.get("local") == Some("false") {
            // §4.17: the type wildcard queries local data only; local=false contradicts it.
            return Err(NgsiError::bad_data("type=* selects local entities only: local=false contradicts it"));
        }
        selector.types = Some(TypeQuery::parse(t, ctx)?);
    }
    if let Some(csf) = params.get("csf") {
        // The context source filter has the grammar of q (§4.9); checked here, applied by
        // distributed operations.
        Query::parse(csf, ctx).map_err(|e| NgsiError::bad_data(format!("csf: {}", e.detail)))?;
    }
    let options = params.get("expandValues").map(QueryOptions::with_expand_values).unwrap_or_default();
    let q = params.get("q").map(|q| Query::parse_with(q, ctx, &options)).transpose()?;
    if let Some(q) = &q {
        check_link_depth(q, params)?;
    }
    let geo = GeoQuery::from_params(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
        ctx,
    )?;
    let scope = params.get("scopeQ").map(ScopeQuery::parse).transpose()?;
    let with_any_attr = attrs_filter(&params.list("attrs"), ctx)?;
    // A q over system members only (createdAt, modifiedAt) holds for every entity's kind.
    let narrowed = selector.types.is_some()
        || q.as_ref().is_some_and(|q| !q.attributes().is_empty())
        || geo.is_some()
        || scope.is_some()
        || !with_any_attr.is_empty()
        || params.flag("local")?;
    let entities = if selector.is_empty() { Vec::new() } else { vec![selector] };
    let mut query = EntityQuery { entities, with_any_attr, q, scope, geo, ..EntityQuery::default() };
    if params.has("orderBy") {
        let coordinates = params.get("orderFrom").map(|c| Value::String(c.to_string()));
        let from = DistanceFrom { geometry: params.get("orderGeometry"), coordinates: coordinates.as_ref() };
        set_order(&mut query, EntityOrder::parse(&params.list("orderBy"), ctx, params.get("collation"), from)?);
    } else if let Some(collation) = params.get("collation") {
        Collation::parse(collation)?;
    }
    Ok((query, narrowed))
}

/// An ordering by id alone is the stores' own (indexed); any other is the broker's.
fn set_order(query: &mut EntityQuery, order: EntityOrder) {
    match order.by_id_only() {
        Some(descending) => query.order_by_id = Some(if descending { Order::Descending } else { Order::Ascending }),
        None => query.order = Some(order),
    }
}

/// The OrderingParams member of a Query body (§5.2.43): `orderBy` (an array of strings or
/// one string), `collation`, and the distance reference `coordinates` + `geometry`.
fn ordering_from_body(body: &Map<String, Value>, ctx: &Context, query: &mut EntityQuery) -> Result<()> {
    let Some(ordering) = body.get("ordering") else { return Ok(()) };
    let Value::Object(o) = ordering else {
        return Err(NgsiError::bad_data(format!("Query.ordering must be an OrderingParams object, not {ordering}")));
    };
    let order_by = body_list(o, "orderBy")?.ok_or_else(|| NgsiError::bad_data("Query.ordering needs orderBy"))?;
    let items: Vec<String> = order_by.split(',').map(str::to_string).collect();
    let geometry = string_member(o, "geometry")?;
    let coordinates = o.get("coordinates");
    if let Some(c) = coordinates.filter(|c| !c.is_array()) {
        return Err(NgsiError::bad_data(format!("Query.ordering.coordinates must be a JSON array, not {c}")));
    }
    let order =
        EntityOrder::parse(&items, ctx, string_member(o, "collation")?, DistanceFrom { geometry, coordinates })?;
    set_order(query, order);
    Ok(())
}

/// A q on linked entities (`rel{attr}`, §4.5.23) needs `join`, and reaches no deeper than
/// `joinLevel` (default 1).
fn check_link_depth(q: &Query, params: &Params) -> Result<()> {
    let depth = q.link_depth();
    if depth == 0 {
        return Ok(());
    }
    if !params.get("join").is_some_and(|j| j == "inline" || j == "flat") {
        return Err(NgsiError::bad_data("a q on linked entities ({…}) needs join=inline or join=flat"));
    }
    let level = params.get("joinLevel").and_then(|l| l.parse::<usize>().ok()).unwrap_or(1);
    if depth > level {
        return Err(NgsiError::bad_data(format!("q reaches {depth} linked entities deep, beyond joinLevel={level}")));
    }
    Ok(())
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
    let query = narrowed_query(&ngsi.params, &rc.ctx)?;
    run(&state, &ngsi, &ngsi.params, rc, accept, query).await
}

/// The query of `GET /entities` parameters, refused when too wide (§5.7.2.4).
pub fn narrowed_query(params: &Params, ctx: &Context) -> Result<EntityQuery> {
    let (query, narrowed) = query_from_params(params, ctx)?;
    if !narrowed {
        return Err(NgsiError::bad_data(
            "a query needs at least one of: type, attrs (other than system attributes), q, georel (geo-query), scopeQ, local=true",
        ));
    }
    Ok(query)
}

/// `POST /entityOperations/query`
pub async fn query_post(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "lang",
        "local",
        "geometryProperty",
        "entityMap",
        "entityMapLifetime",
    ])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let query = query_from_body(&body, &rc.ctx)?;
    // The members that shape the answer join the URI parameters.
    let mut params = ngsi.params.clone();
    for member in ["pick", "omit"] {
        if let Some(list) = body_list(&body, member)? {
            params.set(member, list);
        }
    }
    if let Some(join) = string_member(&body, "join")? {
        params.set("join", join.to_string());
    }
    match body.get("joinLevel") {
        None => {}
        Some(Value::Number(n)) => params.set("joinLevel", n.to_string()),
        Some(other) => {
            return Err(NgsiError::bad_data(format!("Query.joinLevel must be a positive integer, not {other}")).into());
        }
    }
    if let Some(lang) = string_member(&body, "lang")? {
        params.set("lang", lang.to_string());
    }
    check_geometry_property(&params, accept)?;
    run(&state, &ngsi, &params, rc, accept, query).await
}

fn string_member<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(NgsiError::bad_data(format!("Query.{name} must be a string, not {other}"))),
    }
}

/// A list member of a Query body (`attrs`, `pick`, `omit`): a non-empty array of strings, or a
/// string in the URI-parameter syntax; returned in the URI-parameter syntax.
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

/// The query of a Query body (§5.2.23).
pub fn query_from_body(body: &Map<String, Value>, ctx: &Context) -> Result<EntityQuery> {
    if body.contains_key("temporalQ") {
        return Err(NgsiError::bad_data(
            "temporalQ belongs to the temporal query (§5.7.4), not to a Query of entities",
        ));
    }
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(NgsiError::bad_data("the body of a query must be a Query object (\"type\": \"Query\")"));
    }
    let mut query = EntityQuery::default();
    if let Some(entities) = body.get("entities") {
        let Value::Array(entities) = entities else {
            return Err(NgsiError::bad_data("Query.entities must be an array of EntitySelectors"));
        };
        if entities.is_empty() {
            return Err(NgsiError::bad_data("Query.entities must hold at least one EntitySelector"));
        }
        for e in entities {
            query.entities.push(selector_from_json(e, ctx)?);
        }
    }
    if let Some(attrs) = body_list(body, "attrs")? {
        let raw: Vec<String> = attrs.split(',').map(|a| a.trim().to_string()).collect();
        query.with_any_attr = attrs_filter(&raw, ctx)?;
    }
    query.q = string_member(body, "q")?.map(|q| Query::parse(q, ctx)).transpose()?;
    query.scope = string_member(body, "scopeQ")?.map(ScopeQuery::parse).transpose()?;
    query.geo = body.get("geoQ").map(|g| GeoQuery::from_json(g, ctx)).transpose()?;
    ordering_from_body(body, ctx, &mut query)?;
    Ok(query)
}

/// An EntitySelector object (§5.2.33): `{"id"?, "idPattern"?, "type"}` — `type` mandatory, `id`
/// a URI or an array of URIs, taking precedence over `idPattern`.
pub fn selector_from_json(e: &Value, ctx: &Context) -> Result<EntitySelector> {
    let Some(o) = e.as_object() else {
        return Err(NgsiError::bad_data(format!("an EntitySelector must be an object, not {e}")));
    };
    let mut selector = EntitySelector::default();
    let ids: Vec<&Value> = match o.get("id") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
    };
    for id in ids {
        match id.as_str() {
            Some(s) => {
                check_id(s)?;
                selector.ids.push(s.to_string());
            }
            None => return Err(NgsiError::bad_data(format!("EntitySelector id {id} is not a URI"))),
        }
    }
    if let Some(p) = string_member(o, "idPattern")?
        && selector.ids.is_empty()
    {
        selector.id_pattern = Some(compile_id_pattern(p)?);
    }
    match string_member(o, "type")? {
        Some(t) => selector.types = Some(TypeQuery::parse(t, ctx)?),
        None => return Err(NgsiError::bad_data("an EntitySelector needs a 'type' (a type name or expression)")),
    }
    Ok(selector)
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
                for id in instances.iter().flat_map(|a| a.value.targets()) {
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
        let selector =
            EntitySelector { ids: wanted.iter().map(|(id, _)| id.clone()).collect(), ..EntitySelector::default() };
        let query = EntityQuery { entities: vec![selector], limit: wanted.len(), ..EntityQuery::default() };
        let found: HashMap<String, Entity> =
            state.broker.query(tenant, &query).await?.entities.into_iter().map(|e| (e.id.clone(), e)).collect();
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
    mut query: EntityQuery,
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
    (query.limit, query.offset, query.count) = (limit, offset, count);
    let map_request = entity_maps::requested(state, ngsi).await?;
    let (mut page, map) = entity_maps::query_page(state, &ngsi.tenant, map_request, &query).await?;
    let warnings = with_sources(state, ngsi, params, &rc, &query, &view, &mut page).await?;
    let geometry = view.geometry_property(params, &rc.ctx);
    let linked = fetch_linked(state, &ngsi.tenant, &view, &page.entities).await?;
    let body = view.render_all(&page.entities, &rc.ctx, accept, &geometry, &linked);
    let mut response = response::body(&rc, accept, StatusCode::OK, body, ngsi.prefers_json_body());
    if let Some(total) = page.count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    distributed::warn(&mut response, &warnings);
    if let Some(map) = &map {
        map.mark_query(&mut response);
    }
    let links = map.as_ref().map(|m| m.link_request(ngsi));
    let links = links.as_ref().unwrap_or(ngsi);
    add_page_links(&mut response, "/ngsi-ld/v1/entities", links, page.entities.len(), limit, offset, page.count);
    Ok(response)
}

/// Query parameters a context source receives as the client sent them (§4.3.6.4); `q`,
/// `scopeQ` and the geo-query stay here with `splitEntities=true`, where the broker applies
/// them to the merged entities.
const FORWARDED_SELECTION: [&str; 3] = ["type", "id", "idPattern"];
const FORWARDED_FILTERS: [&str; 6] = ["q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty"];

/// Adds to the broker's page what the context sources registered for the query hold
/// (§4.3.6.2), and returns the warnings of those that failed. Paging applies to the broker's
/// own matches; the sources' entities come on top of them.
pub(crate) async fn with_sources(
    state: &AppState,
    ngsi: &Ngsi,
    params: &Params,
    rc: &RequestContext,
    query: &EntityQuery,
    view: &View,
    page: &mut Page,
) -> Result<Vec<String>> {
    if !distributed::may_forward(state, ngsi)? {
        return Ok(Vec::new());
    }
    let requested = view.attrs.clone().unwrap_or_default();
    let mut prefilter = RegQuery { entities: query.entities.clone(), attrs: requested.clone(), ..RegQuery::default() };
    if let Some(csf) = params.get("csf") {
        prefilter.filters.push(Query::parse(csf, &rc.ctx)?);
    }
    let op = if ngsi.method == http::Method::POST { Operation::QueryBatch } else { Operation::QueryEntity };
    let target = Target { attrs: &requested, ..Target::default() };
    let Some(plan) = distributed::plan(state, ngsi, op, target, &prefilter).await? else { return Ok(Vec::new()) };
    if params.has("orderBy") {
        return Err(NgsiError::bad_data(
            "orderBy cannot order entities that context sources provide: send local=true, or no orderBy",
        ));
    }
    let split = params.flag("splitEntities")?;
    let context = distributed::context_url(rc);
    let request = |leg: &Leg| {
        let names: Vec<String> = leg.attrs.narrow(&requested).iter().map(|n| rc.ctx.compact(n)).collect();
        let registered_ids: Vec<&str> =
            leg.registration.information.iter().flat_map(|i| &i.entities).filter_map(|e| e.id.as_deref()).collect();
        if Operation::QueryEntity.supported_by(&leg.registration) && ngsi.method != http::Method::POST {
            let mut pairs: Vec<(String, String)> = Vec::new();
            for (k, v) in params.pairs() {
                let forwarded = FORWARDED_SELECTION.contains(&k) || (!split && FORWARDED_FILTERS.contains(&k));
                if forwarded && (k != "id" || registered_ids.is_empty()) {
                    pairs.push((k.to_string(), v.to_string()));
                }
            }
            if !registered_ids.is_empty() {
                pairs.push(("id".into(), registered_ids.join(",")));
            }
            if !names.is_empty() {
                pairs.push(("attrs".into(), names.join(",")));
            }
            pairs.extend(distributed::forwarded_params_of_leg(leg));
            return Request {
                method: http::Method::GET,
                path: "/entities".into(),
                query: pairs,
                body: None,
                context: context.clone(),
            };
        }
        let mut body = match ngsi.json() {
            Ok(Value::Object(mut o)) if ngsi.method == http::Method::POST => {
                o.remove("@context");
                o
            }
            _ => {
                let types: Vec<Value> = params.list("type").into_iter().map(Value::String).collect();
                let mut o = Map::new();
                o.insert("type".into(), json!("Query"));
                o.insert("entities".into(), Value::Array(types.into_iter().map(|t| json!({"type": t})).collect()));
                o
            }
        };
        if !names.is_empty() {
            body.insert("attrs".into(), json!(names));
        }
        if split {
            for member in ["q", "scopeQ", "geoQ"] {
                body.remove(member);
            }
        }
        Request {
            method: http::Method::POST,
            path: "/entityOperations/query".into(),
            query: distributed::forwarded_params_of_leg(leg),
            body: Some(Value::Object(body)),
            context: context.clone(),
        }
    };
    let (remote, warnings) = distributed::read(state, ngsi, &plan, &rc.ctx, request).await;
    let known = page.entities.len();
    distributed::merge_entities(&mut page.entities, remote);
    // An entity only the sources know is kept if it matches the whole query here: with
    // `splitEntities` the sources were not given the filters.
    let mut index = 0;
    page.entities.retain(|e| {
        index += 1;
        index <= known || query.matches(e)
    });
    let kept = page.entities.len() - known;
    if let Some(total) = &mut page.count {
        *total += kept as u64;
    }
    Ok(warnings)
}

/// `prev`/`next` Link headers (§5.5.9) of entity queries.
pub fn add_page_links(
    response: &mut Response,
    path: &str,
    ngsi: &Ngsi,
    returned: usize,
    limit: usize,
    offset: usize,
    total: Option<u64>,
) {
    add_page_links_at(response, path, Accept::Json, ngsi, returned, limit, offset, total);
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
