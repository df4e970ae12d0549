//! The temporal API (§6.18–6.22 of V1.8): history of entities, in the temporal, simplified
//! temporal (`temporalValues`) or aggregated (`aggregatedValues`) representation.

use crate::AppState;
use crate::entities::path_id;
use crate::params::Params;
use crate::query::{self, add_page_links, page};
use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::extract::{Path, State};
use hanbat_model::parse::{self, Mode};
use hanbat_model::render::{self, Format, Options};
use hanbat_model::{AttrValue, Attribute, Context, NgsiError, Result};
use hanbat_store::{HistoryOp, HistoryOutcome, HistoryQuery, TemporalEntity};
use hanbat_temporal::{AggrMethod, Aggregation, IsoDuration, TimeFilter, TimeProperty, TimeRel};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

const QUERY_PARAMS: &[&str] = &[
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
];

const OPTIONS: &[&str] = &["temporalValues", "aggregatedValues", "sysAttrs", "keyValues", "simplified", "concise"];

/// Instances per attribute in one response; more are cut and the response says so (206 with
/// Content-Range), so that no query can exhaust memory.
const MAX_INSTANCES: usize = 10_000;

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    Temporal,
    TemporalValues,
    Aggregated,
}

struct View {
    representation: Representation,
    sys_attrs: bool,
    property: TimeProperty,
}

fn time_and_view(params: &Params) -> Result<(TimeFilter, Option<Aggregation>, View)> {
    let options = params.options(OPTIONS)?;
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
            return Err(NgsiError::bad_data(format!(
                "format={other} is not one of normalized, temporalValues, aggregatedValues"
            )));
        }
    };
    let aggregation = if representation == Representation::Aggregated {
        let methods = params.get("aggrMethods").ok_or_else(|| {
            NgsiError::bad_data("options=aggregatedValues needs aggrMethods (e.g. aggrMethods=avg,max)")
        })?;
        let period = params.get("aggrPeriodDuration").map(IsoDuration::parse).transpose()?.unwrap_or_default();
        Some(Aggregation { methods: AggrMethod::parse_list(methods)?, period })
    } else {
        if params.has("aggrMethods") || params.has("aggrPeriodDuration") {
            return Err(NgsiError::bad_data("aggrMethods and aggrPeriodDuration need options=aggregatedValues"));
        }
        None
    };
    let view = View { representation, sys_attrs: has("sysAttrs"), property };
    Ok((TimeFilter { property, rel, last_n }, aggregation, view))
}

fn history_query(params: &Params, ctx: &Context, select: hanbat_store::EntityQuery) -> Result<(HistoryQuery, View)> {
    let (time, aggregation, view) = time_and_view(params)?;
    let attrs = params.names("attrs", ctx)?;
    let mut select = select;
    // `attrs` picks what to return; it does not exclude entities that lack them here.
    select.with_any_attr.clear();
    Ok((HistoryQuery { select, attrs, time, aggregation, max_instances: MAX_INSTANCES }, view))
}

/// Renders one temporal entity.
fn render_entity(te: &TemporalEntity, ctx: &Context, view: &View, lang: Option<render::LangFilter>) -> Value {
    let options = Options { format: Format::Normalized, sys_attrs: view.sys_attrs, lang };
    let mut out = match view.representation {
        Representation::Temporal => render::entity(&te.entity, ctx, &options),
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
                    let value = match &a.value {
                        AttrValue::LanguageProperty(m) => Value::Object(m.clone()),
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
        Err(many) => Value::Array(many),
    }
}

/// Sets 206 + Content-Range when instances were cut.
fn mark_partial(response: &mut axum::response::Response, entities: &[TemporalEntity]) {
    if !entities.iter().any(|e| e.truncated) {
        return;
    }
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let (lo, hi) =
        entities.iter().filter_map(|e| e.range).fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
    if lo <= hi {
        let range =
            format!("date-time {}-{}/*", hanbat_model::time::format_micros(lo), hanbat_model::time::format_micros(hi));
        if let Ok(v) = HeaderValue::from_str(&range) {
            response.headers_mut().insert(http::header::CONTENT_RANGE, v);
        }
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
    let page = state.broker.store.history(&ngsi.tenant, &hq).await?;
    let lang = ngsi.params.get("lang").map(render::LangFilter::parse);
    let body = Value::Array(page.entities.iter().map(|te| render_entity(te, &rc.ctx, &view, lang.clone())).collect());
    let mut response = response::body(&rc, accept, StatusCode::OK, body, false);
    if let Some(total) = page.count {
        response.headers_mut().insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    add_page_links(&mut response, path, ngsi, page.entities.len(), hq.select.limit, hq.select.offset, page.count);
    mark_partial(&mut response, &page.entities);
    Ok(response)
}

/// `GET /temporal/entities`
pub async fn query(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(QUERY_PARAMS)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let rc = ngsi.context(&state).await?;
    let (mut select, _) = query::query_from_params(&ngsi.params, &rc.ctx)?;
    let (limit, offset) = page(&state, &ngsi.params)?;
    (select.limit, select.offset, select.count) = (limit, offset, ngsi.params.flag("count")?);
    let (hq, view) = history_query(&ngsi.params, &rc.ctx, select)?;
    run_query(&state, &ngsi, rc, accept, hq, view, "/ngsi-ld/v1/temporal/entities").await
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
    ])?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let mut select = query::query_from_body(&body, &rc.ctx)?;
    let (limit, offset) = page(&state, &ngsi.params)?;
    (select.limit, select.offset, select.count) = (limit, offset, ngsi.params.flag("count")?);
    // The temporal part of a Query body (`temporalQ`) maps onto the URI parameters' names.
    let mut params = ngsi.params.clone();
    if let Some(Value::Object(tq)) = body.get("temporalQ") {
        for (k, v) in tq {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            params.push(k, &v);
        }
    }
    let (mut hq, view) = history_query(&params, &rc.ctx, select)?;
    hq.attrs = hq.select.with_any_attr.clone();
    hq.select.with_any_attr.clear();
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
    let (hq, view) = history_query(&ngsi.params, &rc.ctx, select)?;
    state.require_tenant(&ngsi.tenant).await?;
    let page = state.broker.store.history(&ngsi.tenant, &hq).await?;
    let te = page
        .entities
        .first()
        .ok_or_else(|| NgsiError::not_found(format!("entity '{id}' has no temporal representation")))?;
    let lang = ngsi.params.get("lang").map(render::LangFilter::parse);
    let mut response = response::body(&rc, accept, StatusCode::OK, render_entity(te, &rc.ctx, &view, lang), false);
    mark_partial(&mut response, &page.entities);
    Ok(response)
}

async fn write(state: &AppState, tenant: &str, op: HistoryOp) -> Result<HistoryOutcome> {
    state.broker.store.write_history(tenant, op).await
}

/// `POST /temporal/entities`
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let entity = parse::entity(body, &rc.ctx, Mode::Temporal)?;
    let id = entity.id.clone();
    let outcome = write(&state, &ngsi.tenant, HistoryOp::Upsert(entity)).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(match outcome {
        HistoryOutcome::Created => response::created(&format!("/ngsi-ld/v1/temporal/entities/{id}")),
        HistoryOutcome::Updated => response::no_content(),
    })
}

/// `DELETE /temporal/entities/{id}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    state.require_tenant(&ngsi.tenant).await?;
    write(&state, &ngsi.tenant, HistoryOp::DeleteEntity { id }).await?;
    Ok(response::no_content())
}

/// `POST /temporal/entities/{id}/attrs`
pub async fn add_attrs(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (rc, mut body) = ngsi.object_body(&state).await?;
    body.insert("id".into(), Value::String(id.clone()));
    body.entry("type").or_insert_with(|| Value::String("_".into()));
    let fragment = parse::entity(body, &rc.ctx, Mode::Temporal)?;
    state.require_tenant(&ngsi.tenant).await?;
    write(&state, &ngsi.tenant, HistoryOp::AddAttrs { id, attrs: fragment.attrs }).await?;
    Ok(response::no_content())
}

/// `DELETE /temporal/entities/{id}/attrs/{attrId}`
pub async fn delete_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["datasetId", "deleteAll", "local"])?;
    let id = path_id(&id)?;
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
    let rc = ngsi.context(&state).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write(&state, &ngsi.tenant, HistoryOp::DeleteInstance { id, attr: rc.ctx.expand(&attr), instance_id }).await?;
    Ok(response::no_content())
}
