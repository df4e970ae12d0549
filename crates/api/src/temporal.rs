//! The temporal API (§6.18–6.22 of V1.8): history of entities, in the temporal, simplified
//! temporal (`temporalValues`) or aggregated (`aggregatedValues`) representation.

use crate::AppState;
use crate::entities::{path_id, write_one};
use crate::entity_maps;
use crate::params::Params;
use crate::query::{self, add_page_links, page};
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use hanbat_model::parse::{self, Mode};
use hanbat_model::render::{self, Format, Options};
use hanbat_model::{AttrValue, Attribute, Context, NgsiError, Result};
use hanbat_store::{HistoryOp, HistoryOutcome, HistoryQuery, Status, TemporalEntity, WriteOp};
use hanbat_temporal::{AggrMethod, Aggregation, IsoDuration, TimeFilter, TimeProperty, TimeRel};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

const QUERY_PARAMS: &[&str] = &[
    "orderBy",
    "pick",
    "omit",
    "id",
    "idPattern",
    "type",
    "attrs",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "options",
    "format",
    "aggrMethods",
    "aggrPeriodDuration",
    "limit",
    "offset",
    "count",
    "lang",
    "local",
    "csf",
    "datasetId",
    "expandValues",
    "entityMap",
    "entityMapLifetime",
];

const OPTIONS: &[&str] = &["temporalValues", "aggregatedValues", "sysAttrs", "keyValues", "simplified", "concise"];

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    Temporal,
    TemporalValues,
    Aggregated,
}

pub(crate) struct View {
    representation: Representation,
    sys_attrs: bool,
    property: TimeProperty,
    /// `pick`/`omit`/`attrs` projection, as for entities.
    projection: crate::render::View,
}

fn time_and_view(params: &Params, ctx: &Context) -> Result<(TimeFilter, Option<Aggregation>, View)> {
    let options = params.list("options");
    if let Some(bad) = options.iter().find(|o| !OPTIONS.contains(&o.as_str())) {
        return Err(NgsiError::invalid_request(format!("options={bad} is not one of {}", OPTIONS.join(", "))));
    }
    let has = |o: &str| options.iter().any(|x| x == o);
    let property = params.get("timeproperty").map(TimeProperty::parse).transpose()?.unwrap_or_default();
    let rel = TimeRel::from_params(params.get("timerel"), params.get("timeAt"), params.get("endTimeAt"))?;
    let last_n = match params.get("lastN") {
        None => None,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(NgsiError::bad_data(format!("lastN must be a positive integer, not '{n}'"))),
        },
    };
    let representation = match params.get("format") {
        Some("temporalValues") => Representation::TemporalValues,
        Some("aggregatedValues") => Representation::Aggregated,
        Some("normalized") | None if has("aggregatedValues") => Representation::Aggregated,
        Some("normalized") | None if has("temporalValues") => Representation::TemporalValues,
        Some("simplified") | Some("keyValues") => Representation::TemporalValues,
        Some("normalized") | None => Representation::Temporal,
        Some(other) => {
            return Err(NgsiError::invalid_request(format!(
                "format={other} is not one of normalized, temporalValues, aggregatedValues"
            )));
        }
    };
    let aggregation = if representation == Representation::Aggregated {
        let methods = params.get("aggrMethods").ok_or_else(|| {
            NgsiError::bad_data("options=aggregatedValues needs aggrMethods (e.g. aggrMethods=avg,max)")
        })?;
        let period = params
            .get("aggrPeriodDuration")
            .map(|d| {
                IsoDuration::parse(d).map_err(|e| NgsiError::bad_data(format!("aggrPeriodDuration: {}", e.detail)))
            })
            .transpose()?
            .unwrap_or_default();
        Some(Aggregation { methods: AggrMethod::parse_list(methods)?, period })
    } else {
        // `format` wins over `options` (§6.3.7): aggregation parameters are then moot.
        None
    };
    // Linked entities (joins) have no temporal evolution of their own here.
    for name in ["pick", "omit", "attrs"] {
        if params.list(name).iter().any(|n| n.contains('{') || n.contains('}')) {
            return Err(NgsiError::bad_data(format!("{name}: linked-entity projections are not supported on history")));
        }
    }
    if let Some(csf) = params.get("csf") {
        hanbat_query::Query::parse(csf, ctx).map_err(|e| NgsiError::bad_data(format!("csf: {}", e.detail)))?;
    }
    let mut projection_params = params.clone();
    projection_params.remove("options");
    projection_params.remove("format");
    let projection = crate::render::View::from_params(&projection_params, ctx, &[])?;
    let view = View { representation, sys_attrs: has("sysAttrs"), property, projection };
    Ok((TimeFilter { property, rel, last_n }, aggregation, view))
}

/// System members that no attribute is named after: asking only for them selects nothing.
const SYSTEM_MEMBERS: [&str; 5] = ["createdAt", "modifiedAt", "deletedAt", "observedAt", "expiresAt"];

fn history_query(
    state: &AppState,
    params: &Params,
    ctx: &Context,
    select: hanbat_store::EntityQuery,
) -> Result<(HistoryQuery, View)> {
    if select.order.is_some() {
        // §6.18.3.2: temporal results are ordered by entity id only.
        return Err(NgsiError::bad_data("orderBy: a temporal query can be ordered by id only (id, id;desc)"));
    }
    let (time, aggregation, view) = time_and_view(params, ctx)?;
    let raw_attrs = params.list("attrs");
    if !raw_attrs.is_empty() && raw_attrs.iter().all(|a| SYSTEM_MEMBERS.contains(&a.as_str())) {
        return Err(NgsiError::bad_data(
            "attrs names only system members: the query would select every entity's whole history",
        ));
    }
    if select.q.as_ref().is_some_and(|q| q.link_depth() > 0) {
        return Err(NgsiError::bad_data("q: linked-entity terms are not supported on history"));
    }
    let attrs = params.names("attrs", ctx)?;
    let mut select = select;
    // `attrs` picks what to return; it does not exclude entities that lack them here.
    select.with_any_attr.clear();
    let max_instances = state.broker.limits.temporal_page;
    let dataset_ids = params.has("datasetId").then(|| params.list("datasetId"));
    let hq = HistoryQuery { select, attrs, dataset_ids, time, aggregation, skip_empty: true, max_instances };
    Ok((hq, view))
}

/// Renders one temporal entity.
fn render_entity(te: &TemporalEntity, ctx: &Context, view: &View, lang: Option<render::LangFilter>) -> Value {
    let options = Options { format: Format::Normalized, sys_attrs: view.sys_attrs, lang };
    let projected = TemporalEntity { entity: view.projection.project(&te.entity).into_owned(), ..te.clone() };
    let te = &projected;
    let mut out = match view.representation {
        Representation::Temporal => {
            // Each attribute is the list of its instances, even when there is one.
            let mut out = render::entity(&te.entity, ctx, &options);
            for name in te.entity.attrs.keys() {
                match out.get_mut(&ctx.compact(name)) {
                    Some(v) if !v.is_array() => *v = Value::Array(vec![v.take()]),
                    Some(_) => {}
                    // Cut away by pagination: present, empty (the next page has them).
                    None => {
                        out.insert(ctx.compact(name), Value::Array(Vec::new()));
                    }
                }
            }
            out
        }
        Representation::TemporalValues => {
            let mut head = te.entity.clone();
            head.attrs.clear();
            let mut out = render::entity(&head, ctx, &options);
            for (name, instances) in &te.entity.attrs {
                out.insert(ctx.compact(name), temporal_values(instances, ctx, view.property));
            }
            out
        }
        Representation::Aggregated => {
            let mut head = te.entity.clone();
            head.attrs.clear();
            let mut out = render::entity(&head, ctx, &options);
            for (name, aggr) in &te.aggregated {
                let mut attr = Map::new();
                attr.insert("type".into(), Value::String(aggr.kind.into()));
                for (method, rows) in &aggr.methods {
                    attr.insert(method.name().into(), Value::Array(rows.clone()));
                }
                out.insert(ctx.compact(name), Value::Object(attr));
            }
            out
        }
    };
    if !view.sys_attrs {
        out.remove("createdAt");
        out.remove("modifiedAt");
    }
    view.projection.trim_core(&mut out);
    Value::Object(out)
}

/// The simplified temporal representation of one attribute (§4.5.9): per datasetId, the kind
/// and `[value, instant]` pairs.
fn temporal_values(instances: &[Attribute], ctx: &Context, property: TimeProperty) -> Value {
    let mut by_dataset: indexmap::IndexMap<Option<&str>, Vec<&Attribute>> = indexmap::IndexMap::new();
    for a in instances {
        by_dataset.entry(a.dataset_id.as_deref()).or_default().push(a);
    }
    let groups: Vec<Value> = by_dataset
        .into_iter()
        .map(|(dataset, instances)| {
            let kind = instances.first().map(|a| a.value.type_name()).unwrap_or("Property");
            let member = match kind {
                "Relationship" => "objects",
                "LanguageProperty" => "languageMaps",
                "VocabProperty" => "vocabs",
                "ListProperty" => "valueLists",
                "ListRelationship" => "objectLists",
                "JsonProperty" => "jsons",
                _ => "values",
            };
            let pairs: Vec<Value> = instances
                .iter()
                .map(|a| {
                    let at = match property {
                        TimeProperty::ObservedAt => a.observed_at.as_ref(),
                        TimeProperty::DeletedAt => a.deleted_at.as_ref(),
                        TimeProperty::CreatedAt => a.created_at.as_ref(),
                        TimeProperty::ModifiedAt => a.modified_at.as_ref(),
                    }
                    .or(a.modified_at.as_ref())
                    .map(|t| t.to_text());
                    // Values that are JSON objects themselves keep their member name, so that a
                    // reader can tell them from a compound value.
                    let value = match &a.value {
                        AttrValue::LanguageProperty(m) => json!({ "languageMap": m }),
                        AttrValue::JsonProperty(j) => json!({ "json": j }),
                        // The simplified form of a VocabProperty is `{"vocab": …}` already.
                        _ => render::key_value(a, ctx, &Options::default()),
                    };
                    json!([value, at])
                })
                .collect();
            let mut g = Map::new();
            g.insert("type".into(), Value::String(kind.into()));
            g.insert(member.into(), Value::Array(pairs));
            if let Some(d) = dataset {
                g.insert("datasetId".into(), Value::String(d.into()));
            }
            Value::Object(g)
        })
        .collect();
    match <[Value; 1]>::try_from(groups) {
        Ok([one]) => one,
        // Cut away by pagination: the attribute stays, with no values.
        Err(none) if none.is_empty() => json!({ "type": "Property", "values": [] }),
        Err(many) => Value::Array(many),
    }
}

/// Sets 206 and `Content-Range: date-time <start>-<end>/<size>` when instances were cut
/// (§6.3.10): the range runs in traversal order from the window's edge (or the first instance
/// returned) to the last instance returned; the size is `lastN`, or `*` when unknown.
fn mark_partial(response: &mut axum::response::Response, entities: &[TemporalEntity], time: &TimeFilter) {
    let Some(page) = entities.iter().find_map(|e| e.page) else { return };
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let start = match (page.descending, time.rel) {
        (true, Some(TimeRel::Between(_, end))) => end,
        (true, Some(TimeRel::Before(at))) => at,
        (false, Some(TimeRel::After(at) | TimeRel::Between(at, _))) => at,
        _ => page.first,
    };
    let size = time.last_n.map_or_else(|| "*".to_string(), |n| n.to_string());
    let range = format!(
        "date-time {}-{}/{size}",
        hanbat_model::time::format_micros(start),
        hanbat_model::time::format_micros(page.last)
    );
    if let Ok(v) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(http::header::CONTENT_RANGE, v);
    }
}

async fn run_query(
    state: &AppState,
    ngsi: &Ngsi,
    rc: RequestContext,
    accept: Accept,
    hq: HistoryQuery,
    view: View,
    path: &str,
) -> ApiResult {
    state.require_tenant(&ngsi.tenant).await?;
    let map_request = entity_maps::requested(state, ngsi).await?;
    let (hq, map) = entity_maps::history_select(state, &ngsi.tenant, map_request, hq).await?;
    let page = state.broker.store.history(&ngsi.tenant, &hq).await?;
    let lang = ngsi.params.get("lang").map(render::LangFilter::parse);
    let body = Value::Array(page.entities.iter().map(|te| render_entity(te, &rc.ctx, &view, lang.clone())).collect());
    let mut response = response::body(&rc, accept, StatusCode::OK, body, false);
    if let Some(total) = page.count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    if let Some(map) = &map {
        map.mark_query(&mut response);
    }
    let links = map.as_ref().map(|m| m.link_request(ngsi));
    let links = links.as_ref().unwrap_or(ngsi);
    add_page_links(&mut response, path, links, page.entities.len(), hq.select.limit, hq.select.offset, page.count);
    mark_partial(&mut response, &page.entities, &hq.time);
    Ok(response)
}

/// `GET /temporal/entities`
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let (hq, view) = query_from_params(&state, &ngsi.params, &rc.ctx)?;
    run_query(&state, &ngsi, rc, accept, hq, view, "/ngsi-ld/v1/temporal/entities").await
}

/// The history query of `GET /temporal/entities` parameters (also what a temporal entity map
/// is made of).
pub(crate) fn query_from_params(state: &AppState, p: &Params, ctx: &Context) -> Result<(HistoryQuery, View)> {
    // §5.7.4: a temporal query names entity types or attributes (or filters); ids alone are not
    // enough.
    if !["type", "attrs", "q", "georel", "scopeQ"].iter().any(|n| p.has(n)) && !p.flag("local")? {
        return Err(NgsiError::bad_data("a temporal query needs type, attrs, q, a geo-query, scopeQ or local=true"));
    }
    let (mut select, _) = query::query_from_params(p, ctx)?;
    let (limit, offset) = page(state, p)?;
    (select.limit, select.offset, select.count) = (limit, offset, p.flag("count")?);
    history_query(state, p, ctx, select)
}

/// `POST /temporal/entityOperations/query`
pub async fn query_post(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "lang",
        "local",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
        "entityMap",
        "entityMapLifetime",
    ])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let (rc, mut body) = ngsi.object_body(&state).await?;
    // `temporalQ` is what makes this a temporal query; the entity part is an ordinary Query,
    // which refuses it.
    let temporal_q = body.remove("temporalQ");
    let mut select = query::query_from_body(&body, &rc.ctx)?;
    let (limit, offset) = page(&state, &ngsi.params)?;
    (select.limit, select.offset, select.count) = (limit, offset, ngsi.params.flag("count")?);
    // The temporal part of a Query body (`temporalQ`) maps onto the URI parameters' names.
    let mut params = ngsi.params.clone();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    };
    if let Some(tq) = &temporal_q {
        let Value::Object(tq) = tq else {
            return Err(NgsiError::bad_data("temporalQ must be an object (timerel, timeAt, …)").into());
        };
        for (k, v) in tq {
            params.push(k, &text(v));
        }
        // §5.2.21: aggregation methods in temporalQ ask for the aggregated representation.
        if tq.contains_key("aggrMethods") {
            params.push("options", "aggregatedValues");
        }
    }
    // `aggrParams` (§5.2.44) asks for the aggregated representation.
    if let Some(aggr) = body.get("aggrParams") {
        let Value::Object(aggr) = aggr else {
            return Err(NgsiError::bad_data("aggrParams must be an object with aggrMethods").into());
        };
        for (k, v) in aggr {
            params.push(k, &text(v));
        }
        params.push("options", "aggregatedValues");
    }
    // The Query's `attrs` pick what to return, as the `attrs` parameter does (history_query
    // clears them from the selection).
    let attrs = select.with_any_attr.clone();
    let (mut hq, view) = history_query(&state, &params, &rc.ctx, select)?;
    hq.attrs = attrs;
    run_query(&state, &ngsi, rc, accept, hq, view, "/ngsi-ld/v1/temporal/entityOperations/query").await
}

/// `GET /temporal/entities/{id}`
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let id = path_id(&id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let select = hanbat_store::EntityQuery {
        entities: vec![hanbat_store::EntitySelector { ids: vec![id.clone()], ..Default::default() }],
        limit: 1,
        ..Default::default()
    };
    let (mut hq, view) = history_query(&state, &ngsi.params, &rc.ctx, select)?;
    hq.skip_empty = false;
    state.require_tenant(&ngsi.tenant).await?;
    let page = state.broker.store.history(&ngsi.tenant, &hq).await?;
    let te = page
        .entities
        .first()
        .ok_or_else(|| NgsiError::not_found(format!("entity '{id}' has no temporal representation")))?;
    // Attributes asked for (attrs, pick, omit) that select nothing: nothing to return.
    let asked = !hq.attrs.is_empty() || ngsi.params.has("pick") || ngsi.params.has("omit");
    if asked && view.projection.project(&te.entity).attrs.is_empty() && te.aggregated.is_empty() {
        return Err(NgsiError::not_found(format!("entity '{id}' has no history of the attributes asked for")).into());
    }
    let lang = ngsi.params.get("lang").map(render::LangFilter::parse);
    let mut response = response::body(&rc, accept, StatusCode::OK, render_entity(te, &rc.ctx, &view, lang), false);
    if let Some(map) = entity_maps::for_retrieve(&state, &ngsi, &id).await? {
        map.mark(&mut response);
    }
    mark_partial(&mut response, &page.entities, &hq.time);
    Ok(response)
}

async fn write(state: &AppState, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome> {
    state.broker.store.write_history(tenant, op).await
}

/// `POST /temporal/entities`: instances over time; the entity is created or updated with the
/// latest instance of each attribute (as Stellio does), history records them all.
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let entity = parse::entity(body, &rc.ctx, Mode::Temporal)?;
    let id = entity.id.clone();
    let applied = write_one(&state, &ngsi.tenant, WriteOp::Temporal { entity, create: true }).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(match applied.outcome.status {
        Status::Created => response::created(&format!("/ngsi-ld/v1/temporal/entities/{id}")),
        _ => response::no_content(),
    })
}

/// `DELETE /temporal/entities/{id}`
/// The temporal representation and the entity it describes go together (creating one creates
/// the other), so both are deleted.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    state.require_tenant(&ngsi.tenant).await?;
    let entity_deleted = write_one(&state, &ngsi.tenant, WriteOp::Delete { id: id.clone() }).await.is_ok();
    match write(&state, &ngsi.tenant, HistoryOp::DeleteEntity { id }).await {
        Err(e) if !(entity_deleted && e.kind == hanbat_model::ErrorKind::ResourceNotFound) => Err(e.into()),
        _ => Ok(response::no_content()),
    }
}

/// `POST /temporal/entities/{id}/attrs`
pub async fn add_attrs(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (rc, mut body) = ngsi.object_body(&state).await?;
    body.insert("id".into(), Value::String(id.clone()));
    body.entry("type").or_insert_with(|| Value::String("_".into()));
    let mut fragment = parse::entity(body, &rc.ctx, Mode::Temporal)?;
    fragment.types.clear();
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::Temporal { entity: fragment, create: false }).await?;
    Ok(response::no_content())
}

/// An attribute name from a path: a valid name or an IRI; never a dot segment, however
/// encoded (it would address another resource).
fn path_attr(attr: &str) -> Result<()> {
    let decoded = percent_encoding::percent_decode_str(attr).decode_utf8_lossy();
    let decoded = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
    if attr.is_empty() || decoded == "." || decoded == ".." {
        return Err(NgsiError::bad_data(format!("'{attr}' is not a valid attribute name")));
    }
    if parse::is_uri(attr) { Ok(()) } else { parse::validate_name(attr) }
}

/// An instance id from a path: a URI.
fn path_instance(instance: &str) -> Result<()> {
    if parse::is_uri(instance) {
        Ok(())
    } else {
        Err(NgsiError::bad_data(format!("instanceId '{instance}' is not a URI")))
    }
}

/// `DELETE /temporal/entities/{id}/attrs/{attrId}`
pub async fn delete_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["datasetId", "deleteAll", "local"])?;
    let id = path_id(&id)?;
    path_attr(&attr)?;
    let rc = ngsi.context(&state).await?;
    let dataset_id = ngsi.params.get("datasetId").map(str::to_string);
    let all = ngsi.params.flag("deleteAll")?;
    state.require_tenant(&ngsi.tenant).await?;
    let op = HistoryOp::DeleteAttr { id, attr: rc.ctx.expand(&attr), dataset_id, all };
    write(&state, &ngsi.tenant, op).await?;
    Ok(response::no_content())
}

/// `PATCH /temporal/entities/{id}/attrs/{attrId}/{instanceId}`
pub async fn patch_instance(
    State(state): State<AppState>,
    Path((id, attr, instance_id)): Path<(String, String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    // `…/attrs//{instanceId}` names no attribute: it reads as the attribute resource
    // `…/attrs/{attrId}`, which takes no PATCH (405, as the conformance suite's 016_02_06 has it).
    if attr.is_empty() {
        return Err(NgsiError::new(
            hanbat_model::ErrorKind::MethodNotAllowed,
            "PATCH needs an attribute and an instance: /temporal/entities/{entityId}/attrs/{attrId}/{instanceId}",
        )
        .into());
    }
    path_attr(&attr)?;
    path_instance(&instance_id)?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let name = rc.ctx.expand(&attr);
    // The body is an attribute fragment, named or not (`{"speed": {...}}` or `{...}`).
    let value = match body.get(&attr).or_else(|| body.iter().find(|(k, _)| rc.ctx.expand(k) == name).map(|(_, v)| v)) {
        Some(v) => v.clone(),
        None => Value::Object(body),
    };
    let mut instances = parse::attribute(&attr, value, &rc.ctx, Mode::Fragment)?;
    let fragment = instances.pop().ok_or_else(|| NgsiError::bad_data("the body holds no attribute instance"))?;
    state.require_tenant(&ngsi.tenant).await?;
    write(&state, &ngsi.tenant, HistoryOp::PatchInstance { id, attr: name, instance_id, fragment: Box::new(fragment) })
        .await?;
    Ok(response::no_content())
}

/// `DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId}`
pub async fn delete_instance(
    State(state): State<AppState>,
    Path((id, attr, instance_id)): Path<(String, String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    path_attr(&attr)?;
    path_instance(&instance_id)?;
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write(&state, &ngsi.tenant, HistoryOp::DeleteInstance { id, attr: rc.ctx.expand(&attr), instance_id }).await?;
    Ok(response::no_content())
}
