//! `/entityOperations/{create,upsert,update,delete,merge}` (§6.14–6.18, §6.31 of V1.8): many
//! entities in one request and one transaction, with a result per entity.
//!
//! An entity that fails validation is reported in `errors` and does not stop the others; the
//! valid ones go to the store as one batch (one commit).

use crate::request::{BodyType, Ngsi};
use crate::response::{self, ApiResult};
use crate::{AppState, distributed};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hanbat_csource::Registration;
use hanbat_csource::matching::RegQuery;
use hanbat_federation::{Inbound, Leg, Operation, Reply, Request, Target};
use hanbat_model::parse::{self, Mode};
use hanbat_model::{Entity, NgsiError, Result};
use hanbat_store::{Status, WriteOp};
use http::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Upsert,
    Update,
    Merge,
    Delete,
}

/// The batch kinds whose elements are entities (all but delete, whose elements are ids).
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntityKind {
    Create,
    Upsert,
    Update,
    Merge,
}

/// Per-entity result collection.
#[derive(Default)]
struct Results {
    success: Vec<String>,
    created: Vec<String>,
    errors: Vec<Value>,
}

impl Results {
    fn error(&mut self, id: Option<String>, err: &NgsiError) {
        self.errors.push(json!({ "entityId": id.unwrap_or_default(), "error": err.to_problem_details() }));
    }
}

fn entity_id_of(v: &Value) -> Option<String> {
    v.get("id").or_else(|| v.get("@id")).and_then(Value::as_str).map(str::to_string)
}

async fn batch(state: &AppState, ngsi: &Ngsi, kind: Kind) -> ApiResult {
    let allowed: &[&str] = match kind {
        Kind::Upsert | Kind::Update => &["options", "local"],
        _ => &["local", "options"],
    };
    ngsi.params.allow(allowed)?;
    let options = match kind {
        Kind::Upsert => ngsi.params.options(&["replace", "update"])?,
        Kind::Update => ngsi.params.options(&["noOverwrite", "replace"])?,
        _ => ngsi.params.options(&[])?,
    };
    let body_type = ngsi.body_type()?;
    // §6.3.5 applies to the request as a whole, not per entity.
    ngsi.link_for_body(body_type)?;
    let Value::Array(items) = ngsi.json()? else {
        return Err(NgsiError::bad_data("the body of a batch operation must be a JSON array").into());
    };
    if items.is_empty() {
        return Err(NgsiError::bad_data("the batch is empty").into());
    }
    if let Some(i) = items.iter().position(Value::is_null) {
        return Err(NgsiError::bad_data(format!("element {i} of the batch is null")).into());
    }
    let mut results = Results::default();
    let mut ops = Vec::with_capacity(items.len());
    let registrations = distributed::registrations(state, ngsi, &RegQuery::default()).await?;
    let mut sources = Sources::default();
    for item in items {
        let id = if kind == Kind::Delete { item.as_str().map(str::to_string) } else { entity_id_of(&item) };
        let raw = (!registrations.is_empty()).then(|| item.clone());
        let op = match kind {
            Kind::Delete => delete_op(item),
            Kind::Create => entity_op(state, ngsi, body_type, EntityKind::Create, &options, item).await,
            Kind::Upsert => entity_op(state, ngsi, body_type, EntityKind::Upsert, &options, item).await,
            Kind::Update => entity_op(state, ngsi, body_type, EntityKind::Update, &options, item).await,
            Kind::Merge => entity_op(state, ngsi, body_type, EntityKind::Merge, &options, item).await,
        };
        match op {
            Ok(mut op) => {
                let local = match raw {
                    Some(raw) => sources.add(state, ngsi, body_type, &registrations, kind, &mut op, raw).await?,
                    None => true,
                };
                if local {
                    ops.push(op);
                }
            }
            Err(e) => results.error(id, &e),
        }
    }
    if kind != Kind::Create && kind != Kind::Upsert && sources.is_empty() {
        state.require_tenant(&ngsi.tenant).await?;
    }
    let ids: Vec<String> = ops.iter().map(|o| o.entity_id().to_string()).collect();
    let (written, replies) = tokio::join!(state.broker.write(&ngsi.tenant, ops), sources.send(state, ngsi, kind));
    let written = written?;
    for (id, result) in ids.into_iter().zip(written) {
        match result {
            Ok(applied) if !applied.outcome.not_updated.is_empty() => {
                // noOverwrite left attributes as they were: report them (§5.6.9).
                let names: Vec<&str> = applied.outcome.not_updated.iter().map(|n| n.name.as_str()).collect();
                let detail =
                    format!("attributes not updated (they exist and options=noOverwrite): {}", names.join(", "));
                results.error(Some(id), &NgsiError::bad_data(detail));
            }
            Ok(applied) => {
                if applied.outcome.status == Status::Created {
                    results.created.push(id.clone());
                }
                results.success.push(id);
            }
            Err(e) => results.error(Some(id), &e),
        }
    }
    sources.settle(replies, kind, &mut results);
    if !results.success.is_empty() {
        state.tenant_seen(&ngsi.tenant);
    }
    Ok(respond(kind, results))
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Upsert => "upsert",
            Kind::Update => "update",
            Kind::Merge => "merge",
            Kind::Delete => "delete",
        }
    }

    fn operation(self) -> Operation {
        match self {
            Kind::Create => Operation::CreateBatch,
            Kind::Upsert => Operation::UpsertBatch,
            Kind::Update => Operation::UpdateBatch,
            Kind::Merge => Operation::MergeBatch,
            Kind::Delete => Operation::DeleteBatch,
        }
    }
}

/// The parts of a batch that context sources hold (§4.3.6): one forwarded batch per source,
/// with the elements (as the client sent them) of the entities it holds part of.
#[derive(Default)]
struct Sources {
    batches: Vec<(Leg, Vec<Value>, Vec<String>)>,
    /// Entities (by id) that exclusive or redirect sources hold but cannot take this batch.
    refused: Vec<(String, Leg)>,
    /// Entities with no part left for the broker: they succeed when their sources do.
    remote_only: Vec<String>,
    context: Option<String>,
}

impl Sources {
    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.refused.is_empty()
    }

    /// Plans one element of the batch; returns whether the broker keeps a part of it.
    #[allow(clippy::too_many_arguments)]
    async fn add(
        &mut self,
        state: &AppState,
        ngsi: &Ngsi,
        body_type: BodyType,
        registrations: &[Registration],
        kind: Kind,
        op: &mut WriteOp,
        raw: Value,
    ) -> Result<bool> {
        let id = op.entity_id().to_string();
        let (types, names) = match entity_of(op) {
            Some(e) => (e.types.clone(), e.attrs.keys().cloned().collect()),
            None => (Vec::new(), Vec::new()),
        };
        let target = Target { id: Some(&id), types: &types, attrs: &names };
        let Some(plan) = distributed::plan_among(state, ngsi, registrations.to_vec(), kind.operation(), target)? else {
            return Ok(true);
        };
        let ctx = match raw.as_object() {
            Some(o) => {
                let rc = ngsi.body_context(state, body_type, o.get("@context").cloned()).await?;
                self.context.get_or_insert_with(|| distributed::context_url(&rc));
                rc.ctx
            }
            None => hanbat_model::jsonld::core_context(),
        };
        for leg in plan.forward.iter() {
            let element = match raw.as_object() {
                Some(o) => Value::Object(distributed::object_for(o, &ctx, &leg.attrs)),
                None => raw.clone(),
            };
            match self.batches.iter_mut().find(|(l, ..)| l.registration.id == leg.registration.id) {
                Some((_, elements, ids)) => {
                    elements.push(element);
                    ids.push(id.clone());
                }
                None => self.batches.push((leg.clone(), vec![element], vec![id.clone()])),
            }
        }
        self.refused.extend(plan.refused.iter().map(|leg| (id.clone(), leg.clone())));
        let local = match (entity_of(op), plan.claimed()) {
            (_, None) => true,
            (Some(entity), Some(claimed)) => {
                entity.attrs.retain(|name, _| !claimed.contains(name));
                !entity.attrs.is_empty()
            }
            // A delete: the broker deletes what it has of the entity itself.
            (None, Some(_)) => state.broker.get(&ngsi.tenant, &id).await?.is_some(),
        };
        if !local {
            self.remote_only.push(id);
        }
        Ok(local)
    }

    async fn send(&self, state: &AppState, ngsi: &Ngsi, kind: Kind) -> Vec<Reply> {
        let Some(forwarder) = &state.forwarder else { return Vec::new() };
        let context = self.context.clone().unwrap_or_else(|| hanbat_model::jsonld::CORE_CONTEXT_URL.to_string());
        let requests = self
            .batches
            .iter()
            .map(|(leg, elements, _)| {
                let request = Request {
                    method: http::Method::POST,
                    path: format!("/entityOperations/{}", kind.name()),
                    query: distributed::forwarded_params(ngsi, leg),
                    body: Some(Value::Array(elements.clone())),
                    context: context.clone(),
                };
                (leg, request)
            })
            .collect();
        forwarder.send_all(requests, Inbound { headers: &ngsi.headers }).await
    }

    /// Folds the sources' answers into the batch's results: an entity succeeds when every
    /// part of it did.
    fn settle(self, replies: Vec<Reply>, kind: Kind, results: &mut Results) {
        let mut failed: Vec<String> = Vec::new();
        for ((_, _, ids), reply) in self.batches.iter().zip(&replies) {
            if reply.succeeded() {
                continue;
            }
            for id in ids {
                results
                    .errors
                    .push(json!({"entityId": id, "registrationId": reply.registration_id, "error": reply.problem()}));
                failed.push(id.clone());
            }
        }
        for (id, leg) in &self.refused {
            let error = NgsiError::new(
                hanbat_model::ErrorKind::Conflict,
                format!(
                    "registration '{}' holds this entity and does not support batch {}",
                    leg.registration.id,
                    kind.name()
                ),
            );
            results.errors.push(
                json!({"entityId": id, "registrationId": leg.registration.id, "error": error.to_problem_details()}),
            );
            failed.push(id.clone());
        }
        results.success.retain(|id| !failed.contains(id));
        results.created.retain(|id| !failed.contains(id));
        for id in self.remote_only {
            if !failed.contains(&id) {
                if kind == Kind::Create {
                    results.created.push(id.clone());
                }
                results.success.push(id);
            }
        }
    }
}

/// The entity a batch element writes (none for a delete).
fn entity_of(op: &mut WriteOp) -> Option<&mut Entity> {
    match op {
        WriteOp::Create(entity) | WriteOp::Upsert { entity, .. } => Some(entity),
        WriteOp::Append { fragment, .. } | WriteOp::Merge { fragment, .. } => Some(fragment),
        _ => None,
    }
}

fn delete_op(item: Value) -> Result<WriteOp> {
    match item {
        Value::String(id) if parse::is_uri(&id) => Ok(WriteOp::Delete { id }),
        other => Err(NgsiError::bad_data(format!("batch delete takes entity ids (URIs), not {other}"))),
    }
}

async fn entity_op(
    state: &AppState,
    ngsi: &Ngsi,
    body_type: BodyType,
    kind: EntityKind,
    options: &[String],
    item: Value,
) -> Result<WriteOp> {
    let Value::Object(mut object) = item else {
        return Err(NgsiError::bad_data("each element of the batch must be an entity object"));
    };
    let rc = ngsi.body_context(state, body_type, object.remove("@context")).await?;
    let mode = match kind {
        EntityKind::Create | EntityKind::Upsert => Mode::Entity,
        EntityKind::Update => Mode::Fragment,
        EntityKind::Merge => Mode::Merge,
    };
    let entity = parse::entity(object, &rc.ctx, mode)?;
    if entity.id.is_empty() {
        return Err(NgsiError::bad_data("the entity has no 'id'"));
    }
    Ok(match kind {
        EntityKind::Create => WriteOp::Create(entity),
        EntityKind::Upsert => WriteOp::Upsert { replace: !options.iter().any(|o| o == "update"), entity },
        EntityKind::Update => WriteOp::Append {
            id: entity.id.clone(),
            overwrite: !options.iter().any(|o| o == "noOverwrite"),
            fragment: entity,
        },
        EntityKind::Merge => WriteOp::Merge { id: entity.id.clone(), fragment: entity },
    })
}

fn respond(kind: Kind, results: Results) -> Response {
    if !results.errors.is_empty() {
        let body = json!({ "success": results.success, "errors": results.errors });
        return response::plain_json(StatusCode::MULTI_STATUS, &body);
    }
    match kind {
        Kind::Create => response::plain_json(StatusCode::CREATED, &json!(results.created)),
        Kind::Upsert if !results.created.is_empty() => {
            response::plain_json(StatusCode::CREATED, &json!(results.created))
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    batch(&state, &ngsi, Kind::Create).await
}

pub async fn upsert(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    batch(&state, &ngsi, Kind::Upsert).await
}

pub async fn update(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    batch(&state, &ngsi, Kind::Update).await
}

pub async fn merge(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    batch(&state, &ngsi, Kind::Merge).await
}

pub async fn delete(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    batch(&state, &ngsi, Kind::Delete).await
}
