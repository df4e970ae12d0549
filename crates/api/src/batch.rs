//! `/entityOperations/{create,upsert,update,delete,merge}` (§6.14–6.18, §6.31 of V1.8): many
//! entities in one request and one transaction, with a result per entity.
//!
//! An entity that fails validation is reported in `errors` and does not stop the others; the
//! valid ones go to the store as one batch (one commit).

use crate::AppState;
use crate::request::{BodyType, Ngsi};
use crate::response::{self, ApiResult};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hanbat_model::parse::{self, Mode};
use hanbat_model::{NgsiError, Result};
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
    for item in items {
        let id = if kind == Kind::Delete { item.as_str().map(str::to_string) } else { entity_id_of(&item) };
        let op = match kind {
            Kind::Delete => delete_op(item),
            Kind::Create => entity_op(state, ngsi, body_type, EntityKind::Create, &options, item).await,
            Kind::Upsert => entity_op(state, ngsi, body_type, EntityKind::Upsert, &options, item).await,
            Kind::Update => entity_op(state, ngsi, body_type, EntityKind::Update, &options, item).await,
            Kind::Merge => entity_op(state, ngsi, body_type, EntityKind::Merge, &options, item).await,
        };
        match op {
            Ok(op) => ops.push(op),
            Err(e) => results.error(id, &e),
        }
    }
    if kind != Kind::Create && kind != Kind::Upsert {
        state.require_tenant(&ngsi.tenant).await?;
    }
    let ids: Vec<String> = ops.iter().map(|o| o.entity_id().to_string()).collect();
    let written = state.broker.write(&ngsi.tenant, ops).await?;
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
    if !results.success.is_empty() {
        state.tenant_seen(&ngsi.tenant);
    }
    Ok(respond(kind, results))
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
