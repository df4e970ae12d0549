//! Distributed operations in the HTTP binding (§4.3.6): each entity handler asks [`plan`]
//! whether registered context sources hold part of what the request touches; if so, the
//! request is split into the broker's own part and one forwarded request per source, and the
//! answers combine into one ([`write`] for writes, [`merge_entities`] for reads).
//!
//! Choices where the spec leaves room, as Orion-LD and the ETSI suite expect them:
//! - a read never fails because of a source: its failure becomes an `NGSILD-Warning`;
//! - a write with several parts answers 207 when any part failed, listing each failure with
//!   the registration that caused it; a write with a single part answers as that part did.

use crate::AppState;
use crate::request::{Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use axum::response::{IntoResponse, Response};
use hanbat_csource::matching::RegQuery;
use hanbat_csource::{Mode as RegMode, Registration};
use hanbat_federation::{Attrs, Inbound, Leg, Operation, Plan, Reply, Request, Target};
use hanbat_model::parse::{self, Mode};
use hanbat_model::{Context, Entity, ErrorKind, NgsiError, Result};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::future::Future;

/// The sources `op` on `target` concerns, or `None` when the broker answers alone: no
/// registration applies, the client asked for local data only (`local=true`), or the request
/// has already passed through this broker.
pub async fn plan(
    state: &AppState,
    ngsi: &Ngsi,
    op: Operation,
    target: Target<'_>,
    prefilter: &RegQuery,
) -> Result<Option<Plan>> {
    let registrations = registrations(state, ngsi, prefilter).await?;
    plan_among(state, ngsi, registrations, op, target)
}

/// Whether the request may concern context sources: the tenant has registrations and the
/// client did not ask for local data only (`local=true`). Handlers ask it before building
/// what a plan needs, so that a broker without registrations pays one lookup per request.
pub fn may_forward(state: &AppState, ngsi: &Ngsi) -> Result<bool> {
    let (Some(csources), Some(_)) = (&state.csources, &state.forwarder) else { return Ok(false) };
    Ok(csources.any(&ngsi.tenant) && !ngsi.params.flag("local")?)
}

/// The tenant's live registrations that `prefilter` selects; none when the request is for
/// local data only.
pub async fn registrations(state: &AppState, ngsi: &Ngsi, prefilter: &RegQuery) -> Result<Vec<Registration>> {
    match &state.csources {
        Some(csources) if may_forward(state, ngsi)? => Ok(csources.query(&ngsi.tenant, prefilter).await),
        _ => Ok(Vec::new()),
    }
}

/// [`plan`] among registrations already read (a batch plans each of its entities).
pub fn plan_among(
    state: &AppState,
    ngsi: &Ngsi,
    registrations: Vec<Registration>,
    op: Operation,
    target: Target<'_>,
) -> Result<Option<Plan>> {
    let Some(forwarder) = &state.forwarder else { return Ok(None) };
    if registrations.is_empty() {
        return Ok(None);
    }
    let plan = Plan::new(registrations, op, &target);
    if plan.is_empty() {
        return Ok(None);
    }
    if forwarder.loops(Inbound { headers: &ngsi.headers }) {
        // Additive sources can be left out; a proxied one holds data the broker cannot serve.
        if plan.forward.iter().chain(&plan.refused).any(Leg::proxied) {
            return Err(NgsiError::new(
                ErrorKind::LoopDetected,
                "the request has already passed through this broker (Via) and would be forwarded to the same context sources again",
            ));
        }
        return Ok(None);
    }
    Ok(Some(plan))
}

/// The URL of the @context the client's names are compacted with: what the forwarded request
/// names in its `Link` header, so that the source reads the names as the client meant them.
pub fn context_url(rc: &RequestContext) -> String {
    match &rc.value {
        Value::String(url) => url.clone(),
        Value::Array(items) => items.first().and_then(Value::as_str).unwrap_or(&rc.link_url).to_string(),
        _ => rc.link_url.clone(),
    }
}

/// The client's query parameters, forwarded as they came (`local` is the client's own choice
/// about this broker), with those the leg adds ([`forwarded_params_of_leg`]).
pub fn forwarded_params(ngsi: &Ngsi, leg: &Leg) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        ngsi.params.pairs().filter(|(k, _)| *k != "local").map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.extend(forwarded_params_of_leg(leg));
    out
}

/// `local=true` for sources registered as `localOnly`: they must not forward further.
pub fn forwarded_params_of_leg(leg: &Leg) -> Vec<(String, String)> {
    if local_only(leg) { vec![("local".into(), "true".into())] } else { Vec::new() }
}

/// `management.localOnly` (§5.2.30); also accepted at the registration's root, where some
/// clients put it.
fn local_only(leg: &Leg) -> bool {
    let reg = &leg.registration;
    let flag = |v: &Value| v.as_bool().or_else(|| v.get("value").and_then(Value::as_bool)).unwrap_or(false);
    reg.management.as_ref().and_then(|m| m.get("localOnly")).is_some_and(flag)
        || reg.properties.iter().any(|(k, v)| k.ends_with("localOnly") && flag(v))
}

/// One entity of the client's body as a source receives it: as sent, without `@context` and
/// without the attributes the source does not hold.
pub fn object_for(object: &Map<String, Value>, ctx: &Context, attrs: &Attrs) -> Map<String, Value> {
    object
        .iter()
        .filter(|(k, _)| match k.as_str() {
            "@context" => false,
            "id" | "@id" | "type" | "@type" | "scope" => true,
            name => attrs.contains(&ctx.expand(name)),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The client's JSON body for one source (see [`object_for`]); an array body is filtered
/// entity by entity.
pub fn body_for(ngsi: &Ngsi, ctx: &Context, leg: &Leg) -> Option<Value> {
    match ngsi.json().ok()? {
        Value::Object(o) => Some(Value::Object(object_for(&o, ctx, &leg.attrs))),
        other => Some(other),
    }
}

/// Runs a write: the broker's own part (`local`, when `run_local`) and one forwarded request
/// per source, all at once, and answers as one (see the module's documentation).
#[allow(clippy::too_many_arguments)]
pub async fn write(
    state: &AppState,
    ngsi: &Ngsi,
    plan: &Plan,
    entity_id: &str,
    local: impl Future<Output = ApiResult>,
    run_local: bool,
    request: impl Fn(&Leg) -> Request,
    success: impl FnOnce() -> Response,
) -> ApiResult {
    let Some(forwarder) = &state.forwarder else { return local.await };
    let requests = plan.forward.iter().map(|leg| (leg, request(leg))).collect();
    let local = async { if run_local { Some(local.await.unwrap_or_else(IntoResponse::into_response)) } else { None } };
    let (local, replies) = tokio::join!(local, forwarder.send_all(requests, Inbound { headers: &ngsi.headers }));
    Ok(combine(entity_id, local, &replies, &plan.refused, success))
}

/// Whether a local part's answer is a success: a 2xx other than a partial 207.
fn local_succeeded(response: &Response) -> bool {
    response.status().is_success() && response.status() != StatusCode::MULTI_STATUS
}

fn conflict(leg: &Leg) -> NgsiError {
    NgsiError::new(
        ErrorKind::Conflict,
        format!(
            "registration '{}' ({}) holds this data and does not support the operation",
            leg.registration.id,
            leg.registration.mode.as_str()
        ),
    )
}

fn combine(
    entity_id: &str,
    local: Option<Response>,
    replies: &[Reply],
    refused: &[Leg],
    success: impl FnOnce() -> Response,
) -> Response {
    let parts = usize::from(local.is_some()) + replies.len() + refused.len();
    let failed = local.as_ref().is_some_and(|r| !local_succeeded(r))
        || replies.iter().any(|r| !r.succeeded())
        || !refused.is_empty();
    if !failed {
        return local.unwrap_or_else(success);
    }
    if parts == 1 {
        if let Some(local) = local {
            return local;
        }
        if let Some(leg) = refused.first() {
            return crate::response::ApiError::from(conflict(leg)).into_response();
        }
        if let Some(reply) = replies.first() {
            return response::plain_json(reply.status(), &reply.problem());
        }
    }
    let mut errors = Vec::new();
    let mut success = Vec::new();
    if let Some(local) = &local {
        if local_succeeded(local) {
            success.push(json!(entity_id));
        } else {
            let error = hanbat_federation::problem_for(
                local.status(),
                format!("the broker's own part of the operation answered {}", local.status()),
            );
            errors.push(json!({"entityId": entity_id, "error": error}));
        }
    }
    for reply in replies {
        if reply.succeeded() {
            success.push(json!(entity_id));
        } else {
            errors.push(
                json!({"entityId": entity_id, "registrationId": reply.registration_id, "error": reply.problem()}),
            );
        }
    }
    for leg in refused {
        errors.push(json!({"entityId": entity_id, "registrationId": leg.registration.id,
            "error": conflict(leg).to_problem_details()}));
    }
    response::plain_json(StatusCode::MULTI_STATUS, &json!({"success": success, "errors": errors}))
}

/// The entities the sources of a read answered, each kept to the attributes its source
/// provides, with the warnings for the sources that failed. Entities are read with the
/// client's @context, the one the forwarded request named.
pub async fn read(
    state: &AppState,
    ngsi: &Ngsi,
    plan: &Plan,
    ctx: &Context,
    request: impl Fn(&Leg) -> Request,
) -> (Vec<(RegMode, Entity)>, Vec<String>) {
    let Some(forwarder) = &state.forwarder else { return (Vec::new(), Vec::new()) };
    let requests = plan.forward.iter().map(|leg| (leg, request(leg))).collect();
    let replies = forwarder.send_all(requests, Inbound { headers: &ngsi.headers }).await;
    let mut entities = Vec::new();
    let mut warnings = Vec::new();
    for (leg, reply) in plan.forward.iter().zip(&replies) {
        let answer = reply.read();
        warnings.extend(answer.warning);
        for object in answer.entities {
            match parse::entity(object, ctx, Mode::Entity) {
                Ok(mut entity) => {
                    entity.attrs.retain(|name, _| leg.attrs.contains(name));
                    entities.push((leg.registration.mode, entity));
                }
                Err(e) => warnings.push(format!(
                    "111 {} \"an entity of the answer is invalid: {}\"",
                    reply.registration_id,
                    e.detail.replace('"', "'")
                )),
            }
        }
    }
    (entities, warnings)
}

/// Merges what sources answered into the broker's own entities, by id: an attribute the
/// broker (or an earlier source) has wins, and auxiliary sources only fill gaps (§4.3.6.2).
/// Entities only the sources know are appended.
pub fn merge_entities(local: &mut Vec<Entity>, mut remote: Vec<(RegMode, Entity)>) {
    remote.sort_by_key(|(mode, _)| *mode == RegMode::Auxiliary);
    for (_, entity) in remote {
        match local.iter_mut().find(|e| e.id == entity.id) {
            Some(known) => {
                for t in entity.types {
                    if !known.types.contains(&t) {
                        known.types.push(t);
                    }
                }
                for (name, instances) in entity.attrs {
                    known.attrs.entry(name).or_insert(instances);
                }
            }
            None => local.push(entity),
        }
    }
}

/// Adds the sources' warnings to a response (§6.3.17).
pub fn warn(response: &mut Response, warnings: &[String]) {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(w) {
            response.headers_mut().append("NGSILD-Warning", v);
        }
    }
}

/// The entity read a source is asked for, by the first operation it supports: retrieve by id,
/// else a query by id and the registered type, else a query by POST.
pub fn retrieve_request(leg: &Leg, id: &str, ctx: &Context, attrs: &[String], context: &str) -> Request {
    let names: Vec<String> = leg.attrs.narrow(attrs).iter().map(|n| ctx.compact(n)).collect();
    let registered_type = leg
        .registration
        .information
        .iter()
        .flat_map(|i| &i.entities)
        .find(|e| e.id.as_deref().is_none_or(|r| r == id))
        .map(|e| ctx.compact(&e.entity_type));
    let mut query = forwarded_params_of_leg(leg);
    let request =
        |method, path: String, query, body| Request { method, path, query, body, context: context.to_string() };
    if Operation::RetrieveEntity.supported_by(&leg.registration) || registered_type.is_none() {
        if !names.is_empty() {
            query.push(("attrs".into(), names.join(",")));
        }
        return request(http::Method::GET, format!("/entities/{id}"), query, None);
    }
    let ty = registered_type.unwrap_or_default();
    if Operation::QueryEntity.supported_by(&leg.registration) {
        query.extend([("id".to_string(), id.to_string()), ("type".to_string(), ty)]);
        if !names.is_empty() {
            query.push(("attrs".into(), names.join(",")));
        }
        return request(http::Method::GET, "/entities".into(), query, None);
    }
    let mut body = json!({"type": "Query", "entities": [{"id": id, "type": ty}]});
    if !names.is_empty() {
        body["attrs"] = json!(names);
    }
    request(http::Method::POST, "/entityOperations/query".into(), query, Some(body))
}
