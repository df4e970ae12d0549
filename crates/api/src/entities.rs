//! `/entities/{id}` and its attributes (§6.5, §6.6, §6.7 of V1.8): create, retrieve, replace,
//! merge, delete, append / update / partially update / replace / delete attributes.

use crate::request::{Accept, Ngsi, RequestContext};
use crate::response::{self, ApiResult};
use crate::{AppState, render};
use axum::extract::{Path, State};
use axum::response::Response;
use hanbat_model::parse::{self, Mode};
use hanbat_model::{Entity, NgsiError, Result};
use hanbat_store::{Applied, Outcome, WriteOp};
use http::StatusCode;
use serde_json::{Value, json};

/// Checks an entity id from the path: a URI.
pub fn path_id(id: &str) -> Result<String> {
    if parse::is_uri(id) {
        Ok(id.to_string())
    } else {
        Err(NgsiError::bad_data(format!(
            "'{id}' is not a valid entity id: it must be a URI such as urn:ngsi-ld:Type:1"
        )))
    }
}

/// Writes one op and returns its own result.
pub async fn write_one(state: &AppState, tenant: &str, op: WriteOp) -> Result<Applied> {
    let mut results = state.broker.write(tenant, vec![op]).await?;
    results.pop().unwrap_or_else(|| Err(NgsiError::internal("the store returned no result")))
}

/// `204`, or `207` with an UpdateResult when some attributes were not written.
fn update_result(outcome: &Outcome, rc: &RequestContext) -> Response {
    if outcome.not_updated.is_empty() {
        return response::no_content();
    }
    let body = json!({
        "updated": outcome.updated.iter().map(|n| rc.ctx.compact(n)).collect::<Vec<_>>(),
        "notUpdated": outcome.not_updated.iter().map(|n| json!({
            "attributeName": rc.ctx.compact(&n.name),
            "reason": n.reason,
        })).collect::<Vec<_>>(),
    });
    response::plain_json(StatusCode::MULTI_STATUS, &body)
}

/// `POST /entities`
pub async fn create(State(state): State<AppState>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let (rc, body) = ngsi.object_body(&state).await?;
    let entity = parse::entity(body, &rc.ctx, Mode::Entity)?;
    check_expiry(&entity)?;
    let id = entity.id.clone();
    write_one(&state, &ngsi.tenant, WriteOp::Create(entity)).await?;
    state.tenant_seen(&ngsi.tenant);
    Ok(response::created(&format!("/ngsi-ld/v1/entities/{id}")))
}

/// Transient entities (§4.20): `expiresAt` must lie in the future.
pub fn check_expiry(entity: &Entity) -> Result<()> {
    match &entity.expires_at {
        Some(at) if *at <= hanbat_model::Timestamp::now() => {
            Err(NgsiError::bad_data(format!("expiresAt {at} is not in the future")))
        }
        _ => Ok(()),
    }
}

/// `GET /entities/{id}`
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&[
        "attrs",
        "pick",
        "omit",
        "options",
        "format",
        "lang",
        "geometryProperty",
        "datasetId",
        "type",
        "local",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "expandValues",
        "via",
        "collation",
    ])?;
    let id = path_id(&id)?;
    let accept = ngsi.accept(&[Accept::Json, Accept::JsonLd, Accept::GeoJson])?;
    let rc = ngsi.context(&state).await?;
    let view = render::View::from_params(&ngsi.params, &rc.ctx, &["keyValues", "concise", "sysAttrs", "simplified"])?;
    state.require_tenant(&ngsi.tenant).await?;
    let entity = state
        .broker
        .get(&ngsi.tenant, &id)
        .await?
        .filter(|e| view.types.is_empty() || e.has_any_type(&view.types))
        .ok_or_else(|| NgsiError::not_found(format!("entity '{id}' does not exist")))?;
    let geometry = view.geometry_property(&ngsi.params, &rc.ctx);
    let body = view.render(&entity, &rc.ctx, accept, &geometry);
    Ok(response::body(&rc, accept, StatusCode::OK, body))
}

/// `DELETE /entities/{id}`
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["type", "local"])?;
    let id = path_id(&id)?;
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::Delete { id }).await?;
    Ok(response::no_content())
}

/// The body of an entity-level write, with its `id` (if any) checked against the path.
async fn entity_body(state: &AppState, ngsi: &Ngsi, id: &str, mode: Mode) -> Result<(RequestContext, Entity)> {
    let (rc, mut body) = ngsi.object_body(state).await?;
    match body.get("id").or_else(|| body.get("@id")) {
        Some(Value::String(body_id)) if body_id != id => {
            return Err(NgsiError::bad_data(format!(
                "the body's id '{body_id}' differs from the id in the path '{id}'"
            )));
        }
        Some(Value::String(_)) => {}
        Some(other) => return Err(NgsiError::bad_data(format!("id must be a string, not {other}"))),
        None => {
            body.insert("id".into(), Value::String(id.to_string()));
        }
    }
    let mut entity = parse::entity(body, &rc.ctx, mode)?;
    entity.id = id.to_string();
    Ok((rc, entity))
}

/// `PUT /entities/{id}`
pub async fn replace(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (_, entity) = entity_body(&state, &ngsi, &id, Mode::Entity).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::Replace(entity)).await?;
    Ok(response::no_content())
}

/// `PATCH /entities/{id}` (merge)
pub async fn merge(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local", "options", "format"])?;
    let id = path_id(&id)?;
    let (_, fragment) = entity_body(&state, &ngsi, &id, Mode::Fragment).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::Merge { id, fragment }).await?;
    Ok(response::no_content())
}

/// `POST /entities/{id}/attrs` (append)
pub async fn append(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["options", "local"])?;
    let options = ngsi.params.options(&["noOverwrite"])?;
    let id = path_id(&id)?;
    let (rc, fragment) = entity_body(&state, &ngsi, &id, Mode::Fragment).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let overwrite = !options.iter().any(|o| o == "noOverwrite");
    let applied = write_one(&state, &ngsi.tenant, WriteOp::Append { id, fragment, overwrite }).await?;
    Ok(update_result(&applied.outcome, &rc))
}

/// `PATCH /entities/{id}/attrs` (update)
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, ngsi: Ngsi) -> ApiResult {
    ngsi.params.allow(&["local", "options"])?;
    let id = path_id(&id)?;
    let (rc, fragment) = entity_body(&state, &ngsi, &id, Mode::Fragment).await?;
    state.require_tenant(&ngsi.tenant).await?;
    let applied = write_one(&state, &ngsi.tenant, WriteOp::Update { id, fragment }).await?;
    Ok(update_result(&applied.outcome, &rc))
}

/// The attribute of `/attrs/{attrId}` bodies: one instance of `attr`.
async fn attribute_body(
    state: &AppState,
    ngsi: &Ngsi,
    attr: &str,
    mode: Mode,
) -> Result<(String, hanbat_model::Attribute)> {
    let (rc, body) = ngsi.object_body(state).await?;
    parse::validate_name(attr).or_else(|e| if parse::is_uri(attr) { Ok(()) } else { Err(e) })?;
    let name = rc.ctx.expand(attr);
    let mut instances = parse::attribute(attr, Value::Object(body), &rc.ctx, mode)?;
    if instances.len() != 1 {
        return Err(NgsiError::bad_data(format!("the body must be one instance of attribute '{attr}'")));
    }
    Ok((name, instances.remove(0)))
}

/// `PATCH /entities/{id}/attrs/{attrId}` (partial attribute update)
pub async fn patch_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (name, fragment) = attribute_body(&state, &ngsi, &attr, Mode::Fragment).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::PatchAttr { id, name, fragment }).await?;
    Ok(response::no_content())
}

/// `PUT /entities/{id}/attrs/{attrId}` (replace attribute)
pub async fn replace_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["local"])?;
    let id = path_id(&id)?;
    let (name, attribute) = attribute_body(&state, &ngsi, &attr, Mode::Entity).await?;
    state.require_tenant(&ngsi.tenant).await?;
    write_one(&state, &ngsi.tenant, WriteOp::ReplaceAttr { id, name, attribute }).await?;
    Ok(response::no_content())
}

/// `DELETE /entities/{id}/attrs/{attrId}`
pub async fn delete_attr(
    State(state): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    ngsi: Ngsi,
) -> ApiResult {
    ngsi.params.allow(&["datasetId", "deleteAll", "local"])?;
    let id = path_id(&id)?;
    let rc = ngsi.context(&state).await?;
    let dataset_id = ngsi.params.get("datasetId").map(str::to_string);
    if let Some(d) = &dataset_id
        && !parse::is_uri(d)
    {
        return Err(NgsiError::bad_data(format!("datasetId '{d}' is not a URI")).into());
    }
    let all = ngsi.params.flag("deleteAll")?;
    state.require_tenant(&ngsi.tenant).await?;
    let name = rc.ctx.expand(&attr);
    write_one(&state, &ngsi.tenant, WriteOp::DeleteAttr { id, name, dataset_id, all }).await?;
    Ok(response::no_content())
}
